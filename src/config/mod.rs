//! config: the TOML configuration, environment overrides (`MYVEIL_SECTION__KEY=value`) and
//! validation. Everything else receives a validated `Config`; defaults live here only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::wire::auth::Plugin;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment override {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("backend account {account}: {message}")]
    Credentials { account: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    pub tls: Option<Tls>,
    pub backend: Backend,
    pub roles: BTreeMap<String, Role>,
    pub users: Users,
    /// Backend users: names outside the users file that log in with their own backend
    /// credentials and get a role by name. Absent: off.
    pub backend_users: Option<BackendUsers>,
    /// Column protection: where the policy and the keys are. Absent: nothing is protected.
    pub protection: Option<Protection>,
    /// The HTTP admin port. Absent: not started.
    pub admin: Option<Admin>,
    /// Encrypted backups (`myveil backup …`).
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub log: Log,
    /// Directory relative paths in this file are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[backend_users]`: a user not in the users file is authenticated by the backend itself
/// (their own password, the backend's own auth plugin) and gets the role of the first
/// mapping that matches its name. A name no mapping matches is denied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendUsers {
    #[serde(default)]
    pub map: Vec<RoleMapping>,
    /// Most backend connections open for backend users, all together.
    pub max_backend_connections: Option<usize>,
}

/// One mapping: `user` is a name, or a pattern with `*` (any run of characters) and `?`
/// (one character).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    pub user: String,
    pub role: String,
}

impl BackendUsers {
    /// The role of a backend user: an exact name first, then the first pattern that matches.
    pub fn role_for(&self, name: &str) -> Option<&str> {
        self.map
            .iter()
            .find(|m| m.user == name)
            .or_else(|| self.map.iter().find(|m| glob(&m.user, name)))
            .map(|m| m.role.as_str())
    }
}

/// `*` and `?` wildcard match over characters.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub address: SocketAddr,
    pub max_connections: usize,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub drain_timeout_secs: u64,
    /// Largest command a client may send (reassembled across 16 MiB packets).
    pub max_packet_bytes: usize,
    /// Plugin named in the greeting: mysql_native_password or caching_sha2_password.
    pub auth_plugin: String,
    /// Lets mysql_clear_password work without TLS for clients on a loopback address.
    pub allow_cleartext_on_loopback: bool,
    /// Failed logins per minute from one client address (IPv6: one /64) before it is blocked.
    pub auth_failures_per_minute_ip: u32,
    /// Failed logins per minute for one user name, from anywhere, before it is blocked.
    pub auth_failures_per_minute_user: u32,
    /// Offers the compressed protocol (zlib, and zstd to clients that ask for it).
    pub compression: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 3307)),
            max_connections: 1024,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 28_800,
            drain_timeout_secs: 30,
            max_packet_bytes: 64 << 20,
            auth_plugin: Plugin::Native.name().to_owned(),
            allow_cleartext_on_loopback: false,
            auth_failures_per_minute_ip: 30,
            auth_failures_per_minute_user: 10,
            compression: true,
        }
    }
}

impl Listen {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
    pub fn plugin(&self) -> Plugin {
        Plugin::from_name(self.auth_plugin.as_bytes()).unwrap_or(Plugin::Native)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients that do not upgrade to TLS.
    #[serde(default)]
    pub require: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: String,
    /// `pinned`: a client session keeps one backend connection for its life.
    /// `multiplexed`: it holds one only while it needs one (ADR 0009).
    #[serde(default)]
    pub mode: BackendMode,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout_secs: u64,
    /// Most clients waiting at once for a backend connection of a full account.
    #[serde(default = "default_wait_queue")]
    pub wait_queue: usize,
    /// How long a client waits for one before it gets "Too many connections" (1040).
    #[serde(default = "default_wait_timeout")]
    pub wait_timeout_ms: u64,
    /// CA bundle for TLS toward the backend; TLS is off when absent.
    pub tls_ca: Option<PathBuf>,
    /// Name checked against the backend certificate (defaults to the address's host).
    pub tls_server_name: Option<String>,
    pub accounts: BTreeMap<String, Account>,
}

/// How client sessions use backend connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    #[default]
    Pinned,
    Multiplexed,
}

fn default_connect_timeout() -> u64 {
    5
}
fn default_pool_max_idle() -> usize {
    64
}
fn default_pool_idle_timeout() -> u64 {
    60
}
fn default_wait_queue() -> usize {
    1024
}
fn default_wait_timeout() -> u64 {
    5000
}

impl Backend {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_idle_timeout_secs)
    }
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
    pub fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
    }
}

/// A backend MySQL account. Its password comes from a file (0600, under keys/) or from an
/// environment variable — never from the command line or the config file itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Most backend connections open for the account, idle in the pool or not (absent: no
    /// limit but the backend's).
    pub max_backend_connections: Option<usize>,
}

/// A backend password, zeroized on drop; its Debug never shows it.
#[derive(Default)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub backend_account: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    /// Directory of policy TOML files.
    pub policy_dir: PathBuf,
    /// Directory with master.key and keyring.toml (`myveil keygen`).
    pub keys_dir: PathBuf,
    /// Create the keys at startup when keys_dir has none. For development only: production
    /// keys are created once with `myveil keygen` and backed up.
    #[serde(default)]
    pub generate_missing_keys: bool,
    /// Longest statement the guard analyzes (bytes); longer statements that can reach
    /// protected data are refused. Bounds the memory and time one statement can take.
    #[serde(default = "default_max_analyzed_bytes")]
    pub max_analyzed_bytes: usize,
}

fn default_max_analyzed_bytes() -> usize {
    crate::guard::DEFAULT_MAX_ANALYZED_BYTES
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub address: SocketAddr,
    /// Administrators (bcrypt), managed with `myveil admin …`.
    pub users_file: PathBuf,
    pub token_ttl_secs: u64,
    pub issuer: String,
    pub audience: String,
    pub logins_per_minute_ip: u32,
    pub logins_per_minute_user: u32,
    /// Requests per minute one admin token may make (logins are limited separately).
    pub api_requests_per_minute: u32,
    /// Schema on the backend holding SQL tokens and revocations, shared by every instance.
    pub store_schema: String,
    /// How long a token lookup is trusted before the store is asked again: the bound on how
    /// long another instance may still accept a token after it was revoked.
    pub cache_ttl_secs: u64,
    /// Longest lifetime an operator may give a SQL token.
    pub sql_token_max_ttl_secs: u64,
    /// Serve HTTPS with this certificate chain and key (PEM); plain HTTP when absent.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 8307)),
            users_file: PathBuf::from("admins.toml"),
            token_ttl_secs: 900,
            issuer: "myveil".to_owned(),
            audience: "myveil-admin".to_owned(),
            logins_per_minute_ip: 10,
            logins_per_minute_user: 5,
            api_requests_per_minute: 600,
            store_schema: "myveil".to_owned(),
            cache_ttl_secs: 5,
            sql_token_max_ttl_secs: 90 * 24 * 3600,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    /// Databases `myveil backup create` dumps.
    pub databases: Vec<String>,
    /// Where backups are written and listed.
    pub dir: PathBuf,
    /// Keep the newest N backups in `dir` after each new one; 0 keeps all.
    pub retention: usize,
    /// RSA public key (≥ 3072-bit, PEM) that wraps each backup's data key. Its private key
    /// belongs off the proxy host.
    pub public_key: PathBuf,
    /// Ed25519 signing key (0600); its verifying key is written beside it as `.pub`.
    pub signing_key: PathBuf,
    /// Verifying key `verify` and `restore` trust; defaults to the `.pub` of signing_key.
    pub verify_key: Option<PathBuf>,
    /// Backend account used for dumps and restores; defaults to the first account.
    pub account: Option<String>,
}

impl Default for Backup {
    fn default() -> Self {
        Self {
            databases: Vec::new(),
            dir: PathBuf::from("backups"),
            retention: 0,
            public_key: PathBuf::from("keys/backup_rsa_public.pem"),
            signing_key: PathBuf::from("keys/backup_signing.key"),
            verify_key: None,
            account: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    pub file: PathBuf,
    #[serde(default = "default_bcrypt_cost")]
    pub bcrypt_cost: u32,
}

fn default_bcrypt_cost() -> u32 {
    12
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter, e.g. "info" or "myveil=debug".
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

impl Config {
    /// Reads the file, applies `MYVEIL_*` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &env, path, base_dir)
    }

    pub fn from_toml(
        text: &str,
        env: &[(String, String)],
        path: &Path,
        base_dir: PathBuf,
    ) -> Result<Self> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_owned(),
            message,
        };
        let mut value: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        for (name, raw) in env {
            apply_override(&mut value, name, raw)?;
        }
        let mut config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        config.base_dir = base_dir;
        config.validate()?;
        Ok(config)
    }

    /// mysql_async options for a control-plane connection (schema reads, token store,
    /// backups) to the backend as `account`.
    pub fn backend_opts(&self, account: &Account, password: &Password) -> mysql_async::Opts {
        let (host, port) = self
            .backend
            .address
            .rsplit_once(':')
            .unwrap_or((self.backend.address.as_str(), "3306"));
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(host.trim_matches(['[', ']']).to_owned())
            .tcp_port(port.parse().unwrap_or(3306))
            .user(Some(account.user.clone()))
            .pass(Some(
                String::from_utf8_lossy(password.expose()).into_owned(),
            ))
            .prefer_socket(false)
            .into()
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Settings that are valid but likely a mistake, one line each (logged at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.backend.mode == BackendMode::Multiplexed {
            // Between statements a multiplexed session's connection waits idle in the
            // pool: past pool_max_idle it is closed, and a statement pays a new login.
            for (name, a) in &self.backend.accounts {
                if let Some(max) = a.max_backend_connections
                    && max > self.backend.pool_max_idle
                {
                    out.push(format!(
                        "backend.pool_max_idle ({}) is below backend.accounts.{name}.max_backend_connections ({max}): \
                         in multiplexed mode sessions share idle connections between statements, \
                         and those past pool_max_idle are closed and logged in again for the next one",
                        self.backend.pool_max_idle
                    ));
                }
            }
        }
        out
    }

    fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(m));
        if Plugin::from_name(self.listen.auth_plugin.as_bytes()).is_none_or(|p| p == Plugin::Clear)
        {
            return invalid(format!(
                "listen.auth_plugin must be mysql_native_password or caching_sha2_password, not {:?}",
                self.listen.auth_plugin
            ));
        }
        if self.listen.max_connections == 0 {
            return invalid("listen.max_connections must be at least 1".into());
        }
        if self.listen.max_packet_bytes < 1024 {
            return invalid("listen.max_packet_bytes must be at least 1024".into());
        }
        if self.roles.is_empty() {
            return invalid("at least one [roles.NAME] is needed".into());
        }
        let zero = self
            .backend
            .accounts
            .iter()
            .find(|(_, a)| a.max_backend_connections == Some(0))
            .map(|(n, _)| format!("backend.accounts.{n}"))
            .or_else(|| {
                self.backend_users
                    .as_ref()
                    .filter(|b| b.max_backend_connections == Some(0))
                    .map(|_| "backend_users".to_owned())
            });
        if let Some(at) = zero {
            return invalid(format!("{at}.max_backend_connections must be at least 1"));
        }
        for (name, role) in &self.roles {
            if !self.backend.accounts.contains_key(&role.backend_account) {
                return invalid(format!(
                    "role {name} names backend account {:?}, which is not under [backend.accounts]",
                    role.backend_account
                ));
            }
        }
        if let Some(b) = &self.backend_users {
            for m in &b.map {
                if !self.roles.contains_key(&m.role) {
                    return invalid(format!(
                        "backend_users.map: user {:?} maps to role {:?}, which is not under [roles]",
                        m.user, m.role
                    ));
                }
                if m.user.is_empty() {
                    return invalid("backend_users.map: an empty user name matches nobody".into());
                }
            }
        }
        for (name, account) in &self.backend.accounts {
            if account.password_file.is_some() && account.password_env.is_some() {
                return invalid(format!(
                    "backend account {name}: set password_file or password_env, not both"
                ));
            }
        }
        if self.admin.is_some() && self.protection.is_none() {
            return invalid("[admin] signs tokens with the JWT key from [protection] keys_dir; configure [protection]".into());
        }
        if self
            .admin
            .as_ref()
            .is_some_and(|a| a.token_ttl_secs == 0 || a.token_ttl_secs > 86_400)
        {
            return invalid("admin.token_ttl_secs must be between 1 and 86400".into());
        }
        if let Some(account) = &self.backup.account
            && !self.backend.accounts.contains_key(account)
        {
            return invalid(format!(
                "backup.account names {account:?}, which is not under [backend.accounts]"
            ));
        }
        if !(4..=31).contains(&self.users.bcrypt_cost) {
            return invalid("users.bcrypt_cost must be between 4 and 31".into());
        }
        Ok(())
    }

    /// Reads the password of a backend account. No source configured means an empty password.
    pub fn account_password(&self, name: &str) -> Result<Password> {
        let cred_err = |message: String| Error::Credentials {
            account: name.to_owned(),
            message,
        };
        let account = self
            .backend
            .accounts
            .get(name)
            .ok_or_else(|| cred_err("no such account".into()))?;
        if let Some(var) = &account.password_env {
            let v = std::env::var(var)
                .map_err(|_| cred_err(format!("environment variable {var} is not set")))?;
            return Ok(Password(Zeroizing::new(v.into_bytes())));
        }
        if let Some(file) = &account.password_file {
            let path = self.resolve(file);
            crate::secure_file::check_private(&path).map_err(|e| cred_err(e.to_string()))?;
            let mut bytes =
                std::fs::read(&path).map_err(|e| cred_err(format!("{}: {e}", path.display())))?;
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            return Ok(Password(Zeroizing::new(bytes)));
        }
        Ok(Password(Zeroizing::new(Vec::new())))
    }
}

const ENV_PREFIX: &str = "MYVEIL_";

/// Applies `MYVEIL_A__B__C=value` as `a.b.c = value`. The value is read as a TOML literal
/// (number, boolean, quoted string) and otherwise taken as a plain string.
fn apply_override(root: &mut toml::Table, name: &str, raw: &str) -> Result<()> {
    let Some(path) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if keys.len() < 2 || keys.iter().any(String::is_empty) {
        // Variables like MYVEIL_CONFIG are not overrides.
        return Ok(());
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut table = root;
    for key in &keys[..keys.len() - 1] {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| Error::Env {
            name: name.to_owned(),
            message: format!("{key} is not a table"),
        })?;
    }
    table.insert(keys[keys.len() - 1].clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [backend]
        address = "127.0.0.1:3306"
        [backend.accounts.main]
        user = "root"
        [roles.app]
        backend_account = "main"
        [users]
        file = "users.toml"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml(
            text,
            &env,
            Path::new("t.toml"),
            PathBuf::from("/etc/myveil"),
        )
    }

    #[test]
    fn a_pool_smaller_than_a_multiplexed_accounts_limit_is_a_warning() {
        let limited = MINIMAL.replace(
            "user = \"root\"",
            "user = \"root\"\nmax_backend_connections = 100",
        );
        assert!(
            load(&limited, &[]).expect("valid").warnings().is_empty(),
            "pinned"
        );
        let mux = limited.replace(
            "address = \"127.0.0.1:3306\"",
            "address = \"127.0.0.1:3306\"\nmode = \"multiplexed\"",
        );
        let w = load(&mux, &[]).expect("valid").warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("pool_max_idle (64)") && w[0].contains("accounts.main"));
        let enough = mux.replace(
            "mode = \"multiplexed\"",
            "mode = \"multiplexed\"\npool_max_idle = 100",
        );
        assert!(load(&enough, &[]).expect("valid").warnings().is_empty());
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.listen.address.port(), 3307);
        assert_eq!(c.listen.plugin(), Plugin::Native);
        assert_eq!(
            c.resolve(Path::new("users.toml")),
            PathBuf::from("/etc/myveil/users.toml")
        );
        assert_eq!(c.backend.host(), "127.0.0.1");
    }

    #[test]
    fn env_overrides_reach_nested_keys_with_types() {
        let c = load(
            MINIMAL,
            &[
                ("MYVEIL_LISTEN__ADDRESS", "0.0.0.0:4000"),
                ("MYVEIL_LISTEN__MAX_CONNECTIONS", "7"),
                ("MYVEIL_BACKEND__ACCOUNTS__MAIN__USER", "app_rw"),
                ("MYVEIL_CONFIG", "ignored"),
            ],
        )
        .expect("valid");
        assert_eq!(c.listen.address.port(), 4000);
        assert_eq!(c.listen.max_connections, 7);
        assert_eq!(c.backend.accounts["main"].user, "app_rw");
    }

    #[test]
    fn backup_section_defaults_and_validation() {
        let c = load(MINIMAL, &[]).expect("no [backup] is fine");
        assert_eq!(c.backup.dir, PathBuf::from("backups"));
        assert_eq!(c.backup.retention, 0);
        assert_eq!(
            c.resolve(&c.backup.public_key),
            PathBuf::from("/etc/myveil/keys/backup_rsa_public.pem")
        );
        let with = format!("{MINIMAL}\n[backup]\ndatabases = [\"shop\"]\nretention = 3\n");
        let c = load(&with, &[("MYVEIL_BACKUP__DIR", "/var/backups/myveil")]).expect("valid");
        assert_eq!(c.backup.databases, vec!["shop".to_owned()]);
        assert_eq!(c.backup.dir, PathBuf::from("/var/backups/myveil"));
        let bad = format!("{MINIMAL}\n[backup]\naccount = \"nobody\"\n");
        assert!(matches!(load(&bad, &[]), Err(Error::Invalid(_))));
        let typo = format!("{MINIMAL}\n[backup]\nretension = 3\n");
        assert!(matches!(load(&typo, &[]), Err(Error::Parse { .. })));
    }

    #[test]
    fn unknown_fields_and_dangling_roles_are_refused() {
        let typo = MINIMAL.replace("[users]", "[users]\nfiel = 1");
        assert!(matches!(load(&typo, &[]), Err(Error::Parse { .. })));
        let dangling = MINIMAL.replace("backend_account = \"main\"", "backend_account = \"nope\"");
        assert!(matches!(load(&dangling, &[]), Err(Error::Invalid(_))));
        assert!(matches!(
            load(
                MINIMAL,
                &[("MYVEIL_LISTEN__AUTH_PLUGIN", "mysql_clear_password")]
            ),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password(Zeroizing::new(b"hunter2".to_vec()));
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn backend_users_map_names_then_patterns_and_deny_the_rest() {
        let c = load(
            &format!(
                "{MINIMAL}\n[roles.reporting]\nbackend_account = \"main\"\n[backend_users]\n\
                 [[backend_users.map]]\nuser = \"report_*\"\nrole = \"reporting\"\n\
                 [[backend_users.map]]\nuser = \"report_admin\"\nrole = \"app\"\n\
                 [[backend_users.map]]\nuser = \"svc?\"\nrole = \"app\"\n"
            ),
            &[],
        )
        .expect("valid");
        let b = c.backend_users.expect("on");
        assert_eq!(
            b.role_for("report_admin"),
            Some("app"),
            "an exact name wins"
        );
        assert_eq!(b.role_for("report_daily"), Some("reporting"));
        assert_eq!(b.role_for("svc1"), Some("app"));
        assert_eq!(b.role_for("svc12"), None);
        assert_eq!(b.role_for("root"), None, "default deny");
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("a*b", "aXXbYc"));
        let bad = load(
            &format!(
                "{MINIMAL}\n[backend_users]\n[[backend_users.map]]\nuser = \"x\"\nrole = \"nope\"\n"
            ),
            &[],
        );
        assert!(bad.is_err());
    }
}
