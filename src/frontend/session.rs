//! frontend::session: one client connection — greeting, TLS upgrade, authentication,
//! binding of the pinned backend connection, then the command loop that relays each command
//! and its response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;
use zeroize::Zeroizing;

use super::Shared;
use super::prepared::Prepared;
use super::relay::{End, Expect, Failed, Response, forward_packet};
use crate::auth::{Proof, User};
use crate::backend::state::{ClientTracking, SessionState};
use crate::backend::{self, BackendConn, Identity, Lease};
use crate::sql::rewrite::ParamUse;
use crate::telemetry::metrics::{Kind, Limited, METRICS};
use crate::wire::auth::{Plugin, SALT_LEN, new_salt};
use crate::wire::handshake::{
    ClientHello, ClientResponse, Greeting, SUPPORTED_CAPABILITIES, parse_client_hello,
};
use crate::wire::packets::{self, ErrorReply, auth_more_data_payload, auth_switch_payload};
use crate::wire::{self, PacketConn, Stream};

/// Largest packet accepted before the client is authenticated.
const AUTH_PACKET_LIMIT: usize = 64 * 1024;

// Command bytes, with MySQL's names.
const COM_QUIT: u8 = 0x01;
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

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("client: {0}")]
    Client(wire::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
}

fn backend_io(e: wire::Error) -> Error {
    Error::Backend(backend::Error::Wire(e))
}

/// Why a session ended.
#[derive(Debug)]
enum Close {
    /// At a command boundary with the backend idle: the connection can be pooled.
    Clean,
    /// Anything else: the backend connection is dropped.
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
        let session = match tokio::time::timeout(timeout, handshake(&shared, tcp, peer)).await {
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
        session.serve(shutdown).await;
    }
    .instrument(span)
    .await
}

/// An authenticated session with its pinned backend connection.
struct Session {
    shared: Arc<Shared>,
    client: PacketConn,
    backend: BackendConn,
    peer: SocketAddr,
    user: User,
    salt: [u8; SALT_LEN],
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
    /// Prepared statements on protected data, by statement id.
    protected_statements: HashMap<u32, Prepared>,
    /// SQL-level prepared statements on protected data (`PREPARE name FROM …`), by name.
    sql_prepared: HashMap<String, Vec<ParamUse>>,
    /// Turns true when the SQL token this session logged in with is revoked with
    /// `kill_sessions`.
    revoked: Option<watch::Receiver<bool>>,
    /// Open cursors of protected statements: the column definitions their rows follow.
    cursors: HashMap<u32, Vec<Vec<u8>>>,
    /// What the backend's "last prepared statement" (MariaDB's statement id -1) is.
    last_prepared: LastPrepared,
    /// Shapes of reads on protected data that need no rewrite (see `guard`).
    read_shapes: ReadShapes,
}

/// Statements longer than this are not remembered (their fingerprint could be cut short).
const READ_SHAPE_MAX_LEN: usize = 480;
/// At most this many shapes per session; past it the set starts over.
const READ_SHAPES_CAP: usize = 256;

/// Read shapes known to need no rewrite (and whether their results are transformed), valid
/// for one policy, schema snapshot and database. The role is the session's, and the set is
/// emptied when the user changes.
#[derive(Default)]
struct ReadShapes {
    under: Option<(
        Arc<super::Protection>,
        Arc<crate::backend::schema::Snapshot>,
        Option<String>,
    )>,
    shapes: HashMap<String, bool>,
}

type ShapeContext = (
    Arc<super::Protection>,
    Arc<crate::backend::schema::Snapshot>,
);

impl ReadShapes {
    fn same(&self, (p, s): &ShapeContext, database: Option<&str>) -> bool {
        self.under.as_ref().is_some_and(|(up, us, ud)| {
            Arc::ptr_eq(up, p) && Arc::ptr_eq(us, s) && ud.as_deref() == database
        })
    }

    /// Some(transform) for a known shape.
    fn known(&self, shape: &str, context: &ShapeContext, database: Option<&str>) -> Option<bool> {
        if !self.same(context, database) {
            return None;
        }
        self.shapes.get(shape).copied()
    }

    fn remember(
        &mut self,
        shape: String,
        transform: bool,
        context: ShapeContext,
        database: Option<&str>,
    ) {
        if !self.same(&context, database) || self.shapes.len() >= READ_SHAPES_CAP {
            self.shapes.clear();
            self.under = Some((context.0, context.1, database.map(str::to_owned)));
        }
        self.shapes.insert(shape, transform);
    }

    fn clear(&mut self) {
        self.under = None;
        self.shapes.clear();
    }
}

/// The statement MariaDB's id 0xFFFFFFFF stands for, as far as myveil knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastPrepared {
    None,
    Protected(u32),
    Plain,
    /// The last prepare failed: what -1 means is not known here.
    Failed,
}

/// MariaDB: "the statement prepared last" (used by execute-direct and bulk clients).
const LAST_STATEMENT: u32 = u32::MAX;

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

/// How a command relates to a cursor over protected columns.
enum Cursor {
    No,
    /// An execute asking for a cursor: keep the result's column definitions.
    Open,
    /// A fetch from a cursor opened with these column definitions.
    Fetch(Vec<Vec<u8>>),
}

/// What the protection layer decided for a statement.
enum Guard {
    /// Nothing protected: relay as is.
    Pass,
    Refuse(ErrorReply),
    /// Protected data involved: send this text instead (if rewritten) and transform results.
    Protected(Option<String>),
    /// A prepare on protected data: the backend prepares `sql`; executes are rebuilt.
    Prepare {
        sql: String,
        prepared: Prepared,
    },
}

async fn send_error(client: &mut PacketConn, seq: u8, reply: &ErrorReply) {
    let _ = client.write_packet(seq, &reply.to_payload()).await;
}

fn access_denied(user: &[u8], peer: &SocketAddr, with_password: bool) -> ErrorReply {
    ErrorReply::new(
        packets::ER_ACCESS_DENIED_ERROR,
        b"28000",
        format!(
            "Access denied for user '{}'@'{}' (using password: {})",
            String::from_utf8_lossy(user),
            peer.ip(),
            if with_password { "YES" } else { "NO" }
        ),
    )
}

async fn handshake(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Session>, Error> {
    let _ = tcp.set_nodelay(true);
    let mut client = PacketConn::new(Stream::Plain(tcp));
    let lease = match shared.pool.lease().await {
        Ok(lease) => lease,
        Err(e) => {
            tracing::warn!(error = %e, "no backend connection for a new client");
            let reply = ErrorReply::new(
                packets::ER_UNKNOWN_ERROR,
                b"HY000",
                "myveil: the backend database is unavailable",
            );
            send_error(&mut client, 0, &reply).await;
            return Ok(None);
        }
    };
    let backend_greeting = &lease.conn().greeting;
    tracing::Span::current().record("id", backend_greeting.connection_id);
    let mut capabilities = SUPPORTED_CAPABILITIES & backend_greeting.capabilities;
    capabilities.insert(
        CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH,
    );
    capabilities.set(CapabilityFlags::CLIENT_SSL, shared.tls.is_some());
    let salt = new_salt();
    let greeting = Greeting {
        server_version: &backend_greeting.server_version,
        connection_id: backend_greeting.connection_id,
        salt: &salt,
        capabilities,
        collation: backend_greeting.collation,
        plugin: shared.config.listen.plugin(),
    };
    client
        .write_packet(0, &greeting.to_payload())
        .await
        .map_err(Error::Client)?;

    let mut packet = client
        .read_packet(AUTH_PACKET_LIMIT)
        .await
        .map_err(Error::Client)?;
    let mut hello = parse_client_hello(&packet.payload);
    if let Ok(ClientHello::SslRequest(_)) = hello {
        let Some(acceptor) = &shared.tls else {
            return Err(Error::Client(wire::Error::Malformed(
                "TLS requested but not offered",
            )));
        };
        let (Stream::Plain(tcp), early) = client.into_parts() else {
            return Err(Error::Client(wire::Error::Malformed("TLS requested twice")));
        };
        client = PacketConn::new(
            wire::tls::accept(acceptor, tcp, early)
                .await
                .map_err(Error::Client)?,
        );
        packet = client
            .read_packet(AUTH_PACKET_LIMIT)
            .await
            .map_err(Error::Client)?;
        hello = parse_client_hello(&packet.payload);
    }
    let seq = packet.seq.wrapping_add(1);
    let response = match hello {
        Ok(ClientHello::Response(r)) => r,
        _ => {
            let reply = ErrorReply::new(packets::ER_HANDSHAKE_ERROR, b"08S01", "Bad handshake");
            send_error(&mut client, seq, &reply).await;
            return Ok(None);
        }
    };
    let tls = client.stream().is_tls();
    if shared.config.tls.as_ref().is_some_and(|t| t.require) && !tls {
        let reply = ErrorReply::new(
            packets::ER_SECURE_TRANSPORT_REQUIRED,
            b"HY000",
            "Connections using insecure transport are prohibited; connect with TLS",
        );
        send_error(&mut client, seq, &reply).await;
        return Ok(None);
    }

    let (outcome, seq) = login(
        shared,
        &mut client,
        seq,
        &salt,
        &response.user,
        response.plugin.as_deref(),
        response.auth_response.clone(),
        &peer,
    )
    .await
    .map_err(Error::Client)?;
    let user = match outcome {
        Login::User(u) => Some(u),
        Login::Denied => None,
        Login::Blocked(reply) => {
            send_error(&mut client, seq, &reply).await;
            give_back(shared, lease);
            return Ok(None);
        }
    };
    let Some(user) = user else {
        tracing::info!(user = ?String::from_utf8_lossy(&response.user), "authentication failed");
        send_error(
            &mut client,
            seq,
            &access_denied(&response.user, &peer, !response.auth_response.is_empty()),
        )
        .await;
        give_back(shared, lease);
        return Ok(None);
    };
    tracing::Span::current().record("user", user.name.as_str());

    let client_caps = response.capabilities & capabilities;
    let ClientResponse {
        database,
        collation,
        attributes,
        ..
    } = response;
    if let (Some(store), Some(db)) = (&shared.tokens, &database)
        && db.eq_ignore_ascii_case(store.schema().as_bytes())
    {
        // Security: the token store's schema is not reachable through the proxy.
        let reply = ErrorReply::new(
            packets::ER_DBACCESS_DENIED_ERROR,
            b"42000",
            format!(
                "Access denied for user '{}' to database '{}'",
                user.name,
                store.schema()
            ),
        );
        send_error(&mut client, seq, &reply).await;
        give_back(shared, lease);
        return Ok(None);
    }
    let bound = {
        let Some((account, password)) = shared.account_for(&user) else {
            tracing::warn!(role = %user.role, "user's role has no backend account in the configuration");
            send_error(
                &mut client,
                seq,
                &access_denied(user.name.as_bytes(), &peer, true),
            )
            .await;
            give_back(shared, lease);
            return Ok(None);
        };
        let who = Identity {
            account,
            user: &shared.config.backend.accounts[account].user,
            password,
            database: database.as_deref(),
            collation: u16::from(collation),
            attributes: &attributes,
        };
        let defaults = shared.tracking_defaults.load();
        shared
            .pool
            .bind(lease, &who, client_caps, &defaults.variables)
            .await
    };
    let tracking = client_tracking(shared, client_caps);
    let (backend, ok, mut state) = match bound {
        Ok(b) => b,
        Err(backend::Error::Refused { code, payload }) => {
            tracing::info!(code, "backend refused the session");
            let _ = client.write_packet(seq, &payload).await;
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot bind a backend connection");
            let reply = ErrorReply::new(
                packets::ER_UNKNOWN_ERROR,
                b"HY000",
                "myveil: the backend database is unavailable",
            );
            send_error(&mut client, seq, &reply).await;
            return Ok(None);
        }
    };
    let ok = for_client(&mut state, &ok, &tracking)?;
    client.write_packet(seq, &ok).await.map_err(Error::Client)?;
    tracing::debug!(role = %user.role, tls, "session started");
    Ok(Some(Session {
        shared: shared.clone(),
        client,
        in_transaction: packets::ok_status(&ok)
            .is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_IN_TRANS)),
        backend,
        peer,
        salt,
        collation: u16::from(collation),
        attributes,
        reusable: true,
        state,
        tracking,
        tracking_prepared: false,
        protected_statements: HashMap::new(),
        sql_prepared: HashMap::new(),
        revoked: revocation_watch(shared, &user),
        cursors: HashMap::new(),
        last_prepared: LastPrepared::None,
        read_shapes: ReadShapes::default(),
        user,
    }))
}

/// What a client gets of session tracking: nothing unless it asked for it, and then what
/// the server's defaults give (myveil tracks more for itself).
fn client_tracking(shared: &Shared, client_caps: CapabilityFlags) -> ClientTracking {
    if client_caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        ClientTracking::On((**shared.tracking_defaults.load()).clone())
    } else {
        ClientTracking::Off
    }
}

/// A backend OK payload as the client gets it, its state taken into `state`.
fn for_client(
    state: &mut SessionState,
    ok: &[u8],
    tracking: &ClientTracking,
) -> Result<Vec<u8>, Error> {
    match state.track_ok(ok, tracking) {
        Ok(Some(rewritten)) => Ok(rewritten),
        Ok(None) => Ok(ok.to_vec()),
        Err(_) => Err(backend_io(wire::Error::Malformed("session state"))),
    }
}

fn give_back(shared: &Shared, lease: Lease) {
    if let Lease::Pooled(conn) = lease {
        shared.pool.release(conn);
    }
}

/// Runs an auth conversation after a handshake response or COM_CHANGE_USER: switches the
/// client to a plugin myveil accepts when needed, then checks the proof. Returns the user
/// (None: access denied) and the next sequence id.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    shared: &Arc<Shared>,
    client: &mut PacketConn,
    mut seq: u8,
    salt: &[u8; SALT_LEN],
    name: &[u8],
    plugin: Option<&[u8]>,
    mut response: Vec<u8>,
    peer: &SocketAddr,
) -> wire::Result<(Option<User>, u8)> {
    let tls = client.stream().is_tls();
    // Security: a clear-text password only travels over TLS, or on loopback when the operator
    // explicitly allowed it.
    let clear_allowed =
        tls || shared.config.listen.allow_cleartext_on_loopback && peer.ip().is_loopback();
    let requested = match plugin {
        None => Some(Plugin::Native),
        Some(p) => Plugin::from_name(p),
    };
    let users = shared.users.load_full();
    // A SQL token is checked as a password, so a name outside the users file is asked for
    // clear text — only where clear text may travel (TLS, or loopback when allowed). As
    // with MySQL's per-account plugins, the switch shows that the name is not a file user.
    let token_login = shared.tokens.is_some() && !users.contains(name) && clear_allowed;
    let switch_to = if token_login {
        Plugin::Clear
    } else {
        shared.config.listen.plugin()
    };
    let mut salt = salt.to_vec();
    let plugin = match requested {
        Some(Plugin::Clear) if !clear_allowed => None,
        Some(p) if token_login && p != Plugin::Clear => None,
        other => other,
    };
    let plugin = match plugin {
        Some(p) => p,
        None => {
            let p = switch_to;
            salt = new_salt().to_vec();
            client
                .write_packet(seq, &auth_switch_payload(p.name(), &salt))
                .await?;
            let answer = client.read_packet(AUTH_PACKET_LIMIT).await?;
            seq = answer.seq.wrapping_add(1);
            response = answer.payload.to_vec();
            p
        }
    };
    let user = match plugin {
        Plugin::Native => users
            .verify(
                name,
                &Proof::Native {
                    salt: &salt,
                    response: &response,
                },
            )
            .cloned(),
        Plugin::CachingSha2 => {
            if let Some(u) = users.verify(
                name,
                &Proof::Sha2 {
                    salt: &salt,
                    response: &response,
                },
            ) {
                // Fast authentication succeeded; OK follows.
                seq = client
                    .write_packet(seq, &auth_more_data_payload(&[3]))
                    .await?;
                Some(u.clone())
            } else if tls && !response.is_empty() {
                // Full authentication: the client sends its password over TLS.
                client
                    .write_packet(seq, &auth_more_data_payload(&[4]))
                    .await?;
                let answer = client.read_packet(AUTH_PACKET_LIMIT).await?;
                seq = answer.seq.wrapping_add(1);
                check_clear(shared, users, name, clear_password(&answer.payload)).await
            } else {
                None
            }
        }
        Plugin::Clear => check_clear(shared, users, name, clear_password(&response)).await,
    };
    Ok((user, seq))
}

/// Checks a clear-text password: bcrypt for users of the users file, the token store for
/// any other name (when SQL tokens are on).
async fn check_clear(
    shared: &Shared,
    users: Arc<crate::auth::UserStore>,
    name: &[u8],
    password: Zeroizing<Vec<u8>>,
) -> Option<User> {
    match &shared.tokens {
        Some(tokens) if !users.contains(name) => match tokens.authenticate(&password, name).await {
            Ok(Some(grant)) => {
                METRICS.token_login();
                Some(User::for_token(
                    &grant.info.user,
                    &grant.info.role,
                    grant.id_hash,
                ))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "token store unavailable: token login refused");
                None
            }
        },
        _ => users.verify_clear(name.to_vec(), password).await,
    }
}

/// What a login attempt came to.
enum Login {
    User(User),
    Denied,
    /// Too many failures from this address or for this name.
    Blocked(ErrorReply),
}

/// Runs `authenticate` behind the MySQL-port failure limits (checked before any password
/// work) and counts the outcome.
#[allow(clippy::too_many_arguments)]
async fn login(
    shared: &Arc<Shared>,
    client: &mut PacketConn,
    seq: u8,
    salt: &[u8; SALT_LEN],
    name: &[u8],
    plugin: Option<&[u8]>,
    response: Vec<u8>,
    peer: &SocketAddr,
) -> wire::Result<(Login, u8)> {
    let ip = crate::limits::ip_key(peer.ip());
    let user_key = String::from_utf8_lossy(name).into_owned();
    // Security: a blocked address or name is answered before any password check, so brute
    // force costs the attacker a round trip and us nothing.
    if shared.auth_failures_ip.is_blocked(&ip) {
        METRICS.rate_limited(Limited::MysqlAuth);
        tracing::info!("login refused: too many failures from this address");
        let reply = ErrorReply::new(
            packets::ER_HOST_IS_BLOCKED,
            b"HY000",
            format!(
                "Host '{}' is blocked because of many connection errors; retry in {} s",
                peer.ip(),
                shared.auth_failures_ip.blocked_for(&ip).as_secs().max(1)
            ),
        );
        return Ok((Login::Blocked(reply), seq));
    }
    if shared.auth_failures_user.is_blocked(&user_key) {
        METRICS.rate_limited(Limited::MysqlAuth);
        tracing::info!(user = ?user_key, "login refused: too many failures for this user");
        let reply = ErrorReply::new(
            packets::ER_USER_LIMIT_REACHED,
            b"42000",
            format!(
                "User '{user_key}' has exceeded the 'failed logins' resource; retry in {} s",
                shared
                    .auth_failures_user
                    .blocked_for(&user_key)
                    .as_secs()
                    .max(1)
            ),
        );
        return Ok((Login::Blocked(reply), seq));
    }
    let (user, seq) = authenticate(shared, client, seq, salt, name, plugin, response, peer).await?;
    match user {
        Some(u) => Ok((Login::User(u), seq)),
        None => {
            METRICS.auth_failed();
            shared.auth_failures_ip.failed(&ip);
            shared.auth_failures_user.failed(&user_key);
            Ok((Login::Denied, seq))
        }
    }
}

fn clear_password(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Zeroizing::new(bytes[..end].to_vec())
}

impl Session {
    async fn serve(mut self, mut shutdown: watch::Receiver<bool>) {
        let close = self.command_loop(&mut shutdown).await;
        tracing::debug!(?close, "session ended");
        match close {
            Close::Clean if self.reusable && !self.in_transaction => {
                self.shared.pool.release(self.backend)
            }
            _ => {}
        }
        self.client.shutdown().await;
    }

    async fn command_loop(&mut self, shutdown: &mut watch::Receiver<bool>) -> Close {
        let idle = self.shared.config.listen.idle_timeout();
        let max_packet = self.shared.config.listen.max_packet_bytes;
        // One timer per session, re-armed per command: cheaper than a new timer each time.
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        loop {
            // Pipelined commands never wait idle: a revoked token is checked between them.
            if self.revoked.as_ref().is_some_and(|r| *r.borrow()) {
                tracing::info!("token revoked: session ended");
                return Close::Dirty;
            }
            self.client.shrink_buffers();
            if self.client.rbuf.is_empty() {
                let draining = self.in_transaction;
                idle_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
                tokio::select! {
                    biased;
                    r = self.client.fill() => if r.is_err() { return Close::Clean },
                    r = self.backend.conn.fill() => {
                        // The backend spoke unasked (killed, shut down) or closed: pass an
                        // error packet on and end the session.
                        if r.is_ok() {
                            let buffered = self.backend.conn.rbuf.split();
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
                Err(_) => return Close::Dirty,
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
                    return Close::Dirty;
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
        let expect = match command {
            COM_QUIT => return Ok(Some(Close::Clean)),
            COM_CHANGE_USER => return self.change_user(seq, &payload).await,
            COM_QUERY => Expect::Query,
            COM_STMT_PREPARE => Expect::Prepare,
            COM_STMT_EXECUTE => Expect::Execute,
            COM_STMT_FETCH => Expect::Fetch,
            COM_FIELD_LIST => Expect::FieldList,
            COM_STMT_SEND_LONG_DATA | COM_STMT_CLOSE => {
                let raw = payload
                    .get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let id = match raw.map(|id| self.statement_key(id)) {
                    Some(Ok(id)) => Some(id),
                    None => None,
                    Some(Err(())) if command == COM_STMT_SEND_LONG_DATA => {
                        // Security: data for a statement that may be protected is not
                        // forwarded; its execute is refused the same way.
                        tracing::info!("long data for an ambiguous statement id dropped");
                        return Ok(None);
                    }
                    Some(Err(())) => raw,
                };
                if command == COM_STMT_CLOSE
                    && let Some(id) = id
                {
                    self.protected_statements.remove(&id);
                    self.cursors.remove(&id);
                }
                if command == COM_STMT_SEND_LONG_DATA
                    && let Some(prepared) = id.and_then(|id| self.protected_statements.get_mut(&id))
                {
                    let limit = self.shared.config.listen.max_packet_bytes;
                    match prepared.long_data(&payload, limit) {
                        Ok(Some(remapped)) => {
                            self.backend
                                .conn
                                .write_packet(first_seq, &remapped)
                                .await
                                .map_err(backend_io)?;
                        }
                        Ok(None) => {}
                        Err(r) => prepared.poison(r),
                    }
                    return Ok(None);
                }
                self.backend
                    .conn
                    .write_packet(first_seq, &payload)
                    .await
                    .map_err(backend_io)?;
                return Ok(None);
            }
            COM_SET_OPTION => {
                // Multi-statement mode is part of the pool key: this connection no longer fits it.
                self.reusable = false;
                Expect::Single
            }
            COM_INIT_DB if self.is_store_schema(&payload[1..]) => {
                let reply = self.store_denied();
                self.client
                    .write_packet(seq.wrapping_add(1), &reply.to_payload())
                    .await
                    .map_err(Error::Client)?;
                return Ok(None);
            }
            COM_INIT_DB | COM_PING | COM_STATISTICS | COM_PROCESS_KILL | COM_DEBUG
            | COM_STMT_RESET | COM_RESET_CONNECTION => Expect::Single,
            other => {
                tracing::info!(command = other, "unsupported command refused");
                self.reply_error(
                    seq,
                    packets::ER_UNKNOWN_COM_ERROR,
                    b"08S01",
                    "Unknown command",
                )
                .await?;
                return Ok(None);
            }
        };
        if command == COM_QUERY && tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(statement = %crate::sql::fingerprint(&payload[1..]), "query");
        }
        let mut protected = false;
        let mut rewritten = None;
        if matches!(command, COM_QUERY | COM_STMT_PREPARE) {
            match self.guard(command, &payload[1..]) {
                Guard::Pass => {}
                Guard::Refuse(reply) => {
                    METRICS.refused();
                    tracing::info!(code = reply.code, "statement refused");
                    self.client
                        .write_packet(seq.wrapping_add(1), &reply.to_payload())
                        .await
                        .map_err(Error::Client)?;
                    return Ok(None);
                }
                Guard::Protected(text) => {
                    protected = true;
                    rewritten = text.map(|t| {
                        let mut p = Vec::with_capacity(1 + t.len());
                        p.push(command);
                        p.extend_from_slice(t.as_bytes());
                        p
                    });
                }
                Guard::Prepare { sql, prepared } => {
                    let mut p = Vec::with_capacity(1 + sql.len());
                    p.push(command);
                    p.extend_from_slice(sql.as_bytes());
                    self.backend
                        .conn
                        .write_packet(first_seq, &p)
                        .await
                        .map_err(backend_io)?;
                    return self.prepare_response(prepared).await;
                }
            }
        }
        let raw_statement = payload
            .get(1..5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .filter(|_| matches!(command, COM_STMT_EXECUTE | COM_STMT_FETCH | COM_STMT_RESET));
        let statement = match raw_statement.map(|id| self.statement_key(id)) {
            Some(Ok(id)) => Some(id),
            Some(Err(())) if command != COM_STMT_RESET => {
                let reply = ErrorReply::new(
                    packets::ER_NOT_SUPPORTED_YET,
                    b"42000",
                    "myveil: statement id -1 (the last prepared statement) is ambiguous after a failed prepare while protected statements are open; execute by id",
                );
                self.client
                    .write_packet(seq.wrapping_add(1), &reply.to_payload())
                    .await
                    .map_err(Error::Client)?;
                return Ok(None);
            }
            _ => raw_statement,
        };
        match command {
            COM_STMT_EXECUTE
                if statement.is_some_and(|id| self.protected_statements.contains_key(&id)) =>
            {
                let protection = self.shared.protection.load_full();
                let Some(keyring) = self.shared.keyring.clone() else {
                    return Err(Error::Client(wire::Error::Malformed(
                        "protected statement without keys",
                    )));
                };
                let Some(prepared) =
                    statement.and_then(|id| self.protected_statements.get_mut(&id))
                else {
                    return Ok(None);
                };
                match prepared.execute(
                    &payload,
                    &protection.policy,
                    &crate::sql::rewrite::KeyringSealer(&keyring),
                ) {
                    Ok(rebuilt) => rewritten = Some(rebuilt),
                    Err(r) => {
                        METRICS.refused();
                        tracing::info!(target = %r.target, "execute on protected data refused");
                        let code = if r.denied {
                            packets::ER_COLUMNACCESS_DENIED_ERROR
                        } else {
                            packets::ER_NOT_SUPPORTED_YET
                        };
                        let reply = ErrorReply::new(code, b"42000", r.to_string());
                        self.client
                            .write_packet(seq.wrapping_add(1), &reply.to_payload())
                            .await
                            .map_err(Error::Client)?;
                        return Ok(None);
                    }
                }
                protected = true;
            }
            COM_STMT_RESET => {
                if let Some(prepared) =
                    statement.and_then(|id| self.protected_statements.get_mut(&id))
                {
                    prepared.reset();
                }
            }
            COM_RESET_CONNECTION => {
                self.protected_statements.clear();
                self.sql_prepared.clear();
                self.cursors.clear();
                self.last_prepared = LastPrepared::None;
            }
            _ => {}
        }
        self.backend
            .conn
            .write_packet(first_seq, rewritten.as_deref().unwrap_or(&payload))
            .await
            .map_err(backend_io)?;
        // Cursors of protected statements: an execute with a cursor flag keeps the result's
        // column definitions; its fetches are transformed with them.
        let cursor = match command {
            COM_STMT_EXECUTE if protected => {
                if let Some(id) = statement {
                    self.cursors.remove(&id);
                }
                if payload.get(5).is_some_and(|flags| *flags != 0) {
                    Cursor::Open
                } else {
                    Cursor::No
                }
            }
            COM_STMT_FETCH => match statement.and_then(|id| self.cursors.get(&id)) {
                Some(defs) => {
                    protected = true;
                    Cursor::Fetch(defs.clone())
                }
                None => Cursor::No,
            },
            COM_STMT_RESET => {
                if let Some(id) = statement {
                    self.cursors.remove(&id);
                }
                Cursor::No
            }
            _ => Cursor::No,
        };
        let transform =
            protected && matches!(command, COM_QUERY | COM_STMT_EXECUTE | COM_STMT_FETCH);
        let opening = matches!(cursor, Cursor::Open);
        let plain_prepare = command == COM_STMT_PREPARE;
        let tracking_change = self.may_change_tracking(command, &payload);
        let (close, ok, captured) = self
            .relay(
                expect,
                transform,
                matches!(command, COM_STMT_EXECUTE | COM_STMT_FETCH),
                cursor,
                tracking_change,
            )
            .await?;
        if tracking_change && close.is_none() {
            self.sync_tracking().await?;
        }
        if opening && let (Some(id), Some(defs)) = (statement, captured) {
            self.cursors.insert(id, defs);
        }
        if plain_prepare {
            self.last_prepared = if ok {
                LastPrepared::Plain
            } else {
                LastPrepared::Failed
            };
        }
        if command == COM_RESET_CONNECTION && ok && close.is_none() {
            // The reset dropped tracking back to the server's defaults (the database stays).
            let database = self.state.database.clone();
            self.setup_tracking(database.as_deref().map(str::as_bytes))
                .await?;
        }
        Ok(close)
    }

    /// Whether a command may change the session's tracking settings: its text names a
    /// `session_track_*` variable, or it runs a prepared statement while one whose text did
    /// exists. (Procedures that change them reach protected data: see backend::schema.)
    fn may_change_tracking(&mut self, command: u8, payload: &[u8]) -> bool {
        use crate::backend::state::mentions_tracking;
        let text = payload.get(1..).unwrap_or_default();
        match command {
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
        }
    }

    /// Reads the session's tracking settings after a statement that may have changed them:
    /// they become what the client is given, and myveil's own tracking is set up again on
    /// top of them (with a fresh report of the state).
    async fn sync_tracking(&mut self) -> Result<(), Error> {
        let row = self
            .backend
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
        self.state = self
            .backend
            .setup_tracking(database.as_deref().map(str::as_bytes), &settings.variables)
            .await?;
        Ok(())
    }

    /// Sets tracking up again after the backend session was reset.
    async fn setup_tracking(&mut self, database: Option<&[u8]>) -> Result<(), Error> {
        let defaults = self.shared.tracking_defaults.load();
        self.state = self
            .backend
            .setup_tracking(database, &defaults.variables)
            .await?;
        Ok(())
    }

    /// Whether `name` is the token store's schema (COM_INIT_DB, the handshake's database).
    fn is_store_schema(&self, name: &[u8]) -> bool {
        self.shared
            .tokens
            .as_ref()
            .is_some_and(|t| name.eq_ignore_ascii_case(t.schema().as_bytes()))
    }

    fn store_denied(&self) -> ErrorReply {
        let schema = self.shared.tokens.as_ref().map_or("", |t| t.schema());
        ErrorReply::new(
            packets::ER_DBACCESS_DENIED_ERROR,
            b"42000",
            format!(
                "Access denied for user '{}' to database '{schema}'",
                self.user.name
            ),
        )
    }

    /// The id to look protected state up by. MariaDB's -1 becomes the protected statement
    /// prepared last; Err when it may name a protected statement myveil cannot tell.
    fn statement_key(&self, id: u32) -> Result<u32, ()> {
        if id != LAST_STATEMENT {
            return Ok(id);
        }
        match self.last_prepared {
            LastPrepared::Protected(p) => Ok(p),
            LastPrepared::Plain => Ok(id),
            LastPrepared::None | LastPrepared::Failed if self.protected_statements.is_empty() => {
                Ok(id)
            }
            LastPrepared::None | LastPrepared::Failed => Err(()),
        }
    }

    /// Relays a prepare response for a rewritten statement: the client is told its own
    /// parameter count (the backend's may be larger), column definitions are rewritten to
    /// the plaintext types. Remembers the statement for its executes.
    async fn prepare_response(&mut self, prepared: Prepared) -> Result<Option<Close>, Error> {
        let limit = self.shared.config.listen.max_packet_bytes;
        let read = async |b: &mut BackendConn| b.conn.read_packet(limit).await;
        let first = match read(&mut self.backend).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(Some(
                    self.backend_lost(e, &Response::new(Expect::Prepare)).await,
                ));
            }
        };
        let mut seq = first.first_seq;
        if first.payload.first() != Some(&packets::OK_HEADER) || first.payload.len() < 12 {
            self.last_prepared = LastPrepared::Failed;
            self.client
                .write_packet(seq, &first.payload)
                .await
                .map_err(Error::Client)?;
            return Ok(None);
        }
        let p = &first.payload;
        let id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
        let columns = usize::from(u16::from_le_bytes([p[5], p[6]]));
        let params = usize::from(u16::from_le_bytes([p[7], p[8]]));
        let client_params = prepared.client_params;
        let mut ok = p.to_vec();
        ok[7..9].copy_from_slice(&(client_params as u16).to_le_bytes());
        seq = self.client.queue_packet(seq, &ok);
        let group = async |this: &mut Self, n: usize| -> Result<Vec<Vec<u8>>, wire::Error> {
            let mut v = Vec::with_capacity(n + 1);
            for _ in 0..n + usize::from(n > 0) {
                v.push(this.backend.conn.read_packet(limit).await?.payload.to_vec());
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
            // Metadata only: a denied column is refused when the statement runs.
            let _ = super::transform::plan(defs, &protection.policy, &self.user.role);
            for d in defs.iter().chain(eof.iter()) {
                seq = self.client.queue_packet(seq, d);
            }
        }
        self.client.flush().await.map_err(Error::Client)?;
        self.protected_statements.insert(id, prepared);
        self.last_prepared = LastPrepared::Protected(id);
        Ok(None)
    }

    /// Decides whether a statement touches protected data and what to do with it.
    fn guard(&mut self, command: u8, text: &[u8]) -> Guard {
        // Security: the token store's schema is myveil's own; clients never reach it through
        // the proxy (an UPDATE there could undo a revocation).
        if let Some(store) = &self.shared.tokens
            && names_schema(text, store.schema())
        {
            tracing::info!("statement on the token store's schema refused");
            return Guard::Refuse(self.store_denied());
        }
        let protection = self.shared.protection.load();
        if !protection.is_active() {
            return Guard::Pass;
        }
        let not_supported = |message: String| {
            Guard::Refuse(ErrorReply::new(
                packets::ER_NOT_SUPPORTED_YET,
                b"42000",
                message,
            ))
        };
        let scan = crate::sql::lex::scan(text, &protection.watched);
        let schema = self.shared.schema.load();
        // Security: EXECUTE IMMEDIATE runs SQL from a string myveil does not analyze: refused
        // when the text names protected data (or an object over it) anywhere.
        if command == COM_QUERY
            && scan.execute
            && first_words_are(text, &["execute", "immediate"])
            && (crate::sql::lex::mentions_anywhere(text, &protection.watched)
                || crate::sql::lex::mentions_anywhere(text, &schema.dependent_names))
        {
            return not_supported(
                "myveil: EXECUTE IMMEDIATE on protected data cannot be analyzed; use PREPARE name FROM '…' and EXECUTE".into(),
            );
        }
        if command == COM_QUERY && (scan.prepare || scan.execute) {
            if let Some(guard) = self.sql_level_prepare(text, &protection) {
                return guard;
            }
            // Security: a statement prepared at SQL level hides in a string literal; one that
            // could not be read as a single PREPARE is refused when it names protected data.
            if scan.prepare && crate::sql::lex::mentions_anywhere(text, &protection.watched) {
                return not_supported("myveil: this PREPARE cannot be analyzed; send PREPARE name FROM '…' on its own".into());
            }
        }
        // Security: views, routines and triggers that reach protected tables hide them from
        // the analysis (a write through a view would store plaintext): statements naming
        // them are refused (DDL on them goes to the database directly).
        if let Some(d) = schema.dependent_named(text) {
            tracing::info!(kind = %d.kind, "statement through an object over protected data refused");
            return not_supported(d.refusal());
        }
        if !scan.names_watched {
            return Guard::Pass;
        }
        if scan.executable_comment {
            return not_supported("myveil: executable comments (/*! … */) in statements on protected data are not supported".into());
        }
        let Ok(sql) = std::str::from_utf8(text) else {
            return not_supported("myveil: statements on protected data must be UTF-8".into());
        };
        // Reads whose analysis needed no edit (only their results are transformed, by the
        // column metadata the database sends) are remembered by shape, so a repeated query
        // skips the parser. Only SELECTs short enough for a whole fingerprint, and only for
        // the policy, schema snapshot, database and role they were analyzed under.
        let shape = (command == COM_QUERY
            && text.len() < READ_SHAPE_MAX_LEN
            && first_words_are(text, &["select"]))
        .then(|| {
            let context = (self.shared.protection.load_full(), Arc::clone(&schema));
            (crate::sql::fingerprint(text), context)
        });
        if let Some((shape, context)) = &shape
            && let Some(transform) =
                self.read_shapes
                    .known(shape, context, self.state.database.as_deref())
        {
            return if transform {
                Guard::Protected(None)
            } else {
                Guard::Pass
            };
        }
        let analyzer = crate::sql::analyze::Analyzer {
            policy: &protection.policy,
            database: self.state.database.as_deref(),
            role: &self.user.role,
            schema: &**schema,
        };
        let refusal = |r: crate::sql::analyze::Refusal| {
            tracing::info!(target = %r.target, denied = r.denied, "statement on protected data refused");
            if r.denied {
                Guard::Refuse(ErrorReply::new(
                    packets::ER_COLUMNACCESS_DENIED_ERROR,
                    b"42000",
                    r.to_string(),
                ))
            } else {
                not_supported(r.to_string())
            }
        };
        match analyzer.analyze(sql) {
            crate::sql::analyze::Plan::Forward => {
                if let Some((shape, context)) = shape {
                    self.read_shapes.remember(
                        shape,
                        false,
                        context,
                        self.state.database.as_deref(),
                    );
                }
                Guard::Pass
            }
            crate::sql::analyze::Plan::Refuse(r) => refusal(r),
            crate::sql::analyze::Plan::Rewrite {
                edits,
                placeholders,
            } => {
                if command == COM_QUERY && edits.is_empty() {
                    if let Some((shape, context)) = shape {
                        self.read_shapes.remember(
                            shape,
                            true,
                            context,
                            self.state.database.as_deref(),
                        );
                    }
                    return Guard::Protected(None);
                }
                let Some(keyring) = self.shared.keyring.as_deref() else {
                    return not_supported("myveil: no keys loaded".into());
                };
                let sealer = crate::sql::rewrite::KeyringSealer(keyring);
                match crate::sql::rewrite::render(sql, &edits, &placeholders, &sealer) {
                    Ok(r) if command == COM_STMT_PREPARE => Guard::Prepare {
                        sql: r.sql,
                        prepared: Prepared::new(placeholders.len(), r.params),
                    },
                    Ok(r) => Guard::Protected(Some(r.sql)),
                    Err(r) => refusal(r),
                }
            }
        }
    }

    /// SQL-level prepared statements: the text of `PREPARE name FROM '…'` is analyzed and
    /// rewritten like any statement; `EXECUTE name USING …` gets its values sealed or indexed
    /// where the prepared statement feeds protected columns. None: not such a command.
    fn sql_level_prepare(&mut self, text: &[u8], protection: &super::Protection) -> Option<Guard> {
        use crate::sql::prepare::{Command, Using, parse, quote};
        let sql = std::str::from_utf8(text).ok()?;
        let offsets = crate::sql::analyze::Offsets::new(sql);
        let command = parse(sql, |span| offsets.range(span))?;
        let not_supported = |message: String| {
            Guard::Refuse(ErrorReply::new(
                packets::ER_NOT_SUPPORTED_YET,
                b"42000",
                message,
            ))
        };
        let keyring = self.shared.keyring.clone()?;
        let sealer = crate::sql::rewrite::KeyringSealer(&keyring);
        match command {
            Command::Prepare { name, text: None } => {
                self.sql_prepared.remove(&name);
                Some(not_supported("myveil: PREPARE … FROM a variable cannot be analyzed while columns are protected; use a string literal".into()))
            }
            Command::Prepare {
                name,
                text: Some(inner),
            } => {
                self.sql_prepared.remove(&name);
                let schema = self.shared.schema.load();
                if let Some(d) = schema.dependent_named(inner.as_bytes()) {
                    return Some(not_supported(d.refusal()));
                }
                let analyzer = crate::sql::analyze::Analyzer {
                    policy: &protection.policy,
                    database: self.state.database.as_deref(),
                    role: &self.user.role,
                    schema: &**schema,
                };
                match analyzer.analyze(&inner) {
                    crate::sql::analyze::Plan::Forward => Some(Guard::Pass),
                    crate::sql::analyze::Plan::Refuse(r) => Some(not_supported(r.to_string())),
                    crate::sql::analyze::Plan::Rewrite {
                        edits,
                        placeholders,
                    } => {
                        match crate::sql::rewrite::render(&inner, &edits, &placeholders, &sealer) {
                            Ok(r) => {
                                self.sql_prepared.insert(name.clone(), r.params);
                                Some(Guard::Protected(Some(format!(
                                    "PREPARE `{name}` FROM {}",
                                    quote(&r.sql)
                                ))))
                            }
                            Err(r) => Some(not_supported(r.to_string())),
                        }
                    }
                }
            }
            Command::Execute { name, using } => {
                let uses = self.sql_prepared.get(&name)?;
                let mut items = Vec::with_capacity(uses.len());
                for u in uses {
                    let (param, column) = match u {
                        ParamUse::Plain(i) => {
                            let (_, s, e) = using.get(*i)?;
                            items.push(sql[*s..*e].to_owned());
                            continue;
                        }
                        ParamUse::Seal { param, column, .. }
                        | ParamUse::BlindWrite { param, column }
                        | ParamUse::BlindSearch { param, column, .. } => (*param, column),
                    };
                    let col = protection
                        .policy
                        .columns()
                        .iter()
                        .find(|c| &c.scope() == column)?;
                    let value = match using.get(param) {
                        Some((Using::Literal(crate::sql::analyze::Lit::Bytes(b)), _, _)) => b,
                        Some((Using::Literal(_), _, _)) => {
                            items.push("NULL".into());
                            continue;
                        }
                        _ => {
                            return Some(not_supported(format!(
                                "myveil: {}: EXECUTE … USING takes literals for encrypted columns",
                                col.scope()
                            )));
                        }
                    };
                    let v = match crate::sql::rewrite::canonical(col, value) {
                        Ok(v) => v,
                        Err(r) => return Some(not_supported(r.to_string())),
                    };
                    let rendered = match u {
                        ParamUse::Seal { row_key, .. } => {
                            let key = match row_key {
                                None => None,
                                Some(crate::sql::rewrite::RowKey::Literal(k)) => Some(k.clone()),
                                Some(crate::sql::rewrite::RowKey::Param(j)) => {
                                    match using.get(*j) {
                                        Some((
                                            Using::Literal(crate::sql::analyze::Lit::Bytes(k)),
                                            _,
                                            _,
                                        )) => Some(crate::sql::rewrite::canonical_row_key(k)),
                                        _ => {
                                            return Some(not_supported(format!(
                                                "myveil: {}: EXECUTE … USING takes a literal row key",
                                                col.scope()
                                            )));
                                        }
                                    }
                                }
                            };
                            crate::sql::rewrite::Sealer::seal(&sealer, col, &v, key.as_deref()).map(
                                |env| match col.storage {
                                    crate::policy::Storage::Binary => {
                                        format!("X'{}'", hex::encode_upper(env))
                                    }
                                    crate::policy::Storage::Base64 => {
                                        use base64::Engine;
                                        format!(
                                            "'{}'",
                                            base64::engine::general_purpose::STANDARD.encode(env)
                                        )
                                    }
                                },
                            )
                        }
                        ParamUse::BlindWrite { .. } => {
                            crate::sql::rewrite::Sealer::blind(&sealer, col, &v)
                                .map(|b| format!("X'{}'", hex::encode_upper(b)))
                        }
                        ParamUse::BlindSearch { key, .. } => {
                            crate::sql::rewrite::Sealer::blind_all(&sealer, col, &v).map(|all| {
                                all.get(*key)
                                    .or(all.first())
                                    .map(|b| format!("X'{}'", hex::encode_upper(b)))
                                    .unwrap_or_else(|| "NULL".into())
                            })
                        }
                        ParamUse::Plain(_) => Ok(String::new()),
                    };
                    match rendered {
                        Ok(r) => items.push(r),
                        Err(e) => {
                            return Some(not_supported(format!("myveil: {}: {e}", col.scope())));
                        }
                    }
                }
                let text = if items.is_empty() {
                    format!("EXECUTE `{name}`")
                } else {
                    format!("EXECUTE `{name}` USING {}", items.join(", "))
                };
                Some(Guard::Protected(Some(text)))
            }
            Command::Deallocate { name } => {
                self.sql_prepared.remove(&name);
                None
            }
        }
    }

    /// Relays the response to the command just sent, including LOCAL INFILE exchanges.
    /// Returns how the session goes on and whether the response ended with OK/EOF.
    /// `tracking_change`: the command may change the client's tracking settings, so its
    /// records pass unfiltered and the settings are read again afterwards.
    async fn relay(
        &mut self,
        expect: Expect,
        transform: bool,
        binary: bool,
        cursor: Cursor,
        tracking_change: bool,
    ) -> Result<(Option<Close>, bool, Option<Vec<Vec<u8>>>), Error> {
        let view = match (&self.tracking, tracking_change) {
            (ClientTracking::Off, _) | (_, false) => self.tracking.clone(),
            (_, true) => ClientTracking::Unfiltered,
        };
        let mut response = Response::new(expect);
        let fetch_defs = match &cursor {
            Cursor::Fetch(defs) => Some(defs.as_slice()),
            _ => None,
        };
        // Only a protected response needs the policy and the keys (kept off the hot path).
        let protected =
            transform.then(|| (self.shared.protection.load_full(), self.shared.clone()));
        loop {
            let relayed = if let Some((protection, shared)) = &protected {
                let Some(keyring) = shared.keyring.as_deref() else {
                    return Err(Error::Client(wire::Error::Malformed(
                        "protected result without keys",
                    )));
                };
                let cells = super::transform::KeyringCells(keyring);
                let t = super::relay::Transform {
                    policy: &protection.policy,
                    role: &self.user.role,
                    cells: &cells,
                    binary,
                    row_limit: shared.config.listen.max_packet_bytes,
                    fetch_defs,
                    capture: matches!(cursor, Cursor::Open),
                };
                let mut tracker = super::relay::Tracker {
                    state: &mut self.state,
                    client: &view,
                };
                unless_revoked(
                    response.relay_transformed(
                        &mut self.backend.conn,
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
                    response.relay(&mut self.backend.conn, &mut self.client, &mut tracker),
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
                    let len = forward_packet(&mut self.client, &mut self.backend.conn)
                        .await
                        .map_err(Error::Client)?;
                    if len == 0 {
                        self.backend.conn.flush().await.map_err(backend_io)?;
                        break;
                    }
                },
            }
        }
    }

    /// The backend failed mid-response: tell the client if the framing still allows it, and
    /// end the session (nothing is retried: the statement may have run).
    async fn backend_lost(&mut self, e: wire::Error, response: &Response) -> Close {
        tracing::warn!(error = %e, "backend connection lost during a command");
        if let Some(seq) = response.next_seq() {
            let reply = ErrorReply::new(
                packets::ER_UNKNOWN_ERROR,
                b"HY000",
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
        let (outcome, seq) = login(
            &shared,
            &mut self.client,
            seq.wrapping_add(1),
            &self.salt,
            request.user,
            request.plugin,
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
        let changed = match self.backend.change_user(&who).await {
            Ok(ok) => {
                let defaults = shared.tracking_defaults.load();
                match self
                    .backend
                    .setup_tracking(request.database, &defaults.variables)
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
                self.state = state;
                let ok = for_client(&mut self.state, &ok, &self.tracking)?;
                self.client
                    .write_packet(seq, &ok)
                    .await
                    .map_err(Error::Client)?;
                self.in_transaction = false;
                // The backend forgot every prepared statement (and may reuse their ids).
                self.protected_statements.clear();
                self.sql_prepared.clear();
                self.cursors.clear();
                self.last_prepared = LastPrepared::None;
                self.read_shapes.clear();
                tracing::Span::current().record("user", user.name.as_str());
                self.revoked = revocation_watch(&shared, &user);
                self.user = user;
                tracing::debug!(role = %self.user.role, "changed user");
                Ok(None)
            }
            Err(backend::Error::Refused { payload, .. }) => {
                let _ = self.client.write_packet(seq, &payload).await;
                Ok(Some(Close::Dirty))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `text` names the identifier `schema` (a quick byte search, then a word scan).
fn names_schema(text: &[u8], schema: &str) -> bool {
    let needle = schema.as_bytes();
    if needle.is_empty()
        || !text
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    {
        return false;
    }
    let one: std::collections::HashSet<String> = [schema.to_ascii_lowercase()].into();
    crate::sql::lex::scan(text, &one).names_watched
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

struct ChangeUser<'a> {
    user: &'a [u8],
    auth: &'a [u8],
    database: Option<&'a [u8]>,
    collation: Option<u16>,
    plugin: Option<&'a [u8]>,
}

/// Parses COM_CHANGE_USER (4.1 protocol with secure connection). Connection attributes in it
/// are ignored: the backend keeps the ones from the handshake.
fn parse_change_user(payload: &[u8]) -> Option<ChangeUser<'_>> {
    fn nul_str(buf: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = buf.iter().position(|&b| b == 0)?;
        Some((&buf[..end], &buf[end + 1..]))
    }
    let rest = payload.get(1..)?;
    let (user, rest) = nul_str(rest)?;
    let (&auth_len, rest) = rest.split_first()?;
    let auth = rest.get(..usize::from(auth_len))?;
    let rest = &rest[usize::from(auth_len)..];
    let (database, rest) = nul_str(rest).unwrap_or((rest, &[]));
    let (collation, rest) = match rest {
        [a, b, tail @ ..] => (Some(u16::from_le_bytes([*a, *b])), tail),
        _ => (None, rest),
    };
    let plugin = nul_str(rest)
        .map(|(p, _)| p)
        .or((!rest.is_empty()).then_some(rest));
    Some(ChangeUser {
        user,
        auth,
        database: (!database.is_empty()).then_some(database),
        collation,
        plugin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_user_packet_is_parsed_and_truncation_is_rejected() {
        let mut p = vec![COM_CHANGE_USER];
        p.extend_from_slice(b"bob\0");
        p.push(3);
        p.extend_from_slice(b"abc");
        p.extend_from_slice(b"shop\0");
        p.extend_from_slice(&45u16.to_le_bytes());
        p.extend_from_slice(b"mysql_native_password\0");
        let c = parse_change_user(&p).expect("parses");
        assert_eq!(c.user, b"bob");
        assert_eq!(c.auth, b"abc");
        assert_eq!(c.database, Some(&b"shop"[..]));
        assert_eq!(c.collation, Some(45));
        assert_eq!(c.plugin, Some(&b"mysql_native_password"[..]));
        for cut in 0..6 {
            assert!(parse_change_user(&p[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn random_change_user_packets_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let p: Vec<u8> = (0..len).map(|_| rng.random_range(0..4u8)).collect();
            let _ = parse_change_user(&p);
        }
    }
}
