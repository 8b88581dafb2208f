//! admin: the HTTP admin port (axum) beside the MySQL listener — admin login (bcrypt, optional
//! TOTP) → JWT with a role, logout (revocation shared through the backend), SQL tokens, proxy
//! users, policy, status, metrics, the encrypt/decrypt service, backup jobs and the OpenAPI
//! document.
//! The router is built by `router(state)` so tests call it without a socket.
//!
//! Roles: `admin` may do everything; `operator` manages SQL tokens, reloads the policy and
//! uses the crypto service; `auditor` reads. Every route and the roles it allows are listed
//! in [`ROUTES`], which the OpenAPI document and the tests are checked against.

mod api;
mod backups;
mod migrations;
pub mod tls;
pub mod token;
pub mod totp;
pub mod users;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::frontend::Shared;
use crate::limits::{Keyed, LimitClock};
use crate::telemetry::metrics::{Limited, METRICS};
use token::{Claims, Tokens, now_secs};
use users::{AdminRole, AdminStore};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the admin port needs keys: set [protection] keys_dir and run `myveil keygen`")]
    NoKeys,
    #[error("no JWT key in the keyring; run `myveil keygen`")]
    NoJwtKey,
    #[error("the configuration has no [admin] section")]
    NotConfigured,
    #[error(transparent)]
    Admins(#[from] users::Error),
}

use AdminRole::{Admin, Auditor, Operator};

/// Every route: method, path (OpenAPI form), roles allowed (empty: no token needed).
pub const ROUTES: &[(&str, &str, &[AdminRole])] = &[
    ("GET", "/health", &[]),
    ("GET", "/ready", &[]),
    ("GET", "/metrics", &[]),
    ("GET", "/openapi.json", &[]),
    ("POST", "/v1/login", &[]),
    ("POST", "/v1/logout", &[Admin, Operator, Auditor]),
    ("GET", "/v1/whoami", &[Admin, Operator, Auditor]),
    ("GET", "/v1/status", &[Admin, Operator, Auditor]),
    ("GET", "/v1/admins", &[Admin, Auditor]),
    ("POST", "/v1/admins", &[Admin]),
    ("DELETE", "/v1/admins/{name}", &[Admin]),
    ("PUT", "/v1/admins/{name}/password", &[Admin]),
    ("POST", "/v1/admins/{name}/totp", &[Admin]),
    ("DELETE", "/v1/admins/{name}/totp", &[Admin]),
    ("GET", "/v1/tokens", &[Admin, Operator, Auditor]),
    ("POST", "/v1/tokens", &[Admin, Operator]),
    ("DELETE", "/v1/tokens/{id}", &[Admin, Operator]),
    ("GET", "/v1/users", &[Admin, Operator, Auditor]),
    ("POST", "/v1/users", &[Admin]),
    ("DELETE", "/v1/users/{name}", &[Admin]),
    ("GET", "/v1/policy", &[Admin, Operator, Auditor]),
    ("POST", "/v1/policy/reload", &[Admin, Operator]),
    ("POST", "/v1/crypto/encrypt", &[Admin, Operator]),
    ("POST", "/v1/crypto/decrypt", &[Admin, Operator]),
    ("GET", "/v1/backups", &[Admin, Operator, Auditor]),
    ("POST", "/v1/backups", &[Admin, Operator]),
    ("GET", "/v1/backups/jobs/{id}", &[Admin, Operator, Auditor]),
    ("POST", "/v1/backups/{name}/verify", &[Admin, Operator]),
    ("POST", "/v1/keys/reload", &[Admin, Operator]),
    ("GET", "/v1/migrations", &[Admin, Operator, Auditor]),
    ("POST", "/v1/migrations", &[Admin]),
    ("GET", "/v1/migrations/{id}", &[Admin, Operator, Auditor]),
    ("DELETE", "/v1/migrations/{id}", &[Admin]),
];

/// The roles allowed on a route, from [`ROUTES`].
fn allowed(method: &str, path: &str) -> &'static [AdminRole] {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(&[], |(_, _, r)| r)
}

/// The client's address, as the login limits key it (HTTP or HTTPS listener).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

/// Shared state of the admin port.
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub admins: ArcSwap<AdminStore>,
    admins_path: PathBuf,
    /// Serializes read-modify-write of the admins and users files.
    files: tokio::sync::Mutex<()>,
    pub tokens: Tokens,
    /// SQL tokens and revocations (admin logouts too), shared with the MySQL port.
    store: Arc<crate::tokens::TokenStore>,
    /// The `[admin]` section this state was built from.
    config: crate::config::Admin,
    /// Last TOTP step used per admin: a code works once.
    totp_used: Mutex<HashMap<String, u64>>,
    login_by_ip: Keyed<IpAddr>,
    login_by_user: Keyed<String>,
    api_by_token: Keyed<String>,
    started: std::time::Instant,
    backups: backups::Jobs,
    migrations: migrations::Jobs,
}

impl AdminState {
    /// State for `shared`'s `[admin]` section: administrators from their file, tokens signed
    /// with the keyring's JWT key, limits on `clock`.
    pub fn new(shared: Arc<Shared>, clock: &LimitClock) -> Result<Self, Error> {
        use crate::crypto::keyring::Purpose;
        let admin = shared.config.admin.as_ref().ok_or(Error::NotConfigured)?;
        let keyring = shared.keyring.load_full().ok_or(Error::NoKeys)?;
        let (_, key) = keyring.primary(Purpose::Jwt, "*").ok_or(Error::NoJwtKey)?;
        let tokens = Tokens::new(
            key.bytes(),
            &admin.issuer,
            &admin.audience,
            admin.token_ttl_secs,
        );
        let admins_path = shared.config.resolve(&admin.users_file);
        let admins = AdminStore::load(&admins_path)?;
        // Shared::new opens the store whenever [admin] and keys are both present.
        let store = shared.tokens.clone().ok_or(Error::NoKeys)?;
        let config = admin.clone();
        Ok(Self {
            admins: ArcSwap::from_pointee(admins),
            admins_path,
            files: tokio::sync::Mutex::new(()),
            tokens,
            store,
            config,
            totp_used: Mutex::new(HashMap::new()),
            login_by_ip: Keyed::new(admin.logins_per_minute_ip, clock),
            login_by_user: Keyed::new(admin.logins_per_minute_user, clock),
            api_by_token: Keyed::new(admin.api_requests_per_minute, clock),
            started: std::time::Instant::now(),
            backups: backups::Jobs::default(),
            migrations: migrations::Jobs::default(),
            shared,
        })
    }

    /// Re-reads the admins file (SIGHUP, after `myveil admin …`); the old admins stay on error.
    pub fn reload_admins(&self) -> Result<usize, Error> {
        let store = AdminStore::load(&self.admins_path)?;
        let n = store.admins().count();
        self.admins.store(std::sync::Arc::new(store));
        Ok(n)
    }

    /// Drops rate-limit state for keys not seen lately (bounded memory).
    pub fn housekeeping(&self) {
        self.login_by_ip.housekeeping();
        self.login_by_user.housekeeping();
        self.api_by_token.housekeeping();
    }
}

/// Errors as the caller sees them: short reasons for 4xx, nothing for 5xx.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound,
    TooManyRequests,
    BadRequest(String),
    Conflict(&'static str),
    /// The revocation store cannot be reached: fail closed.
    Unavailable,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid credentials".into()),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden for this role".into()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".into()),
            ApiError::TooManyRequests => {
                (StatusCode::TOO_MANY_REQUESTS, "too many requests".into())
            }
            ApiError::BadRequest(r) => (StatusCode::BAD_REQUEST, r),
            ApiError::Conflict(r) => (StatusCode::CONFLICT, r.to_owned()),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable".into(),
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
        };
        (status, Json(json!({ "error": reason }))).into_response()
    }
}

/// An authenticated administrator (from `Authorization: Bearer …`) whose role is allowed on
/// the route being called (per [`ROUTES`]), within the per-token request rate.
pub struct Authenticated(pub Claims);

impl FromRequestParts<Arc<AdminState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let claims = state.tokens.verify(token).ok_or(ApiError::Unauthorized)?;
        // The admin must still exist with the role the token names, and the token must be
        // newer than its last password change (or re-creation).
        let admins = state.admins.load();
        let current = admins.get(&claims.sub);
        if current.is_none_or(|a| a.role != claims.role || claims.iat < a.not_before) {
            return Err(ApiError::Unauthorized);
        }
        drop(admins);
        // Security: when the shared store cannot say, the token is refused (fail closed).
        // A logout on this instance is known at once (the store caches it before writing).
        match state.store.is_jwt_revoked(&claims.jti).await {
            Ok(false) => {}
            Ok(true) => return Err(ApiError::Unauthorized),
            Err(e) => {
                tracing::warn!(error = %e, "revocation store unavailable");
                return Err(ApiError::Unavailable);
            }
        }
        if !state.api_by_token.allow(&claims.jti) {
            METRICS.rate_limited(Limited::AdminApi);
            return Err(ApiError::TooManyRequests);
        }
        let path = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        if !allowed(parts.method.as_str(), &path).contains(&claims.role) {
            return Err(ApiError::Forbidden);
        }
        Ok(Authenticated(claims))
    }
}

/// A JSON request body. Malformed bodies get a short 400 that never echoes what was sent
/// (serde's messages can quote values, and a value may be a password).
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(ApiError::BadRequest(
                match r {
                    JsonRejection::MissingJsonContentType(_) => {
                        "expected Content-Type: application/json"
                    }
                    JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
                    JsonRejection::JsonDataError(_) => {
                        "the body does not match this request's schema (see /openapi.json)"
                    }
                    _ => "cannot read the body",
                }
                .into(),
            )),
        }
    }
}

async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    METRICS.admin_request();
    next.run(req).await
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route("/ready", get(api::ready))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .route("/v1/login", post(api::login))
        .route("/v1/logout", post(api::logout))
        .route("/v1/whoami", get(api::whoami))
        .route("/v1/status", get(api::status))
        .route("/v1/admins", get(api::list_admins).post(api::add_admin))
        .route("/v1/admins/{name}", delete(api::remove_admin))
        .route("/v1/admins/{name}/password", put(api::admin_password))
        .route(
            "/v1/admins/{name}/totp",
            post(api::enroll_totp).delete(api::disable_totp),
        )
        .route("/v1/tokens", get(api::list_tokens).post(api::issue_token))
        .route("/v1/tokens/{id}", delete(api::revoke_token))
        .route("/v1/users", get(api::list_users).post(api::add_user))
        .route("/v1/users/{name}", delete(api::remove_user))
        .route("/v1/policy", get(api::policy))
        .route("/v1/policy/reload", post(api::reload_policy))
        .route("/v1/keys/reload", post(api::reload_keys))
        .route("/v1/crypto/encrypt", post(api::encrypt))
        .route("/v1/crypto/decrypt", post(api::decrypt))
        .route("/v1/backups", get(backups::list).post(backups::start))
        .route("/v1/backups/jobs/{id}", get(backups::job))
        .route("/v1/backups/{name}/verify", post(backups::verify))
        .route(
            "/v1/migrations",
            get(migrations::list).post(migrations::start),
        )
        .route(
            "/v1/migrations/{id}",
            get(migrations::job).delete(migrations::stop),
        )
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Serves the router on `listener` (HTTP, or HTTPS when `[admin]` names a certificate)
/// until `stop` turns true.
pub async fn serve(
    state: Arc<AdminState>,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let tls = match (&state.config.tls_cert, &state.config.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::wire::tls::acceptor(
                &state.shared.config.resolve(cert),
                &state.shared.config.resolve(key),
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        _ => None,
    };
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                state.housekeeping();
            }
        })
    };
    let app = router(state).into_make_service_with_connect_info::<Peer>();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match tls {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    housekeeping.abort();
    served
}

#[cfg(test)]
mod tests;
