//! tokens: SQL tokens — credentials an operator issues on the admin port for an app, which
//! the app sends as its MySQL password — and the revocation store that every myveil instance
//! on one backend shares (tables in a `myveil` schema there).
//!
//! A token is `mvt_<id>_<secret>`: 8 random bytes of id (hex) and 32 of secret (base64url).
//! At rest the store keeps only
//! - `id_hash` = HMAC(k_id, id): rows are found by it, and a leaked table does not give the
//!   ids out;
//! - `verifier` = HMAC(k_verify, id ‖ secret): enough to check a token, useless to forge one;
//! - `meta`: who the token is for, its role, issuer and times, sealed with AES-256-GCM under
//!   k_meta with the id_hash as AAD, so rows cannot be edited or swapped.
//!
//! All three keys are derived (HKDF-SHA256) from the keyring's JWT key, which every instance
//! sharing a backend already shares. Admin-port logouts are stored the same way
//! (`revoked_jwt`, by HMAC of the token id).
//!
//! Lookups are cached for `cache_ttl`: that is the bound on how long another instance may
//! still accept a token after it was revoked. The instance that revokes forgets at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Every token starts with this, so a password can be told from a token without a lookup.
pub const PREFIX: &str = "mvt_";
const ID_LEN: usize = 8;
const SECRET_LEN: usize = 32;
/// At most this many lookups are cached; past it the cache starts over.
const CACHE_CAP: usize = 10_000;
const META_AAD: &[u8] = b"myveil sql token v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token store: {0}")]
    Db(#[from] mysql_async::Error),
    #[error("token store schema name {0:?} is not a plain identifier")]
    BadSchema(String),
    #[error("token store: a stored token record does not authenticate")]
    Corrupt,
    #[error("{0}")]
    Invalid(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Zeroize, ZeroizeOnDrop)]
struct Keys {
    id: [u8; 32],
    verify: [u8; 32],
    meta: [u8; 32],
}

impl Keys {
    fn derive(root: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"myveil tokens"), root);
        let mut k = Keys {
            id: [0; 32],
            verify: [0; 32],
            meta: [0; 32],
        };
        // Expanding 32 bytes from SHA-256 HKDF cannot fail.
        let _ = hk.expand(b"id", &mut k.id);
        let _ = hk.expand(b"verify", &mut k.verify);
        let _ = hk.expand(b"meta", &mut k.meta);
        k
    }

    fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// What the store knows of a token (decrypted `meta`, plus its revocation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The public id (the middle part of the token), used to list and revoke it.
    pub id: String,
    /// The MySQL user name the app logs in with.
    pub user: String,
    /// The proxy role the session gets.
    pub role: String,
    pub issued_by: String,
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// A newly issued token: the secret is shown once, here.
pub struct Issued {
    pub token: Zeroizing<String>,
    pub info: TokenInfo,
}

/// A successful token login.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id_hash: [u8; 32],
    pub info: TokenInfo,
}

struct Parsed {
    id: [u8; ID_LEN],
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

fn parse(token: &[u8]) -> Option<Parsed> {
    let rest = token.strip_prefix(PREFIX.as_bytes())?;
    let (id_hex, secret_b64) = rest.split_at_checked(ID_LEN * 2)?;
    let secret_b64 = secret_b64.strip_prefix(b"_")?;
    let mut id = [0; ID_LEN];
    hex::decode_to_slice(id_hex, &mut id).ok()?;
    let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(secret_b64).ok()?);
    let mut secret = Zeroizing::new([0; SECRET_LEN]);
    if decoded.len() != SECRET_LEN {
        return None;
    }
    secret.copy_from_slice(&decoded);
    Some(Parsed { id, secret })
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks a user or role name before it goes into a token.
fn check_name(s: &str) -> Result<()> {
    if crate::auth::valid_name(s) {
        Ok(())
    } else {
        Err(Error::Invalid(
            "names are 1-80 characters from A-Z a-z 0-9 _ . - @",
        ))
    }
}

#[derive(Clone)]
struct Row {
    verifier: [u8; 32],
    info: TokenInfo,
}

/// A lookup and when it was made (None: no such token).
type Cached = (Instant, Option<Row>);

/// The shared store, its caches and the sessions each token has open on this instance.
pub struct TokenStore {
    pool: mysql_async::Pool,
    schema: String,
    keys: Keys,
    cache_ttl: Duration,
    ready: tokio::sync::OnceCell<()>,
    tokens: Mutex<HashMap<[u8; 32], Cached>>,
    /// Admin JWT ids (hashed) and whether they are revoked, as last read.
    jwts: Mutex<HashMap<[u8; 32], (Instant, bool)>>,
    sessions: Mutex<HashMap<[u8; 32], watch::Sender<bool>>>,
    /// Tokens this instance revoked lately: a lookup that raced the revocation cannot bring
    /// the old row back into the cache.
    revoked_here: Mutex<HashMap<[u8; 32], Instant>>,
    /// Revocation time already scanned for session kills.
    kill_scan_from: Mutex<u64>,
}

impl TokenStore {
    /// A store on the backend reached with `opts` (connections are made lazily).
    pub fn new(
        opts: mysql_async::Opts,
        schema: &str,
        root_key: &[u8; 32],
        cache_ttl: Duration,
    ) -> Result<Self> {
        if schema.is_empty()
            || schema.len() > 64
            || !schema
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Error::BadSchema(schema.to_owned()));
        }
        let constraints = mysql_async::PoolConstraints::new(0, 4).unwrap_or_default();
        let opts = mysql_async::OptsBuilder::from_opts(opts).pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(Duration::from_secs(30)),
        );
        Ok(Self {
            pool: mysql_async::Pool::new(opts),
            schema: schema.to_owned(),
            keys: Keys::derive(root_key),
            cache_ttl,
            ready: tokio::sync::OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
            jwts: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            revoked_here: Mutex::new(HashMap::new()),
            kill_scan_from: Mutex::new(now_secs()),
        })
    }

    async fn conn(&self) -> Result<mysql_async::Conn> {
        self.ready
            .get_or_try_init(|| async {
                let mut c = self.pool.get_conn().await?;
                let s = &self.schema;
                c.query_drop(format!(
                    "CREATE DATABASE IF NOT EXISTS `{s}`;
                     CREATE TABLE IF NOT EXISTS `{s}`.sql_tokens (
                       id_hash BINARY(32) PRIMARY KEY,
                       verifier BINARY(32) NOT NULL,
                       meta VARBINARY(1024) NOT NULL,
                       expires_at BIGINT NOT NULL,
                       revoked_at BIGINT NULL,
                       kill_at BIGINT NULL,
                       KEY (kill_at)
                     ) ENGINE=InnoDB;
                     CREATE TABLE IF NOT EXISTS `{s}`.revoked_jwt (
                       jti_hash BINARY(32) PRIMARY KEY,
                       expires_at BIGINT NOT NULL
                     ) ENGINE=InnoDB;
                     CREATE TABLE IF NOT EXISTS `{s}`.totp_used (
                       admin_hash BINARY(32) NOT NULL,
                       step BIGINT NOT NULL,
                       PRIMARY KEY (admin_hash, step)
                     ) ENGINE=InnoDB"
                ))
                .await?;
                Ok::<(), Error>(())
            })
            .await?;
        Ok(self.pool.get_conn().await?)
    }

    /// The schema on the backend the store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Creates the schema and tables if missing; a cheap check afterwards.
    pub async fn ready(&self) -> Result<()> {
        let mut c = self.conn().await?;
        c.query_drop("SELECT 1").await?;
        Ok(())
    }

    fn seal_meta(&self, id_hash: &[u8; 32], info: &TokenInfo) -> Result<Vec<u8>> {
        let cipher = Aes256Gcm::new_from_slice(&self.keys.meta).map_err(|_| Error::Corrupt)?;
        let nonce: [u8; 12] = rand::random();
        let plain = Zeroizing::new(serde_json::to_vec(info).map_err(|_| Error::Corrupt)?);
        let aad = [META_AAD, id_hash].concat();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Corrupt)?;
        Ok([&nonce[..], &sealed].concat())
    }

    fn open_meta(&self, id_hash: &[u8; 32], meta: &[u8]) -> Result<TokenInfo> {
        let cipher = Aes256Gcm::new_from_slice(&self.keys.meta).map_err(|_| Error::Corrupt)?;
        let (nonce, sealed) = meta.split_at_checked(12).ok_or(Error::Corrupt)?;
        let aad = [META_AAD, id_hash].concat();
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| Error::Corrupt)?,
        );
        serde_json::from_slice(&plain).map_err(|_| Error::Corrupt)
    }

    /// Issues a token for `user` with `role`, valid for `ttl`.
    pub async fn issue(
        &self,
        user: &str,
        role: &str,
        ttl: Duration,
        issued_by: &str,
    ) -> Result<Issued> {
        check_name(user)?;
        check_name(role)?;
        if ttl.is_zero() {
            return Err(Error::Invalid("ttl must be positive"));
        }
        let id: [u8; ID_LEN] = rand::random();
        let secret = Zeroizing::new(rand::random::<[u8; SECRET_LEN]>());
        let now = now_secs();
        let info = TokenInfo {
            id: hex::encode(id),
            user: user.to_owned(),
            role: role.to_owned(),
            issued_by: issued_by.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(ttl.as_secs()),
            revoked_at: None,
        };
        let id_hash = Keys::mac(&self.keys.id, &[&id]);
        let verifier = Keys::mac(&self.keys.verify, &[&id, &secret[..]]);
        let meta = self.seal_meta(&id_hash, &info)?;
        let mut c = self.conn().await?;
        c.exec_drop(
            format!(
                "INSERT INTO `{}`.sql_tokens (id_hash, verifier, meta, expires_at) VALUES (?, ?, ?, ?)",
                self.schema
            ),
            (&id_hash[..], &verifier[..], meta, info.expires_at),
        )
        .await?;
        let token = Zeroizing::new(format!(
            "{PREFIX}{}_{}",
            info.id,
            URL_SAFE_NO_PAD.encode(&secret[..])
        ));
        Ok(Issued { token, info })
    }

    /// Every token in the store (expired and revoked ones too, until they are purged).
    pub async fn list(&self) -> Result<Vec<TokenInfo>> {
        let mut c = self.conn().await?;
        let rows: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = c
            .query(format!(
                "SELECT id_hash, meta, revoked_at FROM `{}`.sql_tokens",
                self.schema
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id_hash, meta, revoked_at) in rows {
            let Ok(id_hash) = <[u8; 32]>::try_from(id_hash.as_slice()) else {
                continue;
            };
            match self.open_meta(&id_hash, &meta) {
                Ok(mut info) => {
                    info.revoked_at = revoked_at;
                    out.push(info);
                }
                Err(_) => tracing::warn!("a token record does not authenticate; skipped"),
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes the token with public id `id`. With `kill_sessions`, its live sessions end too
    /// (here at once, on other instances within the cache TTL). False: no such token.
    pub async fn revoke(&self, id: &str, kill_sessions: bool) -> Result<bool> {
        let mut raw = [0; ID_LEN];
        if hex::decode_to_slice(id, &mut raw).is_err() {
            return Ok(false);
        }
        let id_hash = Keys::mac(&self.keys.id, &[&raw]);
        let mut c = self.conn().await?;
        c.exec_drop(
            format!(
                "UPDATE `{}`.sql_tokens SET revoked_at = COALESCE(revoked_at, ?), \
                 kill_at = IF(?, ?, kill_at) WHERE id_hash = ?",
                self.schema
            ),
            (now_secs(), kill_sessions, now_secs(), &id_hash[..]),
        )
        .await?;
        let found = c.affected_rows() > 0
            || c.exec_first::<u8, _, _>(
                format!(
                    "SELECT 1 FROM `{}`.sql_tokens WHERE id_hash = ?",
                    self.schema
                ),
                (&id_hash[..],),
            )
            .await?
            .is_some();
        if let Ok(mut r) = self.revoked_here.lock() {
            let keep = self.cache_ttl.max(Duration::from_secs(60));
            r.retain(|_, at| at.elapsed() < keep);
            r.insert(id_hash, Instant::now());
        }
        if let Ok(mut t) = self.tokens.lock() {
            t.remove(&id_hash);
        }
        if found && kill_sessions {
            self.kill_local(&id_hash);
        }
        Ok(found)
    }

    async fn fetch(&self, id_hash: &[u8; 32]) -> Result<Option<Row>> {
        let mut c = self.conn().await?;
        let row: Option<(Vec<u8>, Vec<u8>, Option<u64>)> = c
            .exec_first(
                format!(
                    "SELECT verifier, meta, revoked_at FROM `{}`.sql_tokens WHERE id_hash = ?",
                    self.schema
                ),
                (&id_hash[..],),
            )
            .await?;
        let Some((verifier, meta, revoked_at)) = row else {
            return Ok(None);
        };
        let verifier = <[u8; 32]>::try_from(verifier.as_slice()).map_err(|_| Error::Corrupt)?;
        let mut info = self.open_meta(id_hash, &meta)?;
        info.revoked_at = revoked_at;
        Ok(Some(Row { verifier, info }))
    }

    /// Checks a token sent as the password of `user`. None: not a valid, live token for
    /// that user. Errors (store unreachable) refuse the login too.
    pub async fn authenticate(&self, token: &[u8], user: &[u8]) -> Result<Option<Grant>> {
        let Some(parsed) = parse(token) else {
            return Ok(None);
        };
        let id_hash = Keys::mac(&self.keys.id, &[&parsed.id]);
        let cached = self.tokens.lock().ok().and_then(|t| {
            t.get(&id_hash)
                .filter(|(at, _)| at.elapsed() < self.cache_ttl)
                .map(|(_, r)| r.clone())
        });
        let row = match cached {
            Some(r) => r,
            None => {
                let fetched = self.fetch(&id_hash).await?;
                if !self.cache_ttl.is_zero()
                    && let Ok(mut t) = self.tokens.lock()
                {
                    if t.len() >= CACHE_CAP {
                        t.clear();
                    }
                    t.insert(id_hash, (Instant::now(), fetched.clone()));
                }
                fetched
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        if self
            .revoked_here
            .lock()
            .map(|r| r.contains_key(&id_hash))
            .unwrap_or(true)
        {
            return Ok(None);
        }
        let expected = Keys::mac(&self.keys.verify, &[&parsed.id, &parsed.secret[..]]);
        // Security: constant-time comparison of the verifier; the user name must match the
        // one the token was issued for, and revoked or expired tokens never log in.
        let genuine: bool = expected.ct_eq(&row.verifier).into();
        if !genuine
            || row.info.user.as_bytes() != user
            || row.info.revoked_at.is_some()
            || row.info.expires_at <= now_secs()
        {
            return Ok(None);
        }
        Ok(Some(Grant {
            id_hash,
            info: row.info,
        }))
    }

    /// A receiver that turns true when the token's sessions must end.
    pub fn subscribe(&self, id_hash: &[u8; 32]) -> watch::Receiver<bool> {
        let Ok(mut s) = self.sessions.lock() else {
            let (_, rx) = watch::channel(true);
            return rx;
        };
        s.retain(|_, tx| tx.receiver_count() > 0);
        s.entry(*id_hash)
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    fn kill_local(&self, id_hash: &[u8; 32]) {
        if let Ok(s) = self.sessions.lock()
            && let Some(tx) = s.get(id_hash)
        {
            let _ = tx.send(true);
            tracing::info!(
                sessions = tx.receiver_count(),
                "ending the sessions of a revoked token"
            );
        }
    }

    /// Ends local sessions of tokens another instance revoked with `kill_sessions`, and drops
    /// what has expired for good. Run every few seconds.
    pub async fn sync(&self) -> Result<()> {
        let since = self.kill_scan_from.lock().map(|f| *f).unwrap_or(0);
        let now = now_secs();
        let mut c = self.conn().await?;
        let killed: Vec<Vec<u8>> = c
            .exec(
                format!(
                    "SELECT id_hash FROM `{}`.sql_tokens WHERE kill_at >= ?",
                    self.schema
                ),
                // Overlap a little: clocks of instances differ.
                (since.saturating_sub(60 + self.cache_ttl.as_secs()),),
            )
            .await?;
        for h in killed {
            if let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) {
                self.kill_local(&h);
            }
        }
        if let Ok(mut f) = self.kill_scan_from.lock() {
            *f = now;
        }
        c.exec_drop(
            format!(
                "DELETE FROM `{}`.revoked_jwt WHERE expires_at < ?",
                self.schema
            ),
            (now.saturating_sub(3600),),
        )
        .await?;
        // Steps older than the drift window can never be presented again.
        c.exec_drop(
            format!("DELETE FROM `{}`.totp_used WHERE step < ?", self.schema),
            ((now / 30).saturating_sub(10),),
        )
        .await?;
        Ok(())
    }

    fn jti_hash(&self, jti: &str) -> [u8; 32] {
        Keys::mac(&self.keys.id, &[b"jwt:", jti.as_bytes()])
    }

    /// Claims a TOTP time step for an admin; false when any instance already used it.
    pub async fn claim_totp_step(&self, admin: &str, step: u64) -> Result<bool> {
        let h = Keys::mac(&self.keys.id, &[b"totp:", admin.as_bytes()]);
        let mut c = self.conn().await?;
        c.exec_drop(
            format!(
                "INSERT IGNORE INTO `{}`.totp_used (admin_hash, step) VALUES (?, ?)",
                self.schema
            ),
            (&h[..], step),
        )
        .await?;
        Ok(c.affected_rows() == 1)
    }

    /// Records an admin-port token as revoked until it would have expired anyway.
    pub async fn revoke_jwt(&self, jti: &str, expires_at: u64) -> Result<()> {
        let h = self.jti_hash(jti);
        if let Ok(mut j) = self.jwts.lock() {
            j.insert(h, (Instant::now(), true));
        }
        let mut c = self.conn().await?;
        c.exec_drop(
            format!(
                "INSERT IGNORE INTO `{}`.revoked_jwt (jti_hash, expires_at) VALUES (?, ?)",
                self.schema
            ),
            (&h[..], expires_at),
        )
        .await?;
        Ok(())
    }

    /// Whether an admin-port token was revoked (by any instance, seen within the cache TTL).
    /// Errors mean "cannot tell": callers refuse.
    pub async fn is_jwt_revoked(&self, jti: &str) -> Result<bool> {
        let h = self.jti_hash(jti);
        if let Some(revoked) = self.jwts.lock().ok().and_then(|j| {
            j.get(&h)
                .filter(|(at, revoked)| *revoked || at.elapsed() < self.cache_ttl)
                .map(|(_, r)| *r)
        }) {
            return Ok(revoked);
        }
        let mut c = self.conn().await?;
        let found: Option<u8> = c
            .exec_first(
                format!(
                    "SELECT 1 FROM `{}`.revoked_jwt WHERE jti_hash = ?",
                    self.schema
                ),
                (&h[..],),
            )
            .await?;
        if let Ok(mut j) = self.jwts.lock() {
            if j.len() >= CACHE_CAP {
                j.clear();
            }
            j.insert(h, (Instant::now(), found.is_some()));
        }
        Ok(found.is_some())
    }

    /// Closes the store's connections.
    pub async fn close(&self) {
        let _ = self.pool.clone().disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format_parses_strictly() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; SECRET_LEN]);
        let good = format!("{PREFIX}0011223344556677_{secret}");
        let p = parse(good.as_bytes()).expect("parses");
        assert_eq!(p.id, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
        for bad in [
            String::new(),
            "mvt_".into(),
            format!("mvt_001122334455667_{secret}"),
            format!("mvt_0011223344556677{secret}"),
            format!("mvt_zz11223344556677_{secret}"),
            format!("mvt_0011223344556677_{secret}A"),
            format!("xvt_0011223344556677_{secret}"),
            "mvt_0011223344556677_".into(),
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn meta_is_bound_to_its_row() {
        let store = TokenStore::new(
            mysql_async::OptsBuilder::default().into(),
            "myveil",
            &[9; 32],
            Duration::from_secs(5),
        )
        .expect("store");
        let info = TokenInfo {
            id: "00".into(),
            user: "app".into(),
            role: "reader".into(),
            issued_by: "ops".into(),
            created_at: 1,
            expires_at: 2,
            revoked_at: None,
        };
        let sealed = store.seal_meta(&[1; 32], &info).expect("seal");
        assert_eq!(store.open_meta(&[1; 32], &sealed).expect("open"), info);
        assert!(
            store.open_meta(&[2; 32], &sealed).is_err(),
            "moved to another row"
        );
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(store.open_meta(&[1; 32], &flipped).is_err(), "edited");
        assert!(store.open_meta(&[1; 32], &sealed[..10]).is_err(), "cut");
        assert!(matches!(
            TokenStore::new(
                mysql_async::OptsBuilder::default().into(),
                "my`veil",
                &[9; 32],
                Duration::ZERO
            ),
            Err(Error::BadSchema(_))
        ));
    }
}
