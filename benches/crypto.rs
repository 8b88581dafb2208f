//! Criterion benches for the per-value costs of column protection: seal and open of a
//! 64-byte value, blind index, and the analysis + rewrite of a typical INSERT and point SELECT.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use myveil::crypto::blind::{Normalize, blind_index};
use myveil::crypto::envelope::{CellContext, open, seal};
use myveil::crypto::keyring::{Keyring, Purpose};
use myveil::policy::Policy;
use myveil::sql::analyze::{Analyzer, NoSchema, Plan};
use myveil::sql::rewrite::{KeyringSealer, render};

const POLICY: &str = r#"
[[column]]
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext" }
[[column]]
table = "users"
column = "ssn"
type = "char(11)"
roles = { app = "plaintext" }
"#;

fn envelope(c: &mut Criterion) {
    let key = [7u8; 32];
    let ctx = CellContext {
        table: "users",
        column: "email",
        plaintext_type: "varchar(100)",
        row_key: None,
    };
    let value = [b'x'; 64];
    let sealed = seal(&key, 1, &ctx, &value).expect("seal");
    c.bench_function("seal 64 B", |b| {
        b.iter(|| seal(black_box(&key), 1, &ctx, black_box(&value)))
    });
    c.bench_function("open 64 B", |b| {
        b.iter(|| open(black_box(&key), &ctx, black_box(&sealed)))
    });
    c.bench_function("blind index 64 B", |b| {
        b.iter(|| {
            blind_index(
                black_box(&key),
                "users",
                "email",
                Normalize::None,
                black_box(&value),
            )
        })
    });
}

fn rewrite(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = Keyring::generate(
        dir.path(),
        &[(Purpose::Column, "*"), (Purpose::BlindIndex, "*")],
    )
    .expect("keys");
    let mut policy = Policy::default();
    policy.add_toml(POLICY, "bench").expect("policy");
    let analyzer = Analyzer {
        policy: &policy,
        database: Some("shop"),
        role: "app",
        schema: &NoSchema,
    };
    let sealer = KeyringSealer(&keyring);
    let run = |sql: &str| match analyzer.analyze(sql) {
        Plan::Rewrite {
            edits,
            placeholders,
        } => render(sql, &edits, &placeholders, &sealer)
            .map(|r| r.sql.len())
            .unwrap_or(0),
        _ => 0,
    };
    let insert = "INSERT INTO users (id, name, email, ssn) VALUES (42, 'Ann Lee', 'ann@example.com', '123-45-6789')";
    let select = "SELECT id, name, email FROM users WHERE email = 'ann@example.com'";
    assert!(run(insert) > 0 && run(select) > 0);
    c.bench_function("rewrite INSERT (2 sealed, 1 blind index)", |b| {
        b.iter(|| run(black_box(insert)))
    });
    c.bench_function("rewrite point SELECT (blind-index search)", |b| {
        b.iter(|| run(black_box(select)))
    });
    let plain = "SELECT id, name FROM orders WHERE id = 42";
    let watched = std::collections::HashSet::from([
        "users".to_owned(),
        "email".to_owned(),
        "ssn".to_owned(),
        "email_bidx".to_owned(),
    ]);
    c.bench_function("scan unprotected statement", |b| {
        b.iter(|| myveil::sql::lex::scan(black_box(plain.as_bytes()), &watched))
    });
}

criterion_group!(benches, envelope, rewrite);
criterion_main!(benches);
