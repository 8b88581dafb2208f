//! Other drivers through myveil: PyMySQL (client-side parameter interpolation,
//! CLIENT_FOUND_ROWS on by default, LOAD DATA LOCAL, multi-statements, callproc) must see
//! exactly what it sees against MariaDB directly.

mod common;

use std::process::Command;

use common::{Proxy, TestDb};

fn pymysql_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pymysql"])
        .status()
        .is_ok_and(|s| s.success())
}

fn run_session(port: u16, user: &str, password: &str, db: &str, csv: &str) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/drivers/pymysql_session.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            "127.0.0.1",
            &port.to_string(),
            user,
            password,
            db,
            csv,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pymysql session failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_sees_the_same_through_myveil() {
    if !pymysql_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyMySQL must be installed in CI"
        );
        eprintln!("PyMySQL not installed: skipping (pip install pymysql)");
        return;
    }
    let proxy = Proxy::start().await;
    let direct_db = TestDb::create("pyd").await;
    let proxy_db = TestDb::create("pyp").await;
    let csv = proxy.path("people.csv");
    let rows: String = (1..=200)
        .map(|i| format!("csv{i}@example.com,name {i}\n"))
        .collect();
    std::fs::write(&csv, rows).expect("csv");
    let csv = csv.display().to_string();
    let port = proxy.addr.port();
    let (dn, pn) = (direct_db.name.clone(), proxy_db.name.clone());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            run_session(3306, "root", "", &dn, &csv),
            run_session(port, common::APP_USER, common::APP_PASSWORD, &pn, &csv),
        )
    })
    .await
    .expect("join");
    assert!(a.contains("\"load data\""), "{a}");
    assert_eq!(
        b.replace(&proxy_db.name, "DB"),
        a.replace(&direct_db.name, "DB")
    );
    direct_db.drop_now().await;
    proxy_db.drop_now().await;
}
