//! wire::auth: the arithmetic of MySQL auth plugins — verifiers stored for proxy users,
//! checks of client scrambles (server side) and scrambles for backend accounts (client side).

use rand::Rng;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SALT_LEN: usize = 20;

/// Auth plugins myveil speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Native,
    CachingSha2,
    Clear,
}

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Native => "mysql_native_password",
            Plugin::CachingSha2 => "caching_sha2_password",
            Plugin::Clear => "mysql_clear_password",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"mysql_native_password" => Some(Plugin::Native),
            b"caching_sha2_password" => Some(Plugin::CachingSha2),
            b"mysql_clear_password" => Some(Plugin::Clear),
            _ => None,
        }
    }
}

/// A fresh salt for one handshake: 20 random bytes, none of them NUL (the greeting carries
/// the salt NUL-terminated), drawn from the OS-seeded CSPRNG.
pub fn new_salt() -> [u8; SALT_LEN] {
    let mut rng = rand::rng();
    let mut salt = [0u8; SALT_LEN];
    for b in &mut salt {
        *b = rng.random_range(1..=127);
    }
    salt
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA1(SHA1(password)): what MySQL stores for mysql_native_password.
pub fn native_verifier(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// SHA256(SHA256(password)): what caching_sha2_password keeps in its cache for the fast path.
pub fn sha2_verifier(password: &[u8]) -> [u8; 32] {
    sha256(&[&sha256(&[password])])
}

/// Checks a mysql_native_password response: SHA1(pw) XOR SHA1(salt, verifier).
pub fn check_native(salt: &[u8], response: &[u8], verifier: &[u8; 20]) -> bool {
    if response.len() != 20 {
        return false;
    }
    let mask = sha1(&[salt, verifier]);
    let mut stage1 = [0u8; 20];
    for i in 0..20 {
        stage1[i] = response[i] ^ mask[i];
    }
    sha1(&[&stage1]).ct_eq(verifier).into()
}

/// Checks a caching_sha2_password fast-path response: SHA256(pw) XOR SHA256(verifier, salt).
pub fn check_sha2(salt: &[u8], response: &[u8], verifier: &[u8; 32]) -> bool {
    if response.len() != 32 {
        return false;
    }
    let mask = sha256(&[verifier, salt]);
    let mut stage1 = [0u8; 32];
    for i in 0..32 {
        stage1[i] = response[i] ^ mask[i];
    }
    sha256(&[&stage1]).ct_eq(verifier).into()
}

/// The response a client sends for `plugin` with `password` (used toward the backend).
pub fn scramble(plugin: Plugin, salt: &[u8], password: &[u8]) -> Vec<u8> {
    match plugin {
        Plugin::Native => mysql_common::scramble::scramble_native(salt, password)
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        Plugin::CachingSha2 => mysql_common::scramble::scramble_sha256(salt, password)
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        Plugin::Clear => {
            let mut v = password.to_vec();
            v.push(0);
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_scramble_verifies_against_stored_verifier() {
        let salt = new_salt();
        let v = native_verifier(b"s3cret");
        assert!(check_native(
            &salt,
            &scramble(Plugin::Native, &salt, b"s3cret"),
            &v
        ));
        assert!(!check_native(
            &salt,
            &scramble(Plugin::Native, &salt, b"s3creT"),
            &v
        ));
        assert!(!check_native(
            &new_salt(),
            &scramble(Plugin::Native, &salt, b"s3cret"),
            &v
        ));
        assert!(!check_native(&salt, b"", &v));
    }

    #[test]
    fn sha2_scramble_verifies_against_stored_verifier() {
        let salt = new_salt();
        let v = sha2_verifier(b"s3cret");
        assert!(check_sha2(
            &salt,
            &scramble(Plugin::CachingSha2, &salt, b"s3cret"),
            &v
        ));
        assert!(!check_sha2(
            &salt,
            &scramble(Plugin::CachingSha2, &salt, b"other"),
            &v
        ));
        assert!(!check_sha2(&salt, &[0u8; 31], &v));
    }

    #[test]
    fn salt_has_no_nul_byte() {
        for _ in 0..100 {
            assert!(!new_salt().contains(&0));
        }
    }
}
