//! The `mariadb` command-line client through myveil: a scripted session (USE, SHOW,
//! PREPARE/EXECUTE, multi-statements, procedures, LOAD DATA LOCAL INFILE, errors, 4-byte
//! UTF-8) must print exactly what it prints against MariaDB directly, column metadata included.

mod common;

use std::process::{Command, Stdio};

use common::{Proxy, TestDb};
use mysql_async::prelude::Queryable;

fn mariadb(port: u16, user: &str, password: &str, db: &str, script: &str) -> String {
    use std::io::Write;
    let mut cmd = Command::new("mariadb");
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    let mut child = cmd
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{user}"),
            "--local-infile=1",
            "--column-type-info",
            "--show-warnings",
            "--force",
            "-vvv",
            "--default-character-set=utf8mb4",
            db,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mariadb client is installed (apt-get install mariadb-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let out = child.wait_with_output().expect("mariadb ran");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str("\n--- stderr ---\n");
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// Drops the timings the client prints, e.g. "(0.001 sec)".
fn without_timings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(" sec)") {
        let head = &rest[..at];
        match head.rfind('(') {
            Some(open)
                if head[open + 1..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.') =>
            {
                out.push_str(&head[..open]);
            }
            _ => out.push_str(&rest[..at + 5]),
        }
        rest = &rest[at + 5..];
    }
    out.push_str(rest);
    out
}

fn script(csv: &str) -> String {
    format!(
        r#"
CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50), note TEXT) CHARACTER SET utf8mb4;
LOAD DATA LOCAL INFILE '{csv}' INTO TABLE t FIELDS TERMINATED BY ',' LINES TERMINATED BY '\n';
SHOW TABLES;
SHOW CREATE TABLE t;
SHOW COLUMNS FROM t;
SELECT COUNT(*), SUM(id), MAX(name) FROM t;
SELECT * FROM t WHERE id <= 3 ORDER BY id;
PREPARE s FROM 'SELECT name, note FROM t WHERE id = ?';
SET @i = 2;
EXECUTE s USING @i;
SET @i = 700;
EXECUTE s USING @i;
DEALLOCATE PREPARE s;
DELIMITER //
SELECT COUNT(*) FROM t; UPDATE t SET note = 'changed' WHERE id = 1; SELECT note FROM t WHERE id = 1//
CREATE PROCEDURE p(IN k INT) BEGIN SELECT name FROM t WHERE id = k; SELECT COUNT(*) AS n FROM t; END//
DELIMITER ;
CALL p(5);
INSERT INTO t VALUES (1, 'dup', NULL);
SELECT * FROM nosuch;
SELECT CAST('12abc' AS INT) AS warned;
INSERT INTO t VALUES (5000, 'ünïcödé 🎉', 'four-byte');
SELECT name, HEX(name) FROM t WHERE id = 5000;
USE information_schema;
SELECT DATABASE() = 'information_schema';
BEGIN;
DELETE FROM {{db}}.t WHERE id > 10;
ROLLBACK;
SELECT COUNT(*) FROM {{db}}.t;
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_cli_session_prints_the_same_through_myveil() {
    let proxy = Proxy::start().await;
    // Same-length names so column metadata lengths match.
    let direct_db = TestDb::create("clid").await;
    let proxy_db = TestDb::create("clip").await;
    let csv = proxy.path("rows.csv");
    let rows: String = (1..=1000)
        .map(|i| format!("{i},name {i},note for row {i}\n"))
        .collect();
    std::fs::write(&csv, rows).expect("write csv");
    let csv = csv.display().to_string();
    let port = proxy.addr.port();

    let (direct_name, proxy_name) = (direct_db.name.clone(), proxy_db.name.clone());
    let direct_script = script(&csv).replace("{db}", &direct_name);
    let proxy_script = script(&csv).replace("{db}", &proxy_name);
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            mariadb(3306, "root", "", &direct_name, &direct_script),
            mariadb(
                port,
                common::APP_USER,
                common::APP_PASSWORD,
                &proxy_name,
                &proxy_script,
            ),
        )
    })
    .await
    .expect("cli runs");
    let a = without_timings(&a).replace(&direct_db.name, "DB");
    if std::env::var_os("MYVEIL_SHOW_CLI").is_some() {
        eprintln!("{a}");
    }
    let b = without_timings(&b).replace(&proxy_db.name, "DB");
    assert!(
        a.contains("1000 rows affected") || a.contains("Records: 1000"),
        "LOAD DATA ran: {a}"
    );
    assert!(a.contains("ünïcödé 🎉"));
    if a != b {
        for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
            assert_eq!(x, y, "first difference at line {i}");
        }
    }
    assert_eq!(a, b);

    // The rows really are in the database.
    let mut c = common::direct(Some(&proxy_db.name)).await;
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(n, 1001);
    c.disconnect().await.ok();
    direct_db.drop_now().await;
    proxy_db.drop_now().await;
}

/// The CLI's Ctrl-C opens a second connection and sends `KILL QUERY <greeting id>`: through
/// myveil that must stop this client's query, not another session's.
#[tokio::test]
async fn ctrl_c_in_the_cli_kills_its_own_query() {
    let proxy = Proxy::start().await;
    // A bystander whose query must survive.
    let mut bystander = proxy.app(None).await;
    let port = proxy.addr.port();
    let cli = tokio::task::spawn_blocking(move || {
        let child = Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                &format!("-P{port}"),
                &format!("-u{}", common::APP_USER),
                &format!("-p{}", common::APP_PASSWORD),
                "-e",
                "SELECT SLEEP(20)",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mariadb client is installed");
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let sent = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill -INT");
        assert!(sent.success());
        child.wait_with_output().expect("cli ended")
    });
    let (out, slept) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(15), cli),
        bystander.query_first::<i64, _>("SELECT SLEEP(3)")
    );
    let out = out
        .expect("the CLI ended soon after Ctrl-C")
        .expect("joined");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1317") || stderr.contains("query killed"),
        "{stderr}"
    );
    assert_eq!(
        slept.expect("the bystander's query was not touched"),
        Some(0)
    );
    bystander.disconnect().await.ok();
}
