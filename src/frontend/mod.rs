//! frontend: the MySQL listener — accept loop with a connection limit, one task per client
//! session, graceful drain on shutdown.

mod error;
pub(crate) mod handshake;
pub mod ids;
mod mux;
pub mod prepared;
pub mod relay;
mod session;
mod statements;
pub mod transform;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::{User, UserStore};
use crate::backend::state::{TrackingDefaults, VarSet};
use crate::backend::{Pool, PoolConfig};
use crate::config::{Config, Password};
use crate::crypto::keyring::{Keyring, Purpose};
use crate::limits::{Failures, LimitClock};
use crate::policy::Policy;
use crate::tokens::TokenStore;
use crate::wire::packets::{ER_CON_COUNT_ERROR, ErrorReply};
use crate::wire::{PacketConn, Stream};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] crate::policy::Error),
    #[error(transparent)]
    Keys(#[from] crate::crypto::Error),
    #[error("protection: {0}")]
    Protection(String),
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Users(#[from] crate::auth::Error),
    #[error("tls: {0}")]
    Tls(#[from] crate::wire::Error),
    #[error(transparent)]
    Tokens(#[from] crate::tokens::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// How often the columns of protected tables are re-read.
const SCHEMA_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How often the server's counters of executed DDL are read: a view, routine, trigger or
/// column created on the database directly (not through myveil) is in the snapshot this
/// long after it was made, plus one schema read.
const DDL_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The server's counters of schema changes (every CREATE, ALTER, DROP and RENAME of a
/// database object, by anyone, also inside routines and prepared statements).
pub const DDL_COUNTERS: &str = "SHOW GLOBAL STATUS WHERE (Variable_name LIKE 'Com\\_create\\_%' \
     OR Variable_name LIKE 'Com\\_alter\\_%' OR Variable_name LIKE 'Com\\_drop\\_%' \
     OR Variable_name LIKE 'Com\\_rename\\_%') AND Variable_name NOT LIKE '%temporary%' \
     AND Variable_name NOT LIKE '%user' AND Variable_name NOT LIKE '%role'";

/// Large statements (analyzed on blocking threads) analyzed at once.
const ANALYSIS_SLOTS: usize = 2;

/// Everything a guard decision needs, owned, so a large statement can be decided on a
/// blocking thread.
/// Borrowed from the session for a decision made inline; owned for one on the blocking pool.
pub(crate) struct Decide<'s> {
    pub shared: Arc<Shared>,
    pub protection: Arc<Protection>,
    pub state: std::borrow::Cow<'s, crate::backend::state::SessionState>,
    pub role: std::borrow::Cow<'s, str>,
    pub server_version: u32,
    pub store: Option<std::borrow::Cow<'s, str>>,
    pub sql_prepared:
        std::borrow::Cow<'s, std::collections::HashMap<String, crate::guard::SqlPrepared>>,
    /// The session's cache of decisions (shared with the session, which outlives this).
    pub cache: Arc<std::sync::Mutex<crate::guard::ShapeCache>>,
}

/// Sealing without keys: every seal fails (a policy without keys never gets this far).
struct NoKeys;

impl crate::sql::rewrite::Sealer for NoKeys {
    fn seal(
        &self,
        _: &crate::policy::Protected,
        _: &[u8],
        _: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error> {
        Err(crate::crypto::Error::Malformed("no keys loaded"))
    }
    fn blind(
        &self,
        _: &crate::policy::Protected,
        _: &[u8],
    ) -> Result<[u8; 32], crate::crypto::Error> {
        Err(crate::crypto::Error::Malformed("no keys loaded"))
    }
    fn blind_all(
        &self,
        _: &crate::policy::Protected,
        _: &[u8],
    ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
        Err(crate::crypto::Error::Malformed("no keys loaded"))
    }
    fn blind_keys(&self, _: &crate::policy::Protected) -> usize {
        0
    }
    fn open(&self, _: &crate::policy::Protected, _: &[u8], _: Option<&[u8]>) -> Option<Vec<u8>> {
        None
    }
}

impl Decide<'_> {
    pub fn run(&self, text: &[u8], command: crate::guard::Command) -> crate::guard::Decision {
        let schema = self.shared.schema.load();
        let mut reach = self.shared.reach.load_full();
        if reach.version != self.protection.version {
            // Security: names built from another policy never decide a statement.
            reach = Arc::new(crate::guard::Reach::new(
                &self.protection.policy,
                &self.protection.version,
                &schema,
            ));
        }
        let keyring = self.shared.keyring.load();
        let keyring = keyring.as_deref();
        let with_keys;
        let sealer: &dyn crate::sql::rewrite::Sealer = match keyring {
            Some(k) => {
                with_keys = crate::sql::rewrite::KeyringSealer(k, &schema.mixed);
                &with_keys
            }
            None => &NoKeys,
        };
        let cx = crate::guard::Context {
            state: &self.state,
            policy: &self.protection.policy,
            schema: &schema,
            reach: &reach,
            role: &self.role,
            server_version: self.server_version,
            store_schema: self.store.as_deref(),
            sealer,
            sql_prepared: &self.sql_prepared,
            max_analyzed_bytes: self
                .shared
                .config
                .protection
                .as_ref()
                .map_or(crate::guard::DEFAULT_MAX_ANALYZED_BYTES, |p| {
                    p.max_analyzed_bytes
                }),
            cache: Some(&self.cache),
        };
        crate::guard::decide(text, command, &cx)
    }
}

/// How often idle backend connections past their idle timeout are closed.
const POOL_REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The policy in force and its version.
pub struct Protection {
    pub policy: Policy,
    /// A short digest of the policy's content, to tell versions apart (status, reloads).
    pub version: String,
}

impl Protection {
    pub fn new(policy: Policy) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{:?}", policy.columns()).as_bytes());
        let version = hex::encode(&digest[..8]);
        Self { policy, version }
    }

    pub fn is_active(&self) -> bool {
        !self.policy.columns().is_empty()
    }
}

/// Checks that the keyring has every key the policy needs.
/// Each backend account's connection limit, and backend users' together.
fn limits(config: &Config) -> std::collections::HashMap<String, usize> {
    let accounts = config
        .backend
        .accounts
        .iter()
        .filter_map(|(name, a)| Some((name.clone(), a.max_backend_connections?)));
    let backend_users = config
        .backend_users
        .as_ref()
        .and_then(|b| b.max_backend_connections)
        .map(|n| (crate::backend::BACKEND_USERS.to_owned(), n));
    accounts.chain(backend_users).collect()
}

fn check_keys(policy: &Policy, keyring: Option<&Keyring>) -> Result<(), Error> {
    if policy.columns().is_empty() {
        return Ok(());
    }
    let Some(keyring) = keyring else {
        return Err(Error::Protection(
            "the policy protects columns but no keys are loaded".into(),
        ));
    };
    for c in policy.columns() {
        let scope = c.scope();
        let missing = |what: &str| {
            Error::Protection(format!("no {what} key for {scope}; run `myveil keygen`"))
        };
        keyring
            .primary(Purpose::Column, &scope)
            .ok_or_else(|| missing("column"))?;
        if c.blind_index.is_some() {
            keyring
                .primary(Purpose::BlindIndex, &scope)
                .ok_or_else(|| missing("blind-index"))?;
        }
        keyring
            .primary(Purpose::Mask, &scope)
            .ok_or_else(|| missing("mask"))?;
    }
    Ok(())
}

/// State every session reads.
pub struct Shared {
    pub config: Config,
    pub users: ArcSwap<UserStore>,
    pub protection: ArcSwap<Protection>,
    /// Swapped whole by a reload after a rotation (`reload_keys`).
    pub keyring: arc_swap::ArcSwapOption<Keyring>,
    /// The schema around protected tables as the database has it (refreshed in the
    /// background).
    pub schema: ArcSwap<crate::backend::schema::Snapshot>,
    /// The names that lead a statement to protected data (policy and schema together).
    pub reach: ArcSwap<crate::guard::Reach>,
    /// Large statements analyzed at once (each on a blocking thread).
    pub analysis_slots: Semaphore,
    /// Refreshes after DDL run one at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Held while the policy or the schema and the reach built from both are swapped, so
    /// a reload and a refresh never leave a reach built from a stale policy.
    update: std::sync::Mutex<()>,
    pub pool: Pool,
    /// The connection ids clients see, of every live session.
    pub sessions: Arc<ids::Sessions>,
    /// The server's session-tracking defaults: what a client asking for tracking gets.
    pub tracking_defaults: ArcSwap<TrackingDefaults>,
    pub tls: Option<TlsAcceptor>,
    /// SQL tokens and revocations (with the admin port only).
    pub tokens: Option<Arc<TokenStore>>,
    /// MySQL-port login failures per client address and per user name.
    pub auth_failures_ip: Failures<IpAddr>,
    pub auth_failures_user: Failures<String>,
    passwords: BTreeMap<String, Password>,
    /// The guard's plan cache of each role, shared by the role's sessions (a decision
    /// depends on the role, never on the session: guard::ShapeCache).
    plans: std::sync::Mutex<BTreeMap<String, Arc<std::sync::Mutex<crate::guard::ShapeCache>>>>,
}

impl Shared {
    /// The plan cache `role`'s sessions share.
    /// The variables every backend session tracks: the clients' defaults, or in
    /// multiplexed mode all of them (a session's state must be known whole to move it).
    pub(crate) fn tracked_variables(&self) -> crate::backend::state::VarSet {
        match self.config.backend.mode {
            crate::config::BackendMode::Multiplexed => crate::backend::state::VarSet::All,
            crate::config::BackendMode::Pinned => self.tracking_defaults.load().variables.clone(),
        }
    }

    pub(crate) fn plans_for(&self, role: &str) -> Arc<std::sync::Mutex<crate::guard::ShapeCache>> {
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        plans.entry(role.to_owned()).or_default().clone()
    }

    /// Loads users, backend credentials and TLS material named by the configuration.
    pub fn new(config: Config) -> Result<Self, Error> {
        let users = UserStore::load(&config.resolve(&config.users.file))?;
        let mut passwords = BTreeMap::new();
        for name in config.backend.accounts.keys() {
            passwords.insert(name.clone(), config.account_password(name)?);
        }
        let tls = match &config.tls {
            Some(t) => Some(crate::wire::tls::acceptor(
                &config.resolve(&t.cert),
                &config.resolve(&t.key),
            )?),
            None => None,
        };
        let backend_tls = match &config.backend.tls_ca {
            Some(ca) => {
                let name = config
                    .backend
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| config.backend.host().to_owned());
                Some((crate::wire::tls::connector(&config.resolve(ca))?, name))
            }
            None => None,
        };
        let (policy, keyring) = match &config.protection {
            Some(p) => {
                let policy = Policy::load_dir(&config.resolve(&p.policy_dir))?;
                let dir = config.resolve(&p.keys_dir);
                let keyring = if policy.columns().is_empty() && config.admin.is_none() {
                    None
                } else if p.generate_missing_keys
                    && !dir.join(crate::crypto::keyring::MASTER_KEY_FILE).exists()
                {
                    let wanted = policy.required_keys();
                    let wanted: Vec<(Purpose, &str)> =
                        wanted.iter().map(|(k, s)| (*k, s.as_str())).collect();
                    tracing::warn!(dir = %dir.display(), "no keys found: generating new ones (generate_missing_keys is set)");
                    Some(Arc::new(Keyring::generate(&dir, &wanted)?))
                } else {
                    Some(Arc::new(Keyring::load(&dir)?))
                };
                (policy, keyring)
            }
            None => (Policy::default(), None),
        };
        check_keys(&policy, keyring.as_deref())?;
        let pool = Pool::new(PoolConfig {
            address: config.backend.address.clone(),
            connect_timeout: config.backend.connect_timeout(),
            max_idle: config.backend.pool_max_idle,
            idle_timeout: config.backend.pool_idle_timeout(),
            tls: backend_tls,
            limits: limits(&config),
            queue: config.backend.wait_queue,
            queue_timeout: config.backend.wait_timeout(),
        });
        let tokens = match (&config.admin, &keyring) {
            (Some(admin), Some(keyring)) => {
                let (_, key) = keyring.primary(Purpose::Jwt, "*").ok_or_else(|| {
                    Error::Protection("no JWT key in the keyring; run `myveil keygen`".into())
                })?;
                Some(Arc::new(TokenStore::new(
                    control_opts(&config, &passwords)?,
                    &admin.store_schema,
                    key.bytes(),
                    std::time::Duration::from_secs(admin.cache_ttl_secs),
                )?))
            }
            _ => None,
        };
        let clock = LimitClock::default();
        let protection = Arc::new(Protection::new(policy));
        let reach = crate::guard::Reach::new(
            &protection.policy,
            &protection.version,
            &crate::backend::schema::Snapshot::default(),
        );
        Ok(Self {
            tokens,
            auth_failures_ip: Failures::new(config.listen.auth_failures_per_minute_ip, &clock),
            auth_failures_user: Failures::new(config.listen.auth_failures_per_minute_user, &clock),
            plans: std::sync::Mutex::default(),
            users: ArcSwap::from_pointee(users),
            protection: ArcSwap::new(protection),
            keyring: arc_swap::ArcSwapOption::new(keyring),
            reach: ArcSwap::from_pointee(reach),
            update: std::sync::Mutex::new(()),
            schema: ArcSwap::from_pointee(crate::backend::schema::Snapshot::default()),
            analysis_slots: Semaphore::new(ANALYSIS_SLOTS),
            refreshing: tokio::sync::Mutex::new(()),
            pool,
            sessions: Arc::default(),
            tracking_defaults: ArcSwap::from_pointee(TrackingDefaults::default()),
            tls,
            passwords,
            config,
        })
    }

    /// The backend account (name and password) of a user's role.
    pub fn account_for(&self, user: &User) -> Option<(&str, &Password)> {
        let account = &self.config.roles.get(&user.role)?.backend_account;
        let password = self.passwords.get(account)?;
        Some((account.as_str(), password))
    }

    /// Re-reads the policy; it is validated against the keys first and the old policy stays
    /// on any error.
    pub fn reload_policy(&self) -> Result<usize, Error> {
        let Some(p) = &self.config.protection else {
            return Ok(0);
        };
        let policy = Policy::load_dir(&self.config.resolve(&p.policy_dir))?;
        check_keys(&policy, self.keyring.load().as_deref())?;
        let n = policy.columns().len();
        let protection = Arc::new(Protection::new(policy));
        let _update = self.update.lock().unwrap_or_else(|e| e.into_inner());
        self.reach.store(Arc::new(crate::guard::Reach::new(
            &protection.policy,
            &protection.version,
            &self.schema.load(),
        )));
        self.protection.store(protection);
        Ok(n)
    }

    /// Options for a control-plane connection (schema reads), as the first backend account.
    pub fn control_opts(&self) -> Result<mysql_async::Opts, Error> {
        control_opts(&self.config, &self.passwords)
    }

    /// Persists the per-key seal counts (logged, not fatal, on failure).
    pub fn save_key_usage(&self) {
        if let Some(k) = self.keyring.load().as_deref()
            && let Err(e) = k.save_usage()
        {
            tracing::warn!(error = %e, "could not save key usage counts");
        }
    }

    /// The reserved schema `name` is, if it is one: the token store's, or (while columns are
    /// protected) the migration state's. Security: neither is reachable through the proxy,
    /// not even as the current database (where unqualified names would reach it).
    pub fn reserved_schema(&self, name: &[u8]) -> Option<String> {
        if let Some(t) = &self.tokens
            && name.eq_ignore_ascii_case(t.schema().as_bytes())
        {
            return Some(t.schema().to_owned());
        }
        let state = crate::migrate::state::SCHEMA;
        (self.protection.load().is_active() && name.eq_ignore_ascii_case(state.as_bytes()))
            .then(|| state.to_owned())
    }

    /// Re-reads the keyring after `myveil keys rotate` (or a KEK rotation), so new writes
    /// seal under the new primary keys while the old ones still open. The policy must find
    /// every key it needs in the new keyring; the old one stays on any error. Returns the
    /// keys in it.
    pub fn reload_keys(&self) -> Result<usize, Error> {
        let Some(p) = &self.config.protection else {
            return Ok(0);
        };
        let Some(old) = self.keyring.load_full() else {
            return Ok(0);
        };
        // The seal counts so far go to the file the new keyring reads them from.
        if let Err(e) = old.save_usage() {
            tracing::warn!(error = %e, "could not save key usage counts");
        }
        let new = Keyring::load(&self.config.resolve(&p.keys_dir))?;
        check_keys(&self.protection.load().policy, Some(&new))?;
        let n = new.infos().count();
        self.keyring.store(Some(Arc::new(new)));
        Ok(n)
    }

    /// Reads the live columns of the protected tables and swaps them in.
    pub async fn refresh_schema(&self) -> Result<(), Error> {
        let protection = self.protection.load_full();
        if !protection.is_active() {
            return Ok(());
        }
        let mut conn = mysql_async::Conn::new(self.control_opts()?)
            .await
            .map_err(|e| Error::Protection(format!("schema: {e}")))?;
        let snapshot = crate::backend::schema::load(&mut conn, &protection.policy)
            .await
            .map_err(|e| Error::Protection(format!("schema: {e}")))?;
        let _ = conn.disconnect().await;
        // What `myveil check` would report, one line each, at start and after every refresh
        // (names and types only, never values).
        for problem in crate::backend::schema::check(&snapshot, &protection.policy) {
            tracing::warn!(
                %problem,
                "protected column not ready: writes to it fail until fixed (myveil migrate plan shows the DDL)"
            );
        }
        let _update = self.update.lock().unwrap_or_else(|e| e.into_inner());
        // Security: the reach comes from the policy in force now, not the one the refresh
        // started with (a reload may have come in between).
        let current = self.protection.load();
        self.reach.store(Arc::new(crate::guard::Reach::new(
            &current.policy,
            &current.version,
            &snapshot,
        )));
        self.schema.store(Arc::new(snapshot));
        Ok(())
    }

    /// Reads the server's global session-tracking settings (what clients that ask for
    /// tracking get by default) and swaps them in.
    pub async fn refresh_tracking_defaults(&self) -> Result<(), Error> {
        use mysql_async::prelude::Queryable;
        let fail = |e: mysql_async::Error| Error::Protection(format!("tracking defaults: {e}"));
        let mut conn = mysql_async::Conn::new(self.control_opts()?)
            .await
            .map_err(fail)?;
        let row: Option<(String, String)> = conn
            .query_first(
                "SELECT @@global.session_track_system_variables, @@global.session_track_schema",
            )
            .await
            .map_err(fail)?;
        let _ = conn.disconnect().await;
        if let Some((variables, schema)) = row {
            self.tracking_defaults.store(Arc::new(TrackingDefaults {
                variables: VarSet::parse(&variables),
                schema: schema == "1" || schema.eq_ignore_ascii_case("on"),
            }));
        }
        Ok(())
    }

    /// DDL on protected tables went through: the schema snapshot is read again before the
    /// session reads its next command, so the statements that follow (an INSERT without a
    /// column list into a table just created, say) see the new columns. Refreshes run one
    /// at a time; each starts after the DDL that asked for it.
    pub async fn schema_changed(&self) {
        let _one = self.refreshing.lock().await;
        if let Err(e) = self.refresh_schema().await {
            tracing::warn!(error = %e, "could not read the schema of protected tables");
        }
    }

    /// Watches the server's DDL counters and reads the schema again when they move: objects
    /// made on the database directly reach the guard within a poll interval, not at the next
    /// periodic refresh. Runs until `stop`.
    /// On the same connection, it reports this instance's keyring to `myveil.instances`
    /// (`migrate::state::report_instance`) every heartbeat and within a poll of a reload, and
    /// removes the row when it stops.
    async fn watch_ddl(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        use mysql_async::prelude::Queryable;
        let mut conn: Option<mysql_async::Conn> = None;
        let mut last: Option<u64> = None;
        let mut failing = false;
        let mut report = InstanceReport::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DDL_POLL_INTERVAL) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    if let Some(c) = conn.as_mut() {
                        report.forget(c).await;
                    }
                    return;
                }
            }
            if !self.protection.load().is_active() {
                continue;
            }
            if conn.is_none() {
                conn = match self.control_opts() {
                    Ok(o) => mysql_async::Conn::new(o).await.ok(),
                    Err(_) => None,
                };
            }
            let Some(c) = conn.as_mut() else { continue };
            let read: Result<Vec<(String, String)>, _> = c.query(DDL_COUNTERS).await;
            let total = match read {
                Ok(rows) => {
                    failing = false;
                    rows.iter()
                        .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
                        .sum::<u64>()
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "could not read the server's DDL counters");
                    }
                    failing = true;
                    conn = None;
                    continue;
                }
            };
            if let Some(ring) = self.keyring.load_full() {
                report.maybe(c, &ring).await;
            }
            if last.is_some_and(|l| l != total) {
                tracing::debug!(ddl_total = total, "schema changed on the server");
                self.schema_changed().await;
                tracing::debug!(
                    ddl_total = total,
                    "schema read after a change on the server"
                );
            }
            last = Some(total);
        }
    }

    /// Re-reads the users file; on error the old users stay.
    pub fn reload_users(&self) -> Result<usize, Error> {
        let users = UserStore::load(&self.config.resolve(&self.config.users.file))?;
        let n = users.users().count();
        self.users.store(Arc::new(users));
        Ok(n)
    }
}

/// This instance's row in `myveil.instances`: which keyring generation it runs with.
struct InstanceReport {
    instance: String,
    /// The generation last reported.
    reported: Option<String>,
    last_try: Option<std::time::Instant>,
    failing: bool,
}

impl InstanceReport {
    fn new() -> Self {
        Self {
            instance: hex::encode(rand::random::<[u8; 16]>()),
            reported: None,
            last_try: None,
            failing: false,
        }
    }

    /// Reports when a heartbeat is due or the keyring changed since the last report. A
    /// server without the table (nothing migrated or rotated there) is tried again each
    /// heartbeat.
    async fn maybe(&mut self, conn: &mut mysql_async::Conn, ring: &Keyring) {
        use crate::migrate::state;
        let generation = ring.generation();
        let changed = self.reported.as_deref() != Some(generation.as_str());
        let due = self
            .last_try
            .is_none_or(|t| t.elapsed() >= state::INSTANCE_HEARTBEAT)
            || (changed && !self.failing);
        if !due {
            return;
        }
        self.last_try = Some(std::time::Instant::now());
        match state::report_instance(conn, &self.instance, &ring.identity(), &generation).await {
            Ok(()) => {
                if changed {
                    tracing::debug!(%generation, "keyring generation reported");
                }
                self.reported = Some(generation);
                self.failing = false;
            }
            Err(e) => {
                // No table (nothing rotated or migrated on this server yet) is normal; any
                // other failure hides this instance from `keys retire`.
                let missing =
                    matches!(&e, mysql_async::Error::Server(s) if s.code == 1146 || s.code == 1049);
                if !self.failing && !missing {
                    tracing::warn!(error = %e, "could not report this instance's keyring to myveil.instances: `keys retire` will not see it");
                } else if !self.failing {
                    tracing::debug!(error = %e, "myveil.instances is not there yet");
                }
                self.failing = true;
            }
        }
    }

    async fn forget(&self, conn: &mut mysql_async::Conn) {
        if self.reported.is_some() {
            let _ = crate::migrate::state::forget_instance(conn, &self.instance).await;
        }
    }
}

/// Options for a control-plane connection as the first backend account.
fn control_opts(
    config: &Config,
    passwords: &BTreeMap<String, Password>,
) -> Result<mysql_async::Opts, Error> {
    let (name, account) = config
        .backend
        .accounts
        .iter()
        .next()
        .ok_or_else(|| Error::Protection("no backend account".into()))?;
    let empty = Password::default();
    Ok(config.backend_opts(account, passwords.get(name).unwrap_or(&empty)))
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, Error> {
    let address = config.listen.address;
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })
}

/// Accepts clients until `shutdown` turns true, then drains: idle sessions close at once,
/// sessions inside a transaction get up to the drain timeout to finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    for warning in shared.config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    let limit = Arc::new(Semaphore::new(shared.config.listen.max_connections));
    // Security: the first schema read (column order, views and routines over protected
    // tables) happens before any client is accepted, so no statement is analyzed against an
    // empty snapshot while the backend is reachable.
    match tokio::time::timeout(
        shared.config.backend.connect_timeout(),
        shared.refresh_schema(),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not read the schema of protected tables"),
        Err(_) => tracing::warn!("reading the schema of protected tables timed out"),
    }
    match tokio::time::timeout(
        shared.config.backend.connect_timeout(),
        shared.refresh_tracking_defaults(),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not read the session-tracking defaults"),
        Err(_) => tracing::warn!("reading the session-tracking defaults timed out"),
    }
    // What clients are greeted with, known before the first one comes.
    if let Err(e) = shared.pool.profile().await {
        tracing::warn!(error = %e, "could not read the backend's greeting");
    }
    let refresher = {
        let shared = shared.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SCHEMA_REFRESH_INTERVAL) => {}
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
                if let Err(e) = shared.refresh_schema().await {
                    tracing::warn!(error = %e, "could not read the schema of protected tables");
                }
                if let Err(e) = shared.refresh_tracking_defaults().await {
                    tracing::warn!(error = %e, "could not read the session-tracking defaults");
                }
                shared.save_key_usage();
            }
        })
    };
    let ddl_watch = tokio::spawn(shared.clone().watch_ddl(shutdown.clone()));
    let token_sync = shared.tokens.clone().map(|tokens| {
        let every = std::time::Duration::from_secs(
            shared
                .config
                .admin
                .as_ref()
                .map_or(5, |a| a.cache_ttl_secs)
                .max(1),
        );
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = tokens.ready().await {
                tracing::warn!(error = %e, "token store not ready");
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
                if let Err(e) = tokens.sync().await {
                    tracing::warn!(error = %e, "token store sync failed");
                }
            }
        })
    });
    let mut sessions = JoinSet::new();
    let mut reap = tokio::time::interval(POOL_REAP_INTERVAL);
    loop {
        tokio::select! {
            _ = reap.tick() => {
                shared.pool.reap();
                shared.auth_failures_ip.housekeeping();
                shared.auth_failures_user.housekeeping();
            }
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let shutdown = shutdown.clone();
                        sessions.spawn(async move {
                            session::run(shared, tcp, peer, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "connection refused: max_connections reached");
                        sessions.spawn(async move {
                            let mut conn = PacketConn::new(Stream::Plain(tcp));
                            let reply = ErrorReply::new(ER_CON_COUNT_ERROR, b"08004", "Too many connections");
                            let _ = conn.write_packet(0, &reply.to_payload()).await;
                            conn.shutdown().await;
                        });
                    }
                }
            }
        }
    }
    drop(listener);
    refresher.abort();
    ddl_watch.abort();
    if let Some(t) = token_sync {
        t.abort();
    }
    let open = sessions.len();
    tracing::info!(open, "draining sessions");
    let drained = tokio::time::timeout(shared.config.listen.drain_timeout(), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "drain timeout: closing remaining sessions"
        );
        sessions.shutdown().await;
    }
    // Seal counts since the last periodic save must survive the restart (key budgets).
    shared.save_key_usage();
}
