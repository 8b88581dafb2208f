//! crypto::envelope: the cell format for protected values at rest.
//!
//! ```text
//! magic "MV" | version 1 | algorithm 1 (AES-256-GCM) | key id (u32 BE) | nonce (12) | ciphertext | tag (16)
//! ```
//! The AAD binds the whole header, the table, the column, the plaintext type and, where the
//! policy declares one, a row key — so a ciphertext copied to another column, table or row,
//! or relabelled with another key id, fails to open.

use aes_gcm::aead::AeadInPlace;
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

/// AADs up to this length are built on the stack (names and row keys are short).
const STACK_AAD: usize = 512;

impl CellContext<'_> {
    fn aad_len(&self) -> usize {
        HEADER_LEN
            + 12
            + self.table.len()
            + self.column.len()
            + self.plaintext_type.len()
            + 1
            + self.row_key.map_or(0, |k| 4 + k.len())
    }

    fn write_aad(&self, header: &[u8], aad: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            aad[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(header);
        for part in [
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.plaintext_type.as_bytes(),
        ] {
            put(&(part.len() as u32).to_be_bytes());
            put(part);
        }
        match self.row_key {
            Some(k) => {
                put(&[1]);
                put(&(k.len() as u32).to_be_bytes());
                put(k);
            }
            None => put(&[0]),
        }
    }

    /// Runs `f` on the AAD for `header`, built without allocating when it is short.
    fn with_aad<T>(&self, header: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
        let len = self.aad_len();
        if len <= STACK_AAD {
            let mut buf = [0u8; STACK_AAD];
            self.write_aad(header, &mut buf[..len]);
            f(&buf[..len])
        } else {
            let mut buf = vec![0u8; len];
            self.write_aad(header, &mut buf);
            f(&buf)
        }
    }
}

/// An AES-256-GCM cipher: the key schedule and GHASH key, built once per key and kept with
/// it (crypto::keyring) rather than for every cell.
pub fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
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
    seal_with(&cipher(key), key_id, ctx, plaintext)
}

/// `seal` with a cipher built beforehand.
pub fn seal_with(
    cipher: &Aes256Gcm,
    key_id: u32,
    ctx: &CellContext<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let head = header(key_id);
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&head);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = ctx
        .with_aad(&head, |aad| {
            cipher.encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                aad,
                &mut out[HEADER_LEN + NONCE_LEN..],
            )
        })
        .map_err(|_| Error::Seal)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decrypts an envelope with `key`; the caller picked the key by `key_id(envelope)`.
pub fn open(key: &[u8; 32], ctx: &CellContext<'_>, envelope: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(envelope.len().saturating_sub(OVERHEAD));
    open_into(&cipher(key), ctx, envelope, &mut out)?;
    Ok(out)
}

/// The length of the plaintext in an envelope of `len` bytes.
pub fn plaintext_len(len: usize) -> usize {
    len.saturating_sub(OVERHEAD)
}

/// Decrypts an envelope in place at the end of `out` (the outgoing row): the ciphertext is
/// copied there and decrypted where it lies. On failure `out` is as it was.
pub fn open_into(
    cipher: &Aes256Gcm,
    ctx: &CellContext<'_>,
    envelope: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let id = key_id(envelope)?;
    let start = out.len();
    let body = &envelope[HEADER_LEN + NONCE_LEN..envelope.len() - TAG_LEN];
    let tag = &envelope[envelope.len() - TAG_LEN..];
    let nonce = &envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN];
    out.extend_from_slice(body);
    let opened = ctx.with_aad(&envelope[..HEADER_LEN], |aad| {
        cipher.decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut out[start..],
            aes_gcm::Tag::from_slice(tag),
        )
    });
    if opened.is_err() {
        // Security: nothing of a cell that failed its tag check is kept.
        out[start..].fill(0);
        out.truncate(start);
        return Err(Error::Open { key_id: id });
    }
    Ok(())
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

    /// Envelopes at rest stay readable: the AAD is byte for byte the documented layout.
    #[test]
    fn the_aad_layout_is_stable() {
        use aes_gcm::aead::{Aead, Payload};
        let ctx = CellContext {
            row_key: Some(b"42"),
            ..CTX
        };
        let head = header(5);
        let mut aad = head.to_vec();
        for part in [&b"users"[..], b"email", b"varchar"] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&[1, 0, 0, 0, 2, b'4', b'2']);
        let nonce = [3u8; NONCE_LEN];
        let ct = cipher(&KEY)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: b"x@y",
                    aad: &aad,
                },
            )
            .expect("encrypt");
        let env = [&head[..], &nonce, &ct].concat();
        assert_eq!(open(&KEY, &ctx, &env).expect("open"), b"x@y");
    }

    #[test]
    fn long_row_keys_and_reused_ciphers_open_the_same() {
        let long = vec![b'k'; 2 * STACK_AAD];
        let ctx = CellContext {
            row_key: Some(&long),
            ..CTX
        };
        let c = cipher(&KEY);
        let env = seal_with(&c, 4, &ctx, b"value").expect("seal");
        assert_eq!(open(&KEY, &ctx, &env).expect("open"), b"value");
        let mut out = b"row so far|".to_vec();
        open_into(
            &c,
            &CTX,
            &seal(&KEY, 4, &CTX, b"v2").expect("seal"),
            &mut out,
        )
        .expect("open");
        assert_eq!(out, b"row so far|v2");
        // A failed open leaves the row as it was.
        assert!(open_into(&c, &CTX, &env, &mut out).is_err());
        assert_eq!(out, b"row so far|v2");
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
