//! SQL tokens end to end: issued on the admin API, used as a MySQL password by real clients
//! (mysql_async, the mariadb CLI) through two myveil instances sharing one backend store,
//! revoked (new logins stop at once, live sessions end on request); and the MySQL port's
//! login failure limits.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::{APP_PASSWORD, APP_USER, OTHER_PASSWORD, OTHER_USER, Proxy, Setup, TestDb};
use http_body_util::BodyExt;
use mysql_async::prelude::*;
use myveil::admin::users::{AdminRole, AdminStore, MIN_BCRYPT_COST};
use myveil::admin::{AdminState, Peer, router};
use myveil::limits::LimitClock;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn api(
    state: &Arc<AdminState>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(Peer(([127, 0, 0, 1], 9).into())));
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn error_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Queries until the session is gone (its token was revoked with kill_sessions).
async fn ended_within(c: &mut mysql_async::Conn, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if c.query_drop("SELECT 1").await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_tokens_log_in_and_revocation_is_shared_by_instances() {
    let store = TestDb::create("tokens").await;
    let shared_dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(shared_dir.path().join("policy")).expect("policy");
    let admins_file = shared_dir.path().join("admins.toml");
    let mut admins = AdminStore::load(&admins_file).expect("admins");
    admins
        .add(
            "ops",
            AdminRole::Operator,
            b"operator-password",
            MIN_BCRYPT_COST,
        )
        .expect("add");
    admins.save(&admins_file).expect("save");
    let extra = format!(
        "[protection]\npolicy_dir = \"{d}/policy\"\nkeys_dir = \"{d}/keys\"\ngenerate_missing_keys = true\n\
         [admin]\nusers_file = \"{d}/admins.toml\"\nstore_schema = \"{s}\"\ncache_ttl_secs = 0\n",
        d = shared_dir.path().display(),
        s = store.name
    );
    let setup = || Setup {
        listen: "allow_cleartext_on_loopback = true",
        extra: extra.clone(),
        ..Setup::default()
    };
    let a = Proxy::start_with(setup()).await;
    let b = Proxy::start_with(setup()).await;
    let admin = Arc::new(AdminState::new(a.shared.clone(), &LimitClock::default()).expect("admin"));
    let (ops, _) = admin
        .tokens
        .issue("ops", AdminRole::Operator)
        .expect("admin token");

    let (status, issued) = api(
        &admin,
        "POST",
        "/v1/tokens",
        &ops,
        Some(json!({ "user": "billing", "role": "app", "ttl_secs": 600 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().expect("token").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();

    let token_opts =
        |p: &Proxy, password: &str| p.opts("billing", password).enable_cleartext_plugin(true);
    let mut on_a = mysql_async::Conn::new(token_opts(&a, &token))
        .await
        .expect("token login through instance A");
    let mut on_b = mysql_async::Conn::new(token_opts(&b, &token))
        .await
        .expect("token login through instance B");
    let busy = mysql_async::Conn::new(token_opts(&a, &token))
        .await
        .expect("a second session through A");
    let n: Option<u32> = on_a.query_first("SELECT 41 + 1").await.expect("query");
    assert_eq!(n, Some(42));
    let n: Option<u32> = on_b.query_first("SELECT 42").await.expect("query");
    assert_eq!(n, Some(42));
    // A file user's password check is not disturbed.
    let mut app = a.app(None).await;
    app.query_drop("SELECT 1").await.expect("file user");
    app.disconnect().await.ok();

    // A wrong token, or the right token under another name, is an ordinary 1045.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('x') { 'y' } else { 'x' });
    let e = mysql_async::Conn::new(token_opts(&a, &forged))
        .await
        .expect_err("forged token");
    assert_eq!(error_code(&e), Some(1045), "{e}");
    let e = mysql_async::Conn::new(a.opts("someone-else", &token).enable_cleartext_plugin(true))
        .await
        .expect_err("another name");
    assert_eq!(error_code(&e), Some(1045), "{e}");

    // The mariadb CLI logs in with the token too (it follows the switch to clear text).
    if Command::new("mariadb").arg("--version").output().is_ok() {
        let out = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-P", &a.addr.port().to_string()])
            .args([
                "-u",
                "billing",
                &format!("-p{token}"),
                "-N",
                "-e",
                "SELECT 'cli-ok'",
            ])
            .output()
            .expect("mariadb CLI");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("cli-ok"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // And PyMySQL (it answers the switch to mysql_clear_password by itself).
    let pymysql = Command::new("python3")
        .args(["-c", "import pymysql"])
        .status()
        .is_ok_and(|s| s.success());
    if pymysql {
        let out = Command::new("python3")
            .args([
                "-c",
                "import pymysql, sys\n\
                 c = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user='billing', password=sys.argv[2])\n\
                 cur = c.cursor(); cur.execute('SELECT 6 * 7'); print('pymysql', cur.fetchone()[0])",
                &b.addr.port().to_string(),
                &token,
            ])
            .output()
            .expect("python3");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("pymysql 42"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The token store's schema is not reachable through the proxy.
    for sql in [
        format!("SELECT * FROM `{}`.sql_tokens", store.name),
        format!("DELETE FROM {}.revoked_jwt", store.name),
        format!("USE {}", store.name),
    ] {
        let e = on_a.query_drop(&sql).await.expect_err("store schema");
        assert_eq!(error_code(&e), Some(1044), "{sql}: {e}");
    }
    let e = mysql_async::Conn::new(
        a.opts(APP_USER, APP_PASSWORD)
            .db_name(Some(store.name.clone())),
    )
    .await
    .expect_err("connecting into the store schema");
    assert_eq!(error_code(&e), Some(1044), "{e}");

    // Revoke on A without ending sessions: new logins stop, live sessions go on.
    let (status, _) = api(&admin, "DELETE", &format!("/v1/tokens/{id}"), &ops, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let e = mysql_async::Conn::new(token_opts(&b, &token))
        .await
        .expect_err("revoked token on B");
    assert_eq!(error_code(&e), Some(1045), "{e}");
    on_b.query_drop("SELECT 1")
        .await
        .expect("B's session goes on");

    // Revoked again, now ending live sessions: A ends its own at once — even one in the
    // middle of a long query — and B when it syncs.
    let long = tokio::spawn(async move {
        let mut busy = busy;
        let started = Instant::now();
        let r = busy.query_drop("SELECT SLEEP(20)").await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = api(
        &admin,
        "DELETE",
        &format!("/v1/tokens/{id}?kill_sessions=true"),
        &ops,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (r, took) = long.await.expect("join");
    assert!(
        r.is_err() && took < Duration::from_secs(10),
        "the long query was cut off: {r:?} after {took:?}"
    );
    assert!(
        ended_within(&mut on_a, Duration::from_secs(5)).await,
        "the session on A ended"
    );
    assert!(
        ended_within(&mut on_b, Duration::from_secs(15)).await,
        "the session on B ended"
    );
    for (name, p) in [("A", &a), ("B", &b)] {
        let e = mysql_async::Conn::new(token_opts(p, &token))
            .await
            .expect_err("revoked token");
        assert_eq!(error_code(&e), Some(1045), "new logins on {name} stop: {e}");
    }
    if let Some(t) = &a.shared.tokens {
        t.close().await;
    }
    if let Some(t) = &b.shared.tokens {
        t.close().await;
    }
    drop((a, b));
    store.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_user_and_per_address() {
    let p = Proxy::start_with(Setup {
        listen: "auth_failures_per_minute_user = 3\nauth_failures_per_minute_ip = 1000",
        ..Setup::default()
    })
    .await;
    for _ in 0..4 {
        let e = mysql_async::Conn::new(p.opts(APP_USER, "wrong-password"))
            .await
            .expect_err("wrong password");
        assert_eq!(error_code(&e), Some(1045));
    }
    let e = mysql_async::Conn::new(p.app_opts())
        .await
        .expect_err("blocked even with the right password");
    assert_eq!(error_code(&e), Some(1226), "{e}");
    assert!(e.to_string().contains("failed logins"), "{e}");
    let mut other = mysql_async::Conn::new(p.opts(OTHER_USER, OTHER_PASSWORD))
        .await
        .expect("other users are not blocked");
    other.query_drop("SELECT 1").await.expect("query");
    other.disconnect().await.ok();
    drop(p);

    let p = Proxy::start_with(Setup {
        listen: "auth_failures_per_minute_user = 1000\nauth_failures_per_minute_ip = 2",
        ..Setup::default()
    })
    .await;
    for i in 0..3 {
        let e = mysql_async::Conn::new(p.opts(&format!("guess{i}"), "wrong-password"))
            .await
            .expect_err("unknown user");
        assert_eq!(error_code(&e), Some(1045));
    }
    let e = mysql_async::Conn::new(p.opts(APP_USER, APP_PASSWORD))
        .await
        .expect_err("the address is blocked");
    assert_eq!(error_code(&e), Some(1129), "{e}");
}
