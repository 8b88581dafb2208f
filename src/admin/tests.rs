//! Router tests without a socket (`oneshot`), against a real token store on the local
//! MariaDB (a schema per test, dropped at the end).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use mysql_async::prelude::Queryable;
use serde_json::json;
use tower::ServiceExt;

use super::token::{Claims, Tokens, now_secs};
use super::users::{self, AdminRole, AdminStore};
use super::{AdminState, Peer, ROUTES, router};
use crate::config::Config;
use crate::frontend::Shared;
use crate::limits::LimitClock;

const PASSWORD: &str = "correct horse battery";

struct Fixture {
    state: Arc<AdminState>,
    clock: LimitClock,
    dir: Arc<tempfile::TempDir>,
    schema: String,
}

fn backend() -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some("root"))
        .prefer_socket(false)
}

impl Fixture {
    /// A fresh directory with admins root (admin), ops (operator) and audit (auditor).
    fn new(limits: (u32, u32, u32)) -> Fixture {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let schema = format!(
            "myveil_t_admin_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut admins = AdminStore::load(&dir.path().join("admins.toml")).expect("empty");
        for (name, role) in [
            ("root", AdminRole::Admin),
            ("ops", AdminRole::Operator),
            ("audit", AdminRole::Auditor),
        ] {
            admins
                .add(name, role, PASSWORD.as_bytes(), users::MIN_BCRYPT_COST)
                .expect("add");
        }
        admins.save(&dir.path().join("admins.toml")).expect("save");
        std::fs::create_dir_all(dir.path().join("policy")).expect("policy dir");
        std::fs::write(
            dir.path().join("policy/p.toml"),
            "[[column]]\ntable = \"people\"\ncolumn = \"ssn\"\ntype = \"varchar(11)\"\nblind_index = \"ssn_bidx\"\nroles = { app = \"plaintext\", support = { mask = \"last-four\" } }\n",
        )
        .expect("policy");
        Self::open(Arc::new(dir), schema, limits)
    }

    /// `new`, with its own policy (a job that rewrites cells must reach only its own tables).
    fn with_policy(policy: &str) -> Fixture {
        let f = Self::new((100, 100, 1000));
        std::fs::write(f.dir.path().join("policy/p.toml"), policy).expect("policy");
        Self::open(f.dir.clone(), f.schema.clone(), (100, 100, 1000))
    }

    /// The same directory and store as `self`, as a restarted (or second) instance sees it.
    fn restart(&self) -> Fixture {
        Self::open(self.dir.clone(), self.schema.clone(), (100, 100, 1000))
    }

    fn open(
        dir: Arc<tempfile::TempDir>,
        schema: String,
        (ip, user, api): (u32, u32, u32),
    ) -> Fixture {
        let text = format!(
            r#"
[listen]
address = "127.0.0.1:0"
[backend]
address = "127.0.0.1:3306"
[backend.accounts.main]
user = "root"
[roles.app]
backend_account = "main"
[roles.support]
backend_account = "main"
[users]
file = "users.toml"
bcrypt_cost = 4
[protection]
policy_dir = "policy"
keys_dir = "keys"
generate_missing_keys = true
[admin]
users_file = "admins.toml"
store_schema = "{schema}"
cache_ttl_secs = 0
logins_per_minute_ip = {ip}
logins_per_minute_user = {user}
api_requests_per_minute = {api}
"#
        );
        let config = Config::from_toml(
            &text,
            &[],
            &dir.path().join("myveil.toml"),
            dir.path().to_owned(),
        )
        .expect("config");
        let shared = Arc::new(Shared::new(config).expect("shared"));
        let clock = LimitClock::fake();
        let state = Arc::new(AdminState::new(shared, &clock).expect("state"));
        Fixture {
            state,
            clock,
            dir,
            schema,
        }
    }

    fn token(&self, name: &str, role: AdminRole) -> String {
        self.state.tokens.issue(name, role).expect("issue").0
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        call(&self.state, method, path, token, body, [10, 0, 0, 1]).await
    }

    async fn drop_schema(self) {
        if let Some(t) = &self.state.shared.tokens {
            t.close().await;
        }
        let mut c = mysql_async::Conn::new(backend()).await.expect("backend");
        c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.schema))
            .await
            .expect("drop");
        c.disconnect().await.ok();
    }
}

async fn call(
    state: &Arc<AdminState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    ip: [u8; 4],
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(Peer(SocketAddr::from((ip, 4000)))));
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn login_as(
    state: &Arc<AdminState>,
    user: &str,
    password: &str,
    ip: [u8; 4],
) -> (StatusCode, serde_json::Value) {
    call(
        state,
        "POST",
        "/v1/login",
        None,
        Some(json!({ "user": user, "password": password })),
        ip,
    )
    .await
}

#[tokio::test]
async fn every_route_allows_exactly_its_roles() {
    let f = Fixture::new((100, 100, 1000));
    for (method, path, roles) in ROUTES {
        let concrete = path
            .replace("{name}", "nobody")
            .replace("{id}", "0000000000000000");
        if roles.is_empty() {
            let (status, body) = f.call(method, &concrete, None, None).await;
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                    || *path == "/v1/login",
                "{method} {path} is open: {status} {body}"
            );
            continue;
        }
        let (status, _) = f.call(method, &concrete, None, Some(json!({}))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        for (name, role) in [
            ("root", AdminRole::Admin),
            ("ops", AdminRole::Operator),
            ("audit", AdminRole::Auditor),
        ] {
            let token = f.token(name, role);
            let (status, body) = f
                .call(method, &concrete, Some(&token), Some(json!({})))
                .await;
            if roles.contains(&role) {
                assert!(
                    !matches!(
                        status,
                        StatusCode::UNAUTHORIZED
                            | StatusCode::FORBIDDEN
                            | StatusCode::TOO_MANY_REQUESTS
                    ),
                    "{method} {path} as {}: {status} {body}",
                    role.name()
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {}: {body}",
                    role.name()
                );
            }
        }
    }
    f.drop_schema().await;
}

#[tokio::test]
async fn openapi_documents_every_route_and_its_roles() {
    let f = Fixture::new((100, 100, 1000));
    let (status, doc) = f.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            documented += 1;
            let method = method.to_ascii_uppercase();
            let route = ROUTES
                .iter()
                .find(|(m, p, _)| *m == method && p == path)
                .unwrap_or_else(|| panic!("{method} {path} is documented but not routed"));
            let roles: Vec<&str> = op["x-myveil-roles"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
                .unwrap_or_default();
            let want: Vec<&str> = route.2.iter().map(|r| r.name()).collect();
            assert_eq!(roles, want, "{method} {path}");
        }
    }
    assert_eq!(documented, ROUTES.len(), "every route is documented");
    f.drop_schema().await;
}

#[tokio::test]
async fn login_whoami_logout_and_revocation_survives_restart() {
    let f = Fixture::new((100, 100, 1000));
    let (status, body) = login_as(&f.state, "ops", PASSWORD, [10, 0, 0, 1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let other = f.token("ops", AdminRole::Operator);
    let (status, me) = f.call("GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("operator"))
    );
    let (status, _) = f.call("POST", "/v1/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call("GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");

    let again = f.restart();
    let (status, _) = again.call("GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "still revoked after a restart"
    );
    let (status, _) = again.call("GET", "/v1/whoami", Some(&other), None).await;
    assert_eq!(status, StatusCode::OK, "other tokens are untouched");
    drop(again);
    f.drop_schema().await;
}

#[tokio::test]
async fn unknown_user_wrong_password_and_long_password() {
    let f = Fixture::new((100, 100, 1000));
    let wrong = login_as(&f.state, "root", "not the password!", [10, 0, 0, 2]).await;
    let unknown = login_as(&f.state, "nobody", "not the password!", [10, 0, 0, 2]).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    let long = login_as(&f.state, "root", &"x".repeat(73), [10, 0, 0, 2]).await;
    assert_eq!(
        long.0,
        StatusCode::BAD_REQUEST,
        "over 72 bytes is refused, not truncated"
    );
    let (status, _) = f
        .call(
            "POST",
            "/v1/admins",
            Some(&f.token("root", AdminRole::Admin)),
            Some(json!({ "name": "x", "role": "auditor", "password": "y".repeat(73) })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    f.drop_schema().await;
}

#[tokio::test]
async fn logins_are_limited_per_ip_and_per_user_on_a_fake_clock() {
    let f = Fixture::new((3, 2, 1000));
    for i in 0..3 {
        let (status, _) = login_as(
            &f.state,
            &format!("guess{i}"),
            "wrong password",
            [10, 0, 0, 3],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login_as(&f.state, "guess9", "wrong password", [10, 0, 0, 3]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "per IP");
    for ip in [[10, 0, 1, 1], [10, 0, 1, 2]] {
        let (status, _) = login_as(&f.state, "root", "wrong password", ip).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login_as(&f.state, "root", PASSWORD, [10, 0, 1, 3]).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "per user, from any IP"
    );
    // Time moves on: one attempt per 30 s (2 a minute) comes back for the user.
    f.clock.advance(Duration::from_secs(31));
    let (status, _) = login_as(&f.state, "root", PASSWORD, [10, 0, 1, 3]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "allowed again after the quota refills"
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn api_calls_are_limited_per_token() {
    let f = Fixture::new((100, 100, 3));
    let a = f.token("audit", AdminRole::Auditor);
    let b = f.token("audit", AdminRole::Auditor);
    for _ in 0..3 {
        assert_eq!(
            f.call("GET", "/v1/whoami", Some(&a), None).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        f.call("GET", "/v1/whoami", Some(&a), None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        f.call("GET", "/v1/whoami", Some(&b), None).await.0,
        StatusCode::OK,
        "per token"
    );
    f.clock.advance(Duration::from_secs(21));
    assert_eq!(
        f.call("GET", "/v1/whoami", Some(&a), None).await.0,
        StatusCode::OK
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn totp_is_required_once_enrolled() {
    let f = Fixture::new((100, 100, 1000));
    let root = f.token("root", AdminRole::Admin);
    let (status, body) = f
        .call("POST", "/v1/admins/ops/totp", Some(&root), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(
        body["otpauth_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/"))
    );
    let without = login_as(&f.state, "ops", PASSWORD, [10, 0, 2, 1]).await;
    let wrong_password = login_as(&f.state, "ops", "wrong password!", [10, 0, 2, 1]).await;
    assert_eq!(
        without, wrong_password,
        "a missing code looks like a wrong password"
    );
    assert_eq!(without.0, StatusCode::UNAUTHORIZED);
    let code = super::totp::code(&secret, now_secs()).expect("code");
    let wrong_code = format!(
        "{:06}",
        (code.parse::<u32>().expect("digits") + 1) % 1_000_000
    );
    let login = |totp: String| {
        call(
            &f.state,
            "POST",
            "/v1/login",
            None,
            Some(json!({ "user": "ops", "password": PASSWORD, "totp": totp })),
            [10, 0, 2, 1],
        )
    };
    assert_eq!(login(wrong_code).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(code.clone()).await.0, StatusCode::OK);
    let again = f.restart();
    let (status, _) = call(
        &again.state,
        "POST",
        "/v1/login",
        None,
        Some(json!({ "user": "ops", "password": PASSWORD, "totp": code.clone() })),
        [10, 0, 2, 9],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "used once on any instance"
    );
    drop(again);
    assert_eq!(
        login(code).await.0,
        StatusCode::UNAUTHORIZED,
        "a code works once"
    );
    let (status, list) = f.call("GET", "/v1/admins", Some(&root), None).await;
    assert_eq!(status, StatusCode::OK);
    let ops = list["admins"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "ops"))
        .expect("ops");
    assert_eq!(ops["totp"], true);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once only"
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn admins_users_policy_status_and_metrics() {
    let f = Fixture::new((100, 100, 1000));
    let root = f.token("root", AdminRole::Admin);
    let (s, _) = f
        .call("POST", "/v1/admins", Some(&root), Some(json!({ "name": "newbie", "role": "auditor", "password": "a long enough password" })))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = f
        .call("POST", "/v1/admins", Some(&root), Some(json!({ "name": "newbie", "role": "auditor", "password": "a long enough password" })))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        login_as(&f.state, "newbie", "a long enough password", [10, 0, 3, 1])
            .await
            .0,
        StatusCode::OK
    );
    let (s, _) = f.call("DELETE", "/v1/admins/root", Some(&root), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "an admin cannot remove itself");
    // A password change ends the tokens issued before it.
    let ops_before = f.token("ops", AdminRole::Operator);
    std::thread::sleep(Duration::from_millis(1100));
    let (s, _) = f
        .call(
            "PUT",
            "/v1/admins/ops/password",
            Some(&root),
            Some(json!({ "password": "a brand new password" })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        f.call("GET", "/v1/whoami", Some(&ops_before), None).await.0,
        StatusCode::UNAUTHORIZED,
        "tokens from before the password change are refused"
    );
    assert_eq!(
        login_as(&f.state, "ops", "a brand new password", [10, 0, 3, 2])
            .await
            .0,
        StatusCode::OK
    );
    let newbie = f.token("newbie", AdminRole::Auditor);
    let (s, _) = f
        .call("DELETE", "/v1/admins/newbie", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        f.call("GET", "/v1/whoami", Some(&newbie), None).await.0,
        StatusCode::UNAUTHORIZED,
        "a removed admin's tokens stop working"
    );

    let (s, _) = f
        .call(
            "POST",
            "/v1/users",
            Some(&root),
            Some(json!({ "name": "etl", "role": "app", "password": "etl-password-1" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        f.state.shared.users.load().get("etl").is_some(),
        "users reloaded"
    );
    let (s, _) = f
        .call(
            "POST",
            "/v1/users",
            Some(&root),
            Some(json!({ "name": "x", "role": "nosuch", "password": "etl-password-1" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, users) = f.call("GET", "/v1/users", Some(&root), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(users.to_string().contains("etl") && !users.to_string().contains("bcrypt"));
    let (s, _) = f.call("DELETE", "/v1/users/etl", Some(&root), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(f.state.shared.users.load().get("etl").is_none());

    let (s, policy) = f.call("GET", "/v1/policy", Some(&root), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(policy["columns"][0]["column"], "ssn");
    assert_eq!(policy["columns"][0]["roles"]["app"], "plaintext");
    let version = policy["version"].as_str().expect("version").to_owned();
    std::fs::write(
        f.dir.path().join("policy/broken.toml"),
        "[[column]]
not valid",
    )
    .expect("write");
    let (s, body) = f.call("POST", "/v1/policy/reload", Some(&root), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        f.state.shared.protection.load().version,
        version,
        "the old policy stays"
    );
    std::fs::remove_file(f.dir.path().join("policy/broken.toml")).expect("rm");
    let (s, body) = f.call("POST", "/v1/policy/reload", Some(&root), None).await;
    assert_eq!((s, body["columns"].as_u64()), (StatusCode::OK, Some(1)));

    let (s, status) = f.call("GET", "/v1/status", Some(&root), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["policy"]["version"], version.as_str());
    let keys = status["keys"].as_array().expect("keys");
    assert!(keys.iter().any(|k| k["scope"] == "people.ssn"));
    assert!(!status.to_string().contains("wrapped"), "no key material");

    let (s, metrics) = f.call("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = metrics.as_str().expect("text");
    assert!(text.contains("# TYPE myveil_statement_duration_seconds histogram"));
    assert!(text.contains("myveil_admin_requests_total"));
    let (s, ready) = f.call("GET", "/ready", None, None).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    f.drop_schema().await;
}

#[tokio::test]
async fn crypto_service_round_trip_and_roles() {
    let f = Fixture::new((100, 100, 1000));
    let root = f.token("root", AdminRole::Admin);
    let ops = f.token("ops", AdminRole::Operator);
    let (s, sealed) = f
        .call(
            "POST",
            "/v1/crypto/encrypt",
            Some(&ops),
            Some(json!({ "table": "people", "column": "ssn", "value": "123-45-6789" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sealed}");
    let ct = sealed["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert!(!sealed.to_string().contains("123-45-6789"));
    assert_eq!(sealed["blind_index"].as_str().map(str::len), Some(64));
    let open = |token: String, role: Option<&'static str>, ct: String| {
        let mut body = json!({ "table": "people", "column": "ssn", "ciphertext": ct });
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        let state = f.state.clone();
        async move {
            call(
                &state,
                "POST",
                "/v1/crypto/decrypt",
                Some(&token),
                Some(body),
                [10, 0, 0, 1],
            )
            .await
        }
    };
    let (s, v) = open(root.clone(), None, ct.clone()).await;
    assert_eq!(
        (s, v["value"].as_str()),
        (StatusCode::OK, Some("123-45-6789"))
    );
    let (s, _) = open(ops.clone(), None, ct.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "operators get a role's view only");
    let (s, v) = open(ops.clone(), Some("support"), ct.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let masked = v["value"].as_str().expect("masked");
    assert!(
        masked.ends_with("6789") && !masked.contains("123"),
        "{masked}"
    );
    let (s, _) = open(ops.clone(), Some("stranger"), ct.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "unknown roles get deny");
    // Tampered: flip a bit of the envelope.
    use base64::Engine;
    let e = base64::engine::general_purpose::STANDARD;
    let mut raw = e.decode(&ct).expect("b64");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let (s, body) = open(root.clone(), None, e.encode(&raw)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|r| r.contains("people.ssn"))
    );
    let (s, _) = f
        .call(
            "POST",
            "/v1/crypto/encrypt",
            Some(&ops),
            Some(json!({ "table": "people", "column": "ssn", "value": "far too long for eleven" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = f
        .call(
            "POST",
            "/v1/crypto/encrypt",
            Some(&ops),
            Some(json!({ "table": "people", "column": "name", "value": "x" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unprotected column");
    f.drop_schema().await;
}

#[tokio::test]
async fn sql_tokens_issue_list_revoke() {
    let f = Fixture::new((100, 100, 1000));
    let ops = f.token("ops", AdminRole::Operator);
    let audit = f.token("audit", AdminRole::Auditor);
    let (s, issued) = f
        .call(
            "POST",
            "/v1/tokens",
            Some(&ops),
            Some(json!({ "user": "billing", "role": "app", "ttl_secs": 3600 })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().expect("token").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    assert!(token.starts_with("mvt_") && token.contains(&id));
    let (s, _) = f
        .call(
            "POST",
            "/v1/tokens",
            Some(&ops),
            Some(json!({ "user": "x", "role": "nosuch" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = f
        .call(
            "POST",
            "/v1/tokens",
            Some(&ops),
            Some(json!({ "user": "x", "role": "app", "ttl_secs": 999_999_999 })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "over the longest ttl");
    let (s, list) = f.call("GET", "/v1/tokens", Some(&audit), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["tokens"][0]["id"], id.as_str());
    assert_eq!(list["tokens"][0]["state"], "active");
    assert!(
        !list.to_string().contains(&token),
        "secrets are never listed"
    );

    let store = f.state.shared.tokens.clone().expect("store");
    let grant = store
        .authenticate(token.as_bytes(), b"billing")
        .await
        .expect("store");
    assert_eq!(grant.map(|g| g.info.role), Some("app".to_owned()));
    assert!(
        store
            .authenticate(token.as_bytes(), b"someone-else")
            .await
            .expect("store")
            .is_none()
    );
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(
        store
            .authenticate(forged.as_bytes(), b"billing")
            .await
            .expect("store")
            .is_none()
    );

    // At rest: no token id, user, role or secret in clear.
    let mut c = mysql_async::Conn::new(backend()).await.expect("backend");
    let dump: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = c
        .query(format!(
            "SELECT id_hash, verifier, meta FROM `{}`.sql_tokens",
            f.schema
        ))
        .await
        .expect("rows");
    let at_rest: Vec<u8> = dump
        .iter()
        .flat_map(|(a, b, m)| [a.clone(), b.clone(), m.clone()].concat())
        .collect();
    for needle in [id.as_bytes(), b"billing".as_slice(), token.as_bytes()] {
        assert!(
            !at_rest.windows(needle.len()).any(|w| w == needle),
            "found in the store"
        );
    }
    c.disconnect().await.ok();

    let (s, _) = f
        .call("DELETE", "/v1/tokens/ffffffffffffffff", Some(&ops), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = f
        .call("DELETE", &format!("/v1/tokens/{id}"), Some(&ops), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        store
            .authenticate(token.as_bytes(), b"billing")
            .await
            .expect("store")
            .is_none(),
        "revoked"
    );
    let again = f.restart();
    let store2 = again.state.shared.tokens.clone().expect("store");
    assert!(
        store2
            .authenticate(token.as_bytes(), b"billing")
            .await
            .expect("store")
            .is_none(),
        "revoked for every instance"
    );
    let (_, list) = f.call("GET", "/v1/tokens", Some(&audit), None).await;
    assert_eq!(list["tokens"][0]["state"], "revoked");
    drop(again);
    f.drop_schema().await;
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    let f = Fixture::new((100, 100, 1000));
    let s = &f.state;
    let (_, body) = login_as(s, "root", PASSWORD, [10, 0, 0, 4]).await;
    let good = body["token"].as_str().expect("token").to_owned();
    let (_, claims) = s.tokens.issue("root", AdminRole::Admin).expect("issue");
    let now = now_secs();
    let other_key = Tokens::new(&[6; 32], "myveil", "myveil-admin", 900);
    let mut tampered = good.clone();
    let last = tampered
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    tampered.push(last);
    let none = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(r#"{"alg":"none","typ":"JWT"}"#),
            e.encode(serde_json::to_vec(&claims).expect("json"))
        )
    };
    let cases = [
        ("tampered", tampered),
        (
            "expired",
            s.tokens.sign(
                &Claims {
                    exp: now - 3600,
                    iat: now - 7200,
                    nbf: now - 7200,
                    ..claims.clone()
                },
                Algorithm::HS256,
            ),
        ),
        (
            "not yet valid",
            s.tokens.sign(
                &Claims {
                    nbf: now + 3600,
                    ..claims.clone()
                },
                Algorithm::HS256,
            ),
        ),
        (
            "wrong audience",
            s.tokens.sign(
                &Claims {
                    aud: "other".into(),
                    ..claims.clone()
                },
                Algorithm::HS256,
            ),
        ),
        (
            "wrong issuer",
            s.tokens.sign(
                &Claims {
                    iss: "other".into(),
                    ..claims.clone()
                },
                Algorithm::HS256,
            ),
        ),
        ("wrong algorithm", s.tokens.sign(&claims, Algorithm::HS384)),
        ("alg none", none),
        ("other key", other_key.sign(&claims, Algorithm::HS256)),
        (
            "unknown admin",
            s.tokens.sign(
                &Claims {
                    sub: "ghost".into(),
                    ..claims.clone()
                },
                Algorithm::HS256,
            ),
        ),
        ("garbage", "not.a.token".into()),
    ];
    for (what, token) in cases {
        let (status, _) = call(s, "GET", "/v1/whoami", Some(&token), None, [10, 0, 0, 4]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    }
    let (status, _) = call(s, "GET", "/v1/whoami", None, None, [10, 0, 0, 4]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    let (status, _) = call(s, "GET", "/v1/whoami", Some(&good), None, [10, 0, 0, 4]).await;
    assert_eq!(status, StatusCode::OK);
    f.drop_schema().await;
}

#[test]
fn admin_store_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admins.toml");
    let mut a = AdminStore::load(&path).expect("empty");
    assert!(matches!(
        a.add("x", AdminRole::Auditor, PASSWORD.as_bytes(), 4),
        Err(users::Error::WeakCost)
    ));
    assert!(matches!(
        a.add("x", AdminRole::Auditor, &[b'a'; 73], 12),
        Err(users::Error::BadPassword)
    ));
    a.add("x", AdminRole::Auditor, PASSWORD.as_bytes(), 12)
        .expect("add");
    a.enroll_totp("x").expect("totp");
    a.save(&path).expect("save");
    let b = AdminStore::load(&path).expect("load");
    assert_eq!(
        b.verify("x", PASSWORD.as_bytes()).map(|a| a.role),
        Some(AdminRole::Auditor)
    );
    assert!(
        b.get("x").and_then(|a| a.totp_secret()).is_some(),
        "TOTP survives a save"
    );
    assert!(b.verify("x", b"wrong password!").is_none());
    assert!(
        !std::fs::read_to_string(&path)
            .expect("read")
            .contains(PASSWORD)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_jobs_list_and_verify() {
    let f = Fixture::new((100, 100, 1000));
    let store = f.state.shared.tokens.clone().expect("store");
    store.ready().await.expect("store schema");
    let keys = f.dir.path().join("keys");
    crate::backup::keys::generate(
        &keys.join("backup_rsa_public.pem"),
        &keys.join("backup_signing.key"),
    )
    .expect("backup keys");
    let ops = f.token("ops", AdminRole::Operator);
    let (s, body) = f
        .call("POST", "/v1/backups", Some(&ops), Some(json!({})))
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "no databases configured: {body}"
    );
    let (s, started) = f
        .call(
            "POST",
            "/v1/backups",
            Some(&ops),
            Some(json!({ "databases": [f.schema.clone()] })),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let id = started["id"].as_str().expect("job id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (s, job) = f
            .call("GET", &format!("/v1/backups/jobs/{id}"), Some(&ops), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        if job["state"] != "running" || std::time::Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["state"], "done", "{job}");
    let name = job["file"].as_str().expect("file").to_owned();
    assert_eq!(job["started_by"], "ops");

    let audit = f.token("audit", AdminRole::Auditor);
    let (s, list) = f.call("GET", "/v1/backups", Some(&audit), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["backups"][0]["name"], name.as_str());
    assert_eq!(list["backups"][0]["signature_ok"], true);
    assert_eq!(list["backups"][0]["databases"][0], f.schema.as_str());

    let (s, checked) = f
        .call(
            "POST",
            &format!("/v1/backups/{name}/verify"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(
        (s, checked["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{checked}"
    );
    let path = f.dir.path().join("backups").join(&name);
    let mut bytes = std::fs::read(&path).expect("read backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).expect("tamper");
    let (s, checked) = f
        .call(
            "POST",
            &format!("/v1/backups/{name}/verify"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(
        (s, checked["ok"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{checked}"
    );
    assert!(
        checked["error"]
            .as_str()
            .is_some_and(|e| e.contains("rejected")),
        "{checked}"
    );
    let (s, _) = f
        .call(
            "POST",
            "/v1/backups/..%2Fmyveil.toml/verify",
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "only listed files");
    f.drop_schema().await;
}

#[tokio::test]
async fn malformed_bodies_get_a_short_json_400_that_echoes_nothing() {
    let f = Fixture::new((100, 100, 1000));
    for body in [
        json!({ "user": "root", "password": 1234567890123_u64 }),
        json!({ "user": "root", "password": "hunter2-secret", "extra": "hunter2-secret" }),
        json!(["hunter2-secret"]),
    ] {
        let (s, reply) = f.call("POST", "/v1/login", None, Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{reply}");
        let text = reply.to_string();
        assert!(reply["error"].is_string(), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("1234567890123"),
            "{text}"
        );
    }
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/login")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(Peer(SocketAddr::from(([10, 0, 9, 9], 1)))));
    let resp = router(f.state.clone())
        .oneshot(req)
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    f.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_jobs_seal_and_reencrypt_with_progress() {
    let f0 = Fixture::new((100, 100, 1000));
    let db = format!("{}_data", f0.schema);
    f0.drop_schema().await;
    let f = Fixture::with_policy(&format!(
        "[[column]]\ndatabase = \"{db}\"\ntable = \"people\"\ncolumn = \"ssn\"\ntype = \"varchar(11)\"\nroles = {{ app = \"plaintext\" }}\n"
    ));
    let mut c = mysql_async::Conn::new(backend()).await.expect("backend");
    c.query_drop(format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.people (id INT PRIMARY KEY, ssn VARBINARY(200)); \
         INSERT INTO `{db}`.people SELECT seq, CONCAT('123-45-', LPAD(seq, 4, '0')) FROM `{db}`.seq_1_to_800"
    ))
    .await
    .expect("table");
    let ops = f.token("ops", AdminRole::Operator);
    let root = f.token("root", AdminRole::Admin);
    let (s, _) = f
        .call(
            "POST",
            "/v1/migrations",
            Some(&ops),
            Some(json!({ "kind": "apply" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "operators do not rewrite cells");
    let (s, body) = f
        .call(
            "POST",
            "/v1/migrations",
            Some(&root),
            Some(json!({ "kind": "drop" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let run = async |kind: &str| {
        let (s, started) = f
            .call(
                "POST",
                "/v1/migrations",
                Some(&root),
                Some(json!({ "kind": kind, "rate": 2000, "batch": 100 })),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{started}");
        let id = started["id"].as_str().expect("job id").to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen_progress = false;
        loop {
            let (s, job) = f
                .call("GET", &format!("/v1/migrations/{id}"), Some(&ops), None)
                .await;
            assert_eq!(s, StatusCode::OK);
            seen_progress |=
                job["progress"]["rows"].as_u64().unwrap_or(0) > 0 && job["state"] == "running";
            if job["state"] != "running" || std::time::Instant::now() > deadline {
                assert!(seen_progress, "progress while it ran: {job}");
                break job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let job = run("apply").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "apply");
    assert_eq!(job["tables"][0]["sealed"], 800, "{job}");
    let plain: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM `{db}`.people WHERE LEFT(ssn, 4) <> X'4D560101' OR ssn LIKE '%123-45%'"
        ))
        .await
        .expect("count");
    assert_eq!(plain, Some(0), "sealed at rest");
    // A rotation, then re-encryption as a job: every cell under the new key.
    let dir = f.dir.path().join("keys");
    let mut ring = crate::crypto::keyring::Keyring::load(&dir).expect("keys");
    let purpose = crate::crypto::keyring::Purpose::Column;
    let (old, _) = ring.primary(purpose, "people.ssn").expect("a column key");
    let scope = ring.info(old).expect("info").scope.clone();
    let new = ring.add(purpose, &scope, crate::crypto::keyring::Status::Primary);
    ring.save().expect("save");
    let (s, body) = f.call("POST", "/v1/keys/reload", Some(&ops), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let job = run("reencrypt").await;
    assert_eq!(job["state"], "done", "{job}");
    let old: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM `{db}`.people WHERE SUBSTRING(ssn, 5, 4) <> X'{new:08X}'"
        ))
        .await
        .expect("count");
    assert_eq!(old, Some(0), "every cell under key {new}");
    let (s, list) = f.call("GET", "/v1/migrations", Some(&ops), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(2));
    c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await
        .ok();
    c.exec_drop("DELETE FROM myveil.columns WHERE db = ?", (&db,))
        .await
        .ok();
    c.exec_drop("DELETE FROM myveil.jobs WHERE db = ?", (&db,))
        .await
        .ok();
    c.disconnect().await.ok();
    f.drop_schema().await;
}
