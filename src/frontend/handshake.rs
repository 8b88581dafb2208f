//! frontend::handshake: a client's connection phase — the greeting (with the session's own
//! connection id), the TLS upgrade, authentication against myveil's users or SQL tokens
//! behind the failure limits, and the binding of the backend connection with session
//! tracking on. COM_CHANGE_USER reuses the login here.

use std::net::SocketAddr;
use std::sync::Arc;

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::Shared;
use super::session::{Error, backend_io};
use crate::auth::{Proof, User};
use crate::backend::state::{ClientTracking, SessionState};
use crate::backend::{self, BackendConn, Identity};
use crate::telemetry::metrics::{Limited, METRICS};
use crate::wire::auth::{Plugin, SALT_LEN, new_salt};
use crate::wire::handshake::{
    ClientHello, ClientResponse, Greeting, SUPPORTED_CAPABILITIES, parse_client_hello,
};
use crate::wire::packets::{self, ErrorReply, auth_more_data_payload, auth_switch_payload};
use crate::wire::{self, PacketConn, Stream};

/// Largest packet accepted before the client is authenticated.
const AUTH_PACKET_LIMIT: usize = 64 * 1024;

/// An authenticated client with its bound backend connection.
pub(super) struct Started {
    pub id: super::ids::SessionId,
    pub client: PacketConn,
    pub backend: BackendConn,
    pub peer: SocketAddr,
    pub user: User,
    pub salt: [u8; SALT_LEN],
    /// A backend user's login switched the client to the backend's salt.
    pub salt_switched: bool,
    pub collation: u16,
    pub attributes: Vec<(String, String)>,
    pub in_transaction: bool,
    pub state: SessionState,
    pub tracking: ClientTracking,
    /// The backend's version as `/*!NNNNN` comments compare it.
    pub server_version: u32,
}

/// The version number in a server version string (`10.11.19-MariaDB` → 101119; MariaDB's
/// `5.5.5-` prefix for old clients is skipped).
pub(super) fn server_version(text: &[u8]) -> u32 {
    let s = String::from_utf8_lossy(text);
    let s = s.strip_prefix("5.5.5-").unwrap_or(&s);
    let mut parts = s
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a * 10_000 + b * 100 + c
}

pub(super) async fn send_error(client: &mut PacketConn, seq: u8, reply: &ErrorReply) {
    let _ = client.write_packet(seq, &reply.to_payload()).await;
}

pub(super) fn access_denied(user: &[u8], peer: &SocketAddr, with_password: bool) -> ErrorReply {
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

/// Greets a client, upgrades to TLS when asked, authenticates it and binds its backend
/// connection. None: the client was refused (it has been told why).
pub(super) async fn handshake(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Started>, Error> {
    let _ = tcp.set_nodelay(true);
    let mut client = PacketConn::new(Stream::Plain(tcp));
    // The id this session is known by to its client (ADR 0007), not the backend's.
    let id = shared.sessions.open();
    tracing::Span::current().record("id", id.get());
    // Security: no backend connection is taken until the client has logged in (a client
    // that never finishes its handshake costs the backend nothing); it is greeted with what
    // the backend's latest greeting said.
    let backend_greeting = match shared.pool.profile().await {
        Ok(profile) => profile,
        Err(e) => {
            tracing::warn!(error = %e, "no backend greeting for a new client");
            send_error(&mut client, 0, &backend_error(&e)).await;
            return Ok(None);
        }
    };
    let mut capabilities = SUPPORTED_CAPABILITIES & backend_greeting.capabilities;
    capabilities.insert(
        CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH,
    );
    capabilities.set(CapabilityFlags::CLIENT_SSL, shared.tls.is_some());
    // Compression is between the client and myveil only: the backend connection stays
    // plain (the capability never reaches it: backend::complete keeps SUPPORTED_CAPABILITIES).
    capabilities.set(
        CapabilityFlags::CLIENT_COMPRESS | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM,
        shared.config.listen.compression,
    );
    let salt = new_salt();
    let greeting = Greeting {
        server_version: &backend_greeting.server_version,
        connection_id: id.get(),
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
    // A client that turns on protocol compression although it was not offered (compression
    // is off in the configuration) would send compressed packets after the login while
    // myveil reads plain ones: both would wait forever. It gets a clear error now, before
    // any password work, and the connection closes.
    let unoffered = response.capabilities
        & !capabilities
        & (CapabilityFlags::CLIENT_COMPRESS | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM);
    if !unoffered.is_empty() {
        tracing::info!(
            capabilities = unoffered.bits(),
            "client asked for protocol compression, which is not offered"
        );
        let reply = ErrorReply::new(
            packets::ER_HANDSHAKE_ERROR,
            b"08S01",
            "myveil: protocol compression was not offered (it is off in myveil's configuration); connect without compression",
        );
        send_error(&mut client, seq, &reply).await;
        return Ok(None);
    }
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

    // A backend user is authenticated by the backend itself, when its connection is bound
    // (below); everyone else here, by myveil.
    let backend_role = backend_user_role(shared, &response.user);
    let (user, mut seq) = match &backend_role {
        Some(role) => {
            if let Some(reply) = blocked(shared, &response.user, &peer) {
                send_error(&mut client, seq, &reply).await;
                return Ok(None);
            }
            let name = String::from_utf8_lossy(&response.user);
            (User::for_backend(&name, role), seq)
        }
        None => {
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
                return Ok(None);
            };
            (user, seq)
        }
    };
    tracing::Span::current().record("user", user.name.as_str());

    let client_caps = response.capabilities & capabilities;
    let compression = response.compression();
    let ClientResponse {
        database,
        collation,
        attributes,
        ..
    } = response;
    if let Some(schema) = database.as_ref().and_then(|db| shared.reserved_schema(db)) {
        // Security: the token store's schema (and the migration state's) is not reachable
        // through the proxy.
        let reply = ErrorReply::new(
            packets::ER_DBACCESS_DENIED_ERROR,
            b"42000",
            format!(
                "Access denied for user '{}' to database '{schema}'",
                user.name,
            ),
        );
        send_error(&mut client, seq, &reply).await;
        return Ok(None);
    }
    let bound = if backend_role.is_some() {
        let fresh = shared.pool.fresh().await;
        match fresh {
            Err(e) => Err(e),
            Ok(conn) => {
                let login = backend_login(
                    shared,
                    &mut client,
                    seq,
                    conn,
                    &user.name.clone().into_bytes(),
                    database.as_deref(),
                    u16::from(collation),
                    &attributes,
                    client_caps,
                    &peer,
                    &response.auth_response,
                )
                .await?;
                match login {
                    BackendLogin::Refused => return Ok(None),
                    BackendLogin::Accepted(conn, ok, next) => {
                        seq = next;
                        let mut conn = *conn;
                        let variables = shared.tracked_variables();
                        match conn.setup_tracking(database.as_deref(), &variables).await {
                            Ok(state) => Ok((conn, ok, state)),
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        }
    } else {
        let Some((account, password)) = shared.account_for(&user) else {
            tracing::warn!(role = %user.role, "user's role has no backend account in the configuration");
            send_error(
                &mut client,
                seq,
                &access_denied(user.name.as_bytes(), &peer, true),
            )
            .await;
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
        let variables = shared.tracked_variables();
        shared.pool.bind(&who, client_caps, &variables).await
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
            send_error(&mut client, seq, &backend_error(&e)).await;
            return Ok(None);
        }
    };
    id.set_user(&user.name);
    id.set_peer(&peer);
    id.set_backend(backend.connection_id());
    tracing::debug!(backend_thread = backend.connection_id(), "bound");
    let ok = for_client(&mut state, &ok, &tracking)?;
    client.write_packet(seq, &ok).await.map_err(Error::Client)?;
    // The login's last packet goes plain; every packet after it is compressed.
    if let Some(algorithm) = compression {
        let (stream, early) = client.into_parts();
        let compressed = wire::compress::Compressed::new(stream, algorithm, early)
            .map_err(|e| Error::Client(e.into()))?;
        client = PacketConn::new(Stream::Compressed(Box::new(compressed)));
        tracing::debug!(?algorithm, "compressed protocol on");
    }
    tracing::debug!(role = %user.role, tls, "session started");
    Ok(Some(Started {
        id,
        client,
        in_transaction: packets::ok_status(&ok)
            .is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_IN_TRANS)),
        server_version: server_version(&backend.greeting.server_version),
        backend,
        peer,
        salt,
        salt_switched: backend_role.is_some(),
        collation: u16::from(collation),
        attributes,
        state,
        tracking,
        user,
    }))
}

/// What a client gets of session tracking: nothing unless it asked for it, and then what
/// the server's defaults give (myveil tracks more for itself).
pub(super) fn client_tracking(shared: &Shared, client_caps: CapabilityFlags) -> ClientTracking {
    if client_caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        ClientTracking::On((**shared.tracking_defaults.load()).clone())
    } else {
        ClientTracking::Off
    }
}

/// A backend OK payload as the client gets it, its state taken into `state`.
pub(super) fn for_client(
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

/// What a client is told when no backend connection can serve it: the server's own answer
/// when it refused, "Too many connections" when the account's connections are all taken.
pub(super) fn backend_error(e: &backend::Error) -> ErrorReply {
    match e {
        backend::Error::Refused { code, .. } if *code == packets::ER_CON_COUNT_ERROR => {
            ErrorReply::new(*code, b"08004", "Too many connections")
        }
        backend::Error::Full => ErrorReply::new(
            packets::ER_CON_COUNT_ERROR,
            b"08004",
            "Too many connections (myveil: every backend connection of this account is in use; max_backend_connections)",
        ),
        _ => ErrorReply::new(
            packets::ER_UNKNOWN_ERROR,
            b"HY000",
            "myveil: the backend database is unavailable",
        ),
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
pub(super) enum Login {
    User(User),
    Denied,
    /// Too many failures from this address or for this name.
    Blocked(ErrorReply),
}

/// The MySQL-port failure limits: an answer for a blocked address or name, checked before
/// any password work.
pub(super) fn blocked(shared: &Shared, name: &[u8], peer: &SocketAddr) -> Option<ErrorReply> {
    let ip = crate::limits::ip_key(peer.ip());
    let user_key = String::from_utf8_lossy(name).into_owned();
    // Security: a blocked address or name is answered before any password check, so brute
    // force costs the attacker a round trip and us nothing.
    if shared.auth_failures_ip.is_blocked(&ip) {
        METRICS.rate_limited(Limited::MysqlAuth);
        tracing::info!("login refused: too many failures from this address");
        return Some(ErrorReply::new(
            packets::ER_HOST_IS_BLOCKED,
            b"HY000",
            format!(
                "Host '{}' is blocked because of many connection errors; retry in {} s",
                peer.ip(),
                shared.auth_failures_ip.blocked_for(&ip).as_secs().max(1)
            ),
        ));
    }
    if shared.auth_failures_user.is_blocked(&user_key) {
        METRICS.rate_limited(Limited::MysqlAuth);
        tracing::info!(user = ?user_key, "login refused: too many failures for this user");
        return Some(ErrorReply::new(
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
        ));
    }
    None
}

/// Counts a failed login against the address and the name.
pub(super) fn failed(shared: &Shared, name: &[u8], peer: &SocketAddr) {
    METRICS.auth_failed();
    shared
        .auth_failures_ip
        .failed(&crate::limits::ip_key(peer.ip()));
    shared
        .auth_failures_user
        .failed(&String::from_utf8_lossy(name).into_owned());
}

/// Runs `authenticate` behind the MySQL-port failure limits (checked before any password
/// work) and counts the outcome.
#[allow(clippy::too_many_arguments)]
pub(super) async fn login(
    shared: &Arc<Shared>,
    client: &mut PacketConn,
    seq: u8,
    salt: &[u8; SALT_LEN],
    name: &[u8],
    plugin: Option<&[u8]>,
    response: Vec<u8>,
    peer: &SocketAddr,
) -> wire::Result<(Login, u8)> {
    if let Some(reply) = blocked(shared, name, peer) {
        return Ok((Login::Blocked(reply), seq));
    }
    let (user, seq) = authenticate(shared, client, seq, salt, name, plugin, response, peer).await?;
    match user {
        Some(u) => Ok((Login::User(u), seq)),
        None => {
            failed(shared, name, peer);
            Ok((Login::Denied, seq))
        }
    }
}

/// The role a name gets as a backend user (`[backend_users]`): only for names outside the
/// users file, and only when a mapping matches (default deny).
pub(super) fn backend_user_role(shared: &Shared, name: &[u8]) -> Option<String> {
    let map = shared.config.backend_users.as_ref()?;
    if shared.users.load().contains(name) {
        return None;
    }
    map.role_for(std::str::from_utf8(name).ok()?)
        .map(str::to_owned)
}

/// Answers a backend user's refused login and counts it against the failure limits.
async fn refuse_backend_user(
    shared: &Shared,
    client: &mut PacketConn,
    seq: u8,
    reply: ErrorReply,
    name: &[u8],
    peer: &SocketAddr,
) -> Result<BackendLogin, Error> {
    tracing::info!(user = ?String::from_utf8_lossy(name), "backend user: login refused");
    failed(shared, name, peer);
    let _ = client.write_packet(seq, &reply.to_payload()).await;
    Ok(BackendLogin::Refused)
}

/// What a backend user's login came to.
pub(super) enum BackendLogin {
    /// The backend accepted: the connection, its OK payload and the client's next sequence id.
    Accepted(Box<BackendConn>, Vec<u8>, u8),
    /// Refused; the client has been told.
    Refused,
}

/// The login of a backend user, on a fresh backend connection: the client is switched to
/// the backend's own auth plugin with the backend's own fresh salt, and the conversation is
/// relayed until the backend says OK or ERR, so the client keeps its backend password and
/// myveil never learns it (except for plugins that send it in clear, below).
#[allow(clippy::too_many_arguments)]
pub(super) async fn backend_login(
    shared: &Shared,
    client: &mut PacketConn,
    mut seq: u8,
    conn: BackendConn,
    name: &[u8],
    database: Option<&[u8]>,
    collation: u16,
    attributes: &[(String, String)],
    client_caps: CapabilityFlags,
    peer: &SocketAddr,
    first_auth: &[u8],
) -> Result<BackendLogin, Error> {
    const MOST_ROUNDS: usize = 8;
    let tls = client.stream().is_tls();
    let clear_allowed =
        tls || shared.config.listen.allow_cleartext_on_loopback && peer.ip().is_loopback();
    let backend_tls = shared.pool.tls().is_some();
    let backend_loopback = conn
        .conn
        .stream()
        .peer_addr()
        .is_ok_and(|a| a.ip().is_loopback());
    // Security: a password in clear goes only where clear text may travel on both legs:
    // from the client (TLS, or loopback when allowed) and on to the backend (TLS, or a
    // backend on this host).
    let clear_ok = clear_allowed && (backend_tls || backend_loopback);
    let denied = || access_denied(name, peer, true);
    let deny = |client, seq, reply| refuse_backend_user(shared, client, seq, reply, name, peer);
    let plugin = conn.greeting.plugin.clone();
    if Plugin::from_name(&plugin) == Some(Plugin::Clear) && !clear_ok {
        return deny(client, seq, denied()).await;
    }
    // An empty first answer is an empty password whatever the salt: it goes on as it is
    // (after a switch, some drivers hash the empty password into 20 bytes, which the server
    // refuses for an account without one). Anything else is answered again for the
    // backend's salt.
    let auth = if first_auth.is_empty() {
        Vec::new()
    } else {
        let switch = auth_switch_payload(&String::from_utf8_lossy(&plugin), &conn.greeting.salt);
        client
            .write_packet(seq, &switch)
            .await
            .map_err(Error::Client)?;
        let first = client
            .read_packet(AUTH_PACKET_LIMIT)
            .await
            .map_err(Error::Client)?;
        seq = first.seq.wrapping_add(1);
        first.payload.to_vec()
    };
    let answer = backend::Answer {
        user: name,
        auth: &auth,
        plugin: &plugin,
        database,
        collation,
        attributes,
    };
    let (mut conn, _) = conn
        .answer(&answer, client_caps, shared.pool.tls())
        .await
        .map_err(Error::Backend)?;
    for _ in 0..MOST_ROUNDS {
        let packet = conn
            .conn
            .read_packet(AUTH_PACKET_LIMIT)
            .await
            .map_err(backend_io)?;
        match packet.payload.first() {
            Some(&0x00) => {
                conn.account = Some(format!(
                    "{}{}",
                    backend::BACKEND_USER_ACCOUNT,
                    String::from_utf8_lossy(name)
                ));
                conn.max_packet = conn.global_max_packet().await.map_err(Error::Backend)?;
                return Ok(BackendLogin::Accepted(
                    Box::new(conn),
                    packet.payload.to_vec(),
                    seq,
                ));
            }
            Some(&0xFF) => {
                tracing::info!(
                    code = packets::err_code(&packet.payload).unwrap_or(0),
                    "backend refused a backend user's login"
                );
                let reply = match packets::err_code(&packet.payload) {
                    Some(packets::ER_ACCESS_DENIED_ERROR) | None => denied(),
                    Some(code) => {
                        ErrorReply::new(code, b"HY000", "myveil: the backend refused the login")
                    }
                };
                return deny(client, seq, reply).await;
            }
            Some(&0xFE) | Some(&0x01) => {
                let p = &packet.payload[..];
                let to_clear = p[0] == 0xFE && p[1..].starts_with(Plugin::Clear.name().as_bytes());
                // caching_sha2_password full authentication: the client sends its password
                // in clear when its own connection is TLS.
                let full_auth = p == [0x01, 0x04] && tls;
                if (to_clear || full_auth) && !clear_ok {
                    return deny(client, seq, denied()).await;
                }
                seq = client.write_packet(seq, p).await.map_err(Error::Client)?;
                if p == [0x01, 0x03] {
                    // Fast authentication succeeded: the backend's OK follows, no answer.
                    continue;
                }
                let reply = client
                    .read_packet(AUTH_PACKET_LIMIT)
                    .await
                    .map_err(Error::Client)?;
                seq = reply.seq.wrapping_add(1);
                conn.conn
                    .write_packet(packet.seq.wrapping_add(1), &reply.payload)
                    .await
                    .map_err(backend_io)?;
            }
            _ => return Err(backend_io(wire::Error::Malformed("backend auth reply"))),
        }
    }
    Err(backend_io(wire::Error::Malformed(
        "backend auth went on too long",
    )))
}

pub(super) fn clear_password(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Zeroizing::new(bytes[..end].to_vec())
}

pub(crate) struct ChangeUser<'a> {
    pub user: &'a [u8],
    pub auth: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub collation: Option<u16>,
    pub plugin: Option<&'a [u8]>,
}

/// Parses COM_CHANGE_USER (4.1 protocol with secure connection). Connection attributes in it
/// are ignored: the backend keeps the ones from the handshake.
pub(crate) fn parse_change_user(payload: &[u8]) -> Option<ChangeUser<'_>> {
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

    const COM_CHANGE_USER: u8 = 0x11;

    #[test]
    fn server_versions_read_as_mariadb_compares_them() {
        assert_eq!(server_version(b"10.11.19-MariaDB-0+deb12u1"), 101_119);
        assert_eq!(server_version(b"5.5.5-10.6.3-MariaDB"), 100_603);
        assert_eq!(server_version(b"8.0.36"), 80_036);
    }

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
