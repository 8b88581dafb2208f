//! Migrations of existing plaintext tables, against the live server: every DDL step that
//! `migrate plan` prints runs as printed (its ALGORITHM clause included: the server refuses
//! a step it cannot run that way), and afterwards `check` finds nothing to report.

mod common;

use common::{TestDb, direct};
use mysql_async::prelude::*;
use myveil::migrate::plan::{self, Algorithm, Approach};
use myveil::policy::Policy;

fn policy(db: &str) -> Policy {
    let mut p = Policy::default();
    p.add_toml(
        &format!(
            r#"
[[column]]
database = "{db}"
table = "people"
column = "email"
type = "varchar(100)"
storage = "base64"
blind_index = "email_bidx"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "people"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "people"
column = "note"
type = "text"
storage = "base64"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "nokey"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext" }}
"#
        ),
        "test",
    )
    .expect("policy");
    p
}

#[tokio::test]
async fn every_planned_step_runs_on_the_server_and_leaves_nothing_to_fix() {
    let db = TestDb::create("migplan").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, \
         ssn VARCHAR(16) NOT NULL DEFAULT '', note TEXT, KEY (email)) ENGINE=InnoDB",
    )
    .await
    .expect("create");
    c.query_drop("CREATE TABLE nokey (ssn VARCHAR(16)) ENGINE=InnoDB")
        .await
        .expect("create");
    for i in 0..50 {
        c.exec_drop(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            (
                i,
                format!("p{i}@example.com"),
                format!("{i:03}-45-6789"),
                "a note",
            ),
        )
        .await
        .expect("insert");
    }
    c.query_drop("ANALYZE TABLE people").await.expect("analyze");
    let policy = policy(&db.name);
    let (server, tables) = plan::load(&mut c, &policy, 1_000).await.expect("load");
    let plans = plan::plan(&policy, &tables, server, 1_000);
    let text = plan::render(&plans, server, 1_000);
    let of = |t: &str, col: &str| {
        plans
            .iter()
            .find(|p| p.table == t && p.column == col)
            .unwrap_or_else(|| panic!("a plan for {t}.{col}:\n{text}"))
    };
    // What each column needs, as a user would read it.
    assert_eq!(of("people", "email").approach, Approach::Widen, "{text}");
    assert_eq!(of("people", "ssn").approach, Approach::Shadow, "{text}");
    assert_eq!(of("people", "note").approach, Approach::Shadow, "{text}");
    assert!(
        of("nokey", "ssn")
            .blockers
            .iter()
            .any(|b| b.contains("primary key")),
        "{text}"
    );
    assert!(of("people", "ssn").rows > 0, "{text}");
    assert!(text.contains("ALGORITHM="), "{text}");
    // Nothing changed yet: plan only reads.
    let before: Vec<(String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people' ORDER BY ORDINAL_POSITION",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert_eq!(before.len(), 4);

    // Run the DDL as printed (backfills are apply's: a shadow column is swapped in empty).
    for p in plans.iter().filter(|p| p.blockers.is_empty()) {
        for s in &p.steps {
            match &s.sql {
                Some(sql) => c
                    .query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}\n{text}")),
                None => assert_eq!(s.algorithm, Algorithm::Backfill),
            }
        }
    }
    let snapshot = myveil::backend::schema::load(&mut c, &policy)
        .await
        .expect("snapshot");
    let problems: Vec<String> = myveil::backend::schema::check(&snapshot, &policy)
        .into_iter()
        .filter(|p| !p.contains("nokey"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    // The old plaintext columns are gone; the widened one kept its rows.
    let left: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people' AND COLUMN_NAME LIKE '%myveil%'",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert!(left.is_empty(), "{left:?}");
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM people WHERE email LIKE 'p%@example.com'")
        .await
        .expect("count");
    assert_eq!(n, Some(50));
    // Planned again, nothing is left to change.
    let (server, tables) = plan::load(&mut c, &policy, 0).await.expect("load");
    let again = plan::plan(&policy, &tables, server, 1_000);
    for p in again.iter().filter(|p| p.table == "people") {
        assert!(
            p.steps.iter().all(|s| s.sql.is_none()),
            "{}",
            plan::render(&again, server, 1_000)
        );
    }
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// Log lines of this test binary (the proxy runs in-process).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_what_check_knows_and_a_too_narrow_write_names_the_fix() {
    let logs = Logs::default();
    let _ = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let db = TestDb::create("narrow").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop("CREATE TABLE narrow (id INT PRIMARY KEY, ssn VARCHAR(20))")
        .await
        .expect("create");
    let (_dir, protection) = common::protection(&format!(
        r#"
[[column]]
database = "{}"
table = "narrow"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = {{ app = "plaintext" }}
"#,
        db.name
    ));
    let proxy = common::Proxy::start_with(common::Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    // At start: one line for the problem `check` would report.
    let mut logged = String::new();
    for _ in 0..100 {
        logged = logs.text();
        if logged.contains("narrow.ssn") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = logged
        .lines()
        .find(|l| l.contains("narrow.ssn"))
        .unwrap_or_else(|| panic!("no problem logged:\n{logged}"));
    assert!(
        line.contains("WARN") && line.contains("holds 20") && line.contains("migrate plan"),
        "{line}"
    );
    // A write that cannot fit gets myveil's error, naming the column and the fix.
    let mut app = proxy.app(Some(&db.name)).await;
    let err = app
        .query_drop("INSERT INTO narrow VALUES (1, '123-45-6789')")
        .await
        .expect_err("too narrow");
    let mysql_async::Error::Server(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.code, 1406, "{}", e.message);
    assert!(
        e.message
            .contains("myveil: column narrow.ssn is too narrow")
            && e.message.contains("myveil migrate plan"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("123-45"), "{}", e.message);
    // Nothing reached the table, and the session goes on.
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM narrow")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    let one: Option<u64> = app.query_first("SELECT 1").await.expect("select");
    assert_eq!(one, Some(1));
    app.disconnect().await.ok();
    proxy.signal_stop();
    proxy.join().await;
    c.disconnect().await.ok();
    db.drop_now().await;
}
