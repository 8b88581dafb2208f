//! crypto::envelope: the cell format for protected values at rest.
//!
//! ```text
//! magic "MV" | version 1 | algorithm 1 (AES-256-GCM) | key id (u32 BE) | nonce (12) | ciphertext | tag (16)
//! ```
//! The AAD binds the whole header, the table, the column, the plaintext type and, where the
//! policy declares one, a row key — so a ciphertext copied to another column, table or row,
//! or relabelled with another key id, fails to open.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use rand::RngCore;

use super::{Error, Result};

pub const MAGIC: [u8; 2] = *b"MV";
pub const VERSION: u8 = 1;
pub const ALG_AES_256_GCM: u8 = 1;
pub const HEADER_LEN: usize = 8;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Where a value lives: what its ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct CellContext<'a> {
    pub table: &'a str,
    pub column: &'a str,
    /// The plaintext type's name as the policy declares it (e.g. "varchar", "date").
    pub plaintext_type: &'a str,
    pub row_key: Option<&'a [u8]>,
}

impl CellContext<'_> {
    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(header);
        for part in [
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.plaintext_type.as_bytes(),
        ] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        match self.row_key {
            Some(k) => {
                aad.push(1);
                aad.extend_from_slice(&(k.len() as u32).to_be_bytes());
                aad.extend_from_slice(k);
            }
            None => aad.push(0),
        }
        aad
    }
}

fn header(key_id: u32) -> [u8; HEADER_LEN] {
    let id = key_id.to_be_bytes();
    [
        MAGIC[0],
        MAGIC[1],
        VERSION,
        ALG_AES_256_GCM,
        id[0],
        id[1],
        id[2],
        id[3],
    ]
}

/// The key id an envelope names, after checking magic, version and algorithm.
pub fn key_id(envelope: &[u8]) -> Result<u32> {
    if envelope.len() < OVERHEAD {
        return Err(Error::Malformed("envelope too short"));
    }
    if envelope[..2] != MAGIC {
        return Err(Error::Malformed("not a myveil envelope"));
    }
    if envelope[2] != VERSION {
        return Err(Error::Malformed("unknown envelope version"));
    }
    if envelope[3] != ALG_AES_256_GCM {
        return Err(Error::Malformed("unknown envelope algorithm"));
    }
    Ok(u32::from_be_bytes([
        envelope[4],
        envelope[5],
        envelope[6],
        envelope[7],
    ]))
}

/// Encrypts `plaintext` under `key` (id `key_id`) with a fresh random nonce.
pub fn seal(
    key: &[u8; 32],
    key_id: u32,
    ctx: &CellContext<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let cipher = Aes256Gcm::new(key.into());
    let head = header(key_id);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let aad = ctx.aad(&head);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Seal)?;
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts an envelope with `key`; the caller picked the key by `key_id(envelope)`.
pub fn open(key: &[u8; 32], ctx: &CellContext<'_>, envelope: &[u8]) -> Result<Vec<u8>> {
    let id = key_id(envelope)?;
    let cipher = Aes256Gcm::new(key.into());
    let aad = ctx.aad(&envelope[..HEADER_LEN]);
    let nonce = &envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN];
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: &envelope[HEADER_LEN + NONCE_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| Error::Open { key_id: id })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const CTX: CellContext<'static> = CellContext {
        table: "users",
        column: "email",
        plaintext_type: "varchar",
        row_key: None,
    };

    #[test]
    fn round_trip_and_fresh_nonces() {
        let a = seal(&KEY, 9, &CTX, b"ann@example.com").expect("seal");
        let b = seal(&KEY, 9, &CTX, b"ann@example.com").expect("seal");
        assert_ne!(a, b, "random nonce per seal");
        assert_eq!(a.len(), OVERHEAD + 15);
        assert_eq!(key_id(&a).expect("id"), 9);
        assert_eq!(open(&KEY, &CTX, &a).expect("open"), b"ann@example.com");
        assert_eq!(
            open(&KEY, &CTX, &seal(&KEY, 1, &CTX, b"").expect("seal")).expect("open"),
            b""
        );
    }

    #[test]
    fn every_tamper_is_refused() {
        let env = seal(&KEY, 3, &CTX, b"secret value").expect("seal");
        for i in 0..env.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = env.clone();
                t[i] ^= bit;
                assert!(
                    open(&KEY, &CTX, &t).is_err(),
                    "flipped bit {bit:#x} of byte {i}"
                );
            }
        }
        for cut in 0..env.len() {
            assert!(open(&KEY, &CTX, &env[..cut]).is_err(), "truncated to {cut}");
        }
        let other_column = CellContext {
            column: "phone",
            ..CTX
        };
        assert!(matches!(
            open(&KEY, &other_column, &env),
            Err(Error::Open { key_id: 3 })
        ));
        let other_table = CellContext {
            table: "admins",
            ..CTX
        };
        assert!(open(&KEY, &other_table, &env).is_err());
        let other_type = CellContext {
            plaintext_type: "text",
            ..CTX
        };
        assert!(open(&KEY, &other_type, &env).is_err());
        let other_row = CellContext {
            row_key: Some(b"42"),
            ..CTX
        };
        assert!(open(&KEY, &other_row, &env).is_err());
        assert!(open(&[8; 32], &CTX, &env).is_err(), "wrong key");
        let mut extended = env.clone();
        extended.push(0);
        assert!(open(&KEY, &CTX, &extended).is_err());
    }

    #[test]
    fn row_key_binds_the_row() {
        let row1 = CellContext {
            row_key: Some(b"1"),
            ..CTX
        };
        let row2 = CellContext {
            row_key: Some(b"2"),
            ..CTX
        };
        let env = seal(&KEY, 1, &row1, b"x").expect("seal");
        assert!(open(&KEY, &row1, &env).is_ok());
        assert!(open(&KEY, &row2, &env).is_err());
        // A field boundary cannot be shifted between table and column.
        let a = CellContext {
            table: "ab",
            column: "c",
            ..CTX
        };
        let b = CellContext {
            table: "a",
            column: "bc",
            ..CTX
        };
        assert!(open(&KEY, &b, &seal(&KEY, 1, &a, b"x").expect("seal")).is_err());
    }
}
