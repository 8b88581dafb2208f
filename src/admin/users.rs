//! admin::users: administrators of the admin port — bcrypt (cost ≥ 12) and a role, in a 0600
//! TOML file managed by `myveil admin …`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Lowest bcrypt cost accepted for administrators.
pub const MIN_BCRYPT_COST: u32 = 12;
/// bcrypt reads 72 bytes; longer passwords are refused rather than silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;
const MIN_PASSWORD_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// Tokens, reload, backups, rotation.
    Operator,
    /// Read only.
    Auditor,
}

impl AdminRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("admins file {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Write(#[from] crate::secure_file::Error),
    #[error("admin {0} already exists")]
    Exists(String),
    #[error("no admin {0}")]
    NotFound(String),
    #[error(
        "password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes (longer ones are refused, not truncated)"
    )]
    BadPassword,
    #[error("bcrypt cost must be at least {MIN_BCRYPT_COST}")]
    WeakCost,
    #[error("invalid admin name {0:?}")]
    BadName(String),
    #[error("bcrypt: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub name: String,
    pub role: AdminRole,
    bcrypt: String,
    /// TOTP secret (base32) when the admin enrolled a second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    totp: Option<String>,
    /// Tokens issued before this time (unix seconds) are refused: set when the admin is
    /// added or its password changes.
    #[serde(default)]
    pub not_before: u64,
}

impl Admin {
    pub fn totp_secret(&self) -> Option<&str> {
        self.totp.as_deref()
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminsFile {
    #[serde(default, rename = "admin")]
    admins: Vec<Admin>,
}

/// All administrators.
pub struct AdminStore {
    admins: BTreeMap<String, Admin>,
    /// Checked for unknown names, so they cost what a wrong password costs.
    decoy: String,
}

impl AdminStore {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let err = |message: String| Error::File {
            path: path.display().to_string(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        let file: AdminsFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut admins = BTreeMap::new();
        for a in file.admins {
            if admins.insert(a.name.clone(), a).is_some() {
                return Err(err("an admin appears twice".into()));
            }
        }
        // The decoy costs what the dearest stored hash costs, so unknown names take as long
        // as real ones.
        let cost = admins
            .values()
            .filter_map(|a| a.bcrypt.get(4..6).and_then(|c| c.parse::<u32>().ok()))
            .max()
            .unwrap_or(MIN_BCRYPT_COST)
            .clamp(MIN_BCRYPT_COST, 31);
        let decoy = bcrypt::hash(hex::encode(crate::wire::auth::new_salt()), cost)?;
        Ok(Self { admins, decoy })
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let file = AdminsFile {
            admins: self.admins.values().cloned().collect(),
        };
        let text = toml::to_string(&file).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::secure_file::write_private(path, text.as_bytes())?;
        Ok(())
    }

    pub fn admins(&self) -> impl Iterator<Item = &Admin> {
        self.admins.values()
    }

    pub fn add(
        &mut self,
        name: &str,
        role: AdminRole,
        password: &[u8],
        cost: u32,
    ) -> Result<(), Error> {
        if self.admins.contains_key(name) {
            return Err(Error::Exists(name.to_owned()));
        }
        self.set(name, role, password, cost)
    }

    pub fn set_password(&mut self, name: &str, password: &[u8], cost: u32) -> Result<(), Error> {
        let role = self
            .admins
            .get(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?
            .role;
        self.set(name, role, password, cost)
    }

    fn set(
        &mut self,
        name: &str,
        role: AdminRole,
        password: &[u8],
        cost: u32,
    ) -> Result<(), Error> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
        {
            return Err(Error::BadName(name.to_owned()));
        }
        if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
            return Err(Error::BadPassword);
        }
        if cost < MIN_BCRYPT_COST {
            return Err(Error::WeakCost);
        }
        let totp = self.admins.get(name).and_then(|a| a.totp.clone());
        let admin = Admin {
            name: name.to_owned(),
            role,
            bcrypt: bcrypt::hash(password, cost)?,
            totp,
            not_before: crate::tokens::now_secs(),
        };
        self.admins.insert(name.to_owned(), admin);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), Error> {
        self.admins
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// Enrolls (or re-enrolls) a TOTP second factor; returns the new secret.
    pub fn enroll_totp(&mut self, name: &str) -> Result<String, Error> {
        let admin = self
            .admins
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let secret = super::totp::new_secret();
        admin.totp = Some(secret.clone());
        Ok(secret)
    }

    /// Removes an admin's second factor.
    pub fn disable_totp(&mut self, name: &str) -> Result<(), Error> {
        self.admins
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?
            .totp = None;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Admin> {
        self.admins.get(name)
    }

    /// Checks a password (blocking: bcrypt). Unknown names are checked against the decoy.
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<&Admin> {
        let found = self.admins.get(name);
        let hash = found.map_or(self.decoy.as_str(), |a| a.bcrypt.as_str());
        let ok =
            password.len() <= MAX_PASSWORD_BYTES && bcrypt::verify(password, hash).unwrap_or(false);
        found.filter(|_| ok)
    }
}
