//! A grammar-based property test of the at-rest invariant: statements generated from a small
//! grammar that mixes sql_mode, client charset, comments (plain and executable), quoting,
//! identifier case, qualification, USE, multi-statements, literal forms and dynamic SQL are
//! sent through myveil as two roles, against a scratch database holding a protected table
//! and a second database holding the same table unprotected. Canary values only ever go into
//! the columns `email` and `ssn` of a table `users`, whichever database the server picks.
//! After every case the protected database is read directly: every protected cell is NULL or
//! an envelope, and no canary is anywhere in it, raw, hex or base64. The masked role never
//! gets a canary back. The proxy and a bystander session live through everything.
//!
//! Bounded by time (MYVEIL_PROPERTY_SECS, 45 by default); the seed is printed and can be
//! replayed with MYVEIL_PROPERTY_SEED.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Proxy, Setup, TestDb};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use myveil::crypto::keyring::{Keyring, Purpose};

/// Every canary holds both markers, one in each half, so a value split in two and stored
/// only in part is still found.
const MARK_A: &[u8] = b"QZXA";
const MARK_B: &[u8] = b"QZXB";
/// The seeded secret's marker: it is only ever in the protected database, through myveil.
const MARK_SECRET: &[u8] = b"QZXS";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What one generated case needs to know about the databases.
struct Names<'a> {
    protected: &'a str,
    other: &'a str,
}

struct Gen<'a> {
    rng: Rng,
    names: Names<'a>,
    serial: u64,
}

fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

impl Gen<'_> {
    fn canary(&mut self) -> String {
        self.serial += 1;
        format!(
            "{}{:04}-{}{:x}",
            String::from_utf8_lossy(MARK_A),
            self.serial,
            String::from_utf8_lossy(MARK_B),
            self.rng.next() & 0xffff
        )
    }

    /// Space between tokens: blanks, comments, and bytes some charsets read as space.
    fn gap(&mut self) -> Vec<u8> {
        let g: &[u8] = match self.rng.below(14) {
            0 => b"\t",
            1 => b"\n",
            2 => b"/* c */",
            3 => b" -- c\n",
            4 => b"#c\n",
            5 => b"\xa0",
            6 => b"/*!*/",
            7 => b"/*!99999 x */",
            8 => b"/*M!999999 x */",
            9 => b" /*!50000 */ ",
            10 => b"  ",
            _ => b" ",
        };
        g.to_vec()
    }

    fn table(&mut self) -> Vec<u8> {
        let t = self
            .rng
            .pick(&["users", "USERS", "Users", "`users`", "\"users\""]);
        let q = match self.rng.below(6) {
            0 => format!("{}.", self.names.protected),
            1 => format!("`{}`.", self.names.protected),
            2 => format!("{}.", self.names.other),
            3 => format!("{}/* c */.", self.names.protected),
            _ => String::new(),
        };
        format!("{q}{t}").into_bytes()
    }

    fn column(&mut self, protected: bool) -> Vec<u8> {
        let name = if protected {
            self.rng.pick(&["ssn", "email"])
        } else {
            "name"
        };
        let forms = [
            name.to_owned(),
            name.to_uppercase(),
            format!("`{name}`"),
            format!("\"{name}\""),
            format!("users.{name}"),
            format!("`users`.`{name}`"),
        ];
        forms[self.rng.below(forms.len())].clone().into_bytes()
    }

    /// The canary as one of many literal forms, some of them split in two.
    fn literal(&mut self, value: &str) -> Vec<u8> {
        let v = value.as_bytes();
        let cut = MARK_A.len() + 5;
        let (a, b) = (&value[..cut], &value[cut..]);
        let mut out = Vec::new();
        match self.rng.below(16) {
            0 => out.extend(format!("'{value}'").bytes()),
            1 => out.extend(format!("\"{value}\"").bytes()),
            2 => out.extend(format!("_latin1'{value}'").bytes()),
            3 => out.extend(format!("_binary'{value}'").bytes()),
            4 => out.extend(format!("N'{value}'").bytes()),
            5 => out.extend(format!("X'{}'", hex_of(v)).bytes()),
            6 => out.extend(format!("0x{}", hex_of(v)).bytes()),
            7 => out.extend(format!("'{a}' '{b}'").bytes()),
            8 => out.extend(format!("'{a}'\n'{b}'").bytes()),
            9 => out.extend(format!("'{a}' /* c */ \"{b}\"").bytes()),
            10 => out.extend(format!("CONCAT('{a}', '{b}')").bytes()),
            11 => out.extend(format!("'{a}' || '{b}'").bytes()),
            12 => out.extend(format!("_utf8mb4 X'{}'", hex_of(v)).bytes()),
            // Bytes that are a backslash, a quote or a lead byte depending on the charset.
            13 => {
                out.extend(b"'\xbf\\' ");
                out.extend(format!("'{value}'").bytes());
            }
            14 => {
                out.extend(b"'\\'' '");
                out.extend(v);
                out.push(b'\'');
            }
            _ => out.extend(format!("'{a}' '' '{b}'").bytes()),
        }
        out
    }

    /// One statement (without the `;`).
    fn statement(&mut self) -> Vec<u8> {
        let mut s = Vec::new();
        let g = |g: &mut Self| g.gap();
        match self.rng.below(20) {
            0..=3 => {
                let value = self.canary();
                let col = self.column(true);
                let table = self.table();
                s.extend(
                    self.rng
                        .pick(&[&b"INSERT"[..], b"insert", b"REPLACE", b"INSERT IGNORE"]),
                );
                s.extend(g(self));
                s.extend(b"INTO");
                s.extend(g(self));
                s.extend(table);
                s.extend(b" (id, ");
                s.extend(col);
                s.extend(b") VALUES (");
                s.extend(format!("{}", 1000 + self.rng.below(100_000)).bytes());
                s.extend(b",");
                s.extend(g(self));
                s.extend(self.literal(&value));
                s.extend(b")");
            }
            4..=6 => {
                let value = self.canary();
                let table = self.table();
                let col = self.column(true);
                s.extend(b"UPDATE");
                s.extend(g(self));
                s.extend(table);
                s.extend(g(self));
                s.extend(b"SET");
                s.extend(g(self));
                s.extend(col);
                s.extend(b" = ");
                s.extend(self.literal(&value));
                if self.rng.chance(50) {
                    s.extend(b" WHERE id ");
                    s.extend(self.rng.pick(&[&b"= 1"[..], b"> 0", b"IN (1, 2)"]));
                }
            }
            7 => {
                let value = self.canary();
                let col = self.column(true);
                let table = self.table();
                s.extend(b"INSERT INTO ");
                s.extend(table);
                s.extend(b" SET id = ");
                s.extend(format!("{}", 1000 + self.rng.below(100_000)).bytes());
                s.extend(b", ");
                s.extend(col);
                s.extend(b" = ");
                s.extend(self.literal(&value));
                if self.rng.chance(50) {
                    s.extend(b" ON DUPLICATE KEY UPDATE name = 'dup'");
                }
            }
            8 => {
                // Dynamic SQL from one literal, from a concatenation, or from a variable.
                let inner = self.plain_write();
                let quoted = String::from_utf8_lossy(&inner).replace('\'', "''");
                let cut = quoted.len() / 2;
                let (a, b) = quoted.split_at(cut);
                let sql = match self.rng.below(5) {
                    0 => format!("EXECUTE IMMEDIATE '{quoted}'"),
                    1 => format!("EXECUTE IMMEDIATE CONCAT('{a}', '{b}')"),
                    2 => format!("EXECUTE IMMEDIATE '{a}' '{b}'"),
                    3 => format!("SET @q = '{quoted}'; EXECUTE IMMEDIATE @q"),
                    _ => format!("PREPARE s FROM '{a}' '{b}'; EXECUTE s"),
                };
                s.extend(sql.bytes());
            }
            9 => {
                let v = self.rng.pick(&[
                    "''",
                    "'ANSI_QUOTES'",
                    "'NO_BACKSLASH_ESCAPES'",
                    "'ANSI'",
                    "'PIPES_AS_CONCAT,IGNORE_SPACE'",
                    "'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'",
                    "CONCAT('ANSI', '_QUOTES')",
                    "DEFAULT",
                ]);
                let how = self.rng.pick(&[
                    "SET sql_mode = ",
                    "SET SESSION sql_mode = ",
                    "SET @@sql_mode = ",
                    "SET @@session.sql_mode := ",
                    "/*!40101 SET sql_mode = ",
                ]);
                s.extend(how.bytes());
                s.extend(v.bytes());
                if how.starts_with("/*!") {
                    s.extend(b" */");
                }
            }
            10 => {
                let cs = self.rng.pick(&[
                    "SET NAMES latin1",
                    "SET NAMES utf8mb4",
                    "SET NAMES gbk",
                    "SET NAMES sjis",
                    "SET NAMES big5",
                    "SET NAMES binary",
                    "SET CHARACTER SET latin1",
                    "SET character_set_client = gbk",
                    "/*!40101 SET NAMES latin1 */",
                ]);
                s.extend(cs.bytes());
            }
            11 => {
                let db = if self.rng.chance(50) {
                    self.names.protected.to_owned()
                } else {
                    self.names.other.to_owned()
                };
                let form = match self.rng.below(6) {
                    0 => format!("USE {db}"),
                    1 => format!("USE `{db}`"),
                    2 => format!("USE {db}#x"),
                    3 => format!("USE {db} -- c"),
                    4 => format!("use {db}/* c */"),
                    _ => format!("/*!USE {db}*/"),
                };
                s.extend(form.bytes());
            }
            12 => {
                let v = self.canary();
                let stmt = format!(
                    "SET STATEMENT sql_mode = '{}' FOR ",
                    self.rng.pick(&["ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", ""])
                );
                s.extend(stmt.bytes());
                let table = self.table();
                let col = self.column(true);
                s.extend(b"UPDATE ");
                s.extend(table);
                s.extend(b" SET ");
                s.extend(col);
                s.extend(b" = ");
                s.extend(self.literal(&v));
            }
            13 => {
                // Writes hidden in executable comments and quoted text that is not a string.
                let v = self.canary();
                let table = self.table();
                match self.rng.below(4) {
                    0 => s.extend(b"/*!"),
                    1 => s.extend(b"/*M!"),
                    2 => s.extend(b"/*!10000 "),
                    _ => s.extend(b"/*!100000 "),
                }
                s.extend(b"UPDATE ");
                s.extend(table);
                s.extend(format!(" SET ssn = '{v}' */").bytes());
            }
            14 => {
                let v = self.canary();
                let table = self.table();
                // A string under one sql_mode, a quote and a second statement under another.
                s.extend(b"SELECT '\\'; UPDATE ");
                s.extend(table);
                s.extend(format!(" SET ssn = '{v}'; -- '").bytes());
            }
            15 => {
                let table = self.table();
                let protected = self.rng.chance(70);
                let col = self.column(protected);
                s.extend(b"SELECT id, ");
                s.extend(col);
                s.extend(b" FROM ");
                s.extend(table);
                if self.rng.chance(40) {
                    s.extend(b" WHERE email = ");
                    let v = self.canary();
                    s.extend(self.literal(&v));
                }
            }
            16 => {
                let table = self.table();
                let (head, tail): (&[u8], &[u8]) = match self.rng.below(4) {
                    0 => (
                        b"SELECT * FROM (SELECT ssn AS x, email FROM ",
                        b") AS users",
                    ),
                    1 => (b"WITH c AS (SELECT ssn, email FROM ", b") SELECT * FROM c"),
                    2 => (b"SELECT (SELECT ssn FROM ", b" LIMIT 1) AS s"),
                    _ => (b"SELECT email FROM ", b" UNION ALL SELECT email FROM users"),
                };
                s.extend(head);
                s.extend(table);
                s.extend(tail);
            }
            17 => {
                let v = self.canary();
                let table = self.table();
                s.extend(b"ALTER TABLE ");
                s.extend(table);
                s.extend(format!(" ALTER COLUMN ssn SET DEFAULT '{v}'").bytes());
            }
            18 => {
                let table = self.table();
                s.extend(b"INSERT INTO ");
                s.extend(table);
                s.extend(
                    format!(
                        " (id, name) VALUES ({}, 'n')",
                        1000 + self.rng.below(100_000)
                    )
                    .bytes(),
                );
            }
            _ => s.extend(self.plain_write()),
        }
        s
    }

    /// A write of a canary with plain syntax, for the dynamic-SQL forms.
    fn plain_write(&mut self) -> Vec<u8> {
        let v = self.canary();
        let table = String::from_utf8_lossy(&self.table()).into_owned();
        let col = if self.rng.chance(50) { "ssn" } else { "email" };
        match self.rng.below(3) {
            0 => format!("UPDATE {table} SET {col} = '{v}'"),
            1 => format!(
                "INSERT INTO {table} (id, {col}) VALUES ({}, '{v}')",
                1000 + self.rng.below(100_000)
            ),
            _ => format!("REPLACE INTO {table} SET id = 1, {col} = '{v}'"),
        }
        .into_bytes()
    }

    /// One case: one to three statements in one COM_QUERY.
    fn case(&mut self) -> Vec<u8> {
        let n = 1 + self.rng.below(3);
        let mut out = Vec::new();
        for i in 0..n {
            if i > 0 {
                out.extend(if self.rng.chance(50) {
                    &b";"[..]
                } else {
                    b";\n"
                });
            }
            out.extend(self.statement());
        }
        out
    }
}

/// Does any form of a canary (raw, hex of either case, base64) occur in these bytes?
fn carries_canary(bytes: &[u8]) -> bool {
    carries(bytes, &[MARK_A, MARK_B, MARK_SECRET])
}

fn carries(bytes: &[u8], marks: &[&[u8]]) -> bool {
    let found = |b: &[u8]| {
        marks
            .iter()
            .any(|m| b.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
    };
    if found(bytes) {
        return true;
    }
    let trimmed: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let digits = trimmed.strip_prefix(b"0x").unwrap_or(&trimmed);
    if hex::decode(digits).is_ok_and(|h| found(&h)) {
        return true;
    }
    // Base64 at any of the alignments the marker can take.
    for skip in 0..4 {
        let Some(body) = trimmed.get(skip..) else {
            break;
        };
        let cut = body.len() - body.len() % 4;
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            if engine.decode(&body[..cut]).is_ok_and(|b| found(&b)) {
                return true;
            }
        }
    }
    false
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        Value::NULL => Vec::new(),
        other => other.as_sql(false).into_bytes(),
    }
}

/// Everything in the protected database, read directly: returns what is wrong, if anything.
/// Whether a stored users.email (binary) or users.ssn (base64) cell opens as its column.
fn opens(keyring: &Keyring, column: &str, stored: &[u8]) -> bool {
    let envelope = if column == "ssn" {
        match base64::engine::general_purpose::STANDARD.decode(stored) {
            Ok(e) => e,
            Err(_) => return false,
        }
    } else {
        stored.to_vec()
    };
    let scope = format!("users.{column}");
    let cell = myveil::crypto::cells::Cell {
        scope: &scope,
        table: "users",
        column,
        plaintext_type: if column == "ssn" {
            "char(40)"
        } else {
            "varchar(100)"
        },
        normalize: myveil::crypto::blind::Normalize::None,
        row_key: None,
    };
    myveil::crypto::cells::open(keyring, &cell, &envelope).is_ok()
}

async fn check_at_rest(root: &mut Conn, db: &str, keyring: &Keyring) -> Vec<String> {
    let mut bad = Vec::new();
    let tables: Vec<String> = root
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (db,),
        )
        .await
        .expect("tables");
    for t in tables {
        let rows: Vec<Row> = root
            .query(format!("SELECT * FROM `{db}`.`{t}`"))
            .await
            .expect("read directly");
        for row in rows {
            let cols = row.columns();
            for (i, c) in cols.iter().enumerate() {
                let v = value_bytes(&row[i]);
                let name = c.name_str().to_lowercase();
                let protected = t == "users" && (name == "email" || name == "ssn");
                // A cell that opens under the keys is sealed, whatever its base64 text
                // happens to spell (random ciphertext can hold "QZxB"); anything else in a
                // protected column is plaintext at rest.
                let sealed = protected && !v.is_empty() && opens(keyring, &name, &v);
                if !sealed && carries_canary(&v) {
                    bad.push(format!(
                        "canary at rest in {t}.{} (row {:?}): {:?}",
                        c.name_str(),
                        row.as_ref(0),
                        String::from_utf8_lossy(&v)
                    ));
                }
                if protected && !v.is_empty() && !sealed {
                    bad.push(format!(
                        "a protected cell {t}.{name} is not an envelope that opens"
                    ));
                }
            }
        }
    }
    let defaults: Vec<(String, Option<String>)> = root
        .exec(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?",
            (db,),
        )
        .await
        .expect("columns");
    for (c, d) in defaults {
        if d.is_some_and(|d| carries_canary(d.as_bytes())) {
            bad.push(format!("canary in the default of {c}"));
        }
    }
    bad
}

const POLICY: &str = r#"
[[column]]
database = "{db}"
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext", reporting = { mask = "email" } }

[[column]]
database = "{db}"
table = "users"
column = "ssn"
type = "char(40)"
storage = "base64"
roles = { app = "plaintext" }
"#;

const TABLE: &str = "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(50), \
    email VARBINARY(255), email_bidx BINARY(32), ssn VARCHAR(255), UNIQUE KEY (email_bidx))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_statements_never_leave_plaintext_at_rest() {
    let secs: u64 = std::env::var("MYVEIL_PROPERTY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let seed: u64 = std::env::var("MYVEIL_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("property seed: MYVEIL_PROPERTY_SEED={seed}");

    let protected = TestDb::create("prop").await;
    let other = TestDb::create("propother").await;
    let mut root = common::direct(None).await;
    for db in [&protected.name, &other.name] {
        root.query_drop(format!("USE `{db}`")).await.expect("use");
        root.query_drop(TABLE).await.expect("create");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(&policy_dir).expect("mkdir");
    std::fs::write(
        policy_dir.join("users.toml"),
        POLICY.replace("{db}", &protected.name),
    )
    .expect("policy");
    let keys = dir.path().join("keys");
    let keyring = Keyring::generate(
        &keys,
        &[
            (Purpose::Column, "*"),
            (Purpose::BlindIndex, "*"),
            (Purpose::Mask, "*"),
        ],
    )
    .expect("keys");
    let proxy = Proxy::start_with(Setup {
        extra: format!(
            "[protection]\npolicy_dir = \"{}\"\nkeys_dir = \"{}\"\n",
            policy_dir.display(),
            keys.display()
        ),
        ..Default::default()
    })
    .await;
    // A seeded secret, written through myveil.
    let mut seed_conn = proxy.app(Some(&protected.name)).await;
    seed_conn
        .query_drop(
            "INSERT INTO users (id, name, email, ssn) VALUES (1, 'one', 'QZXS0000-QZXSseed', 'QZXS0001-QZXSseed'), (2, 'two', NULL, NULL)",
        )
        .await
        .expect("seed");
    seed_conn.disconnect().await.ok();
    let mut bystander = proxy.app(Some(&other.name)).await;

    let mut generator = Gen {
        rng: Rng(seed),
        names: Names {
            protected: &protected.name,
            other: &other.name,
        },
        serial: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut cases, mut refused, mut server_errors, mut failures) =
        (0usize, 0usize, 0usize, Vec::new());
    let mut lost_sessions: Vec<String> = Vec::new();
    let mut conn: Option<(Conn, bool)> = None;
    // This session's cases so far, to show how it got where it failed.
    let mut history: Vec<String> = Vec::new();
    while Instant::now() < deadline && failures.len() < 10 {
        // A fresh session now and then, as either role, starting in either database.
        if conn.is_none() || generator.rng.chance(5) {
            if let Some((c, _)) = conn.take() {
                c.disconnect().await.ok();
            }
            let masked = generator.rng.chance(40);
            let db = if generator.rng.chance(70) {
                &protected.name
            } else {
                &other.name
            };
            let opts = if masked {
                proxy.opts(common::OTHER_USER, common::OTHER_PASSWORD)
            } else {
                proxy.app_opts()
            };
            match Conn::new(opts.db_name(Some(db))).await {
                Ok(c) => {
                    history = vec![format!(
                        "-- connected as {}",
                        if masked { "reporting" } else { "app" }
                    )];
                    conn = Some((c, masked));
                }
                Err(e) => {
                    failures.push(format!("cannot connect through myveil: {e}"));
                    break;
                }
            }
        }
        let Some((c, masked)) = conn.as_mut() else {
            break;
        };
        let sql = generator.case();
        cases += 1;
        let shown = String::from_utf8_lossy(&sql).into_owned();
        history.push(shown.clone());
        let mut lost = false;
        let answer = if generator.rng.chance(15) && !sql.contains(&b';') {
            // The binary protocol: prepared, then run with no parameters.
            match c.prep(sql.as_slice()).await {
                Ok(st) => c.exec_iter(st, ()).await.map(|_| ()),
                Err(e) => Err(e),
            }
        } else {
            match c.query_iter(sql.as_slice()).await {
                Ok(mut results) => {
                    let mut out = Ok(());
                    loop {
                        match results.collect::<Row>().await {
                            Ok(rows) => {
                                if *masked {
                                    for row in &rows {
                                        for v in row.clone().unwrap() {
                                            if carries(&value_bytes(&v), &[MARK_SECRET]) {
                                                failures.push(format!(
                                                    "the masked role got the secret back: {shown}"
                                                ));
                                            }
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                out = Err(e);
                                break;
                            }
                        }
                        if results.is_empty() {
                            break;
                        }
                    }
                    out
                }
                Err(e) => Err(e),
            }
        };
        match answer {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.message.starts_with("myveil:") => {
                refused += 1;
                if std::env::var_os("MYVEIL_PROPERTY_SHOW").is_some() {
                    eprintln!("REFUSED {} <- {shown:?}", e.message);
                }
            }
            Err(mysql_async::Error::Server(_)) => server_errors += 1,
            Err(e) => {
                // The session ended: a client library that cannot follow a charset, say.
                // myveil itself must still serve (the bystander checks that).
                lost = true;
                lost_sessions.push(format!("{e}: {shown}"));
            }
        }
        if lost {
            conn = None;
        }
        let problems = check_at_rest(&mut root, &protected.name, &keyring).await;
        if !problems.is_empty() {
            failures.push(format!(
                "{} (seed {seed}), in the session:\n  {}",
                problems.join("; "),
                history.join("\n  ")
            ));
            break;
        }
        let alive: Result<Option<i64>, _> = bystander.query_first("SELECT 1").await;
        if !matches!(alive, Ok(Some(1))) {
            failures.push(format!("the bystander session died after: {shown}"));
            break;
        }
        // Keep the tables small and the ssn default unset, so each check stays quick.
        if cases % 50 == 0 {
            root.query_drop(format!(
                "DELETE FROM `{}`.users WHERE id > 2",
                protected.name
            ))
            .await
            .expect("trim");
        }
    }
    if let Some((c, _)) = conn.take() {
        c.disconnect().await.ok();
    }
    bystander.disconnect().await.ok();
    root.disconnect().await.ok();
    eprintln!(
        "property: {cases} cases: {refused} refused by myveil, {server_errors} failed on the server, {} sessions lost, {} ran",
        lost_sessions.len(),
        cases - refused - server_errors - lost_sessions.len()
    );
    for l in lost_sessions.iter().take(5) {
        eprintln!("  lost: {l}");
    }
    protected.drop_now().await;
    other.drop_now().await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases > 100, "only {cases} cases ran");
    assert!(
        refused + server_errors < cases,
        "every case was refused: the generator reached nothing"
    );
}
