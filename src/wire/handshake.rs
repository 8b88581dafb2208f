//! wire::handshake: the connection phase packets — the greeting myveil sends a client, the
//! client's SSL request or handshake response, and the backend's greeting.

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};

use mysql_common::proto::MySerialize;

use super::auth::{Plugin, SALT_LEN};
use super::{Error, Result};

/// Capabilities myveil can honour toward a client. Session tracking is offered: myveil
/// always tracks the backend session for itself and gives a client the records it would
/// get directly (backend::state). Left out on purpose: CLIENT_DEPRECATE_EOF, optional
/// metadata, query attributes and MariaDB's extended capabilities — each changes result
/// framing and none is needed for fidelity (see docs/adr/0001). CLIENT_SSL is added when TLS
/// is configured, compression (toward the client only) when `listen.compression` is on.
pub const SUPPORTED_CAPABILITIES: CapabilityFlags = CapabilityFlags::from_bits_truncate(
    CapabilityFlags::CLIENT_LONG_PASSWORD.bits()
        | CapabilityFlags::CLIENT_FOUND_ROWS.bits()
        | CapabilityFlags::CLIENT_LONG_FLAG.bits()
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits()
        | CapabilityFlags::CLIENT_NO_SCHEMA.bits()
        | CapabilityFlags::CLIENT_ODBC.bits()
        | CapabilityFlags::CLIENT_LOCAL_FILES.bits()
        | CapabilityFlags::CLIENT_IGNORE_SPACE.bits()
        | CapabilityFlags::CLIENT_PROTOCOL_41.bits()
        | CapabilityFlags::CLIENT_INTERACTIVE.bits()
        | CapabilityFlags::CLIENT_IGNORE_SIGPIPE.bits()
        | CapabilityFlags::CLIENT_TRANSACTIONS.bits()
        | CapabilityFlags::CLIENT_RESERVED.bits()
        | CapabilityFlags::CLIENT_SECURE_CONNECTION.bits()
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS.bits()
        | CapabilityFlags::CLIENT_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH.bits()
        | CapabilityFlags::CLIENT_CONNECT_ATTRS.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits()
        | CapabilityFlags::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS.bits()
        | CapabilityFlags::CLIENT_SESSION_TRACK.bits(),
);

/// Client capabilities that change how the backend behaves for the whole connection; a
/// pooled backend connection serves only clients that agree on them.
pub const SESSION_CAPABILITIES: CapabilityFlags = CapabilityFlags::from_bits_truncate(
    CapabilityFlags::CLIENT_FOUND_ROWS.bits()
        | CapabilityFlags::CLIENT_LOCAL_FILES.bits()
        | CapabilityFlags::CLIENT_IGNORE_SPACE.bits()
        | CapabilityFlags::CLIENT_INTERACTIVE.bits()
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS.bits()
        | CapabilityFlags::CLIENT_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS.bits(),
);

/// What myveil tells a client in its greeting.
pub struct Greeting<'a> {
    pub server_version: &'a [u8],
    pub connection_id: u32,
    pub salt: &'a [u8; SALT_LEN],
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub plugin: Plugin,
}

impl Greeting<'_> {
    pub fn to_payload(&self) -> Vec<u8> {
        let (head, tail) = self.salt.split_at(8);
        let mut scramble_1 = [0u8; 8];
        scramble_1.copy_from_slice(head);
        // The second part is NUL-terminated on the wire (13 bytes for a 20-byte salt).
        let mut scramble_2 = tail.to_vec();
        scramble_2.push(0);
        let packet = HandshakePacket::new(
            10,
            self.server_version,
            self.connection_id,
            scramble_1,
            Some(scramble_2),
            self.capabilities,
            self.collation,
            StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            Some(self.plugin.name().as_bytes()),
        );
        let mut buf = Vec::with_capacity(96);
        packet.serialize(&mut buf);
        buf
    }
}

/// The backend's greeting, as far as myveil needs it.
#[derive(Debug, Clone)]
pub struct BackendGreeting {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    pub salt: Vec<u8>,
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub plugin: Vec<u8>,
}

/// Parses the backend's greeting (protocol 10). Written out rather than taken from
/// mysql_common, whose parser overflows on some auth-data lengths.
pub fn parse_backend_greeting(payload: &[u8]) -> Result<BackendGreeting> {
    let bad = || Error::Malformed("backend greeting");
    let (&version, rest) = payload.split_first().ok_or_else(bad)?;
    if version != 10 {
        return Err(Error::Malformed(
            "backend greeting is not protocol version 10",
        ));
    }
    let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let server_version = rest[..nul].to_vec();
    let fixed = rest.get(nul + 1..nul + 1 + 31).ok_or_else(bad)?;
    let tail = &rest[nul + 1 + 31..];
    let connection_id = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let mut salt = fixed[4..12].to_vec();
    let caps_low = u32::from(u16::from_le_bytes([fixed[13], fixed[14]]));
    let collation = fixed[15];
    let caps_high = u32::from(u16::from_le_bytes([fixed[18], fixed[19]]));
    let capabilities = CapabilityFlags::from_bits_truncate(caps_low | caps_high << 16);
    let auth_data_len = usize::from(fixed[20]);
    let mut tail = tail;
    if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let len = auth_data_len.saturating_sub(8).max(13).min(tail.len());
        let part2 = &tail[..len];
        // The second part is NUL-terminated; the terminator is not part of the salt.
        salt.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
        tail = &tail[len..];
    }
    let plugin = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        tail[..end].to_vec()
    } else {
        Plugin::Native.name().as_bytes().to_vec()
    };
    Ok(BackendGreeting {
        server_version,
        connection_id,
        salt,
        capabilities,
        collation,
        plugin,
    })
}

/// The client's answer to the greeting.
pub enum ClientHello {
    /// A 32-byte SSL request: upgrade to TLS, then read the full response.
    SslRequest(CapabilityFlags),
    Response(ClientResponse),
}

/// The fields of a handshake response that myveil uses.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub plugin: Option<Vec<u8>>,
    pub attributes: Vec<(String, String)>,
    /// The zstd level a client that asks for zstd compression names (the last byte).
    pub zstd_level: Option<u8>,
}

impl ClientResponse {
    /// The compression the client turned on, if any (zlib wins when both are set, as with
    /// the server).
    pub fn compression(&self) -> Option<super::compress::Algorithm> {
        use super::compress::{Algorithm, ZSTD_DEFAULT_LEVEL};
        if self.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS) {
            Some(Algorithm::Zlib)
        } else if self
            .capabilities
            .contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM)
        {
            let level = self
                .zstd_level
                .map_or(ZSTD_DEFAULT_LEVEL, |l| i32::from(l).clamp(1, 22));
            Some(Algorithm::Zstd(level))
        } else {
            None
        }
    }
}

const SSL_REQUEST_LEN: usize = 32;

pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello> {
    let caps = payload
        .get(..4)
        .map(|b| CapabilityFlags::from_bits_truncate(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .ok_or(Error::Malformed("handshake response"))?;
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(Error::Malformed("client does not speak protocol 4.1"));
    }
    if payload.len() == SSL_REQUEST_LEN && caps.contains(CapabilityFlags::CLIENT_SSL) {
        return Ok(ClientHello::SslRequest(caps));
    }
    // The zstd level is the last field, after everything mysql_common reads.
    let (payload, zstd_level) = match payload.split_last() {
        Some((&level, rest))
            if caps.contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM) =>
        {
            (rest, Some(level))
        }
        _ => (payload, None),
    };
    let r = ParseBuf(payload)
        .parse::<HandshakeResponse>(())
        .map_err(|_| Error::Malformed("handshake response"))?;
    let mut attributes: Vec<(String, String)> = r
        .connect_attributes()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    attributes.sort();
    let plugin = r.auth_plugin().map(|p| p.as_bytes().to_vec());
    Ok(ClientHello::Response(ClientResponse {
        capabilities: r.capabilities(),
        collation: r.collation(),
        user: r.user().to_vec(),
        auth_response: r.scramble_buf().to_vec(),
        database: r.db_name().filter(|d| !d.is_empty()).map(<[u8]>::to_vec),
        plugin,
        attributes,
        zstd_level,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::auth::new_salt;

    #[test]
    fn greeting_round_trips_through_mysql_common() {
        let salt = new_salt();
        let g = Greeting {
            server_version: b"10.11.19-MariaDB",
            connection_id: 42,
            salt: &salt,
            capabilities: SUPPORTED_CAPABILITIES,
            collation: 45,
            plugin: Plugin::Native,
        };
        let parsed = parse_backend_greeting(&g.to_payload()).expect("parse");
        assert_eq!(parsed.connection_id, 42);
        assert_eq!(parsed.salt, salt.to_vec());
        assert_eq!(parsed.server_version, b"10.11.19-MariaDB");
        assert_eq!(parsed.plugin, b"mysql_native_password");
        assert_eq!(parsed.capabilities, SUPPORTED_CAPABILITIES);
    }

    #[test]
    fn garbage_hello_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[0xFF; 3],
            &[0x00, 0x02, 0, 0, 1, 2],
            &[0x00, 0x02, 0, 0],
        ] {
            assert!(parse_client_hello(bad).is_err());
        }
        // Arbitrary bytes with the 4.1 flag set must not panic, whatever they parse to.
        for len in 0..80 {
            let _ = parse_client_hello(&vec![0xFF; len]);
        }
    }

    #[test]
    fn random_greetings_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let good = Greeting {
            server_version: b"10.11.19-MariaDB",
            connection_id: 1,
            salt: &new_salt(),
            capabilities: SUPPORTED_CAPABILITIES,
            collation: 45,
            plugin: Plugin::Native,
        }
        .to_payload();
        for _ in 0..20_000 {
            let mut p = good.clone();
            let cut = rng.random_range(0..=p.len());
            p.truncate(cut);
            if !p.is_empty() {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            let _ = parse_backend_greeting(&p);
        }
        // Client responses: valid ones cut and flipped, and noise with the 4.1 flag set.
        let mut response = Vec::new();
        response.extend_from_slice(&(SUPPORTED_CAPABILITIES.bits()).to_le_bytes());
        response.extend_from_slice(&[0, 0, 0, 1, 45]);
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(b"app\0");
        response.extend_from_slice(&[20; 21]);
        response.extend_from_slice(b"db\0mysql_native_password\0");
        response.extend_from_slice(&[10, 3, b'_', b'o', b's', 5, b'l', b'i', b'n', b'u', b'x']);
        assert!(matches!(
            parse_client_hello(&response),
            Ok(ClientHello::Response(_))
        ));
        for _ in 0..50_000 {
            let mut p = response.clone();
            let cut = rng.random_range(0..=p.len());
            p.truncate(cut);
            for _ in 0..rng.random_range(0..4) {
                if !p.is_empty() {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
            }
            let _ = parse_client_hello(&p);
        }
    }
}
