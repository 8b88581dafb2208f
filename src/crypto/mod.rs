//! crypto: envelopes for protected cells, the keyring under `keys/`, blind indexes and
//! masks. No I/O apart from the keyring files; everything else is pure and unit-tested.

pub mod blind;
pub mod cells;
pub mod envelope;
pub mod keyring;
pub mod mask;

/// Errors name key ids and files, never key bytes or values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    #[error("encryption failed")]
    Seal,
    #[error(
        "value does not open with key {key_id} (tampered, moved from another column or row, or wrong key)"
    )]
    Open { key_id: u32 },
    #[error("no {purpose} key for {scope}; run `myveil keygen`")]
    NoKey {
        purpose: &'static str,
        scope: String,
    },
    #[error("unknown key id {key_id}")]
    UnknownKey { key_id: u32 },
    #[error("key {key_id} has reached its usage limit; rotate it")]
    Exhausted { key_id: u32 },
    #[error("{0} already exists; refusing to overwrite keys")]
    Exists(String),
    #[error("keys: {0}")]
    Io(String),
    #[error("keys: {0}")]
    Corrupt(String),
    #[error(transparent)]
    File(#[from] crate::secure_file::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
