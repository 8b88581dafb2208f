//! mariadb-dump through myveil: a role that reads ciphertext dumps a protected database
//! (the dump holds envelopes, never plaintext), the same role restores it through myveil
//! into another database (cells kept as they were, blind indexes recomputed from them), and
//! the restored rows are identical at rest and read back as plaintext. Plus the statements
//! dumps and ORMs send that the word-scanning guard used to refuse.

mod common;

use std::process::Command;

use base64::Engine;
use common::{Proxy, Setup, TestDb};
use mysql_async::prelude::*;

const CANARY: &str = "CANARY-dump-5c1e@example.com";
const SSN: &str = "987-65-4321";

const POLICY: &str = r#"
[[column]]
table = "patients"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext", dumper = "ciphertext" }
write = ["dumper"]

[[column]]
table = "patients"
column = "name"
type = "varchar(60)"
roles = { app = "plaintext", dumper = "ciphertext" }
write = ["dumper"]

[[column]]
table = "patients"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = { app = "plaintext", dumper = "ciphertext" }
write = ["dumper"]
"#;

const DUMPER: &str = "dumper";
const DUMPER_PASSWORD: &str = "dumper-password-1";

async fn start() -> (Proxy, tempfile::TempDir) {
    let (dir, protection) = common::protection(POLICY);
    let proxy = Proxy::start_with(Setup {
        extra: protection,
        users: vec![(DUMPER, "dumper", DUMPER_PASSWORD)],
        ..Default::default()
    })
    .await;
    (proxy, dir)
}

/// Every row of the database's tables, as hex, read directly.
async fn at_rest(db: &str) -> Vec<String> {
    let mut d = common::direct(Some(db)).await;
    let mut out = Vec::new();
    for q in [
        "SELECT id, HEX(email), HEX(email_bidx), HEX(name), ssn, note FROM patients ORDER BY id",
        "SELECT id, email, note FROM visits ORDER BY id",
    ] {
        let rows: Vec<mysql_async::Row> = d.query(q).await.expect("read directly");
        out.extend(rows.into_iter().map(|r| format!("{r:?}")));
    }
    d.disconnect().await.ok();
    out
}

fn run(cmd: &mut Command) -> (Vec<u8>, String) {
    let out = cmd.output().expect("run client");
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_through_myveil_restores_identical_rows_and_never_carries_plaintext() {
    let (proxy, _dir) = start().await;
    let source = TestDb::create("dumpsrc").await;
    let target = TestDb::create("dumpdst").await;
    for db in [&source.name, &target.name] {
        let mut d = common::direct(Some(db)).await;
        d.query_drop(
            "CREATE TABLE patients (id INT PRIMARY KEY, email VARBINARY(255), email_bidx BINARY(32), \
             name VARBINARY(255), ssn VARCHAR(255), note VARCHAR(50), UNIQUE KEY (email_bidx))",
        )
        .await
        .expect("create");
        // An unprotected table with protected-looking column names.
        d.query_drop("CREATE TABLE visits (id INT PRIMARY KEY, email VARCHAR(100), note TEXT)")
            .await
            .expect("create");
        d.disconnect().await.ok();
    }
    proxy.shared.refresh_schema().await.expect("refresh");
    let mut app = proxy.app(Some(&source.name)).await;
    app.query_drop(format!(
        "INSERT INTO patients (id, email, name, ssn, note) VALUES \
         (1, '{CANARY}', 'Zoë O''Brien \\\\ ok', '{SSN}', 'first'), \
         (2, 'b@example.com', NULL, NULL, 'second'), \
         (3, 'c@example.com', 'Ann', '111-22-3333', NULL)"
    ))
    .await
    .expect("insert through myveil");
    app.query_drop("INSERT INTO visits VALUES (1, 'visitor@example.com', 'plain on purpose')")
        .await
        .expect("unprotected table");
    let port = proxy.addr.port().to_string();
    let dumped = {
        let (src, port) = (source.name.clone(), port.clone());
        tokio::task::spawn_blocking(move || {
            run(Command::new("mariadb-dump").args([
                "-h127.0.0.1",
                &format!("-P{port}"),
                &format!("-u{DUMPER}"),
                &format!("-p{DUMPER_PASSWORD}"),
                "--protocol=tcp",
                &src,
            ]))
        })
        .await
        .expect("join")
    };
    let (dump, stderr) = dumped;
    let text = String::from_utf8_lossy(&dump).into_owned();
    assert!(
        text.contains("INSERT INTO `patients`"),
        "dump failed: {stderr}\n{text}"
    );
    // The dump holds envelopes only: no plaintext, raw, hex or base64.
    for secret in [CANARY, SSN, "Zoë"] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        for form in [
            secret.to_owned(),
            hex::encode(secret),
            hex::encode_upper(secret),
            b64,
        ] {
            assert!(
                !dump.windows(form.len()).any(|w| w == form.as_bytes()),
                "the dump carries {secret} as {form}"
            );
        }
    }
    assert!(text.contains("TVYB"), "base64 envelopes are in the dump");
    // Restored through myveil by the same role, into another database.
    let restored = {
        let (dst, port) = (target.name.clone(), port.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new("mariadb")
                .args([
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    &format!("-u{DUMPER}"),
                    &format!("-p{DUMPER_PASSWORD}"),
                    "--protocol=tcp",
                    &dst,
                ])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("mariadb");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&dump)
                .expect("feed the dump");
            child.wait_with_output().expect("restore")
        })
        .await
        .expect("join")
    };
    assert!(
        restored.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(
        at_rest(&source.name).await,
        at_rest(&target.name).await,
        "identical rows at rest"
    );
    let mut back = proxy.app(Some(&target.name)).await;
    let row: Option<(i32, String, String, String)> = back
        .exec_first(
            "SELECT id, email, name, ssn FROM patients WHERE email = ?",
            (CANARY,),
        )
        .await
        .expect("search the restored table");
    assert_eq!(
        row,
        Some((
            1,
            CANARY.to_owned(),
            "Zoë O'Brien \\ ok".to_owned(),
            SSN.to_owned()
        ))
    );
    back.disconnect().await.ok();
    app.disconnect().await.ok();
    source.drop_now().await;
    target.drop_now().await;
}

#[tokio::test]
async fn statements_dumps_and_orms_send_work_on_protected_tables() {
    let (proxy, _dir) = start().await;
    let db = TestDb::create("dumpstmts").await;
    let mut d = common::direct(Some(&db.name)).await;
    d.query_drop(
        "CREATE TABLE patients (id INT PRIMARY KEY, email VARBINARY(255), email_bidx BINARY(32), \
         name VARBINARY(255), ssn VARCHAR(255), note VARCHAR(50))",
    )
    .await
    .expect("create");
    d.disconnect().await.ok();
    proxy.shared.refresh_schema().await.expect("refresh");
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop("INSERT INTO patients (id, email, note) VALUES (1, 'a@b.c', 'x')")
        .await
        .expect("insert");
    for sql in [
        "EXPLAIN SELECT id FROM patients WHERE email = 'a@b.c'",
        "EXPLAIN patients",
        "DESCRIBE patients",
        "ANALYZE TABLE patients",
        "CHECK TABLE patients",
        "SELECT id, email FROM patients WHERE id = 1 LOCK IN SHARE MODE",
        "SELECT id, email FROM patients WHERE id = 1 FOR UPDATE",
        "SELECT /*!40001 SQL_NO_CACHE */ * FROM patients",
        "SELECT SQL_CALC_FOUND_ROWS id FROM patients LIMIT 1",
        "LOCK TABLES patients READ /*!32311 LOCAL */",
        "UNLOCK TABLES",
        "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */",
        "SHOW CREATE TABLE patients",
        "SHOW FULL COLUMNS FROM patients",
        "/*!40000 ALTER TABLE patients DISABLE KEYS */",
        "/*!40000 ALTER TABLE patients ENABLE KEYS */",
    ] {
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let email: Option<String> = c
        .query_first("SELECT /*!40001 SQL_NO_CACHE */ email FROM patients WHERE id = 1")
        .await
        .expect("read");
    assert_eq!(email.as_deref(), Some("a@b.c"));
    c.disconnect().await.ok();
    db.drop_now().await;
}
