//! The guard's decisions on the statements the attack run found, and on legitimate ones
//! that must pass untouched (sql_mode, charset and database as the server reports them).

use super::*;
use crate::backend::schema::Dependent;
use crate::sql::analyze::ColumnMeta;

const POLICY: &str = r#"
[[column]]
database = "shop"
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext", support = { mask = "email" }, dumper = "ciphertext" }
write = ["dumper"]

[[column]]
database = "shop"
table = "users"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = { app = "plaintext", dumper = "ciphertext" }
write = ["dumper"]
"#;

/// Readable stand-ins: S[value] sealed, B0[value] blind indexes (the fuzz target's).
use crate::fuzzing::Shown as Fake;

fn meta(names: &[&str]) -> Vec<ColumnMeta> {
    names
        .iter()
        .map(|n| ColumnMeta {
            name: (*n).into(),
            null_default: true,
            data_type: "varbinary".into(),
            max_length: None,
            invisible: false,
        })
        .collect()
}

struct World {
    policy: Policy,
    schema: Snapshot,
    reach: Reach,
}

fn world() -> World {
    world_with(POLICY, &["id", "email", "email_bidx", "ssn", "name"])
}

fn world_with(policy_toml: &str, users: &[&str]) -> World {
    let mut policy = Policy::default();
    policy.add_toml(policy_toml, "t").expect("policy");
    let schema = Snapshot::from_parts(
        vec![
            (
                ("shop".into(), "users".into()),
                meta(users),
            ),
            (("shop".into(), "orders".into()), meta(&["id", "user_id", "note"])),
        ],
        vec![(
            ("shop".into(), "v_users".into()),
            "select `shop`.`users`.`id` AS `id`,`shop`.`users`.`email` AS `mail` from `shop`.`users`"
                .into(),
        )],
        vec![],
        vec![
            Dependent {
                kind: "procedure".into(),
                database: "other".into(),
                name: "leak".into(),
                reads: "shop.users".into(),
                on_table: None,
                reads_refused: false,
            },
            Dependent {
                kind: "view".into(),
                database: "shop".into(),
                name: "v_users".into(),
                reads: "users".into(),
                on_table: None,
                reads_refused: false,
            },
        ],
    );
    let reach = Reach::new(&policy, "test", &schema);
    World {
        policy,
        schema,
        reach,
    }
}

fn state(db: Option<&str>, mode: &str, charset: &str) -> SessionState {
    SessionState {
        database: db.map(str::to_owned),
        sql_mode: SqlMode::parse(mode),
        client_charset: charset.into(),
        known: true,
        ..SessionState::default()
    }
}

fn decide_in(w: &World, st: &SessionState, role: &str, sql: &[u8], command: Command) -> Decision {
    decide_cached(w, st, role, sql, command, None)
}

/// `decide_in` with a plan cache.
fn decide_cached(
    w: &World,
    st: &SessionState,
    role: &str,
    sql: &[u8],
    command: Command,
    cache: Option<&std::sync::Mutex<ShapeCache>>,
) -> Decision {
    let prepared = HashMap::new();
    let cx = Context {
        state: st,
        policy: &w.policy,
        schema: &w.schema,
        reach: &w.reach,
        role,
        server_version: 101_119,
        store_schema: Some("myveil"),
        sealer: &Fake,
        sql_prepared: &prepared,
        max_analyzed_bytes: 1 << 20,
        cache,
    };
    decide(sql, command, &cx)
}

/// A decision as text: "PASS", "REFUSE …", or the rewritten text (readable) and the shapes.
fn shown(o: Outcome) -> String {
    match o {
        Outcome::Pass => "PASS".to_owned(),
        Outcome::Refuse(r) => format!("REFUSE {r}"),
        Outcome::Protect(p) => format!("{:?} {:?}", p.text.map(|t| readable(&t)), p.shapes),
    }
}

/// The rewritten text of a statement that must be protected.
fn rewritten(o: Outcome, sql: &str) -> String {
    match o {
        Outcome::Protect(p) => readable(&p.text.expect("rewritten")),
        other => panic!("{sql}: {other:?}"),
    }
}

/// What the backend gets: "PASS", "REFUSE <code-ish>", or the rewritten text (readable).
fn run(w: &World, st: &SessionState, role: &str, sql: &[u8]) -> String {
    match decide_in(w, st, role, sql, Command::Query).outcome {
        Outcome::Pass => "PASS".into(),
        Outcome::Refuse(r) => format!("REFUSE {r}"),
        Outcome::Protect(p) => match p.text {
            None => "PROTECT".into(),
            Some(t) => readable(&t),
        },
    }
}

fn readable(t: &[u8]) -> String {
    let s = String::from_utf8_lossy(t).into_owned();
    let mut out = String::new();
    let mut rest = s.as_str();
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

const DEFAULT_MODE: &str = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO";

#[test]
fn quoting_follows_the_session_sql_mode() {
    let w = world();
    let ansi = state(Some("shop"), "ANSI_QUOTES", "utf8mb4");
    assert_eq!(
        run(
            &w,
            &ansi,
            "app",
            br#"UPDATE "users" SET "ssn"='1' WHERE id = 1"#
        ),
        r#"UPDATE "users" SET "ssn"='U1sxXQ==' WHERE id = 1"#,
        "sealed as the server reads it"
    );
    // In a statement that also changes the mode, what follows is read under the new mode.
    let plain = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let out = run(
        &w,
        &plain,
        "app",
        br#"SET sql_mode='ANSI_QUOTES'; UPDATE "users" SET "ssn"='1' WHERE id = 1"#,
    );
    assert!(out.contains(r#""ssn"='U1sxXQ=='"#), "{out}");
    // NO_BACKSLASH_ESCAPES: the UPDATE hidden in a string to a proxy that uses backslashes.
    let nbe = state(Some("shop"), "NO_BACKSLASH_ESCAPES", "utf8mb4");
    let out = run(
        &w,
        &nbe,
        "app",
        br"SELECT '\'; UPDATE users SET ssn='2' WHERE id = 1; -- '",
    );
    assert!(out.contains("ssn='U1syXQ=='"), "{out}");
    let out = run(
        &w,
        &plain,
        "app",
        br"SET @@sql_mode='NO_BACKSLASH_ESCAPES'; SELECT '\'; UPDATE users SET ssn='2' WHERE id = 1; -- '",
    );
    assert!(out.contains("ssn='U1syXQ=='"), "{out}");
    let both = state(Some("shop"), "ANSI_QUOTES,NO_BACKSLASH_ESCAPES", "utf8mb4");
    let out = run(
        &w,
        &both,
        "app",
        br"SELECT '\'; UPDATE users SET ssn='2' WHERE id = 1; -- '",
    );
    assert!(out.contains("ssn='U1syXQ=='"), "{out}");
    let out = run(
        &w,
        &plain,
        "app",
        br"SET sql_mode='NO_BACKSLASH_ESCAPES'; SELECT '\'; UPDATE users SET ssn='2' WHERE id = 1; -- '",
    );
    assert!(out.contains("ssn='U1syXQ=='"), "{out}");
    // A mode change myveil cannot read, followed by more statements: refused.
    assert!(
        run(
            &w,
            &plain,
            "app",
            b"SET sql_mode=@m; UPDATE users SET ssn='3'"
        )
        .starts_with("REFUSE")
    );
}

#[test]
fn dependents_are_named_with_their_database() {
    let w = world();
    let other = state(Some("other"), DEFAULT_MODE, "utf8mb4");
    let elsewhere = state(Some("elsewhere"), DEFAULT_MODE, "utf8mb4");
    // `other.leak` reaches shop.users: refused where `leak` means it, qualified or not.
    assert!(run(&w, &other, "app", b"CALL leak()").starts_with("REFUSE"));
    assert!(run(&w, &elsewhere, "app", b"CALL other.leak()").starts_with("REFUSE"));
    assert!(run(&w, &elsewhere, "app", b"CALL `other` . `leak`()").starts_with("REFUSE"));
    // Another database's routine or view of the same name is its own.
    assert_eq!(run(&w, &elsewhere, "app", b"CALL leak()"), "PASS");
    assert_eq!(run(&w, &elsewhere, "app", b"CALL elsewhere.leak()"), "PASS");
    assert_eq!(
        run(&w, &other, "app", b"INSERT INTO v_users VALUES (1, 'x')"),
        "PASS"
    );
    // (DDL passes marked as a schema change.)
    assert_eq!(
        run(&w, &other, "app", b"CREATE VIEW v_users AS SELECT 1 AS one"),
        "PROTECT"
    );
    assert!(
        run(
            &w,
            &other,
            "app",
            b"INSERT INTO shop.v_users VALUES (1, 'x')"
        )
        .starts_with("REFUSE")
    );
}

#[test]
fn the_charset_decides_spaces_and_multibyte_characters() {
    let w = world();
    let latin1 = state(Some("shop"), DEFAULT_MODE, "latin1");
    let out = run(
        &w,
        &latin1,
        "app",
        b"UPDATE\xa0users\xa0SET\xa0ssn='4'\xa0WHERE id = 1",
    );
    assert!(out.contains("ssn='U1s0XQ=='"), "{out}");
    // gbk: 0xBF 0x5C is one character, so the quote after it ends the string.
    let gbk = state(Some("shop"), DEFAULT_MODE, "gbk");
    let out = run(
        &w,
        &gbk,
        "app",
        b"SELECT '\xbf\\'; UPDATE users SET ssn='5' WHERE id = 1",
    );
    assert!(
        out.contains("ssn='U1s1XQ=='"),
        "the UPDATE is a statement of its own, its ASCII value sealed: {out}"
    );
    // A gbk value that is not ASCII cannot be converted here: refused.
    let out = run(
        &w,
        &gbk,
        "app",
        b"UPDATE users SET ssn='\xc4\xe3' WHERE id = 1",
    );
    assert!(out.starts_with("REFUSE"), "{out}");
    // Unknown character sets are refused outright.
    let odd = state(Some("shop"), DEFAULT_MODE, "ucs2");
    assert!(run(&w, &odd, "app", b"SELECT 1").starts_with("REFUSE"));
}

#[test]
fn the_database_comes_from_the_session_and_from_use() {
    let w = world();
    let other = state(Some("other"), DEFAULT_MODE, "utf8mb4");
    // In a database without protected tables, statements naming `users` pass untouched.
    assert_eq!(run(&w, &other, "app", b"UPDATE users SET ssn='x'"), "PASS");
    assert_eq!(
        run(
            &w,
            &other,
            "app",
            b"SELECT /*!40001 SQL_NO_CACHE */ * FROM users"
        ),
        "PASS"
    );
    assert_eq!(
        run(&w, &other, "app", b"SELECT email FROM t LOCK IN SHARE MODE"),
        "PASS"
    );
    // Qualified, or after a USE in the same text, they are protected.
    let out = run(
        &w,
        &other,
        "app",
        b"UPDATE shop.users SET ssn='6' WHERE id = 1",
    );
    assert!(out.contains("ssn='U1s2XQ=='"), "{out}");
    let out = run(
        &w,
        &other,
        "app",
        b"USE shop; UPDATE users SET ssn='7' WHERE id = 1",
    );
    assert!(out.contains("ssn='U1s3XQ=='"), "{out}");
    let out = run(
        &w,
        &other,
        "app",
        b"USE shop#x\n; UPDATE users SET ssn='8' WHERE id = 1",
    );
    assert!(out.contains("ssn='U1s4XQ=='"), "{out}");
}

#[test]
fn dynamic_sql_is_refused_unless_it_is_one_literal() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let other = state(Some("other"), DEFAULT_MODE, "utf8mb4");
    for sql in [
        &b"EXECUTE IMMEDIATE CONCAT('UPDATE users SET ssn=', '''1''')"[..],
        b"EXECUTE IMMEDIATE @q",
        b"PREPARE s FROM @q",
        b"PREPARE s FROM CONCAT('UPDATE us', 'ers SET ssn=1')",
        b"BEGIN NOT ATOMIC PREPARE s FROM @q; EXECUTE s; END",
    ] {
        for st in [&shop, &other] {
            let out = run(&w, st, "app", sql);
            assert!(
                out.starts_with("REFUSE"),
                "{}: {out}",
                String::from_utf8_lossy(sql)
            );
        }
    }
    // Adjacent literals are one literal: analyzed whole.
    let out = run(
        &w,
        &other,
        "app",
        b"PREPARE s FROM 'UPDATE shop.us' 'ers SET ssn=? WHERE id = 1'",
    );
    assert!(
        out.starts_with("PREPARE s FROM 'UPDATE shop.users SET ssn=? WHERE id = 1'"),
        "{out}"
    );
    let out = run(
        &w,
        &shop,
        "app",
        b"EXECUTE IMMEDIATE 'UPDATE users SET ssn=''9'' WHERE id = 1'",
    );
    assert!(out.contains("ssn=''U1s5XQ=='' WHERE"), "{out}");
    // A routine that reaches protected data where myveil cannot see it.
    assert!(run(&w, &other, "app", b"CALL leak()").starts_with("REFUSE"));
}

#[test]
fn ddl_on_protected_tables_follows_the_allowlist() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    for ok in [
        &b"ALTER TABLE users ADD INDEX i (name)"[..],
        b"ALTER TABLE users ADD COLUMN note VARCHAR(10) DEFAULT 'x'",
        b"ALTER TABLE users ENGINE=InnoDB",
        b"/*!40000 ALTER TABLE `users` DISABLE KEYS */",
        b"CREATE TABLE IF NOT EXISTS users (id INT, email VARBINARY(400), ssn VARCHAR(200) DEFAULT NULL)",
        b"DROP TABLE users",
        b"ANALYZE TABLE users",
        b"LOCK TABLES users READ /*!32311 LOCAL */",
        b"SHOW CREATE TABLE users",
    ] {
        let out = run(&w, &shop, "app", ok);
        assert!(!out.starts_with("REFUSE"), "{}: {out}", String::from_utf8_lossy(ok));
    }
    for bad in [
        &b"ALTER TABLE users ALTER COLUMN ssn SET DEFAULT '123'"[..],
        b"ALTER TABLE users MODIFY ssn VARCHAR(300)",
        b"ALTER TABLE users RENAME TO users2",
        b"ALTER TABLE users ADD COLUMN copy VARCHAR(400) AS (ssn)",
        b"RENAME TABLE users TO old_users",
        b"CREATE TABLE copy LIKE users",
        b"CREATE TABLE copy AS SELECT * FROM users",
        b"CREATE TABLE IF NOT EXISTS users (id INT, ssn VARCHAR(200) DEFAULT 'x')",
        b"CREATE VIEW v2 AS SELECT ssn FROM users",
        b"CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW SET NEW.ssn = 'x'",
    ] {
        let out = run(&w, &shop, "app", bad);
        assert!(
            out.starts_with("REFUSE"),
            "{}: {out}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn reads_follow_the_origin_of_each_column() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let shapes = |sql: &[u8]| match decide_in(&w, &shop, "app", sql, Command::Query).outcome {
        Outcome::Protect(p) => p.shapes,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(sql)),
    };
    use crate::sql::analyze::Out;
    let email = Out::Cell {
        column: 0,
        key: None,
    };
    for sql in [
        &b"SELECT x FROM (SELECT email AS x FROM users) d"[..],
        b"WITH c AS (SELECT email FROM users) SELECT email FROM c",
        b"SELECT (SELECT email FROM users WHERE id = 1)",
        b"SELECT email FROM users UNION ALL SELECT email FROM users",
        b"SELECT mail FROM v_users",
        b"SELECT email FROM users; SELECT 42",
    ] {
        let s = shapes(sql);
        assert_eq!(
            s[0].as_ref().map(|s| s.columns.clone()),
            Some(vec![email]),
            "{}",
            String::from_utf8_lossy(sql)
        );
    }
    let s = shapes(b"SELECT email FROM users; SELECT 42");
    assert_eq!(s.len(), 2);
    assert!(
        s[1].is_none(),
        "a statement that reaches nothing is not transformed"
    );
    for bad in [
        &b"SELECT email FROM users UNION SELECT name FROM users"[..],
        b"SELECT email FROM users UNION SELECT email FROM users",
        b"SELECT ssn INTO @v FROM users",
        b"INSERT INTO orders (note) SELECT ssn FROM users",
        b"SELECT DISTINCT email FROM users",
        b"SELECT email FROM users ORDER BY 1",
        b"SELECT UPPER(email) FROM users",
    ] {
        let out = run(&w, &shop, "app", bad);
        assert!(
            out.starts_with("REFUSE"),
            "{}: {out}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn every_literal_form_is_sealed_whole() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let cases: &[(&[u8], &str)] = &[
        (b"UPDATE users SET ssn = 'a' 'b' WHERE id = 1", "S[ab]"),
        (b"UPDATE users SET ssn = _utf8mb4'cd' WHERE id = 1", "S[cd]"),
        (b"UPDATE users SET ssn = N'ef' WHERE id = 1", "S[ef]"),
        (b"UPDATE users SET ssn = X'4748' WHERE id = 1", "S[GH]"),
        (b"UPDATE users SET ssn = 0x494A WHERE id = 1", "S[IJ]"),
    ];
    use base64::Engine;
    for (sql, want) in cases {
        let out = run(&w, &shop, "app", sql);
        let sealed = base64::engine::general_purpose::STANDARD.encode(want);
        assert!(
            out.contains(&format!("ssn = '{sealed}'")),
            "{}: {out}",
            String::from_utf8_lossy(sql)
        );
    }
}

#[test]
fn masked_roles_get_no_answers() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    for sql in [
        &b"SELECT id FROM users WHERE email = 'a@b.c'"[..],
        b"INSERT INTO users (id, email) VALUES (1, 'a@b.c')",
        b"INSERT IGNORE INTO users (id, email) VALUES (1, 'a@b.c')",
        b"DELETE FROM users WHERE email = 'a@b.c'",
        b"SELECT ssn FROM users",
    ] {
        let out = run(&w, &shop, "support", sql);
        assert!(
            out.starts_with("REFUSE"),
            "{}: {out}",
            String::from_utf8_lossy(sql)
        );
    }
    assert_eq!(
        run(&w, &shop, "support", b"SELECT email FROM users"),
        "PROTECT"
    );
}

#[test]
fn work_is_bounded() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let deep = format!("SELECT id FROM users WHERE id = 1{}", "+1".repeat(5_000));
    assert!(run(&w, &shop, "app", deep.as_bytes()).starts_with("REFUSE"));
    let nested = format!(
        "SELECT id FROM users WHERE id = {}1{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert!(run(&w, &shop, "app", nested.as_bytes()).starts_with("REFUSE"));
    // A long list is flat: fine.
    let list = format!(
        "SELECT id FROM users WHERE id IN ({})",
        (0..20_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(run(&w, &shop, "app", list.as_bytes()), "PROTECT");
}

#[test]
fn the_store_schema_is_never_reached() {
    let w = world();
    let other = state(Some("other"), DEFAULT_MODE, "utf8mb4");
    for sql in [
        &b"SELECT * FROM myveil.sql_tokens"[..],
        b"USE myveil",
        b"PREPARE s FROM 'DELETE FROM `myveil`.revoked_jwt'",
    ] {
        let out = run(&w, &other, "app", sql);
        assert!(
            out.contains("Access denied"),
            "{}: {out}",
            String::from_utf8_lossy(sql)
        );
    }
}

#[test]
fn a_ciphertext_role_with_write_restores_cells_as_they_were() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    // A dump's row: the envelope and its blind index as stored. The envelope is kept, the
    // blind index recomputed from it; a value that is not an envelope is sealed.
    let out = run(
        &w,
        &shop,
        "dumper",
        b"INSERT INTO users VALUES (1, _binary 'S[a@b.c]', _binary 'stale index', NULL, 'Ann')",
    );
    assert_eq!(
        out,
        "INSERT INTO users (`id`, `email`, `email_bidx`, `ssn`, `name`) VALUES (1, X'S[a@b.c]', X'B0[a@b.c]', NULL, 'Ann')"
    );
    let out = run(
        &w,
        &shop,
        "dumper",
        b"INSERT INTO users (id, email, email_bidx) VALUES (2, 'plain@b.c', NULL)",
    );
    assert_eq!(
        out,
        "INSERT INTO users (id, email, email_bidx) VALUES (2, X'S[plain@b.c]', X'B0[plain@b.c]')"
    );
    // Without write the role writes nothing; other roles never write the index themselves.
    assert!(
        run(
            &w,
            &shop,
            "support",
            b"INSERT INTO users (id, email) VALUES (3, 'x')"
        )
        .starts_with("REFUSE")
    );
    assert!(
        run(
            &w,
            &shop,
            "app",
            b"INSERT INTO users (id, email, email_bidx) VALUES (3, 'x', 'y')"
        )
        .starts_with("REFUSE")
    );
}

/// The second attack run's findings: each is refused, or sealed as the server reads it.
#[test]
fn the_second_attack_run_is_closed() {
    let w = world();
    let plain = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let elsewhere = state(Some("other"), DEFAULT_MODE, "utf8mb4");
    let refused = |st: &SessionState, role: &str, sql: &[u8]| {
        let out = run(&w, st, role, sql);
        assert!(
            out.starts_with("REFUSE"),
            "{}: {out}",
            String::from_utf8_lossy(sql)
        );
    };
    // F5, F8: dynamic SQL that changes the mode or the database must end the text.
    refused(
        &plain,
        "app",
        br"EXECUTE IMMEDIATE 'SET sql_mode=''NO_BACKSLASH_ESCAPES'''; SELECT '\' ; UPDATE shop.users SET ssn='1' WHERE id=2 #'",
    );
    refused(
        &elsewhere,
        "app",
        b"EXECUTE IMMEDIATE 'USE shop'; UPDATE users SET ssn='1' WHERE id=1",
    );
    refused(
        &elsewhere,
        "app",
        b"PREPARE s FROM 'USE shop'; EXECUTE s; UPDATE users SET ssn='1' WHERE id=2",
    );
    // F1 addendum: EXECUTE of a statement prepared where myveil did not see it.
    refused(&elsewhere, "app", b"EXECUTE sx USING 'x', 2");
    // F11: a column named `event` is not a stored program swallowing the rest.
    refused(
        &elsewhere,
        "app",
        b"CREATE TABLE IF NOT EXISTS other.y (event INT); PREPARE s FROM CONCAT('UPDATE sh', 'op.users SET ssn=1'); EXECUTE s",
    );
    assert_eq!(
        run(
            &w,
            &elsewhere,
            "app",
            b"CREATE TABLE y (event INT, `function` INT)"
        ),
        "PROTECT",
        "a table definition passes (the snapshot is read again after it)"
    );
    // F1, F12: stored programs that build SQL or change tracking or the mode.
    for body in [
        &b"CREATE PROCEDURE other.p() BEGIN PREPARE st FROM CONCAT('select ssn from sh', 'op.users'); EXECUTE st; END"[..],
        b"CREATE PROCEDURE other.nt() SET session_track_system_variables='', session_track_schema=OFF",
        b"CREATE DEFINER = 'root'@'localhost' PROCEDURE other.m() BEGIN SET sql_mode = 'ANSI_QUOTES'; END",
    ] {
        refused(&elsewhere, "app", body);
    }
    // F7: aliases and table names that differ only in case.
    let out = run(
        &w,
        &plain,
        "app",
        b"UPDATE other.x t JOIN shop.users T ON T.id = 1 SET T.ssn = '1'",
    );
    assert!(out.contains("T.ssn = 'U1sxXQ=='"), "{out}");
    let out = run(
        &w,
        &plain,
        "support",
        b"SELECT (SELECT T.ssn) FROM other.x t, shop.users T",
    );
    assert!(
        out.starts_with("REFUSE") && out.contains("users.ssn"),
        "{out}"
    );
    refused(
        &plain,
        "app",
        b"SELECT LENGTH(T.ssn) FROM other.x t, shop.users T",
    );
    let out = run(
        &w,
        &plain,
        "app",
        b"UPDATE other.Users JOIN shop.users ON shop.users.id = 2 SET users.ssn = '1'",
    );
    assert!(out.contains("users.ssn = 'U1sxXQ=='"), "{out}");
    // F2, F3: rows or a name moved into a protected table.
    refused(
        &elsewhere,
        "app",
        b"ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE shop.users",
    );
    refused(&elsewhere, "app", b"RENAME TABLE other.c2 TO shop.users");
    refused(
        &elsewhere,
        "app",
        b"ALTER TABLE other.c2 RENAME TO shop.users",
    );
    refused(&plain, "support", b"DROP TABLE shop.users");
    refused(&plain, "support", b"TRUNCATE TABLE users");
    assert!(!run(&w, &plain, "app", b"TRUNCATE TABLE users").starts_with("REFUSE"));
    // F4: a statement on protected data after a schema change in the same text.
    refused(
        &plain,
        "app",
        b"ALTER TABLE users ADD COLUMN note INT; INSERT INTO users VALUES (1, 'a', NULL, NULL, 'n', 2)",
    );
    // F6: a scope keyword holds for the assignments after it.
    refused(
        &plain,
        "app",
        br"SET GLOBAL max_connect_errors=100, sql_mode='NO_BACKSLASH_ESCAPES'; SELECT 'a\' , ' ; UPDATE shop.users SET ssn=0x41 WHERE id=1 #'",
    );
    // F13: a query in parentheses right after the table name.
    refused(
        &elsewhere,
        "support",
        b"CREATE TABLE other.c4 (SELECT ssn, email FROM shop.users)",
    );
    // F14: a long chain of set operations.
    let chain = format!(
        "SELECT id FROM users{}",
        " UNION ALL SELECT id FROM users".repeat(30_000)
    );
    refused(&plain, "app", chain.as_bytes());
    // F9: many changes of how the text is read.
    refused(
        &elsewhere,
        "app",
        "SET NAMES latin1;SET NAMES utf8mb4;".repeat(20).as_bytes(),
    );
    // F16: tables reached through a name in a string, and server code.
    refused(
        &elsewhere,
        "app",
        b"CREATE TABLE f (id INT) ENGINE=FEDERATED CONNECTION='mysql://root@127.0.0.1/shop/users'",
    );
    refused(&elsewhere, "app", b"INSTALL SONAME 'ha_federatedx'");
    refused(
        &elsewhere,
        "app",
        b"CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST '127.0.0.1')",
    );
}

/// The session cache gives the decision the analysis would: statements that differ only in
/// literals share an entry only when the analysis did not read them.
#[test]
fn cached_decisions_are_the_analysis_decisions() {
    let w = world();
    let st = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let cache = std::sync::Mutex::new(ShapeCache::default());
    let with = |sql: &[u8], cache: Option<&std::sync::Mutex<ShapeCache>>| {
        shown(decide_cached(&w, &st, "support", sql, Command::Query, cache).outcome)
    };
    for sql in [
        &b"SELECT id, email FROM users WHERE id = 1"[..],
        b"SELECT id, email FROM users WHERE id = 2",
        b"SELECT id, email FROM users WHERE id = 'x'",
        b"SELECT id, email FROM users ORDER BY 1",
        b"SELECT id, email FROM users ORDER BY 2",
        b"SELECT id, email FROM users GROUP BY 1",
        b"SELECT id, email FROM users GROUP BY 2",
        b"SELECT email FROM users WHERE email = 'a@b.c'",
        b"SELECT email FROM users WHERE email = 'x@y.z'",
        b"SELECT id FROM users WHERE email = NULL",
        b"SELECT id FROM users WHERE email = 5",
        b"SELECT ssn FROM users WHERE id = 1",
        b"SELECT ssn FROM users WHERE id = 2",
        b"UPDATE users SET name = 'a' WHERE id = 1",
        b"UPDATE users SET name = 'b' WHERE id = 2",
        b"UPDATE users SET email = 'b' WHERE id = 2",
    ] {
        assert_eq!(
            with(sql, Some(&cache)),
            with(sql, None),
            "{}",
            String::from_utf8_lossy(sql)
        );
    }
    let entries = cache.lock().expect("cache").entries.len();
    assert!(entries >= 2, "plain reads are kept ({entries})");
}

/// A cached plan rewrites the next statement of its form exactly as the analysis would:
/// values sealed, indexed and searched where the analysis puts them, under every mode and
/// character set that changes how a literal reads; a form whose values cannot be traced is
/// analyzed every time.
#[test]
fn plans_replay_what_the_analysis_would_write() {
    let w = world_with(
        &format!(
            r#"{POLICY}
[[column]]
database = "shop"
table = "users"
column = "phone"
type = "varchar(20)"
row_key = "id"
roles = {{ app = "plaintext" }}

[[column]]
database = "shop"
table = "users"
column = "age"
type = "int"
roles = {{ app = "plaintext" }}
"#
        ),
        &["id", "email", "email_bidx", "ssn", "name", "phone", "age"],
    );
    // Each family: statements of one form, the first primes the cache.
    let families: &[&[&str]] = &[
        &[
            "INSERT INTO users (id, email, ssn, name) VALUES (1, 'a@b.c', '123', 'n')",
            "INSERT INTO users (id, email, ssn, name) VALUES (2, 'x@y.z', '456', 'm')",
            "INSERT INTO users (id, email, ssn, name) VALUES (3, '', '', '')",
            "INSERT INTO users (id, email, ssn, name) VALUES (4, 'same', 'same', 'n')",
            "INSERT INTO users (id, email, ssn, name) VALUES (5, 'é', 'ü', 'x')",
            "INSERT INTO users (id, email, ssn, name) VALUES (6, 'it''s', 'a\\'b', '\\n')",
            "INSERT INTO users (id, email, ssn, name) VALUES (7, 'q', 'q', 'q')",
            "INSERT INTO users (id, email, ssn, name) VALUES (8, 'r', 's', 't')",
        ],
        &[
            "INSERT INTO users (id, email) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "INSERT INTO users (id, email) VALUES (4, 'd'), (5, 'e'), (6, 'f')",
            "INSERT INTO users (id, email) VALUES (7, 'g'), (8, 'g'), (9, 'h')",
            "INSERT INTO users (id, email) VALUES (7, 'i'), (8, 'j'), (9, 'k')",
        ],
        &[
            "INSERT INTO users (id, email, ssn) VALUES (1, 'a', 'b') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 'c'",
            "INSERT INTO users (id, email, ssn) VALUES (2, 'd', 'e') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 'f'",
            "INSERT INTO users (id, email, ssn) VALUES (3, 'g', 'h') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 'h'",
        ],
        &[
            "UPDATE users SET email = 'a', ssn = 'b' WHERE id = 1",
            "UPDATE users SET email = 'c', ssn = 'd' WHERE id = 2",
            "UPDATE users SET email = 'e', ssn = 'f' WHERE email = 'g'",
            "UPDATE users SET email = 'h', ssn = 'i' WHERE email = 'j'",
        ],
        &[
            "DELETE FROM users WHERE email = 'a@b.c'",
            "DELETE FROM users WHERE email = 'x@y.z'",
            "DELETE FROM users WHERE email IN ('a', 'b')",
            "DELETE FROM users WHERE email IN ('c', 'c')",
            "DELETE FROM users WHERE email IN ('d', 'e')",
            "DELETE FROM users WHERE email NOT IN ('f', 'g')",
        ],
        &[
            "SELECT id, email FROM users WHERE email = 'a' 'b'",
            "SELECT id, email FROM users WHERE email = 'c' 'd'",
            "SELECT id, email FROM users WHERE email = _latin1'é'",
            "SELECT id, email FROM users WHERE email = _latin1'x'",
            "SELECT id, email FROM users WHERE email = X'616263'",
            "SELECT id, email FROM users WHERE email = X'646566'",
            "SELECT id, email FROM users WHERE email = N'abc'",
            "SELECT id, email FROM users WHERE email = N'def'",
            "SELECT id, email FROM users WHERE email = 5",
            "SELECT id, email FROM users WHERE email = 6",
        ],
        &[
            "INSERT INTO users (id, phone) VALUES (10, '555')",
            "INSERT INTO users (id, phone) VALUES (11, '556')",
            "INSERT INTO users (id, phone) VALUES (12, '12')",
            "INSERT INTO users (id, phone) VALUES (13, '14')",
            "INSERT INTO users (id, phone) VALUES ('14', '15')",
            "UPDATE users SET phone = '1' WHERE id = 2",
            "UPDATE users SET phone = '3' WHERE id = 4",
        ],
        &[
            "INSERT INTO users (id, age) VALUES (1, 5)",
            "INSERT INTO users (id, age) VALUES (2, 500)",
            "INSERT INTO users (id, age) VALUES (3, -5)",
            "INSERT INTO users (id, age) VALUES (4, -6)",
            "INSERT INTO users (id, age) VALUES (5, '7')",
            "INSERT INTO users (id, age) VALUES (6, 'x')",
            "INSERT INTO users (id, age) VALUES (7, 8.5)",
        ],
        &[
            "UPDATE users SET email = 'a' /*!100000 , ssn = 'b' */ WHERE id = 1",
            "UPDATE users SET email = 'c' /*!100000 , ssn = 'd' */ WHERE id = 2",
            "UPDATE users SET email = /*!100000 'e' */ WHERE id = 3",
            "UPDATE users SET email = /*!100000 'f' */ WHERE id = 4",
        ],
    ];
    let mut replayed = 0;
    for mode in [
        DEFAULT_MODE,
        "EMPTY_STRING_IS_NULL",
        "NO_BACKSLASH_ESCAPES",
        "ANSI_QUOTES",
    ] {
        for charset in ["utf8mb4", "latin1"] {
            let st = state(Some("shop"), mode, charset);
            for role in ["app", "support", "dumper"] {
                let cache = std::sync::Mutex::new(ShapeCache::default());
                let with = |sql: &[u8], cache: Option<&std::sync::Mutex<ShapeCache>>| {
                    shown(decide_cached(&w, &st, role, sql, Command::Query, cache).outcome)
                };
                for family in families {
                    for sql in *family {
                        // In latin1 the client sends latin1 bytes.
                        let bytes: Vec<u8> = if charset == "latin1" {
                            sql.chars().map(|c| c as u32 as u8).collect()
                        } else {
                            sql.as_bytes().to_vec()
                        };
                        let before = cache.lock().expect("cache").hits();
                        assert_eq!(
                            with(&bytes, Some(&cache)),
                            with(&bytes, None),
                            "{sql} ({role}, {mode}, {charset})"
                        );
                        let hit = cache.lock().expect("cache").hits() - before;
                        if std::env::var("PLAN_DEBUG").is_ok() {
                            eprintln!("{hit} {role} {mode} {charset} {sql}");
                        }
                        replayed += hit;
                    }
                }
            }
        }
    }
    // Most statements after the first of their family came from a plan.
    assert!(replayed >= 200, "plans replayed {replayed} times");
}

/// The session state a plan was made in is part of its key: the same text in another
/// database (where the protected table's columns are in another order) is planned anew.
#[test]
fn plans_are_kept_apart_by_the_session_state() {
    // The table is protected in every database.
    let anywhere = POLICY.replace("database = \"shop\"\n", "");
    let mut policy = Policy::default();
    policy.add_toml(&anywhere, "t").expect("policy");
    let schema = Snapshot::from_parts(
        vec![
            (
                ("shop".into(), "users".into()),
                meta(&["id", "email", "email_bidx", "ssn", "name"]),
            ),
            (
                ("other".into(), "users".into()),
                meta(&["id", "ssn", "email_bidx", "email", "name"]),
            ),
        ],
        vec![],
        vec![],
        vec![],
    );
    let reach = Reach::new(&policy, "t", &schema);
    let w = World {
        policy,
        schema,
        reach,
    };
    let cache = std::sync::Mutex::new(ShapeCache::default());
    let with = |db: &str, sql: &str, cache: Option<&std::sync::Mutex<ShapeCache>>| {
        let st = state(Some(db), DEFAULT_MODE, "utf8mb4");
        let d = decide_cached(&w, &st, "app", sql.as_bytes(), Command::Query, cache);
        rewritten(d.outcome, sql)
    };
    let implicit = |n: u32| format!("INSERT INTO users VALUES ({n}, 'v{n}', NULL, 'w{n}', 'x{n}')");
    for (db, n) in [
        ("shop", 1),
        ("shop", 2),
        ("other", 3),
        ("other", 4),
        ("shop", 5),
    ] {
        assert_eq!(
            with(db, &implicit(n), Some(&cache)),
            with(db, &implicit(n), None),
            "in {db}"
        );
    }
    assert!(cache.lock().expect("cache").hits() >= 2, "plans were used");
    assert_ne!(
        with("shop", &implicit(9), None),
        with("other", &implicit(9), None),
        "the two databases seal different positions"
    );
}

/// Plans and their keys keep no literal's value: a cache lives long, and the values are
/// personal data.
#[test]
fn plans_keep_no_values() {
    let w = world();
    let st = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let cache = std::sync::Mutex::new(ShapeCache::default());
    for sql in [
        "INSERT INTO users (id, email, ssn) VALUES (7, 'zq9secret@x.io', 'zq9ssn')",
        "UPDATE users SET email = N'zq9national' WHERE email = 'zq9where'",
        "SELECT id FROM users WHERE email IN ('zq9in', X'7A713968')",
    ] {
        assert!(matches!(
            decide_cached(&w, &st, "app", sql.as_bytes(), Command::Query, Some(&cache)).outcome,
            Outcome::Protect(_)
        ));
    }
    let c = cache.lock().expect("cache");
    assert_eq!(c.entries.len(), 3, "all three are cached");
    for (key, entry) in &c.entries {
        assert!(!key.windows(3).any(|w| w == b"zq9"), "a key holds a value");
        let shown = format!("{entry:?}");
        for needle in ["zq9", "122, 113, 57", "7A713968"] {
            assert!(!shown.contains(needle), "a plan holds a value: {shown}");
        }
    }
}

/// A plan holds the policy's columns by position and the schema's columns by order: a
/// policy reload or a schema change drops the session's plans (`ShapeCache::check`).
#[test]
fn plans_are_dropped_with_the_policy_or_schema_they_were_made_under() {
    let a = world();
    // The same columns declared in the other order.
    let at = POLICY.rfind("[[column]]").expect("two columns");
    let swapped = format!("{}\n{}", &POLICY[at..], &POLICY[..at]);
    let b_policy = world_with(&swapped, &["id", "email", "email_bidx", "ssn", "name"]).policy;
    let b = World {
        reach: Reach::new(&b_policy, "reloaded", &a.schema),
        policy: b_policy,
        schema: a.schema.clone(),
    };
    // The same policy over a table whose columns moved.
    let c = world_with(POLICY, &["id", "ssn", "email_bidx", "email", "name"]);
    let st = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let cache = std::sync::Mutex::new(ShapeCache::default());
    let with = |w: &World, sql: &str, cache: Option<&std::sync::Mutex<ShapeCache>>| {
        let d = decide_cached(w, &st, "app", sql.as_bytes(), Command::Query, cache);
        rewritten(d.outcome, sql)
    };
    let named = |n: u32| format!("INSERT INTO users (id, email, ssn) VALUES ({n}, 'e{n}', 's{n}')");
    let implicit = |n: u32| format!("INSERT INTO users VALUES ({n}, 'v{n}', NULL, 'w{n}', 'x{n}')");
    for n in 0..3 {
        assert_eq!(with(&a, &named(n), Some(&cache)), with(&a, &named(n), None));
        assert_eq!(
            with(&a, &implicit(n), Some(&cache)),
            with(&a, &implicit(n), None)
        );
    }
    assert!(cache.lock().expect("cache").hits() >= 4, "plans were used");
    for (w, what) in [
        (&c, "schema changed"),
        (&b, "policy reloaded"),
        (&a, "back"),
    ] {
        for n in 3..5 {
            assert_eq!(
                with(w, &named(n), Some(&cache)),
                with(w, &named(n), None),
                "{what}"
            );
            assert_eq!(
                with(w, &implicit(n), Some(&cache)),
                with(w, &implicit(n), None),
                "{what}"
            );
        }
    }
    // The schema change moves the values (a stale plan would seal them where they were).
    assert_ne!(with(&a, &implicit(9), None), with(&c, &implicit(9), None));
}

#[test]
fn the_corpus_findings_are_closed() {
    let w = world();
    let st = state(Some("shop"), "STRICT_TRANS_TABLES", "utf8mb4");
    let sealed = |q: &str| {
        let out = run(&w, &st, "app", q.as_bytes());
        assert!(
            !out.starts_with("REFUSE") && out != "PASS" && !out.contains("'x'"),
            "{q} => {out}"
        );
    };
    // The parser took IGNORE for the table and `users` for its alias.
    sealed("UPDATE IGNORE users SET ssn = 'x' WHERE id = 1");
    sealed("UPDATE LOW_PRIORITY IGNORE users SET ssn = 'x' WHERE id = 1");
    sealed("UPDATE /*! IGNORE */ shop.users SET ssn = 'x'");
    sealed("UPDATE IGNORE users u SET u.ssn = 'x'");
    let refused = |q: &str| {
        let out = run(&w, &st, "app", q.as_bytes());
        assert!(out.starts_with("REFUSE"), "{q} => {out}");
    };
    // WAIT/NOWAIT were taken for a spec of their own, allowing the one after them.
    refused("ALTER TABLE IF EXISTS users WAIT 2 ALTER ssn SET DEFAULT 'x'");
    refused("ALTER TABLE users NOWAIT ALTER ssn SET DEFAULT 'x'");
    refused("RENAME TABLE orders WAIT 1 TO users");
    assert_eq!(
        run(&w, &st, "app", b"ALTER TABLE users NOWAIT ADD COLUMN x INT"),
        "PROTECT"
    );
    // Writes that name the protected table but touch only plain columns still run.
    assert_eq!(
        run(&w, &st, "app", b"UPDATE users SET name = 'x' WHERE id = 1"),
        "PROTECT"
    );
    assert_eq!(
        run(
            &w,
            &st,
            "app",
            b"UPDATE orders SET note = 'users' WHERE id = 1"
        ),
        "PASS"
    );
    // A view that reaches protected data through a routine runs it when read.
    let mut v = world();
    v.schema = Snapshot::from_parts(
        vec![(
            ("shop".into(), "users".into()),
            meta(&["id", "email", "ssn"]),
        )],
        vec![(
            ("shop".into(), "v_put".into()),
            "select `shop`.`f_put`(1) AS `x`".into(),
        )],
        vec![],
        vec![
            Dependent {
                kind: "function".into(),
                database: "shop".into(),
                name: "f_put".into(),
                reads: "users".into(),
                on_table: None,
                reads_refused: false,
            },
            Dependent {
                kind: "view".into(),
                database: "shop".into(),
                name: "v_put".into(),
                reads: "f_put".into(),
                on_table: None,
                reads_refused: true,
            },
        ],
    );
    v.reach = Reach::new(&v.policy, "test", &v.schema);
    let out = run(&v, &st, "support", b"SELECT * FROM v_put");
    assert!(out.starts_with("REFUSE"), "{out}");
    // A view over the table alone is read through.
    assert!(!run(&w, &st, "app", b"SELECT mail FROM v_users").starts_with("REFUSE"));
}

/// `Shown`, with every column in a migration's mixed state.
struct MixedShown;

impl crate::sql::rewrite::Sealer for MixedShown {
    fn seal(
        &self,
        c: &crate::policy::Protected,
        p: &[u8],
        k: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error> {
        Fake.seal(c, p, k)
    }
    fn blind(
        &self,
        c: &crate::policy::Protected,
        p: &[u8],
    ) -> Result<[u8; 32], crate::crypto::Error> {
        Fake.blind(c, p)
    }
    fn blind_all(
        &self,
        c: &crate::policy::Protected,
        p: &[u8],
    ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
        Fake.blind_all(c, p)
    }
    fn blind_keys(&self, c: &crate::policy::Protected) -> usize {
        Fake.blind_keys(c)
    }
    fn open(&self, c: &crate::policy::Protected, s: &[u8], k: Option<&[u8]>) -> Option<Vec<u8>> {
        Fake.open(c, s, k)
    }
    fn mixed(&self, _: &crate::policy::Protected) -> bool {
        true
    }
}

#[test]
fn myveils_own_schema_is_out_of_reach() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    for sql in [
        &b"INSERT INTO myveil.columns VALUES ('shop', 'users', 'ssn', 'mixed')"[..],
        b"UPDATE `myveil`.`columns` SET state = 'mixed'",
        b"SELECT * FROM myveil.jobs",
        b"DELETE FROM myveil . columns",
        b"SHOW TABLES FROM myveil",
        b"USE myveil",
        b"SELECT 1 FROM shop.users JOIN myveil.columns c ON 1",
    ] {
        for role in ["app", "support"] {
            // Without a token store there (the admin port off), the guard's own rule.
            let prepared = HashMap::new();
            let cx = Context {
                state: &shop,
                policy: &w.policy,
                schema: &w.schema,
                reach: &w.reach,
                role,
                server_version: 101_119,
                store_schema: None,
                sealer: &Fake,
                sql_prepared: &prepared,
                max_analyzed_bytes: 1 << 20,
                cache: None,
            };
            let out = shown(decide(sql, Command::Query, &cx).outcome);
            assert!(
                out.starts_with("REFUSE") && out.contains("myveil schema"),
                "{role}: {}: {out}",
                String::from_utf8_lossy(sql)
            );
        }
    }
}

/// `users` while a migration retypes `ssn` through its shadow column.
fn shadow_world() -> World {
    let mut w = world_with(
        POLICY,
        &["id", "email", "email_bidx", "ssn", "ssn__myveil", "name"],
    );
    w.schema.shadows = vec![(
        "shop".into(),
        "users".into(),
        "ssn__myveil".into(),
        "ssn".into(),
    )];
    w.reach = Reach::new(&w.policy, "test", &w.schema);
    w
}

#[test]
fn a_shadow_column_reads_as_its_protected_column_and_takes_no_writes() {
    let w = shadow_world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    for sql in [
        &b"UPDATE users SET ssn__myveil = '123-45-6789' WHERE id = 1"[..],
        b"INSERT INTO users (id, ssn__myveil) VALUES (9, '123-45-6789')",
        b"UPDATE orders o JOIN users u ON u.id = o.user_id SET u.`SSN__MYVEIL` = o.note",
    ] {
        let out = run(&w, &shop, "app", sql);
        assert!(
            out.starts_with("REFUSE") && out.contains("shadow"),
            "{}: {out}",
            String::from_utf8_lossy(sql)
        );
    }
    // Read as the column it shadows: a cell for every role's rule, never plain.
    for sql in [
        &b"SELECT ssn__myveil FROM users"[..],
        b"SELECT * FROM users",
    ] {
        let d = decide_in(&w, &shop, "app", sql, Command::Query);
        let Outcome::Protect(p) = d.outcome else {
            panic!("{}: {:?}", String::from_utf8_lossy(sql), d.outcome)
        };
        let shape = format!("{:?}", p.shapes);
        let ssn = w
            .policy
            .columns()
            .iter()
            .position(|c| c.column == "ssn")
            .expect("ssn");
        let cells = shape.matches(&format!("column: {ssn}")).count();
        let expected = if sql.starts_with(b"SELECT *") { 2 } else { 1 };
        assert_eq!(cells, expected, "{}: {shape}", String::from_utf8_lossy(sql));
    }
}

#[test]
fn a_search_in_the_mixed_state_also_matches_plaintext_rows() {
    let w = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let prepared = HashMap::new();
    let cx = |sealer: &'static dyn crate::sql::rewrite::Sealer| Context {
        state: &shop,
        policy: &w.policy,
        schema: &w.schema,
        reach: &w.reach,
        role: "app",
        server_version: 101_119,
        store_schema: Some("myveil"),
        sealer,
        sql_prepared: &prepared,
        max_analyzed_bytes: 1 << 20,
        cache: None,
    };
    let text = |d: Decision| match d.outcome {
        Outcome::Protect(p) => readable(&p.text.expect("rewritten")),
        other => panic!("{other:?}"),
    };
    let sql = b"SELECT id FROM users WHERE email = 'ann@x.io'";
    let done = text(decide(sql, Command::Query, &cx(&Fake)));
    assert_eq!(
        done,
        "SELECT id FROM users WHERE `email_bidx` IN (X'B0[ann@x.io]')"
    );
    let mixed = text(decide(sql, Command::Query, &cx(&MixedShown)));
    assert_eq!(
        mixed,
        "SELECT id FROM users WHERE (`email_bidx` IN (X'B0[ann@x.io]') OR `email` IN (_utf8mb4 X'ann@x.io'))"
    );
    let negated = text(decide(
        b"SELECT id FROM users WHERE email <> 'ann@x.io'",
        Command::Query,
        &cx(&MixedShown),
    ));
    assert_eq!(
        negated,
        "SELECT id FROM users WHERE ((`email_bidx` IS NOT NULL AND `email_bidx` NOT IN (X'B0[ann@x.io]')) OR (`email_bidx` IS NULL AND `email` NOT IN (_utf8mb4 X'ann@x.io')))"
    );
    // Prepared, mixed or not: one form, whose plaintext parameter is sent only while the
    // column is mixed (the execute decides).
    let d = decide(
        b"SELECT id FROM users WHERE email = ?",
        Command::Prepare,
        &cx(&MixedShown),
    );
    let Outcome::Protect(p) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(
        readable(&p.text.clone().expect("rewritten")),
        "SELECT id FROM users WHERE (`email_bidx` IN (?, ?, ?) OR `email` IN (?))"
    );
    let uses = format!("{:?}", p.params);
    assert!(
        uses.starts_with("[BlindSearch")
            && uses.ends_with("MixedPlain { param: 0, column: \"users.email\" }]"),
        "{uses}"
    );
    let d = decide(
        b"SELECT id FROM users WHERE email = ?",
        Command::Prepare,
        &cx(&Fake),
    );
    let Outcome::Protect(q) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(q.text, p.text, "the same form when not mixed");
}

/// A context over a world with SQL-level prepared statements.
fn with_prepared<'a>(
    w: &'a World,
    st: &'a SessionState,
    prepared: &'a HashMap<String, SqlPrepared>,
) -> Context<'a> {
    Context {
        state: st,
        policy: &w.policy,
        schema: &w.schema,
        reach: &w.reach,
        role: "app",
        server_version: 101_119,
        store_schema: Some("myveil"),
        sealer: &Fake,
        sql_prepared: prepared,
        max_analyzed_bytes: 1 << 20,
        cache: None,
    }
}

#[test]
fn a_sql_level_prepared_statement_planned_before_a_shadow_window_is_not_executed_in_it() {
    let before = world();
    let shop = state(Some("shop"), DEFAULT_MODE, "utf8mb4");
    let d = decide(
        b"PREPARE s FROM 'SELECT ssn FROM users WHERE id = ?'",
        Command::Query,
        &with_prepared(&before, &shop, &HashMap::new()),
    );
    let mut prepared = HashMap::new();
    for e in d.effects {
        if let Effect::Prepared(name, p) = e {
            prepared.insert(name, p);
        }
    }
    assert!(prepared.get("s").is_some_and(|p| p.uses.is_some()));
    let run = b"EXECUTE s USING @id";
    assert!(matches!(
        decide(
            run,
            Command::Query,
            &with_prepared(&before, &shop, &prepared)
        )
        .outcome,
        Outcome::Protect(_)
    ));
    // The shadow window opened since: its text on the server reads the old column.
    let during = shadow_world();
    let out = shown(
        decide(
            run,
            Command::Query,
            &with_prepared(&during, &shop, &prepared),
        )
        .outcome,
    );
    assert!(
        out.starts_with("REFUSE") && out.contains("PREPARE it again"),
        "{out}"
    );
}
