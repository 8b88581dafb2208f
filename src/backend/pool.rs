//! backend::pool: idle backend connections, keyed by the client capabilities that change
//! backend behaviour (found rows, local files, multi statements, …).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
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
}

/// A backend connection taken for a client that is about to be greeted.
pub enum Lease {
    /// Authenticated before; will be reset with COM_CHANGE_USER.
    Pooled(BackendConn),
    /// Greeting read, handshake not yet answered.
    Fresh(BackendConn),
}

impl Lease {
    pub fn conn(&self) -> &BackendConn {
        match self {
            Lease::Pooled(c) | Lease::Fresh(c) => c,
        }
    }
}

struct Idle {
    conn: BackendConn,
    since: Instant,
}

pub struct Pool {
    cfg: PoolConfig,
    idle: Mutex<Vec<Idle>>,
    /// Capability key of the last client bound: the best guess for the next one.
    last_key: AtomicU32,
    /// Connections of clients that left, being reset before they are pooled.
    resetting: AtomicUsize,
    reset_done: tokio::sync::Notify,
}

/// How long a new client waits for a connection being reset when none is idle, before a
/// fresh one is opened (a reset is one round trip; a fresh login is several).
const RESET_WAIT: Duration = Duration::from_millis(100);

impl Pool {
    pub fn new(cfg: PoolConfig) -> Self {
        Self {
            cfg,
            idle: Mutex::new(Vec::new()),
            last_key: AtomicU32::new(u32::MAX),
            resetting: AtomicUsize::new(0),
            reset_done: tokio::sync::Notify::new(),
        }
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

    /// Takes a connection to greet a client with: an idle one that fits the last client's
    /// capabilities, or a fresh one.
    pub async fn lease(&self) -> Result<Lease> {
        let key = self.last_key.load(Ordering::Relaxed);
        // A client that left a moment ago may be handing one back (reconnecting clients):
        // wait for resets in flight, briefly, before opening a fresh one.
        let deadline = tokio::time::Instant::now() + RESET_WAIT;
        loop {
            if let Some(conn) = self.take_idle(key) {
                return Ok(Lease::Pooled(conn));
            }
            if self.resetting.load(Ordering::SeqCst) == 0 {
                break;
            }
            // Registered before the second look, so a reset ending in between still wakes it.
            let done = self.reset_done.notified();
            if self.resetting.load(Ordering::SeqCst) > 0
                && tokio::time::timeout_at(deadline, done).await.is_err()
            {
                break;
            }
        }
        Ok(Lease::Fresh(self.open().await?))
    }

    /// A new connection with its greeting read and its handshake left to answer (a login
    /// that needs the backend's own fresh salt: backend users).
    pub async fn fresh(&self) -> Result<BackendConn> {
        self.open().await
    }

    async fn open(&self) -> Result<BackendConn> {
        BackendConn::open(&self.cfg.address, self.cfg.connect_timeout).await
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

    fn take_idle(&self, key: u32) -> Option<BackendConn> {
        self.reap();
        let mut idle = self.idle.lock().ok()?;
        while let Some(pos) = idle.iter().rposition(|i| i.conn.session_key() == key) {
            let candidate = idle.swap_remove(pos).conn;
            if !candidate.conn.stream().is_stale() {
                return Some(candidate);
            }
        }
        None
    }

    /// Binds the leased connection to an authenticated client: resets and re-authenticates
    /// a pooled one, answers the greeting of a fresh one, then turns session tracking on
    /// (`client_defaults`: what clients are tracked by default). A pooled connection that
    /// does not fit the client's capabilities, or has died, is replaced by a new one (the
    /// client was then greeted with another connection id; logged). Returns the backend's OK
    /// payload and the session state it reported.
    pub async fn bind(
        &self,
        lease: Lease,
        who: &Identity<'_>,
        client_caps: CapabilityFlags,
        client_defaults: &VarSet,
    ) -> Result<(BackendConn, Vec<u8>, SessionState)> {
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
        let want = (client_caps & SESSION_CAPABILITIES).bits();
        self.last_key.store(want, Ordering::Relaxed);
        let greeted_id = lease.conn().connection_id();
        match lease {
            Lease::Pooled(mut conn) if conn.session_key() == want => {
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
            }
            Lease::Pooled(conn) => self.release(conn),
            Lease::Fresh(conn) => match conn.complete(who, client_caps, self.tls()).await {
                Err(Error::Wire(e)) => {
                    tracing::debug!(error = %e, "fresh backend connection went away")
                }
                Ok((mut conn, ok)) => {
                    conn.max_packet = conn.global_max_packet().await?;
                    return Ok((conn, ok));
                }
                other => return other,
            },
        }
        let (mut conn, ok) = self
            .open()
            .await?
            .complete(who, client_caps, self.tls())
            .await?;
        conn.max_packet = conn.global_max_packet().await?;
        tracing::debug!(
            greeted_id,
            connection_id = conn.connection_id(),
            "client greeted with another backend connection id"
        );
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
    }
}
