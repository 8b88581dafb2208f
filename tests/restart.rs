//! The backend stops and starts again under load, in both modes. A MariaDB of the test's own
//! (its own data directory and port, `mariadb-install-db` + `mariadbd`) is restarted, so
//! the shared server and the tests running beside this one are not touched. Afterwards:
//! no session is wedged, no acknowledged write is lost, a client inside a transaction got
//! an error (never a silent retry), new sessions work, and an idle multiplexed session goes
//! on on a new connection.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proxy, Setup};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};

/// A MariaDB server of this test's own, killed and its data removed on drop.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start() -> Option<Server> {
        let dir = tempfile::tempdir().expect("tempdir");
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !install.is_ok_and(|s| s.success()) {
            eprintln!("mariadb-install-db is not available: the restart test cannot run here");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut s = Server {
            dir,
            port,
            child: None,
        };
        s.run();
        Some(s)
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg("--user=root")
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err.log").display()))
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-log-file-size=16M")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
    }

    /// Stops the server as `mariadb-admin shutdown` would (SIGTERM) and waits for it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    fn opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false)
            .into()
    }

    async fn ready(&self) -> Conn {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Conn::new(self.opts()).await {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "the test's MariaDB did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn restart_under_load(mode: &str) {
    let Some(mut server) = Server::start() else {
        return;
    };
    let mut root = server.ready().await;
    root.query_drop("CREATE DATABASE app").await.expect("db");
    root.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
        .await
        .expect("table");
    root.disconnect().await.ok();
    let proxy = Proxy::start_with(Setup {
        backend: Some(format!(
            "[backend]\naddress = \"127.0.0.1:{}\"\nmode = \"{mode}\"\nconnect_timeout_secs = 2\n[backend.accounts.main]\nuser = \"root\"",
            server.port
        )),
        ..Default::default()
    })
    .await;
    let opts = || Opts::from(proxy.app_opts().db_name(Some("app")));

    // Writers: autocommit inserts of their own ids, reconnecting after an error; every id
    // the server acknowledged is kept. A statement that takes over 15 s is a wedged session.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (opts, acknowledged, stop) = (opts(), acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            let mut errors = 0;
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let id = w * 1_000_000 + i;
                if conn.is_none() {
                    match tokio::time::timeout(Duration::from_secs(15), Conn::new(opts.clone()))
                        .await
                    {
                        Ok(Ok(c)) => conn = Some(c),
                        Ok(Err(_)) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(_) => panic!("a login through myveil hung"),
                    }
                }
                let c = conn.as_mut().expect("conn");
                let sql = format!("INSERT INTO t VALUES ({id}, {i})");
                match tokio::time::timeout(Duration::from_secs(15), c.query_drop(sql)).await {
                    Ok(Ok(())) => {
                        acknowledged.lock().expect("lock").insert(id);
                    }
                    Ok(Err(_)) => {
                        errors += 1;
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => panic!("a statement through myveil hung"),
                }
            }
            errors
        }));
    }
    // A client inside a transaction across the restart, and an idle one.
    let mut tx = Conn::new(opts()).await.expect("tx");
    tx.query_drop("BEGIN").await.expect("begin");
    tx.query_drop("INSERT INTO t VALUES (-1, 0)")
        .await
        .expect("insert in tx");
    let mut idle = Conn::new(opts()).await.expect("idle");
    idle.query_drop("SET time_zone = '+03:00'")
        .await
        .expect("tz");
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.run();
    drop(server.ready().await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The transaction is gone with the server: its client is told, on its next statement.
    let commit = tokio::time::timeout(Duration::from_secs(15), tx.query_drop("COMMIT"))
        .await
        .expect("the COMMIT hung");
    assert!(
        commit.is_err(),
        "a transaction across a restart must fail, not be retried"
    );

    // New sessions work as soon as the backend is back.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fresh = loop {
        match Conn::new(opts()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no new session after the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    fresh
        .query_drop("SELECT 1")
        .await
        .expect("a new session works");

    // The idle session: multiplexed, it goes on on a new connection with its state;
    // pinned, its connection died with the server and it gets an error.
    let r: Result<Option<String>, _> = tokio::time::timeout(
        Duration::from_secs(15),
        idle.query_first("SELECT @@time_zone"),
    )
    .await
    .expect("the idle session hung");
    if mode == "multiplexed" {
        assert_eq!(
            r.expect("the idle session goes on").as_deref(),
            Some("+03:00")
        );
    } else {
        assert!(
            r.is_err(),
            "a pinned session's connection died with the server"
        );
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut errors = 0;
    for w in writers {
        errors += tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("a writer wedged")
            .expect("writer");
    }
    assert!(errors > 0, "the restart was not seen by the writers");

    // No acknowledged write was lost, and the transaction's row is not there.
    let mut root = server.ready().await;
    let ids: Vec<i64> = root.query("SELECT id FROM app.t").await.expect("ids");
    let stored: BTreeSet<i64> = ids.into_iter().collect();
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(!acknowledged.is_empty());
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        !stored.contains(&-1),
        "the transaction's insert survived the restart"
    );
    root.disconnect().await.ok();
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_restart_under_load_in_pinned_mode() {
    restart_under_load("pinned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_restart_under_load_in_multiplexed_mode() {
    restart_under_load("multiplexed").await;
}
