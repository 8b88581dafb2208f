//! Criterion benches for the per-value costs of column protection: seal and open of a
//! 64-byte value, blind index, and the guard's whole decision (lex, reach, analysis,
//! rewrite) for a typical INSERT, a point SELECT, a protected read and a statement that
//! reaches nothing; the same from a cached plan; a COM_STMT_EXECUTE of a prepared INSERT
//! against its seals alone; a 100-row result (text and binary) with one opened column
//! against the AES-GCM cost of its cells alone.

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

/// Keys (column and blind index for every scope) and the bench policy.
fn fixture() -> (tempfile::TempDir, Keyring, Policy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = Keyring::generate(
        dir.path(),
        &[(Purpose::Column, "*"), (Purpose::BlindIndex, "*")],
    )
    .expect("keys");
    let mut policy = Policy::default();
    policy.add_toml(POLICY, "bench").expect("policy");
    (dir, keyring, policy)
}

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
    let (_dir, keyring, policy) = fixture();
    let schema = Snapshot::default();
    let reach = Reach::new(&policy, "bench", &schema);
    let state = SessionState {
        database: Some("shop".into()),
        sql_mode: SqlMode::parse("STRICT_TRANS_TABLES"),
        client_charset: "utf8mb4".into(),
        known: true,
        ..SessionState::default()
    };
    let sealer = KeyringSealer(&keyring, &myveil::backend::schema::NO_MIXED);
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
    // The INSERT again from its plan: no parse, values sealed where the plan says.
    let run_cached = |sql: &str| match decide(sql.as_bytes(), Command::Query, &cx_cached).outcome {
        Outcome::Protect(p) => p.text.map_or(1, |t| t.len()),
        Outcome::Pass => 0,
        Outcome::Refuse(r) => panic!("{r}"),
    };
    assert!(run_cached(insert) > 0);
    let other = "INSERT INTO users (id, name, email, ssn) VALUES (43, 'Bo Ek', 'bo@example.com', '987-65-4321')";
    c.bench_function(
        "guard: INSERT (2 sealed, 1 blind index), plan cached",
        |b| b.iter(|| run_cached(black_box(other))),
    );
    let select_other = "SELECT id, name, email FROM users WHERE email = 'bo@example.com'";
    assert!(run_cached(select) > 0);
    c.bench_function(
        "guard: point SELECT (blind-index search), plan cached",
        |b| b.iter(|| run_cached(black_box(select_other))),
    );
    execute(c, &cx);
}

/// A COM_STMT_EXECUTE of the prepared INSERT (id, name, email, ssn): two parameters sealed,
/// one blind-indexed, the rest copied; against the seals and the index alone.
fn execute(c: &mut Criterion, cx: &Context<'_>) {
    use myveil::frontend::prepared::Prepared;
    let sql = "INSERT INTO users (id, name, email, ssn) VALUES (?, ?, ?, ?)";
    let Outcome::Protect(p) = decide(sql.as_bytes(), Command::Prepare, cx).outcome else {
        panic!("the prepared INSERT is protected");
    };
    let mut stmt = Prepared::new(p.client_params, p.params, None);
    // COM_STMT_EXECUTE: id, flags, iterations, NULL bitmap, types bound, values.
    let mut packet = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    for ty in [0x08u8, 0xfd, 0xfd, 0xfd] {
        packet.extend_from_slice(&[ty, 0]);
    }
    packet.extend_from_slice(&43i64.to_le_bytes());
    let values: [&[u8]; 3] = [b"Bo Ek", b"bo@example.com", b"987-65-4321"];
    for v in values {
        packet.push(v.len() as u8);
        packet.extend_from_slice(v);
    }
    assert!(
        stmt.execute(&packet, cx.policy, cx.sealer)
            .expect("execute")
            .is_some()
    );
    c.bench_function(
        "prepared: COM_STMT_EXECUTE (2 sealed, 1 blind index)",
        |b| b.iter(|| stmt.execute(black_box(&packet), cx.policy, cx.sealer)),
    );
    let column = |name: &str| {
        cx.policy
            .columns()
            .iter()
            .find(|c| c.column == name)
            .expect("column")
    };
    let (email, ssn) = (column("email"), column("ssn"));
    c.bench_function("prepared: the seals and the index alone", |b| {
        b.iter(|| {
            let e = cx.sealer.seal(email, black_box(values[1]), None);
            let s = cx.sealer.seal(ssn, black_box(values[2]), None);
            let i = cx.sealer.blind(email, black_box(values[1]));
            (e, s, i)
        })
    });
}

/// A column definition (protocol 41) of a VARBINARY column.
fn def(table: &str, column: &str, ty: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "shop", table, table, column, column] {
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p.push(0x0c);
    p.extend_from_slice(&63u16.to_le_bytes());
    p.extend_from_slice(&255u32.to_le_bytes());
    p.push(ty);
    p.extend_from_slice(&0x0081u16.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

fn results(c: &mut Criterion) {
    use myveil::frontend::transform::{KeyringCells, plan};
    use myveil::sql::analyze::{Out, Shape};
    use myveil::sql::rewrite::Sealer;
    let (_dir, keyring, policy) = fixture();
    let email = policy
        .columns()
        .iter()
        .position(|c| c.column == "email")
        .expect("email");
    let col = &policy.columns()[email];
    let sealer = KeyringSealer(&keyring, &myveil::backend::schema::NO_MIXED);
    // 100 rows of (id, email): the email sealed as stored, 20–30 bytes of plaintext.
    let envelopes: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            sealer
                .seal(col, format!("user{i:04}@example.com").as_bytes(), None)
                .expect("seal")
        })
        .collect();
    let rows: Vec<Vec<u8>> = envelopes
        .iter()
        .enumerate()
        .map(|(i, env)| {
            let id = i.to_string();
            let mut r = vec![id.len() as u8];
            r.extend_from_slice(id.as_bytes());
            r.push(env.len() as u8);
            r.extend_from_slice(env);
            r
        })
        .collect();
    let mut defs = vec![def("users", "id", 3), def("users", "email", 253)];
    let shape = Shape {
        columns: vec![
            Out::Plain,
            Out::Cell {
                column: email,
                key: None,
            },
        ],
    };
    let cells = KeyringCells(&keyring, &myveil::backend::schema::NO_MIXED);
    let plan = plan(&mut defs, &policy, "app", &shape, None, &cells)
        .expect("plan")
        .expect("a column to open");
    // As the relay runs it: one buffer for every row.
    let mut row = Vec::new();
    c.bench_function("results: 100 text rows, 1 opened column", |b| {
        b.iter(|| {
            for r in &rows {
                plan.text_row_into(black_box(r), &cells, &mut row)
                    .expect("row");
                black_box(&row);
            }
        })
    });
    // The same rows in the binary protocol: (INT id, VAR_STRING email).
    let binary: Vec<Vec<u8>> = envelopes
        .iter()
        .enumerate()
        .map(|(i, env)| {
            let mut r = vec![0x00, 0x00];
            r.extend_from_slice(&(i as i32).to_le_bytes());
            r.push(env.len() as u8);
            r.extend_from_slice(env);
            r
        })
        .collect();
    let original = [3u8, 253];
    c.bench_function("results: 100 binary rows, 1 opened column", |b| {
        b.iter(|| {
            for r in &binary {
                plan.binary_row_into(black_box(r), &original, &cells, &mut row)
                    .expect("row");
                black_box(&row);
            }
        })
    });
    // The floor: AES-256-GCM alone on the same cells, cipher built once.
    let ctx = CellContext {
        table: "users",
        column: "email",
        plaintext_type: "varchar(100)",
        row_key: None,
    };
    let key_id = myveil::crypto::envelope::key_id(&envelopes[0]).expect("id");
    let cipher = myveil::crypto::envelope::cipher(keyring.key(key_id).expect("key").bytes());
    let mut out = Vec::with_capacity(64);
    c.bench_function("results: AES-GCM of those 100 cells alone", |b| {
        b.iter(|| {
            for env in &envelopes {
                out.clear();
                myveil::crypto::envelope::open_into(&cipher, &ctx, black_box(env), &mut out)
                    .expect("open");
                black_box(&out);
            }
        })
    });
}

criterion_group!(benches, envelope, rewrite, results);
criterion_main!(benches);
