//! backup: encrypted, signed logical backups of the backend's databases, beside the data
//! path (control plane, through `mysql_async`).
//!
//! ```text
//! create:  consistent snapshot ─rows─▶ dump::Dumper (stream records, ≤ 1 MiB buffers)
//!            ─channel─▶ blocking writer: SHA-256, AES-256-GCM chunks ─▶ temp file
//!            manifest + Ed25519 signature + file digest ─▶ fsync, rename (0600), retention
//! verify:  signature ─▶ header/manifest checks ─▶ body digests [─▶ RSA unwrap ─▶ decrypt]
//! restore: signature ─▶ RSA unwrap ─▶ blocking reader: chunks opened in order ─channel─▶
//!            records into a temporary database ─▶ digests checked ─▶ tables renamed into
//!            the target in one RENAME TABLE ─▶ views, routines, triggers
//! ```
//! The file format is `format` (docs/adr/0004-backup-format.md); the plaintext stream inside
//! the chunks is `stream`. `create` and `restore` are async; `verify` and `list` do file I/O
//! only and block (run them on a blocking thread from async code). Every function takes a
//! progress callback so a CLI progress bar and an admin-port job share one implementation.

pub mod dump;
pub mod format;
pub mod keys;
pub mod restore;
pub mod stream;

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use dump::{CreateOptions, Created, create};
pub use format::Manifest;
pub use keys::{SignKey, UnwrapKey, VerifyKey, WrapKey};
pub use restore::{RestoreOptions, Restored, restore};

/// Errors name files, tables, keys and checks — never key bytes or row values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backup file: {0}")]
    Io(String),
    #[error("backup rejected: {0}")]
    Format(String),
    #[error("backup rejected: integrity check failed: {0}")]
    Integrity(String),
    #[error("backup rejected: {0}")]
    Signature(String),
    #[error("backup key: {0}")]
    Key(String),
    #[error("{0}")]
    Crypto(String),
    #[error("database: {context}: {source}")]
    Database {
        context: String,
        source: mysql_async::Error,
    },
    #[error(
        "database {0} is not empty; restore into a new database or pass --force to replace the objects the backup contains"
    )]
    TargetNotEmpty(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn write(e: std::io::Error) -> Self {
        Self::Io(format!("write: {e}"))
    }
    fn read(e: std::io::Error) -> Self {
        Self::Io(format!("read: {e}"))
    }
    fn db(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a long backup operation reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Dump,
    Verify,
    Restore,
    Finish,
}

#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub phase: Phase,
    pub database: &'a str,
    pub table: &'a str,
    /// Rows so far in the current table.
    pub rows: u64,
    /// Bytes so far (plaintext for dumps, file bytes for verify and restore).
    pub bytes: u64,
    /// Total bytes when known (file size for verify and restore).
    pub total_bytes: Option<u64>,
}

/// The progress callback: called often, must be cheap; shared with other threads.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress<'_>) + Send + Sync);

/// A callback that ignores progress.
pub fn no_progress(_: &Progress<'_>) {}

/// Connection options for dumps and restores: `[backup] account`, else the first backend
/// account (like the control connection).
pub fn connect_opts(config: &crate::config::Config) -> Result<mysql_async::Opts> {
    let (name, account) = match &config.backup.account {
        Some(name) => config
            .backend
            .accounts
            .get_key_value(name)
            .ok_or_else(|| Error::Invalid(format!("no backend account {name}")))?,
        None => config
            .backend
            .accounts
            .iter()
            .next()
            .ok_or_else(|| Error::Invalid("no backend account".into()))?,
    };
    let password = config
        .account_password(name)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(config.backend_opts(account, &password))
}

/// File name suffix of backups.
pub const EXTENSION: &str = "mvbk";
const NAME_PREFIX: &str = "myveil-";

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub header: format::Header,
    pub file_sha256: String,
    /// Whether the chunks were decrypted and the plaintext stream checked.
    pub decrypted: bool,
}

fn open_file(path: &Path) -> Result<(BufReader<File>, u64)> {
    let f = File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let len = f
        .metadata()
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
        .len();
    Ok((BufReader::with_capacity(1 << 20, f), len))
}

/// Reads both ends of a backup and checks its signature with the trusted key, then that
/// header and manifest agree. Nothing else in the file is trusted before this passes.
pub fn open_signed(
    r: &mut BufReader<File>,
    len: u64,
    trusted: &VerifyKey,
) -> Result<format::Envelope> {
    let env = format::read_envelope(r, len)?;
    let message = format::signed_message(&env.preamble, &env.manifest_bytes);
    if !trusted.verify(&message, &env.signature) {
        if env.header.signing_key_id != trusted.id {
            return Err(Error::Signature(format!(
                "the header says it was signed by key {}, but the trusted verifying key is {}; the signature does not verify",
                env.header.signing_key_id, trusted.id
            )));
        }
        return Err(Error::Signature(
            "the signature over the header and manifest does not verify (the file was altered)"
                .into(),
        ));
    }
    env.check_consistency()?;
    Ok(env)
}

/// Checks the signature, the header/manifest, the chunk structure, the body and file
/// digests; with the RSA private key also decrypts every chunk and checks the plaintext
/// digest, the record stream and the row counts. Blocking.
pub fn verify(
    path: &Path,
    trusted: &VerifyKey,
    private_key: Option<&UnwrapKey>,
    progress: ProgressFn<'_>,
) -> Result<Verified> {
    let (mut r, len) = open_file(path)?;
    let env = open_signed(&mut r, len, trusted)?;
    let chunks = match private_key {
        Some(k) => Some(restore::chunk_cipher(&env, k)?),
        None => None,
    };
    r.seek(SeekFrom::Start(env.body_start))
        .map_err(Error::read)?;
    let mut checker = restore::StreamCheck::new(&env.manifest);
    format::scan_body(
        &mut r,
        &env,
        chunks.as_ref(),
        &mut |plain| checker.feed(&plain),
        &mut |bytes| {
            progress(&Progress {
                phase: Phase::Verify,
                database: "",
                table: "",
                rows: 0,
                bytes: env.body_start + bytes,
                total_bytes: Some(len),
            })
        },
    )?;
    if chunks.is_some() {
        checker.finish()?;
    }
    Ok(Verified {
        manifest: env.manifest,
        header: env.header,
        file_sha256: hex::encode(env.file_sha256),
        decrypted: chunks.is_some(),
    })
}

/// One backup file found by `list`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Option<Manifest>,
    /// Signature over header and manifest (the body is checked by `verify`); None when no
    /// verifying key was given or the file could not be read.
    pub signature_ok: Option<bool>,
    pub error: Option<String>,
}

fn is_backup_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(NAME_PREFIX) && n.ends_with(&format!(".{EXTENSION}")))
}

/// Backup files in `dir` (by name), oldest first. Blocking.
pub fn backup_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(format!("{}: {e}", dir.display()))),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_backup_name(p))
        .collect();
    // Names carry the UTC creation time, so name order is age order.
    files.sort();
    Ok(files)
}

/// The backups in `dir`, oldest first, with their manifests (read from the file ends).
/// Blocking.
pub fn list(dir: &Path, trusted: Option<&VerifyKey>) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for path in backup_files(dir)? {
        let mut item = Listed {
            bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            path,
            manifest: None,
            signature_ok: None,
            error: None,
        };
        let read =
            open_file(&item.path).and_then(|(mut r, len)| format::read_envelope(&mut r, len));
        match read {
            Ok(env) => {
                item.signature_ok = trusted.map(|k| {
                    k.verify(
                        &format::signed_message(&env.preamble, &env.manifest_bytes),
                        &env.signature,
                    )
                });
                item.manifest = Some(env.manifest);
            }
            Err(e) => item.error = Some(e.to_string()),
        }
        out.push(item);
    }
    Ok(out)
}

/// Deletes the oldest backups in `dir` beyond the newest `keep` (0 keeps all). Only files
/// named like myveil backups are considered. Returns what was removed.
pub fn apply_retention(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    apply_retention_keeping(dir, keep, None)
}

/// Retention that never removes `newest` (the backup just written), even when a clock that
/// went back gave it an older-looking name.
pub fn apply_retention_keeping(
    dir: &Path,
    keep: usize,
    newest: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut files = backup_files(dir)?;
    if let Some(n) = newest
        && let Some(at) = files.iter().position(|f| f == n)
    {
        let n = files.remove(at);
        files.push(n);
    }
    let excess = files.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for path in files.into_iter().take(excess) {
        std::fs::remove_file(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        removed.push(path);
    }
    Ok(removed)
}

/// UTC time as RFC 3339 (`2026-01-02T03:04:05Z`) and as a file-name stamp.
fn utc(unix: u64) -> (String, String) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
    )
}

/// Backtick-quotes an identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400).0, "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599).1, "20251231T235959Z");
    }

    #[test]
    fn retention_keeps_the_newest_backups_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in [
            "myveil-20250101T000000Z-a.mvbk",
            "myveil-20250102T000000Z-b.mvbk",
            "myveil-20250103T000000Z-c.mvbk",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(n), b"x").expect("write");
        }
        let removed = apply_retention(dir.path(), 2).expect("retention");
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("myveil-20250101T000000Z-a.mvbk"));
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(list(dir.path(), None).expect("list").len(), 2);
        // A clock that went back named the new backup as if it were the oldest: kept anyway.
        let just_written = dir.path().join("myveil-20240101T000000Z-z.mvbk");
        std::fs::write(&just_written, b"x").expect("write");
        let removed =
            apply_retention_keeping(dir.path(), 2, Some(&just_written)).expect("retention");
        assert!(just_written.exists(), "the backup just written survives");
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("myveil-20250102T000000Z-b.mvbk"));
    }

    /// An admin-port job spawns these futures on tokio: they must be Send.
    #[test]
    fn create_and_restore_futures_are_send() {
        fn send<T: Send>(_: T) {}
        let opts = || {
            mysql_async::Opts::from(mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1"))
        };
        let create_opts = CreateOptions {
            opts: opts(),
            databases: Vec::new(),
            dir: PathBuf::new(),
            public_key: PathBuf::new(),
            signing_key: PathBuf::new(),
            source_host: String::new(),
            policy: None,
            retention: 0,
        };
        send(create(&create_opts, &no_progress));
        let dir = tempfile::tempdir().expect("tempdir");
        let signing = dir.path().join("s.key");
        std::fs::write(&signing, hex::encode([1u8; 32])).expect("write");
        let restore_opts = RestoreOptions {
            opts: opts(),
            file: PathBuf::new(),
            verify_key: VerifyKey::load(&verify_path(&signing)).expect("key"),
            private_key: PathBuf::new(),
            into: String::new(),
            database: None,
            force: false,
        };
        send(restore(&restore_opts, &no_progress));
    }

    fn verify_path(signing: &Path) -> PathBuf {
        let public = keys::verify_key_path(signing);
        let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        std::fs::write(&public, hex::encode(key.verifying_key().as_bytes())).expect("write");
        public
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a`b"), "`a``b`");
    }
}
