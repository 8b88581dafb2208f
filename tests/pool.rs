//! The backend pool's limits: no backend connection before a client has logged in, at most
//! `max_backend_connections` per account (idle ones included), a bounded wait queue with a
//! timeout, and "Too many connections" (1040) for those it turns away. Each test logs in to
//! MariaDB as an account of its own, so the server's process list counts exactly this
//! proxy's connections.

mod common;

use std::time::{Duration, Instant};

use common::{BackendAccount as Account, Proxy, Setup, TestDb, raw};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

/// A proxy that logs in to the backend as `account`, at most two connections.
async fn proxy(account: &Account, queue: &str, listen: &'static str) -> Proxy {
    Proxy::start_with(Setup {
        listen,
        backend: Some(account.backend_toml(queue, "max_backend_connections = 2")),
        ..Default::default()
    })
    .await
}

/// Connects through the proxy, expecting a server error at login.
async fn refused(opts: Opts) -> mysql_async::ServerError {
    match Conn::new(opts).await {
        Err(mysql_async::Error::Server(e)) => e,
        Err(e) => panic!("expected a server error, got {e}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not in {text}"))
}

#[tokio::test]
async fn a_client_that_has_not_logged_in_holds_no_backend_connection() {
    let db = TestDb::create("pool_halfopen").await;
    let account = Account::create("halfopen", &db.name).await;
    let proxy = proxy(&account, "", "handshake_timeout_secs = 5").await;
    // The greeting the proxy learned at start went with a connection it did not keep.
    let deadline = Instant::now() + Duration::from_secs(5);
    while account.connections().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the greeting probe was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Twenty clients read the greeting and never answer it.
    let mut half_open = Vec::new();
    for _ in 0..20 {
        let mut c = raw::connect_tcp(proxy.addr).await;
        let greeting = c.read_packet(1 << 16).await.expect("greeting");
        assert_eq!(greeting.payload[0], 10, "a protocol-10 greeting");
        half_open.push(c);
    }
    // And twenty more send a login that fails.
    for _ in 0..5 {
        let (_, _, reply) = raw::hello(proxy.addr, common::APP_USER, "wrong", None, 0).await;
        assert_eq!(reply[0], 0xFF, "a wrong password is refused");
    }
    assert_eq!(
        account.connections().await,
        0,
        "clients that did not log in cost the backend connections"
    );

    // A client that logs in gets one, and the greeting told it the backend's version.
    let mut c = proxy.app(Some(&db.name)).await;
    let version: Option<String> = c.query_first("SELECT VERSION()").await.expect("version");
    let mut direct = common::direct(None).await;
    let direct_version: Option<String> = direct
        .query_first("SELECT VERSION()")
        .await
        .expect("direct version");
    assert_eq!(version, direct_version);
    assert_eq!(
        c.server_version(),
        direct.server_version(),
        "the greeting's version"
    );
    assert_eq!(account.connections().await, 1);
    c.disconnect().await.ok();
    direct.disconnect().await.ok();
    drop(half_open);
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test]
async fn an_account_holds_at_most_its_connections_and_the_rest_wait_or_get_1040() {
    let db = TestDb::create("pool_limit").await;
    let account = Account::create("limit", &db.name).await;
    let proxy = proxy(&account, "wait_queue = 1\nwait_timeout_ms = 400", "").await;
    let opts = || Opts::from(proxy.app_opts().db_name(Some(&db.name)));

    let mut a = Conn::new(opts()).await.expect("first");
    let mut b = Conn::new(opts()).await.expect("second");
    a.query_drop("SELECT 1").await.expect("a works");
    b.query_drop("SELECT 1").await.expect("b works");
    assert_eq!(account.connections().await, 2);

    // A third waits in the queue, a fourth finds the queue full and is refused at once.
    let third = tokio::spawn(refused(opts()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.shared.pool.waiting() == 0 {
        assert!(Instant::now() < deadline, "the third client never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = myveil::telemetry::metrics::METRICS.render();
    assert!(metric(&metrics, "myveil_backend_waiting_clients") >= 1.0);
    let started = Instant::now();
    let fourth = refused(opts()).await;
    assert_eq!(fourth.code, 1040, "{fourth:?}");
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "a full queue turns a client away without waiting"
    );
    let third = third.await.expect("join");
    assert_eq!(third.code, 1040, "{third:?}");
    assert_eq!(third.state, "08004");
    assert!(third.message.contains("Too many connections"), "{third:?}");
    assert_eq!(proxy.shared.pool.waiting(), 0);
    assert_eq!(account.connections().await, 2, "never more than the limit");

    // A client that waits gets the connection of one that leaves.
    let waiter = tokio::spawn({
        let opts = opts();
        async move {
            let mut c = Conn::new(opts).await.expect("the waiter gets in");
            let one: Option<u32> = c.query_first("SELECT 1").await.expect("query");
            c.disconnect().await.ok();
            one
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.shared.pool.waiting() == 0 {
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.disconnect().await.expect("a leaves");
    assert_eq!(waiter.await.expect("join"), Some(1));
    assert_eq!(account.connections().await, 2);

    // Idle pooled connections count too: with every client gone, no more than two stay,
    // and new clients reuse them.
    b.disconnect().await.ok();
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(Conn::new(opts()).await.expect("reuse"));
    }
    assert_eq!(account.connections().await, 2);
    assert_eq!(proxy.shared.pool.in_use("main"), Some(2));
    for c in clients {
        c.disconnect().await.ok();
    }
    drop(proxy);
    db.drop_now().await;
}

#[test]
fn a_limit_of_zero_is_refused() {
    let toml = r#"
        [listen]
        address = "127.0.0.1:0"
        [backend]
        address = "127.0.0.1:3306"
        [backend.accounts.main]
        user = "root"
        max_backend_connections = 0
        [roles.app]
        backend_account = "main"
        [users]
        file = "users.toml"
    "#;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = myveil::config::Config::from_toml(
        toml,
        &[],
        &dir.path().join("myveil.toml"),
        dir.path().to_owned(),
    )
    .expect_err("refused");
    assert!(
        e.to_string()
            .contains("backend.accounts.main.max_backend_connections must be at least 1"),
        "{e}"
    );
}
