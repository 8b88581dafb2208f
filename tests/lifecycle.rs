//! Lifecycle: graceful drain on shutdown (idle sessions close, a transaction may finish),
//! idle timeout, and a short sysbench run in both prepared-statement modes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Proxy, Setup, TestDb};
use mysql_async::prelude::*;

/// Held by tests that change a global the pool reacts to (max_allowed_packet) and by tests
/// that need a pooled connection reused: they must not overlap.
static GLOBALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn shutdown_drains_idle_sessions_and_lets_transactions_finish() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("drain").await;
    let mut idle = proxy.app(Some(&db.name)).await;
    let mut busy = proxy.app(Some(&db.name)).await;
    busy.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    busy.query_drop("BEGIN").await.expect("begin");
    busy.query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    let addr = proxy.addr;
    proxy.signal_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );
    assert!(
        idle.query_drop("SELECT 1").await.is_err(),
        "idle session closed"
    );
    busy.query_drop("INSERT INTO t VALUES (2)")
        .await
        .expect("transaction goes on");
    busy.query_drop("COMMIT").await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), proxy.join())
        .await
        .expect("drain finishes");
    assert!(
        busy.query_drop("SELECT 1").await.is_err(),
        "closed after its transaction"
    );

    let n: i64 = common::direct(Some(&db.name))
        .await
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(n, 2, "the committed transaction is complete");
    db.drop_now().await;
}

#[tokio::test]
async fn idle_sessions_time_out() {
    let proxy = Proxy::start_with(Setup {
        listen: "idle_timeout_secs = 1",
        ..Default::default()
    })
    .await;
    let mut c = proxy.app(None).await;
    c.query_drop("SELECT 1").await.expect("works");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(
        c.query_drop("SELECT 1").await.is_err(),
        "closed after the idle timeout"
    );
}

fn sysbench(port: u16, db: &str, args: &[&str]) -> String {
    let out = Command::new("sysbench")
        .args([
            "oltp_read_write",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
        ])
        .arg(format!("--mysql-user={}", common::APP_USER))
        .arg(format!("--mysql-password={}", common::APP_PASSWORD))
        .arg(format!("--mysql-db={db}"))
        .args(["--tables=2", "--table-size=2000", "--threads=4"])
        .args(args)
        .output()
        .expect("sysbench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sysbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_in_both_ps_modes() {
    if Command::new("sysbench").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sysbench must be installed in CI"
        );
        eprintln!("sysbench not installed: skipping (apt-get install sysbench)");
        return;
    }
    let proxy = Proxy::start().await;
    let db = TestDb::create("sysbench").await;
    let port = proxy.addr.port();
    let name = db.name.clone();
    tokio::task::spawn_blocking(move || {
        sysbench(port, &name, &["prepare"]);
        for mode in ["auto", "disable"] {
            let out = sysbench(
                port,
                &name,
                &["--time=4", &format!("--db-ps-mode={mode}"), "run"],
            );
            let transactions: u64 = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("transactions:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .expect("transactions line");
            assert!(transactions > 0, "ps mode {mode}: no transactions\n{out}");
            assert!(!out.contains("FATAL"), "ps mode {mode}:\n{out}");
        }
    })
    .await
    .expect("sysbench thread");
    db.drop_now().await;
}

#[tokio::test]
async fn a_clients_session_state_does_not_outlive_it_in_the_pool() {
    let _globals = GLOBALS.lock().await;
    let proxy = Proxy::start().await;
    let db = TestDb::create("pool").await;
    let lock = format!("myveil_t_lock_{}", std::process::id());
    let mut c = proxy.app(Some(&db.name)).await;
    let got: Option<i64> = c
        .query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
        .await
        .expect("lock");
    assert_eq!(got, Some(1));
    c.query_drop("SET @left_behind = 42").await.expect("var");
    c.query_drop("CREATE TEMPORARY TABLE myveil_t_left (x INT)")
        .await
        .expect("temp");
    c.query_drop("PREPARE myveil_t_stmt FROM 'SELECT 1'")
        .await
        .expect("prepare");
    let _binary = c.prep("SELECT ?").await.expect("binary prepare");
    // The backend thread (CONNECTION_ID() is myveil's own id for the session).
    let first: Option<u64> = c
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .expect("id");
    c.disconnect().await.expect("disconnect");

    // The lock is released once the client has gone, as a direct disconnect would do,
    // though its backend connection stays open in the pool.
    let mut root = common::direct(None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holder: Option<Option<u64>> = root
            .query_first(format!("SELECT IS_USED_LOCK('{lock}')"))
            .await
            .expect("is used");
        if holder.flatten().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET_LOCK still held by the pooled connection of a client that left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alive: Option<u64> = root
        .query_first(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = {}",
            first.expect("an id")
        ))
        .await
        .expect("processlist");
    assert!(alive.is_some(), "the backend connection was kept for reuse");

    // The next client gets the connection without any of it.
    let mut next = proxy.app(Some(&db.name)).await;
    let thread: Option<u64> = next
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .expect("thread");
    assert_eq!(thread, first, "the same backend connection, reused");
    let e = next
        .query_drop("EXECUTE myveil_t_stmt")
        .await
        .expect_err("the prepared statement went with its client");
    assert!(
        matches!(e, mysql_async::Error::Server(ref s) if s.code == 1243),
        "{e:?}"
    );
    let v: Option<Option<i64>> = next.query_first("SELECT @left_behind").await.expect("var");
    assert_eq!(v.flatten(), None);
    assert!(
        next.query_drop("SELECT * FROM myveil_t_left")
            .await
            .is_err(),
        "the temporary table went with its client"
    );
    next.disconnect().await.ok();
    root.disconnect().await.ok();
    db.drop_now().await;
}

/// A backend connection keeps the packet limit of its first login; after `SET GLOBAL
/// max_allowed_packet` a pooled one would refuse what a direct connection now takes (sqlx's
/// split-packet test). Such a connection is not handed out again.
#[tokio::test]
async fn a_pooled_connection_from_before_a_max_allowed_packet_change_is_not_reused() {
    let _globals = GLOBALS.lock().await;
    async fn thread(c: &mut mysql_async::Conn) -> (u64, u64) {
        c.query_first("SELECT @@pseudo_thread_id, @@max_allowed_packet")
            .await
            .expect("q")
            .expect("row")
    }
    let proxy = Proxy::start().await;
    let mut root = common::direct(None).await;
    let before: u64 = root
        .query_first("SELECT @@global.max_allowed_packet")
        .await
        .expect("q")
        .expect("row");
    let mut c = proxy.app(None).await;
    let (first, _) = thread(&mut c).await;
    c.disconnect().await.expect("disconnect");
    let mut c = proxy.app(None).await;
    let (again, _) = thread(&mut c).await;
    assert_eq!(again, first, "reused while nothing changed");
    c.disconnect().await.expect("disconnect");
    // Moved by 1 KiB (up, unless it is at the server's 1 GiB maximum): other tests and
    // clients run beside this one, and a KiB either way is nothing to them.
    let moved = if before + 1024 > 1 << 30 {
        before - 1024
    } else {
        before + 1024
    };
    root.query_drop(format!("SET GLOBAL max_allowed_packet = {moved}"))
        .await
        .expect("change");
    let mut c = proxy.app(None).await;
    let (fresh, limit) = thread(&mut c).await;
    assert_ne!(
        fresh, first,
        "the connection from before the change was replaced"
    );
    assert_eq!(limit, moved, "the new connection has the new limit");
    c.disconnect().await.ok();
    root.query_drop(format!("SET GLOBAL max_allowed_packet = {before}"))
        .await
        .expect("restore");
    root.disconnect().await.ok();
}
