//! admin: the HTTP admin port (axum) beside the MySQL listener — admin login (bcrypt) → JWT
//! with a role, logout (revocation), per-IP and per-user login rate limits, health.
//! The router is built by `router(state)` so tests call it without a socket.

pub mod token;
pub mod users;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use token::{Claims, Tokens, now_secs};
use users::{AdminRole, AdminStore};

/// Shared state of the admin port.
pub struct AdminState {
    pub admins: ArcSwap<AdminStore>,
    pub tokens: Tokens,
    /// Revoked token ids and when they expire anyway (then they are dropped).
    revoked: Mutex<HashMap<String, u64>>,
    login_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_by_user: DefaultKeyedRateLimiter<String>,
}

impl AdminState {
    pub fn new(
        admins: AdminStore,
        tokens: Tokens,
        logins_per_minute_ip: u32,
        logins_per_minute_user: u32,
    ) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            admins: ArcSwap::from_pointee(admins),
            tokens,
            revoked: Mutex::new(HashMap::new()),
            login_by_ip: RateLimiter::keyed(quota(logins_per_minute_ip)),
            login_by_user: RateLimiter::keyed(quota(logins_per_minute_user)),
        }
    }

    fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .lock()
            .map(|r| r.contains_key(jti))
            .unwrap_or(true)
    }

    fn revoke(&self, claims: &Claims) {
        if let Ok(mut r) = self.revoked.lock() {
            let now = now_secs();
            r.retain(|_, exp| *exp + 60 > now);
            r.insert(claims.jti.clone(), claims.exp);
        }
    }

    /// Drops rate-limit state for keys not seen lately (bounded memory).
    pub fn housekeeping(&self) {
        self.login_by_ip.retain_recent();
        self.login_by_user.retain_recent();
    }
}

/// Errors as the caller sees them: short reasons for 4xx, nothing for 5xx.
pub enum ApiError {
    Unauthorized,
    Forbidden,
    TooManyRequests,
    BadRequest(&'static str),
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid credentials"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden for this role"),
            ApiError::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
            ApiError::BadRequest(r) => (StatusCode::BAD_REQUEST, r),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        (status, Json(json!({ "error": reason }))).into_response()
    }
}

/// An authenticated administrator (from `Authorization: Bearer …`).
pub struct Authenticated(pub Claims);

impl FromRequestParts<Arc<AdminState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthorized)?;
        let claims = state.tokens.verify(token).ok_or(ApiError::Unauthorized)?;
        if state.is_revoked(&claims.jti)
            || state.admins.load().admins().all(|a| a.name != claims.sub)
        {
            return Err(ApiError::Unauthorized);
        }
        Ok(Authenticated(claims))
    }
}

impl Authenticated {
    /// Refuses unless the role is one of `allowed`.
    pub fn require(&self, allowed: &[AdminRole]) -> Result<(), ApiError> {
        if allowed.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

async fn login(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<Login>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Security: both limits are checked before any bcrypt work.
    if state.login_by_ip.check_key(&peer.ip()).is_err()
        || state.login_by_user.check_key(&body.user).is_err()
    {
        tracing::info!(ip = %peer.ip(), "admin login rate-limited");
        return Err(ApiError::TooManyRequests);
    }
    let password = Zeroizing::new(body.password.into_bytes());
    if password.len() > users::MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest("password longer than 72 bytes"));
    }
    let admins = state.admins.load_full();
    let user = body.user.clone();
    let found = tokio::task::spawn_blocking(move || admins.verify(&user, &password).cloned())
        .await
        .map_err(|_| ApiError::Internal)?;
    let Some(admin) = found else {
        tracing::info!(user = ?body.user, "admin login failed");
        return Err(ApiError::Unauthorized);
    };
    let (token, claims) = state.tokens.issue(&admin.name, admin.role).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a token");
        ApiError::Internal
    })?;
    tracing::info!(user = %admin.name, role = admin.role.name(), "admin logged in");
    Ok(Json(
        json!({ "token": token, "role": admin.role.name(), "expires_at": claims.exp }),
    ))
}

async fn logout(State(state): State<Arc<AdminState>>, who: Authenticated) -> StatusCode {
    state.revoke(&who.0);
    StatusCode::NO_CONTENT
}

async fn whoami(who: Authenticated) -> Json<serde_json::Value> {
    Json(json!({ "user": who.0.sub, "role": who.0.role.name(), "expires_at": who.0.exp }))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/whoami", get(whoami))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use jsonwebtoken::Algorithm;
    use tower::ServiceExt;

    const KEY: [u8; 32] = [5; 32];
    const PASSWORD: &str = "correct horse battery";

    fn state(ip_quota: u32, user_quota: u32) -> Arc<AdminState> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut admins = AdminStore::load(&dir.path().join("admins.toml")).expect("empty");
        admins
            .add(
                "root",
                AdminRole::Admin,
                PASSWORD.as_bytes(),
                users::MIN_BCRYPT_COST,
            )
            .expect("add");
        admins
            .add(
                "ops",
                AdminRole::Operator,
                PASSWORD.as_bytes(),
                users::MIN_BCRYPT_COST,
            )
            .expect("add");
        Arc::new(AdminState::new(
            admins,
            Tokens::new(&KEY, "myveil", "myveil-admin", 900),
            ip_quota,
            user_quota,
        ))
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
            .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        let resp = router(state.clone()).oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
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
    async fn login_whoami_logout() {
        let s = state(100, 100);
        let (status, body) = login_as(&s, "ops", PASSWORD, [10, 0, 0, 1]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["token"].as_str().expect("token").to_owned();
        let (status, me) = call(&s, "GET", "/v1/whoami", Some(&token), None, [10, 0, 0, 1]).await;
        assert_eq!(
            (status, me["role"].as_str()),
            (StatusCode::OK, Some("operator"))
        );
        let (status, _) = call(&s, "POST", "/v1/logout", Some(&token), None, [10, 0, 0, 1]).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = call(&s, "GET", "/v1/whoami", Some(&token), None, [10, 0, 0, 1]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked token stops working at once"
        );
        let (status, _) = call(&s, "GET", "/health", None, None, [10, 0, 0, 1]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_look_the_same() {
        let s = state(100, 100);
        let wrong = login_as(&s, "root", "not the password!", [10, 0, 0, 2]).await;
        let unknown = login_as(&s, "nobody", "not the password!", [10, 0, 0, 2]).await;
        assert_eq!(wrong, unknown);
        assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
        let long = login_as(&s, "root", &"x".repeat(73), [10, 0, 0, 2]).await;
        assert_eq!(
            long.0,
            StatusCode::BAD_REQUEST,
            "over 72 bytes is refused, not truncated"
        );
    }

    #[tokio::test]
    async fn logins_are_limited_per_ip_and_per_user() {
        let s = state(3, 2);
        for i in 0..3 {
            let (status, _) =
                login_as(&s, &format!("guess{i}"), "wrong password", [10, 0, 0, 3]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = login_as(&s, "guess9", "wrong password", [10, 0, 0, 3]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "per IP");
        for ip in [[10, 0, 1, 1], [10, 0, 1, 2]] {
            let (status, _) = login_as(&s, "root", "wrong password", ip).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = login_as(&s, "root", PASSWORD, [10, 0, 1, 3]).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "per user, from any IP"
        );
    }

    #[tokio::test]
    async fn bad_tokens_are_rejected() {
        let s = state(100, 100);
        let (_, body) = login_as(&s, "root", PASSWORD, [10, 0, 0, 4]).await;
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
            let (status, _) =
                call(&s, "GET", "/v1/whoami", Some(&token), None, [10, 0, 0, 4]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        }
        let (status, _) = call(&s, "GET", "/v1/whoami", None, None, [10, 0, 0, 4]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
        let (status, _) = call(&s, "GET", "/v1/whoami", Some(&good), None, [10, 0, 0, 4]).await;
        assert_eq!(status, StatusCode::OK);
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
        a.save(&path).expect("save");
        let b = AdminStore::load(&path).expect("load");
        assert_eq!(
            b.verify("x", PASSWORD.as_bytes()).map(|a| a.role),
            Some(AdminRole::Auditor)
        );
        assert!(b.verify("x", b"wrong password!").is_none());
        assert!(
            !std::fs::read_to_string(&path)
                .expect("read")
                .contains(PASSWORD)
        );
    }
}
