//! Test harness: starts myveil in-process on port 0 in front of the local MariaDB, with its
//! own users file, and creates (and drops) per-test databases.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use myveil::auth::UserStore;
use myveil::config::Config;
use myveil::frontend::{self, Shared};
use tokio::sync::watch;

pub const BACKEND_HOST: &str = "127.0.0.1";
pub const BACKEND_PORT: u16 = 3306;
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-password-1";
pub const OTHER_USER: &str = "reporter";
pub const OTHER_PASSWORD: &str = "reporter-password-1";

pub struct Proxy {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

/// Extra TOML appended to the test configuration (e.g. a [tls] table or listen overrides).
#[derive(Default)]
pub struct Setup {
    pub listen: &'static str,
    pub extra: String,
    /// Replaces the default [backend] table (root on the local MariaDB).
    pub backend: Option<String>,
    /// More users (name, role, password); each role gets the main backend account.
    pub users: Vec<(&'static str, &'static str, &'static str)>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        Self::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut users = UserStore::load(&dir.path().join("users.toml")).expect("empty users");
        users
            .add(APP_USER, "app", APP_PASSWORD.as_bytes(), 4)
            .expect("add app");
        users
            .add(OTHER_USER, "reporting", OTHER_PASSWORD.as_bytes(), 4)
            .expect("add reporter");
        let mut roles = String::new();
        for (name, role, password) in &setup.users {
            users
                .add(name, role, password.as_bytes(), 4)
                .expect("add user");
            if *role != "app" && *role != "reporting" && !roles.contains(&format!("[roles.{role}]"))
            {
                roles.push_str(&format!("[roles.{role}]\nbackend_account = \"main\"\n"));
            }
        }
        users
            .save(&dir.path().join("users.toml"))
            .expect("save users");
        let toml = format!(
            r#"
            [listen]
            address = "127.0.0.1:0"
            {listen}
            {backend}
            [roles.app]
            backend_account = "main"
            [roles.reporting]
            backend_account = "main"
            {roles}
            [users]
            file = "users.toml"
            bcrypt_cost = 4
            {extra}
            "#,
            listen = setup.listen,
            extra = setup.extra,
            roles = roles,
            backend = setup.backend.unwrap_or_else(|| format!(
                "[backend]\naddress = \"{BACKEND_HOST}:{BACKEND_PORT}\"\nmode = \"{}\"\n[backend.accounts.main]\nuser = \"root\"",
                backend_mode()
            )),
        );
        // Written too, for tests that run the CLI on the same configuration.
        std::fs::write(dir.path().join("myveil.toml"), &toml).expect("write config");
        let config = Config::from_toml(
            &toml,
            &[],
            &dir.path().join("myveil.toml"),
            dir.path().to_owned(),
        )
        .expect("valid test config");
        let listener = frontend::bind(&config).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::new(config).expect("shared"));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(frontend::serve(listener, shared.clone(), stop_rx));
        Proxy {
            addr,
            shared,
            stop,
            task: Some(task),
            dir,
        }
    }

    /// Options for a client of this proxy. `MYVEIL_TEST_COMPRESSION=1` turns the
    /// compressed protocol on for every such client (CI runs the relay tests both ways).
    pub fn opts(&self, user: &str, password: &str) -> OptsBuilder {
        let b = OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false);
        if compressed_clients() {
            b.compression(Some(mysql_async::Compression::default()))
        } else {
            b
        }
    }

    pub fn app_opts(&self) -> OptsBuilder {
        self.opts(APP_USER, APP_PASSWORD)
    }

    pub async fn app(&self, db: Option<&str>) -> Conn {
        Conn::new(self.app_opts().db_name(db))
            .await
            .expect("connect through myveil")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Asks the proxy to stop (as SIGTERM does) without waiting.
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the accept loop and the drain to finish.
    pub async fn join(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A directory with `policy` as its only policy file and keys for every column, blind
/// index and mask; returns it with the `[protection]` table that names both.
pub fn protection(policy: &str) -> (tempfile::TempDir, String) {
    use myveil::crypto::keyring::{Keyring, Purpose};
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(&policy_dir).expect("mkdir");
    std::fs::write(policy_dir.join("policy.toml"), policy).expect("policy");
    let keys = dir.path().join("keys");
    Keyring::generate(
        &keys,
        &[
            (Purpose::Column, "*"),
            (Purpose::BlindIndex, "*"),
            (Purpose::Mask, "*"),
        ],
    )
    .expect("keys");
    let table = format!(
        "[protection]\npolicy_dir = \"{}\"\nkeys_dir = \"{}\"\n",
        policy_dir.display(),
        keys.display()
    );
    (dir, table)
}

/// The backend mode of test proxies: `MYVEIL_TEST_BACKEND_MODE` (CI runs the relay and
/// protection tests in both), pinned by default.
pub fn backend_mode() -> &'static str {
    match std::env::var("MYVEIL_TEST_BACKEND_MODE").as_deref() {
        Ok("multiplexed") => "multiplexed",
        _ => "pinned",
    }
}

/// A MariaDB account made for one test, dropped after it (also when the test fails), and
/// its password in a private file for the proxy's configuration.
pub struct BackendAccount {
    pub name: String,
    _dir: tempfile::TempDir,
    pub password_file: std::path::PathBuf,
}

impl BackendAccount {
    pub async fn create(label: &str, db: &str) -> BackendAccount {
        let password = format!("pw-{label}-{}", std::process::id());
        Self::with_password(label, &password, db).await
    }

    /// An account with this password (empty: none), all privileges on `db`.
    pub async fn with_password(label: &str, password: &str, db: &str) -> BackendAccount {
        let name = format!("myveil_acct_{label}_{}", std::process::id());
        let mut c = direct(None).await;
        for host in ["127.0.0.1", "localhost"] {
            c.query_drop(format!("DROP USER IF EXISTS '{name}'@'{host}'"))
                .await
                .expect("drop old");
            c.query_drop(format!(
                "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"
            ))
            .await
            .expect("create user");
            c.query_drop(format!("GRANT ALL ON `{db}`.* TO '{name}'@'{host}'"))
                .await
                .expect("grant");
        }
        c.disconnect().await.ok();
        let dir = tempfile::tempdir().expect("tempdir");
        let password_file = dir.path().join("backend.password");
        std::fs::write(&password_file, password).expect("password file");
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        BackendAccount {
            name,
            _dir: dir,
            password_file,
        }
    }

    /// The server's connections of this account now.
    pub async fn connections(&self) -> u64 {
        let mut c = direct(None).await;
        let n: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
                self.name
            ))
            .await
            .expect("processlist");
        c.disconnect().await.ok();
        n.unwrap_or(0)
    }

    /// A `[backend]` table that logs in as this account: `backend` goes in `[backend]`,
    /// `account` in its `[backend.accounts.main]`.
    pub fn backend_toml(&self, backend: &str, account: &str) -> String {
        format!(
            "[backend]\naddress = \"{BACKEND_HOST}:{BACKEND_PORT}\"\n{backend}\n[backend.accounts.main]\nuser = \"{}\"\npassword_file = \"{}\"\n{account}",
            self.name,
            self.password_file.display(),
        )
    }
}

impl Drop for BackendAccount {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(mut c) = Conn::new(direct_opts()).await {
                        for host in ["127.0.0.1", "localhost"] {
                            let _ = c
                                .query_drop(format!("DROP USER IF EXISTS '{name}'@'{host}'"))
                                .await;
                        }
                        let _ = c.disconnect().await;
                    }
                });
            }
        })
        .join();
    }
}

/// Whether test clients of the proxy use the compressed protocol (MYVEIL_TEST_COMPRESSION).
pub fn compressed_clients() -> bool {
    std::env::var("MYVEIL_TEST_COMPRESSION").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub fn direct_opts() -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(BACKEND_HOST)
        .tcp_port(BACKEND_PORT)
        .user(Some("root"))
        .prefer_socket(false)
}

pub async fn direct(db: Option<&str>) -> Conn {
    Conn::new(direct_opts().db_name(db))
        .await
        .expect("connect to MariaDB directly")
}

/// A database made for one test and dropped after it (only ever ones this harness created),
/// also when the test fails: `Drop` removes it if `drop_now` did not.
pub struct TestDb {
    pub name: String,
    dropped: bool,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        // A test may be failing inside a runtime: drop it from a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(mut c) = Conn::new(direct_opts()).await {
                        let _ = c
                            .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                            .await;
                        let _ = c.disconnect().await;
                    }
                });
            }
        })
        .join();
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn create(label: &str) -> TestDb {
        let name = format!(
            "myveil_t_{label}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = direct(None).await;
        c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create test database");
        c.disconnect().await.ok();
        TestDb {
            name,
            dropped: false,
        }
    }

    pub async fn drop_now(mut self) {
        let mut c = direct(None).await;
        c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .await
            .ok();
        c.disconnect().await.ok();
        self.dropped = true;
    }
}

/// Raises the server's max_allowed_packet (global, affects new connections) so tests can
/// move values over 16 MiB. Never lowers it.
pub async fn ensure_max_allowed_packet(bytes: u64) {
    let mut c = direct(None).await;
    let current: u64 = c
        .query_first("SELECT @@global.max_allowed_packet")
        .await
        .expect("query")
        .unwrap_or(0);
    if current < bytes {
        c.query_drop(format!("SET GLOBAL max_allowed_packet = {bytes}"))
            .await
            .expect("raise max_allowed_packet");
    }
    c.disconnect().await.ok();
}

pub fn opts_of(b: OptsBuilder) -> Opts {
    Opts::from(b)
}

/// A hand-driven protocol client for what drivers do not send: cursors, malformed packets.
pub mod raw {
    use myveil::wire::auth::{Plugin, scramble};
    use myveil::wire::handshake::parse_backend_greeting;
    use myveil::wire::{PacketConn, Stream};
    use std::net::SocketAddr;

    pub const CLIENT_CAPS: u32 = 0x0000_0001 // LONG_PASSWORD
        | 0x0000_0004 // LONG_FLAG
        | 0x0000_0200 // PROTOCOL_41
        | 0x0000_2000 // TRANSACTIONS
        | 0x0000_8000 // SECURE_CONNECTION
        | 0x0002_0000 // MULTI_RESULTS
        | 0x0008_0000; // PLUGIN_AUTH

    pub async fn connect_tcp(addr: SocketAddr) -> PacketConn {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("tcp connect");
        PacketConn::new(Stream::Plain(tcp))
    }

    /// Logs in with mysql_native_password; returns the connection and the greeted id.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> (PacketConn, u32) {
        let (c, id, _) = login_with(addr, user, password, db, 0).await;
        (c, id)
    }

    /// Logs in with extra capability bits; also returns the server's final OK payload.
    pub async fn login_with(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
        extra_caps: u32,
    ) -> (PacketConn, u32, Vec<u8>) {
        let (c, id, ok) = hello(addr, user, password, db, extra_caps).await;
        assert_eq!(
            ok[0],
            0x00,
            "login failed: {:?}",
            String::from_utf8_lossy(&ok)
        );
        (c, id, ok)
    }

    /// Sends a handshake response with extra capability bits; returns the connection, the
    /// greeting's connection id and the server's reply to the response, whatever it is.
    pub async fn hello(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
        extra_caps: u32,
    ) -> (PacketConn, u32, Vec<u8>) {
        let mut c = connect_tcp(addr).await;
        let greeting = c.read_packet(1 << 16).await.expect("greeting");
        let g = parse_backend_greeting(&greeting.payload).expect("parse greeting");
        let mut caps = CLIENT_CAPS | extra_caps;
        if db.is_some() {
            caps |= 0x0000_0008;
        }
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let auth = scramble(Plugin::Native, &g.salt, password.as_bytes());
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        if let Some(db) = db {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        if caps & 0x0400_0000 != 0 {
            p.push(3); // zstd compression level
        }
        c.write_packet(1, &p).await.expect("send response");
        let reply = c.read_packet(1 << 16).await.expect("auth reply");
        (c, g.connection_id, reply.payload.to_vec())
    }

    /// Sends one command (sequence id 0).
    pub async fn send(c: &mut PacketConn, payload: &[u8]) {
        c.write_packet(0, payload).await.expect("send command");
    }

    pub async fn read(c: &mut PacketConn) -> Vec<u8> {
        c.read_packet(1 << 26)
            .await
            .expect("read packet")
            .payload
            .to_vec()
    }
}

/// Sends myveil's logs to the test output (RUST_LOG picks the level).
pub fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
