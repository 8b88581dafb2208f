//! frontend::session: one authenticated client session — the command loop, one small
//! function per command, the guard's decision applied to each statement, and the relay of
//! each response (transformed where the statement's results carry protected columns).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use mysql_common::constants::StatusFlags;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use super::handshake::{
    BackendLogin, Login, Started, access_denied, backend_error, backend_login, backend_user_role,
    blocked, for_client, login, parse_change_user, send_error,
};
use super::mux::{Mux, Needs};
use super::prepared::Prepared;
use super::relay::{End, Expect, Failed, Response, forward_packet};
use super::statements::{Cursor, Statements};
use super::{Shared, ids};
use crate::auth::User;
use crate::backend::state::{ClientTracking, SessionState};
use crate::backend::{self, BackendConn, Identity};
use crate::guard::{self, Decision, Outcome};
use crate::sql::analyze::Shape;
use crate::telemetry::metrics::{Kind, METRICS};
use crate::wire::auth::SALT_LEN;
use crate::wire::packets::{self, ErrorReply};
use crate::wire::{self, PacketConn};

// Command bytes, with MySQL's names.
const COM_QUIT: u8 = 0x01;
/// MariaDB's errors for a KILL of an unknown thread, and of another user's.
const ER_NO_SUCH_THREAD: u16 = 1094;
const ER_KILL_DENIED_ERROR: u16 = 1095;
/// Longest a KILL CONNECTION's answer waits for its victim to close its client.
const KILL_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a multiplexed session idle after a statement keeps the connection it holds for
/// its next command while another client waits for one (`Mux::hold`): clients that ask
/// for warnings or the insert id do so at once.
const HOLD_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_PROCESS_KILL: u8 = 0x0C;
const COM_DEBUG: u8 = 0x0D;
const COM_PING: u8 = 0x0E;
const COM_CHANGE_USER: u8 = 0x11;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1A;
const COM_SET_OPTION: u8 = 0x1B;
const COM_STMT_FETCH: u8 = 0x1C;
const COM_RESET_CONNECTION: u8 = 0x1F;

/// Statements at least this long are analyzed on a blocking thread, so a large statement
/// never holds up the async workers other sessions run on.
const BLOCKING_ANALYSIS_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("client: {0}")]
    Client(wire::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// A command reached a point that needs the backend connection while the session has
    /// none (a multiplexed session between statements): never expected, the session ends.
    #[error("no backend connection attached")]
    Detached,
}

/// The session's backend connection, borrowed as a field (so the client can be borrowed
/// beside it).
macro_rules! backend {
    ($s:ident) => {
        $s.backend.as_mut().ok_or(Error::Detached)?
    };
}

pub(super) fn backend_io(e: wire::Error) -> Error {
    Error::Backend(backend::Error::Wire(e))
}

/// Why a session ended.
#[derive(Debug)]
enum Close {
    /// The client quit at a command boundary with the backend idle: the connection can be
    /// pooled.
    Clean,
    /// The client went away without COM_QUIT: its backend connection goes the same way
    /// (dropped without one, not pooled), so the server counts an aborted client
    /// (`Aborted_clients`) as it would for a direct connection.
    Aborted,
    /// Anything else: the backend connection is closed with COM_QUIT.
    Dirty,
}

pub async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("conn", %peer, id = tracing::field::Empty, user = tracing::field::Empty);
    async move {
        let _open = METRICS.connection_opened();
        let timeout = shared.config.listen.handshake_timeout();
        let started =
            match tokio::time::timeout(timeout, super::handshake::handshake(&shared, tcp, peer))
                .await
            {
                Ok(Ok(Some(s))) => s,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!("handshake timed out");
                    return;
                }
            };
        Session::new(shared, started).serve(shutdown).await;
    }
    .instrument(span)
    .await
}

/// An authenticated session with its pinned backend connection.
struct Session {
    /// The id the client knows this session by (frontend::ids).
    id: super::ids::SessionId,
    shared: Arc<Shared>,
    client: PacketConn,
    /// None while a multiplexed session is between statements.
    backend: Option<BackendConn>,
    peer: SocketAddr,
    user: User,
    salt: [u8; SALT_LEN],
    /// The client was switched to another salt since the greeting (a backend user's
    /// login): which salt it answers a change of user with is then up to the driver, so the
    /// next change of user to a file user is switched to a fresh salt first.
    salt_switched: bool,
    collation: u16,
    attributes: Vec<(String, String)>,
    in_transaction: bool,
    /// False once the session changed something a pool key does not capture.
    reusable: bool,
    /// The backend session's state as its server reports it (database, sql_mode, charset).
    state: SessionState,
    /// What the client sees of session tracking.
    tracking: ClientTracking,
    /// A statement prepared in this session names a session-tracking variable.
    tracking_prepared: bool,
    /// A prepared statement's text may change state the server does not report.
    state_prepared: bool,
    /// The plan cache of the session's role (guard::ShapeCache, shared by its sessions).
    decisions: Arc<std::sync::Mutex<guard::ShapeCache>>,
    /// Prepared statements as the guard left them.
    statements: Statements,
    /// Turns true when the SQL token this session logged in with is revoked with
    /// `kill_sessions`.
    revoked: Option<watch::Receiver<bool>>,
    /// The backend's version, for executable comments.
    server_version: u32,
    /// Multiplexed mode: what holds the backend connection between statements.
    mux: Option<Mux>,
    /// The capabilities the session's backend connections are opened with.
    caps: mysql_common::constants::CapabilityFlags,
    /// The last command's response left an insert id, warnings or an error.
    trace: bool,
    /// The state the session last parked a connection with (shared with it).
    parked_state: Option<std::sync::Arc<SessionState>>,
    /// The database SHOW PROCESSLIST was last told for this session.
    shown_database: Option<Option<String>>,
}

/// What a command makes myveil read again from the server once it is done.
#[derive(Debug, Clone, Copy, Default)]
struct Resync {
    tracking: bool,
    state: bool,
}

impl Resync {
    const NONE: Resync = Resync {
        tracking: false,
        state: false,
    };
}

/// Where each result's shape comes from, for the relay: shapes by result, binary rows,
/// and an open cursor's definitions with its shape.
type Parts<'a> = (
    &'a [Option<Shape>],
    bool,
    Option<(&'a [Vec<u8>], &'a Shape)>,
);

/// How a response is relayed.
enum Results {
    /// As raw bytes.
    Raw,
    /// Each result by its statement's shape (None: as it is); `capture`: keep the column
    /// definitions (an execute that may open a cursor).
    Shaped {
        shapes: Vec<Option<Shape>>,
        binary: bool,
        capture: bool,
    },
    /// Rows of an open cursor.
    Fetch(Cursor),
    /// A `SHOW STATUS` result for a compressed client (relay::compression_on).
    CompressedStatus,
}

fn revocation_watch(shared: &Shared, user: &User) -> Option<watch::Receiver<bool>> {
    Some(shared.tokens.as_ref()?.subscribe(&user.token?))
}

/// Runs `work` unless the session's token is revoked first (None then). File users have no
/// receiver and pay nothing.
async fn unless_revoked<T>(
    work: impl std::future::Future<Output = T>,
    revoked: &mut Option<watch::Receiver<bool>>,
) -> Option<T> {
    if revoked.is_none() {
        return Some(work.await);
    }
    tokio::select! {
        r = work => Some(r),
        _ = token_revoked(revoked) => None,
    }
}

/// Resolves when the token's sessions must end; never for file users.
async fn token_revoked(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            if rx.wait_for(|killed| *killed).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

impl Results {
    fn parts(&self) -> Parts<'_> {
        match self {
            Results::Shaped { shapes, binary, .. } => (shapes, *binary, None),
            Results::Fetch(c) => (&[], true, Some((c.defs.as_slice(), &c.shape))),
            Results::Raw | Results::CompressedStatus => (&[], false, None),
        }
    }
}

impl Session {
    fn new(shared: Arc<Shared>, s: Started) -> Self {
        let revoked = revocation_watch(&shared, &s.user);
        let shared_mode = shared.config.backend.mode;
        let backend_user = s.backend.is_backend_user();
        let caps = s.backend.capabilities;
        let decisions = shared.plans_for(&s.user.role);
        Self {
            id: s.id,
            shared,
            client: s.client,
            backend: Some(s.backend),
            peer: s.peer,
            user: s.user,
            salt: s.salt,
            salt_switched: s.salt_switched,
            collation: s.collation,
            attributes: s.attributes,
            in_transaction: s.in_transaction,
            reusable: true,
            state: s.state,
            tracking: s.tracking,
            tracking_prepared: false,
            state_prepared: false,
            decisions,
            statements: Statements::default(),
            revoked,
            server_version: s.server_version,
            mux: (shared_mode == crate::config::BackendMode::Multiplexed).then(|| Mux {
                // Security: myveil holds no password to log a backend user in again.
                pinned: backend_user.then_some("a backend user's own login"),
                ..Mux::default()
            }),
            caps,
            trace: false,
            parked_state: None,
            shown_database: None,
        }
    }

    async fn serve(mut self, mut shutdown: watch::Receiver<bool>) {
        let close = self.command_loop(&mut shutdown).await;
        tracing::debug!(?close, "session ended");
        // From here a KILL of this session's id finds nothing: its backend connection is
        // about to serve someone else.
        self.id.set_backend(0);
        self.client.shutdown().await;
        self.id.closed();
        // A multiplexed session between statements has nothing to hand back.
        let Some(backend) = self.backend.take() else {
            return;
        };
        match close {
            Close::Clean if self.reusable && !self.in_transaction => {
                // Security and correctness: nothing of this client's session (locks, prepared
                // statements, temporary tables, variables) may outlive it in the pool.
                let limit = self.shared.config.backend.connect_timeout();
                self.shared.pool.reset_and_release(backend, limit).await;
            }
            // Dropped as it is: the server sees the client's abort.
            Close::Aborted => drop(backend),
            Close::Clean | Close::Dirty => backend.close(),
        }
    }

    async fn command_loop(&mut self, shutdown: &mut watch::Receiver<bool>) -> Close {
        let idle = self.shared.config.listen.idle_timeout();
        let max_packet = self.shared.config.listen.max_packet_bytes;
        // One timer per session, re-armed per command: cheaper than a new timer each time.
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        let killed = self.id.killed();
        loop {
            // Pipelined commands never wait idle: a revoked token is checked between them.
            if self.revoked.as_ref().is_some_and(|r| *r.borrow()) {
                tracing::info!("token revoked: session ended");
                return Close::Dirty;
            }
            self.client.shrink_buffers();
            if self.client.rbuf.is_empty() {
                self.park();
                let draining = self.in_transaction;
                let held = self.held_only().then(|| self.shared.clone());
                idle_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
                tokio::select! {
                    biased;
                    r = self.client.fill() => if r.is_err() { return Close::Aborted },
                    // A connection kept only for the next command is given up when another
                    // client waits for one and this client has not come back within the
                    // grace: its next SHOW WARNINGS, LAST_INSERT_ID() or ROW_COUNT() then
                    // sees the new connection's (ADR 0009).
                    _ = async {
                        tokio::time::sleep(HOLD_GRACE).await;
                        if let Some(shared) = &held {
                            shared.pool.contended().await;
                        }
                    }, if held.is_some() => {
                        tracing::debug!("connection held for the next command given up: another client waits");
                        if let Some(m) = self.mux.as_mut() {
                            m.hold = 0;
                        }
                        // Security: the warnings and error the hold kept (they may quote
                        // values) are cleared before another session of the role can take
                        // the connection; one that cannot be cleared is closed.
                        if let Some(b) = self.backend.as_mut()
                            && b.query_row("DO 0").await.is_err()
                            && let Some(b) = self.backend.take()
                        {
                            self.id.set_backend(0);
                            b.close();
                        }
                        continue;
                    }
                    r = backend_fill(&mut self.backend) => {
                        // The backend spoke unasked (killed, shut down) or closed: pass an
                        // error packet on and end the session.
                        if r.is_ok() && let Some(backend) = self.backend.as_mut() {
                            let buffered = backend.conn.rbuf.split();
                            let _ = self.client.write_raw(&buffered).await;
                        }
                        tracing::info!("backend closed the connection");
                        return Close::Dirty;
                    }
                    _ = &mut idle_timer => {
                        tracing::debug!("idle timeout");
                        return Close::Dirty;
                    }
                    _ = token_revoked(&mut self.revoked) => {
                        tracing::info!("token revoked: session ended");
                        return Close::Dirty;
                    }
                    _ = killed.set_now() => {
                        tracing::info!("killed between statements");
                        return Close::Dirty;
                    }
                    _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !draining => return Close::Dirty,
                }
            }
            let read = if self.client.has_packet() {
                // The whole command is buffered: no wait, no timer.
                self.client.read_packet(max_packet).await
            } else {
                idle_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
                tokio::select! {
                    r = self.client.read_packet(max_packet) => r,
                    _ = &mut idle_timer => return Close::Dirty,
                }
            };
            let packet = match read {
                Ok(p) => p,
                Err(wire::Error::TooLarge { len, limit }) => {
                    tracing::info!(len, limit, "client packet over the limit");
                    let reply = ErrorReply::new(
                        packets::ER_NET_PACKET_TOO_LARGE,
                        b"08S01",
                        "Got a packet bigger than 'max_allowed_packet' bytes",
                    );
                    send_error(&mut self.client, 1, &reply).await;
                    return Close::Dirty;
                }
                // A broken or malformed read: the client's connection is gone.
                Err(_) => return Close::Aborted,
            };
            let started = std::time::Instant::now();
            let kind = match packet.payload.first() {
                Some(&COM_QUERY) => Kind::Query,
                Some(&COM_STMT_PREPARE) => Kind::Prepare,
                Some(&COM_STMT_EXECUTE) => Kind::Execute,
                _ => Kind::Other,
            };
            let result = self
                .dispatch(packet.first_seq, packet.seq, packet.payload)
                .await;
            METRICS.statement(kind, started.elapsed());
            match result {
                Ok(None) => {}
                Ok(Some(close)) => return close,
                Err(e) => {
                    tracing::info!(error = %e, "session failed");
                    return match e {
                        Error::Client(_) => Close::Aborted,
                        _ => Close::Dirty,
                    };
                }
            }
        }
    }

    /// Handles one command. Ok(Some) ends the session.
    /// `first_seq` frames the command toward the backend; replies follow `seq`, the last.
    async fn dispatch(
        &mut self,
        first_seq: u8,
        seq: u8,
        payload: BytesMut,
    ) -> Result<Option<Close>, Error> {
        let Some(&command) = payload.first() else {
            self.reply_error(
                seq,
                packets::ER_UNKNOWN_COM_ERROR,
                b"08S01",
                "Unknown command",
            )
            .await?;
            return Ok(None);
        };
        if command == COM_QUIT {
            return Ok(Some(Close::Clean));
        }
        if let Err(reply) = self.attach().await {
            tracing::warn!(message = %reply.message, "no backend connection for a command");
            // Commands without a response get none; the session goes on without one.
            if !matches!(command, COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA) {
                self.send_reply(seq, &reply).await?;
            }
            return Ok(None);
        }
        self.before(command, &payload);
        let r = self.command(command, first_seq, seq, payload).await;
        self.after();
        r
    }

    /// Handles one command with the backend connection attached.
    async fn command(
        &mut self,
        command: u8,
        first_seq: u8,
        seq: u8,
        payload: BytesMut,
    ) -> Result<Option<Close>, Error> {
        match command {
            COM_QUIT => Ok(Some(Close::Clean)),
            COM_CHANGE_USER => self.change_user(seq, &payload).await,
            COM_QUERY => self.query(first_seq, seq, &payload).await,
            COM_STMT_PREPARE => self.prepare(first_seq, seq, &payload).await,
            COM_STMT_EXECUTE => self.execute(first_seq, seq, &payload).await,
            COM_STMT_FETCH => self.fetch(first_seq, seq, &payload).await,
            COM_STMT_SEND_LONG_DATA => self.long_data(first_seq, &payload).await,
            COM_STMT_CLOSE => self.close_statement(first_seq, &payload).await,
            COM_FIELD_LIST => self.forward(first_seq, &payload, Expect::FieldList).await,
            COM_SET_OPTION => {
                // Multi-statement mode is part of the pool key: this connection no longer fits it.
                self.reusable = false;
                self.forward(first_seq, &payload, Expect::Single).await
            }
            COM_INIT_DB if self.is_store_schema(&payload[1..]) => {
                let reply = self.store_denied(&payload[1..]);
                self.send_reply(seq, &reply).await?;
                Ok(None)
            }
            COM_STMT_RESET => {
                let raw = statement_id(&payload);
                if let Some(id) = raw.and_then(|id| self.statements.key(id).ok()) {
                    if let Some(p) = self.statements.protected(id) {
                        p.reset();
                    }
                    self.statements.close_cursor(id);
                }
                let Ok(here) = self.for_connection(seq, &payload).await? else {
                    return Ok(None);
                };
                self.forward(
                    first_seq,
                    here.as_deref().unwrap_or(&payload),
                    Expect::Single,
                )
                .await
            }
            COM_RESET_CONNECTION => {
                self.statements.clear();
                self.tracking_prepared = false;
                self.state_prepared = false;
                let (close, ok, _) = self
                    .relay_command(
                        first_seq,
                        &payload,
                        Expect::Single,
                        Results::Raw,
                        Resync::NONE,
                    )
                    .await?;
                if ok && close.is_none() {
                    // The reset dropped tracking back to the server's defaults (the database stays).
                    let database = self.state.database.clone();
                    self.setup_tracking(database.as_deref().map(str::as_bytes))
                        .await?;
                    self.unpin();
                }
                Ok(close)
            }
            COM_PROCESS_KILL => match statement_id(&payload) {
                Some(target) => self.kill(first_seq, seq, "", u64::from(target)).await,
                None => {
                    self.reply_error(
                        seq,
                        packets::ER_UNKNOWN_COM_ERROR,
                        b"08S01",
                        "Malformed COM_PROCESS_KILL",
                    )
                    .await?;
                    Ok(None)
                }
            },
            COM_INIT_DB | COM_PING | COM_STATISTICS | COM_DEBUG => {
                self.forward(first_seq, &payload, Expect::Single).await
            }
            other => {
                tracing::info!(command = other, "unsupported command refused");
                self.reply_error(
                    seq,
                    packets::ER_UNKNOWN_COM_ERROR,
                    b"08S01",
                    "Unknown command",
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// Sends a command as it is and relays its response as it is.
    async fn forward(
        &mut self,
        first_seq: u8,
        payload: &[u8],
        expect: Expect,
    ) -> Result<Option<Close>, Error> {
        let resync = self.resync_after(payload[0], payload);
        let (close, _, _) = self
            .relay_command(first_seq, payload, expect, Results::Raw, resync)
            .await?;
        Ok(close)
    }

    /// Sends a command and relays its response; returns how the session goes on, whether
    /// the response ended with OK/EOF, and captured column definitions.
    async fn relay_command(
        &mut self,
        first_seq: u8,
        payload: &[u8],
        expect: Expect,
        results: Results,
        resync: Resync,
    ) -> Result<(Option<Close>, bool, Option<Vec<Vec<u8>>>), Error> {
        backend!(self)
            .conn
            .write_packet(first_seq, payload)
            .await
            .map_err(backend_io)?;
        let out = self.relay(expect, results, resync.tracking).await?;
        if out.0.is_none() {
            if resync.tracking {
                self.sync_tracking().await?;
            } else if resync.state {
                self.report_state().await?;
            }
        }
        Ok(out)
    }

    /// COM_QUERY: the guard decides; the statement goes on untouched, rewritten, or not at
    /// all.
    async fn query(
        &mut self,
        first_seq: u8,
        seq: u8,
        payload: &[u8],
    ) -> Result<Option<Close>, Error> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(statement = %self.fingerprint(&payload[1..]), "query");
        }
        let rewritten;
        let payload = match self.connection_ids(&payload[1..], false) {
            ids::Rewrite::Keep => payload,
            ids::Rewrite::Text(t) => {
                rewritten = with_command(COM_QUERY, &t);
                &rewritten[..]
            }
            ids::Rewrite::Kill { words, target } => {
                return self.kill(first_seq, seq, &words, target).await;
            }
            ids::Rewrite::ProcessList { full } => {
                let Some(mode) = self.lex_mode(false) else {
                    return self.forward(first_seq, payload, Expect::Query).await;
                };
                let sql = self.shared.sessions.processlist_sql(
                    &self.user.name,
                    backend!(self).connection_id(),
                    &payload[1..],
                    full,
                    |t| guard::quote(t, &mode),
                );
                rewritten = with_command(COM_QUERY, &sql);
                &rewritten[..]
            }
            ids::Rewrite::Refuse(why) => {
                self.refuse(seq, &guard::Refusal::not_supported(why))
                    .await?;
                return Ok(None);
            }
        };
        let decision = self.decide(guard::Command::Query, &payload[1..]).await;
        // The server stops a multi-statement query at its first error: a PREPARE or
        // DEALLOCATE after it did not run, so its name is forgotten if the query fails.
        let named: Vec<String> = decision
            .effects
            .iter()
            .map(|e| match e {
                guard::Effect::Prepared(n, _) | guard::Effect::Deallocated(n) => n.clone(),
            })
            .collect();
        if !decision.outcome.is_refuse() {
            self.statements.apply(decision.effects);
        }
        let resync = self.resync_after(COM_QUERY, payload);
        match decision.outcome {
            Outcome::Pass => {
                let results = if self.shows_compressed_status(&payload[1..]) {
                    Results::CompressedStatus
                } else {
                    Results::Raw
                };
                let (close, ok, _) = self
                    .relay_command(first_seq, payload, Expect::Query, results, resync)
                    .await?;
                if !ok {
                    self.statements.forget(&named);
                }
                Ok(close)
            }
            Outcome::Refuse(r) => {
                self.refuse(seq, &r).await?;
                Ok(None)
            }
            Outcome::Protect(p) => {
                let rewritten = p.text.map(|t| with_command(COM_QUERY, &t));
                let results = Results::Shaped {
                    shapes: p.shapes,
                    binary: false,
                    capture: false,
                };
                let (close, ok, _) = self
                    .relay_command(
                        first_seq,
                        rewritten.as_deref().unwrap_or(payload),
                        Expect::Query,
                        results,
                        resync,
                    )
                    .await?;
                if !ok {
                    self.statements.forget(&named);
                }
                if p.schema_changed {
                    self.shared.schema_changed().await;
                }
                Ok(close)
            }
        }
    }

    /// COM_STMT_PREPARE: a statement on protected data is prepared rewritten, and its
    /// executes are rebuilt and their results transformed.
    async fn prepare(
        &mut self,
        first_seq: u8,
        seq: u8,
        payload: &[u8],
    ) -> Result<Option<Close>, Error> {
        let rewritten;
        let payload = match self.connection_ids(&payload[1..], true) {
            ids::Rewrite::Keep => payload,
            ids::Rewrite::Text(t) => {
                rewritten = with_command(COM_STMT_PREPARE, &t);
                &rewritten[..]
            }
            ids::Rewrite::ProcessList { .. } => payload,
            ids::Rewrite::Kill { .. } | ids::Rewrite::Refuse(_) => {
                let r = guard::Refusal::not_supported(
                    "KILL cannot be prepared through myveil; send it as a query",
                );
                self.refuse(seq, &r).await?;
                return Ok(None);
            }
        };
        // Read before the decision: a layout that changes meanwhile plans it again.
        let layout = self.shared.schema.load().layout();
        let decision = self.decide(guard::Command::Prepare, &payload[1..]).await;
        self.statements.apply(decision.effects);
        if crate::backend::state::mentions_tracking(&payload[1..]) {
            self.tracking_prepared = true;
        }
        if crate::backend::state::may_hide_state(&payload[1..]) {
            self.state_prepared = true;
        }
        match decision.outcome {
            Outcome::Pass if self.mux.is_some() => {
                backend!(self)
                    .conn
                    .write_packet(first_seq, payload)
                    .await
                    .map_err(backend_io)?;
                let key = super::mux::statement_key(&self.state, &payload[1..]);
                if let Err(e) = self.own_statement_id(key).await? {
                    return Ok(Some(
                        self.backend_lost(e, &Response::new(Expect::Prepare)).await,
                    ));
                }
                let (close, ok, _) = self.relay(Expect::Prepare, Results::Raw, false).await?;
                self.statements.prepared_plain(ok);
                Ok(close)
            }
            Outcome::Pass => {
                let (close, ok, _) = self
                    .relay_command(
                        first_seq,
                        payload,
                        Expect::Prepare,
                        Results::Raw,
                        Resync::NONE,
                    )
                    .await?;
                self.statements.prepared_plain(ok);
                Ok(close)
            }
            Outcome::Refuse(r) => {
                self.refuse(seq, &r).await?;
                Ok(None)
            }
            Outcome::Protect(p) => {
                let text = p.text.map(|t| with_command(COM_STMT_PREPARE, &t));
                let sent = text.as_deref().unwrap_or(payload);
                backend!(self)
                    .conn
                    .write_packet(first_seq, sent)
                    .await
                    .map_err(backend_io)?;
                let key = self
                    .mux
                    .is_some()
                    .then(|| super::mux::statement_key(&self.state, &sent[1..]));
                let shape = p.shapes.into_iter().next().flatten();
                let prepared = Prepared::new(p.client_params, p.params, shape).planned(
                    payload[1..].to_vec(),
                    layout,
                    super::mux::state_key(&self.state),
                );
                self.prepare_response(prepared, key).await
            }
        }
    }

    /// COM_STMT_EXECUTE: a protected statement's parameters are sealed or indexed, its
    /// results transformed (and a cursor it opens remembered).
    async fn execute(
        &mut self,
        first_seq: u8,
        seq: u8,
        payload: &[u8],
    ) -> Result<Option<Close>, Error> {
        let Some(raw) = statement_id(payload) else {
            return self.forward(first_seq, payload, Expect::Execute).await;
        };
        let Ok(id) = self.statements.key(raw) else {
            return self.ambiguous_statement(seq).await;
        };
        if !self.statements.is_protected(id) {
            let Ok(here) = self.for_connection(seq, payload).await? else {
                return Ok(None);
            };
            return self
                .forward(
                    first_seq,
                    here.as_deref().unwrap_or(payload),
                    Expect::Execute,
                )
                .await;
        }
        let protection = self.shared.protection.load_full();
        let Some(keyring) = self.shared.keyring.load_full() else {
            return Err(Error::Client(wire::Error::Malformed(
                "protected statement without keys",
            )));
        };
        let layout = self.shared.schema.load().layout();
        if self
            .statements
            .protected(id)
            .is_some_and(|p| p.layout != layout)
            && self.replan(seq, raw, id, layout).await?.is_err()
        {
            return Ok(None);
        }
        let Some(prepared) = self.statements.protected(id) else {
            return Ok(None);
        };
        let rebuilt = match prepared.execute(
            payload,
            &protection.policy,
            &crate::sql::rewrite::KeyringSealer(&keyring, &self.shared.schema.load().mixed),
        ) {
            Ok(r) => r,
            Err(r) => {
                let r = guard::Refusal::from(r);
                self.refuse(seq, &r).await?;
                return Ok(None);
            }
        };
        let shape = prepared.shape.clone();
        self.statements.close_cursor(id);
        let cursor = payload.get(5).is_some_and(|flags| *flags != 0);
        let results = Results::Shaped {
            shapes: vec![shape.clone()],
            binary: true,
            capture: cursor && shape.is_some(),
        };
        let out = rebuilt.as_deref().unwrap_or(payload);
        let Ok(here) = self.for_connection(seq, out).await? else {
            return Ok(None);
        };
        let (close, _, captured) = self
            .relay_command(
                first_seq,
                here.as_deref().unwrap_or(out),
                Expect::Execute,
                results,
                Resync {
                    tracking: self.tracking_prepared,
                    state: self.state_prepared,
                },
            )
            .await?;
        if let (Some(defs), Some(shape)) = (captured, shape) {
            self.statements.open_cursor(id, Cursor { defs, shape });
        }
        Ok(close)
    }

    /// A protected statement planned under another schema layout (a migration's shadow
    /// window opened or closed since): planned again from its text, and prepared again on
    /// the backend, before its execute. The client keeps its id, parameters and columns;
    /// a plan that would change those is refused (1615, as a server asks for a prepare
    /// again). Err(()): the client got the error.
    ///
    /// Security: without this, a statement prepared before the window would read the old
    /// column (NULL for what was written through the shadow since) and one prepared in it
    /// would name a shadow gone after the swap.
    async fn replan(
        &mut self,
        seq: u8,
        raw: u32,
        id: u32,
        layout: u64,
    ) -> Result<Result<(), ()>, Error> {
        let Some((text, params, width, planned_in)) = self.statements.protected(id).map(|p| {
            (
                p.text.clone(),
                p.client_params,
                p.shape.as_ref().map(|s| s.columns.len()),
                p.state.clone(),
            )
        }) else {
            return Ok(Ok(()));
        };
        // Read again only under the state it was read under (its names resolve against the
        // database it was prepared in, as the server's statement does).
        let same_state = planned_in == super::mux::state_key(&self.state);
        let decision = if same_state {
            Some(self.decide(guard::Command::Prepare, &text).await)
        } else {
            None
        };
        let p = match decision.map(|d| d.outcome) {
            Some(Outcome::Protect(p))
                if p.client_params == params
                    && p.shapes.first().cloned().flatten().map(|s| s.columns.len()) == width =>
            {
                p
            }
            Some(Outcome::Refuse(r)) => {
                self.refuse(seq, &r).await?;
                return Ok(Err(()));
            }
            _ => {
                self.reply_error(
                    seq,
                    packets::ER_NEED_REPREPARE,
                    b"HY000",
                    "myveil: the table changed under this prepared statement; prepare it again",
                )
                .await?;
                return Ok(Err(()));
            }
        };
        let sent = p.text.clone().unwrap_or_else(|| text.clone());
        let shape = p.shapes.into_iter().next().flatten();
        if let Some(mux) = self.mux.as_mut() {
            // Prepared again from its new key on whichever connection runs it.
            let key = super::mux::statement_key(&self.state, &sent);
            let own = if raw == u32::MAX {
                mux.last_prepared
            } else {
                Some(raw)
            };
            if let Some(st) = own.and_then(|o| mux.statements.get_mut(&o)) {
                st.key = key;
                st.params = p.params.len() as u16;
            }
        } else {
            let new = match self.prepare_here(&sent).await? {
                Ok(new) => new,
                Err(f) => {
                    let named = (f.first() == Some(&packets::ERR_HEADER))
                        .then(|| {
                            super::relay::too_narrow(&f, &self.shared.protection.load().policy)
                        })
                        .flatten();
                    self.client
                        .write_packet(seq.wrapping_add(1), named.as_deref().unwrap_or(&f))
                        .await
                        .map_err(Error::Client)?;
                    return Ok(Err(()));
                }
            };
            let old = self.statements.backend_id(id).unwrap_or(id);
            close_on(backend!(self), old).await?;
            self.statements.remap(id, new);
        }
        if let Some(prepared) = self.statements.protected(id) {
            prepared.replanned(p.params, shape, layout);
        }
        METRICS.prepared_again();
        tracing::debug!("prepared statement planned again for a new schema layout");
        Ok(Ok(()))
    }

    /// COM_STMT_FETCH: rows of a protected cursor are transformed like its execute's.
    async fn fetch(
        &mut self,
        first_seq: u8,
        seq: u8,
        payload: &[u8],
    ) -> Result<Option<Close>, Error> {
        let id = match statement_id(payload).map(|id| self.statements.key(id)) {
            Some(Ok(id)) => id,
            Some(Err(())) => return self.ambiguous_statement(seq).await,
            None => return self.forward(first_seq, payload, Expect::Fetch).await,
        };
        let results = match self.statements.cursor(id) {
            Some(c) => Results::Fetch(c.clone()),
            None => Results::Raw,
        };
        let Ok(here) = self.for_connection(seq, payload).await? else {
            return Ok(None);
        };
        let (close, _, _) = self
            .relay_command(
                first_seq,
                here.as_deref().unwrap_or(payload),
                Expect::Fetch,
                results,
                Resync::NONE,
            )
            .await?;
        Ok(close)
    }

    /// COM_STMT_SEND_LONG_DATA (no response): held and sealed at execute for a protected
    /// parameter, forwarded (with the parameter remapped) otherwise.
    async fn long_data(&mut self, first_seq: u8, payload: &[u8]) -> Result<Option<Close>, Error> {
        let raw = statement_id(payload);
        let id = match raw.map(|id| self.statements.key(id)) {
            Some(Ok(id)) => Some(id),
            Some(Err(())) => {
                // Security: data for a statement that may be protected is not forwarded; its
                // execute is refused the same way.
                tracing::info!("long data for an ambiguous statement id dropped");
                return Ok(None);
            }
            None => None,
        };
        let limit = self.shared.config.listen.max_packet_bytes;
        let out = if let Some(prepared) = id.and_then(|id| self.statements.protected(id)) {
            match prepared.long_data(payload, limit) {
                Ok(Some(remapped)) => remapped,
                Ok(None) => return Ok(None),
                Err(r) => {
                    prepared.poison(r);
                    return Ok(None);
                }
            }
        } else {
            payload.to_vec()
        };
        // No response to answer with: a statement that cannot be prepared again here gets
        // its error at its execute, which prepares it again.
        let out = match self.statement_here(&out).await? {
            Some(Ok(p)) => p,
            Some(Err(_)) => return Ok(None),
            None => out,
        };
        backend!(self)
            .conn
            .write_packet(first_seq, &out)
            .await
            .map_err(backend_io)?;
        Ok(None)
    }

    /// COM_STMT_CLOSE (no response).
    async fn close_statement(
        &mut self,
        first_seq: u8,
        payload: &[u8],
    ) -> Result<Option<Close>, Error> {
        let mut payload = std::borrow::Cow::Borrowed(payload);
        if let Some(raw) = statement_id(&payload)
            && let Ok(id) = self.statements.key(raw)
        {
            if let Some(backend) = self.statements.explicit(raw) {
                payload.to_mut()[1..5].copy_from_slice(&backend.to_le_bytes());
            }
            self.statements.closed(id);
        }
        let payload = &payload[..];
        // Multiplexed: the client's id goes; the statement stays prepared on the
        // connections that have it, for the role's sessions (bounded: StatementCache).
        if let Some(mux) = self.mux.as_mut()
            && let Some((id, _)) = statement_id(payload).and_then(|id| mux.key(id))
        {
            mux.statements.remove(&id);
            if mux.last_prepared == Some(id) {
                mux.last_prepared = None;
            }
            return Ok(None);
        }
        backend!(self)
            .conn
            .write_packet(first_seq, payload)
            .await
            .map_err(backend_io)?;
        Ok(None)
    }

    async fn ambiguous_statement(&mut self, seq: u8) -> Result<Option<Close>, Error> {
        let reply = ErrorReply::new(
            packets::ER_NOT_SUPPORTED_YET,
            b"42000",
            "myveil: statement id -1 (the last prepared statement) is ambiguous after a failed prepare while protected statements are open; execute by id",
        );
        self.send_reply(seq, &reply).await?;
        Ok(None)
    }

    /// How the server reads the session's texts now (None: a character set myveil cannot
    /// read).
    fn lex_mode(&self, prepare: bool) -> Option<crate::sql::lex::Mode<'static>> {
        let cs = crate::sql::charset::Charset::named(&self.state.client_charset)?;
        Some(crate::guard::lex_mode(
            cs,
            &self.state.sql_mode,
            self.server_version,
            prepare,
        ))
    }

    /// The statement's literal-free fingerprint, read the way the server reads it.
    fn fingerprint(&self, text: &[u8]) -> String {
        let Some(mode) = self.lex_mode(false) else {
            return crate::sql::UNREADABLE.into();
        };
        match crate::sql::lex::lex(text, &mode) {
            Ok(lexed) => crate::sql::fingerprint(text, &lexed),
            Err(_) => crate::sql::UNREADABLE.into(),
        }
    }

    /// Reads a text for `CONNECTION_ID()` and KILL, which name the session's own id
    /// (frontend::ids).
    fn connection_ids(&self, text: &[u8], prepare: bool) -> ids::Rewrite {
        let Some(mode) = self.lex_mode(prepare) else {
            return ids::Rewrite::Keep;
        };
        ids::rewrite(text, &mode, self.id.get())
    }

    /// A compressed client asks for status variables (ids::shows_status).
    fn shows_compressed_status(&self, text: &[u8]) -> bool {
        if !matches!(self.client.stream(), wire::stream::Stream::Compressed(_)) {
            return false;
        }
        self.lex_mode(false)
            .is_some_and(|mode| ids::shows_status(text, &mode))
    }

    /// A KILL of session `target` (`words`: HARD/SOFT, CONNECTION/QUERY): sent on as a
    /// KILL of the backend thread that session runs on, or answered as the server answers
    /// an unknown or foreign thread id.
    async fn kill(
        &mut self,
        first_seq: u8,
        seq: u8,
        words: &str,
        target: u64,
    ) -> Result<Option<Close>, Error> {
        let refused = match self.shared.sessions.kill_target(target, &self.user.name) {
            Ok(Some((thread, gone))) => {
                let sql = format!("KILL {words} {thread}");
                let payload = with_command(COM_QUERY, sql.as_bytes());
                backend!(self)
                    .conn
                    .write_packet(first_seq, &payload)
                    .await
                    .map_err(backend_io)?;
                // The server closes a killed connection before it answers the KILL; the
                // killed session closes its client only once it sees its backend go. The
                // answer waits for that (briefly), so the killer never sees an OK while its
                // victim still looks alive.
                if !words.contains("QUERY") && target != u64::from(self.id.get()) {
                    gone.wait(KILL_CLOSE_WAIT).await;
                }
                let (close, _, _) = self.relay(Expect::Query, Results::Raw, false).await?;
                return Ok(close);
            }
            // A multiplexed session between statements: nothing runs to stop (KILL QUERY),
            // or it ends itself (KILL CONNECTION), as a server's idle thread would.
            Ok(None) if self.mux.is_some() => {
                let own = target == u64::from(self.id.get());
                if !words.contains("QUERY")
                    && let Some(gone) = self.shared.sessions.kill_detached(target)
                    && !own
                {
                    gone.wait(KILL_CLOSE_WAIT).await;
                }
                let ok = packets::ok_payload(0, 0, self.status_flags(), 0);
                self.client
                    .write_packet(seq.wrapping_add(1), &ok)
                    .await
                    .map_err(Error::Client)?;
                return Ok(None);
            }
            Ok(None) | Err(ids::KillRefused::Unknown(_)) => {
                (ER_NO_SUCH_THREAD, format!("Unknown thread id: {target}"))
            }
            Err(ids::KillRefused::NotOwner(_)) => (
                ER_KILL_DENIED_ERROR,
                format!("You are not owner of thread {target}"),
            ),
        };
        self.reply_error(seq, refused.0, b"HY000", &refused.1)
            .await?;
        Ok(None)
    }

    /// Runs the guard on a statement text (large ones on a blocking thread).
    async fn decide(&mut self, command: guard::Command, text: &[u8]) -> Decision {
        let store = self.shared.tokens.as_ref().map(|t| t.schema());
        let protection = self.shared.protection.load_full();
        if !guard::needed(&protection.policy, store) {
            return Decision {
                outcome: Outcome::Pass,
                effects: Vec::new(),
            };
        }
        use std::borrow::Cow;
        let input = super::Decide {
            shared: self.shared.clone(),
            protection,
            state: Cow::Borrowed(&self.state),
            role: Cow::Borrowed(&self.user.role),
            server_version: self.server_version,
            store: store.map(Cow::Borrowed),
            sql_prepared: Cow::Borrowed(&self.statements.sql),
            cache: self.decisions.clone(),
        };
        if text.len() < BLOCKING_ANALYSIS_BYTES {
            return input.run(text, command);
        }
        let input = super::Decide {
            state: Cow::Owned(input.state.into_owned()),
            role: Cow::Owned(input.role.into_owned()),
            store: input.store.map(|s| Cow::Owned(s.into_owned())),
            sql_prepared: Cow::Owned(input.sql_prepared.into_owned()),
            ..input
        };
        let text = text.to_vec();
        let shared = self.shared.clone();
        let Ok(_slot) = shared.analysis_slots.acquire().await else {
            return Decision {
                outcome: Outcome::Refuse(guard::Refusal::not_supported("shutting down")),
                effects: Vec::new(),
            };
        };
        match tokio::task::spawn_blocking(move || input.run(&text, command)).await {
            Ok(d) => d,
            Err(_) => Decision {
                outcome: Outcome::Refuse(guard::Refusal::not_supported(
                    "the statement could not be analyzed",
                )),
                effects: Vec::new(),
            },
        }
    }

    /// Answers a refused statement with its error packet.
    async fn refuse(&mut self, seq: u8, r: &guard::Refusal) -> Result<(), Error> {
        METRICS.refused();
        let reply = super::error::refusal(r, &self.user.name);
        tracing::info!(code = reply.code, target = r.target(), "statement refused");
        self.send_reply(seq, &reply).await
    }

    async fn send_reply(&mut self, seq: u8, reply: &ErrorReply) -> Result<(), Error> {
        self.client
            .write_packet(seq.wrapping_add(1), &reply.to_payload())
            .await
            .map_err(Error::Client)?;
        Ok(())
    }

    /// What must be read again from the server after a command: the tracking settings,
    /// when its text names a `session_track_*` variable or it runs a prepared statement while
    /// one whose text did exists (procedures that change them reach protected data: see
    /// backend::schema); the state, when it may change it unreported (`SET @@name`, EXECUTE).
    fn resync_after(&mut self, command: u8, payload: &[u8]) -> Resync {
        use crate::backend::state::{may_hide_state, mentions_tracking};
        let text = payload.get(1..).unwrap_or_default();
        let tracking = match command {
            COM_QUERY if mentions_tracking(text) => {
                self.tracking_prepared |= first_words_are(text, &["prepare"]);
                true
            }
            COM_STMT_PREPARE if mentions_tracking(text) => {
                self.tracking_prepared = true;
                false
            }
            COM_QUERY => {
                self.tracking_prepared
                    && text.windows(7).any(|w| w.eq_ignore_ascii_case(b"execute"))
            }
            COM_STMT_EXECUTE => self.tracking_prepared,
            _ => false,
        };
        let state = match command {
            // MariaDB reports the character sets a SET NAMES changes, not the collation it
            // sets with them; a multiplexed session must know it to move.
            COM_QUERY if self.mux.is_some() && names_character_sets(text) => true,
            COM_QUERY => may_hide_state(text),
            COM_STMT_EXECUTE => self.state_prepared,
            _ => false,
        };
        Resync { tracking, state }
    }

    /// Reads the state again, directly, after a command that may have changed it unreported;
    /// when tracking was changed under myveil (a routine may do that), it is set up again.
    async fn report_state(&mut self) -> Result<(), Error> {
        let row = backend!(self)
            .query_row(crate::backend::state::STATE_QUERY)
            .await?;
        let intact = self
            .state
            .apply_state_row(&row)
            .map_err(|_| backend_io(wire::Error::Malformed("session state")))?;
        if !intact {
            self.sync_tracking().await?;
        }
        Ok(())
    }

    /// Reads the session's tracking settings after a statement that may have changed them:
    /// they become what the client is given, and myveil's own tracking is set up again on
    /// top of them (with a fresh report of the state).
    async fn sync_tracking(&mut self) -> Result<(), Error> {
        let row = backend!(self)
            .query_row(
                "SELECT @@session.session_track_system_variables, @@session.session_track_schema",
            )
            .await?;
        let text = |i: usize| {
            row.get(i)
                .cloned()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let settings = crate::backend::state::TrackingDefaults {
            variables: crate::backend::state::VarSet::parse(&text(0)),
            schema: text(1) == "1" || text(1).eq_ignore_ascii_case("on"),
        };
        if self.tracking != ClientTracking::Off {
            self.tracking = ClientTracking::On(settings.clone());
        }
        let database = self.state.database.clone();
        self.state = backend!(self)
            .setup_tracking(database.as_deref().map(str::as_bytes), &settings.variables)
            .await?;
        Ok(())
    }

    /// Sets tracking up again after the backend session was reset.
    async fn setup_tracking(&mut self, database: Option<&[u8]>) -> Result<(), Error> {
        let variables = self.shared.tracked_variables();
        self.state = backend!(self).setup_tracking(database, &variables).await?;
        Ok(())
    }

    /// Whether `name` is the token store's schema (COM_INIT_DB, the handshake's database).
    fn is_store_schema(&self, name: &[u8]) -> bool {
        self.shared.reserved_schema(name).is_some()
    }

    fn store_denied(&self, name: &[u8]) -> ErrorReply {
        let schema = self.shared.reserved_schema(name).unwrap_or_default();
        super::error::refusal(&guard::Refusal::StoreSchema { schema }, &self.user.name)
    }

    /// Relays a prepare response for a protected statement: the client is told its own
    /// parameter count (the backend's may be larger), column definitions are rewritten to
    /// the plaintext types. Remembers the statement for its executes.
    async fn prepare_response(
        &mut self,
        prepared: Prepared,
        key: Option<std::sync::Arc<[u8]>>,
    ) -> Result<Option<Close>, Error> {
        let limit = self.shared.config.listen.max_packet_bytes;
        let read = async |b: &mut BackendConn| b.conn.read_packet(limit).await;
        let first = match read(backend!(self)).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(Some(
                    self.backend_lost(e, &Response::new(Expect::Prepare)).await,
                ));
            }
        };
        let mut seq = first.first_seq;
        if first.payload.first() != Some(&packets::OK_HEADER) || first.payload.len() < 12 {
            self.statements.prepared_plain(false);
            // A column not ready for envelopes gets myveil's error, as a write's does.
            let named = (first.payload.first() == Some(&packets::ERR_HEADER))
                .then(|| {
                    super::relay::too_narrow(&first.payload, &self.shared.protection.load().policy)
                })
                .flatten();
            self.client
                .write_packet(seq, named.as_deref().unwrap_or(&first.payload))
                .await
                .map_err(Error::Client)?;
            return Ok(None);
        }
        let p = &first.payload;
        let mut id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
        let columns = usize::from(u16::from_le_bytes([p[5], p[6]]));
        let params = usize::from(u16::from_le_bytes([p[7], p[8]]));
        let client_params = prepared.client_params;
        let mut ok = p.to_vec();
        ok[7..9].copy_from_slice(&(client_params as u16).to_le_bytes());
        if let Some(key) = key
            && let Some(own) = self.register_statement(key, id, params as u16).await?
        {
            id = own;
            ok[1..5].copy_from_slice(&id.to_le_bytes());
        }
        seq = self.client.queue_packet(seq, &ok);
        let group = async |this: &mut Self, n: usize| -> Result<Vec<Vec<u8>>, wire::Error> {
            let mut v = Vec::with_capacity(n + 1);
            for _ in 0..n + usize::from(n > 0) {
                let backend = this
                    .backend
                    .as_mut()
                    .ok_or(wire::Error::Malformed("no backend connection attached"))?;
                v.push(backend.conn.read_packet(limit).await?.payload.to_vec());
            }
            Ok(v)
        };
        let param_defs = match group(self, params).await {
            Ok(v) => v,
            Err(e) => {
                return Ok(Some(
                    self.backend_lost(e, &Response::new(Expect::Prepare)).await,
                ));
            }
        };
        let mut column_defs = match group(self, columns).await {
            Ok(v) => v,
            Err(e) => {
                return Ok(Some(
                    self.backend_lost(e, &Response::new(Expect::Prepare)).await,
                ));
            }
        };
        if client_params > 0 {
            let def = param_defs.first().cloned().unwrap_or_default();
            for _ in 0..client_params {
                seq = self.client.queue_packet(seq, &def);
            }
            let eof = param_defs.last().cloned().unwrap_or_default();
            seq = self.client.queue_packet(seq, &eof);
        }
        if columns > 0 {
            let protection = self.shared.protection.load_full();
            let (defs, eof) = column_defs.split_at_mut(columns);
            if let Some(shape) = &prepared.shape {
                // Metadata only: a denied or conflicting column is refused when it runs.
                let _ = super::transform::plan(
                    defs,
                    &protection.policy,
                    &self.user.role,
                    shape,
                    self.state.results_charset.as_deref(),
                    &super::transform::NoCells,
                );
            }
            for d in defs.iter().chain(eof.iter()) {
                seq = self.client.queue_packet(seq, d);
            }
        }
        self.client.flush().await.map_err(Error::Client)?;
        self.statements.prepared_protected(id, prepared);
        Ok(None)
    }

    /// Relays the response to the command just sent, including LOCAL INFILE exchanges.
    /// Returns how the session goes on, whether the response ended with OK/EOF, and the
    /// column definitions it captured.
    /// `tracking_change`: the command may change the client's tracking settings, so its
    /// records pass unfiltered and the settings are read again afterwards.
    async fn relay(
        &mut self,
        expect: Expect,
        results: Results,
        tracking_change: bool,
    ) -> Result<(Option<Close>, bool, Option<Vec<Vec<u8>>>), Error> {
        let view = match (&self.tracking, tracking_change) {
            (ClientTracking::Off, _) | (_, false) => self.tracking.clone(),
            (_, true) => ClientTracking::Unfiltered,
        };
        let mut response = Response::new(expect);
        // Only a protected response needs the policy and the keys (kept off the hot path).
        let protected = (!matches!(results, Results::Raw)).then(|| {
            (
                self.shared.protection.load_full(),
                self.shared.clone(),
                // The columns a migration is sealing, as the last schema read found them.
                self.shared.schema.load_full(),
                self.shared.keyring.load_full(),
            )
        });
        let capture = matches!(results, Results::Shaped { capture: true, .. });
        loop {
            let relayed = if let Some((protection, shared, schema, keyring)) = &protected {
                let keyring_cells;
                let cells: &(dyn super::transform::Cells + Sync) =
                    match (keyring.as_deref(), &results) {
                        (Some(keyring), _) => {
                            keyring_cells = super::transform::KeyringCells(keyring, &schema.mixed);
                            &keyring_cells
                        }
                        // Opens nothing: no result of it has a shape.
                        (None, Results::CompressedStatus) => &super::transform::NoCells,
                        (None, _) => {
                            return Err(Error::Client(wire::Error::Malformed(
                                "protected result without keys",
                            )));
                        }
                    };
                let (shapes, binary, fetch) = results.parts();
                let results_charset = self.state.results_charset.clone();
                let t = super::relay::Transform {
                    policy: &protection.policy,
                    role: &self.user.role,
                    results_charset: results_charset.as_deref(),
                    cells,
                    binary,
                    row_limit: shared.config.listen.max_packet_bytes,
                    shapes,
                    fetch,
                    capture,
                    compressed_status: matches!(results, Results::CompressedStatus),
                };
                let mut tracker = super::relay::Tracker {
                    state: &mut self.state,
                    client: &view,
                };
                unless_revoked(
                    response.relay_transformed(
                        &mut backend!(self).conn,
                        &mut self.client,
                        &t,
                        &mut tracker,
                    ),
                    &mut self.revoked,
                )
                .await
            } else {
                let mut tracker = super::relay::Tracker {
                    state: &mut self.state,
                    client: &view,
                };
                unless_revoked(
                    response.relay(&mut backend!(self).conn, &mut self.client, &mut tracker),
                    &mut self.revoked,
                )
                .await
            };
            let Some(relayed) = relayed else {
                // The session's token was revoked with kill_sessions during a long command:
                // the backend connection is closed with it (never pooled mid-response).
                tracing::info!("token revoked: session ended during a command");
                return Ok((Some(Close::Dirty), false, None));
            };
            let end = match relayed {
                Ok(end) => end,
                Err(Failed::Backend(e)) => {
                    return Ok((Some(self.backend_lost(e, &response).await), false, None));
                }
                Err(Failed::Client(e)) => return Err(Error::Client(e)),
            };
            match end {
                End::Done(status) => {
                    self.trace |= response.trace;
                    if let Some(s) = status {
                        self.in_transaction = s.contains(StatusFlags::SERVER_STATUS_IN_TRANS);
                    }
                    // Only a result that left a cursor open is worth remembering.
                    let cursor_open = status
                        .is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS));
                    let captured = response.captured_defs.take().filter(|_| cursor_open);
                    return Ok((None, status.is_some(), captured));
                }
                End::LocalInfile => loop {
                    // The client streams the file; an empty packet ends it.
                    let len = forward_packet(&mut self.client, &mut backend!(self).conn)
                        .await
                        .map_err(Error::Client)?;
                    if len == 0 {
                        backend!(self).conn.flush().await.map_err(backend_io)?;
                        break;
                    }
                },
            }
        }
    }

    /// The status flags an OK of myveil's own carries.
    fn status_flags(&self) -> StatusFlags {
        let mut s = StatusFlags::empty();
        s.set(StatusFlags::SERVER_STATUS_AUTOCOMMIT, self.state.autocommit);
        s.set(StatusFlags::SERVER_STATUS_IN_TRANS, self.in_transaction);
        s
    }

    /// Whether a multiplexed session may set its connection down now: nothing pins or
    /// holds it, no transaction (nor autocommit off, where every statement opens one), and
    /// nothing of the session lives on it that myveil cannot move.
    fn can_park(&self) -> bool {
        self.mux.as_ref().is_some_and(|m| m.hold == 0) && self.could_park()
    }

    /// Whether the session would park but for a hold for its next command (an insert id,
    /// warnings or an error its client may still ask about).
    fn held_only(&self) -> bool {
        self.mux.as_ref().is_some_and(|m| m.hold > 0) && self.could_park()
    }

    fn could_park(&self) -> bool {
        self.mux.as_ref().is_some_and(|m| m.pinned.is_none())
            && !self.in_transaction
            && self.state.autocommit
            && self.state.known
            && self.mux.as_ref().is_some_and(|m| !m.long_data)
            && self.reusable
            && !self.tracking_prepared
            && !self.state_prepared
            && self
                .backend
                .as_ref()
                .is_some_and(|b| b.conn.rbuf.is_empty())
    }

    /// Multiplexed mode, between statements: the connection goes back to the pool as it
    /// is, with the session's state, for this session's next command or another's.
    fn park(&mut self) {
        if !self.can_park() {
            return;
        }
        let (Some(backend), Some(mux)) = (self.backend.take(), self.mux.as_mut()) else {
            return;
        };
        mux.last = backend.connection_id();
        // From here a KILL QUERY of this session has nothing to stop; SHOW PROCESSLIST shows
        // it asleep in its database.
        self.id.set_backend(0);
        if self.shown_database.as_ref() != Some(&self.state.database) {
            self.id.set_database(self.state.database.as_deref());
            self.shown_database = Some(self.state.database.clone());
        }
        // The state is shared with the parked connection, copied only when it changed.
        let state = match &self.parked_state {
            Some(s)
                if s.known == self.state.known
                    && s.database == self.state.database
                    && s.variables == self.state.variables =>
            {
                s.clone()
            }
            _ => {
                let s = std::sync::Arc::new(self.state.clone());
                self.parked_state = Some(s.clone());
                s
            }
        };
        self.shared.pool.park(backend, &self.user.role, state);
    }

    /// Multiplexed mode: takes a connection for the next command and brings it to the
    /// session's state (its own last one first, as it left it; else another, the state
    /// replayed; else one logged in again). Err: what the client is told instead.
    async fn attach(&mut self) -> Result<(), ErrorReply> {
        if self.backend.is_some() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let Some((account, password)) = shared.account_for(&self.user) else {
            return Err(ErrorReply::new(
                packets::ER_UNKNOWN_ERROR,
                b"HY000",
                "myveil: the session's role has no backend account any more; reconnect",
            ));
        };
        let who = Identity {
            account,
            user: &shared.config.backend.accounts[account].user,
            password,
            database: self.state.database.as_deref().map(str::as_bytes),
            collation: self.collation,
            attributes: &self.attributes,
        };
        let last = self.mux.as_ref().map_or(0, |m| m.last);
        let variables = shared.tracked_variables();
        // A pooled connection can be found dead (a backend restart closes them all): the
        // idle ones are dropped and the next is tried, a fresh one in the end.
        let mut tries = 0;
        let conn = loop {
            tries += 1;
            let failed = match self.take_restored(&who, last, &variables).await {
                Ok(Ok(conn)) => break conn,
                Ok(Err(reply)) => return Err(reply),
                Err(e) => e,
            };
            shared.pool.drop_idle();
            if tries >= 3 || !matches!(failed, backend::Error::Wire(_)) {
                tracing::info!(error = %failed, "no backend connection for the session's next command");
                return Err(backend_error(&failed));
            }
            tracing::debug!(error = %failed, "a pooled backend connection was dead; another is tried");
        };
        if conn.connection_id() != last {
            tracing::trace!(
                thread = conn.connection_id(),
                "session moved to another backend connection"
            );
        }
        self.id.set_backend(conn.connection_id());
        self.backend = Some(conn);
        Ok(())
    }

    /// One try of `attach`: a connection from the pool, in the session's state. Ok(Err): the
    /// state could not be restored (the client is told); Err: the backend failed.
    async fn take_restored(
        &self,
        who: &Identity<'_>,
        last: u32,
        variables: &crate::backend::state::VarSet,
    ) -> Result<Result<BackendConn, ErrorReply>, backend::Error> {
        let (mut conn, from) = self
            .shared
            .pool
            .attach(who, &self.user.role, last, self.caps, variables)
            .await?;
        // Parked by this session and taken by no one since: in its state as it is.
        let own = self
            .parked_state
            .as_ref()
            .is_some_and(|mine| std::sync::Arc::ptr_eq(mine, &from));
        if own || conn.restore(&from, &self.state).await? {
            return Ok(Ok(conn));
        }
        // Logged in again (everything reset), then the state once more.
        tracing::debug!("session state did not move over; the connection logs in again");
        conn.change_user(who).await?;
        let fresh = conn.setup_tracking(who.database, variables).await?;
        if conn.restore(&fresh, &self.state).await? {
            return Ok(Ok(conn));
        }
        conn.close();
        Ok(Err(ErrorReply::new(
            packets::ER_UNKNOWN_ERROR,
            b"HY000",
            "myveil: the session's state could not be restored on a backend connection; reconnect",
        )))
    }

    /// Multiplexed mode, before a command: what it leaves on its connection.
    fn before(&mut self, command: u8, payload: &[u8]) {
        self.trace = false;
        let needs = match command {
            COM_QUERY if self.mux.is_some() => {
                let mode = self.lex_mode(false);
                super::mux::needs(&payload[1..], mode.as_ref())
            }
            // A cursor lives on its connection until it is closed.
            COM_STMT_EXECUTE if payload.get(5).is_some_and(|flags| *flags != 0) => {
                Needs::Pin("a cursor")
            }
            COM_SET_OPTION => Needs::Pin("COM_SET_OPTION"),
            _ => Needs::Nothing,
        };
        let Some(mux) = self.mux.as_mut() else {
            return;
        };
        mux.hold = mux.hold.saturating_sub(1);
        // Long data waits on its connection for the statement's execute.
        match command {
            COM_STMT_SEND_LONG_DATA => mux.long_data = true,
            COM_STMT_EXECUTE | COM_STMT_RESET | COM_STMT_CLOSE => mux.long_data = false,
            _ => {}
        }
        match needs {
            Needs::Pin(why) if mux.pinned.is_none() => {
                tracing::debug!(reason = why, "session pinned to its backend connection");
                mux.pinned = Some(why);
            }
            Needs::Next => mux.hold = mux.hold.max(1),
            _ => {}
        }
    }

    /// Multiplexed mode, after a command: an insert id, warnings or an error keep the
    /// connection for the next statement (LAST_INSERT_ID(), SHOW WARNINGS, GET DIAGNOSTICS).
    fn after(&mut self) {
        let Some(mux) = self.mux.as_mut() else {
            return;
        };
        if self.trace {
            mux.hold = mux.hold.max(1);
        }
        // A statement is prepared again elsewhere only under the state it was prepared in:
        // once the database, sql_mode or character set moved on, the session stays.
        if mux.pinned.is_none()
            && let Some(key) = mux.statements.values().next().map(|s| &s.key)
            && !key.starts_with(super::mux::state_key(&self.state).as_bytes())
        {
            tracing::debug!("session pinned: prepared statements from before a change of state");
            mux.pinned = Some(
                "prepared statements from before a change of database, sql_mode or character set",
            );
        }
    }

    /// After COM_RESET_CONNECTION or COM_CHANGE_USER: nothing of the old session pins the
    /// connection (but a backend user's own login).
    fn unpin(&mut self) {
        let backend_user = self
            .backend
            .as_ref()
            .is_some_and(BackendConn::is_backend_user);
        if let Some(b) = self.backend.as_mut() {
            b.statements.clear();
        }
        if let Some(mux) = self.mux.as_mut() {
            mux.pinned = backend_user.then_some("a backend user's own login");
            mux.hold = 0;
            mux.forget_statements();
        }
    }

    /// Multiplexed mode: the payload of a COM_STMT_* command with the client's statement id
    /// turned into the connection's, the statement prepared on it first when it is not
    /// (None: the id is not one of the session's; it goes as it is). Some(Err): preparing
    /// it again failed, and the client gets this ERR.
    async fn statement_here(
        &mut self,
        payload: &[u8],
    ) -> Result<Option<Result<Vec<u8>, Vec<u8>>>, Error> {
        let Some(mux) = self.mux.as_ref() else {
            // Pinned: a statement prepared again has the backend's new id.
            let mapped = statement_id(payload).and_then(|id| self.statements.explicit(id));
            return Ok(mapped.map(|id| {
                let mut out = payload.to_vec();
                out[1..5].copy_from_slice(&id.to_le_bytes());
                Ok(out)
            }));
        };
        let Some((own, key)) = statement_id(payload).and_then(|id| mux.key(id)) else {
            return Ok(None);
        };
        let id = match backend!(self).statements.get(&key) {
            Some(id) => id,
            None => match self.prepare_again(&key).await? {
                Ok(id) => id,
                Err(reply) => return Ok(Some(Err(reply))),
            },
        };
        let mut out = payload.to_vec();
        out[1..5].copy_from_slice(&id.to_le_bytes());
        if out[0] == COM_STMT_EXECUTE
            && let Some(mux) = self.mux.as_mut()
        {
            mux.bind_types(own, &mut out);
        }
        Ok(Some(Ok(out)))
    }

    /// Prepares a statement of the session on its current connection (the response is
    /// myveil's own: the client saw one when it prepared the statement). Err: the ERR.
    async fn prepare_again(
        &mut self,
        key: &std::sync::Arc<[u8]>,
    ) -> Result<Result<u32, Vec<u8>>, Error> {
        let state = super::mux::state_key(&self.state);
        let Some(text) = key.strip_prefix(state.as_bytes()) else {
            // `after` pins a session whose state moved on; never expected here.
            let reply = ErrorReply::new(
                packets::ER_UNKNOWN_ERROR,
                b"HY000",
                "myveil: the statement was prepared under another database, sql_mode or character set; prepare it again",
            );
            return Ok(Err(reply.to_payload()));
        };
        let id = match self.prepare_here(text).await? {
            Ok(id) => id,
            Err(reply) => return Ok(Err(reply)),
        };
        let conn = backend!(self);
        if let Some(evicted) = conn.statements.insert(key.clone(), id) {
            close_on(conn, evicted).await?;
        }
        METRICS.prepared_again();
        tracing::trace!(
            statement = id,
            "statement prepared again on another connection"
        );
        Ok(Ok(id))
    }

    /// Prepares `text` on the current connection, its response read here (the client saw
    /// one when it prepared the statement): the backend's statement id, or its ERR.
    async fn prepare_here(&mut self, text: &[u8]) -> Result<Result<u32, Vec<u8>>, Error> {
        let limit = self.shared.config.listen.max_packet_bytes;
        let conn = backend!(self);
        let mut p = Vec::with_capacity(text.len() + 1);
        p.push(COM_STMT_PREPARE);
        p.extend_from_slice(text);
        conn.conn.write_packet(0, &p).await.map_err(backend_io)?;
        let first = conn.conn.read_packet(limit).await.map_err(backend_io)?;
        let f = &first.payload;
        if f.first() != Some(&packets::OK_HEADER) || f.len() < 9 {
            return Ok(Err(f.to_vec()));
        }
        let id = u32::from_le_bytes([f[1], f[2], f[3], f[4]]);
        let columns = usize::from(u16::from_le_bytes([f[5], f[6]]));
        let params = usize::from(u16::from_le_bytes([f[7], f[8]]));
        for n in [params, columns] {
            for _ in 0..n + usize::from(n > 0) {
                conn.conn.read_packet(limit).await.map_err(backend_io)?;
            }
        }
        Ok(Ok(id))
    }

    /// Multiplexed mode, a prepare just sent: when its answer is a prepare OK, the
    /// statement id in it becomes the session's own, in the read buffer before it is
    /// relayed. Err: the backend went away.
    async fn own_statement_id(
        &mut self,
        key: std::sync::Arc<[u8]>,
    ) -> Result<Result<(), wire::Error>, Error> {
        let conn = backend!(self);
        if let Err(e) = conn.conn.ensure(9).await {
            return Ok(Err(e));
        }
        if conn.conn.rbuf[4] != packets::OK_HEADER {
            return Ok(Ok(()));
        }
        // A prepare OK is 12 bytes: the id, then the column and parameter counts.
        if let Err(e) = conn.conn.ensure(13).await {
            return Ok(Err(e));
        }
        let b = &conn.conn.rbuf;
        let id = u32::from_le_bytes([b[5], b[6], b[7], b[8]]);
        let params = u16::from_le_bytes([b[11], b[12]]);
        if let Some(own) = self.register_statement(key, id, params).await? {
            backend!(self).conn.rbuf[5..9].copy_from_slice(&own.to_le_bytes());
        }
        Ok(Ok(()))
    }

    /// A COM_STMT_* payload as this connection must get it (multiplexed mode: its
    /// statement id, prepared again here if need be; None: as it is). Err(()): preparing it
    /// again failed and the client was given the error.
    async fn for_connection(
        &mut self,
        seq: u8,
        payload: &[u8],
    ) -> Result<Result<Option<Vec<u8>>, ()>, Error> {
        match self.statement_here(payload).await? {
            None => Ok(Ok(None)),
            Some(Ok(p)) => Ok(Ok(Some(p))),
            Some(Err(err)) => {
                self.client
                    .write_packet(seq.wrapping_add(1), &err)
                    .await
                    .map_err(Error::Client)?;
                Ok(Err(()))
            }
        }
    }

    /// Multiplexed mode, after a prepare OK of the backend's statement `id` for `key`: the
    /// connection keeps it, and the client gets an id of the session's own (None: pinned
    /// mode, the backend's id goes to the client).
    async fn register_statement(
        &mut self,
        key: std::sync::Arc<[u8]>,
        id: u32,
        params: u16,
    ) -> Result<Option<u32>, Error> {
        let Some(mux) = self.mux.as_mut() else {
            return Ok(None);
        };
        let client = mux.prepared(key.clone(), params);
        let conn = backend!(self);
        if let Some(evicted) = conn.statements.insert(key, id) {
            close_on(conn, evicted).await?;
        }
        Ok(Some(client))
    }

    /// The backend failed mid-response: tell the client if the framing still allows it, and
    /// end the session (nothing is retried: the statement may have run).
    async fn backend_lost(&mut self, e: wire::Error, response: &Response) -> Close {
        tracing::warn!(error = %e, "backend connection lost during a command");
        if let Some(seq) = response.next_seq() {
            // A communication error (08S01), as a server reports a lost link: drivers map it
            // to their lost-connection errors (Connector/Python's Bug809033 test).
            let reply = ErrorReply::new(
                packets::ER_NET_READ_ERROR,
                b"08S01",
                "myveil: lost the backend connection during the query; the session is closed",
            );
            send_error(&mut self.client, seq, &reply).await;
        }
        Close::Dirty
    }

    async fn reply_error(
        &mut self,
        seq: u8,
        code: u16,
        state: &[u8; 5],
        message: &str,
    ) -> Result<(), Error> {
        let reply = ErrorReply::new(code, state, message);
        self.client
            .write_packet(seq.wrapping_add(1), &reply.to_payload())
            .await
            .map_err(Error::Client)?;
        Ok(())
    }

    /// COM_CHANGE_USER: authenticate the new user for real, then reset and re-bind the backend
    /// connection to the new role's account. Any failure ends the session, as MySQL does.
    async fn change_user(&mut self, seq: u8, payload: &[u8]) -> Result<Option<Close>, Error> {
        let Some(request) = parse_change_user(payload) else {
            self.reply_error(
                seq,
                packets::ER_UNKNOWN_COM_ERROR,
                b"08S01",
                "Malformed COM_CHANGE_USER",
            )
            .await?;
            return Ok(Some(Close::Dirty));
        };
        let shared = self.shared.clone();
        // Security: a reserved schema is no more reachable as the new current database.
        if let Some(db) = request.database
            && self.is_store_schema(db)
        {
            let reply = self.store_denied(db);
            self.send_reply(seq, &reply).await?;
            return Ok(None);
        }
        if let Some(role) = backend_user_role(&shared, request.user) {
            return self
                .change_to_backend_user(seq.wrapping_add(1), &request, &role)
                .await;
        }
        // An empty plugin name is no plugin myveil knows: the login switches the client to a
        // fresh salt, whatever salt it answered with.
        let plugin = if self.salt_switched {
            Some(&b""[..])
        } else {
            request.plugin
        };
        let (outcome, seq) = login(
            &shared,
            &mut self.client,
            seq.wrapping_add(1),
            &self.salt,
            request.user,
            plugin,
            request.auth.to_vec(),
            &self.peer,
        )
        .await
        .map_err(Error::Client)?;
        let user = match outcome {
            Login::User(u) => Some(u),
            Login::Denied => None,
            Login::Blocked(reply) => {
                send_error(&mut self.client, seq, &reply).await;
                return Ok(Some(Close::Dirty));
            }
        };
        let Some(user) = user else {
            tracing::info!(user = ?String::from_utf8_lossy(request.user), "change user: authentication failed");
            send_error(
                &mut self.client,
                seq,
                &access_denied(request.user, &self.peer, !request.auth.is_empty()),
            )
            .await;
            return Ok(Some(Close::Dirty));
        };
        let Some((account, password)) = shared.account_for(&user) else {
            send_error(
                &mut self.client,
                seq,
                &access_denied(user.name.as_bytes(), &self.peer, true),
            )
            .await;
            return Ok(Some(Close::Dirty));
        };
        if let Some(c) = request.collation {
            self.collation = c;
        }
        let who = Identity {
            account,
            user: &shared.config.backend.accounts[account].user,
            password,
            database: request.database,
            collation: self.collation,
            attributes: &self.attributes,
        };
        // The connection moves to the new account's limit (it waits in the queue for it).
        if backend!(self).account.as_deref() != Some(account) {
            match shared.pool.slot(account).await {
                Ok(slot) => backend!(self).slot = slot,
                Err(e) => {
                    send_error(&mut self.client, seq, &backend_error(&e)).await;
                    return Ok(Some(Close::Dirty));
                }
            }
        }
        let changed = match backend!(self).change_user(&who).await {
            Ok(ok) => {
                let variables = shared.tracked_variables();
                match backend!(self)
                    .setup_tracking(request.database, &variables)
                    .await
                {
                    Ok(state) => Ok((ok, state)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match changed {
            Ok((ok, state)) => {
                self.changed_user(user, state, &ok, seq).await?;
                Ok(None)
            }
            Err(backend::Error::Refused { payload, .. }) => {
                let _ = self.client.write_packet(seq, &payload).await;
                Ok(Some(Close::Dirty))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// After a change of user: the new state, the OK to the client, nothing of the old
    /// session kept.
    async fn changed_user(
        &mut self,
        user: User,
        state: SessionState,
        ok: &[u8],
        seq: u8,
    ) -> Result<(), Error> {
        self.state = state;
        let ok = for_client(&mut self.state, ok, &self.tracking)?;
        self.client
            .write_packet(seq, &ok)
            .await
            .map_err(Error::Client)?;
        self.in_transaction = false;
        // The backend forgot every prepared statement (and may reuse their ids).
        self.statements.clear();
        self.tracking_prepared = false;
        self.state_prepared = false;
        tracing::Span::current().record("user", user.name.as_str());
        self.id.set_user(&user.name);
        self.revoked = revocation_watch(&self.shared, &user);
        self.decisions = self.shared.plans_for(&user.role);
        self.user = user;
        self.unpin();
        tracing::debug!(role = %self.user.role, "changed user");
        Ok(())
    }

    /// COM_CHANGE_USER to a backend user (`[backend_users]`): the backend authenticates it
    /// on a fresh connection (its own fresh salt), which then replaces the session's; the old
    /// one is reset and pooled as if its client had left. The client's id stays the same.
    async fn change_to_backend_user(
        &mut self,
        seq: u8,
        request: &super::handshake::ChangeUser<'_>,
        role: &str,
    ) -> Result<Option<Close>, Error> {
        let shared = self.shared.clone();
        if let Some(reply) = blocked(&shared, request.user, &self.peer) {
            send_error(&mut self.client, seq, &reply).await;
            return Ok(Some(Close::Dirty));
        }
        if let Some(c) = request.collation {
            self.collation = c;
        }
        let fresh = match shared.pool.fresh().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no backend connection for a change of user");
                send_error(&mut self.client, seq, &backend_error(&e)).await;
                return Ok(Some(Close::Dirty));
            }
        };
        let login = backend_login(
            &shared,
            &mut self.client,
            seq,
            fresh,
            request.user,
            request.database,
            self.collation,
            &self.attributes,
            backend!(self).capabilities,
            &self.peer,
            request.auth,
        )
        .await?;
        let BackendLogin::Accepted(conn, ok, seq) = login else {
            return Ok(Some(Close::Dirty));
        };
        let mut conn = *conn;
        let variables = shared.tracked_variables();
        let state = match conn.setup_tracking(request.database, &variables).await {
            Ok(state) => state,
            Err(backend::Error::Refused { payload, .. }) => {
                let _ = self.client.write_packet(seq, &payload).await;
                return Ok(Some(Close::Dirty));
            }
            Err(e) => return Err(e.into()),
        };
        self.salt_switched = true;
        self.id.set_backend(conn.connection_id());
        let old = self.backend.replace(conn).ok_or(Error::Detached)?;
        self.reusable = true;
        let limit = shared.config.backend.connect_timeout();
        let pool_owner = shared.clone();
        tokio::spawn(async move { pool_owner.pool.reset_and_release(old, limit).await });
        let name = String::from_utf8_lossy(request.user);
        self.changed_user(User::for_backend(&name, role), state, &ok, seq)
            .await?;
        Ok(None)
    }
}

/// Closes a backend statement no session needs any more (COM_STMT_CLOSE has no response).
async fn close_on(conn: &mut BackendConn, id: u32) -> Result<(), Error> {
    let mut p = vec![COM_STMT_CLOSE];
    p.extend_from_slice(&id.to_le_bytes());
    conn.conn.write_packet(0, &p).await.map_err(backend_io)?;
    Ok(())
}

/// Whether a text may set a character set or collation (a byte search, wider than needed).
fn names_character_sets(text: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        text.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    has(b"names") || has(b"character") || has(b"charset") || has(b"collation")
}

/// Waits for the backend connection to become readable; never, without one.
async fn backend_fill(backend: &mut Option<BackendConn>) -> Result<(), wire::Error> {
    match backend {
        Some(b) => b.conn.fill().await.map(drop),
        None => std::future::pending().await,
    }
}

/// The statement id of a COM_STMT_* command.
fn statement_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A command byte and its text.
fn with_command(command: u8, text: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + text.len());
    p.push(command);
    p.extend_from_slice(text);
    p
}

/// Whether the statement starts with `words` (lower-case), ignoring case and spacing.
/// Looks at the leading words only; nothing is copied.
fn first_words_are(text: &[u8], words: &[&str]) -> bool {
    let mut found = text
        .split(|c| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    words.iter().all(|w| {
        found
            .next()
            .is_some_and(|f| f.eq_ignore_ascii_case(w.as_bytes()))
    })
}
