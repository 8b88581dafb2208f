//! The myveil demo application: CRUD through myveil on the demo schema, then the same rows
//! read as three roles and directly from MariaDB.
//!
//! Start myveil on examples/myveil.toml first, then: cargo run --example demo_app
//! Environment: MYVEIL_ADDR (default 127.0.0.1:3307), BACKEND_ADDR (127.0.0.1:3306).

// A demo prints what it shows; that is its output, not logging.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row};

fn opts(addr: &str, user: &str, password: &str) -> Result<OptsBuilder> {
    let (host, port) = addr.rsplit_once(':').context("address is host:port")?;
    Ok(OptsBuilder::default()
        .ip_or_hostname(host.to_owned())
        .tcp_port(port.parse()?)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("myveil_demo"))
        .prefer_socket(false))
}

fn show(title: &str, rows: &[Row]) {
    println!("\n== {title}");
    for row in rows {
        let cells: Vec<String> = (0..row.len())
            .map(|i| match row.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => {
                    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                        String::from_utf8_lossy(b).into_owned()
                    } else {
                        format!("0x{}…", hex::encode(&b[..b.len().min(12)]))
                    }
                }
                Some(v) => v.as_sql(true),
                None => "?".into(),
            })
            .collect();
        println!("  {}", cells.join(" | "));
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let proxy = std::env::var("MYVEIL_ADDR").unwrap_or_else(|_| "127.0.0.1:3307".into());
    let backend = std::env::var("BACKEND_ADDR").unwrap_or_else(|_| "127.0.0.1:3306".into());

    let mut app = Conn::new(opts(&proxy, "app", "app-password")?)
        .await
        .context("connect as app through myveil")?;
    app.query_drop("DELETE FROM comments").await?;
    app.query_drop("DELETE FROM orders").await?;
    app.query_drop("DELETE FROM users").await?;
    // Create: a literal statement and a prepared one; both are encrypted by myveil.
    app.query_drop(
        "INSERT INTO users (email, full_name, phone, ssn) VALUES ('ann@example.com', 'Ann Lee', '+1 555 0100', '123-45-6789')",
    )
    .await?;
    let ann = app.last_insert_id().context("insert id")?;
    let insert = app
        .prep("INSERT INTO users (email, full_name, phone, ssn) VALUES (?, ?, ?, ?)")
        .await?;
    app.exec_drop(
        &insert,
        ("bob@example.com", "Bob Stone", "+1 555 0199", "987-65-4321"),
    )
    .await?;
    let bob = app.last_insert_id().context("insert id")?;
    app.exec_drop(
        "INSERT INTO orders (user_id, total, card_last4) VALUES (?, ?, ?)",
        (ann, "42.50", "4242"),
    )
    .await?;
    app.exec_drop(
        "INSERT INTO comments (user_id, body) VALUES (?, ?)",
        (bob, "Please call me after 5pm."),
    )
    .await?;
    // Update and search by an encrypted column (through its blind index).
    app.query_drop("UPDATE users SET phone = '+1 555 0111' WHERE email = 'ann@example.com'")
        .await?;
    let found: Vec<Row> = app
        .exec(
            "SELECT id, email, phone FROM users WHERE email = ?",
            ("BOB@example.com",),
        )
        .await?;
    show(
        "app: search by email (case-insensitive blind index)",
        &found,
    );

    let query = "SELECT u.id, u.email, u.full_name, u.phone, o.total, o.card_last4 FROM users u LEFT JOIN orders o ON o.user_id = u.id ORDER BY u.id";
    show("app (plaintext)", &app.query::<Row, _>(query).await?);
    let mut support = Conn::new(opts(&proxy, "support", "support-password")?)
        .await
        .context("connect as support")?;
    show("support (masked)", &support.query::<Row, _>(query).await?);
    match support.query_drop("SELECT ssn FROM users").await {
        Err(e) => println!("\n== support asking for ssn: {e}"),
        Ok(()) => println!("\n== support asking for ssn: unexpectedly allowed"),
    }
    let mut analyst = Conn::new(opts(&proxy, "analyst", "analyst-password")?)
        .await
        .context("connect as analyst")?;
    show(
        "analyst (pseudonyms)",
        &analyst.query::<Row, _>(query).await?,
    );
    show(
        "analyst: comments",
        &analyst
            .query::<Row, _>("SELECT id, body FROM comments")
            .await?,
    );

    let (host, port) = backend.rsplit_once(':').context("address is host:port")?;
    let direct_opts = OptsBuilder::default()
        .ip_or_hostname(host.to_owned())
        .tcp_port(port.parse()?)
        .user(Some("root"))
        .db_name(Some("myveil_demo"))
        .prefer_socket(false);
    let mut direct = Conn::new(direct_opts)
        .await
        .context("connect to MariaDB directly")?;
    show(
        "MariaDB directly (what is at rest)",
        &direct
            .query::<Row, _>("SELECT id, email, full_name, phone, ssn FROM users ORDER BY id")
            .await?,
    );
    for c in [app, support, analyst, direct] {
        c.disconnect().await?;
    }
    Ok(())
}
