//! Criterion benches for the per-value costs of column protection: seal and open of a
//! 64-byte value, blind index, and the guard's whole decision (lex, reach, analysis,
//! rewrite) for a typical INSERT, a point SELECT, a protected read and a statement that
//! reaches nothing.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use myveil::crypto::blind::{Normalize, blind_index};
use myveil::crypto::envelope::{CellContext, open, seal};
use myveil::crypto::keyring::{Keyring, Purpose};
use std::collections::HashMap;
use std::sync::Mutex;

use myveil::backend::schema::Snapshot;
use myveil::backend::state::{SessionState, SqlMode};
use myveil::guard::{
    Command, Context, DEFAULT_MAX_ANALYZED_BYTES, Outcome, Reach, ShapeCache, decide,
};
use myveil::policy::Policy;
use myveil::sql::rewrite::KeyringSealer;

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
    let schema = Snapshot::default();
    let reach = Reach::new(&policy, "bench", &schema);
    let state = SessionState {
        database: Some("shop".into()),
        sql_mode: SqlMode::parse("STRICT_TRANS_TABLES"),
        client_charset: "utf8mb4".into(),
        known: true,
        ..SessionState::default()
    };
    let sealer = KeyringSealer(&keyring);
    let prepared = HashMap::new();
    let cx = Context {
        state: &state,
        policy: &policy,
        schema: &schema,
        reach: &reach,
        role: "app",
        server_version: 101_119,
        store_schema: None,
        sealer: &sealer,
        sql_prepared: &prepared,
        max_analyzed_bytes: DEFAULT_MAX_ANALYZED_BYTES,
        cache: None,
    };
    let run = |sql: &str| match decide(sql.as_bytes(), Command::Query, &cx).outcome {
        Outcome::Protect(p) => p.text.map_or(1, |t| t.len()),
        Outcome::Pass => 0,
        Outcome::Refuse(r) => panic!("{r}"),
    };
    let insert = "INSERT INTO users (id, name, email, ssn) VALUES (42, 'Ann Lee', 'ann@example.com', '123-45-6789')";
    let select = "SELECT id, name, email FROM users WHERE email = 'ann@example.com'";
    assert!(run(insert) > 0 && run(select) > 0);
    c.bench_function("guard: INSERT (2 sealed, 1 blind index)", |b| {
        b.iter(|| run(black_box(insert)))
    });
    c.bench_function("guard: point SELECT (blind-index search)", |b| {
        b.iter(|| run(black_box(select)))
    });
    let plain = "SELECT id, name FROM orders WHERE id = 42";
    let other = SessionState {
        database: Some("other".into()),
        ..state.clone()
    };
    let cx_other = Context {
        state: &other,
        ..cx
    };
    assert!(
        decide(plain.as_bytes(), Command::Query, &cx_other)
            .outcome
            .is_pass()
    );
    c.bench_function("guard: statement that reaches nothing (lex only)", |b| {
        b.iter(|| decide(black_box(plain.as_bytes()), Command::Query, &cx_other))
    });
    let read = "SELECT id, name, email FROM users WHERE id = 42";
    c.bench_function("guard: protected read (no rewrite)", |b| {
        b.iter(|| decide(black_box(read.as_bytes()), Command::Query, &cx))
    });
    let cache = Mutex::new(ShapeCache::default());
    let cx_cached = Context {
        cache: Some(&cache),
        ..cx
    };
    assert!(matches!(
        decide(read.as_bytes(), Command::Query, &cx_cached).outcome,
        Outcome::Protect(_)
    ));
    c.bench_function("guard: protected read (no rewrite), shape cached", |b| {
        b.iter(|| decide(black_box(read.as_bytes()), Command::Query, &cx_cached))
    });
}

criterion_group!(benches, envelope, rewrite);
criterion_main!(benches);
