//! Golden rewrites and refusals of the analyzer (through the lexer and the parser's view),
//! with a deterministic fake sealer.

use super::*;
use crate::policy::Policy;
use crate::sql::charset::Charset;
use crate::sql::lex::{Kind, Mode, lex};
use crate::sql::rewrite::{ParamUse, Sealer, render};
use crate::sql::view::{View, statements};

const POLICY: &str = r#"
    [[column]]
    table = "users"
    column = "email"
    type = "varchar(100)"
    blind_index = "email_bidx"
    roles = { app = "plaintext", support = { mask = "email" }, analyst = "deny" }

    [[column]]
    table = "users"
    column = "ssn"
    type = "char(11)"
    roles = { app = "plaintext", support = { mask = "last-four" }, analyst = "deny" }

    [[column]]
    table = "users"
    column = "born"
    type = "date"
    roles = { app = "plaintext", analyst = { mask = "year" } }
"#;

/// Readable stand-ins: S[value] for a sealed value, B<key>[value] for a blind index.
struct Fake;

fn pad(s: String) -> [u8; 32] {
    let mut out = [b'.'; 32];
    let b = s.as_bytes();
    out[..b.len().min(32)].copy_from_slice(&b[..b.len().min(32)]);
    out
}

impl Sealer for Fake {
    fn seal(
        &self,
        _: &Protected,
        p: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error> {
        Ok(match row_key {
            Some(k) => format!(
                "S[{}@{}]",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(k)
            ),
            None => format!("S[{}]", String::from_utf8_lossy(p)),
        }
        .into_bytes())
    }
    fn blind(&self, _: &Protected, p: &[u8]) -> Result<[u8; 32], crate::crypto::Error> {
        Ok(pad(format!("B0[{}]", String::from_utf8_lossy(p))))
    }
    fn blind_all(&self, _: &Protected, p: &[u8]) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
        Ok((0..2)
            .map(|k| pad(format!("B{k}[{}]", String::from_utf8_lossy(p))))
            .collect())
    }
    fn blind_keys(&self, _: &Protected) -> usize {
        2
    }
    /// Fake envelopes are `S[plaintext]`.
    fn open(&self, _: &Protected, stored: &[u8], _: Option<&[u8]>) -> Option<Vec<u8>> {
        stored
            .strip_prefix(b"S[")
            .and_then(|s| s.strip_suffix(b"]"))
            .map(<[u8]>::to_vec)
    }
}

/// Shows X'…' literals decoded, dropping blind-index padding.
fn readable(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("X'") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 2..];
        let end = tail.find('\'').unwrap_or(tail.len());
        let bytes = hex::decode(&tail[..end]).unwrap_or_default();
        out.push_str(&format!(
            "X'{}'",
            String::from_utf8_lossy(&bytes).trim_end_matches('.')
        ));
        rest = &tail[(end + 1).min(tail.len())..];
    }
    out.push_str(rest);
    out
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.add_toml(POLICY, "t").expect("policy");
    p
}

fn mode(prepare: bool) -> Mode<'static> {
    Mode {
        charset: Charset::named("utf8mb4").expect("cs"),
        ansi_quotes: false,
        no_backslash_escapes: false,
        mssql: false,
        server_version: 101_119,
        prepare,
    }
}

fn analyzer<'a>(p: &'a Policy, role: &'a str, schema: &'a dyn Schema) -> Analyzer<'a, 'a> {
    Analyzer {
        policy: p,
        database: Some("shop"),
        role,
        schema,
        high_not_precedence: false,
        empty_string_is_null: false,
    }
}

/// The rewritten text, the parameters and the shape of each statement.
type Run = (String, Vec<ParamUse>, Vec<Option<Shape>>);

/// Lexes, splits, analyzes every statement and renders the edits, as the guard does.
fn run_with(an: &Analyzer<'_, '_>, sql: &str) -> Result<Run, Refusal> {
    let prepare = sql.contains('?');
    let m = mode(prepare);
    let src = sql.as_bytes();
    let lexed = lex(src, &m).expect("lexes");
    let units = statements(src, &lexed).expect("splits");
    let mut edits = Vec::new();
    let mut shapes = Vec::new();
    let mut touched = false;
    for u in units {
        let view = View::of(src, &lexed, u, m).expect("view");
        let a = an.analyze(&view)?;
        touched |= a.protected;
        edits.extend(a.edits);
        shapes.push(a.shape);
    }
    if !touched && edits.is_empty() {
        return Ok((format!("FORWARD {sql}"), Vec::new(), shapes));
    }
    let placeholders: Vec<usize> = lexed
        .tokens
        .iter()
        .filter(|t| t.kind == Kind::Param)
        .map(|t| t.start)
        .collect();
    let r = render(src, &edits, &placeholders, &Fake)?;
    Ok((readable(&String::from_utf8_lossy(&r.sql)), r.params, shapes))
}

fn analyze(role: &str, sql: &str) -> Result<(String, Vec<ParamUse>), Refusal> {
    let p = policy();
    let an = analyzer(&p, role, &NoSchema);
    run_with(&an, sql).map(|(s, params, _)| (s, params))
}

fn rewrite(sql: &str) -> String {
    match analyze("app", sql) {
        Ok((s, _)) => s,
        Err(r) => panic!("{sql}: refused: {r}"),
    }
}

#[test]
fn golden_rewrites() {
    let cases: &[(&str, &str)] = &[
        (
            "SELECT id FROM orders WHERE note = 'email'",
            "FORWARD SELECT id FROM orders WHERE note = 'email'",
        ),
        (
            "INSERT INTO users (id, email, name) VALUES (1, 'a@x.io', 'Ann'), (2, NULL, 'Bob')",
            "INSERT INTO users (id, email, name, `email_bidx`) VALUES (1, X'S[a@x.io]', 'Ann', X'B0[a@x.io]'), (2, NULL, 'Bob', NULL)",
        ),
        (
            "insert into shop.users (ssn, born) values ('123-45-6789', '1990-5-1')",
            "insert into shop.users (ssn, born) values (X'S[123-45-6789]', X'S[1990-05-01]')",
        ),
        (
            "UPDATE users SET email = 'b@x.io', name = 'B' WHERE id = 1",
            "UPDATE users SET email = X'S[b@x.io]', `email_bidx` = X'B0[b@x.io]', name = 'B' WHERE id = 1",
        ),
        (
            "SELECT id, email FROM users WHERE email = 'a@x.io' AND id > 3",
            "SELECT id, email FROM users WHERE `email_bidx` IN (X'B0[a@x.io]', X'B1[a@x.io]') AND id > 3",
        ),
        (
            "SELECT u.* FROM users AS u WHERE u.email NOT IN ('a', 'b')",
            "SELECT u.* FROM users AS u WHERE u.`email_bidx` NOT IN (X'B0[a]', X'B1[a]', X'B0[b]', X'B1[b]')",
        ),
        (
            "DELETE FROM users WHERE 'x@y' = email",
            "DELETE FROM users WHERE `email_bidx` IN (X'B0[x@y]', X'B1[x@y]')",
        ),
        (
            "SELECT email FROM users WHERE id = 1 AND ssn IS NOT NULL",
            "SELECT email FROM users WHERE id = 1 AND ssn IS NOT NULL",
        ),
        (
            "INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = VALUES(email)",
            "INSERT INTO users (id, email, `email_bidx`) VALUES (1, X'S[a]', X'B0[a]') ON DUPLICATE KEY UPDATE email = VALUES(email), `email_bidx` = VALUES(`email_bidx`)",
        ),
        (
            "INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = 'z'",
            "INSERT INTO users (id, email, `email_bidx`) VALUES (1, X'S[a]', X'B0[a]') ON DUPLICATE KEY UPDATE email = X'S[z]', `email_bidx` = X'B0[z]'",
        ),
        (
            "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = 'q'",
            "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.`email_bidx` IN (X'B0[q]', X'B1[q]')",
        ),
        (
            "SELECT 1; UPDATE users SET ssn = '1' WHERE id = 2",
            "SELECT 1; UPDATE users SET ssn = X'S[1]' WHERE id = 2",
        ),
        (
            "REPLACE INTO users (id, born) VALUES (7, '2001-02-03')",
            "REPLACE INTO users (id, born) VALUES (7, X'S[2001-02-03]')",
        ),
        (
            "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 5)",
            "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 5)",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&rewrite(input), want, "input: {input}");
    }
}

struct Columns {
    users: Vec<ColumnMeta>,
    orders: Vec<ColumnMeta>,
}

fn meta(names: &[&str]) -> Vec<ColumnMeta> {
    names
        .iter()
        .map(|s| ColumnMeta {
            name: s.to_string(),
            null_default: true,
            data_type: "varbinary".into(),
            max_length: None,
            invisible: false,
        })
        .collect()
}

impl Columns {
    fn new() -> Self {
        Self {
            users: meta(&["id", "email", "email_bidx", "ssn", "name", "born"]),
            orders: meta(&["id", "user_id", "total", "note"]),
        }
    }
}

impl Schema for Columns {
    fn columns(&self, _: &str, table: &str) -> Option<&[ColumnMeta]> {
        match table {
            "users" => Some(&self.users),
            "orders" => Some(&self.orders),
            _ => None,
        }
    }
    fn view(&self, db: &str, name: &str) -> Option<&str> {
        (db == "shop" && name == "v_users").then_some(
            "select `shop`.`users`.`id` AS `id`,`shop`.`users`.`email` AS `mail` from `shop`.`users`",
        )
    }
    fn unique(&self, _: &str, table: &str, column: &str) -> bool {
        table == "users" && column == "email_bidx"
    }
}

#[test]
fn insert_without_column_list_uses_the_schema() {
    let p = policy();
    let cols = Columns::new();
    let an = analyzer(&p, "app", &cols);
    let sql = "INSERT INTO users VALUES (1, 'a@x.io', DEFAULT, '1', 'Ann', NULL), (2, NULL, NULL, NULL, 'Bob', NULL)";
    let (out, _, _) = run_with(&an, sql).expect("rewrite");
    assert_eq!(
        out,
        "INSERT INTO users (`id`, `email`, `email_bidx`, `ssn`, `name`, `born`) VALUES (1, X'S[a@x.io]', X'B0[a@x.io]', X'S[1]', 'Ann', NULL), (2, NULL, NULL, NULL, 'Bob', NULL)"
    );
    let bad = run_with(
        &an,
        "INSERT INTO users VALUES (1, 'a@x.io', X'00', '1', 'x', NULL)",
    );
    assert!(matches!(bad, Err(r) if r.reason.contains("NULL or DEFAULT")));
}

#[test]
fn an_invisible_blind_index_is_filled_by_an_insert_without_column_list() {
    let p = policy();
    let mut cols = Columns::new();
    for c in &mut cols.users {
        c.invisible = c.name == "email_bidx";
    }
    let an = analyzer(&p, "app", &cols);
    let (out, _, _) = run_with(
        &an,
        "INSERT INTO users VALUES (1, 'a@x.io', '1', 'Ann', NULL), (2, NULL, NULL, 'Bob', NULL)",
    )
    .expect("rewrite");
    assert_eq!(
        out,
        "INSERT INTO users (`id`, `email`, `ssn`, `name`, `born`, `email_bidx`) VALUES (1, X'S[a@x.io]', X'S[1]', 'Ann', NULL, X'B0[a@x.io]'), (2, NULL, NULL, 'Bob', NULL, NULL)"
    );
    let (_, _, shapes) = run_with(&an, "SELECT * FROM users").expect("star");
    assert_eq!(shapes[0].as_ref().map(|s| s.columns.len()), Some(5));
}

#[test]
fn row_bound_columns_take_their_row_key() {
    let mut p = Policy::default();
    p.add_toml("[[column]]\ntable = \"acct\"\ncolumn = \"iban\"\ntype = \"varchar(34)\"\nrow_key = \"id\"\nroles = { app = \"plaintext\" }\n", "t").expect("policy");
    let an = analyzer(&p, "app", &NoSchema);
    let run = |sql: &str| {
        run_with(&an, sql)
            .map(|(s, params, _)| (s, params))
            .map_err(|r| r.to_string())
    };
    assert_eq!(
        run("INSERT INTO acct (id, iban) VALUES (007, 'DE1'), (8, 'DE2')").map(|r| r.0),
        Ok("INSERT INTO acct (id, iban) VALUES (007, X'S[DE1@7]'), (8, X'S[DE2@8]')".into())
    );
    assert_eq!(
        run("UPDATE acct SET iban = 'DE3' WHERE id = 8 AND 1 = 1").map(|r| r.0),
        Ok("UPDATE acct SET iban = X'S[DE3@8]' WHERE id = 8 AND 1 = 1".into())
    );
    let (_, params) = run("INSERT INTO acct (iban, id) VALUES (?, ?)").expect("prepared");
    assert_eq!(
        params[0],
        ParamUse::Seal {
            param: 0,
            column: "acct.iban".into(),
            row_key: Some(crate::sql::rewrite::RowKey::Param(1)),
            keep: false,
        }
    );
    for (sql, why) in [
        ("INSERT INTO acct (iban) VALUES ('x')", "same INSERT"),
        (
            "INSERT INTO acct (id, iban) VALUES (NULL, 'x')",
            "literal or a parameter",
        ),
        ("UPDATE acct SET iban = 'x' WHERE id > 3", "needs WHERE id"),
        ("UPDATE acct SET iban = 'x'", "needs WHERE id"),
        (
            "UPDATE acct SET id = 9 WHERE id = 8",
            "changing the row key",
        ),
        (
            "INSERT INTO acct (id, iban) VALUES (1, 'x') ON DUPLICATE KEY UPDATE iban = 'y'",
            "ON DUPLICATE KEY UPDATE",
        ),
    ] {
        let err = run(sql).expect_err(sql);
        assert!(err.contains(why), "{sql}: {err}");
    }
}

#[test]
fn parameters_are_mapped() {
    let (sql, params) = analyze("app", "INSERT INTO users (id, email) VALUES (?, ?)").expect("ok");
    assert_eq!(
        sql,
        "INSERT INTO users (id, email, `email_bidx`) VALUES (?, ?, ?)"
    );
    assert_eq!(
        params,
        vec![
            ParamUse::Plain(0),
            ParamUse::Seal {
                param: 1,
                column: "users.email".into(),
                row_key: None,
                keep: false,
            },
            ParamUse::BlindWrite {
                param: 1,
                column: "users.email".into(),
                keep: false
            }
        ]
    );
    let (sql, params) =
        analyze("app", "SELECT * FROM users WHERE email = ? AND id = ?").expect("ok");
    assert_eq!(
        sql,
        "SELECT * FROM users WHERE (`email_bidx` IN (?, ?, ?) OR `email` IN (?)) AND id = ?"
    );
    let slot = |key| ParamUse::BlindSearch {
        param: 0,
        column: "users.email".into(),
        key,
        slots: 3,
    };
    let plain = ParamUse::MixedPlain {
        param: 0,
        column: "users.email".into(),
    };
    assert_eq!(
        params,
        vec![slot(0), slot(1), slot(2), plain, ParamUse::Plain(1)]
    );
    let (_, params) = analyze(
        "app",
        "UPDATE users SET born = ? WHERE id = ? AND note = '?'",
    )
    .expect("ok");
    assert_eq!(
        params,
        vec![
            ParamUse::Seal {
                param: 0,
                column: "users.born".into(),
                row_key: None,
                keep: false,
            },
            ParamUse::Plain(1)
        ]
    );
}

#[test]
fn refusals_name_the_column_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("app", "SELECT UPPER(email) FROM users", "functions"),
        ("app", "SELECT id FROM users WHERE email LIKE 'a%'", "LIKE"),
        ("app", "SELECT id FROM users ORDER BY email", "supported"),
        (
            "app",
            "SELECT email, COUNT(*) FROM users GROUP BY email",
            "supported",
        ),
        ("app", "SELECT id FROM users WHERE ssn = '1'", "blind index"),
        (
            "app",
            "SELECT id FROM users WHERE born > '2000-01-01'",
            "range",
        ),
        (
            "app",
            "SELECT id FROM users WHERE born BETWEEN '1' AND '2'",
            "range",
        ),
        ("app", "SELECT CAST(email AS BINARY) FROM users", "CAST"),
        ("app", "SELECT CONCAT(email, 'x') FROM users", "functions"),
        (
            "app",
            "INSERT INTO users (email) SELECT email FROM old_users",
            "INSERT … SELECT",
        ),
        (
            "app",
            "INSERT INTO users (email) VALUES (CONCAT('a', 'b'))",
            "literal or a parameter",
        ),
        ("app", "INSERT INTO users VALUES (1, 'a')", "column order"),
        (
            "app",
            "UPDATE users SET email = name",
            "literal or a parameter",
        ),
        (
            "app",
            "UPDATE users SET email = @v",
            "literal or a parameter",
        ),
        (
            "app",
            "INSERT INTO users (email, email_bidx) VALUES ('a', 'b')",
            "blind-index",
        ),
        ("app", "UPDATE users SET email_bidx = 'x'", "blind-index"),
        (
            "app",
            "SELECT id FROM users WHERE email = name",
            "literal or parameter",
        ),
        (
            "support",
            "SELECT id FROM users WHERE email = 'a'",
            "may not filter",
        ),
        (
            "app",
            "SELECT 1; SELECT UPPER(email) FROM users",
            "functions",
        ),
        (
            "app",
            "SELECT u.id FROM users u NATURAL JOIN orders",
            "NATURAL",
        ),
        (
            "app",
            "SELECT u.id FROM users u JOIN contacts c USING (email)",
            "joining",
        ),
        (
            "app",
            "SELECT id FROM users WHERE email = 'a' OR LOWER(email) = 'b'",
            "functions",
        ),
        (
            "app",
            "LOAD DATA INFILE '/tmp/x' INTO TABLE users",
            "myveil",
        ),
        (
            "app",
            "SELECT id FROM users WHERE email = ('a')",
            "literal or parameter",
        ),
        (
            "app",
            "SELECT email FROM users WHERE email = 'a' LIMIT",
            "cannot be analyzed",
        ),
        ("app", "SELECT id FROM users WHERE (email) > 'a'", "range"),
    ];
    for (role, sql, why) in cases {
        match analyze(role, sql) {
            Err(r) => {
                assert!(
                    r.to_string().contains(why),
                    "{sql}: reason {:?} lacks {why:?}",
                    r.to_string()
                );
                assert!(!r.denied, "{sql}");
            }
            Ok((out, _)) => panic!("{sql} was not refused: {out}"),
        }
    }
    let denied = analyze("analyst", "SELECT ssn FROM users").expect_err("deny");
    assert!(denied.denied && denied.target == "users.ssn", "{denied:?}");
    let denied = analyze("analyst", "UPDATE users SET email = 'a'").expect_err("deny");
    assert!(denied.denied);
    let denied = analyze("analyst", "SELECT id FROM users WHERE email = 'a'").expect_err("deny");
    assert!(denied.denied);
    // Masked roles may read the column (masked on the way back).
    assert!(analyze("support", "SELECT email FROM users").is_ok());
}

/// `users` while `migrate apply` retypes `ssn` and `email` through shadow columns
/// (INVISIBLE, as apply adds them), with a view over `ssn`.
struct Window {
    users: Vec<ColumnMeta>,
    copying: bool,
}

impl Window {
    fn new() -> Self {
        let mut users = meta(&[
            "id",
            "Email",
            "email__myveil",
            "email_bidx",
            "ssn",
            "ssn__myveil",
            "name",
            "born",
        ]);
        for c in &mut users {
            c.invisible = c.name.ends_with("__myveil");
        }
        Self {
            users,
            copying: true,
        }
    }
}

impl Schema for Window {
    fn columns(&self, _: &str, table: &str) -> Option<&[ColumnMeta]> {
        (table == "users").then_some(&self.users[..])
    }
    fn view(&self, db: &str, name: &str) -> Option<&str> {
        (db == "shop" && name == "v_ssn").then_some(
            "select `shop`.`users`.`id` AS `id`,`shop`.`users`.`ssn` AS `s` from `shop`.`users`",
        )
    }
    fn unique(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
    fn copying(&self, _: &str, _: &str, _: &str) -> bool {
        self.copying
    }
}

#[test]
fn a_column_in_its_shadow_window_is_written_to_the_shadow_and_read_from_it() {
    let p = policy();
    let cols = Window::new();
    let an = analyzer(&p, "app", &cols);
    let run = |sql: &str| run_with(&an, sql).map(|(s, _, shapes)| (s, shapes));
    let cases: &[(&str, &str)] = &[
        (
            "SELECT ssn FROM users WHERE id = 1",
            "SELECT COALESCE(`ssn__myveil`, ssn) AS `ssn` FROM users WHERE id = 1",
        ),
        (
            "SELECT u.SSN AS s, (u.ssn), name FROM users u",
            "SELECT COALESCE(u.`ssn__myveil`, u.SSN) AS s, (COALESCE(u.`ssn__myveil`, u.ssn)) AS `ssn`, name FROM users u",
        ),
        (
            "SELECT id FROM users WHERE ssn IS NULL OR ssn <=> NULL",
            "SELECT id FROM users WHERE COALESCE(`ssn__myveil`, ssn) IS NULL OR COALESCE(`ssn__myveil`, ssn) <=> NULL",
        ),
        (
            "SELECT * FROM users",
            "SELECT `users`.`id`, COALESCE(`users`.`email__myveil`, `users`.`Email`) AS `Email`, `users`.`email_bidx`, COALESCE(`users`.`ssn__myveil`, `users`.`ssn`) AS `ssn`, `users`.`name`, `users`.`born` FROM users",
        ),
        (
            "SELECT x.s FROM (SELECT ssn AS s FROM users) x",
            "SELECT x.s FROM (SELECT COALESCE(`ssn__myveil`, ssn) AS s FROM users) x",
        ),
        (
            "SELECT d.ssn FROM (SELECT * FROM users) d WHERE d.id = 1",
            "SELECT d.ssn FROM (SELECT `users`.`id`, COALESCE(`users`.`email__myveil`, `users`.`Email`) AS `Email`, `users`.`email_bidx`, COALESCE(`users`.`ssn__myveil`, `users`.`ssn`) AS `ssn`, `users`.`name`, `users`.`born` FROM users) d WHERE d.id = 1",
        ),
        (
            "SELECT id, ssn IS NULL, (SELECT ssn FROM users WHERE id = 1) FROM users",
            "SELECT id, COALESCE(`ssn__myveil`, ssn) IS NULL, (SELECT COALESCE(`ssn__myveil`, ssn) AS `ssn` FROM users WHERE id = 1) FROM users",
        ),
        (
            "SELECT id FROM users WHERE email = 'a@x.io'",
            "SELECT id FROM users WHERE `email_bidx` IN (X'B0[a@x.io]', X'B1[a@x.io]')",
        ),
        (
            "INSERT INTO users (id, ssn, name) VALUES (1, '123', 'Ann'), (2, NULL, 'Bob')",
            "INSERT INTO users (id, `ssn__myveil`, name, `ssn`) VALUES (1, X'S[123]', 'Ann', NULL), (2, NULL, 'Bob', NULL)",
        ),
        (
            "INSERT INTO users (id, email) VALUES (1, 'a@x.io')",
            "INSERT INTO users (id, `email__myveil`, `email_bidx`, `email`) VALUES (1, X'S[a@x.io]', X'B0[a@x.io]', NULL)",
        ),
        (
            "INSERT INTO users VALUES (1, 'a@x.io', NULL, '1', 'Ann', NULL)",
            "INSERT INTO users (`id`, `email__myveil`, `email_bidx`, `ssn__myveil`, `name`, `born`, `Email`, `ssn`) VALUES (1, X'S[a@x.io]', X'B0[a@x.io]', X'S[1]', 'Ann', NULL, NULL, NULL)",
        ),
        (
            "UPDATE users u SET u.ssn = '9', name = 'N' WHERE id = 1",
            "UPDATE users u SET u.`ssn__myveil` = X'S[9]', u.`ssn` = NULL, name = 'N' WHERE id = 1",
        ),
        (
            "UPDATE users SET email = 'b@x.io' WHERE id = 1",
            "UPDATE users SET `email__myveil` = X'S[b@x.io]', `email` = NULL, `email_bidx` = X'B0[b@x.io]' WHERE id = 1",
        ),
        (
            "INSERT INTO users (id, ssn) VALUES (1, '1') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)",
            "INSERT INTO users (id, `ssn__myveil`, `ssn`) VALUES (1, X'S[1]', NULL) ON DUPLICATE KEY UPDATE `ssn__myveil` = COALESCE(VALUES(`ssn__myveil`), VALUES(`ssn`)), `ssn` = NULL",
        ),
        (
            "INSERT INTO users SET id = 1, ssn = '2'",
            "INSERT INTO users SET id = 1, `ssn__myveil` = X'S[2]', `ssn` = NULL",
        ),
        (
            "INSERT INTO users (id, ssn) VALUES (3, '3') RETURNING id, ssn",
            "INSERT INTO users (id, `ssn__myveil`, `ssn`) VALUES (3, X'S[3]', NULL) RETURNING id, COALESCE(`ssn__myveil`, ssn) AS `ssn`",
        ),
    ];
    // Before the copy begins, writes still go to the column (and fail there, too narrow,
    // rather than land where no proxy reads yet), while reads go through the shadow.
    let early = Window {
        copying: false,
        ..Window::new()
    };
    let an_early = analyzer(&p, "app", &early);
    assert_eq!(
        run_with(&an_early, "UPDATE users SET ssn = '9' WHERE id = 1").map(|r| r.0),
        Ok("UPDATE users SET ssn = X'S[9]' WHERE id = 1".into())
    );
    assert_eq!(
        run_with(&an_early, "SELECT ssn FROM users").map(|r| r.0),
        Ok("SELECT COALESCE(`ssn__myveil`, ssn) AS `ssn` FROM users".into())
    );
    // Swapped in (the old column exists): the column is read and written as it is.
    let mut swapped = Window::new();
    for c in &mut swapped.users {
        if c.name == "ssn__myveil" {
            c.name = "ssn__myveil_old".into();
        }
    }
    // With the stand-in of the shadow's name, until apply drops it.
    let mut stand_in = meta(&["ssn__myveil"]);
    stand_in[0].invisible = true;
    swapped.users.extend(stand_in);
    let an_swapped = analyzer(&p, "app", &swapped);
    assert_eq!(
        run_with(&an_swapped, "SELECT ssn FROM users WHERE ssn IS NULL").map(|r| r.0),
        Ok("SELECT ssn FROM users WHERE ssn IS NULL".into())
    );
    for (input, want) in cases {
        match run(input) {
            Ok((got, _)) => assert_eq!(&got, want, "input: {input}"),
            Err(r) => panic!("{input}: refused: {r}"),
        }
    }
    // The shape is the table's, without its invisible columns.
    let (_, shapes) = run("SELECT * FROM users").expect("star");
    let shape = shapes[0].as_ref().expect("a result");
    assert_eq!(shape.columns.len(), 6);
    assert!(matches!(shape.columns[1], Out::Cell { .. }));
    assert!(matches!(shape.columns[3], Out::Cell { .. }));
    // A view's definition cannot be rewritten: refused until the swap, and `*` over a
    // table whose columns cannot be written out is too.
    for sql in [
        "SELECT s FROM v_ssn",
        "SELECT * FROM users JOIN orders o ON o.user_id = users.id",
    ] {
        match run(sql) {
            Err(r) => assert!(r.reason.contains("migrate apply"), "{sql}: {r}"),
            Ok((got, _)) => panic!("{sql}: not refused: {got}"),
        }
    }
    // A column of another table is not in the window.
    assert_eq!(
        run("SELECT note FROM orders").map(|r| r.0).ok(),
        Some("FORWARD SELECT note FROM orders".into())
    );
}
