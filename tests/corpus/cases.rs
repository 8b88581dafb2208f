//! The corpus, by class. Templates: `{{A}}`/`{{B}}` the protected database and its
//! unprotected twin, `{{c:TAG}}` (`c2`, `c3`) a fresh canary for a column (em, fn, ph, ssn,
//! card, body), `{{s:TAG:N}}` the seeded canary of row N, `{{g:TAG}}` an oracle's guess
//! (existing or absent), `{{x:…}}`/`{{b64:…}}`/`{{bits:…}}` hex, base64 or bit strings of those,
//! `{{env:TAG:N}}` the stored cell of a seeded row as hex, `{{p}}` a plain (non-secret) marker,
//! `{{twin}}` the value seeded in every column of row 5, `{{run}}` the run number,
//! `{{outfile}}` a server-side file path, `{{syn}}` a database name a case may create.

use super::Role::{Analyst, App, Auditor, Restorer, Support, Writer};
use super::{Case, Col, Item, ROLES, Role, StepOut, case, printable};

/// Writes a hex canary into users.ssn if the server reads backslashes literally.
const P_NBE: &str =
    r"SELECT 1 FROM plain WHERE v = '\'; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '";
/// Writes it if the server reads backslash escapes (and the proxy thinks it does not).
const P_NBE_OFF: &str =
    r"SELECT 1 FROM plain WHERE v = '\''; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '";
/// Writes it if the server reads "…" as an identifier.
const P_ANSI: &str = r#"SELECT 1 AS "a\"; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- ""#;
/// Writes it if the server reads "…" as a string (and the proxy thinks it is an identifier).
const P_ANSI_OFF: &str =
    r#"SELECT 1 AS "a\""; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- ""#;

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(legit());
    v.extend(sql_mode());
    v.extend(charsets());
    v.extend(current_db());
    v.extend(comments());
    v.extend(dynamic());
    v.extend(ddl());
    v.extend(writes());
    v.extend(reads());
    v.extend(oracles());
    v.extend(hashes());
    v.extend(bounds());
    v.extend(multi());
    v.extend(own_ideas());
    v.extend(connection_ids());
    v.extend(plans());
    v.extend(migrations());
    v.extend(multiplexed());
    let mut names = std::collections::BTreeSet::new();
    for c in &v {
        assert!(
            names.insert((c.class, c.name.clone())),
            "case named twice: {}",
            c.name
        );
    }
    v
}

fn row1() -> [Option<&'static str>; 4] {
    [
        Some("{{s:em:1}}"),
        Some("{{s:fn:1}}"),
        Some("{{s:ph:1}}"),
        Some("{{s:ssn:1}}"),
    ]
}

// ---------------------------------------------------------------------------------------
// Legitimate statements that must succeed (and give app the right plaintext)
// ---------------------------------------------------------------------------------------

fn legit() -> Vec<Case> {
    let l = |name: &str| case("legit", name);
    let r = row1();
    let mut v = vec![
        l("app reads a row")
            .q("SELECT email, full_name, phone, ssn FROM users WHERE id = 1")
            .expect(App, &[&r]),
        l("app reads with SELECT *")
            .q("SELECT * FROM comments WHERE id = 2")
            .expect(App, &[&[Some("2"), Some("2"), Some("{{s:body:2}}"), Some("c2")]]),
        l("app searches by email")
            .q("SELECT id, ssn FROM users WHERE email = '{{s:em:3}}'")
            .expect(App, &[&[Some("3"), Some("{{s:ssn:3}}")]]),
        l("app searches by email, normalized")
            .q("SELECT id FROM users WHERE email = '  {{s:em:2}}  '")
            .expect(App, &[&[Some("2")]]),
        l("app searches with IN")
            .q("SELECT id FROM users WHERE email IN ('{{s:em:1}}', 'nobody@example.com', '{{s:em:3}}') ORDER BY id")
            .expect(App, &[&[Some("1")], &[Some("3")]]),
        l("app searches with <>")
            .q("SELECT id FROM users WHERE email <> '{{s:em:1}}' ORDER BY id")
            .expect(App, &[&[Some("2")], &[Some("3")], &[Some("5")]]),
        l("app inserts and reads back")
            .q("INSERT INTO users (id, email, full_name, phone, ssn, note) VALUES (100, '{{c:em}}', '{{c:fn}}', '{{c:ph}}', '{{c:ssn}}', 'new')")
            .q("SELECT email, full_name, phone, ssn FROM users WHERE email = '{{c:em}}'")
            .expect(App, &[&[Some("{{c:em}}"), Some("{{c:fn}}"), Some("{{c:ph}}"), Some("{{c:ssn}}")]]),
        l("app updates and reads back")
            .q("UPDATE users SET ssn = '{{c:ssn}}', phone = '{{c:ph}}' WHERE id = 2")
            .q("SELECT ssn, phone FROM users WHERE id = 2")
            .expect(App, &[&[Some("{{c:ssn}}"), Some("{{c:ph}}")]]),
        l("app updates email and searches the new value")
            .q("UPDATE users SET email = '{{c:em}}' WHERE id = 3")
            .q("SELECT id FROM users WHERE email = '{{c:em}}'")
            .expect(App, &[&[Some("3")]]),
        l("app deletes by email")
            .q("DELETE FROM users WHERE email = '{{s:em:2}}'")
            .q("SELECT COUNT(*) FROM users")
            .expect(App, &[&[Some("4")]]),
        l("app INSERT … SET")
            .q("INSERT INTO users SET id = 101, email = '{{c:em}}', ssn = '{{c:ssn}}'")
            .q("SELECT ssn FROM users WHERE id = 101")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("app REPLACE")
            .q("REPLACE INTO users (id, email, ssn, note) VALUES (4, '{{c:em}}', '{{c:ssn}}', 'r')")
            .q("SELECT email, ssn FROM users WHERE id = 4")
            .expect(App, &[&[Some("{{c:em}}"), Some("{{c:ssn}}")]]),
        l("app ON DUPLICATE KEY UPDATE with VALUES()")
            .q("INSERT INTO users (id, ssn) VALUES (1, '{{c:ssn}}') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)")
            .q("SELECT ssn FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("app ON DUPLICATE KEY UPDATE with a literal")
            .q("INSERT INTO users (id, phone) VALUES (2, 'x') ON DUPLICATE KEY UPDATE phone = '{{c:ph}}'")
            .q("SELECT phone FROM users WHERE id = 2")
            .expect(App, &[&[Some("{{c:ph}}")]]),
        l("app writes NULL")
            .q("UPDATE users SET ssn = NULL, phone = NULL WHERE id = 3")
            .q("SELECT ssn, phone FROM users WHERE id = 3")
            .expect(App, &[&[None, None]]),
        l("app joins orders")
            .q("SELECT u.email, o.card_last4 FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 1")
            .expect(App, &[&[Some("{{s:em:1}}"), Some("{{s:card:1}}")]]),
        l("app reads comments")
            .q("SELECT body FROM comments WHERE id = 2")
            .expect(App, &[&[Some("{{s:body:2}}")]]),
        l("EXPLAIN SELECT")
            .q("EXPLAIN SELECT id FROM users WHERE email = '{{s:em:1}}'")
            .must(&ROLES[..1]),
        l("EXPLAIN a protected read")
            .q("EXPLAIN SELECT ssn FROM users WHERE id = 1")
            .must(&[App]),
        l("ANALYZE TABLE").q("ANALYZE TABLE users").must(&ROLES),
        l("CHECK TABLE").q("CHECK TABLE users, orders").must(&ROLES),
        l("DESCRIBE and SHOW").q("DESCRIBE users").q("SHOW CREATE TABLE users").q("SHOW COLUMNS FROM orders").must(&ROLES),
        l("LOCK IN SHARE MODE")
            .q("SELECT id, email FROM users WHERE id = 1 LOCK IN SHARE MODE")
            .expect(App, &[&[Some("1"), Some("{{s:em:1}}")]]),
        l("FOR UPDATE in a transaction")
            .q("START TRANSACTION")
            .q("SELECT ssn FROM users WHERE id = 2 FOR UPDATE")
            .q("COMMIT")
            .q("SELECT ssn FROM users WHERE id = 2")
            .expect(App, &[&[Some("{{s:ssn:2}}")]]),
        l("SQL_NO_CACHE in an executable comment")
            .q("SELECT /*!40001 SQL_NO_CACHE */ email, ssn FROM users WHERE id = 3")
            .expect(App, &[&[Some("{{s:em:3}}"), Some("{{s:ssn:3}}")]]),
        l("SQL_NO_CACHE SELECT * as a dump does")
            .q("SELECT /*!40001 SQL_NO_CACHE */ * FROM orders WHERE id = 2")
            .expect(
                App,
                &[&[Some("2"), Some("2"), Some("20.50"), Some("{{s:card:2}}"), Some("o2")]],
            ),
        l("a rolled back update")
            .q("START TRANSACTION")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("ROLLBACK")
            .q("SELECT ssn FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{s:ssn:1}}")]]),
        l("support reads what it may")
            .q("SELECT full_name, email FROM users WHERE id = 1")
            .expect(Support, &[&[Some("{{s:fn:1}}"), Some("C***@example.com")]])
            .expect(App, &[&[Some("{{s:fn:1}}"), Some("{{s:em:1}}")]]),
        l("support reads orders and comments")
            .q("SELECT o.card_last4, c.body FROM orders o JOIN comments c ON c.user_id = o.user_id WHERE o.id = 1")
            .expect(Support, &[&[Some("{{s:card:1}}"), Some("{{s:body:1}}")]]),
        l("analyst reads pseudonyms")
            .q("SELECT email, full_name, phone FROM users WHERE id = 1")
            .must(&[Analyst, Writer, Auditor, Restorer, App]),
        l("ciphertext roles read everything")
            .q("SELECT * FROM users")
            .q("SELECT * FROM orders")
            .q("SELECT * FROM comments")
            .must(&[App, Auditor, Restorer]),
        l("COUNT(*) for everyone")
            .q("SELECT COUNT(*) FROM users")
            .expect(App, &[&[Some("5")]])
            .expect(Support, &[&[Some("5")]])
            .expect(Analyst, &[&[Some("5")]])
            .expect(Auditor, &[&[Some("5")]])
            .expect(Writer, &[&[Some("5")]])
            .expect(Restorer, &[&[Some("5")]]),
        l("IS NULL filters for everyone")
            .q("SELECT id FROM users WHERE phone IS NULL")
            .expect(App, &[&[Some("4")]])
            .expect(Support, &[&[Some("4")]])
            .expect(Analyst, &[&[Some("4")]]),
        l("a derived table")
            .q("SELECT t.email FROM (SELECT id, email FROM users) t WHERE t.id = 1")
            .expect(App, &[&[Some("{{s:em:1}}")]]),
        l("a CTE")
            .q("WITH c AS (SELECT id, ssn FROM users) SELECT ssn FROM c WHERE id = 2")
            .expect(App, &[&[Some("{{s:ssn:2}}")]]),
        l("UNION ALL of the same column")
            .q("SELECT email FROM users WHERE id = 1 UNION ALL SELECT email FROM users WHERE id = 2")
            .expect(App, &[&[Some("{{s:em:1}}")], &[Some("{{s:em:2}}")]]),
        l("a view created directly")
            .root("CREATE VIEW v_people AS SELECT id, email, ssn FROM users")
            .q("SELECT email, ssn FROM v_people WHERE id = 3")
            .expect(App, &[&[Some("{{s:em:3}}"), Some("{{s:ssn:3}}")]]),
        l("unprotected columns of a protected table")
            .q("SELECT UPPER(note), CONCAT(note, id) FROM users WHERE id = 1 ORDER BY note")
            .expect(App, &[&[Some("N1"), Some("n11")]])
            .expect(Support, &[&[Some("N1"), Some("n11")]])
            .expect(Analyst, &[&[Some("N1"), Some("n11")]])
            .must(&ROLES),
        l("latin1 client: ASCII work")
            .q("SET NAMES latin1")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("SELECT email, ssn FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{s:em:1}}"), Some("{{c:ssn}}")]]),
        l("latin1 handshake: ASCII work")
            .coll(8)
            .q("INSERT INTO users (id, email, full_name) VALUES (102, '{{c:em}}', '{{c:fn}}')")
            .q("SELECT full_name FROM users WHERE email = '{{c:em}}'")
            .expect(App, &[&[Some("{{c:fn}}")]]),
        l("utf8mb4 four-byte characters")
            .q("UPDATE users SET full_name = '{{c:fn}} 😀 Zoë' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4")
            .expect(App, &[&[Some("{{c:fn}} 😀 Zoë")]]),
        l("quotes and backslashes in a value")
            .q(r"UPDATE users SET full_name = 'O''Brien \\ {{c:fn}} \'x' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4")
            .expect(App, &[&[Some(r"O'Brien \ {{c:fn}} 'x")]]),
        l("ANSI_QUOTES set separately, then quoted names")
            .q("SET sql_mode = 'ANSI_QUOTES'")
            .q(r#"UPDATE "users" SET "ssn" = '{{c:ssn}}' WHERE "id" = 1"#)
            .q(r#"SELECT "ssn" FROM "users" WHERE "id" = 1"#)
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("NO_BACKSLASH_ESCAPES set separately, then a backslash value")
            .q("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
            .q(r"UPDATE users SET full_name = 'a\b {{c:fn}}' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4")
            .expect(App, &[&[Some(r"a\b {{c:fn}}")]]),
        l("PIPES_AS_CONCAT on an unprotected column")
            .q("SET sql_mode = 'PIPES_AS_CONCAT'")
            .q("SELECT note || '-x' FROM users WHERE id = 1")
            .expect(App, &[&[Some("n1-x")]])
            .expect(Support, &[&[Some("n1-x")]])
            .must(&ROLES),
        l("prepared search")
            .x("SELECT id, ssn FROM users WHERE email = ?", &[Some("{{s:em:2}}")])
            .expect(App, &[&[Some("2"), Some("{{s:ssn:2}}")]]),
        l("prepared insert, then read")
            .x(
                "INSERT INTO users (id, email, phone, ssn) VALUES (?, ?, ?, ?)",
                &[Some("103"), Some("{{c:em}}"), Some("{{c:ph}}"), Some("{{c:ssn}}")],
            )
            .x("SELECT phone, ssn FROM users WHERE id = ?", &[Some("103")])
            .expect(App, &[&[Some("{{c:ph}}"), Some("{{c:ssn}}")]]),
        l("prepared update of orders")
            .x("UPDATE orders SET card_last4 = ? WHERE id = ?", &[Some("{{c:card}}"), Some("3")])
            .q("SELECT card_last4 FROM orders WHERE id = 3")
            .expect(App, &[&[Some("{{c:card}}")]]),
        l("SQL-level PREPARE with literals")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = ?'")
            .q("EXECUTE s USING '{{c:ssn}}', 2")
            .q("DEALLOCATE PREPARE s")
            .q("SELECT ssn FROM users WHERE id = 2")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("EXECUTE IMMEDIATE of one literal")
            .q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 3'")
            .q("SELECT ssn FROM users WHERE id = 3")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("multi-statement read and write")
            .q("SELECT 1; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; SELECT ssn FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        l("CREATE TABLE … AS SELECT of unprotected columns")
            .q("CREATE TABLE copy_notes AS SELECT id, note FROM users")
            .q("SELECT note FROM copy_notes WHERE id = 2")
            .expect(App, &[&[Some("n2")]]),
        l("an index on a protected table")
            .q("CREATE INDEX ix_note ON users (note)")
            .q("ALTER TABLE users ADD INDEX ix_phone (phone)")
            .must(&[App]),
        l("a new unprotected column")
            .q("ALTER TABLE users ADD COLUMN extra VARCHAR(20) DEFAULT 'x'")
            .q("SELECT email, extra FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{s:em:1}}"), Some("x")]]),
        l("EXPLAIN of a write")
            .q("EXPLAIN UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .must(&[App]),
    ];
    // A database with no protected table: column names alone mean nothing.
    let b = |name: &str| case("legit", format!("unprotected db: {name}")).db(Some("{{B}}"));
    v.extend([
        b("SELECT ssn, email")
            .q("SELECT ssn, email FROM users WHERE id = 1")
            .expect(App, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]])
            .expect(Support, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]])
            .expect(Analyst, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]])
            .expect(Auditor, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]])
            .expect(Writer, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]])
            .expect(Restorer, &[&[Some("b-ssn-1"), Some("b-user-1@example.com")]]),
        b("functions and ORDER BY on ssn")
            .q("SELECT UPPER(ssn), LOWER(email), HEX(ssn) FROM users ORDER BY ssn, email LIMIT 1")
            .must(&ROLES),
        b("LIKE and ranges on email")
            .q("SELECT id FROM users WHERE email LIKE 'b-user-%' AND ssn > 'a' ORDER BY id")
            .expect(Support, &[&[Some("1")], &[Some("2")]])
            .must(&ROLES),
        b("UPDATE ssn = CONCAT(ssn, …)")
            .q("UPDATE users SET ssn = CONCAT(ssn, '-x'), email = LOWER(email) WHERE id = 2")
            .q("SELECT ssn FROM users WHERE id = 2")
            .expect(Analyst, &[&[Some("b-ssn-2-x")]])
            .must(&ROLES),
        b("INSERT … SELECT between ssn columns")
            .q("INSERT INTO users (id, ssn, email) SELECT id + 10, email, ssn FROM users WHERE id = 1")
            .must(&ROLES),
        b("GROUP BY email")
            .q("SELECT email, COUNT(*) FROM users GROUP BY email ORDER BY email")
            .must(&ROLES),
        b("CREATE TABLE AS SELECT ssn")
            .q("CREATE TABLE bcopy AS SELECT ssn, email FROM users")
            .q("SELECT COUNT(*) FROM bcopy")
            .expect(Writer, &[&[Some("2")]])
            .must(&ROLES),
        b("a view over users")
            .q("CREATE VIEW bview AS SELECT id, ssn FROM users")
            .q("SELECT ssn FROM bview WHERE id = 1")
            .expect(Support, &[&[Some("b-ssn-1")]])
            .must(&ROLES),
        b("a view over users created directly")
            .root("CREATE VIEW {{B}}.bview2 AS SELECT id, ssn FROM {{B}}.users")
            .q("SELECT ssn FROM bview2 WHERE id = 2")
            .expect(Support, &[&[Some("b-ssn-2")]])
            .must(&ROLES),
        b("a view over users created directly, written through")
            .root("CREATE VIEW {{B}}.bview3 AS SELECT id, ssn FROM {{B}}.users")
            .q("INSERT INTO bview3 (id, ssn) VALUES (30, 'b-ssn-30')")
            .q("SELECT ssn FROM bview3 WHERE id = 30")
            .expect(Auditor, &[&[Some("b-ssn-30")]])
            .must(&ROLES),
        b("a routine over its own users, called")
            .root("CREATE PROCEDURE {{B}}.bset(IN v TEXT) UPDATE {{B}}.users SET ssn = v WHERE id = 1")
            .q("CALL bset('b-ssn-set')")
            .q("SELECT ssn FROM users WHERE id = 1")
            .expect(Support, &[&[Some("b-ssn-set")]])
            .must(&ROLES),
        b("prepared ssn search")
            .x("SELECT id FROM users WHERE ssn = ? OR email LIKE ?", &[Some("b-ssn-2"), Some("nobody%")])
            .expect(Support, &[&[Some("2")]])
            .must(&ROLES),
        b("SELECT * with a join")
            .q("SELECT * FROM users u JOIN plain p ON p.id = u.id")
            .must(&ROLES),
        b("JSON over ssn")
            .q("SELECT JSON_OBJECT('s', ssn, 'e', email) FROM users WHERE id = 1")
            .must(&ROLES),
        b("qualified with its own name")
            .q("SELECT {{B}}.users.ssn FROM {{B}}.users WHERE id = 2")
            .expect(Auditor, &[&[Some("b-ssn-2")]])
            .must(&ROLES),
    ]);
    // Unprotected tables of the protected database with protected-looking names.
    let n = |name: &str| case("legit", format!("unprotected table: {name}"));
    v.extend([
        n("functions on notes.ssn")
            .q("SELECT UPPER(ssn), LENGTH(email) FROM notes WHERE id = 1")
            .expect(Support, &[&[Some("NOTE-SSN-1"), Some("18")]])
            .must(&ROLES),
        n("ORDER BY notes.email")
            .q("SELECT id FROM notes ORDER BY email DESC, ssn")
            .expect(Analyst, &[&[Some("2")], &[Some("1")]])
            .must(&ROLES),
        n("UPDATE notes.ssn from notes.email")
            .q("UPDATE notes SET ssn = CONCAT(email, '!') WHERE id = 2")
            .must(&ROLES),
        n("LIKE on notes.email")
            .q("SELECT COUNT(*) FROM notes WHERE email LIKE 'note-%'")
            .expect(Writer, &[&[Some("2")]])
            .must(&ROLES),
        n("join notes with users on id")
            .q("SELECT n.ssn, u.note FROM notes n JOIN users u ON u.id = n.user_id WHERE n.id = 1")
            .expect(Support, &[&[Some("note-ssn-1"), Some("n1")]])
            .must(&ROLES),
        n("derived table named like the protected table")
            .q("SELECT users.ssn FROM (SELECT ssn FROM notes) AS users ORDER BY 1")
            .expect(Support, &[&[Some("note-ssn-1")], &[Some("note-ssn-2")]])
            .must(&ROLES),
        n("the twin table qualified, aliased as users")
            .q("SELECT users.ssn FROM {{B}}.users AS users WHERE users.id = 1")
            .expect(Support, &[&[Some("b-ssn-1")]])
            .must(&ROLES),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// sql_mode
// ---------------------------------------------------------------------------------------

fn sql_mode() -> Vec<Case> {
    let mut v = Vec::new();
    for (mode, on, off, label, number) in [
        ("NO_BACKSLASH_ESCAPES", P_NBE, P_NBE_OFF, "NBE", "1048576"),
        ("ANSI_QUOTES", P_ANSI, P_ANSI_OFF, "ANSI_QUOTES", "4"),
    ] {
        let hexmode = hex::encode(mode);
        let (head, tail) = mode.split_at(5);
        let lower = mode.to_ascii_lowercase();
        let separate = [
            format!("SET sql_mode = '{mode}'"),
            format!("SET @@session.sql_mode := '{mode}'"),
            format!("SET sql_mode = {number}"),
            format!("SET sql_mode = CONCAT(@@sql_mode, ',{mode}')"),
            format!("EXECUTE IMMEDIATE 'SET sql_mode = ''{mode}'''"),
            "CALL set_mode()".to_owned(),
        ];
        for (n, s) in separate.iter().enumerate() {
            if label != "NBE" && n % 2 != 0 {
                continue;
            }
            let mut c = case("sqlmode", format!("{label}: `{s}`, then the payload"))
                .q(s)
                .q(on);
            if s.starts_with("CALL") {
                c = c.root(&format!(
                    "CREATE PROCEDURE set_mode() SET sql_mode = '{mode}'"
                ));
            }
            v.push(c);
        }
        let multi = [
            format!("SET sql_mode = '{mode}'"),
            format!("SET SESSION sql_mode = '{mode}'"),
            format!("set Sql_Mode = '{lower}' /* c */"),
            format!("SET sql_mode = '{mode}' -- c\n"),
            format!("/*!40101 SET sql_mode = '{mode}' */"),
            format!("/*M!100000 SET sql_mode = '{mode}' */"),
            format!("SET sql_mode = CONCAT(@@sql_mode, ',{mode}')"),
            format!("SET @m = '{mode}'; SET sql_mode = @m"),
            format!("SET sql_mode = (SELECT '{mode}')"),
            format!("SET sql_mode = x'{hexmode}'"),
            format!("SET sql_mode = '{head}' '{tail}'"),
            format!("SET sql_mode = N'{mode}'"),
            format!("SET sql_mode = {number}"),
            format!("SET NAMES utf8mb4, sql_mode = '{mode}'"),
            format!("SET @x = 1, sql_mode = '{mode}', @y = 2"),
            format!("PREPARE pm FROM 'SET sql_mode = ''{mode}'''; EXECUTE pm"),
            format!("EXECUTE IMMEDIATE 'SET sql_mode = ''{mode}'''"),
            "CALL set_mode()".to_owned(),
            format!("SET STATEMENT sql_mode = '{mode}' FOR SELECT 1"),
        ];
        for (n, m) in multi.iter().enumerate() {
            if label != "NBE" && n % 3 != 0 {
                continue;
            }
            let mut c = case(
                "sqlmode",
                format!("{label}: `{}` in the same query", m.trim()),
            )
            .q(&format!("{m}; {on}"));
            if m.starts_with("CALL") {
                c = c.root(&format!(
                    "CREATE PROCEDURE set_mode() SET sql_mode = '{mode}'"
                ));
            }
            v.push(c);
        }
        v.push(
            case(
                "sqlmode",
                format!("{label}: SET STATEMENT … FOR the payload"),
            )
            .q(&format!("SET STATEMENT sql_mode = '{mode}' FOR {on}")),
        );
        // The session starts in the mode; the payload needs it off.
        let offs = [
            "SET sql_mode = ''".to_owned(),
            "SET sql_mode = DEFAULT".to_owned(),
            "/*!40101 SET sql_mode = '' */".to_owned(),
            format!("SET sql_mode = REPLACE(@@sql_mode, '{mode}', '')"),
            "EXECUTE IMMEDIATE 'SET sql_mode = '''''".to_owned(),
            "CALL unset_mode()".to_owned(),
        ];
        for (n, o) in offs.iter().enumerate() {
            if label != "NBE" && n % 2 != 0 {
                continue;
            }
            let mut c = case(
                "sqlmode",
                format!("{label} on, then `{o}` in the payload's query"),
            )
            .q(&format!("SET sql_mode = '{mode}'"))
            .q(&format!("{o}; {off}"));
            if o.starts_with("CALL") {
                c = c.root("CREATE PROCEDURE unset_mode() SET sql_mode = ''");
            }
            v.push(c);
        }
        v.push(
            case(
                "sqlmode",
                format!("{label} on, then off separately, then the payload"),
            )
            .q(&format!("SET sql_mode = '{mode}'"))
            .q("SET sql_mode = ''")
            .q(off),
        );
        v.push(
            case(
                "sqlmode",
                format!("{label} on, SET STATEMENT off FOR the payload"),
            )
            .q(&format!("SET sql_mode = '{mode}'"))
            .q(&format!("SET STATEMENT sql_mode = '' FOR {off}")),
        );
    }
    // Other modes.
    let m = |name: &str| case("sqlmode", name.to_owned());
    v.extend([
        m("ANSI combination name, then quoted identifiers")
            .q("SET sql_mode = 'ANSI'; UPDATE \"users\" SET \"ssn\" = '{{c:ssn}}' WHERE \"id\" = 1"),
        m("ANSI_QUOTES: a quoted column name in INSERT")
            .q("SET sql_mode = 'ANSI_QUOTES'")
            .q("INSERT INTO users (id, \"ssn\") VALUES (200, '{{c:ssn}}')"),
        m("ANSI_QUOTES: double-quoted value is a column")
            .q("SET sql_mode = 'ANSI_QUOTES'")
            .q("UPDATE users SET ssn = \"note\" WHERE id = 1"),
        m("no ANSI_QUOTES: double-quoted value is a string")
            .q("UPDATE users SET ssn = \"{{c:ssn}}\" WHERE id = 1"),
        m("PIPES_AS_CONCAT on ssn")
            .q("SET sql_mode = 'PIPES_AS_CONCAT'")
            .q("SELECT ssn || '' FROM users WHERE id = 1"),
        m("PIPES_AS_CONCAT in a write")
            .q("SET sql_mode = 'PIPES_AS_CONCAT'")
            .q("UPDATE users SET ssn = '{{c:ssn}}' || '' WHERE id = 1"),
        m("IGNORE_SPACE: functions with a space")
            .q("SET sql_mode = 'IGNORE_SPACE'")
            .q("SELECT HEX (ssn), TO_BASE64 (email) FROM users WHERE id = 1"),
        m("IGNORE_SPACE: a write through a spaced function")
            .q("SET sql_mode = 'IGNORE_SPACE'; UPDATE users SET ssn = CONCAT ('{{c:ssn}}') WHERE id = 1"),
        m("MSSQL brackets")
            .q("SET sql_mode = 'MSSQL'")
            .q("INSERT INTO users (id, [ssn]) VALUES (201, '{{c:ssn}}')"),
        m("MSSQL brackets hiding a statement")
            .q("SET sql_mode = 'MSSQL'")
            .q("SELECT 1 AS [a']; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- ]"),
        m("ORACLE mode write")
            .q("SET sql_mode = 'ORACLE'")
            .q("INSERT INTO users (id, ssn) VALUES (202, '{{c:ssn}}')"),
        m("HIGH_NOT_PRECEDENCE search")
            .q("SET sql_mode = 'HIGH_NOT_PRECEDENCE'")
            .q("SELECT id FROM users WHERE NOT email = '{{s:em:1}}' ORDER BY id"),
        m("NO_BACKSLASH_ESCAPES and ANSI_QUOTES at once")
            .q("SET sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES'")
            .q(r#"SELECT 'a\' AS "b\"; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '"#),
        m("a routine that sets sql_mode, called separately")
            .root("CREATE PROCEDURE nbe_then() BEGIN SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 1; END")
            .q("CALL nbe_then()")
            .q(P_NBE),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// Character sets
// ---------------------------------------------------------------------------------------

/// Multi-byte characters whose second byte is 0x5C, by charset, with a handshake collation.
const MB5C: [(&str, &[u8], u8); 4] = [
    ("gbk", b"\xbf", 28),
    ("sjis", b"\x95", 13),
    ("cp932", b"\x95", 95),
    ("big5", b"\xa4", 1),
];

/// Writes a hex canary if the server reads `lead 0x5C` as one character (the proxy a backslash).
fn p_mb(lead: &[u8]) -> Vec<u8> {
    let mut p = b"SELECT 1 FROM plain WHERE v = '".to_vec();
    p.extend_from_slice(lead);
    p.extend_from_slice(b"\\'; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '");
    p
}

/// Writes it if the server reads `lead 0x5C` as two bytes (and the proxy as one character).
fn p_mb_off(lead: &[u8]) -> Vec<u8> {
    let mut p = b"SELECT 1 FROM plain WHERE v = '".to_vec();
    p.extend_from_slice(lead);
    p.extend_from_slice(b"\\''; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '");
    p
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

fn charsets() -> Vec<Case> {
    let mut v = Vec::new();
    for (cs, lead, coll) in MB5C {
        let p = p_mb(lead);
        v.push(
            case("charset", format!("{cs} handshake, 0x5C trail byte"))
                .coll(coll)
                .qb(&p),
        );
        v.push(
            case(
                "charset",
                format!("SET NAMES {cs} separately, 0x5C trail byte"),
            )
            .q(&format!("SET NAMES {cs}"))
            .qb(&p),
        );
        v.push(
            case("charset", format!("SET NAMES {cs} in the same query"))
                .qb(&cat(format!("SET NAMES {cs}; ").as_bytes(), &p)),
        );
        v.push(
            case(
                "charset",
                format!("{cs} handshake, SET NAMES latin1 in the query"),
            )
            .coll(coll)
            .qb(&cat(b"SET NAMES latin1; ", &p_mb_off(lead))),
        );
    }
    let g = p_mb(b"\xbf");
    let g_off = p_mb_off(b"\xbf");
    for set in [
        "SET CHARACTER SET gbk",
        "SET character_set_client = gbk",
        "SET @@character_set_client = 'gbk'",
        "SET NAMES 'gbk' COLLATE 'gbk_bin'",
        "/*!40101 SET NAMES gbk */",
        "SET character_set_client = 28",
        "SET @cs = 'gbk'; SET character_set_client = @cs",
        "SET NAMES gbk, sql_mode = ''",
        "SET STATEMENT character_set_client = gbk FOR SELECT 1",
        "EXECUTE IMMEDIATE 'SET NAMES gbk'",
        "SET character_set_client = (SELECT 'gbk')",
        "CALL set_gbk()",
    ] {
        let mut c = case(
            "charset",
            format!("`{set}`, then the gbk payload in the same query"),
        )
        .qb(&cat(format!("{set}; ").as_bytes(), &g));
        if set.starts_with("CALL") {
            c = c.root("CREATE PROCEDURE set_gbk() SET NAMES gbk");
        }
        v.push(c);
    }
    v.push(
        case(
            "charset",
            "SET STATEMENT character_set_client FOR the payload",
        )
        .qb(&cat(b"SET STATEMENT character_set_client = gbk FOR ", &g)),
    );
    v.push(
        case("charset", "a routine that sets gbk, called separately")
            .root("CREATE PROCEDURE set_gbk2() SET NAMES gbk")
            .q("CALL set_gbk2()")
            .qb(&g),
    );
    for set in [
        "SET NAMES utf8mb4",
        "SET CHARACTER SET latin1",
        "SET character_set_client = DEFAULT",
        "SET NAMES DEFAULT",
    ] {
        v.push(
            case(
                "charset",
                format!("gbk handshake, `{set}`, then the payload"),
            )
            .coll(28)
            .qb(&cat(format!("{set}; ").as_bytes(), &g_off)),
        );
    }
    v.push(
        case("charset", "gbk handshake, SET NAMES latin1 separately")
            .coll(28)
            .q("SET NAMES latin1")
            .qb(&g_off),
    );
    // latin1: 0xA0 is whitespace, and `--` followed by it a comment.
    let a0_update = b"UPDATE\xa0users\xa0SET\xa0ssn\xa0=\xa00x{{x:c:ssn}}\xa0WHERE\xa0id\xa0=\xa01";
    let a0_comment = b"SELECT 1 --\xa0'\n; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '";
    v.extend([
        case("charset", "latin1 handshake, 0xA0 as whitespace in a write")
            .coll(8)
            .qb(a0_update),
        case("charset", "SET NAMES latin1, 0xA0 as whitespace in a write")
            .q("SET NAMES latin1")
            .qb(a0_update),
        case("charset", "SET NAMES latin1 and 0xA0 write in one query")
            .qb(&cat(b"SET NAMES latin1; ", a0_update)),
        case("charset", "utf8mb4 session, 0xA0 bytes in a write").qb(a0_update),
        case("charset", "latin1, 0xA0 as whitespace in a read")
            .coll(8)
            .qb(b"SELECT\xa0ssn,\xa0email\xa0FROM\xa0users\xa0WHERE\xa0id\xa0=\xa01"),
        case("charset", "latin1, --0xA0 starts a comment")
            .coll(8)
            .qb(a0_comment),
        case(
            "charset",
            "SET NAMES latin1, --0xA0 comment in the same query",
        )
        .qb(&cat(b"SET NAMES latin1; ", a0_comment)),
        case("charset", "latin1 write of a non-ASCII value")
            .coll(8)
            .qb(b"UPDATE users SET full_name = 'Jos\xe9 {{c:fn}}' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4")
            .check(latin1_back),
        case("charset", "SET NAMES binary, then a write")
            .q("SET NAMES binary")
            .qb(b"UPDATE users SET full_name = '\xff\xfe{{c:fn}}' WHERE id = 4"),
        case("charset", "invalid utf8mb4 in a value")
            .qb(b"UPDATE users SET full_name = '\xc3{{c:fn}}' WHERE id = 4"),
        case("charset", "ucs2 cannot be a client charset")
            .q("SET NAMES ucs2")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        case("charset", "gbk literal into a protected column")
            .coll(28)
            .qb(b"UPDATE users SET full_name = '\xc4\xe3\xba\xc3 {{c:fn}}' WHERE id = 4"),
        case("charset", "sjis handshake, a 0x5C name")
            .coll(13)
            .qb(b"SELECT 1 AS `\x95\\`, ssn FROM users WHERE id = 1"),
        case("charset", "NUL byte in the middle")
            .qb(b"SELECT 1\x00; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1"),
    ]);
    // Literal forms written to a protected column.
    for (label, lit) in [
        ("_binary introducer", "_binary'{{c:ssn}}'"),
        ("_latin1 introducer", "_latin1'{{c:ssn}}'"),
        ("_utf8mb4 introducer", "_utf8mb4'{{c:ssn}}'"),
        ("_gbk introducer", "_gbk'{{c:ssn}}'"),
        ("_utf16 introducer", "_utf16'{{c:ssn}}'"),
        ("_latin1 on hex", "_latin1 0x{{x:c:ssn}}"),
        ("N''", "N'{{c:ssn}}'"),
        ("X''", "X'{{x:c:ssn}}'"),
        ("0x", "0x{{x:c:ssn}}"),
        ("b''", "b'{{bits:c:ssn}}'"),
        ("0b", "0b{{bits:c:ssn}}"),
        ("adjacent strings", "'{{c:ssn}}' 'tail'"),
        ("adjacent with introducer", "_latin1'{{c:ssn}}' \"x\""),
        ("COLLATE", "'{{c:ssn}}' COLLATE utf8mb4_bin"),
        ("CONVERT USING", "CONVERT('{{c:ssn}}' USING utf8mb4)"),
        ("parenthesized", "(('{{c:ssn}}'))"),
        ("a scalar subquery", "(SELECT '{{c:ssn}}')"),
        ("a user variable", "@v"),
        ("double quotes", "\"{{c:ssn}}\""),
        ("escaped quotes", r"'{{c:ssn}}\'\''"),
        ("\\% stays two characters", r"'{{c:ssn}}\%\_'"),
        ("UNHEX", "UNHEX('{{x:c:ssn}}')"),
        ("FROM_BASE64", "FROM_BASE64('{{b64:c:ssn}}')"),
        ("a number", "12345"),
    ] {
        let mut c = case("charset", format!("literal form: {label}"));
        if lit == "@v" {
            c = c.q("SET @v = '{{c:ssn}}'");
        }
        v.push(c.q(&format!("UPDATE users SET ssn = {lit} WHERE id = 1")));
    }
    v
}

/// A latin1 client writing 'José' gets it back as latin1 bytes.
fn latin1_back(role: Role, outs: &[StepOut]) -> Option<String> {
    if role != App {
        return None;
    }
    let rows = outs.last().and_then(|o| match o.items.first() {
        Some(Item::Rows { rows, .. }) => Some(rows.clone()),
        _ => None,
    })?;
    let v = rows.first()?.first()?.clone()?;
    if v.starts_with(b"Jos\xe9 ") {
        None
    } else {
        Some(format!(
            "a latin1 client wrote 'Jos\\xe9' and read back {}",
            printable(&v, 60)
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Which database a name means
// ---------------------------------------------------------------------------------------

fn current_db() -> Vec<Case> {
    let d = |name: &str| case("database", name.to_owned());
    let ins = "INSERT INTO users (id, ssn, note) VALUES (300, '{{c:ssn}}', 'x')";
    let mut v = Vec::new();
    // From the unprotected twin, statements that move the session into the protected database.
    for use_ in [
        "USE {{A}}",
        "USE {{A}}#x",
        "USE {{A}} -- c",
        "USE `{{A}}`",
        "/*!USE {{A}}*/",
        "/*!40000 USE {{A}} */",
        "/*M!100000 USE {{A}} */",
    ] {
        v.push(
            d(&format!(
                "from the twin: `{}` separately, then an INSERT",
                use_.trim()
            ))
            .db(Some("{{B}}"))
            .q(use_)
            .q(ins),
        );
    }
    for multi in [
        "USE {{A}}; ",
        "USE {{A}}#x\n; ",
        "SELECT 1; USE {{A}}; ",
        "USE {{B}}; USE {{A}}; ",
        "/*!USE {{A}}*/; ",
        "/*!40000 USE {{A}} */; ",
    ] {
        v.push(
            d(&format!(
                "from the twin: `{}` then an INSERT in one query",
                multi.trim()
            ))
            .db(Some("{{B}}"))
            .q(&format!("{multi}{ins}")),
        );
    }
    v.extend([
        d("from the twin: COM_INIT_DB, then an INSERT")
            .db(Some("{{B}}"))
            .init_db("{{A}}")
            .q(ins),
        d("no database: COM_INIT_DB, then an INSERT")
            .db(None)
            .init_db("{{A}}")
            .q(ins),
        d("no database: USE in the query")
            .db(None)
            .q(&format!("USE {{{{A}}}}; {ins}")),
        d("no database: qualified INSERT")
            .db(None)
            .q("INSERT INTO {{A}}.users (id, ssn) VALUES (301, '{{c:ssn}}')"),
        d("COM_INIT_DB of a name with a trailing space")
            .db(Some("{{B}}"))
            .init_db("{{A}} ")
            .q("INSERT INTO users (id, ssn) VALUES (300, '{{p}}')"),
        d("COM_INIT_DB with backticks in the name")
            .db(Some("{{B}}"))
            .init_db("`{{A}}`")
            .q("INSERT INTO users (id, ssn) VALUES (300, '{{p}}')"),
        d("COM_INIT_DB to the twin, back to the protected database")
            .init_db("{{B}}")
            .init_db("{{A}}")
            .q(ins),
        d("USE of a database that does not exist stops the query")
            .db(Some("{{B}}"))
            .q(&format!("USE zz_no_such_db_corpus; USE {{{{A}}}}; {ins}")),
        d("an executable comment that does not run keeps the twin")
            .db(Some("{{B}}"))
            .q("/*!999999 USE {{A}} */; INSERT INTO users (id, ssn) VALUES (302, '{{p}}')"),
        d("/*!50700 is skipped by MariaDB: the twin stays")
            .db(Some("{{B}}"))
            .q("/*!50700 USE {{A}} */; INSERT INTO users (id, ssn) VALUES (303, '{{p}}')"),
        d("USE the twin from the protected database")
            .q("USE {{B}}")
            .q("INSERT INTO users (id, ssn) VALUES (304, '{{p}}')")
            .must(&ROLES),
        d("USE the twin in one query, then back").q(&format!(
            "USE {{{{B}}}}; SELECT ssn FROM users WHERE id = 1; USE {{{{A}}}}; {ins}"
        )),
    ]);
    // Qualified names from the twin.
    for (label, target) in [
        ("qualified", "{{A}}.users"),
        ("backticks", "`{{A}}`.`users`"),
        ("a comment before the dot", "{{A}}/**/.users"),
        ("a comment after the dot", "{{A}}./**/users"),
        (
            "an executable comment around the qualifier",
            "/*!{{A}}.*/users",
        ),
        ("an executable comment around the table", "{{A}}./*!users*/"),
        (
            "the database in a version comment",
            "/*!40000 {{A}}.*/users",
        ),
    ] {
        v.push(
            d(&format!("from the twin: INSERT INTO {label}"))
                .db(Some("{{B}}"))
                .q(&format!(
                    "INSERT INTO {target} (id, ssn) VALUES (310, '{{{{c:ssn}}}}')"
                )),
        );
        v.push(
            d(&format!("from the twin: SELECT FROM {label}"))
                .db(Some("{{B}}"))
                .q(&format!("SELECT id, ssn, email FROM {target} WHERE id = 1")),
        );
    }
    v.extend([
        d("from the twin: multi-table UPDATE across databases")
            .db(Some("{{B}}"))
            .q("UPDATE users b, {{A}}.users a SET a.ssn = '{{c:ssn}}' WHERE a.id = b.id AND a.id = 1"),
        d("from the twin: copy from the protected table into the twin")
            .db(Some("{{B}}"))
            .q("UPDATE users b JOIN {{A}}.users a ON a.id = b.id SET b.ssn = a.ssn")
            .q("SELECT ssn FROM users WHERE id = 1"),
        d("from the twin: INSERT … SELECT out of the protected table")
            .db(Some("{{B}}"))
            .q("INSERT INTO users (id, ssn) SELECT id + 100, ssn FROM {{A}}.users")
            .q("SELECT ssn FROM users WHERE id = 101"),
        d("from the twin: INSERT … SET qualified")
            .db(Some("{{B}}"))
            .q("INSERT INTO {{A}}.users SET id = 311, ssn = '{{c:ssn}}'"),
        d("from the twin: a join of both users tables")
            .db(Some("{{B}}"))
            .q("SELECT a.ssn, b.ssn FROM {{A}}.users a JOIN users b ON a.id = b.id"),
        d("a join of both, only the twin's column")
            .q("SELECT b.ssn FROM users a JOIN {{B}}.users b ON a.id = b.id ORDER BY b.id")
            .expect(Support, &[&[Some("b-ssn-1")], &[Some("b-ssn-2")]])
            .must(&ROLES),
        d("USING join of both: two ssn columns")
            .q("SELECT * FROM users JOIN {{B}}.users USING (id)"),
        d("ambiguous ssn between both")
            .q("SELECT ssn FROM users, {{B}}.users"),
        d("a derived table from the protected table aliased as the twin's name")
            .db(Some("{{B}}"))
            .q("SELECT users.ssn FROM (SELECT ssn FROM {{A}}.users) AS users"),
        d("a derived table of the twin aliased users in the protected database")
            .q("SELECT users.ssn FROM (SELECT ssn FROM {{B}}.users) AS users WHERE users.ssn LIKE 'b%' ORDER BY 1")
            .expect(Analyst, &[&[Some("b-ssn-1")], &[Some("b-ssn-2")]])
            .must(&ROLES),
        d("IN subquery across databases")
            .q("SELECT ssn FROM {{B}}.users WHERE ssn IN (SELECT ssn FROM users)"),
        d("column names in another case")
            .q("SELECT SSN, Email, FULL_NAME FROM users WHERE id = 1"),
        d("write with column names in another case")
            .q("UPDATE users SET SSN = '{{c:ssn}}', Phone = '{{c:ph}}' WHERE ID = 1"),
        d("table name in another case (lower_case_table_names = 0)")
            .q("INSERT INTO USERS (id, ssn) VALUES (321, '{{c:ssn}}')"),
        d("database name in another case")
            .db(Some("{{B}}"))
            .q("INSERT INTO {{A}}.Users (id, ssn) VALUES (322, '{{c:ssn}}')"),
        d("a write qualified with database and table")
            .q("UPDATE users SET {{A}}.users.ssn = '{{c:ssn}}' WHERE id = 1"),
        d("backticked column in a write")
            .q("UPDATE `users` SET `ssn` = '{{c:ssn}}' WHERE `id` = 1"),
        d("rename to another case and back")
            .q("RENAME TABLE users TO Users")
            .q("INSERT INTO Users (id, ssn) VALUES (330, '{{c:ssn}}')")
            .q("SELECT ssn FROM Users WHERE id = 1")
            .q("RENAME TABLE Users TO users"),
        d("a table in another case beside the protected one")
            .root("CREATE TABLE Users LIKE users")
            .q("INSERT INTO Users (id, ssn) VALUES (331, '{{p}}')")
            .q("SELECT ssn FROM Users"),
        d("a temporary table shadows the protected table")
            .q("CREATE TEMPORARY TABLE users (id INT, ssn VARCHAR(300))")
            .q("INSERT INTO users (id, ssn) VALUES (1, '{{p}}')")
            .q("SELECT ssn FROM users")
            .q("DROP TEMPORARY TABLE users")
            .q("SELECT ssn FROM users WHERE id = 1"),
        d("a temporary table shadows an unprotected one")
            .q("CREATE TEMPORARY TABLE plain LIKE users")
            .q("INSERT INTO plain (id, ssn) VALUES (1, '{{p}}')")
            .q("SELECT * FROM plain"),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------------------

fn comments() -> Vec<Case> {
    let k = |name: &str| case("comments", name.to_owned());
    let upd = "UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1";
    let mut v = Vec::new();
    for (label, text) in [
        ("/*! … */ around a write", format!("/*!{upd}*/")),
        ("/*!50000 … */ around a write", format!("/*!50000 {upd} */")),
        (
            "/*!101119 (this version) … */",
            format!("/*!101119 {upd} */"),
        ),
        (
            "/*!101120 (next version) … */",
            format!("/*!101120 {upd} */"),
        ),
        (
            "/*!999999 … */ around a write",
            format!("/*!999999 {upd} */ SELECT 1"),
        ),
        (
            "/*!50700 (MySQL 5.7, skipped) … */",
            format!("/*!50700 {upd} */ SELECT 1"),
        ),
        ("/*M! … */ around a write", format!("/*M!{upd}*/")),
        (
            "/*M!100000 … */ around a write",
            format!("/*M!100000 {upd} */"),
        ),
        (
            "/*M!50700 (MariaDB comment, runs) … */",
            format!("/*M!50700 {upd} */"),
        ),
        (
            "seven digits: version then a digit",
            format!("/*!1000001 {upd} */"),
        ),
        ("an empty executable comment first", format!("/*!*/{upd}")),
        (
            "a SET clause in a running comment",
            "UPDATE users SET note = 'x' /*!40000 , ssn = 0x{{x:c:ssn}} */ WHERE id = 1".into(),
        ),
        (
            "a SET clause in a skipped comment",
            "UPDATE users SET note = 'x' /*!999999 , ssn = 0x{{x:c:ssn}} */ WHERE id = 1".into(),
        ),
        (
            "a column in a running comment",
            "SELECT id /*!40000 , ssn */ FROM users WHERE id = 1".into(),
        ),
        (
            "a column in a skipped MySQL comment",
            "SELECT id /*!50700 , ssn */ FROM users WHERE id = 1".into(),
        ),
        (
            "a column in a MariaDB comment with a MySQL version",
            "SELECT id /*M!50700 , ssn */ FROM users WHERE id = 1".into(),
        ),
        (
            "a quote inside a skipped comment",
            format!("/*!50700 '*/ {upd}; -- ' */"),
        ),
        (
            "a quote inside a running comment",
            format!("/*!40000 '*/ {upd}; -- ' */ SELECT 1"),
        ),
        (
            "a nested comment inside a skipped one",
            format!("/*!999999 /* */ {upd}; -- */"),
        ),
        (
            "two levels nested in a skipped comment",
            format!("/*!999999 /* /* */ */ {upd}; -- */"),
        ),
        (
            "a comment nested in a plain comment",
            format!("/* /* */ {upd}; -- */"),
        ),
        (
            "a plain comment inside a running one",
            format!("/*! /* c */ {upd} */"),
        ),
        (
            "a running comment inside a running one",
            format!("/*!40000 /*!40000 {upd} */ */"),
        ),
        (
            "a semicolon inside a running comment",
            format!("/*! SELECT 1; {upd} */"),
        ),
        (
            "a line comment inside a running comment",
            format!("/*!40000 SELECT 1 -- */\n; {upd} */"),
        ),
        ("an unterminated comment", format!("{upd} /* never closed")),
        (
            "a comment splitting a name",
            "UPDATE us/**/ers SET ssn = '{{c:ssn}}' WHERE id = 1".into(),
        ),
        (
            "a closing */ outside a comment",
            format!("SELECT 1 */; {upd}"),
        ),
        (
            "# comment hides the rest of the line",
            format!("SELECT 1 #'\n; {upd}; -- '"),
        ),
    ] {
        v.push(k(label).q(&text));
    }
    // `--` needs a space or control character after it.
    for (label, byte) in [
        ("space", b' '),
        ("tab", b'\t'),
        ("newline", b'\n'),
        ("vertical tab", 0x0b),
        ("0x01", 0x01),
        ("DEL", 0x7f),
        ("a quote (no comment)", b'\''),
        ("a letter (no comment)", b'x'),
    ] {
        let mut q = b"SELECT 1 --".to_vec();
        q.push(byte);
        q.extend_from_slice(b"'\n; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '");
        v.push(k(&format!("`--` followed by {label}")).qb(&q));
        if !matches!(byte, b' ' | b'x' | 0x01) {
            continue;
        }
        let mut q = b"SELECT 1--".to_vec();
        q.push(byte);
        q.extend_from_slice(b"1, ssn FROM users WHERE id = 1");
        v.push(k(&format!("`1--` followed by {label}, reading ssn")).qb(&q));
    }
    v.push(k("`--` at the very end").q(&format!("{upd} --")));
    v.push(k("-- without space is minus minus").q("SELECT id FROM users WHERE id = 2--1"));
    v
}

// ---------------------------------------------------------------------------------------
// Dynamic SQL
// ---------------------------------------------------------------------------------------

fn dynamic() -> Vec<Case> {
    let y = |name: &str| case("dynamic", name.to_owned());
    let mut v = vec![
        y("EXECUTE IMMEDIATE CONCAT")
            .q("EXECUTE IMMEDIATE CONCAT('UPDATE users SET ssn = ', QUOTE('{{c:ssn}}'), ' WHERE id = 1')"),
        y("EXECUTE IMMEDIATE CONCAT splitting the table name")
            .q("EXECUTE IMMEDIATE CONCAT('UPDATE us', 'ers SET ssn = ''{{c:ssn}}'' WHERE id = 1')"),
        y("EXECUTE IMMEDIATE of adjacent literals")
            .q("EXECUTE IMMEDIATE 'UPDATE us' 'ers SET ssn = ''{{c:ssn}}'' WHERE id = 1'"),
        y("EXECUTE IMMEDIATE of one literal").q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'"),
        y("EXECUTE IMMEDIATE with USING").q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ? WHERE id = ?' USING '{{c:ssn}}', 1"),
        y("EXECUTE IMMEDIATE with USING a variable")
            .q("SET @v = '{{c:ssn}}'")
            .q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ? WHERE id = 1' USING @v"),
        y("EXECUTE IMMEDIATE without USING for a marker").q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ? WHERE id = 1'"),
        y("EXECUTE IMMEDIATE from a variable")
            .q("SET @q = 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'")
            .q("EXECUTE IMMEDIATE @q"),
        y("EXECUTE IMMEDIATE from a variable in one query")
            .q("SET @q = CONCAT('UPDATE us', 'ers SET ssn = ''{{c:ssn}}'' WHERE id = 1'); EXECUTE IMMEDIATE @q"),
        y("EXECUTE IMMEDIATE of a hex literal")
            .q("EXECUTE IMMEDIATE 0x555044415445207573657273205345542073736E203D20304132204745524520696420203D2031")
            .q("EXECUTE IMMEDIATE X'53454C4543542073736E2046524F4D207573657273'"),
        y("EXECUTE IMMEDIATE of a subquery").q("EXECUTE IMMEDIATE (SELECT 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1')"),
        y("EXECUTE IMMEDIATE reading ssn").q("EXECUTE IMMEDIATE 'SELECT ssn, email FROM users WHERE id = 1'"),
        y("EXECUTE IMMEDIATE with a trailing comment").q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1; -- x'"),
        y("EXECUTE IMMEDIATE with a semicolon and comment").q("EXECUTE IMMEDIATE 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1;/**/;'"),
        y("PREPARE FROM adjacent literals, EXECUTE USING")
            .q("PREPARE s FROM 'UPDATE us' 'ers SET ssn = ? WHERE id = 1'")
            .q("EXECUTE s USING '{{c:ssn}}'"),
        y("PREPARE FROM a variable")
            .q("SET @q = 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'")
            .q("PREPARE s FROM @q")
            .q("EXECUTE s"),
        y("PREPARE FROM a variable in one query")
            .q("SET @q = 'UPDATE users SET ssn = ? WHERE id = 1'; PREPARE s FROM @q; EXECUTE s USING '{{c:ssn}}'"),
        y("PREPARE FROM CONCAT").q("PREPARE s FROM CONCAT('UPDATE users SET ssn = ', '''{{c:ssn}}''', ' WHERE id = 1')").q("EXECUTE s"),
        y("PREPARE, EXECUTE USING a variable")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("SET @v = '{{c:ssn}}'")
            .q("EXECUTE s USING @v"),
        y("PREPARE, EXECUTE USING an expression")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("EXECUTE s USING CONCAT('{{c:ssn}}', '')"),
        y("PREPARE, EXECUTE without USING")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("EXECUTE s"),
        y("PREPARE a read, EXECUTE")
            .q("PREPARE s FROM 'SELECT ssn, email FROM users WHERE id = ?'")
            .q("EXECUTE s USING 1"),
        y("PREPARE a plain statement, then re-PREPARE the same name")
            .q("PREPARE s FROM 'SELECT 1'")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("EXECUTE s USING '{{c:ssn}}'"),
        y("PREPARE protected, failed re-PREPARE, EXECUTE")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("PREPARE s FROM 'SELECT * FROM no_such_table_corpus'")
            .q("EXECUTE s USING '{{c:ssn}}'"),
        y("PREPARE in the protected database, EXECUTE from the twin")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("USE {{B}}")
            .q("EXECUTE s USING '{{c:ssn}}'"),
        y("PREPARE in the twin, EXECUTE from the protected database")
            .db(Some("{{B}}"))
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("USE {{A}}")
            .q("EXECUTE s USING '{{p}}'"),
        y("PREPARE in one query with EXECUTE")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'; EXECUTE s USING '{{c:ssn}}'; DEALLOCATE PREPARE s"),
        y("PREPARE with a trailing comment")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1; -- x'")
            .q("EXECUTE s"),
        y("PREPARE with ;/**/;")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1;/**/;'")
            .q("EXECUTE s"),
        y("PREPARE with a leading semicolon")
            .q("PREPARE s FROM ';UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'")
            .q("EXECUTE s"),
        y("PREPARE of two statements")
            .q("PREPARE s FROM 'SELECT 1; UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'")
            .q("EXECUTE s"),
        y("PREPARE with a quote-escape difference")
            .q(r"PREPARE s FROM 'SELECT 1 FROM plain WHERE v = ''\''; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- '''")
            .q("EXECUTE s"),
        y("PREPARE, DEALLOCATE, PREPARE plain, EXECUTE USING")
            .q("PREPARE s FROM 'UPDATE users SET ssn = ? WHERE id = 1'")
            .q("DEALLOCATE PREPARE s")
            .q("PREPARE s FROM 'UPDATE plain SET v = ? WHERE id = 1'")
            .q("EXECUTE s USING '{{p}}'"),
        y("a routine built by root that runs SQL, called")
            .root("CREATE PROCEDURE run_sql(IN q TEXT) BEGIN SET @q = q; PREPARE st FROM @q; EXECUTE st; DEALLOCATE PREPARE st; END")
            .q("CALL run_sql('UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1')"),
        y("a routine that writes its argument")
            .root("CREATE PROCEDURE set_ssn(IN v TEXT) UPDATE users SET ssn = v WHERE id = 1")
            .q("CALL set_ssn('{{c:ssn}}')"),
        y("a routine in the twin that writes the protected table")
            .root("CREATE PROCEDURE {{B}}.set_ssn_b(IN v TEXT) UPDATE {{A}}.users SET ssn = v WHERE id = 1")
            .q("CALL {{B}}.set_ssn_b('{{c:ssn}}')"),
        y("a view in the twin over the protected table, written from the twin")
            .root("CREATE VIEW {{B}}.v_reach AS SELECT id, ssn FROM {{A}}.users")
            .db(Some("{{B}}"))
            .q("INSERT INTO v_reach (id, ssn) VALUES (40, '{{c:ssn}}')"),
        y("a view in the twin over the protected table, written qualified")
            .root("CREATE VIEW {{B}}.v_reach2 AS SELECT id, ssn FROM {{A}}.users")
            .q("UPDATE {{B}}.v_reach2 SET ssn = '{{c:ssn}}' WHERE id = 1"),
        y("a routine in the twin named like a protected one's, called unqualified")
            .root("CREATE PROCEDURE set_ssn3(IN v TEXT) UPDATE users SET ssn = v WHERE id = 1")
            .root("CREATE PROCEDURE {{B}}.set_ssn3(IN v TEXT) UPDATE {{B}}.users SET ssn = v WHERE id = 1")
            .q("CALL set_ssn3('{{c:ssn}}')"),
        y("a routine that reads ssn")
            .root("CREATE PROCEDURE read_ssn() SELECT id, ssn, email FROM users")
            .q("CALL read_ssn()"),
        y("a function that returns ssn")
            .root("CREATE FUNCTION get_ssn(i INT) RETURNS TEXT READS SQL DATA RETURN (SELECT ssn FROM users WHERE id = i)")
            .q("SELECT get_ssn(1)"),
        y("a function that writes")
            .root("CREATE FUNCTION put_ssn(v TEXT) RETURNS INT MODIFIES SQL DATA BEGIN UPDATE users SET ssn = v WHERE id = 1; RETURN 1; END")
            .q("SELECT put_ssn('{{c:ssn}}')"),
        y("a function hidden in a view")
            .root("CREATE FUNCTION put_ssn2(v TEXT) RETURNS INT MODIFIES SQL DATA BEGIN UPDATE users SET ssn = v WHERE id = 1; RETURN 1; END")
            .root("CREATE VIEW v_put AS SELECT put_ssn2('x') AS r")
            .q("SELECT * FROM v_put"),
        y("a routine that calls a routine that writes")
            .root("CREATE PROCEDURE inner_w(IN v TEXT) UPDATE users SET ssn = v WHERE id = 1")
            .root("CREATE PROCEDURE outer_w(IN v TEXT) CALL inner_w(v)")
            .q("CALL outer_w('{{c:ssn}}')"),
        y("a routine writing a table whose trigger writes ssn")
            .root("CREATE TRIGGER plain_to_users AFTER INSERT ON plain FOR EACH ROW UPDATE users SET ssn = NEW.v WHERE id = 1")
            .root("CREATE PROCEDURE add_plain(IN v TEXT) INSERT INTO plain (v) VALUES (v)")
            .q("CALL add_plain('{{p}}')"),
        y("a compound statement with PREPARE")
            .q("BEGIN NOT ATOMIC SET @q = 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'; PREPARE st FROM @q; EXECUTE st; END"),
        y("a compound statement writing directly")
            .q("BEGIN NOT ATOMIC UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; END"),
        y("a FOR loop writing")
            .q("FOR i IN 1..1 DO UPDATE users SET ssn = '{{c:ssn}}' WHERE id = i; END FOR"),
        y("a compound statement with EXECUTE IMMEDIATE of a variable")
            .q("BEGIN NOT ATOMIC DECLARE q TEXT DEFAULT CONCAT('UPDATE us', 'ers SET ssn = ''{{c:ssn}}'' WHERE id = 1'); EXECUTE IMMEDIATE q; END"),
    ];
    v.push(
        y("prepared protocol: a statement with a trailing comment")
            .x("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; -- x", &[]),
    );
    v.push(
        y("prepared protocol: ;/**/;")
            .x("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1;/**/;", &[]),
    );
    v.push(y("prepared protocol: two statements").x(
        "SELECT 1; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1",
        &[],
    ));
    v.push(y("prepared protocol: a marker for ssn").x(
        "UPDATE users SET ssn = ? WHERE id = 1",
        &[Some("{{c:ssn}}")],
    ));
    v.push(y("prepared protocol: a marker inside CONCAT").x(
        "UPDATE users SET ssn = CONCAT(?, '') WHERE id = 1",
        &[Some("{{c:ssn}}")],
    ));
    v.push(
        y("prepared protocol: a marker for a variable")
            .x("SET @v = ?", &[Some("{{c:ssn}}")])
            .q("UPDATE users SET ssn = @v WHERE id = 1"),
    );
    v
}

// ---------------------------------------------------------------------------------------
// DDL
// ---------------------------------------------------------------------------------------

fn ddl() -> Vec<Case> {
    let z = |name: &str| case("ddl", name.to_owned());
    let then_insert = "INSERT INTO users (id, email, note) VALUES (400, '{{c:em}}', 'd')";
    let mut v = Vec::new();
    for (label, alter) in [
        (
            "ALTER COLUMN ssn SET DEFAULT",
            "ALTER TABLE users ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "MODIFY ssn with a default",
            "ALTER TABLE users MODIFY ssn VARCHAR(300) DEFAULT '{{c:ssn}}'",
        ),
        (
            "CHANGE ssn ssn with a default",
            "ALTER TABLE users CHANGE ssn ssn VARCHAR(300) DEFAULT '{{c:ssn}}'",
        ),
        (
            "a default after a harmless spec",
            "ALTER TABLE users COMMENT 'x', ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "a default after ENGINE",
            "ALTER TABLE users ENGINE = InnoDB, ALTER ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "WAIT n before a default",
            "ALTER TABLE users WAIT 1 ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "NOWAIT before a default",
            "ALTER TABLE users NOWAIT ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "IF EXISTS, WAIT, default",
            "ALTER TABLE IF EXISTS users WAIT 2 ALTER ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "ONLINE IGNORE, default",
            "ALTER ONLINE IGNORE TABLE users ALTER ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "a default in an executable comment",
            "ALTER TABLE users /*!ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'*/",
        ),
        (
            "a quoted column name",
            "ALTER TABLE users ALTER COLUMN `ssn` SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "a qualified table",
            "ALTER TABLE {{A}}.users ALTER COLUMN ssn SET DEFAULT '{{c:ssn}}'",
        ),
        (
            "a default on the phone column",
            "ALTER TABLE users ALTER phone SET DEFAULT '{{c:ph}}'",
        ),
        (
            "a default from an expression",
            "ALTER TABLE users ALTER ssn SET DEFAULT (CONCAT('{{c:ssn}}', ''))",
        ),
        (
            "a default on note from ssn",
            "ALTER TABLE users MODIFY note VARCHAR(300) DEFAULT (ssn)",
        ),
        (
            "ADD COLUMN copying ssn as generated",
            "ALTER TABLE users ADD COLUMN ssn2 VARCHAR(300) AS (ssn) VIRTUAL",
        ),
        (
            "ADD COLUMN with a default from ssn",
            "ALTER TABLE users ADD COLUMN ssn3 VARCHAR(300) DEFAULT (ssn)",
        ),
        (
            "ADD a second ssn column with a default",
            "ALTER TABLE users ADD COLUMN IF NOT EXISTS ssn VARCHAR(300) DEFAULT '{{c:ssn}}'",
        ),
        (
            "ADD a column with a canary default, then move it",
            "ALTER TABLE users ADD COLUMN tmp VARCHAR(300) DEFAULT '{{c:ssn}}', DROP COLUMN ssn, CHANGE tmp ssn VARCHAR(300)",
        ),
        (
            "RENAME COLUMN ssn",
            "ALTER TABLE users RENAME COLUMN ssn TO ssn_old",
        ),
        ("DROP COLUMN ssn", "ALTER TABLE users DROP COLUMN ssn"),
        (
            "a CHECK naming a canary",
            "ALTER TABLE users ADD CONSTRAINT ck CHECK (ssn <> '{{c:ssn}}')",
        ),
        (
            "a CHECK via executable comment",
            "ALTER TABLE users ADD /*!CONSTRAINT ck2 CHECK (ssn <> '{{c:ssn}}')*/",
        ),
        (
            "PARTITION BY ssn",
            "ALTER TABLE users PARTITION BY KEY (ssn) PARTITIONS 2",
        ),
        ("ORDER BY ssn", "ALTER TABLE users ORDER BY ssn"),
        (
            "MODIFY ssn to a shorter type",
            "ALTER TABLE users MODIFY ssn VARCHAR(10)",
        ),
        (
            "RENAME TO the twin",
            "ALTER TABLE users RENAME TO {{B}}.users_moved",
        ),
        ("RENAME AS", "ALTER TABLE users RENAME AS users_moved"),
        (
            "an index on ssn",
            "ALTER TABLE users ADD INDEX ix_ssn (ssn)",
        ),
        (
            "EXCHANGE PARTITION",
            "ALTER TABLE users EXCHANGE PARTITION p0 WITH TABLE plain",
        ),
    ] {
        v.push(
            z(label)
                .q(alter)
                .q(then_insert)
                .q("SELECT ssn, email FROM users WHERE id = 400"),
        );
    }
    for (label, sql) in [
        (
            "CREATE TABLE LIKE, INSERT … SELECT *",
            vec![
                "CREATE TABLE u_copy LIKE users",
                "INSERT INTO u_copy SELECT * FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE LIKE in the twin",
            vec![
                "CREATE TABLE {{B}}.u_copy LIKE users",
                "INSERT INTO {{B}}.u_copy SELECT * FROM users",
            ],
        ),
        (
            "CREATE TABLE AS SELECT *",
            vec![
                "CREATE TABLE u_copy AS SELECT * FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE SELECT ssn (no AS)",
            vec![
                "CREATE TABLE u_copy SELECT ssn FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE AS (SELECT ssn)",
            vec![
                "CREATE TABLE u_copy AS (SELECT ssn FROM users)",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE (cols) SELECT ssn",
            vec![
                "CREATE TABLE u_copy (x INT) SELECT ssn FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE (PRIMARY KEY) SELECT",
            vec![
                "CREATE TABLE u_copy (PRIMARY KEY (id)) SELECT id, ssn FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE IGNORE SELECT",
            vec![
                "CREATE TABLE u_copy IGNORE SELECT id, email FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE AS WITH",
            vec![
                "CREATE TABLE u_copy AS WITH c AS (SELECT ssn FROM users) SELECT * FROM c",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE AS a derived table",
            vec![
                "CREATE TABLE u_copy AS SELECT s FROM (SELECT ssn AS s FROM users) d",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TABLE AS CONCAT(ssn)",
            vec![
                "CREATE TABLE u_copy AS SELECT CONCAT(ssn) AS s FROM users",
                "SELECT * FROM u_copy",
            ],
        ),
        (
            "CREATE TEMPORARY TABLE AS SELECT",
            vec![
                "CREATE TEMPORARY TABLE u_tmp AS SELECT id, ssn, email FROM users",
                "SELECT * FROM u_tmp",
            ],
        ),
        (
            "CREATE TABLE in the twin AS SELECT",
            vec![
                "CREATE TABLE {{B}}.u_copy AS SELECT ssn FROM {{A}}.users",
                "SELECT * FROM {{B}}.u_copy",
            ],
        ),
        (
            "CREATE TABLE with a column default from a canary",
            vec![
                "CREATE OR REPLACE TABLE users (id INT PRIMARY KEY, email VARBINARY(400), email_bidx BINARY(32), ssn VARCHAR(300) DEFAULT '{{c:ssn}}', note VARCHAR(200))",
            ],
        ),
        (
            "CREATE OR REPLACE TABLE users LIKE the twin",
            vec![
                "CREATE OR REPLACE TABLE users LIKE {{B}}.users",
                "INSERT INTO users (id, ssn) VALUES (1, '{{c:ssn}}')",
            ],
        ),
        (
            "CREATE OR REPLACE TABLE users AS SELECT from the twin",
            vec!["CREATE OR REPLACE TABLE users AS SELECT * FROM {{B}}.users"],
        ),
        (
            "CREATE TABLE with a generated column, INSERT … SELECT of ids",
            vec![
                "CREATE TABLE u_gen (id INT, s VARCHAR(300) AS ('x'))",
                "INSERT INTO u_gen (id) SELECT id FROM users",
            ],
        ),
        (
            "CREATE VIEW over ssn",
            vec![
                "CREATE VIEW v_ssn AS SELECT id, ssn FROM users",
                "SELECT * FROM v_ssn",
            ],
        ),
        (
            "CREATE VIEW with a canary literal over users",
            vec!["CREATE VIEW v_lit AS SELECT id, '{{c:ssn}}' AS ssn FROM users"],
        ),
        (
            "CREATE VIEW in the twin over the protected table",
            vec![
                "CREATE VIEW {{B}}.v_over AS SELECT ssn FROM {{A}}.users",
                "SELECT * FROM {{B}}.v_over",
            ],
        ),
        (
            "CREATE VIEW, write through it",
            vec![
                "CREATE VIEW v_w AS SELECT id, ssn FROM users",
                "INSERT INTO v_w (id, ssn) VALUES (401, '{{c:ssn}}')",
            ],
        ),
        (
            "ALTER VIEW to read ssn",
            vec![
                "CREATE VIEW v_alt AS SELECT 1 AS x",
                "ALTER VIEW v_alt AS SELECT ssn AS x FROM users",
                "SELECT * FROM v_alt",
            ],
        ),
        (
            "CREATE TRIGGER setting ssn",
            vec![
                "CREATE TRIGGER t_set BEFORE INSERT ON users FOR EACH ROW SET NEW.ssn = '{{c:ssn}}'",
                then_insert,
            ],
        ),
        (
            "CREATE TRIGGER copying ssn out",
            vec![
                "CREATE TRIGGER t_copy AFTER UPDATE ON users FOR EACH ROW INSERT INTO notes (ssn) VALUES (NEW.ssn)",
                "UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1",
                "SELECT ssn FROM notes",
            ],
        ),
        (
            "CREATE TRIGGER on plain writing users",
            vec![
                "CREATE TRIGGER t_plain AFTER INSERT ON plain FOR EACH ROW UPDATE users SET ssn = NEW.v WHERE id = 1",
                "INSERT INTO plain (v) VALUES ('{{p}}')",
            ],
        ),
        (
            "CREATE TRIGGER in the twin writing the protected table",
            vec![
                "CREATE TRIGGER {{B}}.t_b AFTER INSERT ON {{B}}.plain FOR EACH ROW UPDATE {{A}}.users SET ssn = NEW.v WHERE id = 1",
                "INSERT INTO {{B}}.plain (v) VALUES ('{{p}}')",
            ],
        ),
        (
            "CREATE PROCEDURE writing ssn",
            vec![
                "CREATE PROCEDURE p_w() UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1",
                "CALL p_w()",
            ],
        ),
        (
            "CREATE PROCEDURE with a BEGIN body",
            vec![
                "CREATE PROCEDURE p_w2(v TEXT) BEGIN UPDATE users SET ssn = v WHERE id = 1; END",
                "CALL p_w2('{{c:ssn}}')",
            ],
        ),
        (
            "CREATE FUNCTION reading ssn",
            vec![
                "CREATE FUNCTION f_r() RETURNS TEXT READS SQL DATA RETURN (SELECT ssn FROM users LIMIT 1)",
                "SELECT f_r()",
            ],
        ),
        (
            "CREATE EVENT writing ssn",
            vec![
                "CREATE EVENT e_w ON SCHEDULE AT CURRENT_TIMESTAMP + INTERVAL 1 DAY DO UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1",
            ],
        ),
        (
            "RENAME TABLE out and back",
            vec![
                "RENAME TABLE users TO users_x",
                "INSERT INTO users_x (id, ssn) VALUES (402, '{{c:ssn}}')",
                "RENAME TABLE users_x TO users",
            ],
        ),
        (
            "RENAME TABLE swap with the twin",
            vec!["RENAME TABLE users TO u_tmp, {{B}}.users TO users, u_tmp TO {{B}}.users"],
        ),
        (
            "RENAME TABLE into the twin",
            vec![
                "RENAME TABLE users TO {{B}}.users_in_b",
                "SELECT * FROM {{B}}.users_in_b",
            ],
        ),
        (
            "RENAME TABLE the twin over the protected name",
            vec!["RENAME TABLE users TO users_old, {{B}}.users TO users"],
        ),
        (
            "CREATE INDEX on a protected column",
            vec![
                "CREATE INDEX ix_s ON users (ssn(10))",
                "SELECT ssn FROM users FORCE INDEX (ix_s) WHERE id = 1",
            ],
        ),
        ("CREATE SEQUENCE", vec!["CREATE SEQUENCE seq_x"]),
    ] {
        let mut c = z(label);
        for s in sql {
            c = c.q(s);
        }
        v.push(c);
    }
    v
}

// ---------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------

fn writes() -> Vec<Case> {
    let w = |name: &str| case("writes", name.to_owned());
    let mut v = vec![
        w("INSERT … SELECT copying ssn").q("INSERT INTO users (id, ssn) SELECT 500, ssn FROM users WHERE id = 1"),
        w("a restorer's prepared envelope is kept as it was")
            .roles(&[Restorer])
            .x("INSERT INTO users (id, ssn) VALUES (?, ?)", &[Some("906"), Some("{{stored:ssn:1}}")])
            .q("SELECT ssn FROM users WHERE id IN (1, 906)")
            .must(&[Restorer])
            .check(same_cells),
        w("INSERT … SELECT of a literal").q("INSERT INTO users (id, ssn) SELECT 501, '{{c:ssn}}'"),
        w("INSERT … SELECT from a plain table").q("INSERT INTO users (id, ssn) SELECT 502, v FROM plain WHERE id = 1"),
        w("INSERT … SELECT from a derived literal").q("INSERT INTO users (id, ssn) SELECT * FROM (SELECT 503, '{{c:ssn}}') t"),
        w("INSERT … SELECT out to a plain table").q("INSERT INTO notes (ssn, email) SELECT ssn, email FROM users").q("SELECT ssn, email FROM notes"),
        w("INSERT of a scalar subquery").q("INSERT INTO users (id, ssn) VALUES (505, (SELECT v FROM plain WHERE id = 1))"),
        w("REPLACE … SET").q("REPLACE INTO users SET id = 1, ssn = '{{c:ssn}}'"),
        w("REPLACE … SELECT copying a plain column").q("REPLACE INTO users (id, ssn) SELECT id, note FROM users WHERE id = 1"),
        w("INSERT … SET from a column").q("INSERT INTO users SET id = 506, ssn = note"),
        w("ON DUPLICATE KEY UPDATE ssn = VALUES(note)").q("INSERT INTO users (id, note) VALUES (1, '{{c:ssn}}') ON DUPLICATE KEY UPDATE ssn = VALUES(note)"),
        w("ON DUPLICATE KEY UPDATE ssn = note").q("INSERT INTO users (id, note) VALUES (1, 'x') ON DUPLICATE KEY UPDATE ssn = note"),
        w("ON DUPLICATE KEY UPDATE note = ssn").q("INSERT INTO users (id, note) VALUES (1, 'x') ON DUPLICATE KEY UPDATE note = ssn").q("SELECT note FROM users WHERE id = 1"),
        w("ON DUPLICATE KEY UPDATE ssn = CONCAT(…)").q("INSERT INTO users (id, ssn) VALUES (1, 'x') ON DUPLICATE KEY UPDATE ssn = CONCAT('{{c:ssn}}', '')"),
        w("ON DUPLICATE KEY UPDATE with a row alias (MySQL 8 syntax)").q("INSERT INTO users (id, ssn) VALUES (1, '{{c:ssn}}') AS new ON DUPLICATE KEY UPDATE ssn = new.ssn"),
        w("ON DUPLICATE KEY UPDATE from VALUES(phone)").q("INSERT INTO users (id, phone) VALUES (1, '{{c:ph}}') ON DUPLICATE KEY UPDATE ssn = VALUES(phone)"),
        w("multi-table UPDATE from a plain table").q("UPDATE users u JOIN plain p ON p.id = u.id SET u.ssn = p.v WHERE u.id = 1"),
        w("multi-table UPDATE copying between rows").q("UPDATE users u, users u2 SET u.ssn = u2.ssn WHERE u.id = 1 AND u2.id = 2"),
        w("multi-table UPDATE copying out").q("UPDATE users u, notes n SET n.ssn = u.ssn WHERE n.id = 1 AND u.id = 1").q("SELECT ssn FROM notes WHERE id = 1"),
        w("multi-table UPDATE across columns").q("UPDATE users u JOIN orders o ON o.user_id = u.id SET o.card_last4 = u.phone WHERE u.id = 1"),
        w("multi-table UPDATE with a literal").q("UPDATE users u JOIN orders o ON o.user_id = u.id SET u.ssn = '{{c:ssn}}', o.card_last4 = '{{c:card}}' WHERE u.id = 1"),
        w("UPDATE ssn = CONCAT(literal)").q("UPDATE users SET ssn = CONCAT('{{c:ssn}}', '') WHERE id = 1"),
        w("UPDATE ssn = CONCAT(ssn, …)").q("UPDATE users SET ssn = CONCAT(ssn, 'x') WHERE id = 1"),
        w("UPDATE ssn = note").q("UPDATE users SET ssn = note WHERE id = 1"),
        w("UPDATE ssn = email").q("UPDATE users SET ssn = email WHERE id = 1"),
        w("UPDATE full_name = ssn").q("UPDATE users SET full_name = ssn WHERE id = 1"),
        w("UPDATE note = ssn, then read note").q("UPDATE users SET note = ssn WHERE id = 1").q("SELECT note FROM users WHERE id = 1"),
        w("UPDATE note then ssn = note").q("UPDATE users SET note = '{{p}}', ssn = note WHERE id = 1"),
        w("UPDATE ssn then note = ssn").q("UPDATE users SET ssn = '{{c:ssn}}', note = ssn WHERE id = 1").q("SELECT note FROM users WHERE id = 1"),
        w("UPDATE … ORDER BY email LIMIT").q("UPDATE users SET ssn = '{{c:ssn}}' ORDER BY email LIMIT 1"),
        w("UPDATE WHERE ssn = literal").q("UPDATE users SET note = 'x' WHERE ssn = '{{s:ssn:1}}'"),
        w("UPDATE ssn = a copy of row 2").q("UPDATE users SET ssn = (SELECT ssn FROM (SELECT ssn FROM users WHERE id = 2) t) WHERE id = 1"),
        w("UPDATE ssn = DEFAULT").q("UPDATE users SET ssn = DEFAULT, phone = DEFAULT WHERE id = 3"),
        w("UPDATE ssn = DEFAULT(ssn)").q("UPDATE users SET ssn = DEFAULT(ssn) WHERE id = 1"),
        w("UPDATE email_bidx from another row").q("UPDATE users SET email_bidx = (SELECT b FROM (SELECT email_bidx AS b FROM users WHERE id = 2) t) WHERE id = 4"),
        w("UPDATE email_bidx = NULL").q("UPDATE users SET email_bidx = NULL WHERE id = 1"),
        w("UPDATE email = email").q("UPDATE users SET email = email WHERE id = 1"),
        w("UPDATE with a user variable").q("SET @v = '{{c:ssn}}'; UPDATE users SET ssn = @v WHERE id = 1"),
        w("UPDATE LOW_PRIORITY IGNORE").q("UPDATE LOW_PRIORITY IGNORE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE IGNORE").q("UPDATE IGNORE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE LOW_PRIORITY").q("UPDATE LOW_PRIORITY users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE IGNORE of orders").q("UPDATE IGNORE orders SET card_last4 = '{{c:card}}' WHERE id = 1"),
        w("multi-table UPDATE IGNORE").q("UPDATE IGNORE users u JOIN orders o ON o.user_id = u.id SET u.phone = '{{c:ph}}' WHERE u.id = 1"),
        w("DELETE IGNORE by email").q("DELETE IGNORE FROM users WHERE email = '{{s:em:1}}'"),
        w("INSERT IGNORE with a column list").q("INSERT IGNORE INTO users (id, ssn) VALUES (540, '{{c:ssn}}')"),
        w("INSERT without INTO").q("INSERT users (id, ssn) VALUES (541, '{{c:ssn}}')"),
        w("INSERT IGNORE without INTO").q("INSERT IGNORE users (id, ssn) VALUES (542, '{{c:ssn}}')"),
        w("REPLACE without INTO").q("REPLACE users (id, ssn) VALUES (1, '{{c:ssn}}')"),
        w("INSERT … SET without INTO").q("INSERT users SET id = 543, ssn = '{{c:ssn}}'"),
        w("REPLACE LOW_PRIORITY").q("REPLACE LOW_PRIORITY INTO users (id, ssn) VALUES (1, '{{c:ssn}}')"),
        w("UPDATE IGNORE in an executable comment").q("UPDATE /*!IGNORE*/ users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE IGNORE with a qualified table").db(Some("{{B}}")).q("UPDATE IGNORE {{A}}.users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE IGNORE through the binary protocol").x("UPDATE IGNORE users SET ssn = ? WHERE id = 1", &[Some("{{c:ssn}}")]),
        w("UPDATE of a parenthesized table").q("UPDATE (users) SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE with an index hint").q("UPDATE users FORCE INDEX (PRIMARY) SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE with an alias and no AS").q("UPDATE users u SET u.ssn = '{{c:ssn}}' WHERE u.id = 1"),
        w("UPDATE with a PARTITION clause").q("UPDATE users PARTITION (p0) SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("UPDATE joined with a derived table").q("UPDATE users, (SELECT 1 AS one) d SET users.ssn = '{{c:ssn}}' WHERE users.id = d.one"),
        w("WITH … UPDATE").q("WITH x AS (SELECT 1) UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("ANALYZE UPDATE executes").q("ANALYZE UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("ANALYZE FORMAT=JSON INSERT").q("ANALYZE FORMAT=JSON INSERT INTO users (id, ssn) VALUES (544, '{{c:ssn}}')"),
        w("ANALYZE UPDATE IGNORE").q("ANALYZE UPDATE IGNORE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        w("ANALYZE DELETE … RETURNING").q("ANALYZE DELETE FROM users WHERE id = 2 RETURNING ssn"),
        w("adjacent literals around a comment").q("UPDATE users SET ssn = '{{c:ssn}}' /* c */ 'x' WHERE id = 1"),
        w("N'' then an adjacent string").q("UPDATE users SET ssn = N'{{c:ssn}}' 'x' WHERE id = 1"),
        w("_binary then two strings").q("UPDATE users SET ssn = _binary '{{c:ssn}}' 'x' WHERE id = 1"),
        w("SET with :=").q("UPDATE users SET ssn := '{{c:ssn}}' WHERE id = 1"),
        w("a column named twice in SET").q("UPDATE users SET ssn = '{{c:ssn}}', users.ssn = note WHERE id = 1"),
        w("VALUES ROW()").q("INSERT INTO users (id, ssn) VALUES ROW(545, '{{c:ssn}}')"),
        w("multi-table DELETE by email").q("DELETE u FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = '{{s:em:1}}'"),
        w("INSERT LOW_PRIORITY IGNORE").q("INSERT LOW_PRIORITY IGNORE INTO users (id, ssn) VALUES (508, '{{c:ssn}}')"),
        w("INSERT mixing a literal and an expression").q("INSERT INTO users (id, ssn) VALUES (511, '{{c:ssn}}'), (512, CONCAT('{{c2:ssn}}', ''))"),
        w("INSERT with a qualified column list").q("INSERT INTO users (users.id, users.ssn) VALUES (514, '{{c:ssn}}')"),
        w("INSERT DEFAULT(ssn)").q("INSERT INTO users (id, ssn) VALUES (517, DEFAULT(ssn))"),
        w("INSERT with a column list omitted")
            .q("INSERT INTO users VALUES (518, '{{c:em}}', NULL, '{{c:fn}}', '{{c:ph}}', '{{c:ssn}}', 'x')")
            .q("SELECT ssn, full_name FROM users WHERE email = '{{c:em}}'")
            .expect(App, &[&[Some("{{c:ssn}}"), Some("{{c:fn}}")]]),
        w("INSERT with a column list omitted and DEFAULT for the index")
            .q("INSERT INTO users VALUES (519, '{{c:em}}', DEFAULT, NULL, NULL, '{{c:ssn}}', DEFAULT)")
            .q("SELECT ssn FROM users WHERE email = '{{c:em}}'")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        w("INSERT with a column list omitted and an index value").q("INSERT INTO users VALUES (520, '{{c:em}}', 'x', NULL, NULL, '{{c:ssn}}', 'x')"),
        w("INSERT with a column list omitted, two rows").q("INSERT INTO users VALUES (521, NULL, NULL, '{{c:fn}}', NULL, '{{c:ssn}}', 'x'), (522, NULL, NULL, NULL, '{{c:ph}}', '{{c2:ssn}}', 'y')"),
        w("INSERT into orders without a column list").q("INSERT INTO orders VALUES (10, 1, 1.00, '{{c:card}}', 'x')"),
        w("INSERT … RETURNING ssn")
            .q("INSERT INTO users (id, ssn) VALUES (524, '{{c:ssn}}') RETURNING ssn")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        w("INSERT … RETURNING CONCAT(ssn)").q("INSERT INTO users (id, ssn) VALUES (526, '{{c:ssn}}') RETURNING CONCAT(ssn, '')"),
        w("INSERT … SELECT … RETURNING").q("INSERT INTO notes (ssn) SELECT note FROM users WHERE id = 1 RETURNING ssn"),
        w("DELETE … RETURNING ssn").q("DELETE FROM users WHERE id = 2 RETURNING ssn, email"),
        w("DELETE … RETURNING *").q("DELETE FROM users WHERE id = 3 RETURNING *"),
        w("REPLACE … RETURNING").q("REPLACE INTO users (id, ssn) VALUES (1, '{{c:ssn}}') RETURNING ssn, email"),
        w("DELETE with a join").q("DELETE u FROM users u JOIN plain p ON p.id = u.id WHERE p.v = 'pv1'"),
        w("DELETE WHERE ssn = literal").q("DELETE FROM users WHERE ssn = '{{s:ssn:1}}'"),
        w("orders: INSERT a card").q("INSERT INTO orders (user_id, card_last4) VALUES (1, '{{c:card}}')"),
        w("comments: UPDATE a body").q("UPDATE comments SET body = '{{c:body}}' WHERE id = 1"),
        w("orders: UPDATE from users.ssn").q("UPDATE orders o JOIN users u ON u.id = o.user_id SET o.card_last4 = u.ssn"),
        w("a ciphertext copy written back by a restorer")
            .q("UPDATE users SET ssn = X'{{env:ssn:2}}' WHERE id = 4")
            .q("SELECT ssn FROM users WHERE id = 4"),
        w("an email ciphertext copied to another row")
            .q("UPDATE users SET email = X'{{env:em:2}}' WHERE id = 4"),
        w("an email ciphertext inserted as a new row")
            .q("INSERT INTO users (id, email) VALUES (527, X'{{env:em:1}}')"),
        w("a full_name ciphertext written into ssn")
            .q("UPDATE users SET ssn = X'{{env:fn:1}}' WHERE id = 4")
            .q("SELECT ssn FROM users WHERE id = 4"),
        w("a ciphertext written as plaintext into full_name")
            .q("UPDATE users SET full_name = X'{{env:fn:1}}' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4"),
        w("a forged envelope").q("UPDATE users SET phone = X'4D5601010000000100{{x:c:ph}}' WHERE id = 4"),
        w("LOAD DATA LOCAL into users").local("LOAD DATA LOCAL INFILE 'corpus.tsv' INTO TABLE users (id, ssn)", "600\t{{c:ssn}}\n"),
        w("LOAD DATA LOCAL with SET").local("LOAD DATA LOCAL INFILE 'corpus.tsv' INTO TABLE users (id, @x) SET ssn = @x", "601\t{{c:ssn}}\n"),
        w("LOAD DATA LOCAL qualified from the twin").db(Some("{{B}}")).local("LOAD DATA LOCAL INFILE 'corpus.csv' INTO TABLE {{A}}.users FIELDS TERMINATED BY ',' (id, ssn)", "602,{{c:ssn}}\n"),
        w("LOAD DATA LOCAL into a plain table reading users").local("LOAD DATA LOCAL INFILE 'corpus.tsv' INTO TABLE plain (v) SET n = (SELECT COUNT(*) FROM users)", "{{p}}\n"),
        w("LOAD XML LOCAL into users").local("LOAD XML LOCAL INFILE 'corpus.xml' INTO TABLE users", "<row id=\"603\" ssn=\"{{c:ssn}}\"/>\n"),
        w("LOAD DATA LOCAL in an executable comment").local("/*!LOAD DATA LOCAL INFILE 'corpus.tsv' INTO TABLE users (id, ssn)*/", "604\t{{c:ssn}}\n"),
    ];
    let bin: Vec<Case> = [
        "INSERT … SELECT copying ssn",
        "UPDATE ssn = CONCAT(literal)",
        "UPDATE ssn = note",
        "ON DUPLICATE KEY UPDATE ssn = VALUES(note)",
        "multi-table UPDATE from a plain table",
        "INSERT … RETURNING ssn",
        "DELETE … RETURNING ssn",
        "INSERT with a column list omitted",
        "UPDATE note = ssn, then read note",
        "a ciphertext copy written back by a restorer",
    ]
    .iter()
    .map(|n| {
        v.iter()
            .find(|c| c.name == *n)
            .unwrap_or_else(|| panic!("{n}"))
            .binary()
    })
    .collect();
    v.extend(bin);
    v.extend([
        w("prepared: INSERT with markers")
            .x(
                "INSERT INTO users (id, email, ssn) VALUES (?, ?, ?)",
                &[Some("530"), Some("{{c:em}}"), Some("{{c:ssn}}")],
            )
            .x("SELECT ssn FROM users WHERE email = ?", &[Some("{{c:em}}")])
            .expect(App, &[&[Some("{{c:ssn}}")]]),
        w("prepared: a marker into CONCAT").x(
            "UPDATE users SET ssn = CONCAT(?, '') WHERE id = ?",
            &[Some("{{c:ssn}}"), Some("1")],
        ),
        w("prepared: INSERT … SELECT with a marker").x(
            "INSERT INTO users (id, ssn) SELECT ?, ?",
            &[Some("531"), Some("{{c:ssn}}")],
        ),
        w("prepared: ON DUPLICATE KEY with markers").x(
            "INSERT INTO users (id, ssn) VALUES (?, ?) ON DUPLICATE KEY UPDATE ssn = ?",
            &[Some("1"), Some("{{c:ssn}}"), Some("{{c2:ssn}}")],
        ),
        w("prepared: the blind index as a marker").x(
            "INSERT INTO users (id, email, email_bidx) VALUES (?, ?, ?)",
            &[Some("532"), Some("{{c:em}}"), Some("x")],
        ),
        w("prepared: markers in a multi-table update").x(
            "UPDATE users u, orders o SET u.ssn = ?, o.card_last4 = ? WHERE u.id = 1 AND o.id = 1",
            &[Some("{{c:ssn}}"), Some("{{c:card}}")],
        ),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------

fn reads() -> Vec<Case> {
    let r = |name: &str| case("reads", name.to_owned());
    let mut v = Vec::new();
    let plain: &[(&str, &str)] = &[
        (
            "a derived table",
            "SELECT x FROM (SELECT ssn AS x FROM users) d",
        ),
        (
            "a derived SELECT *",
            "SELECT * FROM (SELECT * FROM users) d",
        ),
        (
            "a derived UNION",
            "SELECT x FROM (SELECT ssn AS x FROM users UNION ALL SELECT note FROM users) d",
        ),
        (
            "a derived table named orders with card_last4",
            "SELECT orders.card_last4 FROM (SELECT ssn AS card_last4 FROM users) AS orders",
        ),
        (
            "a derived table named users with full_name",
            "SELECT users.full_name FROM (SELECT ssn AS full_name FROM users) AS users",
        ),
        (
            "a derived table named comments with body",
            "SELECT comments.body FROM (SELECT email AS body FROM users) comments",
        ),
        (
            "a CTE shadowing users",
            "WITH users AS (SELECT ssn AS full_name FROM {{A}}.users) SELECT full_name FROM users",
        ),
        (
            "a CTE column list",
            "WITH x (full_name) AS (SELECT ssn FROM users) SELECT full_name FROM x",
        ),
        (
            "a recursive CTE carrying ssn",
            "WITH RECURSIVE r (n, s) AS (SELECT 1, ssn FROM users WHERE id = 1 UNION ALL SELECT n + 1, s FROM r WHERE n < 3) SELECT s FROM r",
        ),
        (
            "a recursive CTE mixing note and ssn",
            "WITH RECURSIVE r (n, s) AS (SELECT 1, CAST(note AS CHAR(300)) FROM users WHERE id = 1 UNION ALL SELECT r.n + 1, u.ssn FROM r JOIN users u ON u.id = r.n + 1 WHERE r.n < 3) SELECT s FROM r",
        ),
        (
            "a recursive CTE named like a table",
            "WITH RECURSIVE orders (card_last4, n) AS (SELECT ssn, 1 FROM users WHERE id = 1 UNION ALL SELECT card_last4, n + 1 FROM orders WHERE n < 2) SELECT card_last4 FROM orders",
        ),
        (
            "UNION ALL full_name then ssn",
            "SELECT full_name FROM users UNION ALL SELECT ssn FROM users",
        ),
        (
            "UNION ALL note then ssn",
            "SELECT note FROM users UNION ALL SELECT ssn FROM users",
        ),
        (
            "UNION full_name and email",
            "SELECT full_name FROM users UNION SELECT email FROM users",
        ),
        (
            "UNION ALL card and phone",
            "SELECT card_last4 FROM orders UNION ALL SELECT phone FROM users",
        ),
        (
            "EXCEPT note minus ssn",
            "SELECT note FROM users EXCEPT SELECT ssn FROM users",
        ),
        (
            "VALUES then ssn",
            "VALUES ('x') UNION ALL SELECT ssn FROM users",
        ),
        (
            "a scalar subquery",
            "SELECT (SELECT ssn FROM users WHERE id = 1)",
        ),
        (
            "a scalar subquery named full_name",
            "SELECT (SELECT ssn FROM users WHERE id = 1) AS full_name",
        ),
        (
            "a correlated subquery",
            "SELECT id, (SELECT u2.ssn FROM users u2 WHERE u2.id = u1.id) FROM users u1",
        ),
        (
            "EXISTS comparing ssn",
            "SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM users v WHERE v.ssn = u.ssn AND v.id <> u.id)",
        ),
        (
            "a correlated phone",
            "SELECT o.id, (SELECT u.phone FROM users u WHERE u.id = o.user_id) FROM orders o",
        ),
        ("JSON_OBJECT", "SELECT JSON_OBJECT('s', ssn) FROM users"),
        ("JSON_ARRAYAGG", "SELECT JSON_ARRAYAGG(ssn) FROM users"),
        (
            "JSON_EXTRACT of JSON_OBJECT",
            "SELECT JSON_EXTRACT(JSON_OBJECT('s', ssn), '$.s') FROM users",
        ),
        ("JSON_QUOTE", "SELECT JSON_QUOTE(ssn) FROM users"),
        (
            "JSON_TABLE",
            "SELECT * FROM JSON_TABLE((SELECT JSON_ARRAYAGG(ssn) FROM users), '$[*]' COLUMNS (s TEXT PATH '$')) jt",
        ),
        ("GROUP_CONCAT", "SELECT GROUP_CONCAT(ssn) FROM users"),
        (
            "GROUP_CONCAT DISTINCT ORDER BY",
            "SELECT GROUP_CONCAT(DISTINCT email ORDER BY email) FROM users",
        ),
        ("ORDER BY ssn", "SELECT id FROM users ORDER BY ssn"),
        (
            "ORDER BY position of ssn",
            "SELECT id, ssn FROM users ORDER BY 2",
        ),
        (
            "GROUP BY email",
            "SELECT COUNT(*) FROM users GROUP BY email",
        ),
        (
            "ROW_NUMBER over ssn",
            "SELECT id, ROW_NUMBER() OVER (ORDER BY ssn) FROM users",
        ),
        (
            "FIRST_VALUE(ssn)",
            "SELECT FIRST_VALUE(ssn) OVER () FROM users",
        ),
        (
            "alias ssn AS full_name",
            "SELECT ssn AS full_name FROM users",
        ),
        ("a table alias", "SELECT u.ssn FROM users u"),
        (
            "an alias shadowing another table",
            "SELECT orders.ssn FROM users AS orders",
        ),
        (
            "index hints",
            "SELECT ssn FROM users USE INDEX (PRIMARY) WHERE id = 1",
        ),
        (
            "both users tables in a UNION",
            "SELECT ssn FROM {{A}}.users AS u WHERE u.id = 1 UNION ALL SELECT ssn FROM {{B}}.users",
        ),
        (
            "a join on blind indexes",
            "SELECT u1.id, u2.id FROM users u1 JOIN users u2 ON u1.email_bidx = u2.email_bidx WHERE u1.id <> u2.id",
        ),
        ("the blind index itself", "SELECT id, email_bidx FROM users"),
        (
            "LOCK IN SHARE MODE of ssn",
            "SELECT ssn FROM users WHERE id = 1 LOCK IN SHARE MODE",
        ),
        (
            "SQL_CALC_FOUND_ROWS",
            "SELECT SQL_CALC_FOUND_ROWS ssn FROM users LIMIT 1",
        ),
        ("TABLE statement", "TABLE users"),
        (
            "FOR SYSTEM_TIME ALL",
            "SELECT ssn FROM users FOR SYSTEM_TIME ALL",
        ),
        (
            "PROCEDURE ANALYSE of ssn",
            "SELECT ssn FROM users PROCEDURE ANALYSE()",
        ),
        (
            "PROCEDURE ANALYSE of email",
            "SELECT email FROM users PROCEDURE ANALYSE()",
        ),
        (
            "PROCEDURE ANALYSE of full_name",
            "SELECT full_name FROM users PROCEDURE ANALYSE(1, 1)",
        ),
        (
            "EXPLAIN FORMAT=JSON with a search",
            "EXPLAIN FORMAT=JSON SELECT ssn FROM users WHERE email = '{{s:em:1}}'",
        ),
        (
            "ANALYZE FORMAT=JSON",
            "ANALYZE FORMAT=JSON SELECT ssn FROM users",
        ),
        (
            "a UNION with LOAD_FILE",
            "SELECT ssn FROM users WHERE id = 1 UNION SELECT LOAD_FILE('/etc/hostname')",
        ),
        (
            "key material through LOAD_FILE",
            "SELECT LOAD_FILE('{{keys}}/master.key'), LOAD_FILE('{{keys}}/keyring.toml')",
        ),
        (
            "a join of full_name and ssn on id",
            "SELECT a.full_name, b.ssn FROM users a JOIN users b ON a.id = b.id",
        ),
        (
            "NATURAL JOIN orders",
            "SELECT * FROM users NATURAL JOIN orders",
        ),
    ];
    for (label, sql) in plain {
        v.push(r(label).q(sql));
    }
    let funcs = [
        "CAST(ssn AS CHAR)",
        "CONVERT(ssn USING latin1)",
        "HEX(ssn)",
        "HEX(email)",
        "TO_BASE64(email)",
        "SUBSTR(ssn, 1, 12)",
        "LEFT(email, 10)",
        "CONCAT(ssn)",
        "CONCAT_WS(',', ssn, email)",
        "LOWER(ssn)",
        "REVERSE(ssn)",
        "LENGTH(ssn)",
        "IF(1, ssn, note)",
        "CASE WHEN 1 THEN ssn END",
        "ssn + 0",
        "BINARY ssn",
        "QUOTE(ssn)",
        "ssn IS NOT NULL",
        "FROM_BASE64(ssn)",
        "UNCOMPRESS(ssn)",
    ];
    for f in funcs {
        v.push(r(&format!("function: {f}")).q(&format!("SELECT {f} FROM users WHERE id = 1")));
    }
    // Views created directly by root.
    let views = [
        (
            "a view renaming ssn",
            "CREATE VIEW v_s AS SELECT id, ssn AS s FROM users",
            "SELECT s FROM v_s",
        ),
        (
            "a view of CONCAT(ssn)",
            "CREATE VIEW v_cat AS SELECT id, CONCAT(ssn, '') AS s FROM users",
            "SELECT s FROM v_cat",
        ),
        (
            "a view of SUBSTR(ssn)",
            "CREATE VIEW v_sub AS SELECT id, SUBSTR(ssn, 1, 10) AS s FROM users",
            "SELECT s FROM v_sub",
        ),
        (
            "a view of SELECT *",
            "CREATE VIEW v_star AS SELECT * FROM users",
            "SELECT * FROM v_star",
        ),
        (
            "a view of a UNION",
            "CREATE VIEW v_union AS SELECT note AS x FROM users UNION ALL SELECT ssn FROM users",
            "SELECT x FROM v_union",
        ),
        (
            "a view with a column list",
            "CREATE VIEW v_cols (a, b) AS SELECT id, ssn FROM users",
            "SELECT b FROM v_cols",
        ),
        (
            "a view renaming ssn as full_name",
            "CREATE VIEW v_fake AS SELECT id, ssn AS full_name FROM users",
            "SELECT full_name FROM v_fake",
        ),
        (
            "a view of a join",
            "CREATE VIEW v_join AS SELECT u.id, u.phone AS card_last4 FROM users u JOIN orders o ON o.user_id = u.id",
            "SELECT card_last4 FROM v_join",
        ),
        (
            "a view of GROUP_CONCAT",
            "CREATE VIEW v_gc AS SELECT GROUP_CONCAT(ssn) AS g FROM users",
            "SELECT g FROM v_gc",
        ),
        (
            "a view over a view",
            "CREATE VIEW v_base AS SELECT id, ssn AS full_name FROM users",
            "SELECT full_name FROM v_base",
        ),
        (
            "a view in the twin over the protected table",
            "CREATE VIEW {{B}}.v_b AS SELECT id, ssn AS full_name FROM {{A}}.users",
            "SELECT full_name FROM {{B}}.v_b",
        ),
        (
            "a view selecting the blind index",
            "CREATE VIEW v_bidx AS SELECT id, email_bidx AS e FROM users",
            "SELECT e FROM v_bidx",
        ),
        (
            "a view of a scalar subquery",
            "CREATE VIEW v_scalar AS SELECT (SELECT ssn FROM users WHERE id = 1) AS full_name",
            "SELECT full_name FROM v_scalar",
        ),
    ];
    for (label, create, select) in views {
        v.push(r(label).root(create).q(select));
    }
    v.push(
        r("a view over a view over ssn")
            .root("CREATE VIEW v_l1 AS SELECT id, ssn AS x FROM users")
            .root("CREATE VIEW v_l2 AS SELECT x AS full_name FROM v_l1")
            .q("SELECT full_name FROM v_l2"),
    );
    v.push(
        r("a view from the twin, read from the twin")
            .db(Some("{{B}}"))
            .root("CREATE VIEW {{B}}.v_b2 AS SELECT ssn FROM {{A}}.users")
            .q("SELECT ssn FROM v_b2"),
    );
    // Session variables and files.
    v.extend([
        r("SELECT … INTO @v, then @v")
            .q("SELECT ssn INTO @v FROM users WHERE id = 1")
            .q("SELECT @v"),
        r("SELECT … INTO @v at the end, then @v")
            .q("SELECT email FROM users WHERE id = 1 INTO @v")
            .q("SELECT @v, HEX(@v)"),
        r("SELECT INTO and @v in one query")
            .q("SELECT ssn INTO @v FROM users WHERE id = 1; SELECT @v"),
        r("@v := ssn")
            .q("SELECT @v := ssn FROM users WHERE id = 1")
            .q("SELECT @v"),
        r("SET @v = (SELECT ssn)")
            .q("SET @v = (SELECT ssn FROM users WHERE id = 1)")
            .q("SELECT @v"),
        r("a variable compared with a guess")
            .q("SELECT email INTO @e FROM users WHERE id = 1")
            .q("SELECT @e = '{{s:em:1}}', LENGTH(@e)"),
        r("INTO OUTFILE").q("SELECT ssn FROM users INTO OUTFILE '{{outfile}}'"),
        r("INTO DUMPFILE").q("SELECT email INTO DUMPFILE '{{outfile}}' FROM users WHERE id = 1"),
        r("INTO OUTFILE, then LOAD_FILE")
            .q("SELECT ssn, email FROM users INTO OUTFILE '{{outfile}}'")
            .q("SELECT LOAD_FILE('{{outfile}}')"),
        r("HANDLER on users")
            .q("HANDLER users OPEN")
            .q("HANDLER users READ FIRST")
            .q("HANDLER users CLOSE"),
        r("HANDLER with an alias, read by the alias")
            .q("HANDLER users OPEN AS h")
            .q("HANDLER h READ FIRST"),
        r("HANDLER from the twin, qualified")
            .db(Some("{{B}}"))
            .q("HANDLER {{A}}.users OPEN AS h2")
            .q("HANDLER h2 READ NEXT"),
        r("SHOW WARNINGS after a cast")
            .q("SELECT CAST(ssn AS SIGNED) FROM users")
            .q("SHOW WARNINGS"),
        r("FOUND_ROWS after a protected read")
            .q("SELECT SQL_CALC_FOUND_ROWS ssn FROM users LIMIT 1; SELECT FOUND_ROWS()"),
    ]);
    let bin: Vec<Case> = [
        "a derived table",
        "a derived table named users with full_name",
        "UNION ALL full_name then ssn",
        "a scalar subquery named full_name",
        "GROUP_CONCAT",
        "alias ssn AS full_name",
        "function: HEX(ssn)",
        "function: TO_BASE64(email)",
        "a view renaming ssn as full_name",
        "an alias shadowing another table",
    ]
    .iter()
    .map(|n| {
        v.iter()
            .find(|c| c.name == *n)
            .unwrap_or_else(|| panic!("{n}"))
            .binary()
    })
    .collect();
    v.extend(bin);
    v.extend([
        r("support reads card through an alias named users")
            .q("SELECT users.card_last4 FROM orders AS users WHERE users.id = 1")
            .expect(Support, &[&[Some("{{s:card:1}}")]]),
        r("support reads full_name aliased as ssn")
            .q("SELECT full_name AS ssn FROM users WHERE id = 2")
            .expect(Support, &[&[Some("{{s:fn:2}}")]]),
        r("support reads full_name through a CTE")
            .q("WITH c AS (SELECT id, full_name FROM users) SELECT full_name FROM c WHERE id = 3")
            .expect(Support, &[&[Some("{{s:fn:3}}")]]),
        r("support reads full_name of a scalar subquery")
            .q("SELECT (SELECT full_name FROM users WHERE id = 1) AS x")
            .expect(Support, &[&[Some("{{s:fn:1}}")]]),
        r("prepared: a read with a marker on id").x(
            "SELECT ssn, email, full_name FROM users WHERE id = ?",
            &[Some("1")],
        ),
        r("prepared: a derived table with a marker").x(
            "SELECT x FROM (SELECT ssn AS x, id FROM users) d WHERE d.id = ?",
            &[Some("2")],
        ),
        r("prepared: a function over a marker and ssn")
            .x("SELECT CONCAT(ssn, ?) FROM users", &[Some("x")]),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// Existence oracles: the answer must not depend on whether a guessed value exists
// ---------------------------------------------------------------------------------------

fn oracles() -> Vec<Case> {
    let o = |name: &str| case("oracle", name.to_owned()).oracle(Col::Email);
    let mut v = vec![
        o("COUNT WHERE email = guess").q("SELECT COUNT(*) FROM users WHERE email = '{{g:em}}'"),
        o("id WHERE email IN (guess)").q("SELECT id FROM users WHERE email IN ('{{g:em}}', 'nobody@example.com')"),
        o("null-safe equality").q("SELECT COUNT(*) FROM users WHERE email <=> '{{g:em}}'"),
        o("NOT <>").q("SELECT COUNT(*) FROM users WHERE NOT (email <> '{{g:em}}')"),
        o("EXISTS").q("SELECT EXISTS (SELECT 1 FROM users WHERE email = '{{g:em}}')"),
        o("a BINARY guess").q("SELECT COUNT(*) FROM users WHERE email = BINARY '{{g:em}}'"),
        o("a hex guess").q("SELECT COUNT(*) FROM users WHERE email = X'{{x:g:em}}'"),
        o("an adjacent-string guess").q("SELECT COUNT(*) FROM users WHERE email = '{{g:em}}' ''"),
        o("a parenthesized column").q("SELECT COUNT(*) FROM users WHERE (email) = '{{g:em}}'"),
        o("a row constructor").q("SELECT COUNT(*) FROM users WHERE (email, 1) = ('{{g:em}}', 1)"),
        o("an IN subquery").q("SELECT COUNT(*) FROM users WHERE email IN (SELECT '{{g:em}}')"),
        o("a CASE").q("SELECT SUM(CASE WHEN email = '{{g:em}}' THEN 1 ELSE 0 END) FROM users"),
        o("HAVING").q("SELECT id FROM users GROUP BY id, email HAVING email = '{{g:em}}'"),
        o("JOIN ON").q("SELECT COUNT(*) FROM users u JOIN orders o ON u.email = '{{g:em}}' AND o.user_id = u.id"),
        o("a derived table").q("SELECT COUNT(*) FROM (SELECT email AS e FROM users) t WHERE t.e = '{{g:em}}'"),
        o("a CTE").q("WITH c AS (SELECT email FROM users) SELECT COUNT(*) FROM c WHERE email = '{{g:em}}'"),
        o("a view").root("CREATE VIEW v_em AS SELECT id, email AS e FROM users").q("SELECT COUNT(*) FROM v_em WHERE e = '{{g:em}}'"),
        o("LIKE").q("SELECT COUNT(*) FROM users WHERE email LIKE '{{g:em}}'"),
        o("BETWEEN").q("SELECT COUNT(*) FROM users WHERE email BETWEEN '{{g:em}}' AND '{{g:em}}'"),
        o("the blind index of a searched row").q("SELECT COUNT(*) FROM users WHERE email_bidx = (SELECT email_bidx FROM users WHERE email = '{{g:em}}')"),
        o("UPDATE affected rows").q("UPDATE users SET note = 'touched' WHERE email = '{{g:em}}'"),
        o("DELETE affected rows").q("DELETE FROM users WHERE email = '{{g:em}}'"),
        o("INSERT a guessed email").q("INSERT INTO users (id, email) VALUES (900, '{{g:em}}')"),
        o("INSERT IGNORE a guessed email").q("INSERT IGNORE INTO users (id, email) VALUES (901, '{{g:em}}')").q("SELECT COUNT(*) FROM users"),
        o("INSERT … ON DUPLICATE KEY UPDATE").q("INSERT INTO users (id, email, note) VALUES (902, '{{g:em}}', 'n') ON DUPLICATE KEY UPDATE note = 'dup'").q("SELECT COUNT(*) FROM users WHERE note = 'dup'"),
        o("REPLACE a guessed email").q("REPLACE INTO users (id, email) VALUES (903, '{{g:em}}')").q("SELECT COUNT(*) FROM users"),
        o("UPDATE email to a guess").q("UPDATE users SET email = '{{g:em}}' WHERE id = 4"),
        o("UPDATE IGNORE email to a guess").q("UPDATE IGNORE users SET email = '{{g:em}}' WHERE id = 4").q("SELECT COUNT(*) FROM users WHERE email IS NULL"),
        o("prepared search").x("SELECT COUNT(*) FROM users WHERE email = ?", &[Some("{{g:em}}")]),
        o("prepared INSERT").x("INSERT INTO users (id, email) VALUES (?, ?)", &[Some("904"), Some("{{g:em}}")]),
        o("SQL-level prepared search").q("PREPARE s FROM 'SELECT COUNT(*) FROM users WHERE email = ?'").q("EXECUTE s USING '{{g:em}}'"),
        o("EXECUTE IMMEDIATE search").q("EXECUTE IMMEDIATE 'SELECT COUNT(*) FROM users WHERE email = ?' USING '{{g:em}}'"),
        o("a hash pseudonym of a guess through UNION").q("SELECT email FROM users WHERE id = 1 UNION ALL SELECT '{{g:em}}'"),
        o("a guess compared with a variable").q("SELECT email INTO @e FROM users WHERE id = 1").q("SELECT @e = '{{g:em}}'"),
        o("a guess after ANSI_QUOTES").q("SET sql_mode = 'ANSI_QUOTES'").q("SELECT COUNT(*) FROM \"users\" WHERE \"email\" = '{{g:em}}'"),
        o("a guess in an executable comment").q("SELECT COUNT(*) FROM users WHERE /*!40000 email = '{{g:em}}' AND */ 1"),
    ];
    v.push(
        case("oracle", "ssn guess (no blind index)")
            .oracle(Col::Ssn)
            .q("SELECT COUNT(*) FROM users WHERE ssn = '{{g:ssn}}'"),
    );
    v.push(
        case("oracle", "full_name guess")
            .oracle(Col::FullName)
            .q("SELECT COUNT(*) FROM users WHERE full_name = '{{g:fn}}'"),
    );
    v.push(
        case("oracle", "phone guess in a unique index")
            .oracle(Col::Phone)
            .root("CREATE UNIQUE INDEX ux_phone ON users (phone)")
            .q("INSERT INTO users (id, phone) VALUES (905, '{{g:ph}}')"),
    );
    v.push(
        case("oracle", "card guess")
            .oracle(Col::Card)
            .q("SELECT COUNT(*) FROM orders WHERE card_last4 = '{{g:card}}'"),
    );
    v
}

// ---------------------------------------------------------------------------------------
// Hash masks: pseudonyms are keyed per column
// ---------------------------------------------------------------------------------------

fn values(outs: &[StepOut]) -> Vec<Vec<Vec<Vec<u8>>>> {
    outs.iter()
        .flat_map(|o| o.items.iter())
        .filter_map(|i| match i {
            Item::Rows { rows, .. } => Some(
                rows.iter()
                    .map(|r| r.iter().flatten().cloned().collect())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// No two columns of a row share a pseudonym.
fn distinct_in_rows(role: Role, outs: &[StepOut]) -> Option<String> {
    if !role.hashes() {
        return None;
    }
    for set in values(outs) {
        for row in set {
            for i in 0..row.len() {
                for j in i + 1..row.len() {
                    if row[i] == row[j] {
                        return Some(format!(
                            "the same pseudonym {} for two columns of one row",
                            printable(&row[i], 40)
                        ));
                    }
                }
            }
        }
    }
    None
}

/// A ciphertext role's two rows hold the same stored cell (an envelope written back as
/// it was, not sealed again as if it were plaintext).
fn same_cells(role: Role, outs: &[StepOut]) -> Option<String> {
    let Some(set) = values(outs).pop() else {
        return Some(format!("as {}: no result to compare", role.name()));
    };
    let cells: Vec<&Vec<u8>> = set.iter().flatten().collect();
    match cells.as_slice() {
        [a, b] if a == b => None,
        _ => Some(format!(
            "as {}: the rows hold {:?}, not one cell twice",
            role.name(),
            cells.iter().map(|c| printable(c, 40)).collect::<Vec<_>>()
        )),
    }
}

/// No two rows of a one-column result share a pseudonym.
fn distinct_rows(role: Role, outs: &[StepOut]) -> Option<String> {
    if !role.hashes() {
        return None;
    }
    for set in values(outs) {
        let flat: Vec<&Vec<u8>> = set.iter().flatten().collect();
        for i in 0..flat.len() {
            for j in i + 1..flat.len() {
                if flat[i] == flat[j] {
                    return Some(format!(
                        "the same pseudonym {} for two columns",
                        printable(flat[i], 40)
                    ));
                }
            }
        }
    }
    None
}

/// The last value of each result set differs from the others (values from different columns).
fn distinct_sets(role: Role, outs: &[StepOut]) -> Option<String> {
    if !role.hashes() {
        return None;
    }
    let lasts: Vec<Vec<u8>> = values(outs)
        .into_iter()
        .filter_map(|s| s.last().and_then(|r| r.last().cloned()))
        .collect();
    for i in 0..lasts.len() {
        for j in i + 1..lasts.len() {
            if lasts[i] == lasts[j] {
                return Some(format!(
                    "a value written to one column has the pseudonym of another column: {}",
                    printable(&lasts[i], 40)
                ));
            }
        }
    }
    None
}

/// A value the role chose comes back as it was, never as a pseudonym (which would let the
/// role compare a guess with the column's pseudonyms).
fn not_hashed(role: Role, outs: &[StepOut]) -> Option<String> {
    if !role.hashes() {
        return None;
    }
    let hashlike = |v: &Vec<u8>| v.len() == 16 && v.iter().all(|b| b.is_ascii_hexdigit());
    let sets: Vec<Vec<Vec<Vec<u8>>>> = outs
        .iter()
        .map(|o| {
            values(std::slice::from_ref(o))
                .into_iter()
                .flatten()
                .collect()
        })
        .collect();
    let chosen = sets
        .first()
        .into_iter()
        .flatten()
        .flatten()
        .chain(sets.get(1).and_then(|s| s.get(1)).into_iter().flatten());
    for v in chosen {
        if hashlike(v) {
            return Some(format!(
                "a literal came back as a pseudonym-like value {}",
                printable(v, 40)
            ));
        }
    }
    None
}

fn hashes() -> Vec<Case> {
    let h = |name: &str| case("hash", name.to_owned());
    let mut v = vec![
        h("email and full_name of the twin row").q("SELECT email, full_name FROM users WHERE id = 5").check(distinct_in_rows),
        h("a self-join of the twin row").q("SELECT a.email, b.full_name FROM users a JOIN users b ON b.id = a.id WHERE a.id = 5").check(distinct_in_rows),
        h("a UNION of both columns").q("SELECT email FROM users WHERE id = 5 UNION ALL SELECT full_name FROM users WHERE id = 5").check(distinct_rows),
        h("a UNION DISTINCT of both columns").q("SELECT email FROM users WHERE id = 5 UNION SELECT full_name FROM users WHERE id = 5").check(distinct_rows),
        h("scalar subqueries of both").q("SELECT (SELECT email FROM users WHERE id = 5), (SELECT full_name FROM users WHERE id = 5)").check(distinct_in_rows),
        h("a derived table of both").q("SELECT email AS x, full_name AS y FROM (SELECT email, full_name FROM users WHERE id = 5) d").check(distinct_in_rows),
        h("a CTE of both").q("WITH c AS (SELECT email, full_name FROM users WHERE id = 5) SELECT * FROM c").check(distinct_in_rows),
        h("a view of both").root("CREATE VIEW v_twin AS SELECT id, email, full_name FROM users").q("SELECT email, full_name FROM v_twin WHERE id = 5").check(distinct_in_rows),
        h("a view renaming one to the other").root("CREATE VIEW v_swap AS SELECT id, full_name AS email, email AS full_name FROM users").q("SELECT email, full_name FROM v_swap WHERE id = 5").check(distinct_in_rows),
        h("the twin across tables").q("SELECT u.email, u.full_name, o.card_last4, c.body FROM users u JOIN orders o ON o.user_id = u.id JOIN comments c ON c.user_id = u.id WHERE u.id = 5").check(distinct_in_rows),
        h("a literal under a protected name is not pseudonymized")
            .q("SELECT email FROM (SELECT '{{s:em:1}}' AS email) AS users")
            .q("SELECT email FROM users WHERE id = 1 UNION ALL SELECT 'chosen@example.com'")
            .check(not_hashed),
        h("email compared with full_name").q("SELECT email = full_name FROM users WHERE id = 5"),
        h("COUNT where email = full_name").q("SELECT COUNT(*) FROM users WHERE email = full_name"),
        h("a join of email and full_name").q("SELECT COUNT(*) FROM users a JOIN users b ON a.email = b.full_name"),
        h("GROUP_CONCAT of both").q("SELECT GROUP_CONCAT(email), GROUP_CONCAT(full_name) FROM users WHERE id = 5").check(distinct_in_rows),
        h("a guess written to full_name against email pseudonyms")
            .q("UPDATE users SET full_name = '{{s:em:1}}' WHERE id = 4")
            .q("SELECT full_name FROM users WHERE id = 4")
            .q("SELECT email FROM users WHERE id = 1")
            .check(distinct_sets),
        h("a guess written to phone against email")
            .q("UPDATE users SET phone = '{{s:em:2}}' WHERE id = 4")
            .q("SELECT phone FROM users WHERE id = 4")
            .q("SELECT email FROM users WHERE id = 2")
            .check(distinct_sets),
        h("a guess written to a card against email")
            .q("UPDATE orders SET card_last4 = 'twin' WHERE id = 3")
            .q("SELECT card_last4 FROM orders WHERE id = 3")
            .q("SELECT full_name FROM users WHERE id = 5")
            .check(distinct_sets),
    ];
    v.push(v[0].binary());
    v.push(v[2].binary());
    v
}

// ---------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------

fn bounds() -> Vec<Case> {
    let b = |name: &str| case("bounds", name.to_owned());
    let ones = |n: usize| vec!["1"; n].join("+");
    let parens = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    let big = "x".repeat(5 << 20);
    let in_list: Vec<String> = (0..5000)
        .map(|i| format!("'guess{i}@example.com'"))
        .collect();
    let ids: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let mut nested = "SELECT ssn FROM users WHERE id = 1".to_owned();
    for _ in 0..60 {
        nested = format!("SELECT (SELECT x FROM ({nested}) AS t(x) LIMIT 1)");
    }
    let mut deep_sub = "SELECT ssn AS x FROM users".to_owned();
    for i in 0..150 {
        deep_sub = format!("SELECT x FROM ({deep_sub}) AS d{i}");
    }
    let many_cols = vec!["ssn"; 3000].join(", ");
    let many_stmts = format!(
        "{}UPDATE users SET ssn = '{{{{c:ssn}}}}' WHERE id = 1",
        "SELECT 1; ".repeat(2000)
    );
    let unions = vec!["SELECT ssn FROM users"; 400].join(" UNION ALL ");
    let cases_ = format!(
        "SELECT {} 1 {} FROM users",
        "CASE WHEN id = 1 THEN ".repeat(300),
        "END ".repeat(300)
    );
    vec![
        b("2300 terms without protected data").q(&format!("SELECT {}", ones(2300))),
        b("200 terms without protected data")
            .q(&format!("SELECT {}", ones(200)))
            .must(&[App, Support, Writer]),
        b("2300 terms beside ssn").q(&format!(
            "SELECT ssn, {} FROM users WHERE id = 1",
            ones(2300)
        )),
        b("20000 terms beside ssn").q(&format!(
            "SELECT ssn, {} FROM users WHERE id = 1",
            ones(20_000)
        )),
        b("20000 terms in a write").q(&format!(
            "UPDATE users SET ssn = '{{{{c:ssn}}}}' WHERE id = {}",
            ones(20_000)
        )),
        b("2000-deep parentheses without protected data").q(&format!("SELECT {}", parens(2000))),
        b("2000-deep parentheses beside ssn")
            .q(&format!("SELECT ssn, {} FROM users", parens(2000))),
        b("2000-deep parentheses around a written value").q(&format!(
            "UPDATE users SET ssn = {}'{{{{c:ssn}}}}'{} WHERE id = 1",
            "(".repeat(2000),
            ")".repeat(2000)
        )),
        b("a 1 MB statement without protected data")
            .q(&format!("SELECT LENGTH('{}')", &big[..1 << 20]))
            .must(&ROLES),
        b("a 5 MB statement on protected data").q(&format!(
            "SELECT ssn FROM users WHERE note = '{big}' OR id = 1"
        )),
        b("a 1 MB value for a protected column").q(&format!(
            "UPDATE comments SET body = '{{{{c:body}}}}{}' WHERE id = 1",
            &big[..1 << 20]
        )),
        b("a 1 MB comment hiding nothing").q(&format!(
            "/* {} */ UPDATE users SET ssn = '{{{{c:ssn}}}}' WHERE id = 1",
            &big[..1 << 20]
        )),
        b("5000 guesses in an IN list").q(&format!(
            "SELECT id FROM users WHERE email IN ({})",
            in_list.join(", ")
        )),
        b("20000 ids beside ssn").q(&format!(
            "SELECT ssn FROM users WHERE id IN ({})",
            ids.join(",")
        )),
        b("60 nested scalar subqueries").q(&nested),
        b("150 nested derived tables").q(&deep_sub),
        b("3000 ssn columns").q(&format!("SELECT {many_cols} FROM users WHERE id = 1")),
        b("2001 statements in one query").q(&many_stmts),
        b("400 UNION ALL branches").q(&unions),
        b("300 nested CASE").q(&cases_),
        b("a prepared statement with 3000 markers").x(
            &format!(
                "SELECT ssn FROM users WHERE id IN ({})",
                vec!["?"; 3000].join(",")
            ),
            &vec![Some("1"); 3000],
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Multi-statements
// ---------------------------------------------------------------------------------------

fn multi() -> Vec<Case> {
    let m = |name: &str| case("multi", name.to_owned());
    vec![
        m("read, write, read").q("SELECT ssn FROM users WHERE id = 1; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; SELECT ssn, email FROM users WHERE id = 1"),
        m("gbk then NO_BACKSLASH_ESCAPES then the payload").qb(&cat(b"SET NAMES gbk; SET sql_mode = 'NO_BACKSLASH_ESCAPES'; ", &p_mb(b"\xbf"))),
        m("USE the twin, read, USE back, write").q("USE {{B}}; SELECT ssn FROM users; USE {{A}}; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("temporary copy then read").q("CREATE TEMPORARY TABLE t_copy AS SELECT ssn, email FROM users; SELECT * FROM t_copy"),
        m("PREPARE, EXECUTE, DEALLOCATE").q("PREPARE s FROM 'SELECT ssn FROM users WHERE id = ?'; EXECUTE s USING 1; DEALLOCATE PREPARE s"),
        m("a transaction").q("BEGIN; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; COMMIT; SELECT ssn FROM users WHERE id = 1"),
        m("ANSI_QUOTES in a comment, then the payload").q(&format!("SELECT 1; /*!40101 SET sql_mode = 'ANSI_QUOTES' */; {P_ANSI}")),
        m("a CALL before a protected statement")
            .root("CREATE PROCEDURE noop() SELECT 1")
            .q("CALL noop(); UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("a CALL after a protected statement")
            .root("CREATE PROCEDURE noop2() SELECT 1")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; CALL noop2()"),
        m("SELECT INTO then the variable").q("SELECT ssn INTO @x FROM users WHERE id = 1; SELECT @x"),
        m("SHOW then SELECT *").q("SHOW TABLES; SELECT * FROM users"),
        m("an error stops the rest").q("SELECT * FROM no_such_table_corpus; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("empty statements").q(";;SELECT ssn FROM users WHERE id = 1;;;"),
        m("comments between statements").q("SELECT 1;\n-- comment\nUPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1;\n# another\nSELECT ssn FROM users WHERE id = 1"),
        m("DO then a write").q("DO 1; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("an unknown sql_mode change before a statement")
            .q("SET @a = 1; SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES'); SELECT 1 AS \"a\\\"; UPDATE users SET ssn = 0x{{x:c:ssn}} WHERE id = 1; -- \""),
        m("a hundred mixed statements").q(&"SELECT email FROM users WHERE id = 1; UPDATE plain SET n = n + 1 WHERE id = 1; SELECT note FROM notes WHERE id = 1; ".repeat(34)),
        m("a write to the twin and the protected table").q("UPDATE {{B}}.users SET ssn = '{{p}}' WHERE id = 1; UPDATE {{A}}.users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("an INSERT … SELECT after harmless statements").q("SELECT 1; SELECT 2; INSERT INTO notes (ssn) SELECT ssn FROM users; SELECT ssn FROM notes"),
        m("SET NAMES latin1 and a 0xA0 read").qb(b"SET NAMES latin1; SELECT\xa0ssn\xa0FROM\xa0users"),
        m("a refusal in the middle refuses everything").q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; SELECT HEX(ssn) FROM users; UPDATE users SET ssn = '{{c2:ssn}}' WHERE id = 2"),
        m("USE inside an executable comment between statements").db(Some("{{B}}")).q("SELECT 1; /*!USE {{A}}*/; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        m("a compound statement after a write").q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; BEGIN NOT ATOMIC SELECT ssn FROM users; END"),
    ]
}

// ---------------------------------------------------------------------------------------
// Other ideas: system routines, handlers, session tracking, RETURNING, …
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The id layer's rewrites (CONNECTION_ID(), @@socket, KILL, SHOW PROCESSLIST) run before
// the guard: none of them may carry a payload past it.
// ---------------------------------------------------------------------------------------

fn connection_ids() -> Vec<Case> {
    let n = |name: &str| case("ids", name.to_owned());
    vec![
        n("CONNECTION_ID() in the WHERE of a write")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1 OR id = CONNECTION_ID()"),
        n("CONNECTION_ID() inside an executable comment of a write")
            .q("UPDATE users SET ssn = /*!100000 '{{c:ssn}}' */ WHERE id = /*!100000 CONNECTION_ID() */ - CONNECTION_ID() + 1"),
        n("CONNECTION_ID() aliased next to a protected column")
            .q("SELECT ssn, CONNECTION_ID(), email FROM users WHERE id = 1"),
        n("CONNECTION_ID() in an insert of protected values")
            .q("INSERT INTO users (id, ssn, email) VALUES (CONNECTION_ID() + 800, '{{c:ssn}}', '{{c:em}}')"),
        n("a string that spells CONNECTION_ID() is a value")
            .q("UPDATE users SET ssn = 'CONNECTION_ID() {{c:ssn}}' WHERE id = 1"),
        n("@@socket next to a protected write")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1 AND @@socket IS NULL"),
        n("@@global.socket in a read of protected data")
            .q("SELECT @@global.socket, ssn FROM users WHERE id = 1"),
        n("KILL of a literal carrying a payload")
            .q("KILL QUERY 4000000000 /* '{{c:ssn}}' */"),
        n("KILL in a multi-statement with a write")
            .q("KILL QUERY 4000000000; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        n("SHOW PROCESSLIST after a protected write")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("SHOW FULL PROCESSLIST"),
        n("SHOW PROCESSLIST with a trailing comment")
            .q("SHOW PROCESSLIST /* '{{c:ssn}}' */"),
    ]
}

// ---------------------------------------------------------------------------------------
// The plan cache: a statement of a form seen before is rewritten from the plan of the first
// (shared by a role's sessions). Each case primes a form, then sends canaries in it.
// ---------------------------------------------------------------------------------------

fn plans() -> Vec<Case> {
    let p = |name: &str| case("plans", name.to_owned());
    vec![
        p("an INSERT form seen before seals the next values")
            .q("INSERT INTO users (id, email, ssn) VALUES (80, 'prime80@example.com', '{{p}}')")
            .q("INSERT INTO users (id, email, ssn) VALUES (81, '{{c:em}}', '{{c:ssn}}')")
            .q("SELECT email, ssn FROM users WHERE id = 81")
            .expect(App, &[&[Some("{{c:em}}"), Some("{{c:ssn}}")]]),
        p("a multi-row INSERT form seen before")
            .q("INSERT INTO users (id, phone) VALUES (82, '{{p}}'), (83, '{{p}}')")
            .q("INSERT INTO users (id, phone) VALUES (84, '{{c:ph}}'), (85, '{{c2:ph}}')")
            .q("SELECT phone FROM users WHERE id IN (84, 85) ORDER BY id")
            .expect(App, &[&[Some("{{c:ph}}")], &[Some("{{c2:ph}}")]]),
        p("a form primed with one value in two columns")
            .q("UPDATE users SET ssn = '{{p}}', phone = '{{p}}' WHERE id = 4")
            .q("UPDATE users SET ssn = '{{c:ssn}}', phone = '{{c:ph}}' WHERE id = 4")
            .q("SELECT ssn, phone FROM users WHERE id = 4")
            .expect(App, &[&[Some("{{c:ssn}}"), Some("{{c:ph}}")]]),
        p("a form seen alone, then second in a multi-statement query")
            .q("UPDATE users SET ssn = '{{p}}' WHERE id = 3")
            .q("SELECT 1; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 3"),
        p("a form primed with an empty value under EMPTY_STRING_IS_NULL")
            .q("SET sql_mode = CONCAT(@@sql_mode, ',EMPTY_STRING_IS_NULL')")
            .q("UPDATE users SET phone = '' WHERE id = 2")
            .q("UPDATE users SET phone = '{{c:ph}}' WHERE id = 2"),
        p("a form primed in an executable comment, the value moved out of it")
            .q("UPDATE users SET ssn = /*!100000 '{{p}}' */ WHERE id = 2")
            .q("UPDATE users SET ssn = /*!100000 */ '{{c:ssn}}' WHERE id = 2")
            .q("UPDATE users SET ssn = /*!999999 '{{p}}' */ '{{c2:ssn}}' WHERE id = 2"),
        p("a form primed in one character set, sent in another")
            .q("UPDATE users SET full_name = '{{p}}' WHERE id = 2")
            .q("SET NAMES latin1")
            .q("UPDATE users SET full_name = '{{c:fn}}' WHERE id = 2")
            .q("SET NAMES binary")
            .q("UPDATE users SET full_name = '{{c2:fn}}' WHERE id = 2"),
        p("a form primed in the twin, sent in the protected database")
            .db(Some("{{B}}"))
            .q("UPDATE users SET ssn = '{{p}}' WHERE id = 1")
            .q("USE {{A}}")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1"),
        p("a search form seen before finds the next values")
            .q("SELECT id FROM users WHERE email IN ('{{p}}', '{{p}}') ORDER BY id")
            .q("SELECT id FROM users WHERE email IN ('{{s:em:2}}', '{{s:em:3}}') ORDER BY id")
            .expect(App, &[&[Some("2")], &[Some("3")]]),
        p("a form with a national string, then a hex value")
            .q("UPDATE users SET ssn = N'{{p}}' WHERE id = 5")
            .q("UPDATE users SET ssn = N'{{c:ssn}}' WHERE id = 5")
            .q("UPDATE users SET ssn = X'{{x:c2:ssn}}' WHERE id = 5"),
    ]
}

fn own_ideas() -> Vec<Case> {
    let i = |name: &str| case("ideas", name.to_owned());
    vec![
        i("sys.execute_prepared_stmt writes plaintext")
            .q("CALL sys.execute_prepared_stmt('UPDATE {{A}}.users SET ssn = ''{{c:ssn}}'' WHERE id = 1')"),
        i("sys.execute_prepared_stmt with an unqualified table")
            .q("CALL sys.execute_prepared_stmt('UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 2')"),
        i("sys.execute_prepared_stmt from the twin")
            .db(Some("{{B}}"))
            .q("CALL sys.execute_prepared_stmt(CONCAT('INSERT INTO ', DATABASE(), '.users (id, ssn) VALUES (700, ''{{p}}'')'))")
            .q("CALL sys.execute_prepared_stmt('INSERT INTO {{A}}.users (id, ssn) VALUES (701, ''{{c:ssn}}'')')"),
        i("sys.execute_prepared_stmt reads ciphertext")
            .q("CALL sys.execute_prepared_stmt('SELECT id, ssn, email FROM {{A}}.users')"),
        i("sys.execute_prepared_stmt with CONCAT")
            .q("CALL sys.execute_prepared_stmt(CONCAT('UPDATE us', 'ers SET phone = ''{{c:ph}}'' WHERE id = 1'))"),
        i("sys.execute_prepared_stmt in a multi-statement")
            .q("SELECT 1; CALL sys.execute_prepared_stmt('UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 3')"),
        i("sys.execute_prepared_stmt through a variable")
            .q("SET @q = 'UPDATE users SET ssn = ''{{c:ssn}}'' WHERE id = 1'")
            .q("CALL sys.execute_prepared_stmt(@q)"),
        // Through myveil this CALL breaks the session (the backend drops it, and later sessions
        // hang until the client's timeout): two roles show it without spending a minute.
        i("a synonym database: writes through its views")
            .roles(&[App, Support])
            .q("CALL sys.create_synonym_db('{{A}}', '{{syn}}')")
            .q("INSERT INTO {{syn}}.users (id, ssn) VALUES (702, '{{c:ssn}}')")
            .q("UPDATE {{syn}}.users SET phone = '{{c:ph}}' WHERE id = 1")
            .q("SELECT ssn, email FROM {{syn}}.users WHERE id = 1"),
        i("a synonym database known to the proxy: writes through its views")
            .root("CALL sys.create_synonym_db('{{A}}', '{{syn}}')")
            .q("INSERT INTO {{syn}}.users (id, ssn) VALUES (703, '{{c:ssn}}')")
            .q("SELECT ssn FROM {{syn}}.users WHERE id = 1"),
        i("a synonym database from the twin")
            .db(Some("{{B}}"))
            .root("CALL sys.create_synonym_db('{{A}}', '{{syn}}')")
            .q("UPDATE {{syn}}.users SET ssn = '{{c:ssn}}' WHERE id = 2"),
        i("a view created a moment ago in the twin, written through")
            .db(Some("{{B}}"))
            .late_root("CREATE VIEW {{B}}.v_new AS SELECT id, ssn, note FROM {{A}}.users")
            .q("UPDATE v_new SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("SELECT ssn FROM v_new WHERE id = 1"),
        i("a view created a moment ago in the protected database, written through")
            .late_root("CREATE VIEW v_new2 AS SELECT id, ssn FROM users")
            .q("INSERT INTO v_new2 (id, ssn) VALUES (707, '{{c:ssn}}')"),
        i("a routine created a moment ago, called")
            .late_root("CREATE PROCEDURE p_new(v TEXT) UPDATE users SET ssn = v WHERE id = 1")
            .q("CALL p_new('{{c:ssn}}')"),
        i("a trigger created a moment ago on a plain table")
            .late_root("CREATE TRIGGER tr_new BEFORE INSERT ON plain FOR EACH ROW UPDATE users SET ssn = NEW.v WHERE id = 1")
            .q("INSERT INTO plain (v) VALUES ('{{p}}')"),
        i("a synonym database created a moment ago")
            .late_root("CALL sys.create_synonym_db('{{A}}', '{{syn}}')")
            .q("INSERT INTO {{syn}}.users (id, ssn) VALUES (708, '{{c:ssn}}')"),
        i("a view created through a system routine, then written through")
            .db(Some("{{B}}"))
            .q("CALL sys.execute_prepared_stmt('CREATE VIEW {{B}}.v_evil AS SELECT id, ssn FROM {{A}}.users')")
            .q("UPDATE v_evil SET ssn = '{{c:ssn}}' WHERE id = 1"),
        i("mysql.AddGeometryColumn injects a default")
            .q("CALL mysql.AddGeometryColumn('', '{{A}}', 'users', 'g1 GEOMETRY, ALTER COLUMN ssn SET DEFAULT ''{{c:ssn}}'', ADD g2', 0)")
            .q("INSERT INTO users (id, email) VALUES (704, '{{c:em}}')"),
        i("mysql.DropGeometryColumn drops a protected column")
            .q("CALL mysql.DropGeometryColumn('', '{{A}}', 'users', 'phone')"),
        i("sys.table_exists with an injected name")
            .q("CALL sys.table_exists('{{A}}', 'users', @e)")
            .q("SELECT @e"),
        i("session tracking turned off")
            .q("SET session_track_system_variables = ''")
            .q("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
            .q(P_NBE),
        i("session tracking off in the same query").q(&format!("SET session_track_schema = OFF; USE {{{{B}}}}; USE {{{{A}}}}; {P_NBE}")),
        i("session tracking off through SET STATEMENT").q("SET STATEMENT session_track_system_variables = '' FOR SET sql_mode = 'ANSI_QUOTES'").q(P_ANSI),
        i("session tracking off through EXECUTE IMMEDIATE").q("EXECUTE IMMEDIATE 'SET session_track_system_variables = '''''").q("SET sql_mode = 'ANSI_QUOTES'").q(P_ANSI),
        i("session tracking off through a routine")
            .root("CREATE PROCEDURE untrack() SET session_track_system_variables = ''")
            .q("CALL untrack()")
            .q("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
            .q(P_NBE),
        i("session tracking variable named with @@").q("SET @@session.session_track_state_change = OFF").q("SET sql_mode = 'ANSI_QUOTES'").q(P_ANSI),
        i("character_set_results changes nothing of the lexer").q("SET character_set_results = latin1").q("SELECT full_name, ssn FROM users WHERE id = 1"),
        i("character_set_connection gbk with a utf8 client").q("SET character_set_connection = gbk").qb(&p_mb(b"\xbf")),
        i("collation_connection change").q("SET collation_connection = latin1_swedish_ci").q("SELECT COUNT(*) FROM users WHERE email = '{{s:em:1}}'"),
        i("a trigger created directly copies ssn out on update")
            .root("CREATE TRIGGER tr_out AFTER UPDATE ON users FOR EACH ROW UPDATE notes SET ssn = NEW.ssn WHERE id = 1")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("SELECT ssn FROM notes WHERE id = 1"),
        i("a trigger created directly on a plain table writes users")
            .root("CREATE TRIGGER tr_in BEFORE INSERT ON plain FOR EACH ROW UPDATE users SET ssn = NEW.v WHERE id = 1")
            .q("INSERT INTO plain (v) VALUES ('{{p}}')"),
        i("a trigger in the twin writes the protected table")
            .root("CREATE TRIGGER {{B}}.tr_b BEFORE UPDATE ON {{B}}.plain FOR EACH ROW UPDATE {{A}}.users SET ssn = NEW.v WHERE id = 1")
            .q("UPDATE {{B}}.plain SET v = '{{p}}' WHERE id = 1"),
        i("a trigger that sets a protected column from a plain one")
            .root("CREATE TRIGGER tr_set BEFORE UPDATE ON users FOR EACH ROW SET NEW.ssn = NEW.note")
            .q("UPDATE users SET note = '{{p}}' WHERE id = 1"),
        i("an event created directly (scheduler off)")
            .root("CREATE EVENT ev_w ON SCHEDULE EVERY 1 DAY STARTS CURRENT_TIMESTAMP + INTERVAL 1 DAY DO UPDATE users SET ssn = (SELECT v FROM plain WHERE id = 1) WHERE id = 1")
            .q("UPDATE plain SET v = '{{p}}' WHERE id = 1"),
        i("a generated column created directly over ssn")
            .root("ALTER TABLE users ADD COLUMN ssn_g VARCHAR(300) AS (ssn) VIRTUAL")
            .q("SELECT ssn_g FROM users WHERE id = 1"),
        i("a view in the twin over a generated column over ssn")
            .root("ALTER TABLE users ADD COLUMN ssn_g VARCHAR(300) AS (ssn) VIRTUAL")
            .root("CREATE VIEW {{B}}.v_g AS SELECT id, ssn_g AS x FROM {{A}}.users")
            .db(Some("{{B}}"))
            .q("SELECT x FROM v_g WHERE id = 1"),
        i("a generated column over ssn through a derived table")
            .root("ALTER TABLE users ADD COLUMN ssn_g VARCHAR(300) AS (ssn) VIRTUAL")
            .q("SELECT d.v FROM (SELECT ssn_g AS v FROM users) d WHERE d.v IS NOT NULL"),
        i("a generated column created directly over email, searched")
            .root("ALTER TABLE users ADD COLUMN email_g VARBINARY(400) AS (email) VIRTUAL")
            .q("SELECT COUNT(*) FROM users WHERE email_g = '{{s:em:1}}'"),
        i("a non-NULL default created directly")
            .root("ALTER TABLE users ALTER ssn SET DEFAULT 'root-default'")
            .q("INSERT INTO users (id, email) VALUES (705, '{{c:em}}')"),
        i("XA transaction around a write").q("XA START 'corpus'; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; XA END 'corpus'; XA PREPARE 'corpus'; XA COMMIT 'corpus'"),
        i("SAVEPOINT and ROLLBACK TO").q("START TRANSACTION; SAVEPOINT a; UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1; ROLLBACK TO a; COMMIT"),
        i("CHECKSUM TABLE").q("CHECKSUM TABLE users EXTENDED"),
        i("SHOW CREATE TABLE of a protected table").q("SHOW CREATE TABLE users"),
        i("information_schema about the protected table").q("SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{{A}}' AND TABLE_NAME = 'users'"),
        i("SHOW PROCESSLIST").q("SHOW FULL PROCESSLIST"),
        i("a SEQUENCE named users in the twin")
            .db(Some("{{B}}"))
            .q("CREATE SEQUENCE users_seq")
            .q("SELECT NEXTVAL(users_seq)"),
        i("KILL QUERY of nothing").q("KILL QUERY 999999999"),
        i("a HANDLER opened in the twin on a name like users").db(Some("{{B}}")).q("HANDLER users OPEN").q("HANDLER users READ FIRST"),
        i("a CTE named like the protected database").q("WITH `{{A}}` AS (SELECT 1 AS ssn) SELECT ssn FROM `{{A}}`"),
        i("a column alias equal to the blind index").q("SELECT note AS email_bidx, ssn AS note FROM users WHERE id = 1"),
        i("an INSERT writing the blind index through an alias").q("INSERT INTO users (id, email_bidx) VALUES (706, X'00')"),
        i("writing the blind index of the twin row").q("UPDATE users SET email_bidx = NULL, email = NULL WHERE id = 5"),
        i("ENUM-like values through FIND_IN_SET").q("SELECT FIND_IN_SET(email, 'a,b') FROM users"),
        i("a prepared multi-result CALL")
            .root("CREATE PROCEDURE two_sets() BEGIN SELECT 1; SELECT ssn FROM users; END")
            .x("CALL two_sets()", &[]),
        i("BEGIN NOT ATOMIC reading ssn into a variable").q("BEGIN NOT ATOMIC DECLARE v TEXT; SELECT ssn INTO v FROM users WHERE id = 1; SELECT v; END"),
        i("a stored aggregate function")
            .root("CREATE AGGREGATE FUNCTION agg_cat(x TEXT) RETURNS TEXT BEGIN DECLARE r TEXT DEFAULT ''; DECLARE CONTINUE HANDLER FOR NOT FOUND RETURN r; LOOP FETCH GROUP NEXT ROW; SET r = CONCAT(r, x); END LOOP; END")
            .q("SELECT agg_cat(ssn) FROM users"),
    ]
}

// ---------------------------------------------------------------------------------------
// Migrations (ADR 0008): the backend's `myveil` schema holds the column states the proxies
// relax reads by, and a shadow column holds a protected column's values. No client reaches
// the one, and the other is read as the column it shadows and written by no client.
// ---------------------------------------------------------------------------------------

/// Every statement that names the `myveil` schema (or `USE`s it) was refused.
fn state_untouched(_: Role, outs: &[StepOut]) -> Option<String> {
    for o in outs {
        let names = o.sent.to_ascii_lowercase().contains("myveil");
        if names && o.items.iter().any(|i| !matches!(i, Item::Err { .. })) {
            return Some(format!("reached the myveil schema: {}", o.sent));
        }
    }
    None
}

fn migrations() -> Vec<Case> {
    let g = |name: &str| case("migrations", name.to_owned());
    let mut v: Vec<Case> =
    vec![
        g("the migration state written, then a search and a read")
            .q("INSERT INTO myveil.columns (db, tbl, col, state) VALUES ('{{A}}', 'users', 'email', 'mixed')")
            .q("UPDATE myveil.columns SET state = 'mixed'")
            .q("SELECT id FROM users WHERE email = '{{s:em:1}}'")
            .q("SELECT email, ssn FROM users WHERE id = 1")
            .check(state_untouched),
        g("the migration state in another spelling")
            .q("UPDATE `MYVEIL`.`columns` SET state = 'mixed'")
            .q("/*!100000 DELETE FROM myveil . jobs */")
            .q("REPLACE INTO myveil.columns SELECT '{{A}}', 'users', 'ssn', 'mixed', NOW()")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .check(state_untouched),
        // The instance reports decide whether `keys retire` may put a key away: a client
        // that could forge or delete them could hide a proxy still sealing under it.
        g("the instance reports forged, deleted or read")
            .q("UPDATE myveil.instances SET generation = '0000000000000000'")
            .q("DELETE FROM `myveil`.`INSTANCES`")
            .q("INSERT INTO myveil.instances (instance, keyring, generation, host, pid) VALUES ('x', 'y', 'z', 'h', 1)")
            .q("/*!100000 TRUNCATE myveil.instances */")
            .q("SELECT * FROM myveil.instances")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .check(state_untouched),
        g("myveil as the current database, then unqualified names")
            .q("USE myveil")
            .q("UPDATE columns SET state = 'mixed'")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 2")
            .check(state_untouched),
        g("a shadow column written through myveil")
            .root("ALTER TABLE users ADD COLUMN ssn__myveil VARBINARY(255) NULL AFTER ssn")
            .q("UPDATE users SET ssn__myveil = '{{c:ssn}}' WHERE id = 1")
            .q("INSERT INTO users (id, ssn__myveil) VALUES (90, '{{c2:ssn}}')")
            .q("UPDATE users SET `SSN__MYVEIL` = 0x{{x:c3:ssn}} WHERE id = 2"),
        g("a shadow column read as the column it shadows")
            .root("ALTER TABLE users ADD COLUMN ssn__myveil VARBINARY(255) NULL AFTER ssn")
            .root("UPDATE users SET ssn__myveil = ssn")
            .q("SELECT ssn__myveil FROM users WHERE id = 1")
            .q("SELECT * FROM users WHERE id = 1")
            .q("SELECT HEX(ssn__myveil), LENGTH(ssn__myveil) FROM users WHERE id = 1"),
    ];
    // A shadow window as `migrate apply` opens one: the shadow INVISIBLE and copied into by
    // its triggers. Writes through myveil go to the shadow sealed (the old column gets
    // NULL), reads go through it: no form of a value may land in either column in the clear.
    let [ins, upd] = myveil::migrate::apply::copy_triggers_ddl("users", "ssn", false);
    let window = |name: &str| {
        g(name)
            .root(
                "ALTER TABLE users ADD COLUMN ssn__myveil VARBINARY(255) NULL INVISIBLE AFTER ssn",
            )
            .root("UPDATE users SET ssn__myveil = ssn")
            .root(&ins)
            .root(&upd)
    };
    v.extend([
        window("writes in a shadow window: UPDATE, upsert, SET, implicit INSERT")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("INSERT INTO users (id, ssn) VALUES (91, '{{c2:ssn}}') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)")
            .q("INSERT INTO users (id, ssn) VALUES (91, '{{c3:ssn}}') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)")
            .q("INSERT INTO users SET id = 92, ssn = 0x{{x:c:ssn}}")
            .q("UPDATE users u SET u.ssn = _latin1'{{c2:ssn}}' WHERE u.id = 2"),
        window("reads in a shadow window: the column, *, derived tables, NULL tests")
            .q("UPDATE users SET ssn = '{{c:ssn}}' WHERE id = 1")
            .q("SELECT ssn FROM users WHERE id = 1")
            .q("SELECT * FROM users WHERE id = 1")
            .q("SELECT d.ssn FROM (SELECT * FROM users) d WHERE d.id = 1")
            .q("SELECT id, ssn IS NULL, (ssn) FROM users WHERE ssn IS NOT NULL AND id = 1")
            // The write went to the shadow (the old column holds NULL for it).
            .q("SELECT ssn__myveil FROM users WHERE id = 1")
            .expect(App, &[&[Some("{{c:ssn}}")]]),
    ]);
    v
}

// ---------------------------------------------------------------------------------------
// Two sessions of one role, interleaved (in multiplexed mode they share a backend connection)
// ---------------------------------------------------------------------------------------

/// Each case sets some state on one session and then alternates statements of both sessions
/// that write a canary in the clear only if a statement runs on the server in the other
/// session's state: a sql_mode, a character set or a database that did not move with its
/// session (ADR 0009). In pinned mode the same cases run, each session on its own connection.
fn multiplexed() -> Vec<Case> {
    let n = |name: String| case("multiplexed", name);
    let ins = "INSERT INTO users (id, ssn, note) VALUES (300, '{{c:ssn}}', 'x')";
    let ins2 = "INSERT INTO users (id, ssn, note) VALUES (301, '{{c2:ssn}}', 'y')";
    let plain_ins = "INSERT INTO users (id, ssn, note) VALUES (300, '{{p}}', 'x')";
    let mut v = Vec::new();
    for (mode, on, off, label) in [
        ("NO_BACKSLASH_ESCAPES", P_NBE, P_NBE_OFF, "NBE"),
        ("ANSI_QUOTES", P_ANSI, P_ANSI_OFF, "ANSI_QUOTES"),
    ] {
        // The second session never sets the mode: `on` writes if it runs in the first's mode;
        // the first runs `off`, which writes if its mode was lost on the way.
        v.push(
            n(format!("{label} on one session, the payloads alternate"))
                .q(&format!("SET sql_mode = '{mode}'"))
                .q2(on)
                .q(off)
                .q2(ins)
                .q(on)
                .q2(on)
                .q(off),
        );
        v.push(
            n(format!("{label} set and cleared while the other writes"))
                .q2("SELECT 1")
                .q(&format!(
                    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',{mode}')"
                ))
                .q2(on)
                .q(ins)
                .q("SET sql_mode = DEFAULT")
                .q2(&format!("SET sql_mode = '{mode}'"))
                .q(on)
                .q2(off)
                .q("SELECT ssn FROM users WHERE id = 1"),
        );
    }
    for (cs, lead, coll) in [MB5C[0], MB5C[1]] {
        // `p_mb` writes if the server reads `lead 0x5C` as one character (the client's
        // charset as myveil knows it is not multi-byte); `p_mb_off` the other way round.
        v.push(
            n(format!(
                "SET NAMES {cs} on one session, the other's payload"
            ))
            .q(&format!("SET NAMES {cs}"))
            .qb2(&p_mb(lead))
            .qb(&p_mb_off(lead))
            .q2(ins)
            .qb2(&p_mb(lead))
            .qb(&p_mb_off(lead)),
        );
        v.push(
            n(format!("character_set_client = {cs} on one session"))
                .q(&format!("SET character_set_client = {cs}"))
                .qb2(&p_mb(lead))
                .qb(&p_mb_off(lead))
                .q("SET character_set_client = DEFAULT")
                .qb(&p_mb(lead)),
        );
        v.push(
            n(format!("{cs} handshakes, SET NAMES latin1 on one"))
                .coll(coll)
                .q("SET NAMES latin1")
                .qb2(&p_mb_off(lead))
                .qb(&p_mb(lead))
                .q2(ins)
                .qb2(&p_mb_off(lead)),
        );
    }
    v.extend([
        // One session moves to the unprotected twin and writes a plain marker there, which
        // is legitimate: had the write run in the protected database, the marker would be
        // at rest there in place of an envelope.
        n("USE the twin on one session, both write".into())
            .q("USE {{B}}")
            .q2("SELECT 1")
            .q(plain_ins)
            .q2(ins2)
            .q("UPDATE users SET ssn = '{{p}}' WHERE id = 300"),
        n("from the twin: USE the protected database on one, the other writes".into())
            .db(Some("{{B}}"))
            .q("USE {{A}}")
            .q2(plain_ins)
            .q(ins2)
            .q2("UPDATE users SET ssn = '{{p}}' WHERE id = 300"),
        n("COM_INIT_DB to the twin on one session".into())
            .init_db("{{B}}")
            .q2("SELECT ssn FROM users WHERE id = 1")
            .q(plain_ins)
            .q2(ins2),
        // A user variable pins its session: the other one must not see it.
        n("a user variable on one session, the other writes it".into())
            .q("SET @v = '{{c:ssn}}'")
            .q2("UPDATE users SET ssn = @v WHERE id = 1")
            .q("UPDATE users SET ssn = @v WHERE id = 2")
            .q2("INSERT INTO notes (user_id, body) VALUES (1, @v)"),
        // Protected writes and reads of both sessions, with charset and mode changes between.
        n("protected writes under alternating NAMES and sql_mode".into())
            .q("SET NAMES latin1")
            .q2(ins)
            .q("SET sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES'")
            .q2("UPDATE users SET email = '{{c:em}}' WHERE id = 300")
            .q(ins2)
            .q2("SELECT id, ssn, email FROM users WHERE id IN (300, 301) ORDER BY id")
            .q("SELECT id, ssn FROM users WHERE id IN (300, 301) ORDER BY id"),
    ]);
    v
}
