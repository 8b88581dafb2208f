//! Column protection end to end with mysql_async against MariaDB: every write path stores
//! ciphertext (checked directly), each role reads what the policy says, search works through
//! the blind index, and refusals arrive as MySQL errors.

mod common;

use common::{Proxy, Setup, TestDb};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use myveil::crypto::keyring::{Keyring, Purpose};

const CANARY: &str = "canary-7a1f@example.com";

const POLICY: &str = r#"
[[column]]
table = "people"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
normalize = "trim-lowercase"
roles = { app = "plaintext", reporting = { mask = "email" } }

[[column]]
table = "people"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = { app = "plaintext" }

[[column]]
table = "people"
column = "born"
type = "date"
roles = { app = "plaintext", reporting = { mask = "year" } }

[[column]]
table = "people"
column = "salary"
type = "int"
roles = { app = "plaintext", reporting = "ciphertext" }
"#;

struct Env {
    proxy: Proxy,
    db: TestDb,
    _dir: tempfile::TempDir,
}

async fn setup(label: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(&policy_dir).expect("mkdir");
    std::fs::write(policy_dir.join("people.toml"), POLICY).expect("policy");
    let keys = dir.path().join("keys");
    Keyring::generate(
        &keys,
        &[
            (Purpose::Column, "*"),
            (Purpose::BlindIndex, "*"),
            (Purpose::Mask, "*"),
            (Purpose::Column, "people.email"),
        ],
    )
    .expect("keys");
    let proxy = Proxy::start_with(Setup {
        extra: format!(
            "[protection]\npolicy_dir = \"{}\"\nkeys_dir = \"{}\"\n",
            policy_dir.display(),
            keys.display()
        ),
        ..Default::default()
    })
    .await;
    let db = TestDb::create(label).await;
    let mut c = common::direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(50), email VARBINARY(255), email_bidx BINARY(32),
         ssn VARCHAR(255), born VARBINARY(100), salary VARBINARY(100), UNIQUE KEY (email_bidx))",
    )
    .await
    .expect("create");
    c.disconnect().await.ok();
    Env {
        proxy,
        db,
        _dir: dir,
    }
}

async fn app(env: &Env) -> Conn {
    env.proxy.app(Some(&env.db.name)).await
}

async fn reporter(env: &Env) -> Conn {
    Conn::new(
        env.proxy
            .opts(common::OTHER_USER, common::OTHER_PASSWORD)
            .db_name(Some(&env.db.name)),
    )
    .await
    .expect("reporter connects")
}

async fn server_error(r: Result<(), mysql_async::Error>) -> (u16, String) {
    match r {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_store_ciphertext_and_roles_read_their_view() {
    let env = setup("prot").await;
    let mut c = app(&env).await;
    c.query_drop(format!(
        "INSERT INTO people (id, name, email, ssn, born, salary) VALUES (1, 'Ann', '{CANARY}', '123-45-6789', '1990-05-01', 5000), (2, 'Bob', NULL, NULL, NULL, NULL)"
    ))
    .await
    .expect("insert");
    c.query_drop("INSERT INTO people (id, name, email) VALUES (3, 'Cy', 'cy@example.com') ON DUPLICATE KEY UPDATE email = VALUES(email)")
        .await
        .expect("upsert insert");
    c.query_drop("INSERT INTO people (id, name, email) VALUES (3, 'Cy', 'cy2@example.com') ON DUPLICATE KEY UPDATE email = VALUES(email)")
        .await
        .expect("upsert update");
    c.query_drop("UPDATE people SET salary = 6000 WHERE id = 1")
        .await
        .expect("update");

    // At rest: envelopes only; the canary is nowhere.
    let mut d = common::direct(Some(&env.db.name)).await;
    let rows: Vec<Row> = d
        .query("SELECT email, email_bidx, ssn, born, salary FROM people ORDER BY id")
        .await
        .expect("direct");
    let dump = format!("{rows:?}");
    assert!(
        !dump.contains(CANARY) && !dump.contains("123-45-6789") && !dump.contains("1990-05-01"),
        "plaintext at rest: {dump}"
    );
    let email: Vec<u8> = d
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(&email[..2], b"MV", "envelope magic");
    let ssn: String = d
        .query_first("SELECT ssn FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert!(
        ssn.starts_with("TV"),
        "base64 envelope in a text column: {ssn}"
    );
    let nulls: (Option<Vec<u8>>, Option<Vec<u8>>) = d
        .query_first("SELECT email, email_bidx FROM people WHERE id = 2")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(nulls, (None, None), "NULL stays NULL");
    d.disconnect().await.ok();

    // The app role reads plaintext, in both protocols, with the plaintext type.
    let text: (String, String, String, i32) = c
        .query_first("SELECT email, ssn, born, salary FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        text,
        (
            CANARY.to_owned(),
            "123-45-6789".to_owned(),
            "1990-05-01".to_owned(),
            6000
        )
    );
    let binary: (String, Option<String>, i32) = c
        .exec_first("SELECT email, ssn, salary FROM people WHERE id = ?", (1,))
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        binary,
        (CANARY.to_owned(), Some("123-45-6789".to_owned()), 6000)
    );
    let born: mysql_async::Value = c
        .exec_first("SELECT born FROM people WHERE id = ?", (1,))
        .await
        .expect("q")
        .expect("row");
    assert_eq!(born, mysql_async::Value::Date(1990, 5, 1, 0, 0, 0, 0));
    let upserted: String = c
        .query_first("SELECT email FROM people WHERE id = 3")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(upserted, "cy2@example.com");
    let all: Vec<Row> = c
        .query("SELECT * FROM people ORDER BY id")
        .await
        .expect("select *");
    assert_eq!(all.len(), 3);

    // Search through the blind index (normalized: case and spaces do not matter).
    let found: Vec<i32> = c
        .query(format!(
            "SELECT id FROM people WHERE email = ' {} '",
            CANARY.to_uppercase()
        ))
        .await
        .expect("search");
    assert_eq!(found, vec![1]);
    let found: Vec<i32> = c.query(format!("SELECT id FROM people WHERE email IN ('nobody@x.io', '{CANARY}', 'cy2@example.com') ORDER BY id")).await.expect("in");
    assert_eq!(found, vec![1, 3]);
    c.query_drop("DELETE FROM people WHERE email = 'cy2@example.com'")
        .await
        .expect("delete");
    assert_eq!(c.affected_rows(), 1);

    // Another role: masked email, year-only date, ciphertext salary.
    let mut r = reporter(&env).await;
    let view: (String, String, Vec<u8>) = r
        .query_first("SELECT email, born, salary FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        (view.0.as_str(), view.1.as_str()),
        ("c***@example.com", "1990-01-01")
    );
    assert_eq!(&view.2[..2], b"MV");
    let (code, message) = server_error(r.query_drop("SELECT ssn FROM people").await).await;
    assert_eq!(code, 1143, "{message}");
    assert!(message.contains("people.ssn"), "{message}");
    let (code, _) = server_error(r.query_drop("SELECT * FROM people").await).await;
    assert_eq!(code, 1143, "SELECT * includes a denied column");
    let (code, message) = server_error(
        r.query_drop(format!("SELECT id FROM people WHERE email = '{CANARY}'"))
            .await,
    )
    .await;
    assert_eq!(code, 1235, "masked roles may not search: {message}");
    let still: i64 = r
        .query_first("SELECT 1")
        .await
        .expect("session usable")
        .expect("row");
    assert_eq!(still, 1);
    r.disconnect().await.ok();
    c.disconnect().await.ok();
    env.db.drop_now().await;
}

#[tokio::test]
async fn unsupported_statements_are_refused_before_the_database() {
    let env = setup("refuse").await;
    let mut c = app(&env).await;
    for (sql, code, needle) in [
        (
            "SELECT id FROM people WHERE email LIKE 'a%'",
            1235,
            "people.email",
        ),
        ("SELECT UPPER(email) FROM people", 1235, "functions"),
        ("SELECT id FROM people ORDER BY born", 1235, "people.born"),
        ("SELECT id FROM people WHERE ssn = '1'", 1235, "blind index"),
        (
            "INSERT INTO people (id, email) SELECT id, name FROM people",
            1235,
            "INSERT … SELECT",
        ),
        ("UPDATE people SET email = name", 1235, "literal"),
        (
            "PREPARE s FROM 'SELECT id FROM people ORDER BY email'",
            1235,
            "people.email",
        ),
        (
            "INSERT INTO people (id, email, email_bidx) VALUES (9, 'a', 'b')",
            1235,
            "blind-index",
        ),
        (
            "SELECT 1; SELECT LOWER(email) FROM people",
            1235,
            "functions",
        ),
        (
            "EXECUTE IMMEDIATE CONCAT('INSERT INTO people (id, email) VALUES (9, ', '\'plain@example.com\')')",
            1235,
            "EXECUTE IMMEDIATE",
        ),
    ] {
        let (got, message) = server_error(c.query_drop(sql).await).await;
        assert_eq!(got, code, "{sql}: {message}");
        assert!(message.contains(needle), "{sql}: {message}");
    }
    let prepared = c.prep("SELECT UPPER(email) FROM people WHERE id = ?").await;
    assert!(
        matches!(prepared, Err(mysql_async::Error::Server(ref e)) if e.code == 1235),
        "{prepared:?}"
    );
    let n: i64 = common::direct(Some(&env.db.name))
        .await
        .query_first("SELECT COUNT(*) FROM people")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(n, 0, "nothing reached the table");
    env.db.drop_now().await;
}

#[tokio::test]
async fn a_tampered_cell_is_an_error_naming_the_column() {
    let env = setup("tamper").await;
    let mut c = app(&env).await;
    c.query_drop(
        "INSERT INTO people (id, email, salary) VALUES (1, 'a@x.io', 1), (2, 'b@x.io', 2)",
    )
    .await
    .expect("insert");
    let mut d = common::direct(Some(&env.db.name)).await;
    // Move a ciphertext into another column, and flip a byte of another.
    d.query_drop("UPDATE people SET salary = email WHERE id = 1")
        .await
        .expect("move");
    d.query_drop(
        "UPDATE people SET email = CONCAT(LEFT(email, 30), 'X', SUBSTRING(email, 32)) WHERE id = 2",
    )
    .await
    .expect("flip");
    let (code, message) =
        server_error(c.query_drop("SELECT salary FROM people WHERE id = 1").await).await;
    assert_eq!(code, 1105);
    assert!(message.contains("people.salary"), "{message}");
    let (_, message) = server_error(
        c.query_drop("SELECT email FROM people ORDER BY id")
            .await
            .map(drop),
    )
    .await;
    assert!(message.contains("people.email"), "{message}");
    let ok: String = c
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("session goes on")
        .expect("row");
    assert_eq!(ok, "a@x.io");
    env.db.drop_now().await;
}

#[tokio::test]
async fn prepared_statements_seal_parameters_and_search() {
    let env = setup("prep").await;
    let mut c = app(&env).await;
    let insert = c
        .prep("INSERT INTO people (id, name, email, ssn, born, salary) VALUES (?, ?, ?, ?, ?, ?)")
        .await
        .expect("prepare insert");
    assert_eq!(
        insert.num_params(),
        6,
        "the client sees its own parameter count"
    );
    for (id, email, salary) in [
        (1, "ann@example.com", 10),
        (2, "BOB@example.com", 20),
        (3, "cy@example.com", 30),
    ] {
        c.exec_drop(
            &insert,
            (
                id,
                format!("n{id}"),
                email,
                "123-45-6789",
                "1999-12-31",
                salary,
            ),
        )
        .await
        .expect("execute insert");
    }
    c.exec_drop(
        &insert,
        (
            4,
            "nulls",
            None::<String>,
            None::<String>,
            None::<String>,
            None::<i32>,
        ),
    )
    .await
    .expect("insert NULLs");
    let mut d = common::direct(Some(&env.db.name)).await;
    let at_rest: Vec<Row> = d
        .query("SELECT email, ssn, born, salary FROM people")
        .await
        .expect("direct");
    let dump = format!("{at_rest:?}");
    assert!(
        !dump.contains("ann@example.com") && !dump.contains("1999-12-31"),
        "{dump}"
    );
    d.disconnect().await.ok();

    let search = c
        .prep("SELECT id, email, salary FROM people WHERE email = ?")
        .await
        .expect("prepare search");
    assert_eq!(search.num_params(), 1);
    let found: Vec<(i32, String, i32)> =
        c.exec(&search, ("bob@EXAMPLE.com",)).await.expect("search");
    assert_eq!(found, vec![(2, "BOB@example.com".to_owned(), 20)]);
    let none: Vec<(i32, String, i32)> = c
        .exec(&search, ("nobody@example.com",))
        .await
        .expect("search");
    assert!(none.is_empty());
    let update = c
        .prep("UPDATE people SET salary = ?, email = ? WHERE id = ?")
        .await
        .expect("prepare update");
    c.exec_drop(&update, (99, "ann2@example.com", 1))
        .await
        .expect("update");
    let found: Vec<(i32, String, i32)> = c
        .exec(&search, ("ann2@example.com",))
        .await
        .expect("search");
    assert_eq!(found, vec![(1, "ann2@example.com".to_owned(), 99)]);
    // A value longer than the declared type is refused, not truncated.
    let big = "x".repeat(150);
    let too_long = c.exec_drop(&update, (1, big.as_str(), 2)).await;
    assert!(
        matches!(too_long, Err(mysql_async::Error::Server(ref e)) if e.code == 1235),
        "value longer than varchar(100)? {too_long:?}"
    );
    let in_list = c
        .prep("SELECT id FROM people WHERE email IN (?, ?) ORDER BY id")
        .await
        .expect("prepare in");
    let ids: Vec<i32> = c
        .exec(&in_list, ("cy@example.com", "ann2@example.com"))
        .await
        .expect("in");
    assert_eq!(ids, vec![1, 3]);
    c.disconnect().await.ok();
    env.db.drop_now().await;
}

/// Turns the general log on (to a table) for the test and restores it after.
struct GeneralLog {
    was_on: String,
    output: String,
    /// Only entries from this test run count.
    since: String,
}

impl GeneralLog {
    async fn on() -> Self {
        let mut d = common::direct(None).await;
        let (was_on, output): (String, String) = d
            .query_first("SELECT @@global.general_log, @@global.log_output")
            .await
            .expect("q")
            .expect("row");
        d.query_drop("SET GLOBAL log_output = 'TABLE,FILE'")
            .await
            .expect("log_output");
        d.query_drop("SET GLOBAL general_log = 1")
            .await
            .expect("general_log");
        let since: String = d
            .query_first("SELECT CAST(NOW(6) AS CHAR)")
            .await
            .expect("q")
            .expect("row");
        d.disconnect().await.ok();
        Self {
            was_on,
            output,
            since,
        }
    }

    async fn contains(&self, needle: &str) -> bool {
        let mut d = common::direct(None).await;
        // The needle goes in hex so this query's own log entry does not contain it.
        let n: i64 = d
            .query_first(format!(
                "SELECT COUNT(*) FROM mysql.general_log WHERE event_time >= '{}' AND LOCATE(UNHEX('{}'), argument) > 0",
                self.since,
                hex::encode(needle)
            ))
            .await
            .expect("q")
            .expect("row");
        d.disconnect().await.ok();
        n > 0
    }

    async fn restore(self) {
        let mut d = common::direct(None).await;
        d.query_drop(format!(
            "SET GLOBAL general_log = {}",
            if self.was_on == "1" || self.was_on == "ON" {
                1
            } else {
                0
            }
        ))
        .await
        .ok();
        d.exec_drop("SET GLOBAL log_output = ?", (self.output,))
            .await
            .ok();
        d.disconnect().await.ok();
    }
}

#[tokio::test]
async fn a_canary_never_reaches_the_server_log_and_the_cli_works() {
    let env = setup("canary").await;
    let log = GeneralLog::on().await;
    let canary = "zq-canary-5e1d@example.com";
    let mut c = app(&env).await;
    c.query_drop(format!(
        "INSERT INTO people (id, email, ssn) VALUES (1, '{canary}', '999-99-9999')"
    ))
    .await
    .expect("literal");
    c.exec_drop(
        "INSERT INTO people (id, email) VALUES (?, ?)",
        (2, format!("{canary}-param")),
    )
    .await
    .expect("param");
    c.query_drop(format!(
        "UPDATE people SET email = '{canary}-upd' WHERE email = '{canary}'"
    ))
    .await
    .expect("update");
    let ids: Vec<i32> = c
        .exec(
            "SELECT id FROM people WHERE email = ?",
            (format!("{canary}-param"),),
        )
        .await
        .expect("search");
    assert_eq!(ids, vec![2]);
    c.disconnect().await.ok();

    // The mariadb CLI through myveil: a write, a read, a refusal.
    let port = env.proxy.addr.port();
    let db = env.db.name.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mariadb")
            .args(["-h127.0.0.1", &format!("-P{port}"), &format!("-u{}", common::APP_USER), &format!("-p{}", common::APP_PASSWORD), "--force", &db])
            .args(["-e", "INSERT INTO people (id, email) VALUES (3, 'cli@example.com'); SELECT id, email FROM people WHERE email = 'cli@example.com'; SELECT id FROM people WHERE email LIKE 'c%'"])
            .output()
            .expect("mariadb client")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("3\tcli@example.com"), "{stdout}{stderr}");
    assert!(
        stderr.contains("ERROR 1235") && stderr.contains("people.email"),
        "{stderr}"
    );

    let leaked = log.contains("canary-5e1d").await
        || log.contains("999-99-9999").await
        || log.contains("cli@example.com").await;
    let saw_traffic = log.contains("email_bidx").await;
    log.restore().await;
    assert!(
        saw_traffic,
        "the general log recorded the rewritten statements"
    );
    assert!(!leaked, "a plaintext value reached the MariaDB general log");
    env.db.drop_now().await;
}

#[tokio::test]
async fn live_schema_gives_column_order_and_is_checked() {
    use myveil::backend::schema;
    let env = setup("schema").await;
    let mut d = common::direct(Some(&env.db.name)).await;
    d.query_drop("CREATE TABLE people_v2 (id INT PRIMARY KEY, email VARBINARY(40), email_bidx INT, ssn VARCHAR(255))").await.expect("create");
    let db = env.db.name.clone();
    let policy_text = format!(
        "[[column]]\ndatabase = \"{db}\"\ntable = \"people_v2\"\ncolumn = \"email\"\ntype = \"varchar(100)\"\nblind_index = \"email_bidx\"\n\
         [[column]]\ndatabase = \"{db}\"\ntable = \"people_v2\"\ncolumn = \"ssn\"\ntype = \"char(11)\"\nstorage = \"base64\"\n\
         [[column]]\ndatabase = \"{db}\"\ntable = \"people_v2\"\ncolumn = \"phone\"\ntype = \"varchar(20)\"\n"
    );
    let mut policy = myveil::policy::Policy::default();
    policy.add_toml(&policy_text, "check").expect("policy");
    let snapshot = schema::load(&mut d, &policy).await.expect("load");
    let problems = schema::check(&snapshot, &policy);
    let text = problems.join("\n");
    assert!(text.contains("people_v2.email: holds 40"), "{text}");
    assert!(
        text.contains("people_v2.email_bidx: a blind index needs BINARY(32)"),
        "{text}"
    );
    assert!(text.contains("people_v2.phone: column not found"), "{text}");
    assert!(!text.contains(".ssn"), "ssn fits: {text}");
    assert_eq!(problems.len(), 3, "{text}");

    // With the schema known, an INSERT without a column list works: the blind index is given
    // as NULL or DEFAULT and filled by myveil.
    d.disconnect().await.ok();
    env.proxy.shared.refresh_schema().await.expect("refresh");
    let mut c = app(&env).await;
    c.query_drop("INSERT INTO people VALUES (1, 'n', 'a@x.io', DEFAULT, '123-45-6789', NULL, 7)")
        .await
        .expect("no column list");
    let found: (i32, String, i32) = c
        .query_first("SELECT id, ssn, salary FROM people WHERE email = 'a@x.io'")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(found, (1, "123-45-6789".to_owned(), 7));
    let (code, message) = server_error(
        c.query_drop("INSERT INTO people VALUES (2, 'n', 'b@x.io', X'00', NULL, NULL, NULL)")
            .await,
    )
    .await;
    assert_eq!(code, 1235);
    assert!(message.contains("NULL or DEFAULT"), "{message}");
    env.db.drop_now().await;
}

#[tokio::test]
async fn sql_level_prepare_and_execute() {
    let env = setup("sqlprep").await;
    let mut c = app(&env).await;
    c.query_drop(
        "PREPARE ins FROM 'INSERT INTO people (id, name, email, salary) VALUES (?, ?, ?, ?)'",
    )
    .await
    .expect("prepare");
    c.query_drop("SET @who = 'Ann'").await.expect("set");
    c.query_drop("EXECUTE ins USING 1, @who, 'ann@example.com', 100")
        .await
        .expect("execute");
    c.query_drop("EXECUTE ins USING 2, 'Bob', 'bob@example.com', NULL")
        .await
        .expect("execute again");
    let (code, message) = server_error(
        c.query_drop("SET @e = 'x@example.com'")
            .await
            .and(c.query_drop("EXECUTE ins USING 3, 'Cy', @e, 1").await),
    )
    .await;
    assert_eq!(
        code, 1235,
        "a variable cannot feed an encrypted column: {message}"
    );
    c.query_drop("DEALLOCATE PREPARE ins")
        .await
        .expect("deallocate");

    c.query_drop("PREPARE find FROM 'SELECT name, email, salary FROM people WHERE email = ?'")
        .await
        .expect("prepare search");
    let row: (String, String, i32) = c
        .query_first("EXECUTE find USING 'ann@example.com'")
        .await
        .expect("execute")
        .expect("row");
    assert_eq!(row, ("Ann".to_owned(), "ann@example.com".to_owned(), 100));
    let (code, _) = server_error(c.query_drop("PREPARE dyn FROM @sql").await).await;
    assert_eq!(code, 1235, "PREPARE from a variable cannot be analyzed");
    let (code, message) = server_error(
        c.query_drop("PREPARE bad FROM 'SELECT UPPER(email) FROM people'")
            .await,
    )
    .await;
    assert_eq!(code, 1235, "{message}");

    let at_rest: Vec<u8> = common::direct(Some(&env.db.name))
        .await
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(&at_rest[..2], b"MV");
    env.db.drop_now().await;
}

#[tokio::test]
async fn policy_reload_validates_first_and_keeps_the_old_policy() {
    let env = setup("reload").await;
    let policy_dir = env._dir.path().join("policy");
    let columns = || env.proxy.shared.protection.load().policy.columns().len();
    assert_eq!(columns(), 4);
    std::fs::write(
        policy_dir.join("broken.toml"),
        "[[column]]\ntable = \"x\"\ncolumn = \"y\"\ntype = \"float\"\n",
    )
    .expect("write");
    assert!(
        env.proxy.shared.reload_policy().is_err(),
        "an invalid policy is refused"
    );
    assert_eq!(columns(), 4, "the old policy stays");
    common::direct(Some(&env.db.name))
        .await
        .query_drop("ALTER TABLE people MODIFY name VARCHAR(255)")
        .await
        .expect("widen");
    std::fs::write(
        policy_dir.join("broken.toml"),
        "[[column]]\ntable = \"people\"\ncolumn = \"name\"\ntype = \"varchar(20)\"\nstorage = \"base64\"\nroles = { app = \"plaintext\" }\n",
    )
    .expect("write");
    assert_eq!(env.proxy.shared.reload_policy().expect("valid policy"), 5);
    // The new column is protected from the next statement on.
    let mut c = app(&env).await;
    c.query_drop("INSERT INTO people (id, name) VALUES (1, 'Zed')")
        .await
        .expect("insert");
    let at_rest: String = common::direct(Some(&env.db.name))
        .await
        .query_first("SELECT name FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert!(at_rest.starts_with("TV"), "base64 envelope: {at_rest}");
    let name: String = c
        .query_first("SELECT name FROM people WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(name, "Zed");
    env.db.drop_now().await;
}

#[tokio::test]
async fn row_bound_cells_open_only_in_their_row() {
    let env = setup("rowkey").await;
    std::fs::write(
        env._dir.path().join("policy/accounts.toml"),
        "[[column]]\ntable = \"accounts\"\ncolumn = \"iban\"\ntype = \"varchar(34)\"\nrow_key = \"id\"\nroles = { app = \"plaintext\" }\n",
    )
    .expect("policy");
    env.proxy.shared.reload_policy().expect("reload");
    let mut d = common::direct(Some(&env.db.name)).await;
    d.query_drop(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner VARCHAR(20), iban VARBINARY(255))",
    )
    .await
    .expect("create");
    let mut c = app(&env).await;
    c.query_drop(
        "INSERT INTO accounts (id, owner, iban) VALUES (1, 'ann', 'DE89370400440532013000')",
    )
    .await
    .expect("literal");
    c.exec_drop(
        "INSERT INTO accounts (id, owner, iban) VALUES (?, ?, ?)",
        (2, "bob", "FR1420041010050500013M02606"),
    )
    .await
    .expect("prepared");
    c.query_drop("UPDATE accounts SET iban = 'GB29NWBK60161331926819' WHERE id = 1")
        .await
        .expect("update");
    let text: Vec<(i64, String)> = c
        .query("SELECT id, iban FROM accounts ORDER BY id")
        .await
        .expect("text");
    assert_eq!(
        text,
        vec![
            (1, "GB29NWBK60161331926819".to_owned()),
            (2, "FR1420041010050500013M02606".to_owned())
        ]
    );
    let binary: Vec<(String, i64)> = c
        .exec(
            "SELECT iban, id FROM accounts WHERE id > ? ORDER BY id",
            (0,),
        )
        .await
        .expect("binary");
    assert_eq!(binary[1], ("FR1420041010050500013M02606".to_owned(), 2));
    let (code, message) = server_error(c.query_drop("SELECT iban FROM accounts").await).await;
    assert_eq!(code, 1105);
    assert!(message.contains("row key"), "{message}");
    let (code, _) = server_error(
        c.query_drop("UPDATE accounts SET iban = 'x' WHERE owner = 'ann'")
            .await,
    )
    .await;
    assert_eq!(code, 1235);

    // A ciphertext copied to another row does not open there.
    d.query_drop("UPDATE accounts SET iban = (SELECT iban FROM (SELECT iban FROM accounts WHERE id = 1) t) WHERE id = 2").await.expect("copy");
    d.disconnect().await.ok();
    let (code, message) = server_error(
        c.query_drop("SELECT id, iban FROM accounts WHERE id = 2")
            .await,
    )
    .await;
    assert_eq!(code, 1105);
    assert!(message.contains("accounts.iban"), "{message}");
    let one: (i64, String) = c
        .query_first("SELECT id, iban FROM accounts WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(one.1, "GB29NWBK60161331926819");
    env.db.drop_now().await;
}

/// Reads packets up to and including the next EOF or ERR.
async fn until_eof(c: &mut myveil::wire::PacketConn) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let p = common::raw::read(c).await;
        let head = p.as_slice().first().copied();
        let end = (head == Some(0xFE) && p.len() < 9) || head == Some(0xFF);
        out.push(p);
        if end {
            return out;
        }
    }
}

#[tokio::test]
async fn cursors_over_protected_columns_fetch_plaintext_per_role() {
    let env = setup("cursor").await;
    let mut c = app(&env).await;
    for i in 1..=5 {
        c.exec_drop(
            "INSERT INTO people (id, name, email, salary) VALUES (?, ?, ?, ?)",
            (
                i,
                format!("n{i}"),
                format!("person{i}@example.com"),
                1000 * i,
            ),
        )
        .await
        .expect("insert");
    }
    c.disconnect().await.ok();

    for (user, password, want_email, want_salary_plain) in [
        (
            common::APP_USER,
            common::APP_PASSWORD,
            "person2@example.com",
            true,
        ),
        (
            common::OTHER_USER,
            common::OTHER_PASSWORD,
            "p***@example.com",
            false,
        ),
    ] {
        let (mut raw, _) =
            common::raw::login(env.proxy.addr, user, password, Some(&env.db.name)).await;
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(b"SELECT id, email, salary FROM people WHERE id > ? ORDER BY id");
        common::raw::send(&mut raw, &prepare).await;
        let ok = common::raw::read(&mut raw).await;
        assert_eq!(ok[0], 0x00, "prepare: {:?}", String::from_utf8_lossy(&ok));
        let stmt = [ok[1], ok[2], ok[3], ok[4]];
        until_eof(&mut raw).await; // parameter
        let defs = until_eof(&mut raw).await; // 3 columns
        assert_eq!(defs.len(), 4);

        let mut exec = vec![0x17];
        exec.extend_from_slice(&stmt);
        exec.push(0x01); // CURSOR_TYPE_READ_ONLY
        exec.extend_from_slice(&1u32.to_le_bytes());
        exec.extend_from_slice(&[0, 1, 0x03, 0x00]);
        exec.extend_from_slice(&1i32.to_le_bytes());
        common::raw::send(&mut raw, &exec).await;
        assert_eq!(common::raw::read(&mut raw).await, vec![3], "three columns");
        let meta = until_eof(&mut raw).await;
        let eof = meta.last().expect("eof");
        assert_ne!(
            u16::from_le_bytes([eof[3], eof[4]]) & 0x0040,
            0,
            "the cursor is open"
        );
        // The email column is described as the plaintext VARCHAR, not VARBINARY.
        let email_def = &meta[1];
        assert!(
            email_def.windows(5).any(|w| w == b"email"),
            "column 2 is email"
        );

        let mut fetch = vec![0x1C];
        fetch.extend_from_slice(&stmt);
        fetch.extend_from_slice(&2u32.to_le_bytes());
        common::raw::send(&mut raw, &fetch).await;
        let batch = until_eof(&mut raw).await;
        assert_eq!(batch.len(), 3, "two rows and EOF: {batch:?}");
        let row = String::from_utf8_lossy(&batch[0]).into_owned();
        assert!(row.contains(want_email), "{user}: {row:?}");
        let salary_plain = batch[0].windows(4).any(|w| w == 2000i32.to_le_bytes());
        assert_eq!(salary_plain, want_salary_plain, "{user}: salary {row:?}");
        common::raw::send(&mut raw, &fetch).await;
        let more = until_eof(&mut raw).await;
        assert_eq!(more.len(), 3, "rows 4 and 5 and EOF");
        assert!(
            String::from_utf8_lossy(&more[1]).contains(if want_salary_plain {
                "person5@example.com"
            } else {
                "p***@example.com"
            })
        );
        common::raw::send(&mut raw, &fetch).await;
        let last = until_eof(&mut raw).await;
        assert_eq!(last.len(), 1, "only EOF: the cursor is exhausted");
        // The session goes on normally.
        common::raw::send(&mut raw, &[0x0E]).await; // COM_PING
        assert_eq!(common::raw::read(&mut raw).await[0], 0x00);
    }
    env.db.drop_now().await;
}

#[tokio::test]
async fn prepared_state_is_forgotten_on_change_user_and_reset() {
    let env = setup("chuser").await;
    let mut c = app(&env).await;
    // A protected prepared statement, then the backend forgets all statements.
    c.exec_drop(
        "INSERT INTO people (id, email) VALUES (?, ?)",
        (1, "first@example.com"),
    )
    .await
    .expect("protected insert");
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(common::APP_USER.to_owned()))
            .with_pass(Some(common::APP_PASSWORD.to_owned()))
            .with_db_name(Some(env.db.name.clone())),
    )
    .await
    .expect("change user");
    // New statements, whatever ids the backend gives them, are handled as what they are.
    let n: Option<i64> = c.exec_first("SELECT ? + 1", (41,)).await.expect("plain");
    assert_eq!(n, Some(42));
    let name: Option<String> = c
        .exec_first("SELECT CONCAT(?, '!')", ("hi",))
        .await
        .expect("plain text parameter");
    assert_eq!(name.as_deref(), Some("hi!"));
    c.exec_drop(
        "INSERT INTO people (id, email) VALUES (?, ?)",
        (2, "second@example.com"),
    )
    .await
    .expect("protected insert after change user");
    c.reset().await.expect("reset connection");
    let n: Option<i64> = c.exec_first("SELECT ? * 2", (21,)).await.expect("plain");
    assert_eq!(n, Some(42));
    let emails: Vec<String> = c
        .query("SELECT email FROM people ORDER BY id")
        .await
        .expect("read");
    assert_eq!(emails, ["first@example.com", "second@example.com"]);
    c.disconnect().await.ok();
    env.db.drop_now().await;
}

#[tokio::test]
async fn views_are_read_through_and_routines_and_triggers_refused() {
    let env = setup("deps").await;
    let mut d = common::direct(Some(&env.db.name)).await;
    for ddl in [
        "CREATE TABLE staging (id INT PRIMARY KEY, e VARCHAR(100))",
        "CREATE VIEW people_v AS SELECT id, email FROM people",
        "CREATE VIEW people_vv AS SELECT * FROM people_v",
        "CREATE VIEW unrelated_v AS SELECT 1 AS one",
        "CREATE PROCEDURE add_person(i INT, e VARCHAR(100)) INSERT INTO people (id, email) VALUES (i, e)",
        "CREATE TRIGGER staging_copy AFTER INSERT ON staging FOR EACH ROW INSERT INTO people (id, email) VALUES (NEW.id, NEW.e)",
        "CREATE VIEW staging_v AS SELECT id, e FROM staging",
    ] {
        d.query_drop(ddl).await.expect("ddl");
    }
    env.proxy
        .shared
        .refresh_schema()
        .await
        .expect("schema refresh");
    let mut c = app(&env).await;
    c.query_drop(format!(
        "INSERT INTO people (id, email) VALUES (1, '{CANARY}')"
    ))
    .await
    .expect("insert into the table");
    for (sql, names, why) in [
        (
            "INSERT INTO people_v (id, email) VALUES (9, 'leak@example.com')",
            "people_v",
            "protected data through",
        ),
        (
            "CALL add_person(9, 'leak@example.com')",
            "add_person",
            "protected data through",
        ),
        (
            "INSERT INTO staging VALUES (9, 'leak@example.com')",
            "staging_copy",
            "protected data through",
        ),
        (
            "INSERT INTO staging_v VALUES (9, 'leak@example.com')",
            "staging_v",
            "protected data through",
        ),
        (
            "PREPARE s FROM 'INSERT INTO people_v (id, email) VALUES (9, ''leak@example.com'')'",
            "people_v",
            "protected data through",
        ),
        (
            "SHOW TABLES; INSERT INTO people_v (id, email) VALUES (9, 'leak@example.com')",
            "people_v",
            "protected data through",
        ),
    ] {
        let (code, message) = server_error(c.query_drop(sql).await).await;
        assert_eq!(code, 1235, "{sql}: {message}");
        assert!(
            message.contains(names) && message.contains(why),
            "{sql}: {message}"
        );
    }
    // Reads through views follow the column to its table: opened or masked by role.
    let through: Vec<(i32, String)> = c
        .query("SELECT * FROM people_vv")
        .await
        .expect("read through two views");
    assert_eq!(through, vec![(1, CANARY.to_owned())]);
    let mut r = reporter(&env).await;
    let masked: Option<String> = r
        .query_first("SELECT email FROM people_v")
        .await
        .expect("masked through a view");
    assert_eq!(masked.as_deref(), Some("c***@example.com"));
    r.disconnect().await.ok();
    let one: Option<i32> = c
        .query_first("SELECT one FROM unrelated_v")
        .await
        .expect("unrelated view");
    assert_eq!(one, Some(1));
    c.query_drop("DROP VIEW people_vv")
        .await
        .expect("dropping a view is harmless");
    let stored: Option<i64> = d
        .query_first("SELECT COUNT(*) FROM people WHERE id = 9")
        .await
        .expect("count");
    assert_eq!(stored, Some(0), "nothing reached the protected table");
    let staged: Option<i64> = d
        .query_first("SELECT COUNT(*) FROM staging")
        .await
        .expect("count");
    assert_eq!(staged, Some(0));
    c.disconnect().await.ok();
    d.disconnect().await.ok();
    env.db.drop_now().await;
}

/// A policy for one database: another database's table of the same name, and views over
/// it, are that database's own and unprotected (SQLAlchemy's reflection suite); a view in
/// another database over the protected table is still a dependent.
#[tokio::test]
async fn dependents_are_matched_with_their_database() {
    let shop = TestDb::create("depdb_shop").await;
    let other = TestDb::create("depdb_other").await;
    let (_dir, protection) = common::protection(&format!(
        "[[column]]\ndatabase = \"{}\"\ntable = \"users\"\ncolumn = \"email\"\ntype = \"varchar(100)\"\nroles = {{ app = \"plaintext\" }}\n",
        shop.name
    ));
    let mut d = common::direct(None).await;
    for ddl in [
        format!(
            "CREATE TABLE `{}`.users (id INT PRIMARY KEY, email VARBINARY(255))",
            shop.name
        ),
        format!(
            "CREATE TABLE `{}`.users (id INT PRIMARY KEY, email VARCHAR(100))",
            other.name
        ),
        // Unqualified in the other database: its own users.
        format!(
            "CREATE VIEW `{}`.own_v AS SELECT id, email FROM `{}`.users",
            other.name, other.name
        ),
        // Qualified, from the other database: the protected table.
        format!(
            "CREATE VIEW `{}`.reach_v AS SELECT id, email FROM `{}`.users",
            other.name, shop.name
        ),
    ] {
        d.query_drop(ddl).await.expect("ddl");
    }
    let proxy = Proxy::start_with(Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    let mut c = proxy.app(Some(&other.name)).await;
    // The other database's own objects work as they would directly.
    c.query_drop("CREATE VIEW users_v AS SELECT * FROM users")
        .await
        .expect("a view over an unprotected table of the same name");
    proxy.shared.refresh_schema().await.expect("schema refresh");
    for sql in [
        "INSERT INTO users_v VALUES (1, 'plain@example.com')",
        "INSERT INTO own_v VALUES (2, 'plain2@example.com')",
        "CREATE VIEW users_vv AS SELECT * FROM users_v",
        "DROP VIEW users_vv",
    ] {
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM own_v")
        .await
        .expect("read");
    assert_eq!(n, Some(2));
    // The view over the protected table is refused for writes, named with its database and
    // from either database.
    for (db, sql) in [
        (
            &other.name,
            "INSERT INTO reach_v VALUES (9, 'leak@example.com')".to_owned(),
        ),
        (
            &shop.name,
            format!(
                "INSERT INTO `{}`.reach_v VALUES (9, 'leak@example.com')",
                other.name
            ),
        ),
    ] {
        c.query_drop(format!("USE `{db}`")).await.expect("use");
        match c.query_drop(&sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1235, "{sql}: {}", e.message);
                assert!(e.message.contains("reach_v"), "{sql}: {}", e.message);
            }
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    let leaked: Option<i64> = d
        .query_first(format!("SELECT COUNT(*) FROM `{}`.users", shop.name))
        .await
        .expect("count");
    assert_eq!(leaked, Some(0), "nothing reached the protected table");
    c.disconnect().await.ok();
    d.disconnect().await.ok();
    shop.drop_now().await;
    other.drop_now().await;
}

#[tokio::test]
async fn statement_id_minus_one_means_the_last_prepared_statement() {
    let env = setup("lastid").await;
    let (mut raw, _) = common::raw::login(
        env.proxy.addr,
        common::APP_USER,
        common::APP_PASSWORD,
        Some(&env.db.name),
    )
    .await;
    let prepare = |sql: &str| {
        let mut p = vec![0x16];
        p.extend_from_slice(sql.as_bytes());
        p
    };
    // MariaDB's execute-direct: PREPARE, then EXECUTE with id 0xFFFFFFFF.
    let execute_last = |id: i32, email: &str| {
        let mut e = vec![0x17];
        e.extend_from_slice(&u32::MAX.to_le_bytes());
        e.push(0);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.push(0); // null bitmap, 2 params
        e.push(1);
        e.extend_from_slice(&[0x03, 0x00, 0xFD, 0x00]); // LONG, VAR_STRING
        e.extend_from_slice(&id.to_le_bytes());
        e.push(email.len() as u8);
        e.extend_from_slice(email.as_bytes());
        e
    };
    common::raw::send(
        &mut raw,
        &prepare("INSERT INTO people (id, email) VALUES (?, ?)"),
    )
    .await;
    let ok = common::raw::read(&mut raw).await;
    assert_eq!(ok[0], 0x00, "{:?}", String::from_utf8_lossy(&ok));
    until_eof(&mut raw).await; // two parameter definitions
    common::raw::send(&mut raw, &execute_last(1, "direct@example.com")).await;
    let done = common::raw::read(&mut raw).await;
    assert_eq!(done[0], 0x00, "{:?}", String::from_utf8_lossy(&done));

    // A prepare that fails leaves -1 unknown while a protected statement is open: refused.
    common::raw::send(
        &mut raw,
        &prepare("INSERT INTO no_such_table VALUES (?, ?)"),
    )
    .await;
    assert_eq!(common::raw::read(&mut raw).await[0], 0xFF);
    common::raw::send(&mut raw, &execute_last(2, "ambiguous@example.com")).await;
    let refused = common::raw::read(&mut raw).await;
    assert_eq!(refused[0], 0xFF);
    assert_eq!(u16::from_le_bytes([refused[1], refused[2]]), 1235);

    let mut d = common::direct(Some(&env.db.name)).await;
    let stored: Vec<(i32, Vec<u8>)> = d
        .query("SELECT id, email FROM people ORDER BY id")
        .await
        .expect("read directly");
    assert_eq!(stored.len(), 1, "only the first execute ran");
    assert!(
        !String::from_utf8_lossy(&stored[0].1).contains("direct@example.com"),
        "stored as ciphertext"
    );
    d.disconnect().await.ok();
    let mut c = app(&env).await;
    let email: Option<String> = c
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("read through myveil");
    assert_eq!(email.as_deref(), Some("direct@example.com"));
    c.disconnect().await.ok();
    env.db.drop_now().await;
}

#[tokio::test]
async fn remembered_read_shapes_follow_a_policy_reload() {
    let env = setup("shapes").await;
    let mut d = common::direct(Some(&env.db.name)).await;
    d.query_drop("CREATE TABLE other (id INT PRIMARY KEY, email VARBINARY(255))")
        .await
        .expect("create");
    let mut c = app(&env).await;
    // `email` is a watched name, but other.email is not protected yet: passed through, and
    // the shape is remembered.
    c.query_drop("INSERT INTO other VALUES (1, 'plain@example.com')")
        .await
        .expect("plain insert");
    for _ in 0..2 {
        let v: Option<String> = c
            .query_first("SELECT email FROM other WHERE id = 1")
            .await
            .expect("read");
        assert_eq!(v.as_deref(), Some("plain@example.com"));
    }
    // Now other.email is protected: the same shape must be analyzed again and opened.
    std::fs::write(
        env._dir.path().join("policy/other.toml"),
        "[[column]]\ntable = \"other\"\ncolumn = \"email\"\ntype = \"varchar(100)\"\nroles = { app = \"plaintext\" }\n",
    )
    .expect("policy");
    env.proxy.shared.reload_policy().expect("reload");
    c.query_drop("UPDATE other SET email = 'sealed@example.com' WHERE id = 1")
        .await
        .expect("sealed update");
    let stored: Option<Vec<u8>> = d
        .query_first("SELECT email FROM other WHERE id = 1")
        .await
        .expect("direct");
    assert!(
        !String::from_utf8_lossy(&stored.expect("row")).contains("sealed@example.com"),
        "ciphertext at rest"
    );
    let v: Option<String> = c
        .query_first("SELECT email FROM other WHERE id = 1")
        .await
        .expect("read");
    assert_eq!(
        v.as_deref(),
        Some("sealed@example.com"),
        "opened, not passed through"
    );
    c.disconnect().await.ok();
    d.disconnect().await.ok();
    env.db.drop_now().await;
}

#[tokio::test]
async fn two_results_in_one_query_and_hostile_sizes_are_answered_without_harm() {
    let env = setup("bounds").await;
    let mut c = app(&env).await;
    c.query_drop(format!(
        "INSERT INTO people (id, name, email) VALUES (1, 'Ann', '{CANARY}')"
    ))
    .await
    .expect("insert");
    // Two result sets in one COM_QUERY: the first opened, the second relayed as it is.
    let mut results = c
        .query_iter("SELECT email FROM people WHERE id = 1; SELECT 42")
        .await
        .expect("two results");
    let first: Vec<String> = results.collect().await.expect("first");
    let second: Vec<i64> = results.collect().await.expect("second");
    drop(results);
    assert_eq!(first, vec![CANARY.to_owned()]);
    assert_eq!(second, vec![42]);

    // A bystander session must live through everything below.
    let mut bystander = reporter(&env).await;
    let sum = |n: usize| vec!["1"; n].join("+");
    let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    for sql in [
        format!("SELECT email FROM people WHERE id = {}", sum(2_300)),
        format!("SELECT email FROM people WHERE id = {}", sum(20_000)),
        format!("SELECT email FROM people WHERE id = {}", nested(2_000)),
        format!("SELECT email FROM people WHERE id = {}", nested(100_000)),
        format!(
            "SELECT email FROM people WHERE id IN ({})",
            (0..100_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!(
            "UPDATE people SET email = '{CANARY}' WHERE id = {}",
            sum(5_000)
        ),
        format!(
            "SELECT {}email{} FROM people",
            "(SELECT ".repeat(300),
            " FROM people LIMIT 1)".repeat(300)
        ),
    ] {
        match c.query_drop(&sql).await {
            // A clear refusal, or the server's own answer: never a lost connection.
            Err(mysql_async::Error::Server(e)) => {
                assert!(
                    [1235, 1064, 1436, 1242, 3636, 1153].contains(&e.code),
                    "{}…: {} {}",
                    &sql[..40],
                    e.code,
                    e.message
                );
            }
            Ok(()) => {}
            Err(e) => panic!("{}…: {e}", &sql[..40]),
        }
        let alive: Option<i64> = c.query_first("SELECT 1").await.expect("session lives");
        assert_eq!(alive, Some(1));
        let other: Option<i64> = bystander
            .query_first("SELECT 7")
            .await
            .expect("bystander lives");
        assert_eq!(other, Some(7));
    }
    let stored: Vec<Vec<u8>> = common::direct(Some(&env.db.name))
        .await
        .query("SELECT email FROM people")
        .await
        .expect("read directly");
    for cell in stored {
        assert!(cell.starts_with(b"MV"), "an envelope at rest");
        assert!(!cell.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    }
    c.disconnect().await.ok();
    bystander.disconnect().await.ok();
    env.db.drop_now().await;
}

/// MariaDB does not report `SET @@name = …` (no scope word) in session tracking, though the
/// value changes: myveil asks for a fresh report after such statements and after EXECUTE.
#[tokio::test]
async fn sql_mode_set_inside_a_multi_statement_is_followed() {
    let env = setup("modemulti").await;
    let other = TestDb::create("modeother").await;
    let mut d = common::direct(Some(&other.name)).await;
    d.query_drop("CREATE TABLE t (ssn VARCHAR(50))")
        .await
        .expect("create");
    d.disconnect().await.ok();
    let mut c = app(&env).await;
    c.query_drop("INSERT INTO people (id, name) VALUES (1, 'Ann')")
        .await
        .expect("insert");
    for first in [
        format!(
            "SET @@sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES';SELECT (SELECT ssn FROM {}.t LIMIT 1) AS s",
            other.name
        ),
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 1".to_owned(),
        "SET @@sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES';SELECT 1".to_owned(),
        "SET @@sql_mode = 'NO_BACKSLASH_ESCAPES';SELECT 1".to_owned(),
        "SET sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES';SELECT 1".to_owned(),
        "SET sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'".to_owned(),
        "SET sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'; SELECT 1".to_owned(),
        format!(
            "SET sql_mode = 'NO_BACKSLASH_ESCAPES';SELECT (SELECT ssn FROM {}.t LIMIT 1) AS s",
            other.name
        ),
        format!(
            "SET sql_mode = 'NO_BACKSLASH_ESCAPES';SELECT ssn FROM {}.t",
            other.name
        ),
        "SELECT 1; SET sql_mode = 'NO_BACKSLASH_ESCAPES'".to_owned(),
        "SET @@SQL_MODE = 'NO_BACKSLASH_ESCAPES'".to_owned(),
        "EXECUTE IMMEDIATE 'SET @@sql_mode = ''NO_BACKSLASH_ESCAPES'''".to_owned(),
    ] {
        c.query_drop("SET sql_mode = DEFAULT").await.expect("reset");
        let mut r = c.query_iter(first.as_str()).await.expect("multi");
        loop {
            let _: Vec<Row> = r.collect().await.expect("result");
            if r.is_empty() {
                break;
            }
        }
        drop(r);
        let mode: Option<String> = c.query_first("SELECT @@sql_mode").await.expect("mode");
        assert!(
            mode.as_deref()
                .unwrap_or("")
                .contains("NO_BACKSLASH_ESCAPES"),
            "{mode:?}"
        );
        let _ = c
            .query_drop(format!(
                "SELECT '\\'; UPDATE people SET ssn = '{CANARY}'; -- '"
            ))
            .await;
        let ssn: Option<Option<Vec<u8>>> = common::direct(Some(&env.db.name))
            .await
            .query_first("SELECT ssn FROM people WHERE id = 1")
            .await
            .expect("read directly");
        assert_eq!(ssn, Some(None), "plaintext stored after {first}");
    }
    c.disconnect().await.ok();
    other.drop_now().await;
    env.db.drop_now().await;
}
