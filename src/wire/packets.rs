//! wire::packets: the few packets myveil writes itself (OK, ERR, EOF, auth switch) and the
//! header fields the relay reads from backend packets (status flags of OK/EOF).
//! Everything else is relayed as the backend sent it.

use mysql_common::constants::StatusFlags;

pub const OK_HEADER: u8 = 0x00;
pub const EOF_HEADER: u8 = 0xFE;
pub const ERR_HEADER: u8 = 0xFF;
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;
pub const AUTH_MORE_DATA_HEADER: u8 = 0x01;
pub const AUTH_SWITCH_HEADER: u8 = 0xFE;

// MySQL error codes, with MySQL's names.
pub const ER_CON_COUNT_ERROR: u16 = 1040;
pub const ER_HANDSHAKE_ERROR: u16 = 1043;
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
/// A prepared statement must be prepared again (its tables changed under it).
pub const ER_NEED_REPREPARE: u16 = 1615;
pub const ER_UNKNOWN_ERROR: u16 = 1105;
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
pub const ER_SERVER_SHUTDOWN: u16 = 1053;
pub const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;
pub const ER_NET_READ_ERROR: u16 = 1158;
pub const ER_COLUMNACCESS_DENIED_ERROR: u16 = 1143;
pub const ER_HOST_IS_BLOCKED: u16 = 1129;
pub const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
pub const ER_USER_LIMIT_REACHED: u16 = 1226;

/// An error myveil answers with itself: code, SQLSTATE and a message without values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: u16,
    pub state: [u8; 5],
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: u16, state: &[u8; 5], message: impl Into<String>) -> Self {
        Self {
            code,
            state: *state,
            message: message.into(),
        }
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(9 + self.message.len());
        p.push(ERR_HEADER);
        p.extend_from_slice(&self.code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(&self.state);
        p.extend_from_slice(self.message.as_bytes());
        p
    }
}

/// An OK packet payload (CLIENT_PROTOCOL_41, no session tracking).
pub fn ok_payload(
    affected_rows: u64,
    last_insert_id: u64,
    status: StatusFlags,
    warnings: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.push(OK_HEADER);
    put_lenenc_int(&mut p, affected_rows);
    put_lenenc_int(&mut p, last_insert_id);
    p.extend_from_slice(&status.bits().to_le_bytes());
    p.extend_from_slice(&warnings.to_le_bytes());
    p
}

/// An auth switch request: plugin name and the data (salt) for it.
pub fn auth_switch_payload(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + plugin.len() + data.len() + 1);
    p.push(AUTH_SWITCH_HEADER);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(data);
    p.push(0);
    p
}

pub fn auth_more_data_payload(data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + data.len());
    p.push(AUTH_MORE_DATA_HEADER);
    p.extend_from_slice(data);
    p
}

pub fn put_lenenc_int(buf: &mut Vec<u8>, v: u64) {
    let (bytes, len) = lenenc_int_bytes(v);
    buf.extend_from_slice(&bytes[..len]);
}

/// A length-encoded integer's bytes, on the stack (for a prefix written after its value).
pub fn lenenc_int_bytes(v: u64) -> ([u8; 9], usize) {
    let mut b = [0u8; 9];
    let len = match v {
        0..=250 => {
            b[0] = v as u8;
            1
        }
        251..=0xFFFF => {
            b[0] = 0xFC;
            b[1..3].copy_from_slice(&(v as u16).to_le_bytes());
            3
        }
        0x1_0000..=0xFF_FFFF => {
            b[0] = 0xFD;
            b[1..4].copy_from_slice(&(v as u32).to_le_bytes()[..3]);
            4
        }
        _ => {
            b[0] = 0xFE;
            b[1..9].copy_from_slice(&v.to_le_bytes());
            9
        }
    };
    (b, len)
}

/// Reads a length-encoded integer; returns the value and the bytes it took.
pub fn lenenc_int(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = match first {
        0..=0xFA => return Some((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = buf.get(1..1 + len)?;
    let mut out = [0u8; 8];
    out[..len].copy_from_slice(bytes);
    Some((u64::from_le_bytes(out), 1 + len))
}

/// Status flags of an OK packet (header 0x00, or 0xFE used as OK after rows).
pub fn ok_status(payload: &[u8]) -> Option<StatusFlags> {
    let rest = payload.get(1..)?;
    let (_, a) = lenenc_int(rest)?;
    let (_, b) = lenenc_int(rest.get(a..)?)?;
    let s = rest.get(a + b..a + b + 2)?;
    Some(StatusFlags::from_bits_retain(u16::from_le_bytes([
        s[0], s[1],
    ])))
}

/// Whether an OK packet leaves something only its own connection can answer for: an
/// insert id (`LAST_INSERT_ID()`) or warnings (`SHOW WARNINGS`). Unreadable: true.
pub fn ok_leaves_trace(payload: &[u8]) -> bool {
    let Some(rest) = payload.get(1..) else {
        return true;
    };
    let Some((_, a)) = lenenc_int(rest) else {
        return true;
    };
    let Some((insert_id, b)) = rest.get(a..).and_then(lenenc_int) else {
        return true;
    };
    let warnings = rest.get(a + b + 2..a + b + 4);
    insert_id != 0 || warnings.is_none_or(|w| w != [0, 0])
}

/// Whether a classic EOF packet reports warnings.
pub fn eof_warnings(payload: &[u8]) -> bool {
    payload.get(1..3).is_none_or(|w| w != [0, 0])
}

/// Status flags of a classic EOF packet (0xFE, warnings u16, status u16).
pub fn eof_status(payload: &[u8]) -> Option<StatusFlags> {
    let s = payload.get(3..5)?;
    Some(StatusFlags::from_bits_retain(u16::from_le_bytes([
        s[0], s[1],
    ])))
}

/// Kinds of session state change records (CLIENT_SESSION_TRACK), with MySQL's names.
pub const SESSION_TRACK_SYSTEM_VARIABLES: u8 = 0;
pub const SESSION_TRACK_SCHEMA: u8 = 1;

/// An OK packet from a connection with CLIENT_SESSION_TRACK: the fixed fields as bytes, the
/// human-readable info and the session state block (records), when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedOk<'a> {
    /// Header byte through the warning count.
    pub fixed: &'a [u8],
    pub status: StatusFlags,
    pub info: &'a [u8],
    /// The session state block without its length prefix (empty when the status does not
    /// say the state changed).
    pub state: &'a [u8],
}

fn lenenc_bytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = lenenc_int(buf)?;
    let end = n.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(n..end)?, &buf[end..]))
}

/// Reads an OK packet sent to a connection that negotiated CLIENT_SESSION_TRACK. The info
/// is length-encoded there, and the state block follows it when the status flags carry
/// SERVER_SESSION_STATE_CHANGED.
pub fn parse_tracked_ok(payload: &[u8]) -> Option<TrackedOk<'_>> {
    if payload.first() != Some(&OK_HEADER) {
        return None;
    }
    let rest = &payload[1..];
    let (_, a) = lenenc_int(rest)?;
    let (_, b) = lenenc_int(rest.get(a..)?)?;
    let fixed_len = 1 + a + b + 4;
    let fixed = payload.get(..fixed_len)?;
    let status = StatusFlags::from_bits_retain(u16::from_le_bytes([
        fixed[fixed_len - 4],
        fixed[fixed_len - 3],
    ]));
    let tail = &payload[fixed_len..];
    if tail.is_empty() {
        return Some(TrackedOk {
            fixed,
            status,
            info: &[],
            state: &[],
        });
    }
    let (info, tail) = lenenc_bytes(tail)?;
    let state = if status.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) && !tail.is_empty() {
        lenenc_bytes(tail)?.0
    } else {
        &[]
    };
    Some(TrackedOk {
        fixed,
        status,
        info,
        state,
    })
}

/// The records of a session state block: (kind, data) pairs; None for a malformed block.
pub fn state_records(mut state: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = state.split_first() {
        let (data, rest) = lenenc_bytes(rest)?;
        out.push((kind, data));
        state = rest;
    }
    Some(out)
}

/// The name and value of a system variable record.
pub fn variable_record(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, rest) = lenenc_bytes(data)?;
    let (value, _) = lenenc_bytes(rest)?;
    Some((name, value))
}

/// The schema of a schema record.
pub fn schema_record(data: &[u8]) -> Option<&[u8]> {
    Some(lenenc_bytes(data)?.0)
}

/// Rebuilds an OK packet with only the `kept` state records, as a server sends it: to a
/// client without CLIENT_SESSION_TRACK (`tracking` false; no records then), or with it.
/// The state-changed flag is cleared when nothing is left, and the info is written only
/// when there is some (or when records follow it).
pub fn rebuild_ok(ok: &TrackedOk<'_>, kept: &[(u8, &[u8])], tracking: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ok.fixed.len() + ok.info.len() + 16);
    out.extend_from_slice(ok.fixed);
    let keep = tracking && !kept.is_empty();
    let mut status = ok.status;
    status.set(StatusFlags::SERVER_SESSION_STATE_CHANGED, keep);
    let at = ok.fixed.len() - 4;
    out[at..at + 2].copy_from_slice(&status.bits().to_le_bytes());
    if keep || !ok.info.is_empty() {
        put_lenenc_int(&mut out, ok.info.len() as u64);
        out.extend_from_slice(ok.info);
    }
    if keep {
        let mut block = Vec::new();
        for (kind, data) in kept {
            block.push(*kind);
            put_lenenc_int(&mut block, data.len() as u64);
            block.extend_from_slice(data);
        }
        put_lenenc_int(&mut out, block.len() as u64);
        out.extend_from_slice(&block);
    }
    out
}

/// Error code of an ERR packet.
pub fn err_code(payload: &[u8]) -> Option<u16> {
    let c = payload.get(1..3)?;
    Some(u16::from_le_bytes([c[0], c[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trips_at_every_width() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, v);
            assert_eq!(lenenc_int(&b), Some((v, b.len())), "value {v}");
        }
        assert_eq!(lenenc_int(&[0xFC, 1]), None, "truncated");
        assert_eq!(lenenc_int(&[0xFF]), None, "0xFF is not an integer");
        assert_eq!(lenenc_int(&[]), None);
    }

    #[test]
    fn ok_status_reads_flags_after_two_lenenc_fields() {
        let status =
            StatusFlags::SERVER_STATUS_AUTOCOMMIT | StatusFlags::SERVER_MORE_RESULTS_EXISTS;
        let p = ok_payload(300, 70_000, status, 2);
        assert_eq!(ok_status(&p), Some(status));
        assert_eq!(ok_status(&p[..4]), None);
    }

    /// OK packets as MariaDB 10.11 sent them (captured): `SET sql_mode='ANSI_QUOTES'` with
    /// session tracking, and an UPDATE's OK with its info.
    const SET_OK: &[u8] =
        b"\x00\x00\x00\x02\xc0\x00\x00\x00\x17\x00\x15\x08sql_mode\x0bANSI_QUOTES";
    const UPDATE_OK: &[u8] =
        b"\x00\x00\x00\x02\x00\x00\x00(Rows matched: 2  Changed: 0  Warnings: 0";

    #[test]
    fn tracked_ok_packets_are_read_and_rebuilt_as_the_server_sends_them() {
        let ok = parse_tracked_ok(SET_OK).expect("parse");
        assert!(
            ok.status
                .contains(StatusFlags::SERVER_SESSION_STATE_CHANGED)
        );
        assert_eq!(ok.info, b"");
        let records = state_records(ok.state).expect("records");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, SESSION_TRACK_SYSTEM_VARIABLES);
        assert_eq!(
            variable_record(records[0].1),
            Some((&b"sql_mode"[..], &b"ANSI_QUOTES"[..]))
        );
        // Without tracking the server sends no info and clears the flag.
        assert_eq!(
            rebuild_ok(&ok, &records, false),
            b"\x00\x00\x00\x02\x80\x00\x00".to_vec()
        );
        assert_eq!(rebuild_ok(&ok, &records, true), SET_OK.to_vec());
        assert_eq!(
            rebuild_ok(&ok, &[], true),
            b"\x00\x00\x00\x02\x80\x00\x00".to_vec()
        );
        // An info without a state change looks the same either way.
        let upd = parse_tracked_ok(UPDATE_OK).expect("parse");
        assert_eq!(upd.info, b"Rows matched: 2  Changed: 0  Warnings: 0");
        assert_eq!(rebuild_ok(&upd, &[], false), UPDATE_OK.to_vec());
        // Truncated packets are refused, never misread.
        for cut in 1..SET_OK.len() {
            if let Some(p) = parse_tracked_ok(&SET_OK[..cut]) {
                assert!(
                    state_records(p.state).is_none() || p.state.is_empty(),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn err_payload_has_code_state_and_message() {
        let p = ErrorReply::new(ER_ACCESS_DENIED_ERROR, b"28000", "Access denied").to_payload();
        assert_eq!(p[0], ERR_HEADER);
        assert_eq!(err_code(&p), Some(1045));
        assert_eq!(&p[3..9], b"#28000");
        assert_eq!(&p[9..], b"Access denied");
    }
}
