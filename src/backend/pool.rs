//! backend::pool: idle backend connections, keyed by the client capabilities that change
//! backend behaviour (found rows, local files, multi statements, …), and the limit on how
//! many connections each backend account may hold.
//!
//! A connection of a limited account carries a [`Slot`] of that account for as long as it
//! is open, idle in the pool or not: the backend never sees more connections of the account
//! than its `max_backend_connections`. A client that finds none free waits in a bounded
//! queue, and gets "Too many connections" (1040) when the queue is full or its wait ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_common::constants::CapabilityFlags;
use tokio_rustls::TlsConnector;

use super::state::{SessionState, VarSet};
use super::{BackendConn, Error, Identity, Result};
use crate::wire::handshake::SESSION_CAPABILITIES;

pub struct PoolConfig {
    pub address: String,
    pub connect_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// TLS toward the backend: connector and the name to check in its certificate.
    pub tls: Option<(TlsConnector, String)>,
    /// Most connections per account (absent: no limit of myveil's own).
    pub limits: HashMap<String, usize>,
    /// Most clients waiting for a connection at once, every account together.
    pub queue: usize,
    /// How long a client waits for a connection of a full account.
    pub queue_timeout: Duration,
}

/// The account backend users log in under, for the limits (each is its own backend
/// account, but they share one limit: `[backend_users] max_backend_connections`).
pub const BACKEND_USERS: &str = "backend users";

/// One account's limit.
#[derive(Debug)]
struct Limit {
    max: usize,
    used: AtomicUsize,
    /// Wakes a waiter when a slot is freed or a connection of the account goes idle.
    freed: tokio::sync::Notify,
}

/// The right of one open connection to count against its account's limit: freed when the
/// connection closes.
#[derive(Debug)]
pub struct Slot(Arc<Limit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
        self.0.freed.notify_one();
    }
}

impl Limit {
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// Counts a waiting client for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        crate::telemetry::metrics::METRICS.backend_wait(-1);
    }
}

/// A backend connection taken for a client that has logged in.
enum Lease {
    /// Authenticated before; will be reset with COM_CHANGE_USER.
    Pooled(BackendConn),
    /// Greeting read, handshake not yet answered.
    Fresh(BackendConn),
}

struct Idle {
    conn: BackendConn,
    since: Instant,
}

pub struct Pool {
    cfg: PoolConfig,
    idle: Mutex<Vec<Idle>>,
    /// Connections of clients that left, being reset before they are pooled.
    resetting: AtomicUsize,
    reset_done: tokio::sync::Notify,
    limits: HashMap<String, Arc<Limit>>,
    /// Clients waiting for a connection now.
    waiting: AtomicUsize,
    /// Woken when a client starts waiting: multiplexed sessions that keep an idle
    /// connection only for their next command give it up (`Pool::contended`).
    wanted: tokio::sync::Notify,
    /// Server version, capabilities and collation of the backend's latest greeting: what
    /// clients are greeted with before any backend connection is theirs.
    profile: Mutex<Option<Profile>>,
    probing: tokio::sync::Mutex<()>,
}

/// A connection a multiplexed session set down between statements, as it was: the next
/// session of the same role takes it by replaying its own state over it (no reset, no
/// login); any other gets it through COM_CHANGE_USER, as a new login does.
#[derive(Debug)]
pub struct Parked {
    pub role: String,
    /// Shared with the session that parked it: the next session tells by identity whether
    /// the connection is still in its own state.
    pub state: Arc<SessionState>,
}

/// What a client's greeting says of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub server_version: Vec<u8>,
    pub capabilities: CapabilityFlags,
    pub collation: u8,
}

/// How long a new client waits for a connection being reset when none is idle, before a
/// fresh one is opened (a reset is one round trip; a fresh login is several).
const RESET_WAIT: Duration = Duration::from_millis(100);

impl Pool {
    pub fn new(cfg: PoolConfig) -> Self {
        let limits = cfg
            .limits
            .iter()
            .map(|(account, &max)| {
                let limit = Limit {
                    max,
                    used: AtomicUsize::new(0),
                    freed: tokio::sync::Notify::new(),
                };
                (account.clone(), Arc::new(limit))
            })
            .collect();
        Self {
            cfg,
            idle: Mutex::new(Vec::new()),
            resetting: AtomicUsize::new(0),
            reset_done: tokio::sync::Notify::new(),
            limits,
            waiting: AtomicUsize::new(0),
            wanted: tokio::sync::Notify::new(),
            profile: Mutex::new(None),
            probing: tokio::sync::Mutex::new(()),
        }
    }

    /// Clients waiting for a backend connection now (a metric).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Connections open under `account`'s limit (None: the account has none).
    pub fn in_use(&self, account: &str) -> Option<usize> {
        self.limits
            .get(account)
            .map(|l| l.used.load(Ordering::SeqCst))
    }

    /// What to greet a client with: the backend's latest greeting, or, before any, the
    /// greeting of one connection opened for it (one at a time, closed unanswered).
    /// Security: a client that has not logged in costs no backend connection but this one,
    /// once in the life of the process.
    pub async fn profile(&self) -> Result<Profile> {
        if let Some(p) = self.known_profile() {
            return Ok(p);
        }
        let _one = self.probing.lock().await;
        if let Some(p) = self.known_profile() {
            return Ok(p);
        }
        drop(self.open().await?);
        self.known_profile()
            .ok_or(Error::Wire(crate::wire::Error::Malformed(
                "backend greeting",
            )))
    }

    fn known_profile(&self) -> Option<Profile> {
        self.profile.lock().ok()?.clone()
    }

    /// A slot of `account`'s limit (None: no limit), waiting in the queue when it is full.
    pub async fn slot(&self, account: &str) -> Result<Option<Slot>> {
        let Some(limit) = self.limits.get(account) else {
            return Ok(None);
        };
        if let Some(s) = limit.try_take() {
            return Ok(Some(s));
        }
        let _waiting = self.enqueue(account)?;
        let deadline = tokio::time::Instant::now() + self.cfg.queue_timeout;
        loop {
            let freed = limit.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(s) = limit.try_take() {
                return Ok(Some(s));
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(self.full(account));
            }
        }
    }

    /// Resolves once a client waits for a backend connection (of any account), checked
    /// again after every wake-up.
    pub async fn contended(&self) {
        loop {
            let wanted = self.wanted.notified();
            tokio::pin!(wanted);
            wanted.as_mut().enable();
            if self.waiting() > 0 {
                return;
            }
            wanted.await;
        }
    }

    fn enqueue(&self, account: &str) -> Result<Waiting<'_>> {
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wanted.notify_waiters();
        crate::telemetry::metrics::METRICS.backend_wait(1);
        let waiting = Waiting(&self.waiting);
        if before >= self.cfg.queue {
            return Err(self.full(account));
        }
        Ok(waiting)
    }

    fn full(&self, account: &str) -> Error {
        crate::telemetry::metrics::METRICS.backend_full();
        tracing::info!(
            account,
            "no backend connection free for the account; a client was turned away"
        );
        Error::Full
    }

    /// Hands back the connection of a client that left: reset (as a disconnect would
    /// clean the session up), then pooled; closed if the reset fails or takes longer than
    /// `limit`.
    pub async fn reset_and_release(&self, mut conn: BackendConn, limit: Duration) {
        self.resetting.fetch_add(1, Ordering::SeqCst);
        match tokio::time::timeout(limit, conn.reset()).await {
            Ok(Ok(())) => self.release(conn),
            Ok(Err(e)) => tracing::debug!(error = %e, "backend connection did not reset; closed"),
            Err(_) => tracing::debug!("backend connection reset timed out; closed"),
        }
        self.resetting.fetch_sub(1, Ordering::SeqCst);
        self.reset_done.notify_waiters();
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Takes a connection for a client that logged in as `account`: an idle one of that
    /// account that fits the client's capabilities (`key`), else, with a slot of the
    /// account, any idle one that fits, else a fresh one. Waits in the queue while the
    /// account is full.
    async fn lease(&self, account: &str, key: u32) -> Result<Lease> {
        // A client that left a moment ago may be handing one back (reconnecting clients):
        // wait for resets in flight, briefly, before opening a fresh one.
        let reset_deadline = tokio::time::Instant::now() + RESET_WAIT;
        loop {
            if let Some(conn) = self.take_idle(key, Some(account)) {
                return Ok(Lease::Pooled(conn));
            }
            if self.resetting.load(Ordering::SeqCst) == 0 {
                break;
            }
            // Registered before the second look, so a reset ending in between still wakes it.
            let done = self.reset_done.notified();
            if self.resetting.load(Ordering::SeqCst) > 0
                && tokio::time::timeout_at(reset_deadline, done).await.is_err()
            {
                break;
            }
        }
        let Some(limit) = self.limits.get(account) else {
            return self.lease_with(key, None).await;
        };
        let mut waiting = None;
        let deadline = tokio::time::Instant::now() + self.cfg.queue_timeout;
        loop {
            let freed = limit.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = self.take_idle(key, Some(account)) {
                return Ok(Lease::Pooled(conn));
            }
            if let Some(slot) = limit.try_take() {
                return self.lease_with(key, Some(slot)).await;
            }
            // Full, with an idle connection of the account that does not fit this client:
            // it is closed and its slot goes to a fresh one.
            if let Some(mut conn) = self.take_idle_of(account) {
                let slot = conn.slot.take();
                conn.close();
                return self.lease_with(key, slot).await;
            }
            if waiting.is_none() {
                waiting = Some(self.enqueue(account)?);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(self.full(account));
            }
        }
    }

    /// An idle connection that fits `key` (its slot swapped for `slot`), or a fresh one.
    async fn lease_with(&self, key: u32, slot: Option<Slot>) -> Result<Lease> {
        if let Some(mut conn) = self.take_idle(key, None) {
            conn.slot = slot;
            return Ok(Lease::Pooled(conn));
        }
        let mut conn = self.open().await?;
        conn.slot = slot;
        Ok(Lease::Fresh(conn))
    }

    /// A new connection with its greeting read and its handshake left to answer (a login
    /// that needs the backend's own fresh salt: backend users).
    /// Sets down a multiplexed session's connection between statements: idle as it is,
    /// with the session's state, for the next session of `role` (`attach`).
    pub fn park(&self, mut conn: BackendConn, role: &str, state: Arc<SessionState>) {
        conn.parked = Some(Box::new(Parked {
            role: role.to_owned(),
            state,
        }));
        self.release(conn);
    }

    /// A connection for a multiplexed session's next statement, with the state it is in:
    /// the one the session set down last (`last`, a backend thread id) or another its role
    /// set down, as they are; else one bound as a login binds it (change user or fresh,
    /// then tracking), waiting in the queue when the account is full.
    pub async fn attach(
        &self,
        who: &Identity<'_>,
        role: &str,
        last: u32,
        client_caps: CapabilityFlags,
        client_defaults: &VarSet,
    ) -> Result<(BackendConn, Arc<SessionState>)> {
        let key = (client_caps & SESSION_CAPABILITIES).bits();
        if let Some(mut conn) = self.take_parked(key, who.account, role, last)
            && let Some(parked) = conn.parked.take()
        {
            return Ok((conn, parked.state));
        }
        let (conn, _, state) = self.bind(who, client_caps, client_defaults).await?;
        Ok((conn, Arc::new(state)))
    }

    /// An idle connection parked by `role` under `account` that fits `key`: thread `last`
    /// if it is there.
    fn take_parked(&self, key: u32, account: &str, role: &str, last: u32) -> Option<BackendConn> {
        self.reap();
        let mut idle = self.idle.lock().ok()?;
        loop {
            let fits = |i: &Idle| {
                i.conn.session_key() == key
                    && i.conn.account.as_deref() == Some(account)
                    && i.conn.parked.as_ref().is_some_and(|p| p.role == role)
            };
            let pos = idle
                .iter()
                .position(|i| fits(i) && i.conn.connection_id() == last)
                .or_else(|| idle.iter().rposition(fits))?;
            let candidate = idle.swap_remove(pos).conn;
            if !candidate.conn.stream().is_stale() {
                return Some(candidate);
            }
        }
    }

    /// The connection counts under `[backend_users]`' limit.
    pub async fn fresh(&self) -> Result<BackendConn> {
        let slot = self.slot(BACKEND_USERS).await?;
        let mut conn = self.open().await?;
        conn.slot = slot;
        Ok(conn)
    }

    async fn open(&self) -> Result<BackendConn> {
        let conn = BackendConn::open(&self.cfg.address, self.cfg.connect_timeout).await?;
        let profile = Profile {
            server_version: conn.greeting.server_version.clone(),
            capabilities: conn.greeting.capabilities,
            collation: conn.greeting.collation,
        };
        if let Ok(mut known) = self.profile.lock()
            && known.as_ref() != Some(&profile)
        {
            *known = Some(profile);
        }
        Ok(conn)
    }

    /// Closes every idle connection (one was found dead: the backend restarted, and the
    /// others are likely gone too).
    pub fn drop_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Closes idle connections older than the idle timeout.
    pub fn reap(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let now = Instant::now();
            while let Some(pos) = idle
                .iter()
                .position(|i| now.duration_since(i.since) >= self.cfg.idle_timeout)
            {
                idle.remove(pos).conn.close();
            }
        }
    }

    /// An idle connection that fits `key`, of `account` when given.
    fn take_idle(&self, key: u32, account: Option<&str>) -> Option<BackendConn> {
        self.reap();
        let mut idle = self.idle.lock().ok()?;
        while let Some(pos) = idle.iter().rposition(|i| {
            i.conn.session_key() == key
                && account.is_none_or(|a| i.conn.account.as_deref() == Some(a))
        }) {
            let candidate = idle.swap_remove(pos).conn;
            if !candidate.conn.stream().is_stale() {
                return Some(candidate);
            }
        }
        None
    }

    /// Any idle connection of `account`.
    fn take_idle_of(&self, account: &str) -> Option<BackendConn> {
        let mut idle = self.idle.lock().ok()?;
        let pos = idle
            .iter()
            .rposition(|i| i.conn.account.as_deref() == Some(account))?;
        Some(idle.swap_remove(pos).conn)
    }

    /// Binds the leased connection to an authenticated client: resets and re-authenticates
    /// a pooled one, answers the greeting of a fresh one, then turns session tracking on
    /// (`client_defaults`: what clients are tracked by default). A pooled connection that
    /// does not fit the client's capabilities, or has died, is replaced by a new one (the
    /// client was then greeted with another connection id; logged). Returns the backend's OK
    /// payload and the session state it reported.
    pub async fn bind(
        &self,
        who: &Identity<'_>,
        client_caps: CapabilityFlags,
        client_defaults: &VarSet,
    ) -> Result<(BackendConn, Vec<u8>, SessionState)> {
        let want = (client_caps & SESSION_CAPABILITIES).bits();
        let lease = self.lease(who.account, want).await?;
        let (mut conn, ok) = self.authenticate(lease, who, client_caps).await?;
        let state = conn.setup_tracking(who.database, client_defaults).await?;
        Ok((conn, ok, state))
    }

    async fn authenticate(
        &self,
        lease: Lease,
        who: &Identity<'_>,
        client_caps: CapabilityFlags,
    ) -> Result<(BackendConn, Vec<u8>)> {
        // The lease's slot goes with whichever connection the client ends up on.
        let slot = match lease {
            Lease::Pooled(mut conn) => {
                conn.parked = None;
                match conn.change_user(who).await {
                    // A connection keeps the packet limit of its first login: after a
                    // `SET GLOBAL max_allowed_packet` it would refuse what a new connection
                    // takes (and `@@max_allowed_packet` would not say so). It is replaced.
                    Ok(ok) => match conn.global_max_packet().await {
                        Ok(now) if now == conn.max_packet => return Ok((conn, ok)),
                        Ok(now) => tracing::debug!(
                            then = conn.max_packet,
                            now,
                            "max_allowed_packet changed since the pooled connection logged in; closed"
                        ),
                        Err(e) => {
                            tracing::debug!(error = %e, "pooled backend connection failed a check")
                        }
                    },
                    Err(e @ Error::Refused { .. }) => return Err(e),
                    Err(e) => tracing::debug!(error = %e, "pooled backend connection failed reset"),
                }
                conn.slot.take()
            }
            Lease::Fresh(mut conn) => {
                let slot = conn.slot.take();
                match conn.complete(who, client_caps, self.tls()).await {
                    Err(Error::Wire(e)) => {
                        tracing::debug!(error = %e, "fresh backend connection went away")
                    }
                    Ok((mut conn, ok)) => {
                        conn.slot = slot;
                        conn.max_packet = conn.global_max_packet().await?;
                        return Ok((conn, ok));
                    }
                    Err(e) => return Err(e),
                }
                slot
            }
        };
        let (mut conn, ok) = self
            .open()
            .await?
            .complete(who, client_caps, self.tls())
            .await?;
        conn.slot = slot;
        conn.max_packet = conn.global_max_packet().await?;
        Ok((conn, ok))
    }

    /// Opens a connection and logs in as `user` (for `myveil check`).
    pub async fn probe(
        &self,
        account: &str,
        user: &str,
        password: &crate::config::Password,
    ) -> Result<()> {
        let who = Identity {
            account,
            user,
            password,
            database: None,
            collation: 0,
            attributes: &[],
        };
        let caps = crate::wire::handshake::SUPPORTED_CAPABILITIES;
        self.open()
            .await?
            .complete(&who, caps, self.tls())
            .await
            .map(drop)
    }

    pub(crate) fn tls(&self) -> Option<(&TlsConnector, &str)> {
        self.cfg.tls.as_ref().map(|(c, n)| (c, n.as_str()))
    }

    /// Returns a connection at a command boundary; it is reset before its next use.
    pub fn release(&self, mut conn: BackendConn) {
        if conn.account.is_none() || !conn.conn.rbuf.is_empty() {
            return;
        }
        conn.conn.shrink_buffers();
        let limit = conn.account.as_deref().and_then(|a| self.limits.get(a));
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.cfg.max_idle {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            } else {
                conn.close();
            }
        }
        // A client of the account waiting in the queue may take it.
        if let Some(limit) = limit {
            limit.freed.notify_one();
        }
    }
}
