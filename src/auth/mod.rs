//! auth: proxy users and their roles — the users file (`myveil user …`), password verifiers
//! and the login decision the frontend asks for during the handshake.
//!
//! A user is stored as bcrypt (for clear-text logins) plus the verifiers the MySQL
//! challenge-response plugins need: SHA1(SHA1(pw)) for mysql_native_password and
//! SHA256(SHA256(pw)) for the caching_sha2_password fast path. Neither verifier lets anyone
//! log in by itself, but both are password-equivalent under a captured handshake, so the file
//! is written 0600.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::wire::auth::{check_native, check_sha2, native_verifier, sha2_verifier};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("users file {path}: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Write(#[from] crate::secure_file::Error),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("invalid user name {0:?}: use 1-80 characters from A-Z a-z 0-9 _ . - @")]
    BadName(String),
    #[error(
        "password must be 8 to 72 bytes (bcrypt uses at most 72 and longer ones are refused, not truncated)"
    )]
    BadPassword,
    #[error("bcrypt: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
}

pub type Result<T> = std::result::Result<T, Error>;

const MAX_USER_NAME_LEN: usize = 80;
const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 72;

/// At most this many bcrypt checks run at once, so a storm of clear-text logins cannot take
/// every core from live sessions.
static BCRYPT_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    name: String,
    role: String,
    bcrypt: String,
    native: String,
    sha2: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<UserRecord>,
}

/// One proxy user. Debug shows the name and role only.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub role: String,
    /// Set when the user logged in with a SQL token (its id hash), not from the users file.
    pub token: Option<[u8; 32]>,
    bcrypt: String,
    native: [u8; 20],
    sha2: [u8; 32],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl User {
    fn new(name: &str, role: &str, password: &[u8], cost: u32) -> Result<Self> {
        check_name(name)?;
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len()) {
            return Err(Error::BadPassword);
        }
        Ok(Self {
            name: name.to_owned(),
            role: role.to_owned(),
            token: None,
            bcrypt: bcrypt::hash(password, cost)?,
            native: native_verifier(password),
            sha2: sha2_verifier(password),
        })
    }

    /// A session user from a SQL token: it has no password of its own.
    pub fn for_token(name: &str, role: &str, id_hash: [u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            role: role.to_owned(),
            token: Some(id_hash),
            bcrypt: String::new(),
            // Random verifiers: no challenge-response proof can match them.
            native: crate::wire::auth::new_salt(),
            sha2: rand::random(),
        }
    }

    /// A user the backend authenticated (`[backend_users]`), with the role its name maps to.
    pub fn for_backend(name: &str, role: &str) -> Self {
        Self {
            name: name.to_owned(),
            role: role.to_owned(),
            token: None,
            bcrypt: String::new(),
            // Random verifiers: myveil itself never accepts a proof for this user.
            native: crate::wire::auth::new_salt(),
            sha2: rand::random(),
        }
    }

    fn from_record(r: UserRecord) -> std::result::Result<Self, String> {
        let decode = |field: &str, hex_str: &str, len: usize| {
            hex::decode(hex_str)
                .ok()
                .filter(|b| b.len() == len)
                .ok_or_else(|| format!("user {}: bad {field} verifier", r.name))
        };
        let native = decode("native", &r.native, 20)?;
        let sha2 = decode("sha2", &r.sha2, 32)?;
        check_name(&r.name).map_err(|e| e.to_string())?;
        let mut user = Self {
            name: r.name,
            role: r.role,
            token: None,
            bcrypt: r.bcrypt,
            native: [0; 20],
            sha2: [0; 32],
        };
        user.native.copy_from_slice(&native);
        user.sha2.copy_from_slice(&sha2);
        Ok(user)
    }

    fn to_record(&self) -> UserRecord {
        UserRecord {
            name: self.name.clone(),
            role: self.role.clone(),
            bcrypt: self.bcrypt.clone(),
            native: hex::encode(self.native),
            sha2: hex::encode(self.sha2),
        }
    }
}

/// Whether a login name is 1-80 characters from A-Z a-z 0-9 _ . - @ (users and SQL tokens).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

/// What a client proved in the handshake.
pub enum Proof<'a> {
    /// mysql_native_password scramble over `salt`.
    Native { salt: &'a [u8], response: &'a [u8] },
    /// caching_sha2_password fast-path scramble over `salt`.
    Sha2 { salt: &'a [u8], response: &'a [u8] },
}

/// All proxy users, loaded from the users file.
pub struct UserStore {
    users: BTreeMap<String, User>,
    /// Checked when the name is unknown, so unknown user and wrong password take the same
    /// path and the same time.
    decoy: User,
}

impl UserStore {
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| Error::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut users = BTreeMap::new();
        for record in file.users {
            let user = User::from_record(record)?;
            if users.contains_key(&user.name) {
                return Err(format!("user {} appears twice", user.name));
            }
            users.insert(user.name.clone(), user);
        }
        Ok(Self {
            users,
            decoy: decoy(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let file = UsersFile {
            users: self.users.values().map(User::to_record).collect(),
        };
        let text = toml::to_string(&file).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::secure_file::write_private(path, text.as_bytes())?;
        Ok(())
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Whether a login name belongs to the users file.
    pub fn contains(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name).is_ok_and(|n| self.users.contains_key(n))
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn add(&mut self, name: &str, role: &str, password: &[u8], cost: u32) -> Result<()> {
        if self.users.contains_key(name) {
            return Err(Error::Exists(name.to_owned()));
        }
        let user = User::new(name, role, password, cost)?;
        self.users.insert(user.name.clone(), user);
        Ok(())
    }

    pub fn set_password(&mut self, name: &str, password: &[u8], cost: u32) -> Result<()> {
        let role = self
            .users
            .get(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?
            .role
            .clone();
        let user = User::new(name, &role, password, cost)?;
        self.users.insert(user.name.clone(), user);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.users
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// Checks a challenge-response proof. Unknown names are checked against the decoy so the
    /// answer and its timing do not tell them apart from a wrong password.
    pub fn verify(&self, name: &[u8], proof: &Proof<'_>) -> Option<&User> {
        let found = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n));
        let user = found.unwrap_or(&self.decoy);
        let ok = match proof {
            Proof::Native { salt, response } => check_native(salt, response, &user.native),
            Proof::Sha2 { salt, response } => check_sha2(salt, response, &user.sha2),
        };
        found.filter(|_| ok)
    }

    /// Checks a clear-text password with bcrypt on a blocking thread (it costs ~250 ms of CPU
    /// at cost 12 and must never run on the async workers).
    pub async fn verify_clear(
        self: Arc<Self>,
        name: Vec<u8>,
        password: Zeroizing<Vec<u8>>,
    ) -> Option<User> {
        let _slot = BCRYPT_SLOTS.acquire().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let found = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| self.users.get(n));
            let user = found.unwrap_or(&self.decoy);
            let ok = password.len() <= MAX_PASSWORD_LEN
                && bcrypt::verify(&password[..], &user.bcrypt).unwrap_or(false);
            found.filter(|_| ok).cloned()
        })
        .await
        .ok()
        .flatten()
    }
}

/// A user nobody can log in as: random verifiers and a bcrypt hash of a random password at the
/// default cost, so checking it costs what checking a real user costs.
fn decoy() -> User {
    static DECOY: LazyLock<User> = LazyLock::new(|| {
        let pw = hex::encode(crate::wire::auth::new_salt());
        let mut u = User::new("decoy", "", pw.as_bytes(), 12).unwrap_or_else(|_| User {
            name: String::new(),
            role: String::new(),
            token: None,
            bcrypt: String::new(),
            native: [0; 20],
            sha2: [0; 32],
        });
        u.native = crate::wire::auth::new_salt();
        u
    });
    DECOY.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::auth::{Plugin, new_salt, scramble};

    fn store() -> UserStore {
        let mut s = UserStore::parse("").expect("empty file");
        s.add("app", "writer", b"correct horse", 4).expect("add");
        s
    }

    #[test]
    fn native_and_sha2_proofs_log_in_only_with_the_password() {
        let s = store();
        let salt = new_salt();
        let good = scramble(Plugin::Native, &salt, b"correct horse");
        let bad = scramble(Plugin::Native, &salt, b"wrong horse!");
        let proof = |r: &[u8]| {
            s.verify(
                b"app",
                &Proof::Native {
                    salt: &salt,
                    response: r,
                },
            )
            .is_some()
        };
        assert!(proof(&good));
        assert!(!proof(&bad));
        assert!(
            s.verify(
                b"ghost",
                &Proof::Native {
                    salt: &salt,
                    response: &good
                }
            )
            .is_none()
        );
        let sha = scramble(Plugin::CachingSha2, &salt, b"correct horse");
        assert_eq!(
            s.verify(
                b"app",
                &Proof::Sha2 {
                    salt: &salt,
                    response: &sha
                }
            )
            .map(|u| u.role.as_str()),
            Some("writer")
        );
    }

    #[tokio::test]
    async fn clear_text_is_checked_with_bcrypt() {
        let s = Arc::new(store());
        let ok = s
            .clone()
            .verify_clear(b"app".to_vec(), Zeroizing::new(b"correct horse".to_vec()))
            .await;
        assert_eq!(ok.map(|u| u.name), Some("app".to_owned()));
        assert!(
            s.clone()
                .verify_clear(b"app".to_vec(), Zeroizing::new(b"nope".to_vec()))
                .await
                .is_none()
        );
        assert!(
            s.verify_clear(b"ghost".to_vec(), Zeroizing::new(b"correct horse".to_vec()))
                .await
                .is_none()
        );
    }

    #[test]
    fn file_round_trip_and_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        store().save(&path).expect("save");
        let loaded = UserStore::load(&path).expect("load");
        assert_eq!(loaded.get("app").map(|u| u.role.as_str()), Some("writer"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("correct horse"));

        let mut s = store();
        assert!(matches!(
            s.add("app", "r", b"another pw", 4),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            s.add("bad name", "r", b"another pw", 4),
            Err(Error::BadName(_))
        ));
        assert!(matches!(
            s.add("x", "r", &[b'a'; 73], 4),
            Err(Error::BadPassword)
        ));
        assert!(matches!(
            s.add("x", "r", b"short", 4),
            Err(Error::BadPassword)
        ));
        assert!(matches!(s.remove("ghost"), Err(Error::NotFound(_))));
        assert!(
            UserStore::parse("[[user]]\nname='a'\nrole='r'\nbcrypt='x'\nnative='00'\nsha2='00'")
                .is_err()
        );
    }
}
