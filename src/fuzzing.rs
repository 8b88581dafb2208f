//! fuzzing: the entry points of the cargo-fuzz targets in `fuzz/` (not an API). Each takes
//! arbitrary bytes and runs one of myveil's readers of client or server input the way the
//! proxy does: the lexer and statement split, the guard's whole decision, the handshake and
//! OK-packet parsers, the relay's packet classification, the result transform, and the
//! rebuilding of COM_STMT_EXECUTE. They must return (an error is fine), never panic or hang.
//! Compiled always, so CI keeps them building; the unit test at the end runs each once.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::backend::schema::{Dependent, Snapshot};
use crate::backend::state::{ClientTracking, SessionState, SqlMode, TrackingDefaults};
use crate::crypto::keyring::{Keyring, Purpose};
use crate::guard::{Command, Context, Outcome, Reach};
use crate::policy::Policy;
use crate::sql::analyze::{ColumnMeta, Out, Shape};
use crate::sql::charset::Charset;
use crate::sql::lex::{self, Kind};

const POLICY: &str = r#"
[[column]]
database = "shop"
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
normalize = "trim-lowercase"
roles = { app = "plaintext", support = { mask = "email" }, analyst = { mask = "hash" }, dumper = "ciphertext" }
write = ["dumper"]

[[column]]
database = "shop"
table = "users"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = { app = "plaintext", dumper = "ciphertext" }
write = ["dumper"]

[[column]]
database = "shop"
table = "users"
column = "born"
type = "date"
roles = { app = "plaintext", analyst = { mask = "year" } }

[[column]]
table = "notes"
column = "body"
type = "text"
row_key = "id"
roles = { app = "plaintext", support = { mask = "fixed", value = "[x]" } }
"#;

const CHARSETS: &[&str] = &[
    "utf8mb4", "latin1", "gbk", "sjis", "big5", "cp932", "binary", "ascii", "utf8mb3",
];
const ROLES: &[&str] = &["app", "support", "analyst", "dumper", "nobody"];
const MODES: &[&str] = &[
    "STRICT_TRANS_TABLES",
    "ANSI_QUOTES",
    "NO_BACKSLASH_ESCAPES",
    "ANSI_QUOTES,NO_BACKSLASH_ESCAPES",
    "ANSI",
    "PIPES_AS_CONCAT,IGNORE_SPACE",
    "MSSQL",
    "EMPTY_STRING_IS_NULL,HIGH_NOT_PRECEDENCE",
];

/// The policy, schema and keys every target decides against.
struct World {
    policy: Policy,
    schema: Snapshot,
    reach: Reach,
    keyring: Keyring,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut policy = Policy::default();
        policy.add_toml(POLICY, "fuzz").expect("the fuzz policy");
        let meta = |names: &[&str]| -> Vec<ColumnMeta> {
            names
                .iter()
                .map(|n| ColumnMeta {
                    name: (*n).into(),
                    null_default: true,
                    data_type: "varbinary".into(),
                    max_length: None,
                    invisible: false,
                })
                .collect()
        };
        let schema = Snapshot::from_parts(
            vec![
                (
                    ("shop".into(), "users".into()),
                    meta(&["id", "email", "email_bidx", "ssn", "born", "name"]),
                ),
                (("shop".into(), "notes".into()), meta(&["id", "body"])),
                // In a migration's shadow window (its shadow INVISIBLE, being copied).
                (("other".into(), "users".into()), {
                    let mut m = meta(&["id", "email", "ssn", "ssn__myveil"]);
                    m[3].invisible = true;
                    m
                }),
            ],
            vec![(
                ("shop".into(), "v".into()),
                "select `shop`.`users`.`id` AS `id`,`shop`.`users`.`email` AS `mail` from `shop`.`users`"
                    .into(),
            )],
            vec![("shop".into(), "users".into(), "email_bidx".into())],
            vec![Dependent {
                kind: "procedure".into(),
                database: "other".into(),
                name: "leak".into(),
                reads: "shop.users".into(),
                on_table: None,
                reads_refused: false,
            }],
        );
        let mut schema = schema;
        schema.shadows = vec![(
            "other".into(),
            "users".into(),
            "ssn__myveil".into(),
            "ssn".into(),
        )];
        schema.copying = vec![("other".into(), "users".into(), "ssn".into())];
        let reach = Reach::new(&policy, "fuzz", &schema);
        let dir = std::env::temp_dir().join(format!("myveil-fuzz-keys-{}", std::process::id()));
        let keyring = Keyring::generate(
            &dir,
            &[
                (Purpose::Column, "*"),
                (Purpose::BlindIndex, "*"),
                (Purpose::Mask, "*"),
            ],
        )
        .or_else(|_| Keyring::load(&dir))
        .expect("fuzz keys");
        // The keys are in memory now; nothing is left behind.
        let _ = std::fs::remove_dir_all(&dir);
        World {
            policy,
            schema,
            reach,
            keyring,
        }
    })
}

/// A byte of the input, or 0 past its end.
fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn charset_of(b: u8) -> &'static Charset {
    Charset::named(CHARSETS[usize::from(b) % CHARSETS.len()]).expect("a known charset")
}

/// The lexer, the statement split, the parser's view of each statement, literal values and
/// the fingerprint, under a mode and charset taken from the first two bytes.
pub fn lexer(data: &[u8]) {
    let flags = byte(data, 0);
    let mode = lex::Mode {
        charset: charset_of(byte(data, 1)),
        ansi_quotes: flags & 1 != 0,
        no_backslash_escapes: flags & 2 != 0,
        mssql: flags & 4 != 0,
        server_version: if flags & 8 != 0 { 100_603 } else { 101_119 },
        prepare: flags & 16 != 0,
    };
    let src = data.get(2..).unwrap_or_default();
    let Ok(lexed) = lex::lex(src, &mode) else {
        return;
    };
    for t in &lexed.tokens {
        assert!(
            t.start <= t.end && t.end <= src.len(),
            "a token inside the text"
        );
        let text = t.text(src);
        match t.kind {
            Kind::Str => {
                let _ = lex::string_value(text, &mode);
            }
            Kind::Hex | Kind::Bit => {
                let _ = lex::binary_value(text);
            }
            Kind::Word | Kind::Quoted => {
                let _ = t.name(src, &mode);
            }
            _ => {}
        }
    }
    let _ = crate::sql::fingerprint(src, &lexed);
    if let Ok(units) = crate::sql::view::statements(src, &lexed) {
        for unit in units {
            if let Ok(view) = crate::sql::view::View::of(src, &lexed, unit, mode) {
                let _ = view.text.len();
            }
        }
    }
}

/// The guard's whole decision (lexing, reachability, analysis, rewriting) in a session state
/// and for a role taken from the first bytes; a rewritten text must lex again.
pub fn guard(data: &[u8]) {
    let w = world();
    let (a, b, c) = (byte(data, 0), byte(data, 1), byte(data, 2));
    let state = SessionState {
        database: match a % 3 {
            0 => Some("shop".into()),
            1 => Some("other".into()),
            _ => None,
        },
        sql_mode: SqlMode::parse(MODES[usize::from(b) % MODES.len()]),
        client_charset: CHARSETS[usize::from(c) % CHARSETS.len()].into(),
        known: true,
        ..SessionState::default()
    };
    let role = ROLES[usize::from(a / 3) % ROLES.len()];
    let command = if b & 0x80 != 0 {
        Command::Prepare
    } else {
        Command::Query
    };
    let prepared = HashMap::new();
    let sealer = crate::sql::rewrite::KeyringSealer(&w.keyring, &crate::backend::schema::NO_MIXED);
    let cx = Context {
        state: &state,
        policy: &w.policy,
        schema: &w.schema,
        reach: &w.reach,
        role,
        server_version: 101_119,
        store_schema: Some("myveil"),
        sealer: &sealer,
        sql_prepared: &prepared,
        max_analyzed_bytes: 1 << 16,
        cache: None,
    };
    let text = data.get(3..).unwrap_or_default();
    let decision = crate::guard::decide(text, command, &cx);
    // The cache (kept across inputs, so a plan made from one input is replayed for another
    // of its form) never changes a decision: with a sealer that shows its input, the same
    // input decided with it gives the same text, byte for byte, as without.
    static CACHE: OnceLock<std::sync::Mutex<crate::guard::ShapeCache>> = OnceLock::new();
    let shown = Context {
        sealer: &Shown,
        ..cx
    };
    let fresh = crate::guard::decide(text, command, &shown);
    let cached = Context {
        cache: Some(CACHE.get_or_init(Default::default)),
        ..shown
    };
    let again = crate::guard::decide(text, command, &cached);
    assert_eq!(
        exact(&fresh.outcome),
        exact(&again.outcome),
        "a cached decision differs"
    );
    assert_eq!(
        summary(&decision.outcome),
        summary(&fresh.outcome),
        "the sealer changed a decision"
    );
    if let Outcome::Protect(p) = decision.outcome
        && let Some(rewritten) = p.text
        && let Some(cs) = Charset::named(&state.client_charset)
    {
        let mode =
            crate::guard::lex_mode(cs, &state.sql_mode, 101_119, command == Command::Prepare);
        assert!(
            lex::lex(&rewritten, &mode).is_ok(),
            "a rewritten statement reads back"
        );
    }
}

/// A sealer whose output shows its input (deterministic, so two rewrites compare byte for
/// byte): `S[plaintext]` sealed, `B0[plaintext]` (padded with dots) as a blind index.
pub(crate) struct Shown;

impl crate::sql::rewrite::Sealer for Shown {
    fn seal(
        &self,
        _: &crate::policy::Protected,
        p: &[u8],
        _: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error> {
        Ok(format!("S[{}]", String::from_utf8_lossy(p)).into_bytes())
    }
    fn blind(
        &self,
        _: &crate::policy::Protected,
        p: &[u8],
    ) -> Result<[u8; 32], crate::crypto::Error> {
        let mut out = [b'.'; 32];
        let s = format!("B0[{}]", String::from_utf8_lossy(p));
        out[..s.len().min(32)].copy_from_slice(&s.as_bytes()[..s.len().min(32)]);
        Ok(out)
    }
    fn blind_all(
        &self,
        c: &crate::policy::Protected,
        p: &[u8],
    ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
        Ok(vec![self.blind(c, p)?])
    }
    fn blind_keys(&self, _: &crate::policy::Protected) -> usize {
        1
    }
    /// Fake envelopes are `S[plaintext]`.
    fn open(
        &self,
        _: &crate::policy::Protected,
        stored: &[u8],
        _: Option<&[u8]>,
    ) -> Option<Vec<u8>> {
        stored
            .strip_prefix(b"S[")
            .and_then(|s| s.strip_suffix(b"]"))
            .map(<[u8]>::to_vec)
    }
}

/// An outcome with its rewritten text.
fn exact(o: &Outcome) -> String {
    match o {
        Outcome::Protect(p) => format!(
            "{} text={:?}",
            summary(o),
            p.text.as_deref().map(String::from_utf8_lossy)
        ),
        other => summary(other),
    }
}

/// An outcome without its sealed bytes (fresh nonces make each rewrite differ).
fn summary(o: &Outcome) -> String {
    match o {
        Outcome::Pass => "pass".into(),
        Outcome::Refuse(r) => format!("refuse {r}"),
        Outcome::Protect(p) => format!(
            "protect rewritten={} shapes={:?} params={:?} client={} ddl={}",
            p.text.is_some(),
            p.shapes,
            p.params,
            p.client_params,
            p.schema_changed
        ),
    }
}

/// The readers of handshake and command packets, and of the session state in OK packets.
pub fn packets(data: &[u8]) {
    let payload = data.get(1..).unwrap_or_default();
    match byte(data, 0) % 5 {
        0 => {
            let _ = crate::wire::handshake::parse_client_hello(payload);
        }
        1 => {
            let _ = crate::wire::handshake::parse_backend_greeting(payload);
        }
        2 => {
            let _ = crate::frontend::handshake::parse_change_user(payload);
        }
        3 => {
            use crate::wire::packets;
            if let Some(ok) = packets::parse_tracked_ok(payload)
                && let Some(records) = packets::state_records(ok.state)
            {
                for (_, d) in &records {
                    let _ = packets::variable_record(d);
                    let _ = packets::schema_record(d);
                }
                let _ = packets::rebuild_ok(&ok, &records, true);
            }
            let _ = packets::ok_status(payload);
            let _ = packets::eof_status(payload);
            let _ = packets::err_code(payload);
        }
        _ => {
            let mut state = SessionState::default();
            for client in [
                ClientTracking::Off,
                ClientTracking::Unfiltered,
                ClientTracking::On(TrackingDefaults::default()),
            ] {
                let _ = state.track_ok(payload, &client);
            }
            let _ = state.apply_setup(payload);
        }
    }
}

/// Splits input into packets: each is a one-byte length, then that many bytes.
fn split(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// The relay's classification of a backend response, packet by packet, for a command kind
/// taken from the first byte.
pub fn relay(data: &[u8]) {
    use crate::frontend::relay::{Expect, Response};
    let expect = match byte(data, 0) % 6 {
        0 => Expect::Query,
        1 => Expect::Execute,
        2 => Expect::Prepare,
        3 => Expect::Fetch,
        4 => Expect::FieldList,
        _ => Expect::Single,
    };
    let mut response = Response::new(expect);
    for p in split(data.get(1..).unwrap_or_default()) {
        match response.classify(p) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
}

/// The result transform: column definitions and rows from the input (text and binary
/// protocol), planned for a role against a shape, then each row opened, masked or refused.
pub fn results(data: &[u8]) {
    use crate::frontend::transform::{self, KeyringCells};
    let w = world();
    let role = ROLES[usize::from(byte(data, 0)) % ROLES.len()];
    let outs = [
        Out::Table,
        Out::Plain,
        Out::Run,
        Out::Cell {
            column: 0,
            key: None,
        },
        Out::Cell {
            column: 3,
            key: Some(0),
        },
    ];
    let n = 1 + usize::from(byte(data, 1) % 4);
    let shape = Shape {
        columns: (0..n)
            .map(|i| outs[usize::from(byte(data, 2 + i)) % outs.len()])
            .collect(),
    };
    let packets = split(data.get(6..).unwrap_or_default());
    let columns = usize::from(byte(data, 1) % 6);
    if packets.len() < columns {
        return;
    }
    let mut defs: Vec<Vec<u8>> = packets[..columns].iter().map(|p| p.to_vec()).collect();
    let original = transform::original_types(&defs).unwrap_or_default();
    let cells = KeyringCells(&w.keyring, &crate::backend::schema::NO_MIXED);
    if let Ok(Some(plan)) = transform::plan(&mut defs, &w.policy, role, &shape, None, &cells) {
        for row in &packets[columns..] {
            let _ = plan.text_row(row, &cells);
            let _ = plan.binary_row(row, &original, &cells);
        }
    }
}

/// COM_STMT_EXECUTE rebuilt for a prepared statement over protected columns, and long data.
pub fn execute(data: &[u8]) {
    let w = world();
    const STATEMENTS: &[&[u8]] = &[
        b"INSERT INTO shop.users (id, email, ssn, born) VALUES (?, ?, ?, ?)",
        b"SELECT id, email FROM shop.users WHERE email = ? AND id > ?",
        b"UPDATE shop.notes SET body = ? WHERE id = ?",
        b"INSERT INTO shop.notes (id, body) VALUES (?, ?), (?, ?)",
    ];
    let state = SessionState {
        database: Some("shop".into()),
        client_charset: "utf8mb4".into(),
        known: true,
        ..SessionState::default()
    };
    let prepared = HashMap::new();
    let sealer = crate::sql::rewrite::KeyringSealer(&w.keyring, &crate::backend::schema::NO_MIXED);
    let cx = Context {
        state: &state,
        policy: &w.policy,
        schema: &w.schema,
        reach: &w.reach,
        role: "app",
        server_version: 101_119,
        store_schema: None,
        sealer: &sealer,
        sql_prepared: &prepared,
        max_analyzed_bytes: 1 << 16,
        cache: None,
    };
    let sql = STATEMENTS[usize::from(byte(data, 0)) % STATEMENTS.len()];
    let Outcome::Protect(p) = crate::guard::decide(sql, Command::Prepare, &cx).outcome else {
        return;
    };
    let mut stmt = crate::frontend::prepared::Prepared::new(
        p.client_params,
        p.params,
        p.shapes.into_iter().next().flatten(),
    );
    for packet in split(data.get(1..).unwrap_or_default()) {
        if packet.first() == Some(&0x18) {
            let _ = stmt.long_data(packet, 1 << 16);
        } else {
            let _ = stmt.execute(packet, &w.policy, &sealer);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each entry point runs on a few inputs (the fuzz targets run them on many more).
    #[test]
    fn every_entry_point_runs() {
        let inputs: [&[u8]; 4] = [
            b"",
            b"\x00\x00SELECT email FROM users WHERE email = 'a'",
            b"\x03\x01\x02UPDATE users SET ssn = '1'; SELECT '\\'; -- '",
            b"\x01\x05\x17\x03\xff\xfe\xfd\x00\x00\x00\x02\x00\x00\x00",
        ];
        for d in inputs {
            super::lexer(d);
            super::guard(d);
            super::packets(d);
            super::relay(d);
            super::results(d);
            super::execute(d);
        }
    }

    /// The fuzz seeds and twins of them with other literal values, in every session state the
    /// guard target chooses: a plan made from one statement and replayed for its twin writes
    /// what a fresh analysis writes (the target asserts it).
    #[test]
    fn plans_replay_for_the_seeds_and_their_twins() {
        let seeds = include_str!("../fuzz/seeds.sql");
        // Another value for every letter and digit inside quotes, and for every digit of a
        // number: the same form, other literals.
        let twin = |sql: &str| -> String {
            let mut quote: Option<char> = None;
            let mut prev = ' ';
            sql.chars()
                .map(|c| {
                    let inside = quote.is_some();
                    let out = match c {
                        '\'' | '"' if quote.is_none() => {
                            quote = Some(c);
                            c
                        }
                        q if Some(q) == quote => {
                            quote = None;
                            c
                        }
                        'a'..='y' if inside => (c as u8 + 1) as char,
                        '0'..='8' if inside || !prev.is_ascii_alphabetic() => (c as u8 + 1) as char,
                        _ => c,
                    };
                    prev = c;
                    out
                })
                .collect()
        };
        for line in seeds.lines() {
            for a in 0..6u8 {
                for b in [0u8, 1, 2, 3, 0x80] {
                    for c in 0..3u8 {
                        for sql in [line.to_owned(), twin(line), twin(&twin(line))] {
                            let mut data = vec![a, b, c];
                            data.extend_from_slice(sql.as_bytes());
                            super::guard(&data);
                        }
                    }
                }
            }
        }
    }
}
