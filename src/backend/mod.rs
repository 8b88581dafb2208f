//! backend: connections to the real MySQL/MariaDB and the pool they come from.
//!
//! A client session is pinned to one backend connection for its life. The connection is
//! taken once the client has logged in, never before (the greeting's server version and
//! capabilities are the backend's latest, `Pool::profile`; the connection id is myveil's
//! own, frontend::ids). A pooled connection
//! is reset with COM_RESET_CONNECTION when its client leaves (nothing of that session waits
//! in the pool: locks, prepared statements, temporary tables, variables), and re-bound with
//! COM_CHANGE_USER when the next client takes it, which authenticates the role's backend
//! account and sets schema and charset.
//! A fresh connection is left waiting after the backend's greeting and answered once the
//! client is known, with the client's own capabilities.

mod pool;
pub mod schema;
pub mod state;

use std::time::Duration;

use mysql_common::constants::CapabilityFlags;
use tokio::net::TcpStream;

use crate::config::Password;
use crate::wire::auth::{Plugin, scramble};
use crate::wire::handshake::{BackendGreeting, SESSION_CAPABILITIES, parse_backend_greeting};
use crate::wire::packets::{
    self, AUTH_MORE_DATA_HEADER, AUTH_SWITCH_HEADER, ERR_HEADER, OK_HEADER,
};
use crate::wire::{self, PacketConn, Stream};

pub use pool::{BACKEND_USERS, Pool, PoolConfig, Profile, Slot};

const COM_RESET_CONNECTION: u8 = 0x1F;

/// Largest packet accepted from the backend during connect and auth.
const AUTH_PACKET_LIMIT: usize = 64 * 1024;
const COM_CHANGE_USER: u8 = 0x11;
const COM_QUERY: u8 = 0x03;
const COM_INIT_DB: u8 = 0x02;
/// The account name a backend user's own login is kept under (`BackendConn::account`).
pub const BACKEND_USER_ACCOUNT: &str = "backend user ";
const COM_QUIT: u8 = 0x01;
/// Max packet size announced to the backend (the backend's max_allowed_packet still rules).
const CLIENT_MAX_PACKET: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach backend {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("backend {address} did not answer within {secs} s")]
    Timeout { address: String, secs: u64 },
    #[error("backend wire: {0}")]
    Wire(#[from] wire::Error),
    /// The backend refused with this ERR packet; it is passed on to the client as it is.
    #[error("backend refused (error {code})")]
    Refused { code: u16, payload: Vec<u8> },
    #[error("backend asks for auth plugin {0}, which myveil does not speak")]
    UnsupportedPlugin(String),
    #[error(
        "backend account needs caching_sha2_password full authentication; use TLS toward the backend or mysql_native_password for the account"
    )]
    FullAuthNeedsTls,
    /// Every connection the account may hold is taken, and the client's wait ended.
    #[error("no backend connection free: the account's max_backend_connections are in use")]
    Full,
    #[error("backend does not offer TLS but backend.tls_ca is set")]
    NoTls,
    #[error(
        "backend does not report session state (CLIENT_SESSION_TRACK); MariaDB 10.2 or MySQL 5.7 and later are needed"
    )]
    NoSessionTracking,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A handshake response's fields (`BackendConn::answer`).
pub struct Answer<'a> {
    pub user: &'a [u8],
    pub auth: &'a [u8],
    pub plugin: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub collation: u16,
    pub attributes: &'a [(String, String)],
}

/// Who the backend connection should be, for one client session.
pub struct Identity<'a> {
    pub account: &'a str,
    pub user: &'a str,
    pub password: &'a Password,
    pub database: Option<&'a [u8]>,
    pub collation: u16,
    pub attributes: &'a [(String, String)],
}

/// One connection to the backend.
pub struct BackendConn {
    pub conn: PacketConn,
    pub greeting: BackendGreeting,
    /// Capabilities this connection was opened with (zero until the handshake is answered).
    pub capabilities: CapabilityFlags,
    /// Backend account the connection is authenticated as.
    pub account: Option<String>,
    /// The server's max_allowed_packet when the connection logged in: its network limit
    /// for good, whatever the variable says after a reset (0: not read yet).
    pub max_packet: u64,
    /// Its place under its account's connection limit (None: the account has none).
    pub slot: Option<pool::Slot>,
    /// Set down by a multiplexed session, with that session's state (idle in the pool only).
    pub parked: Option<Box<pool::Parked>>,
    /// Statements multiplexed sessions prepared on this connection (forgotten with a reset
    /// or a change of user, which close them on the server).
    pub statements: StatementCache,
}

/// Most statements kept prepared on one connection for multiplexed sessions; the oldest is
/// closed on the server to make room.
const MOST_CACHED_STATEMENTS: usize = 256;

/// A connection's prepared statements, by key (the prepare-time state and the text, see
/// `frontend::mux`), oldest first.
#[derive(Debug, Default)]
pub struct StatementCache {
    ids: std::collections::HashMap<std::sync::Arc<[u8]>, u32>,
    order: std::collections::VecDeque<std::sync::Arc<[u8]>>,
}

impl StatementCache {
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        self.ids.get(key).copied()
    }

    /// Keeps statement `id` under `key`; returns the id of one to close on the server
    /// (the one it replaces, or the oldest when the cache is full).
    pub fn insert(&mut self, key: std::sync::Arc<[u8]>, id: u32) -> Option<u32> {
        if let Some(old) = self.ids.insert(key.clone(), id) {
            return (old != id).then_some(old);
        }
        self.order.push_back(key);
        if self.order.len() > MOST_CACHED_STATEMENTS {
            let oldest = self.order.pop_front()?;
            return self.ids.remove(&oldest);
        }
        None
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.order.clear();
    }
}

impl BackendConn {
    /// Closes a connection myveil gives up (a session that cannot be pooled, pool overflow
    /// or expiry) the way a client that quits does: COM_QUIT first, so the server does not
    /// count an aborted client (`Aborted_clients`). A client's own abort is passed on by
    /// dropping the connection instead. Best effort, without waiting: one non-blocking write
    /// on a plain connection (a TLS one just closes).
    pub fn close(self) {
        if self.account.is_some()
            && let Stream::Plain(tcp) = self.conn.stream()
        {
            let _ = tcp.try_write(&[1, 0, 0, 0, COM_QUIT]);
        }
    }

    pub fn connection_id(&self) -> u32 {
        self.greeting.connection_id
    }

    /// The capability bits that make a pooled connection fit a client.
    pub fn session_key(&self) -> u32 {
        (self.capabilities & SESSION_CAPABILITIES).bits()
    }

    /// Opens a TCP connection and reads the greeting; the handshake is answered later.
    pub(crate) async fn open(address: &str, timeout: Duration) -> Result<Self> {
        let timed_out = || Error::Timeout {
            address: address.to_owned(),
            secs: timeout.as_secs(),
        };
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| Error::Connect {
                address: address.to_owned(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut conn = PacketConn::new(Stream::Plain(tcp));
        let packet = tokio::time::timeout(timeout, conn.read_packet(AUTH_PACKET_LIMIT))
            .await
            .map_err(|_| timed_out())??;
        if packet.payload.first() == Some(&ERR_HEADER) {
            return Err(refused(&packet.payload));
        }
        let greeting = parse_backend_greeting(&packet.payload)?;
        Ok(Self {
            conn,
            greeting,
            capabilities: CapabilityFlags::empty(),
            account: None,
            max_packet: 0,
            slot: None,
            parked: None,
            statements: StatementCache::default(),
        })
    }

    /// Answers the greeting of a fresh connection: optional TLS, then the handshake response
    /// for `who` with the client's capabilities. Returns the backend's final OK payload.
    pub(crate) async fn complete(
        self,
        who: &Identity<'_>,
        client_caps: CapabilityFlags,
        tls: Option<(&tokio_rustls::TlsConnector, &str)>,
    ) -> Result<(Self, Vec<u8>)> {
        let plugin = Plugin::from_name(&self.greeting.plugin).unwrap_or(Plugin::Native);
        let auth = scramble(plugin, &self.greeting.salt, who.password.expose());
        let answer = Answer {
            user: who.user.as_bytes(),
            auth: &auth,
            plugin: plugin.name().as_bytes(),
            database: who.database,
            collation: who.collation,
            attributes: who.attributes,
        };
        let (mut this, _) = self.answer(&answer, client_caps, tls).await?;
        let ok = this.finish_auth(who.password).await?;
        this.account = Some(who.account.to_owned());
        Ok((this, ok))
    }

    /// Sends the handshake response of a fresh connection (after TLS when `tls`), with the
    /// client's capabilities and what myveil always needs. Returns the response's sequence
    /// id: the backend's next packet follows it.
    pub(crate) async fn answer(
        mut self,
        a: &Answer<'_>,
        client_caps: CapabilityFlags,
        tls: Option<(&tokio_rustls::TlsConnector, &str)>,
    ) -> Result<(Self, u8)> {
        let mut caps = (client_caps & crate::wire::handshake::SUPPORTED_CAPABILITIES)
            | CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_CONNECT_ATTRS
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            // Security: the session state the guard works with comes from the server's
            // tracking, whatever the client asked for (state::SessionState).
            | CapabilityFlags::CLIENT_SESSION_TRACK;
        caps &= self.greeting.capabilities | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        caps.set(
            CapabilityFlags::CLIENT_CONNECT_WITH_DB,
            a.database.is_some(),
        );
        let collation = u8::try_from(a.collation).unwrap_or(self.greeting.collation);
        let mut seq = 1;
        if let Some((connector, name)) = tls {
            if !self
                .greeting
                .capabilities
                .contains(CapabilityFlags::CLIENT_SSL)
            {
                return Err(Error::NoTls);
            }
            caps |= CapabilityFlags::CLIENT_SSL;
            let mut req = Vec::with_capacity(32);
            req.extend_from_slice(&caps.bits().to_le_bytes());
            req.extend_from_slice(&CLIENT_MAX_PACKET.to_le_bytes());
            req.push(collation);
            req.extend_from_slice(&[0; 23]);
            seq = self.conn.write_packet(seq, &req).await?;
            // The backend says nothing until the client's TLS hello, so nothing is buffered.
            let (Stream::Plain(tcp), _) = self.conn.into_parts() else {
                return Err(Error::NoTls);
            };
            self.conn = PacketConn::new(crate::wire::tls::connect(connector, name, tcp).await?);
        }
        self.capabilities = caps;
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(&caps.bits().to_le_bytes());
        p.extend_from_slice(&CLIENT_MAX_PACKET.to_le_bytes());
        p.push(collation);
        p.extend_from_slice(&[0; 23]);
        put_nul_str(&mut p, a.user);
        packets::put_lenenc_int(&mut p, a.auth.len() as u64);
        p.extend_from_slice(a.auth);
        if let Some(db) = a.database {
            put_nul_str(&mut p, db);
        }
        put_nul_str(&mut p, a.plugin);
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            put_attributes(&mut p, a.attributes);
        }
        self.conn.write_packet(seq, &p).await?;
        Ok((self, seq))
    }

    /// Resets the session and re-authenticates as `who` (COM_CHANGE_USER).
    pub(crate) async fn change_user(&mut self, who: &Identity<'_>) -> Result<Vec<u8>> {
        self.account = None;
        self.statements.clear();
        let plugin = Plugin::from_name(&self.greeting.plugin).unwrap_or(Plugin::Native);
        let auth = scramble(plugin, &self.greeting.salt, who.password.expose());
        let mut p = Vec::with_capacity(128);
        p.push(COM_CHANGE_USER);
        put_nul_str(&mut p, who.user.as_bytes());
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        put_nul_str(&mut p, who.database.unwrap_or_default());
        p.extend_from_slice(&who.collation.to_le_bytes());
        put_nul_str(&mut p, plugin.name().as_bytes());
        if self
            .capabilities
            .contains(CapabilityFlags::CLIENT_CONNECT_ATTRS)
        {
            put_attributes(&mut p, who.attributes);
        }
        self.conn.write_packet(0, &p).await?;
        let ok = self.finish_auth(who.password).await?;
        self.account = Some(who.account.to_owned());
        Ok(ok)
    }

    /// Turns on session tracking (`state::tracking_setup`) and reads the state the server
    /// reports. Needed after every login, change user and reset, which all drop tracking
    /// back to the server's defaults.
    pub(crate) async fn setup_tracking(
        &mut self,
        database: Option<&[u8]>,
        client_defaults: &state::VarSet,
    ) -> Result<state::SessionState> {
        let mut st = state::SessionState::starting_in(database);
        if !self
            .capabilities
            .contains(CapabilityFlags::CLIENT_SESSION_TRACK)
        {
            return Err(Error::NoSessionTracking);
        }
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(state::tracking_setup(client_defaults).as_bytes());
        self.conn.write_packet(0, &p).await?;
        let reply = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
        match reply.payload.first() {
            Some(&OK_HEADER) => {
                st.apply_setup(&reply.payload)
                    .map_err(|_| wire::Error::Malformed("session state"))?;
                if !st.known {
                    return Err(Error::NoSessionTracking);
                }
                Ok(st)
            }
            Some(&ERR_HEADER) => Err(refused(&reply.payload)),
            _ => Err(wire::Error::Malformed("reply to the tracking setup").into()),
        }
    }

    /// Whether this connection is a backend user's own login (`[backend_users]`): myveil
    /// holds no password to log in as that user again.
    pub fn is_backend_user(&self) -> bool {
        self.account
            .as_deref()
            .is_some_and(|a| a.starts_with(BACKEND_USER_ACCOUNT))
    }

    /// Brings this connection, in the state `from` its server reported, to the state `to`
    /// of a multiplexed session: its database (COM_INIT_DB), then its variables
    /// (`state::restore_sql`). Returns whether the server now reports `to`; false also when
    /// it cannot be written (no database to go back to, a value it cannot quote, a refused
    /// SET), and the caller logs in again.
    pub(crate) async fn restore(
        &mut self,
        from: &state::SessionState,
        to: &state::SessionState,
    ) -> Result<bool> {
        if from.database == to.database && state::restore_sql(from, to) == state::Restore::Same {
            return Ok(state::restored(from, to));
        }
        let mut from = from.clone();
        if from.database != to.database {
            let Some(db) = &to.database else {
                return Ok(false);
            };
            let mut p = vec![COM_INIT_DB];
            p.extend_from_slice(db.as_bytes());
            if !self.command_ok(&p, &mut from).await? {
                return Ok(false);
            }
        }
        match state::restore_sql(&from, to) {
            state::Restore::Cannot => return Ok(false),
            state::Restore::Same => {}
            state::Restore::Sql(sql) => {
                let mut p = vec![COM_QUERY];
                p.extend_from_slice(sql.as_bytes());
                if !self.command_ok(&p, &mut from).await? {
                    return Ok(false);
                }
            }
        }
        let done = state::restored(&from, to);
        if !done {
            let differ: Vec<&str> = to
                .variables
                .iter()
                .filter(|(n, v)| from.variables.get(*n) != Some(v))
                .map(|(n, _)| n.as_str())
                .collect();
            tracing::debug!(?differ, "variables the restore did not bring over");
        }
        Ok(done)
    }

    /// Runs one command of myveil's own that answers OK or ERR, and takes the state its OK
    /// reports into `state`. Ok(false): the server refused it.
    async fn command_ok(
        &mut self,
        payload: &[u8],
        state: &mut state::SessionState,
    ) -> Result<bool> {
        self.conn.write_packet(0, payload).await?;
        let reply = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
        match reply.payload.first() {
            Some(&OK_HEADER) => {
                state
                    .apply_report(&reply.payload)
                    .map_err(|_| wire::Error::Malformed("session state"))?;
                Ok(true)
            }
            Some(&ERR_HEADER) => {
                tracing::debug!(
                    code = packets::err_code(&reply.payload).unwrap_or(0),
                    "the backend refused a state restore"
                );
                Ok(false)
            }
            _ => Err(wire::Error::Malformed("reply to a state restore").into()),
        }
    }

    /// COM_RESET_CONNECTION: the server rolls back, drops temporary tables and prepared
    /// statements, releases GET_LOCK and table locks, and resets user and session variables,
    /// as a disconnect would. Run when a client leaves, before the connection is pooled.
    pub async fn reset(&mut self) -> Result<()> {
        self.statements.clear();
        self.conn.write_packet(0, &[COM_RESET_CONNECTION]).await?;
        let reply = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
        match reply.payload.first() {
            Some(&OK_HEADER) => Ok(()),
            Some(&ERR_HEADER) => Err(refused(&reply.payload)),
            _ => Err(wire::Error::Malformed("reply to the connection reset").into()),
        }
    }

    /// The server's max_allowed_packet now (`SET GLOBAL` changes it for new logins only).
    pub(crate) async fn global_max_packet(&mut self) -> Result<u64> {
        let row = self.query_row("SELECT @@global.max_allowed_packet").await?;
        row.first()
            .and_then(|c| c.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| wire::Error::Malformed("max_allowed_packet").into())
    }

    /// Runs a statement of myveil's own and returns the first row of its result (text
    /// protocol; None for NULL cells). The rest of the result is read and dropped.
    pub(crate) async fn query_row(&mut self, sql: &str) -> Result<Vec<Option<Vec<u8>>>> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        self.conn.write_packet(0, &p).await?;
        let first = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
        match first.payload.first() {
            Some(&ERR_HEADER) => return Err(refused(&first.payload)),
            Some(&OK_HEADER) => return Ok(Vec::new()),
            _ => {}
        }
        let (columns, _) =
            packets::lenenc_int(&first.payload).ok_or(wire::Error::Malformed("column count"))?;
        for _ in 0..=columns {
            self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
        }
        let mut row = None;
        loop {
            let p = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
            match p.payload.first() {
                Some(&ERR_HEADER) => return Err(refused(&p.payload)),
                Some(&packets::EOF_HEADER) if p.payload.len() < 9 => break,
                _ if row.is_none() => {
                    let mut cells = Vec::new();
                    let mut rest = &p.payload[..];
                    while !rest.is_empty() {
                        if rest[0] == 0xFB {
                            cells.push(None);
                            rest = &rest[1..];
                            continue;
                        }
                        let (len, n) =
                            packets::lenenc_int(rest).ok_or(wire::Error::Malformed("row"))?;
                        let end = usize::try_from(len)
                            .ok()
                            .and_then(|l| n.checked_add(l))
                            .filter(|&e| e <= rest.len())
                            .ok_or(wire::Error::Malformed("row"))?;
                        cells.push(Some(rest[n..end].to_vec()));
                        rest = &rest[end..];
                    }
                    row = Some(cells);
                }
                _ => {}
            }
        }
        Ok(row.unwrap_or_default())
    }

    /// Follows the backend through auth switches and caching_sha2 exchanges to OK or ERR.
    async fn finish_auth(&mut self, password: &Password) -> Result<Vec<u8>> {
        loop {
            let packet = self.conn.read_packet(AUTH_PACKET_LIMIT).await?;
            let seq = packet.seq.wrapping_add(1);
            let payload = &packet.payload[..];
            match payload.first() {
                Some(&OK_HEADER) => return Ok(payload.to_vec()),
                Some(&ERR_HEADER) => return Err(refused(payload)),
                Some(&AUTH_SWITCH_HEADER) => {
                    let body = &payload[1..];
                    let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let name = &body[..name_end];
                    let plugin = Plugin::from_name(name).ok_or_else(|| {
                        Error::UnsupportedPlugin(String::from_utf8_lossy(name).into_owned())
                    })?;
                    if plugin == Plugin::Clear && !self.conn.stream().is_tls() {
                        return Err(Error::UnsupportedPlugin(plugin.name().to_owned()));
                    }
                    let mut data = body.get(name_end + 1..).unwrap_or_default();
                    if let [head @ .., 0] = data {
                        data = head;
                    }
                    let auth = scramble(plugin, data, password.expose());
                    self.conn.write_packet(seq, &auth).await?;
                }
                Some(&AUTH_MORE_DATA_HEADER) => match payload.get(1) {
                    // caching_sha2_password: fast auth succeeded, OK follows.
                    Some(3) => {}
                    // Full authentication: the password in clear, only over TLS.
                    Some(4) if self.conn.stream().is_tls() => {
                        let auth = scramble(Plugin::Clear, &[], password.expose());
                        self.conn.write_packet(seq, &auth).await?;
                    }
                    Some(4) => return Err(Error::FullAuthNeedsTls),
                    _ => return Err(wire::Error::Malformed("backend auth data").into()),
                },
                _ => return Err(wire::Error::Malformed("backend auth reply").into()),
            }
        }
    }
}

fn refused(payload: &[u8]) -> Error {
    Error::Refused {
        code: packets::err_code(payload).unwrap_or(0),
        payload: payload.to_vec(),
    }
}

fn put_nul_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(s);
    buf.push(0);
}

fn put_attributes(buf: &mut Vec<u8>, attributes: &[(String, String)]) {
    let mut body = Vec::new();
    for (k, v) in attributes {
        packets::put_lenenc_int(&mut body, k.len() as u64);
        body.extend_from_slice(k.as_bytes());
        packets::put_lenenc_int(&mut body, v.len() as u64);
        body.extend_from_slice(v.as_bytes());
    }
    packets::put_lenenc_int(buf, body.len() as u64);
    buf.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_cache_is_bounded_and_hands_back_what_to_close() {
        let key = |i: usize| -> std::sync::Arc<[u8]> { format!("k{i}").into_bytes().into() };
        let mut c = StatementCache::default();
        for i in 0..MOST_CACHED_STATEMENTS {
            assert_eq!(c.insert(key(i), i as u32 + 1), None);
        }
        // Full: the oldest goes, and its id is the one to close on the server.
        assert_eq!(c.insert(key(9999), 9999), Some(1));
        assert_eq!(c.get(&key(0)), None);
        assert_eq!(c.get(&key(1)), Some(2));
        // The same key prepared again under a new id: the old id is closed.
        assert_eq!(c.insert(key(1), 7777), Some(2));
        assert_eq!(c.get(&key(1)), Some(7777));
        assert_eq!(c.insert(key(1), 7777), None);
        c.clear();
        assert_eq!(c.get(&key(5)), None);
    }
}
