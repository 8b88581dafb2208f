//! The `myveil` binary end to end: user management commands, `check`, `serve` with SIGTERM,
//! and a canary value sent through every path that must never reach the logs, even at TRACE.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestDb;
use mysql_async::prelude::*;

const CANARY: &str = "CANARY-d41d8cd98f";

fn myveil(config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_myveil"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run myveil");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write_config(dir: &Path, store_schema: &str) -> std::path::PathBuf {
    let config = dir.join("myveil.toml");
    std::fs::write(
        &config,
        r#"
[listen]
address = "127.0.0.1:0"
allow_cleartext_on_loopback = true
[backend]
address = "127.0.0.1:3306"
[backend.accounts.main]
user = "root"
[roles.app]
backend_account = "main"
[users]
file = "users.toml"
bcrypt_cost = 4
[protection]
policy_dir = "policy"
keys_dir = "keys"
generate_missing_keys = true
[admin]
address = "127.0.0.1:0"
users_file = "admins.toml"
store_schema = "STORE"
[log]
level = "trace"
"#
        .replace("STORE", store_schema),
    )
    .expect("write config");
    std::fs::create_dir_all(dir.join("policy")).expect("policy dir");
    std::fs::write(
        dir.join("policy/secrets.toml"),
        "[[column]]\ntable = \"secrets\"\ncolumn = \"s\"\ntype = \"varchar(64)\"\nblind_index = \"s_bidx\"\nroles = { app = \"plaintext\" }\n",
    )
    .expect("policy");
    config
}

#[test]
fn user_commands_manage_the_users_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "myveil_unused");
    let (ok, out) = myveil(
        &config,
        &["user", "add", "alice", "--role", "app", "--password-stdin"],
        Some("first-password\n"),
    );
    assert!(ok, "{out}");
    let users = dir.path().join("users.toml");
    assert_eq!(
        std::fs::metadata(&users)
            .expect("users file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&users).expect("read");
    assert!(
        !text.contains("first-password"),
        "no clear-text password at rest"
    );

    let (ok, out) = myveil(
        &config,
        &["user", "add", "alice", "--role", "app", "--password-stdin"],
        Some("again-password\n"),
    );
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = myveil(
        &config,
        &["user", "add", "bob", "--role", "nosuch", "--password-stdin"],
        Some("bob-password\n"),
    );
    assert!(!ok && out.contains("not defined"), "{out}");
    let (ok, out) = myveil(
        &config,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("second-password\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = myveil(&config, &["user", "list"], None);
    assert!(ok && out.contains("alice\tapp"), "{out}");
    let (ok, out) = myveil(
        &config,
        &[
            "admin",
            "add",
            "root",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some("an admin password\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = myveil(
        &config,
        &[
            "admin",
            "add",
            "weak",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{}\n", "x".repeat(73))),
    );
    assert!(!ok && out.contains("72"), "{out}");
    let (ok, out) = myveil(&config, &["admin", "list"], None);
    assert!(ok && out.contains("root\toperator"), "{out}");
    let (ok, out) = myveil(&config, &["keygen"], None);
    assert!(ok && out.contains("keys"), "{out}");
    let keyring = std::fs::read(dir.path().join("keys/keyring.toml")).expect("keyring");
    let master = std::fs::read(dir.path().join("keys/master.key")).expect("master key");
    let (ok, out) = myveil(&config, &["keygen"], None);
    assert!(ok && out.contains("kept the column keyring"), "{out}");
    assert_eq!(
        (
            std::fs::read(dir.path().join("keys/keyring.toml")).expect("keyring"),
            std::fs::read(dir.path().join("keys/master.key")).expect("master key")
        ),
        (keyring, master),
        "keygen never overwrites keys"
    );
    let (ok, out) = myveil(&config, &["check"], None);
    // Another test may have a `secrets` table on the shared server: either way check reports it.
    assert!(
        !ok && out.contains("secrets.s"),
        "check reads the live schema: {out}"
    );
    let (ok, out) = myveil(&config, &["user", "remove", "alice"], None);
    assert!(ok, "{out}");
    let (ok, out) = myveil(&config, &["user", "list"], None);
    assert!(ok && !out.contains("alice"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_no_values_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::create("canary").await;
    // The token store lives in a database of the test's own (not reachable through myveil).
    let store = TestDb::create("store").await;
    let config = write_config(dir.path(), &store.name);
    let (ok, out) = myveil(
        &config,
        &["user", "add", "app", "--role", "app", "--password-stdin"],
        Some("app-password-1\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = myveil(
        &config,
        &[
            "admin",
            "add",
            "root",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("admin-password-1\n"),
    );
    assert!(ok, "{out}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_myveil"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut addr = None;
    let mut admin_addr = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while addr.is_none() || admin_addr.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = line_rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("no listening lines; the log so far:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(at) = line.find("address=") {
            let a = line[at + 8..]
                .split_whitespace()
                .next()
                .expect("addr")
                .to_owned();
            if line.contains("admin port") {
                admin_addr = Some(a);
            } else {
                addr = Some(a);
            }
        }
    }
    let (addr, admin_addr) = (addr.expect("mysql"), admin_addr.expect("admin"));

    // The admin port: login over HTTP, then an authenticated call.
    let login = http(
        &admin_addr,
        "POST",
        "/v1/login",
        None,
        r#"{"user":"root","password":"admin-password-1"}"#,
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let token = login
        .split("\"token\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("token")
        .to_owned();
    let me = http(&admin_addr, "GET", "/v1/whoami", Some(&token), "").await;
    assert!(
        me.starts_with("HTTP/1.1 200") && me.contains("\"role\":\"admin\""),
        "{me}"
    );
    let denied = http(
        &admin_addr,
        "POST",
        "/v1/login",
        None,
        r#"{"user":"root","password":"wrong-password"}"#,
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let (host, port) = addr.rsplit_once(':').expect("host:port");

    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().expect("port"))
        .user(Some("app"))
        .pass(Some("app-password-1"))
        .db_name(Some(&db.name))
        .prefer_socket(false);
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("connect to the binary");
    c.query_drop("CREATE TABLE t (v VARCHAR(64) PRIMARY KEY)")
        .await
        .expect("create");
    c.query_drop(format!("INSERT INTO t VALUES ('{CANARY}-text')"))
        .await
        .expect("text insert");
    c.exec_drop("INSERT INTO t VALUES (?)", (format!("{CANARY}-param"),))
        .await
        .expect("param insert");
    // The backend's error quotes the value: the client gets it, the logs must not.
    let dup = c
        .query_drop(format!("INSERT INTO t VALUES ('{CANARY}-text')"))
        .await
        .expect_err("duplicate");
    assert!(
        format!("{dup:?}").contains(CANARY),
        "the client sees the backend's message"
    );
    let rows: Vec<String> = c.query("SELECT v FROM t ORDER BY v").await.expect("select");
    assert_eq!(rows.len(), 2);
    // Through a protected column too: literal, parameter, search, read, refusal.
    c.query_drop("CREATE TABLE secrets (id INT PRIMARY KEY, s VARBINARY(300), s_bidx BINARY(32))")
        .await
        .expect("create");
    c.query_drop(format!(
        "INSERT INTO secrets (id, s) VALUES (1, '{CANARY}-sealed')"
    ))
    .await
    .expect("sealed insert");
    c.exec_drop(
        "INSERT INTO secrets (id, s) VALUES (?, ?)",
        (2, format!("{CANARY}-sealed-param")),
    )
    .await
    .expect("sealed param");
    let found: Vec<String> = c
        .query(format!("SELECT s FROM secrets WHERE s = '{CANARY}-sealed'"))
        .await
        .expect("search");
    assert_eq!(found, vec![format!("{CANARY}-sealed")]);
    let refused = c
        .query_drop(format!("SELECT id FROM secrets WHERE s LIKE '{CANARY}%'"))
        .await;
    assert!(refused.is_err());
    c.disconnect().await.ok();

    // A SQL token: issued over HTTP, used as a MySQL password; neither token reaches the log.
    let issued = http(
        &admin_addr,
        "POST",
        "/v1/tokens",
        Some(&token),
        r#"{"user":"tok-app","role":"app","ttl_secs":600}"#,
    )
    .await;
    assert!(issued.starts_with("HTTP/1.1 201"), "{issued}");
    let sql_token = issued
        .split("\"token\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("sql token")
        .to_owned();
    let mut t = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port.parse().expect("port"))
            .user(Some("tok-app"))
            .pass(Some(sql_token.clone()))
            .enable_cleartext_plugin(true)
            .prefer_socket(false),
    )
    .await
    .expect("token login");
    t.query_drop("SELECT 1").await.expect("query");
    t.disconnect().await.ok();
    let metrics = http(&admin_addr, "GET", "/metrics", None, "").await;
    assert!(metrics.contains("myveil_token_logins_total 1"), "{metrics}");

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    // The seals of this short run are counted in usage.toml at shutdown (key budgets).
    let usage = std::fs::read_to_string(dir.path().join("keys/usage.toml")).expect("usage.toml");
    let sealed: i64 = usage
        .lines()
        .filter_map(|l| l.split('=').nth(1))
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .sum();
    assert!(sealed >= 2, "two values were sealed: {usage}");
    let log = reader.join().expect("log reader");
    assert!(
        log.contains("statement=INSERT INTO t VALUES (?)"),
        "fingerprints are logged:\n{log}"
    );
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    assert!(!log.contains(CANARY), "a value reached the log:\n{log}");
    assert!(
        !log.contains("app-password-1") && !log.contains("admin-password-1"),
        "a password reached the log"
    );
    assert!(!log.contains(&sql_token), "a SQL token reached the log");
    assert!(!log.contains(&token), "an admin token reached the log");
    db.drop_now().await;
    store.drop_now().await;
}

/// One HTTP/1.1 request over a fresh connection; returns the whole response as text.
async fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin port");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
