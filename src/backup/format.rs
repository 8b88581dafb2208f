//! backup::format: the backup file — preamble and header, encrypted chunks, signed manifest,
//! file digest — and the chunk cipher. Pure apart from the `Read`/`Write` it is given; the
//! layout is documented in docs/adr/0004-backup-format.md.
//!
//! ```text
//! "MYVEILBK" | u16 format | u32 header_len | header (JSON)          ← the preamble
//! { u32 ct_len | AES-256-GCM(chunk) } …  u32 0                      ← the body
//! manifest (JSON) | u32 manifest_len | Ed25519 signature (64)
//! | SHA-256 of every byte before it (32) | "MVBKEND1"               ← the trailer
//! ```
//! Integers are big-endian. Chunk `i` is sealed with nonce `i (u64) ‖ 0 0 0 ‖ last` and AAD
//! `"myveil-backup-v1" ‖ backup id ‖ i ‖ last`, so reordering, truncation and splicing a
//! chunk from another backup all fail to open. The signature covers the preamble (with the
//! wrapped data key) and the manifest (with the SHA-256 of the body bytes).

use std::io::{Read, Write};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::Error;

pub const MAGIC: &[u8; 8] = b"MYVEILBK";
pub const END_MAGIC: &[u8; 8] = b"MVBKEND1";
pub const FORMAT_VERSION: u16 = 1;
/// Plaintext bytes per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest chunk a reader accepts (bounds its allocation whatever the header says).
pub const MAX_CHUNK_BYTES: usize = 16 << 20;
pub const MAX_HEADER_BYTES: usize = 64 << 10;
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;
pub const TAG_BYTES: usize = 16;
pub const SIGNATURE_BYTES: usize = 64;
/// manifest_len + signature + file digest + end magic.
pub const FOOTER_BYTES: usize = 4 + SIGNATURE_BYTES + 32 + 8;
pub const CIPHER: &str = "AES-256-GCM";
pub const KEY_WRAP: &str = "RSA-OAEP-SHA-256";
const AAD_LABEL: &[u8; 16] = b"myveil-backup-v1";
const SIGNATURE_LABEL: &[u8] = b"myveil-backup-signature-v1\0";

/// Written before the body; signed with the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: u16,
    /// 16 random bytes, hex; part of every chunk's AAD.
    pub backup_id: String,
    /// UTC, RFC 3339.
    pub created_at: String,
    pub chunk_bytes: u32,
    pub cipher: String,
    pub key_wrap: String,
    /// First 8 bytes (hex) of SHA-256 of the RSA public key (SubjectPublicKeyInfo DER).
    pub rsa_key_id: String,
    /// The data key under RSA-OAEP-SHA-256, base64.
    pub wrapped_key: String,
    /// First 8 bytes (hex) of SHA-256 of the Ed25519 verifying key.
    pub signing_key_id: String,
}

/// Written after the body; signed with the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u16,
    pub backup_id: String,
    pub created_at: String,
    pub source_host: String,
    pub server_version: String,
    pub databases: Vec<DatabaseEntry>,
    /// Key ids named by the envelopes in protected columns: the target myveil needs them.
    pub key_ids: Vec<u32>,
    pub plaintext_bytes: u64,
    pub plaintext_sha256: String,
    pub chunks: u64,
    /// Bytes of the body (chunk frames and the terminator).
    pub body_bytes: u64,
    pub body_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    pub name: String,
    pub charset: String,
    pub collation: String,
    pub tables: Vec<TableEntry>,
    pub views: Vec<String>,
    pub triggers: Vec<String>,
    pub routines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    pub name: String,
    pub rows: u64,
}

/// The bytes the Ed25519 signature covers.
pub fn signed_message(preamble: &[u8], manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_LABEL.len() + 16 + preamble.len() + manifest.len());
    m.extend_from_slice(SIGNATURE_LABEL);
    m.extend_from_slice(&(preamble.len() as u64).to_be_bytes());
    m.extend_from_slice(preamble);
    m.extend_from_slice(&(manifest.len() as u64).to_be_bytes());
    m.extend_from_slice(manifest);
    m
}

/// Magic, format version, header length and header.
pub fn preamble(header: &Header) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(header).map_err(|e| Error::Format(format!("header: {e}")))?;
    let mut p = Vec::with_capacity(14 + json.len());
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    p.extend_from_slice(&(json.len() as u32).to_be_bytes());
    p.extend_from_slice(&json);
    Ok(p)
}

/// A fresh 256-bit data key for one backup. No Debug or Clone; zeroized on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        Self(k)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Seals and opens the chunks of one backup.
pub struct ChunkCipher {
    cipher: Aes256Gcm,
    backup_id: [u8; 16],
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn aad(backup_id: &[u8; 16], index: u64, last: bool) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..16].copy_from_slice(AAD_LABEL);
    a[16..32].copy_from_slice(backup_id);
    a[32..40].copy_from_slice(&index.to_be_bytes());
    a[40] = u8::from(last);
    a
}

impl ChunkCipher {
    pub fn new(key: &DataKey, backup_id: [u8; 16]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.bytes().into()),
            backup_id,
        }
    }

    // Security: nonces are the chunk counter, not random. That is safe because every backup
    // has its own fresh data key, so a (key, nonce) pair is never used twice.
    pub fn seal(&self, index: u64, last: bool, plain: &[u8]) -> Result<Vec<u8>, Error> {
        self.cipher
            .encrypt(
                Nonce::from_slice(&nonce(index, last)),
                Payload {
                    msg: plain,
                    aad: &aad(&self.backup_id, index, last),
                },
            )
            .map_err(|_| Error::Crypto("chunk encryption failed".into()))
    }

    pub fn open(&self, index: u64, last: bool, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce(index, last)),
                Payload {
                    msg: sealed,
                    aad: &aad(&self.backup_id, index, last),
                },
            )
            .map_err(|_| {
                Error::Integrity(format!(
                    "chunk {index} does not decrypt (tampered, reordered, truncated or from another backup)"
                ))
            })
    }
}

/// Parses a 32-hex-digit backup id.
pub fn parse_backup_id(hex_id: &str) -> Result<[u8; 16], Error> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id)
        .map_err(|_| Error::Format("header: backup_id is not 16 hex bytes".into()))?;
    Ok(id)
}

/// Hashes everything written through it.
struct Hashing<W: Write> {
    inner: W,
    file: Sha256,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// Writes one backup file: preamble at `new`, chunks through `push`, trailer at `finish`.
/// Holds one chunk back so the last one can carry the last flag.
pub struct FileWriter<W: Write> {
    out: Hashing<W>,
    chunks: ChunkCipher,
    chunk_bytes: usize,
    pending: Vec<u8>,
    index: u64,
    plain: Sha256,
    plain_bytes: u64,
    body: Sha256,
    body_bytes: u64,
    preamble: Vec<u8>,
}

/// What the body came to, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySummary {
    pub plaintext_bytes: u64,
    pub plaintext_sha256: String,
    pub chunks: u64,
    pub body_bytes: u64,
    pub body_sha256: String,
}

impl<W: Write> FileWriter<W> {
    pub fn new(
        inner: W,
        header: &Header,
        key: &DataKey,
        backup_id: [u8; 16],
    ) -> Result<Self, Error> {
        let preamble = preamble(header)?;
        let mut out = Hashing {
            inner,
            file: Sha256::new(),
        };
        out.put(&preamble).map_err(Error::write)?;
        let chunk_bytes = header.chunk_bytes as usize;
        if chunk_bytes == 0 || chunk_bytes > MAX_CHUNK_BYTES {
            return Err(Error::Format("chunk size out of range".into()));
        }
        Ok(Self {
            out,
            chunks: ChunkCipher::new(key, backup_id),
            chunk_bytes,
            pending: Vec::with_capacity(chunk_bytes),
            index: 0,
            plain: Sha256::new(),
            plain_bytes: 0,
            body: Sha256::new(),
            body_bytes: 0,
            preamble,
        })
    }

    pub fn preamble(&self) -> &[u8] {
        &self.preamble
    }

    /// Appends plaintext; full chunks are sealed and written, but always one is held back.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        self.plain.update(bytes);
        self.plain_bytes += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.pending.len() == self.chunk_bytes {
                let chunk = std::mem::take(&mut self.pending);
                self.seal_and_write(&chunk, false)?;
                self.pending = chunk;
                self.pending.clear();
            }
            let room = self.chunk_bytes - self.pending.len();
            let take = room.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    fn seal_and_write(&mut self, plain: &[u8], last: bool) -> Result<(), Error> {
        let sealed = self.chunks.seal(self.index, last, plain)?;
        self.index += 1;
        let len = (sealed.len() as u32).to_be_bytes();
        self.body.update(len);
        self.body.update(&sealed);
        self.body_bytes += 4 + sealed.len() as u64;
        self.out.put(&len).map_err(Error::write)?;
        self.out.put(&sealed).map_err(Error::write)
    }

    /// Seals the last chunk (possibly empty) and writes the body terminator.
    pub fn finish_body(&mut self) -> Result<BodySummary, Error> {
        let chunk = std::mem::take(&mut self.pending);
        self.seal_and_write(&chunk, true)?;
        let end = 0u32.to_be_bytes();
        self.body.update(end);
        self.body_bytes += 4;
        self.out.put(&end).map_err(Error::write)?;
        Ok(BodySummary {
            plaintext_bytes: self.plain_bytes,
            plaintext_sha256: hex::encode(self.plain.clone().finalize()),
            chunks: self.index,
            body_bytes: self.body_bytes,
            body_sha256: hex::encode(self.body.clone().finalize()),
        })
    }

    /// Writes the manifest, its signature and the file digest; returns the writer.
    pub fn finish(
        mut self,
        manifest: &[u8],
        signature: &[u8; SIGNATURE_BYTES],
    ) -> Result<(W, [u8; 32]), Error> {
        // Never write a file no reader would accept.
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(Error::Format(format!(
                "the manifest is {} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                manifest.len()
            )));
        }
        self.out.put(manifest).map_err(Error::write)?;
        self.out
            .put(&(manifest.len() as u32).to_be_bytes())
            .map_err(Error::write)?;
        self.out.put(signature).map_err(Error::write)?;
        let digest: [u8; 32] = self.out.file.clone().finalize().into();
        self.out.inner.write_all(&digest).map_err(Error::write)?;
        self.out.inner.write_all(END_MAGIC).map_err(Error::write)?;
        Ok((self.out.inner, digest))
    }
}

/// The parts of a backup file read from its two ends (no body pass).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub preamble: Vec<u8>,
    pub header: Header,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub signature: [u8; SIGNATURE_BYTES],
    pub file_sha256: [u8; 32],
    /// Offset of the first chunk frame and of the manifest.
    pub body_start: u64,
    pub body_end: u64,
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), Error> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Format(format!("file ends inside the {what} (truncated)"))
        } else {
            Error::read(e)
        }
    })
}

/// Reads the preamble (from the start) and the trailer (from the end) of a file of
/// `file_len` bytes.
pub fn read_envelope<R: Read + std::io::Seek>(r: &mut R, file_len: u64) -> Result<Envelope, Error> {
    use std::io::SeekFrom;
    let mut fixed = [0u8; 14];
    r.seek(SeekFrom::Start(0)).map_err(Error::read)?;
    read_exact(r, &mut fixed, "preamble")?;
    if &fixed[..8] != MAGIC {
        return Err(Error::Format("not a myveil backup (bad magic)".into()));
    }
    let version = u16::from_be_bytes([fixed[8], fixed[9]]);
    if version != FORMAT_VERSION {
        return Err(Error::Format(format!(
            "backup format {version} is not supported (this myveil reads {FORMAT_VERSION})"
        )));
    }
    let header_len = u32::from_be_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]) as usize;
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::Format("header too large".into()));
    }
    let mut preamble = fixed.to_vec();
    preamble.resize(14 + header_len, 0);
    read_exact(r, &mut preamble[14..], "header")?;
    let header: Header = serde_json::from_slice(&preamble[14..])
        .map_err(|e| Error::Format(format!("header is not valid: {e}")))?;
    let body_start = preamble.len() as u64;
    let min_len = body_start + 4 + FOOTER_BYTES as u64;
    if file_len < min_len {
        return Err(Error::Format(
            "file too short for a backup (truncated)".into(),
        ));
    }
    let mut footer = [0u8; FOOTER_BYTES];
    r.seek(SeekFrom::Start(file_len - FOOTER_BYTES as u64))
        .map_err(Error::read)?;
    read_exact(r, &mut footer, "trailer")?;
    if &footer[FOOTER_BYTES - 8..] != END_MAGIC {
        return Err(Error::Format(
            "no end marker: the file is truncated or was not completely written".into(),
        ));
    }
    let manifest_len = u32::from_be_bytes([footer[0], footer[1], footer[2], footer[3]]) as u64;
    if manifest_len as usize > MAX_MANIFEST_BYTES || manifest_len + min_len > file_len {
        return Err(Error::Format("manifest length out of range".into()));
    }
    let body_end = file_len - FOOTER_BYTES as u64 - manifest_len;
    let mut manifest_bytes = vec![0u8; manifest_len as usize];
    r.seek(SeekFrom::Start(body_end)).map_err(Error::read)?;
    read_exact(r, &mut manifest_bytes, "manifest")?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Error::Format(format!("manifest is not valid: {e}")))?;
    let mut signature = [0u8; SIGNATURE_BYTES];
    signature.copy_from_slice(&footer[4..4 + SIGNATURE_BYTES]);
    let mut file_sha256 = [0u8; 32];
    file_sha256.copy_from_slice(&footer[4 + SIGNATURE_BYTES..4 + SIGNATURE_BYTES + 32]);
    Ok(Envelope {
        preamble,
        header,
        manifest_bytes,
        manifest,
        signature,
        file_sha256,
        body_start,
        body_end,
    })
}

impl Envelope {
    /// Fields of the header and manifest that must agree (checked after the signature).
    pub fn check_consistency(&self) -> Result<(), Error> {
        let h = &self.header;
        let m = &self.manifest;
        if h.format != FORMAT_VERSION || m.format != FORMAT_VERSION {
            return Err(Error::Format("format version mismatch".into()));
        }
        if h.backup_id != m.backup_id {
            return Err(Error::Integrity(
                "header and manifest name different backups".into(),
            ));
        }
        if h.cipher != CIPHER || h.key_wrap != KEY_WRAP {
            return Err(Error::Format(format!(
                "unsupported algorithms {} / {}",
                h.cipher, h.key_wrap
            )));
        }
        if h.chunk_bytes == 0 || h.chunk_bytes as usize > MAX_CHUNK_BYTES {
            return Err(Error::Format("chunk size out of range".into()));
        }
        if m.body_bytes != self.body_end - self.body_start {
            return Err(Error::Integrity(format!(
                "body is {} bytes, the manifest says {} (truncated or spliced)",
                self.body_end - self.body_start,
                m.body_bytes
            )));
        }
        parse_backup_id(&h.backup_id).map(|_| ())
    }
}

/// Walks the body of a file positioned at `body_start`: checks the frame structure, the body
/// and file digests against the signed manifest and trailer and, given a cipher, opens every
/// chunk in order and hands the plaintext to `sink`, then checks the plaintext digest.
pub fn scan_body<R: Read>(
    r: &mut R,
    env: &Envelope,
    chunks: Option<&ChunkCipher>,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<(), Error>,
    progress: &mut dyn FnMut(u64),
) -> Result<BodySummary, Error> {
    let max_frame = env.header.chunk_bytes as usize + TAG_BYTES;
    let mut file = Sha256::new();
    file.update(&env.preamble);
    let mut body = Sha256::new();
    let mut plain = Sha256::new();
    let mut plain_bytes = 0u64;
    let mut body_bytes = 0u64;
    let mut index = 0u64;
    let limit = env.body_end - env.body_start;
    let mut len_buf = [0u8; 4];
    let mut read_len = |r: &mut R, body_bytes: &mut u64| -> Result<usize, Error> {
        if *body_bytes + 4 > limit {
            return Err(Error::Integrity(
                "the chunk frames run into the manifest (truncated or spliced body)".into(),
            ));
        }
        read_exact(r, &mut len_buf, "body")?;
        *body_bytes += 4;
        Ok(u32::from_be_bytes(len_buf) as usize)
    };
    let mut len = read_len(r, &mut body_bytes)?;
    body.update((len as u32).to_be_bytes());
    file.update((len as u32).to_be_bytes());
    let mut frame = Vec::with_capacity(max_frame);
    while len != 0 {
        if len < TAG_BYTES || len > max_frame {
            return Err(Error::Integrity(format!(
                "chunk {index} has an impossible length {len}"
            )));
        }
        if body_bytes + len as u64 > limit {
            return Err(Error::Integrity(format!(
                "chunk {index} runs into the manifest (truncated or spliced body)"
            )));
        }
        frame.resize(len, 0);
        read_exact(r, &mut frame, "body")?;
        body_bytes += len as u64;
        body.update(&frame);
        file.update(&frame);
        let next = read_len(r, &mut body_bytes)?;
        body.update((next as u32).to_be_bytes());
        file.update((next as u32).to_be_bytes());
        if let Some(c) = chunks {
            let opened = c.open(index, next == 0, &frame)?;
            plain.update(&opened);
            plain_bytes += opened.len() as u64;
            sink(opened)?;
        }
        progress(body_bytes);
        index += 1;
        len = next;
    }
    if body_bytes != limit {
        return Err(Error::Integrity(
            "bytes between the body and the manifest (spliced file)".into(),
        ));
    }
    let m = &env.manifest;
    let body_sha = hex::encode(body.finalize());
    if body_sha != m.body_sha256 || index != m.chunks {
        return Err(Error::Integrity(
            "the encrypted body does not match the signed manifest (chunks altered, reordered, removed or added)".into(),
        ));
    }
    file.update(&env.manifest_bytes);
    file.update((env.manifest_bytes.len() as u32).to_be_bytes());
    file.update(env.signature);
    let file_sha: [u8; 32] = file.finalize().into();
    if file_sha != env.file_sha256 {
        return Err(Error::Integrity(
            "the file digest in the trailer does not match the file".into(),
        ));
    }
    let plaintext_sha256 = if chunks.is_some() {
        let p = hex::encode(plain.finalize());
        if p != m.plaintext_sha256 || plain_bytes != m.plaintext_bytes {
            return Err(Error::Integrity(
                "the decrypted stream does not match the manifest's plaintext digest".into(),
            ));
        }
        p
    } else {
        m.plaintext_sha256.clone()
    };
    Ok(BodySummary {
        plaintext_bytes: if chunks.is_some() {
            plain_bytes
        } else {
            m.plaintext_bytes
        },
        plaintext_sha256,
        chunks: index,
        body_bytes,
        body_sha256: body_sha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(id: u8) -> (DataKey, ChunkCipher) {
        let key = DataKey::random();
        let c = ChunkCipher::new(&key, [id; 16]);
        (key, c)
    }

    #[test]
    fn chunk_round_trip_and_binding() {
        let (key, c) = cipher(1);
        let sealed = c.seal(3, false, b"hello").expect("seal");
        assert_eq!(sealed.len(), 5 + TAG_BYTES);
        assert_eq!(c.open(3, false, &sealed).expect("open"), b"hello");
        // Another index (reordering), the last flag (truncation) or another backup id
        // (splicing) must not open.
        assert!(c.open(4, false, &sealed).is_err());
        assert!(c.open(3, true, &sealed).is_err());
        let other = ChunkCipher::new(&key, [2; 16]);
        assert!(other.open(3, false, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(c.open(3, false, &flipped).is_err());
        let (_, wrong_key) = cipher(1);
        assert!(wrong_key.open(3, false, &sealed).is_err());
    }

    #[test]
    fn nonce_and_aad_layout() {
        assert_eq!(nonce(0x0102, true), [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1]);
        let a = aad(&[9; 16], 1, false);
        assert_eq!(&a[..16], AAD_LABEL);
        assert_eq!(&a[16..32], &[9; 16]);
        assert_eq!(&a[32..40], &1u64.to_be_bytes());
        assert_eq!(a[40], 0);
    }

    fn header() -> Header {
        Header {
            format: FORMAT_VERSION,
            backup_id: hex::encode([7u8; 16]),
            created_at: "2026-01-01T00:00:00Z".into(),
            chunk_bytes: 8,
            cipher: CIPHER.into(),
            key_wrap: KEY_WRAP.into(),
            rsa_key_id: "00".into(),
            wrapped_key: String::new(),
            signing_key_id: "00".into(),
        }
    }

    fn manifest(s: &BodySummary) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            backup_id: hex::encode([7u8; 16]),
            created_at: "2026-01-01T00:00:00Z".into(),
            source_host: "h".into(),
            server_version: "v".into(),
            databases: Vec::new(),
            key_ids: Vec::new(),
            plaintext_bytes: s.plaintext_bytes,
            plaintext_sha256: s.plaintext_sha256.clone(),
            chunks: s.chunks,
            body_bytes: s.body_bytes,
            body_sha256: s.body_sha256.clone(),
        }
    }

    /// A whole file in memory (signature is a dummy: the signature is checked elsewhere).
    fn file(key: &DataKey, plain: &[u8]) -> Vec<u8> {
        let mut w = FileWriter::new(Vec::new(), &header(), key, [7; 16]).expect("writer");
        w.push(&plain[..plain.len() / 2]).expect("push");
        w.push(&plain[plain.len() / 2..]).expect("push");
        let s = w.finish_body().expect("body");
        let m = serde_json::to_vec(&manifest(&s)).expect("json");
        w.finish(&m, &[0; SIGNATURE_BYTES]).expect("finish").0
    }

    fn scan(bytes: &[u8], key: Option<&DataKey>) -> Result<Vec<u8>, Error> {
        let mut cur = std::io::Cursor::new(bytes);
        let env = read_envelope(&mut cur, bytes.len() as u64)?;
        env.check_consistency()?;
        cur.set_position(env.body_start);
        let c = key.map(|k| ChunkCipher::new(k, [7; 16]));
        let mut out = Vec::new();
        scan_body(
            &mut cur,
            &env,
            c.as_ref(),
            &mut |p| {
                out.extend_from_slice(&p);
                Ok(())
            },
            &mut |_| {},
        )?;
        Ok(out)
    }

    #[test]
    fn file_round_trip_with_exact_multiple_and_empty_bodies() {
        let key = DataKey::random();
        for plain in [&b"0123456789abcdefXYZ"[..], b"01234567", b""] {
            let f = file(&key, plain);
            assert_eq!(scan(&f, None).expect("verify"), b"");
            assert_eq!(scan(&f, Some(&key)).expect("decrypt"), plain);
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let key = DataKey::random();
        let f = file(&key, b"0123456789abcdefXYZ");
        for i in 0..f.len() {
            let mut t = f.clone();
            t[i] ^= 0x40;
            assert!(scan(&t, Some(&key)).is_err(), "flip at byte {i} passed");
        }
    }

    #[test]
    fn truncation_and_reordering_are_refused() {
        let key = DataKey::random();
        let f = file(&key, b"0123456789abcdefXYZ");
        for cut in [1, 8, 50, f.len() / 2, f.len() - 1] {
            assert!(scan(&f[..f.len() - cut], None).is_err(), "cut {cut}");
        }
        // Swap chunks 0 and 1 (each frame is 4 + 8 + 16 bytes) and fix the digests the way
        // an attacker without the signing key could: the chunk cipher still refuses them.
        let start = preamble(&header()).expect("preamble").len();
        let frame = 4 + 8 + TAG_BYTES;
        let mut t = f.clone();
        let (a, b) = (start, start + frame);
        let first = f[a..b].to_vec();
        t[a..b].copy_from_slice(&f[b..b + frame]);
        t[b..b + frame].copy_from_slice(&first);
        assert!(scan(&t, None).is_err());
        let err = match scan_body_unchecked(&t, &key) {
            Err(e) => e.to_string(),
            Ok(()) => String::new(),
        };
        assert!(err.contains("chunk 0 does not decrypt"), "{err}");
    }

    /// Opens the chunks in order without any digest check (what the chunk format alone
    /// guarantees).
    fn scan_body_unchecked(bytes: &[u8], key: &DataKey) -> Result<(), Error> {
        let mut pos = preamble(&header())?.len();
        let c = ChunkCipher::new(key, [7; 16]);
        let mut index = 0;
        let len_at = |p: usize| {
            u32::from_be_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize
        };
        let mut len = len_at(pos);
        while len != 0 {
            let frame = &bytes[pos + 4..pos + 4 + len];
            pos += 4 + len;
            let next = len_at(pos);
            c.open(index, next == 0, frame)?;
            index += 1;
            len = next;
        }
        Ok(())
    }
}
