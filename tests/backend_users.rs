//! `[backend_users]`: names outside the users file log in with their own MariaDB credentials,
//! checked by MariaDB itself, and get the role their name maps to; unmapped names are
//! denied. Real accounts are created on the server for each test and dropped after it.

mod common;

use common::{BackendAccount, Proxy, Setup, TestDb};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

const POLICY: &str = r#"
[[column]]
table = "people"
column = "email"
type = "varchar(100)"
roles = { app = "plaintext", reporting = { mask = "email" } }
"#;

async fn proxy(app_pattern: &str, reporting: &str, protection: &str) -> Proxy {
    Proxy::start_with(Setup {
        extra: format!(
            "{protection}[backend_users]\n\
             [[backend_users.map]]\nuser = \"{app_pattern}\"\nrole = \"app\"\n\
             [[backend_users.map]]\nuser = \"{reporting}\"\nrole = \"reporting\"\n"
        ),
        ..Default::default()
    })
    .await
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn an_app_logs_in_with_its_backend_credentials_and_gets_its_mapped_role() {
    let (_dir, protection) = common::protection(POLICY);
    let db = TestDb::create("backend_users").await;
    let app = BackendAccount::with_password("app", "app-secret-1", &db.name).await;
    let rep = BackendAccount::with_password("app_rep", "rep-secret-1", &db.name).await;
    // `myveil_acct_app*` (a pattern) → app; the reporting account (which the pattern matches
    // too) by its exact name, which wins.
    let app_pattern = "myveil_acct_app*".to_owned();
    let proxy = proxy(&app_pattern, &rep.name, &protection).await;
    let opts = |user: &str, password: &str| {
        Opts::from(proxy.opts(user, password).db_name(Some(db.name.clone())))
    };

    // The app's own MariaDB account and password, through myveil.
    let mut c = Conn::new(opts(&app.name, "app-secret-1"))
        .await
        .expect("backend user logs in");
    let (current, id): (String, u32) = c
        .query_first("SELECT CURRENT_USER(), CONNECTION_ID()")
        .await
        .expect("q")
        .expect("row");
    assert!(current.starts_with(&format!("{}@", app.name)), "{current}");
    assert_eq!(id, c.id());
    c.query_drop("CREATE TABLE people (id INT PRIMARY KEY, email VARBINARY(255))")
        .await
        .expect("create");
    c.query_drop("INSERT INTO people VALUES (1, 'ann@example.com')")
        .await
        .expect("insert through the app role");
    let email: Option<String> = c
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("read");
    assert_eq!(
        email.as_deref(),
        Some("ann@example.com"),
        "app role: plaintext"
    );
    let mut direct = common::direct(Some(&db.name)).await;
    let raw: Option<Vec<u8>> = direct
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("raw");
    let raw = raw.expect("a cell");
    assert!(!raw.windows(3).any(|w| w == b"ann"), "stored sealed");

    // The reporting account gets the reporting role: a mask, never the plaintext.
    let mut r = Conn::new(opts(&rep.name, "rep-secret-1"))
        .await
        .expect("reporting backend user");
    let masked: Option<String> = r
        .query_first("SELECT email FROM people WHERE id = 1")
        .await
        .expect("masked read");
    let masked = masked.expect("a value");
    assert_ne!(masked, "ann@example.com");
    assert!(
        masked.contains('*') && masked.ends_with("@example.com"),
        "{masked}"
    );
    r.disconnect().await.ok();

    // A wrong password is refused by the backend: 1045, and nothing is opened.
    let e = Conn::new(opts(&app.name, "wrong"))
        .await
        .expect_err("wrong password");
    assert_eq!(server_code(&e), Some(1045), "{e:?}");
    // An account no mapping names is denied, whatever its password (default deny).
    let e = Conn::new(opts("root", "")).await.expect_err("unmapped");
    assert_eq!(server_code(&e), Some(1045), "{e:?}");
    // An account without a password logs in with none (the empty answer goes on as is).
    let open = BackendAccount::with_password("app_open", "", &db.name).await;
    let mut o = Conn::new(opts(&open.name, ""))
        .await
        .expect("empty password");
    let who: Option<String> = o.query_first("SELECT CURRENT_USER()").await.expect("q");
    assert!(who.expect("row").starts_with(&format!("{}@", open.name)));
    o.disconnect().await.ok();
    drop(open);
    // myveil's own users still log in as before.
    let mut own = Conn::new(opts(common::APP_USER, common::APP_PASSWORD))
        .await
        .expect("file user");

    // Change user to a backend user, and back.
    own.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(app.name.clone()))
            .with_pass(Some("app-secret-1".to_owned()))
            .with_db_name(Some(db.name.clone())),
    )
    .await
    .expect("change user to a backend user");
    let (current, id2): (String, u32) = own
        .query_first("SELECT CURRENT_USER(), CONNECTION_ID()")
        .await
        .expect("q")
        .expect("row");
    assert!(current.starts_with(&format!("{}@", app.name)), "{current}");
    assert_eq!(id2, own.id(), "the session keeps its id");
    own.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(common::APP_USER.to_owned()))
            .with_pass(Some(common::APP_PASSWORD.to_owned())),
    )
    .await
    .expect("change back");
    let current: Option<String> = own.query_first("SELECT CURRENT_USER()").await.expect("q");
    assert!(current.expect("row").starts_with("root@"));

    for c in [c, own] {
        c.disconnect().await.ok();
    }
    direct.disconnect().await.ok();
    drop(rep);
    db.drop_now().await;
}
