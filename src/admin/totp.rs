//! admin::totp: the optional second factor of administrators — RFC 6238 time-based one-time
//! passwords (HMAC-SHA1, 30 s steps, 6 digits: what authenticator apps expect).

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub const STEP_SECS: u64 = 30;
const DIGITS: u32 = 6;
/// Steps of clock drift accepted either side of now.
const DRIFT_STEPS: u64 = 1;
const SECRET_LEN: usize = 20;

/// A new random secret, base32 (RFC 4648, no padding) as authenticator apps take it.
pub fn new_secret() -> String {
    base32(&rand::random::<[u8; SECRET_LEN]>())
}

/// The `otpauth://` URI an authenticator app reads (usually from a QR code).
pub fn uri(issuer: &str, account: &str, secret: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=' && c != b' ') {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

fn code_at(secret: &[u8], step: u64) -> u32 {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(&step.to_be_bytes());
    let digest = m.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    bin % 10u32.pow(DIGITS)
}

/// The code for `secret` at unix time `now` (for enrollment checks and tests).
pub fn code(secret: &str, now: u64) -> Option<String> {
    let key = unbase32(secret)?;
    Some(format!(
        "{:0width$}",
        code_at(&key, now / STEP_SECS),
        width = DIGITS as usize
    ))
}

/// Checks `given` against the steps around `now`; returns the matching step, which must be
/// later than `last_used` (a code works once).
pub fn verify(secret: &str, given: &str, now: u64, last_used: Option<u64>) -> Option<u64> {
    let key = unbase32(secret)?;
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now / STEP_SECS;
    let mut found = None;
    // Security: every candidate step is compared (constant time each), so timing does not
    // say which step matched.
    for step in current.saturating_sub(DRIFT_STEPS)..=current + DRIFT_STEPS {
        let expected = format!("{:0width$}", code_at(&key, step), width = DIGITS as usize);
        if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(step);
        }
    }
    found.filter(|s| last_used.is_none_or(|last| *s > last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA1, secret "12345678901234567890"; the 6 low digits.
        let secret = base32(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (t, want) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code(&secret, t).as_deref(), Some(want), "t={t}");
        }
    }

    #[test]
    fn verify_accepts_drift_and_refuses_replay() {
        let s = new_secret();
        assert_eq!(unbase32(&s).map(|k| k.len()), Some(SECRET_LEN));
        let now = 1_700_000_000;
        let c = code(&s, now).expect("code");
        let step = verify(&s, &c, now, None).expect("valid now");
        assert!(
            verify(&s, &c, now + STEP_SECS, None).is_some(),
            "one step late"
        );
        assert!(
            verify(&s, &c, now + 3 * STEP_SECS, None).is_none(),
            "too late"
        );
        assert!(
            verify(&s, &c, now, Some(step)).is_none(),
            "used once already"
        );
        assert!(verify(&s, "12345", now, None).is_none());
        assert!(verify(&s, "abcdef", now, None).is_none());
        assert!(uri("myveil", "root@x", &s).starts_with("otpauth://totp/myveil:root%40x?secret="));
    }
}
