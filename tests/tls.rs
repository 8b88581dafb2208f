//! TLS toward clients: drivers and the CLI connect with TLS, `require` refuses plain
//! clients, clear-text passwords are only taken over TLS, and caching_sha2_password full
//! authentication works over TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::raw::{CLIENT_CAPS, connect_tcp, read};
use common::{APP_PASSWORD, APP_USER, Proxy, Setup};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, SslOpts};
use myveil::wire::handshake::parse_backend_greeting;
use myveil::wire::{PacketConn, Stream};

const CLIENT_SSL: u32 = 0x0800;

struct Certs {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate certificate");
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    Certs {
        _dir: dir,
        cert,
        key,
    }
}

async fn tls_proxy(certs: &Certs, require: bool, listen: &'static str) -> Proxy {
    Proxy::start_with(Setup {
        listen,
        backend: None,
        users: Vec::new(),
        extra: format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire = {require}\n",
            certs.cert.display(),
            certs.key.display()
        ),
    })
    .await
}

fn ssl_opts(ca: &Path) -> SslOpts {
    SslOpts::default().with_root_certs(vec![ca.to_path_buf().into()])
}

#[tokio::test]
async fn drivers_connect_over_tls_and_require_refuses_plain() {
    let certs = certs();
    let proxy = tls_proxy(&certs, true, "").await;
    let mut c = Conn::new(proxy.app_opts().ssl_opts(ssl_opts(&certs.cert)))
        .await
        .expect("TLS connect");
    let v: i64 = c.query_first("SELECT 11").await.expect("q").expect("row");
    assert_eq!(v, 11);
    c.disconnect().await.ok();
    match Conn::new(proxy.app_opts()).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 3159),
        other => panic!(
            "plain connection must be refused, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_with_required_tls() {
    let certs = certs();
    let proxy = tls_proxy(&certs, true, "").await;
    let port = proxy.addr.port();
    let ca = certs.cert.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                &format!("-P{port}"),
                &format!("-u{APP_USER}"),
                &format!("-p{APP_PASSWORD}"),
                "--ssl",
                "--ssl-verify-server-cert",
                &format!("--ssl-ca={}", ca.display()),
                "-e",
                "\\s",
            ])
            .output()
            .expect("mariadb client")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Cipher in use"), "{text}");
}

/// Greeting, SSL request, TLS upgrade; returns the TLS connection and the salt.
async fn tls_client(proxy: &Proxy, ca: &Path) -> (PacketConn, Vec<u8>) {
    let mut c = connect_tcp(proxy.addr).await;
    let greeting = parse_backend_greeting(&read(&mut c).await).expect("greeting");
    let mut req = Vec::new();
    req.extend_from_slice(&(CLIENT_CAPS | CLIENT_SSL).to_le_bytes());
    req.extend_from_slice(&(1u32 << 24).to_le_bytes());
    req.push(45);
    req.extend_from_slice(&[0; 23]);
    c.write_packet(1, &req).await.expect("ssl request");
    let (Stream::Plain(tcp), _) = c.into_parts() else {
        panic!("plain")
    };
    let connector = myveil::wire::tls::connector(ca).expect("connector");
    let tls = myveil::wire::tls::connect(&connector, "localhost", tcp)
        .await
        .expect("tls");
    (PacketConn::new(tls), greeting.salt)
}

fn response(caps: u32, user: &str, auth: &[u8], plugin: &str) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

fn clear(password: &str) -> Vec<u8> {
    let mut v = password.as_bytes().to_vec();
    v.push(0);
    v
}

#[tokio::test]
async fn clear_text_password_only_over_tls() {
    let certs = certs();
    let proxy = tls_proxy(&certs, false, "").await;

    let (mut c, _) = tls_client(&proxy, &certs.cert).await;
    c.write_packet(
        2,
        &response(
            CLIENT_CAPS | CLIENT_SSL,
            APP_USER,
            &clear(APP_PASSWORD),
            "mysql_clear_password",
        ),
    )
    .await
    .expect("send");
    assert_eq!(read(&mut c).await[0], 0x00, "clear text accepted over TLS");

    let (mut c, _) = tls_client(&proxy, &certs.cert).await;
    c.write_packet(
        2,
        &response(
            CLIENT_CAPS | CLIENT_SSL,
            APP_USER,
            &clear("wrong-password"),
            "mysql_clear_password",
        ),
    )
    .await
    .expect("send");
    let e = read(&mut c).await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1045));

    // Without TLS the proxy does not take the clear-text answer: it switches the client to a
    // challenge-response plugin instead.
    let mut c = connect_tcp(proxy.addr).await;
    read(&mut c).await;
    c.write_packet(
        1,
        &response(
            CLIENT_CAPS,
            APP_USER,
            &clear(APP_PASSWORD),
            "mysql_clear_password",
        ),
    )
    .await
    .expect("send");
    let switch = read(&mut c).await;
    assert_eq!(switch[0], 0xFE, "auth switch");
    assert!(switch[1..].starts_with(b"mysql_native_password\0"));
}

#[tokio::test]
async fn caching_sha2_full_authentication_over_tls() {
    let certs = certs();
    let proxy = tls_proxy(&certs, false, "auth_plugin = \"caching_sha2_password\"").await;
    for (password, ok) in [(APP_PASSWORD, true), ("wrong-password", false)] {
        let (mut c, _) = tls_client(&proxy, &certs.cert).await;
        // A scramble that misses the fast path: the server asks for the full password.
        c.write_packet(
            2,
            &response(
                CLIENT_CAPS | CLIENT_SSL,
                APP_USER,
                &[7u8; 32],
                "caching_sha2_password",
            ),
        )
        .await
        .expect("send");
        assert_eq!(
            read(&mut c).await,
            vec![0x01, 0x04],
            "perform full authentication"
        );
        c.write_packet(4, &clear(password))
            .await
            .expect("send password");
        let reply = read(&mut c).await;
        assert_eq!(reply[0] == 0x00, ok, "password {password}");
    }
}

#[tokio::test]
async fn tls_toward_the_backend() {
    // A myveil with required TLS stands in for a TLS-only MySQL server; a second myveil uses
    // it as its backend, verifying its certificate, with a password from a 0600 file.
    let certs = certs();
    let tls_server = tls_proxy(&certs, true, "auth_plugin = \"caching_sha2_password\"").await;
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let password_file = secret_dir.path().join("backend.password");
    myveil::secure_file::write_private(&password_file, format!("{APP_PASSWORD}\n").as_bytes())
        .expect("write");
    let front = Proxy::start_with(Setup {
        backend: Some(format!(
            "[backend]\naddress = \"{}\"\ntls_ca = \"{}\"\ntls_server_name = \"localhost\"\n\
             [backend.accounts.main]\nuser = \"{APP_USER}\"\npassword_file = \"{}\"",
            tls_server.addr,
            certs.cert.display(),
            password_file.display()
        )),
        ..Default::default()
    })
    .await;
    let mut c = front.app(None).await;
    let v: i64 = c.query_first("SELECT 42").await.expect("q").expect("row");
    assert_eq!(v, 42);
    c.disconnect().await.ok();

    // An open password file is refused at startup.
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let config = myveil::config::Config::from_toml(
        &format!(
            "[backend]\naddress = \"127.0.0.1:1\"\n[backend.accounts.main]\nuser = \"x\"\npassword_file = \"{}\"\n\
             [roles.app]\nbackend_account = \"main\"\n[users]\nfile = \"users.toml\"",
            password_file.display()
        ),
        &[],
        Path::new("t.toml"),
        secret_dir.path().to_owned(),
    )
    .expect("config parses");
    let err = myveil::frontend::Shared::new(config)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_https_when_configured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = certs();
    let store = common::TestDb::create("https").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policy")).expect("policy");
    let proxy = Proxy::start_with(Setup {
        extra: format!(
            "[protection]\npolicy_dir = \"{d}/policy\"\nkeys_dir = \"{d}/keys\"\ngenerate_missing_keys = true\n\
             [admin]\nusers_file = \"{d}/admins.toml\"\nstore_schema = \"{s}\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\n",
            d = dir.path().display(),
            s = store.name,
            c = certs.cert.display(),
            k = certs.key.display()
        ),
        ..Setup::default()
    })
    .await;
    let state = std::sync::Arc::new(
        myveil::admin::AdminState::new(
            proxy.shared.clone(),
            &myveil::limits::LimitClock::default(),
        )
        .expect("admin state"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(myveil::admin::serve(state, listener, stop_rx));

    let connector = myveil::wire::tls::connector(&certs.cert).expect("connector");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.ok();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains(r#"{"status":"ok"}"#),
        "{reply}"
    );

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    let _ = stop.send(true);
    let _ = server.await;
    if let Some(t) = &proxy.shared.tokens {
        t.close().await;
    }
    drop(proxy);
    store.drop_now().await;
}
