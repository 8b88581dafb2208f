//! admin::api: the handlers behind the admin routes. Role checks happen in the
//! `Authenticated` extractor against `ROUTES`; handlers add only per-object rules.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::users::{self, AdminRole, AdminStore, MIN_BCRYPT_COST};
use super::{AdminState, ApiError, Authenticated, Body, Peer, totp};
use crate::policy::{Access, Protected};
use crate::telemetry::metrics::{Limited, METRICS};

type Reply = Result<Json<Value>, ApiError>;

const OPENAPI: &str = include_str!("openapi.json");

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the backend and the token store answer.
pub async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    let backend = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(state.shared.config.backend.address.as_str()),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    let store = tokio::time::timeout(Duration::from_secs(2), state.store.ready())
        .await
        .is_ok_and(|r| r.is_ok());
    let status = if backend && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "backend": backend, "token_store": store })),
    )
        .into_response()
}

pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    user: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

pub async fn login(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Body(body): Body<Login>,
) -> Reply {
    // Security: both limits are checked before any bcrypt work.
    if !state.login_by_ip.allow(&crate::limits::ip_key(peer.ip()))
        || !state.login_by_user.allow(&body.user)
    {
        METRICS.rate_limited(Limited::AdminLogin);
        tracing::info!(ip = %peer.ip(), "admin login rate-limited");
        return Err(ApiError::TooManyRequests);
    }
    let password = Zeroizing::new(body.password.into_bytes());
    if password.len() > users::MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest("password longer than 72 bytes".into()));
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
    // Security: with a second factor enrolled, a missing or wrong code is answered exactly
    // like a wrong password, and each code works once.
    if let Some(secret) = admin.totp_secret() {
        let step = {
            let mut used = state.totp_used.lock().map_err(|_| ApiError::Internal)?;
            let last = used.get(&admin.name).copied();
            let step = body
                .totp
                .as_deref()
                .and_then(|code| totp::verify(secret, code, super::now_secs(), last));
            if let Some(step) = step {
                used.insert(admin.name.clone(), step);
            }
            step
        };
        // A code works once across every instance sharing the store, too.
        let fresh = match step {
            None => false,
            Some(step) => state
                .store
                .claim_totp_step(&admin.name, step)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot record a TOTP step in the token store");
                    ApiError::Unavailable
                })?,
        };
        if !fresh {
            tracing::info!(user = %admin.name, "admin login failed: second factor");
            return Err(ApiError::Unauthorized);
        }
    }
    let (token, claims) = state.tokens.issue(&admin.name, admin.role).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a token");
        ApiError::Internal
    })?;
    tracing::info!(user = %admin.name, role = admin.role.name(), "admin logged in");
    Ok(Json(
        json!({ "token": token, "role": admin.role.name(), "expires_at": claims.exp }),
    ))
}

pub async fn logout(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .revoke_jwt(&who.0.jti, who.0.exp)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot record a logout in the token store");
            ApiError::Unavailable
        })?;
    tracing::info!(user = %who.0.sub, "admin logged out");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn whoami(who: Authenticated) -> Json<Value> {
    Json(json!({ "user": who.0.sub, "role": who.0.role.name(), "expires_at": who.0.exp }))
}

pub async fn status(State(state): State<Arc<AdminState>>, _who: Authenticated) -> Json<Value> {
    let protection = state.shared.protection.load_full();
    let keys: Vec<Value> = state
        .shared
        .keyring
        .load_full()
        .map(|k| {
            k.infos()
                .map(|i| {
                    json!({
                        "id": i.id,
                        "purpose": i.purpose,
                        "scope": i.scope,
                        "status": i.status,
                        "uses": k.uses(i.id),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "connections_open": METRICS.connections_open(),
        "backend": state.shared.config.backend.address,
        "policy": { "version": protection.version, "columns": protection.policy.columns().len() },
        "keys": keys,
    }))
}

// ---- administrators ------------------------------------------------------------------

pub async fn list_admins(State(state): State<Arc<AdminState>>, _who: Authenticated) -> Json<Value> {
    let admins = state.admins.load();
    let list: Vec<Value> = admins
        .admins()
        .map(
            |a| json!({ "name": a.name, "role": a.role.name(), "totp": a.totp_secret().is_some() }),
        )
        .collect();
    Json(json!({ "admins": list }))
}

/// Loads the admins file, applies `change` (blocking: bcrypt), saves it and swaps it in.
async fn change_admins<T: Send + 'static>(
    state: &Arc<AdminState>,
    change: impl FnOnce(&mut AdminStore) -> Result<T, users::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let _guard = state.files.lock().await;
    let path = state.admins_path.clone();
    let (store, out) = tokio::task::spawn_blocking(move || {
        let mut store = AdminStore::load(&path)?;
        let out = change(&mut store)?;
        store.save(&path)?;
        Ok::<_, users::Error>((store, out))
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(|e| match e {
        users::Error::Exists(_) => ApiError::Conflict("already exists"),
        users::Error::NotFound(_) => ApiError::NotFound,
        e @ (users::Error::BadPassword | users::Error::BadName(_) | users::Error::WeakCost) => {
            ApiError::BadRequest(e.to_string())
        }
        e => {
            tracing::error!(error = %e, "cannot update the admins file");
            ApiError::Internal
        }
    })?;
    state.admins.store(Arc::new(store));
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    name: String,
    role: String,
    password: String,
}

pub async fn add_admin(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Body(body): Body<NewAdmin>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let role = AdminRole::parse(&body.role)
        .ok_or_else(|| ApiError::BadRequest("role must be admin, operator or auditor".into()))?;
    let password = Zeroizing::new(body.password.into_bytes());
    let name = body.name.clone();
    change_admins(&state, move |s| {
        s.add(&name, role, &password, MIN_BCRYPT_COST)
    })
    .await?;
    tracing::info!(by = %who.0.sub, admin = %body.name, role = role.name(), "admin added");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": body.name, "role": role.name() })),
    ))
}

pub async fn remove_admin(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == who.0.sub {
        return Err(ApiError::Conflict("an admin cannot remove itself"));
    }
    let target = name.clone();
    change_admins(&state, move |s| s.remove(&target)).await?;
    tracing::info!(by = %who.0.sub, admin = %name, "admin removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

pub async fn admin_password(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
    Body(body): Body<NewPassword>,
) -> Result<StatusCode, ApiError> {
    let password = Zeroizing::new(body.password.into_bytes());
    let target = name.clone();
    change_admins(&state, move |s| {
        s.set_password(&target, &password, MIN_BCRYPT_COST)
    })
    .await?;
    tracing::info!(by = %who.0.sub, admin = %name, "admin password changed");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enroll_totp(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
) -> Reply {
    let target = name.clone();
    let secret = change_admins(&state, move |s| s.enroll_totp(&target)).await?;
    if let Ok(mut used) = state.totp_used.lock() {
        used.remove(&name);
    }
    tracing::info!(by = %who.0.sub, admin = %name, "TOTP enrolled");
    let uri = totp::uri(&state.config.issuer, &name, &secret);
    Ok(Json(json!({ "secret": secret, "otpauth_uri": uri })))
}

pub async fn disable_totp(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let target = name.clone();
    change_admins(&state, move |s| s.disable_totp(&target)).await?;
    tracing::info!(by = %who.0.sub, admin = %name, "TOTP removed");
    Ok(StatusCode::NO_CONTENT)
}

// ---- SQL tokens ----------------------------------------------------------------------

fn store_error(e: crate::tokens::Error) -> ApiError {
    match e {
        crate::tokens::Error::Invalid(r) => ApiError::BadRequest(r.into()),
        e => {
            tracing::error!(error = %e, "token store");
            ApiError::Unavailable
        }
    }
}

pub async fn list_tokens(State(state): State<Arc<AdminState>>, _who: Authenticated) -> Reply {
    let list = state.store.list().await.map_err(store_error)?;
    let now = crate::tokens::now_secs();
    let list: Vec<Value> = list
        .into_iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at <= now {
                "expired"
            } else {
                "active"
            };
            json!({
                "id": t.id, "user": t.user, "role": t.role, "issued_by": t.issued_by,
                "created_at": t.created_at, "expires_at": t.expires_at,
                "revoked_at": t.revoked_at, "state": state,
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The MySQL user name the app will log in with.
    user: String,
    /// The proxy role its sessions get.
    role: String,
    ttl_secs: Option<u64>,
}

pub async fn issue_token(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Body(body): Body<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = &state.store;
    if !state.shared.config.roles.contains_key(&body.role) {
        return Err(ApiError::BadRequest(format!(
            "role {:?} is not defined in the configuration",
            body.role
        )));
    }
    if state.shared.users.load().get(&body.user).is_some() {
        return Err(ApiError::Conflict(
            "that name belongs to a user of the users file",
        ));
    }
    let max = state.config.sql_token_max_ttl_secs;
    let ttl = body.ttl_secs.unwrap_or(max.min(86_400));
    if ttl == 0 || ttl > max {
        return Err(ApiError::BadRequest(format!("ttl_secs must be 1 to {max}")));
    }
    let issued = store
        .issue(&body.user, &body.role, Duration::from_secs(ttl), &who.0.sub)
        .await
        .map_err(store_error)?;
    tracing::info!(by = %who.0.sub, id = %issued.info.id, user = %issued.info.user, role = %issued.info.role, "SQL token issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": issued.token.as_str(),
            "id": issued.info.id,
            "user": issued.info.user,
            "role": issued.info.role,
            "expires_at": issued.info.expires_at,
        })),
    ))
}

#[derive(Deserialize)]
pub struct RevokeQuery {
    #[serde(default)]
    kill_sessions: bool,
}

pub async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(id): Path<String>,
    Query(q): Query<RevokeQuery>,
) -> Result<StatusCode, ApiError> {
    let found = state
        .store
        .revoke(&id, q.kill_sessions)
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound);
    }
    tracing::info!(by = %who.0.sub, id = %id, kill_sessions = q.kill_sessions, "SQL token revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ---- proxy users ---------------------------------------------------------------------

pub async fn list_users(State(state): State<Arc<AdminState>>, _who: Authenticated) -> Json<Value> {
    let users = state.shared.users.load();
    let list: Vec<Value> = users
        .users()
        .map(|u| json!({ "name": u.name, "role": u.role }))
        .collect();
    Json(json!({ "users": list }))
}

async fn change_users(
    state: &Arc<AdminState>,
    change: impl FnOnce(&mut crate::auth::UserStore) -> crate::auth::Result<()> + Send + 'static,
) -> Result<(), ApiError> {
    let _guard = state.files.lock().await;
    let path = state.shared.config.resolve(&state.shared.config.users.file);
    tokio::task::spawn_blocking(move || {
        let mut store = crate::auth::UserStore::load(&path)?;
        change(&mut store)?;
        store.save(&path)
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(|e| match e {
        crate::auth::Error::Exists(_) => ApiError::Conflict("already exists"),
        crate::auth::Error::NotFound(_) => ApiError::NotFound,
        e @ (crate::auth::Error::BadPassword | crate::auth::Error::BadName(_)) => {
            ApiError::BadRequest(e.to_string())
        }
        e => {
            tracing::error!(error = %e, "cannot update the users file");
            ApiError::Internal
        }
    })?;
    state.shared.reload_users().map_err(|e| {
        tracing::error!(error = %e, "cannot reload users");
        ApiError::Internal
    })?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: String,
    password: String,
}

pub async fn add_user(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Body(body): Body<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.shared.config.roles.contains_key(&body.role) {
        return Err(ApiError::BadRequest(format!(
            "role {:?} is not defined in the configuration",
            body.role
        )));
    }
    let password = Zeroizing::new(body.password.into_bytes());
    let cost = state.shared.config.users.bcrypt_cost;
    let (name, role) = (body.name.clone(), body.role.clone());
    change_users(&state, move |s| s.add(&name, &role, &password, cost)).await?;
    tracing::info!(by = %who.0.sub, user = %body.name, role = %body.role, "proxy user added");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": body.name, "role": body.role })),
    ))
}

pub async fn remove_user(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let target = name.clone();
    change_users(&state, move |s| s.remove(&target)).await?;
    tracing::info!(by = %who.0.sub, user = %name, "proxy user removed");
    Ok(StatusCode::NO_CONTENT)
}

// ---- policy --------------------------------------------------------------------------

fn access_json(a: &Access) -> Value {
    match a {
        Access::Plaintext => json!("plaintext"),
        Access::Ciphertext => json!("ciphertext"),
        Access::Deny => json!("deny"),
        Access::Mask(m) => serde_json::to_value(m).unwrap_or(Value::Null),
    }
}

pub async fn policy(State(state): State<Arc<AdminState>>, _who: Authenticated) -> Json<Value> {
    let protection = state.shared.protection.load_full();
    let columns: Vec<Value> = protection
        .policy
        .columns()
        .iter()
        .map(|c| {
            let roles: serde_json::Map<String, Value> = c
                .roles()
                .map(|(r, a)| (r.to_owned(), access_json(a)))
                .collect();
            json!({
                "database": c.database,
                "table": c.table,
                "column": c.column,
                "type": c.plain_type.name(),
                "storage": format!("{:?}", c.storage).to_ascii_lowercase(),
                "blind_index": c.blind_index,
                "row_key": c.row_key,
                "roles": roles,
            })
        })
        .collect();
    Json(json!({ "version": protection.version, "columns": columns }))
}

pub async fn reload_policy(State(state): State<Arc<AdminState>>, who: Authenticated) -> Reply {
    match state.shared.reload_policy() {
        Ok(n) => {
            let version = state.shared.protection.load().version.clone();
            tracing::info!(by = %who.0.sub, columns = n, %version, "policy reloaded");
            Ok(Json(json!({ "columns": n, "version": version })))
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload failed; keeping the old policy");
            Err(ApiError::BadRequest(
                "the new policy is invalid; the old one stays (details in the server log)".into(),
            ))
        }
    }
}

/// Re-reads the keyring (after `myveil keys rotate`): new writes seal under the new primary
/// keys, old keys still open.
pub async fn reload_keys(State(state): State<Arc<AdminState>>, who: Authenticated) -> Reply {
    match state.shared.reload_keys() {
        Ok(n) => {
            tracing::info!(by = %who.0.sub, keys = n, "keys reloaded");
            Ok(Json(json!({ "keys": n })))
        }
        Err(e) => {
            tracing::error!(error = %e, "keys reload failed; keeping the old keys");
            Err(ApiError::BadRequest(
                "the keyring could not be loaded or lacks a key the policy needs; the old one stays (details in the server log)".into(),
            ))
        }
    }
}

// ---- encrypt / decrypt service -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoRequest {
    database: Option<String>,
    table: String,
    column: String,
    /// encrypt: the plaintext.
    value: Option<String>,
    /// decrypt: the envelope, base64.
    ciphertext: Option<String>,
    /// The row key, for columns whose policy binds values to their row.
    row_key: Option<String>,
    /// decrypt: answer as this proxy role would see the value (mask, deny …).
    role: Option<String>,
}

fn find_column(state: &AdminState, req: &CryptoRequest) -> Result<Protected, ApiError> {
    let protection = state.shared.protection.load_full();
    protection
        .policy
        .columns()
        .iter()
        .find(|c| {
            c.table == req.table
                && c.column.eq_ignore_ascii_case(&req.column)
                && match (&req.database, &c.database) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        })
        .cloned()
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{}.{} is not protected", req.table, req.column))
        })
}

fn row_key_for(column: &Protected, req: &CryptoRequest) -> Result<Option<Vec<u8>>, ApiError> {
    match (&column.row_key, &req.row_key) {
        (Some(_), Some(k)) => Ok(Some(crate::sql::rewrite::canonical_row_key(k.as_bytes()))),
        (Some(_), None) => Err(ApiError::BadRequest(
            "this column is bound to its row: give row_key".into(),
        )),
        (None, _) => Ok(None),
    }
}

pub async fn encrypt(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Body(req): Body<CryptoRequest>,
) -> Reply {
    let keyring = state.shared.keyring.load_full().ok_or(ApiError::Internal)?;
    let column = find_column(&state, &req)?;
    let value = req
        .value
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("give value".into()))?;
    let canonical = crate::sql::rewrite::canonical(&column, value.as_bytes())
        .map_err(|r| ApiError::BadRequest(r.to_string()))?;
    let row_key = row_key_for(&column, &req)?;
    let sealer = crate::sql::rewrite::KeyringSealer(&keyring, &crate::backend::schema::NO_MIXED);
    use crate::sql::rewrite::Sealer;
    let envelope = sealer
        .seal(&column, &canonical, row_key.as_deref())
        .map_err(|e| {
            tracing::error!(error = %e, "encrypt service: seal failed");
            ApiError::Internal
        })?;
    let blind = match &column.blind_index {
        Some(_) => Some(hex::encode(sealer.blind(&column, &canonical).map_err(
            |e| {
                tracing::error!(error = %e, "encrypt service: blind index failed");
                ApiError::Internal
            },
        )?)),
        None => None,
    };
    tracing::info!(by = %who.0.sub, column = %column.scope(), "encrypt service");
    Ok(Json(json!({
        "ciphertext": B64.encode(&envelope),
        "blind_index": blind,
    })))
}

pub async fn decrypt(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Body(req): Body<CryptoRequest>,
) -> Reply {
    // Security: plaintext without a proxy role's view is for admins only; operators must
    // name a role and get exactly what that role gets through SQL.
    if req.role.is_none() && who.0.role != AdminRole::Admin {
        return Err(ApiError::Forbidden);
    }
    let keyring = state.shared.keyring.load_full().ok_or(ApiError::Internal)?;
    let column = find_column(&state, &req)?;
    let envelope = req
        .ciphertext
        .as_deref()
        .and_then(|c| B64.decode(c).ok())
        .ok_or_else(|| ApiError::BadRequest("give ciphertext (base64)".into()))?;
    let access = match &req.role {
        Some(role) => column.decide(role),
        None => Access::Plaintext,
    };
    if access == Access::Deny {
        return Err(ApiError::Forbidden);
    }
    if access == Access::Ciphertext {
        return Ok(Json(json!({ "ciphertext": B64.encode(&envelope) })));
    }
    let row_key = row_key_for(&column, &req)?;
    // The service takes the envelope itself (base64 on the wire), whatever the storage.
    let cell = crate::crypto::cells::Cell {
        scope: column.key_scope(),
        table: &column.table,
        column: &column.column,
        plaintext_type: column.type_name(),
        normalize: column.normalize,
        row_key: row_key.as_deref(),
    };
    let plain = Zeroizing::new(
        crate::crypto::cells::open(&keyring, &cell, &envelope).map_err(|_| {
            ApiError::BadRequest(format!(
                "the value does not open as {} (tampered, other column or unknown key)",
                column.scope()
            ))
        })?,
    );
    let shown = match &access {
        Access::Mask(mask) => {
            let key = crate::crypto::cells::mask_key(&keyring, &column.scope())
                .ok_or(ApiError::Internal)?;
            crate::crypto::mask::apply(
                mask,
                column.plain_type.kind(),
                &plain,
                column.plain_type.max_chars(),
                &key,
            )
        }
        _ => Some(plain.to_vec()),
    };
    tracing::info!(by = %who.0.sub, column = %column.scope(), "decrypt service");
    let value = match shown {
        None => Value::Null,
        Some(v) => match String::from_utf8(v) {
            Ok(s) => json!(s),
            Err(e) => json!({ "base64": B64.encode(e.as_bytes()) }),
        },
    };
    Ok(Json(json!({ "value": value })))
}
