//! secure_file: checks and writes for files that hold secrets (backend passwords, users file,
//! later keys): they must belong to nobody but the owner.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:o}); run chmod 600 on it")]
    TooOpen { path: String, mode: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
}

/// Refuses a secret file that group or others can read or write.
pub fn check_private(path: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.display().to_string(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::TooOpen {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_are_private_and_open_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("secret");
        write_private(&p, b"x").expect("write");
        check_private(&p).expect("0600 passes");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            check_private(&p),
            Err(Error::TooOpen { mode: 0o644, .. })
        ));
        assert!(matches!(
            check_private(dir.path()),
            Err(Error::NotAFile { .. })
        ));
    }
}
