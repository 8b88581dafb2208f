//! crypto::keyring: the master key (KEK) and the keyring of data keys under `keys/`.
//!
//! `master.key` holds the 32-byte KEK in hex. `keyring.toml` lists keys with an id, a purpose
//! (column data, blind index, JWT signing), a scope (`table.column` or `*`) and a status
//! (primary / active / decrypt-only); each key is wrapped with AES-256-GCM under a key derived
//! from the KEK, with its metadata as AAD, and the whole file carries an HMAC under another
//! KEK-derived key, so a removed, reordered, relabelled or re-statused entry is detected.
//! Both files must be 0600. Key bytes are zeroized on drop and have no Debug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Error, Result};
use crate::secure_file;

pub const MASTER_KEY_FILE: &str = "master.key";
/// A master key being rotated in (see `Keyring::rotate_kek`).
const NEW_MASTER_KEY_FILE: &str = "master.key.new";
pub const KEYRING_FILE: &str = "keyring.toml";
/// Seal counts per key, kept across restarts (not secret, but written 0600 like the rest).
pub const USAGE_FILE: &str = "usage.toml";
/// Held while `usage.toml` is read and written again.
const USAGE_LOCK_FILE: &str = "usage.toml.lock";

/// Seals per key before myveil logs that the key should be rotated.
pub const USES_WARN: u64 = 1 << 28;
/// Seals per key after which myveil refuses to seal with it (random 96-bit nonces stay far
/// below the 2^32 bound NIST gives for one key).
pub const USES_LIMIT: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    Column,
    BlindIndex,
    /// Keys the consistent-hash mask, so pseudonyms cannot be computed without it.
    Mask,
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Seals new values (one per purpose and scope).
    Primary,
    /// Opens values; can be promoted.
    Active,
    /// Opens old values only, during re-encryption; no longer searched.
    DecryptOnly,
    /// Opens nothing and matches nothing: kept in the file for the record (`keys retire`,
    /// once no cell uses it).
    Retired,
}

/// What is known about a key apart from its bytes (safe to show and log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    pub id: u32,
    pub purpose: Purpose,
    pub scope: String,
    pub status: Status,
    /// Unix seconds.
    pub created: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    #[serde(flatten)]
    info: KeyInfo,
    wrapped: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    mac: String,
    #[serde(default, rename = "key")]
    keys: Vec<Record>,
}

/// A 256-bit key. No Debug, Clone or Serialize; zeroized on drop, with its AES-GCM cipher
/// (key schedule and GHASH key, built on first use and wiped on drop too).
pub struct Key(
    Zeroizing<[u8; 32]>,
    std::sync::OnceLock<aes_gcm::Aes256Gcm>,
    std::sync::OnceLock<hmac::Hmac<sha2::Sha256>>,
);

impl Key {
    fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(
            bytes,
            std::sync::OnceLock::new(),
            std::sync::OnceLock::new(),
        )
    }

    fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        Self::new(k)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key's AES-256-GCM cipher, built once.
    pub fn cipher(&self) -> &aes_gcm::Aes256Gcm {
        self.1.get_or_init(|| super::envelope::cipher(&self.0))
    }

    /// The key's HMAC-SHA256 state for blind indexes, keyed once. It lives as long as the
    /// key itself, like the cipher's key schedule.
    pub fn mac(&self) -> &hmac::Hmac<sha2::Sha256> {
        self.2.get_or_init(|| super::blind::mac(&self.0))
    }
}

struct Entry {
    info: KeyInfo,
    key: Key,
    uses: AtomicU64,
    /// The count `usage.toml` had when this process last read or wrote it: what it sealed
    /// since is added to the file's count, so the seals of the proxy and of a CLI job
    /// (`migrate apply`, `keys reencrypt`) on the same keys directory add up.
    saved: AtomicU64,
}

/// The master key (KEK) and the data keys it unwraps.
pub struct Keyring {
    dir: PathBuf,
    kek: Key,
    entries: BTreeMap<u32, Entry>,
}

fn derive(kek: &Key, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, kek.bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(label, out.as_mut());
    out
}

fn wrap_aad(info: &KeyInfo) -> Vec<u8> {
    format!(
        "myveil-key|{}|{:?}|{}|{}",
        info.id, info.purpose, info.scope, info.created
    )
    .into_bytes()
}

fn mac_input(records: &[Record]) -> Vec<u8> {
    let mut m = b"myveil-keyring|1".to_vec();
    for r in records {
        let i = &r.info;
        m.extend_from_slice(
            format!(
                "\n{}|{:?}|{}|{:?}|{}|{}",
                i.id, i.purpose, i.scope, i.status, i.created, r.wrapped
            )
            .as_bytes(),
        );
    }
    m
}

fn mac(kek: &Key, records: &[Record]) -> Result<String> {
    let key = derive(kek, b"myveil keyring mac v1");
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).map_err(|_| Error::Seal)?;
    m.update(&mac_input(records));
    Ok(hex::encode(m.finalize().into_bytes()))
}

fn read_kek(master: &Path) -> Result<Key> {
    let hex_kek = Zeroizing::new(
        std::fs::read_to_string(master)
            .map_err(|e| Error::Io(format!("{}: {e}", master.display())))?,
    );
    let mut kek = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_kek.trim(), kek.as_mut())
        .map_err(|_| Error::Corrupt(format!("{} is not a 32-byte hex key", master.display())))?;
    Ok(Key::new(kek))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Keyring {
    /// A new keyring with a fresh KEK, one primary key per purpose and scope given, written
    /// to `dir` (0600). Refuses to overwrite an existing master key.
    pub fn generate(dir: &Path, keys: &[(Purpose, &str)]) -> Result<Self> {
        let master = dir.join(MASTER_KEY_FILE);
        if master.exists() {
            return Err(Error::Exists(master.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        let mut ring = Self {
            dir: dir.to_owned(),
            kek: Key::random(),
            entries: BTreeMap::new(),
        };
        for (purpose, scope) in keys {
            ring.add(*purpose, scope, Status::Primary);
        }
        secure_file::write_private(
            &master,
            format!("{}\n", hex::encode(ring.kek.bytes())).as_bytes(),
        )?;
        ring.save()?;
        Ok(ring)
    }

    /// Loads `master.key` and `keyring.toml` from `dir`, refusing open permissions, a bad MAC
    /// or a key that does not unwrap.
    pub fn load(dir: &Path) -> Result<Self> {
        match Self::load_with(dir, &dir.join(MASTER_KEY_FILE)) {
            // A master-key rotation stopped after writing the keyring: finish it.
            Err(Error::Corrupt(e)) if dir.join(NEW_MASTER_KEY_FILE).exists() => {
                let ring = Self::load_with(dir, &dir.join(NEW_MASTER_KEY_FILE))
                    .map_err(|_| Error::Corrupt(e))?;
                std::fs::rename(dir.join(NEW_MASTER_KEY_FILE), dir.join(MASTER_KEY_FILE))
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
                tracing::warn!(dir = %dir.display(), "finished an interrupted master key rotation");
                Ok(ring)
            }
            other => other,
        }
    }

    fn load_with(dir: &Path, master: &Path) -> Result<Self> {
        let file = dir.join(KEYRING_FILE);
        secure_file::check_private(master)?;
        secure_file::check_private(&file)?;
        let kek = read_kek(master)?;
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::Io(format!("{}: {e}", file.display())))?;
        let parsed: KeyringFile = toml::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", file.display())))?;
        if parsed.version != 1 {
            return Err(Error::Corrupt(format!(
                "{}: unknown version {}",
                file.display(),
                parsed.version
            )));
        }
        let expected = mac(&kek, &parsed.keys)?;
        let given = hex::decode(&parsed.mac).unwrap_or_default();
        let expected_bytes = hex::decode(expected).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_slice(),
            expected_bytes.as_slice(),
        )) {
            return Err(Error::Corrupt(format!(
                "{}: integrity check failed (wrong master key or edited file)",
                file.display()
            )));
        }
        let wrap_key = derive(&kek, b"myveil keyring wrap v1");
        let cipher = Aes256Gcm::new(wrap_key.as_ref().into());
        let mut entries = BTreeMap::new();
        for r in parsed.keys {
            let raw = B64
                .decode(&r.wrapped)
                .map_err(|_| Error::Corrupt(format!("key {}: bad encoding", r.info.id)))?;
            if raw.len() != 12 + 32 + 16 {
                return Err(Error::Corrupt(format!("key {}: bad length", r.info.id)));
            }
            let plain = Zeroizing::new(
                cipher
                    .decrypt(
                        Nonce::from_slice(&raw[..12]),
                        Payload {
                            msg: &raw[12..],
                            aad: &wrap_aad(&r.info),
                        },
                    )
                    .map_err(|_| Error::Corrupt(format!("key {} does not unwrap", r.info.id)))?,
            );
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&plain);
            if entries.contains_key(&r.info.id) {
                return Err(Error::Corrupt(format!("key {} appears twice", r.info.id)));
            }
            entries.insert(
                r.info.id,
                Entry {
                    info: r.info,
                    key: Key::new(key),
                    uses: AtomicU64::new(0),
                    saved: AtomicU64::new(0),
                },
            );
        }
        let ring = Self {
            dir: dir.to_owned(),
            kek,
            entries,
        };
        ring.load_usage();
        Ok(ring)
    }

    /// Restores seal counts saved by `save_usage` (a missing or unreadable file counts from 0).
    fn load_usage(&self) {
        for (id, n) in self.usage_file() {
            if let Some(e) = self.entries.get(&id) {
                e.uses.store(n, Ordering::Relaxed);
                e.saved.store(n, Ordering::Relaxed);
            }
        }
    }

    /// The counts in `usage.toml` (none when it is missing or unreadable).
    fn usage_file(&self) -> BTreeMap<u32, u64> {
        let Ok(text) = std::fs::read_to_string(self.dir.join(USAGE_FILE)) else {
            return BTreeMap::new();
        };
        let Ok(table) = text.parse::<toml::Table>() else {
            return BTreeMap::new();
        };
        table
            .into_iter()
            .filter_map(|(id, n)| {
                Some((
                    id.parse::<u32>().ok()?,
                    u64::try_from(n.as_integer()?).ok()?,
                ))
            })
            .collect()
    }

    /// Writes the seal count of every key, so the usage budget survives restarts: the
    /// file's count plus what this process sealed since it last read or wrote it (processes
    /// sharing a keys directory, a proxy and a CLI job, add up; this one then counts from
    /// the sum). Instances on other machines keep their own files: with N of them, rotate
    /// at 1/N of the budget.
    pub fn save_usage(&self) -> Result<()> {
        // One process at a time reads, adds and writes (a proxy and a CLI job may save at
        // once); the lock goes with the file handle.
        let path = self.dir.join(USAGE_LOCK_FILE);
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let lock = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?
        };
        lock.lock().map_err(io)?;
        let file = self.usage_file();
        let mut table = toml::Table::new();
        for (id, e) in &self.entries {
            let now = e.uses.load(Ordering::Relaxed);
            let saved = e.saved.load(Ordering::Relaxed);
            let on_file = file.get(id).copied().unwrap_or(0);
            let n = on_file.saturating_add(now.saturating_sub(saved)).max(now);
            if n > now {
                e.uses.fetch_add(n - now, Ordering::Relaxed);
            }
            e.saved.store(n, Ordering::Relaxed);
            table.insert(
                id.to_string(),
                toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            );
        }
        secure_file::write_private(&self.dir.join(USAGE_FILE), table.to_string().as_bytes())?;
        Ok(())
    }

    /// Writes `keyring.toml` (0600, atomically).
    pub fn save(&self) -> Result<()> {
        let wrap_key = derive(&self.kek, b"myveil keyring wrap v1");
        let cipher = Aes256Gcm::new(wrap_key.as_ref().into());
        let mut records = Vec::new();
        for e in self.entries.values() {
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            let ct = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: e.key.bytes(),
                        aad: &wrap_aad(&e.info),
                    },
                )
                .map_err(|_| Error::Seal)?;
            let mut raw = nonce.to_vec();
            raw.extend_from_slice(&ct);
            records.push(Record {
                info: e.info.clone(),
                wrapped: B64.encode(raw),
            });
        }
        let file = KeyringFile {
            version: 1,
            mac: mac(&self.kek, &records)?,
            keys: records,
        };
        let text = toml::to_string(&file).map_err(|e| Error::Corrupt(e.to_string()))?;
        secure_file::write_private(&self.dir.join(KEYRING_FILE), text.as_bytes())?;
        Ok(())
    }

    /// Adds a fresh key; a new primary demotes the previous primary of its purpose and scope
    /// to active. Returns the new id.
    pub fn add(&mut self, purpose: Purpose, scope: &str, status: Status) -> u32 {
        let id = self.entries.keys().next_back().map_or(1, |last| last + 1);
        if status == Status::Primary {
            for e in self.entries.values_mut() {
                if e.info.purpose == purpose
                    && e.info.scope == scope
                    && e.info.status == Status::Primary
                {
                    e.info.status = Status::Active;
                }
            }
        }
        let info = KeyInfo {
            id,
            purpose,
            scope: scope.to_owned(),
            status,
            created: now_secs(),
        };
        self.entries.insert(
            id,
            Entry {
                info,
                key: Key::random(),
                uses: AtomicU64::new(0),
                saved: AtomicU64::new(0),
            },
        );
        id
    }

    pub fn infos(&self) -> impl Iterator<Item = &KeyInfo> {
        self.entries.values().map(|e| &e.info)
    }

    /// A key by id, for opening (any status but retired).
    pub fn key(&self, id: u32) -> Option<&Key> {
        self.entries
            .get(&id)
            .filter(|e| e.info.status != Status::Retired)
            .map(|e| &e.key)
    }

    /// What is known about key `id`.
    pub fn info(&self, id: u32) -> Option<&KeyInfo> {
        self.entries.get(&id).map(|e| &e.info)
    }

    /// Which keyring this is, the same across KEK rotations and in every instance that
    /// loads it (16 hex digits): an HMAC of a fixed label under its oldest data key, which
    /// no rotation removes. It tells nothing of the key. Instances report it with their
    /// `generation` (`myveil.instances`) so that `keys retire` compares only instances of
    /// this keyring.
    pub fn identity(&self) -> String {
        let Some(first) = self.entries.values().next() else {
            return "0".repeat(16);
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(first.key.bytes())
            .expect("HMAC takes any key length");
        mac.update(b"myveil keyring identity v1");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// What the keyring holds now (16 hex digits): a digest of every key's id, purpose,
    /// scope and status. Equal generations seal under the same primaries and search the
    /// same blind-index keys.
    pub fn generation(&self) -> String {
        use sha2::Digest;
        let mut h = Sha256::new();
        for e in self.entries.values() {
            let i = &e.info;
            h.update(format!(
                "{}|{:?}|{}|{:?}\n",
                i.id, i.purpose, i.scope, i.status
            ));
        }
        hex::encode(&h.finalize()[..8])
    }

    /// Sets a key's status (not to primary: `add` makes primaries). Returns false for an
    /// unknown id.
    pub fn set_status(&mut self, id: u32, status: Status) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) if status != Status::Primary => {
                e.info.status = status;
                true
            }
            _ => false,
        }
    }

    /// A new master key: every data key is wrapped again under it, no data key changes.
    /// The old pair is kept as `master.key.prev` and `keyring.toml.prev` (0600) until the
    /// next rotation, so a crash between the two writes can be undone by hand.
    pub fn rotate_kek(&mut self) -> Result<()> {
        let master = self.dir.join(MASTER_KEY_FILE);
        let file = self.dir.join(KEYRING_FILE);
        let old_master = Zeroizing::new(
            std::fs::read(&master).map_err(|e| Error::Io(format!("{}: {e}", master.display())))?,
        );
        let old_file =
            std::fs::read(&file).map_err(|e| Error::Io(format!("{}: {e}", file.display())))?;
        secure_file::write_private(
            &self.dir.join(format!("{MASTER_KEY_FILE}.prev")),
            &old_master,
        )?;
        secure_file::write_private(&self.dir.join(format!("{KEYRING_FILE}.prev")), &old_file)?;
        // The new master key is on disk before anything is wrapped under it: a crash after
        // the keyring is written leaves `master.key.new`, which `load` finishes with.
        let new = Key::random();
        let new_path = self.dir.join(NEW_MASTER_KEY_FILE);
        secure_file::write_private(
            &new_path,
            format!("{}\n", hex::encode(new.bytes())).as_bytes(),
        )?;
        let old = std::mem::replace(&mut self.kek, new);
        if let Err(e) = self.save() {
            self.kek = old;
            let _ = std::fs::remove_file(&new_path);
            return Err(e);
        }
        std::fs::rename(&new_path, &master)
            .map_err(|e| Error::Io(format!("{}: {e}", master.display())))?;
        Ok(())
    }

    /// The primary key of a purpose for a scope (`table.column`), else the `*` scope's.
    pub fn primary(&self, purpose: Purpose, scope: &str) -> Option<(u32, &Key)> {
        let find = |s: &str| {
            self.entries
                .values()
                .find(|e| {
                    e.info.purpose == purpose
                        && e.info.status == Status::Primary
                        && e.info.scope == s
                })
                .map(|e| (e.info.id, &e.key))
        };
        find(scope).or_else(|| find("*"))
    }

    /// Counts one seal with key `id`; refuses past the usage limit.
    pub fn note_use(&self, id: u32) -> Result<()> {
        let entry = self
            .entries
            .get(&id)
            .ok_or(Error::UnknownKey { key_id: id })?;
        let n = entry.uses.fetch_add(1, Ordering::Relaxed) + 1;
        if n == USES_WARN {
            tracing::warn!(
                key_id = id,
                uses = n,
                "key nears its usage budget: rotate it"
            );
        }
        if n > USES_LIMIT {
            return Err(Error::Exhausted { key_id: id });
        }
        Ok(())
    }

    /// Keys of a purpose that still open or match values for a scope (or `*`): the primary
    /// first, then the active ones; decrypt-only keys are left out.
    pub fn in_use(&self, purpose: Purpose, scope: &str) -> Vec<(u32, &Key)> {
        let mut keys: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| {
                e.info.purpose == purpose
                    && !matches!(e.info.status, Status::DecryptOnly | Status::Retired)
                    && (e.info.scope == scope || e.info.scope == "*")
            })
            .collect();
        keys.sort_by_key(|e| {
            (
                e.info.status != Status::Primary,
                e.info.scope == "*",
                std::cmp::Reverse(e.info.id),
            )
        });
        keys.into_iter().map(|e| (e.info.id, &e.key)).collect()
    }

    /// Seals made with key `id` so far.
    pub fn uses(&self, id: u32) -> u64 {
        self.entries
            .get(&id)
            .map_or(0, |e| e.uses.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    pub(crate) fn set_uses(&self, id: u32, n: u64) {
        if let Some(e) = self.entries.get(&id) {
            e.uses.store(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ring(dir: &Path) -> Keyring {
        Keyring::generate(
            dir,
            &[
                (Purpose::Column, "*"),
                (Purpose::Column, "users.email"),
                (Purpose::BlindIndex, "*"),
            ],
        )
        .expect("generate")
    }

    #[test]
    fn generate_then_load_gives_the_same_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ring(dir.path());
        let b = Keyring::load(dir.path()).expect("load");
        assert_eq!(a.infos().collect::<Vec<_>>(), b.infos().collect::<Vec<_>>());
        for info in a.infos() {
            assert_eq!(
                a.key(info.id).map(Key::bytes),
                b.key(info.id).map(Key::bytes)
            );
        }
        for f in [MASTER_KEY_FILE, KEYRING_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let text = std::fs::read_to_string(dir.path().join(KEYRING_FILE)).expect("read");
        for info in a.infos() {
            let raw = hex::encode(a.key(info.id).expect("key").bytes());
            assert!(!text.contains(&raw), "key bytes never appear unwrapped");
        }
        assert!(matches!(
            Keyring::generate(dir.path(), &[]),
            Err(Error::Exists(_))
        ));
    }

    #[test]
    fn primary_lookup_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = ring(dir.path());
        let (email, _) = r.primary(Purpose::Column, "users.email").expect("scoped");
        let (star, _) = r.primary(Purpose::Column, "orders.note").expect("fallback");
        assert_ne!(email, star);
        let new = r.add(Purpose::Column, "users.email", Status::Primary);
        assert_eq!(
            r.primary(Purpose::Column, "users.email").map(|(id, _)| id),
            Some(new)
        );
        assert!(r.key(email).is_some(), "the old key still opens");
        assert_eq!(
            r.infos().find(|i| i.id == email).map(|i| i.status),
            Some(Status::Active)
        );
        r.save().expect("save");
        assert_eq!(Keyring::load(dir.path()).expect("load").infos().count(), 4);
    }

    #[test]
    fn tampered_missing_or_open_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        ring(dir.path());
        let file = dir.path().join(KEYRING_FILE);
        let text = std::fs::read_to_string(&file).expect("read");

        let edited = text.replacen("status = \"primary\"", "status = \"decrypt-only\"", 1);
        secure_file::write_private(&file, edited.as_bytes()).expect("write");
        assert!(
            matches!(Keyring::load(dir.path()), Err(Error::Corrupt(_))),
            "edited status"
        );

        let cut = text[..text.rfind("[[key]]").expect("a key")].to_owned();
        secure_file::write_private(&file, cut.as_bytes()).expect("write");
        assert!(
            matches!(Keyring::load(dir.path()), Err(Error::Corrupt(_))),
            "removed key"
        );

        secure_file::write_private(&file, text.as_bytes()).expect("write");
        Keyring::load(dir.path()).expect("restored file loads");
        let master = dir.path().join(MASTER_KEY_FILE);
        let good_master = std::fs::read(&master).expect("read");
        secure_file::write_private(&master, format!("{}\n", hex::encode([1u8; 32])).as_bytes())
            .expect("write");
        assert!(
            matches!(Keyring::load(dir.path()), Err(Error::Corrupt(_))),
            "wrong master key"
        );
        secure_file::write_private(&master, b"not hex").expect("write");
        assert!(
            matches!(Keyring::load(dir.path()), Err(Error::Corrupt(_))),
            "corrupt master key"
        );
        secure_file::write_private(&master, &good_master).expect("write");
        std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(
            matches!(Keyring::load(dir.path()), Err(Error::File(_))),
            "group-readable"
        );
        std::fs::remove_file(&master).expect("rm");
        assert!(Keyring::load(dir.path()).is_err(), "missing");
    }

    #[test]
    fn usage_counts_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = ring(dir.path());
        let (id, _) = r.primary(Purpose::Column, "*").expect("key");
        for _ in 0..5 {
            r.note_use(id).expect("use");
        }
        r.save_usage().expect("save");
        let again = Keyring::load(dir.path()).expect("load");
        assert_eq!(again.uses(id), 5);
    }

    #[test]
    fn usage_counts_of_processes_sharing_the_keys_add_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = ring(dir.path());
        let (id, _) = proxy.primary(Purpose::Column, "*").expect("key");
        let cli = Keyring::load(dir.path()).expect("load");
        for _ in 0..3 {
            proxy.note_use(id).expect("use");
        }
        for _ in 0..7 {
            cli.note_use(id).expect("use");
        }
        cli.save_usage().expect("save");
        proxy.save_usage().expect("save");
        assert_eq!(proxy.uses(id), 10, "the proxy counts the job's seals too");
        proxy.note_use(id).expect("use");
        proxy.save_usage().expect("save");
        assert_eq!(Keyring::load(dir.path()).expect("load").uses(id), 11);
    }

    #[test]
    fn usage_budget_refuses_past_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = ring(dir.path());
        let (id, _) = r.primary(Purpose::Column, "*").expect("key");
        r.note_use(id).expect("first use");
        r.set_uses(id, USES_LIMIT - 1);
        r.note_use(id).expect("last allowed use");
        assert!(matches!(r.note_use(id), Err(Error::Exhausted { .. })));
        assert!(matches!(
            r.note_use(999),
            Err(Error::UnknownKey { key_id: 999 })
        ));
    }

    #[test]
    fn identity_stays_across_rotations_and_generation_follows_the_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Keyring::generate(dir.path(), &[(Purpose::Column, "*")]).expect("gen");
        let (id, gen0) = (r.identity(), r.generation());
        assert_eq!(id.len(), 16);
        let other = tempfile::tempdir().expect("tempdir");
        let o = Keyring::generate(other.path(), &[(Purpose::Column, "*")]).expect("gen");
        assert_ne!(o.identity(), id, "another keyring");
        r.rotate_kek().expect("rotate kek");
        let loaded = Keyring::load(dir.path()).expect("load");
        assert_eq!(
            (loaded.identity(), loaded.generation()),
            (id.clone(), gen0.clone())
        );
        let old = r.primary(Purpose::Column, "*").expect("key").0;
        r.add(Purpose::Column, "*", Status::Primary);
        let gen1 = r.generation();
        assert_ne!(gen1, gen0, "a new primary");
        assert_eq!(r.identity(), id);
        r.set_status(old, Status::Retired);
        assert_ne!(r.generation(), gen1, "a status");
    }

    #[test]
    fn a_master_key_rotation_rewraps_and_survives_a_crash_half_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Keyring::generate(dir.path(), &[(Purpose::Column, "*")]).expect("gen");
        let before = *r.primary(Purpose::Column, "*").expect("key").1.bytes();
        let old_master = std::fs::read(dir.path().join(MASTER_KEY_FILE)).expect("master");
        r.rotate_kek().expect("rotate");
        let new_master = std::fs::read(dir.path().join(MASTER_KEY_FILE)).expect("master");
        assert_ne!(old_master, new_master);
        let loaded = Keyring::load(dir.path()).expect("load");
        assert_eq!(
            *loaded.primary(Purpose::Column, "*").expect("key").1.bytes(),
            before,
            "data keys unchanged"
        );
        // Stopped after the keyring was written, before the new master key was moved in.
        std::fs::write(dir.path().join(MASTER_KEY_FILE), &old_master).expect("old back");
        crate::secure_file::write_private(&dir.path().join(NEW_MASTER_KEY_FILE), &new_master)
            .expect("new");
        let finished = Keyring::load(dir.path()).expect("finishes the rotation");
        assert_eq!(
            *finished
                .primary(Purpose::Column, "*")
                .expect("key")
                .1
                .bytes(),
            before
        );
        assert_eq!(
            std::fs::read(dir.path().join(MASTER_KEY_FILE)).expect("master"),
            new_master
        );
        assert!(!dir.path().join(NEW_MASTER_KEY_FILE).exists());
        // Retired keys open nothing and are not searched.
        let mut r = finished;
        let id = r.primary(Purpose::Column, "*").expect("key").0;
        r.add(Purpose::Column, "*", Status::Primary);
        assert!(r.set_status(id, Status::Retired));
        assert!(r.key(id).is_none());
        assert!(
            !r.set_status(id, Status::Primary),
            "primaries come from add"
        );
    }
}
