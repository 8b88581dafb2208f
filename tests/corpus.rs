//! An adversarial corpus against myveil's guard: hundreds of statements that try to make the
//! server read a text differently from the proxy (sql_mode, character sets, comments, the
//! current database, dynamic SQL, DDL, write and read shapes, existence oracles, bounds),
//! each run as every role through the real `myveil serve` binary.
//!
//! After every case and role the database is checked directly: every protected cell is NULL
//! or an envelope that opens as its column, no canary (raw, hex or base64) is anywhere in the
//! scratch databases (rows, column defaults, check clauses, view/routine/trigger/event bodies),
//! the proxy is alive and a bystander connection still answers. Every result set and error a
//! role gets is checked for envelopes and for canaries of columns the role may not read.
//! Some statements are legitimate and must succeed (with the right plaintext for app). The
//! log of the proxy (RUST_LOG=trace) must not hold a canary at the end. Failures are
//! collected and reported together.

mod common;

#[path = "corpus/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::TestDb;
use mysql_async::prelude::Queryable;
use myveil::crypto::blind::Normalize;
use myveil::crypto::cells::{self, Cell};
use myveil::crypto::keyring::{Keyring, Purpose};
use myveil::wire::PacketConn;

// ---------------------------------------------------------------------------------------
// Roles, columns, policy
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Plaintext everything.
    App,
    /// Masks, plaintext full_name/card/body, denied ssn.
    Support,
    /// Hash masks, null, fixed, full; denied ssn.
    Analyst,
    /// Ciphertext everything, no writes.
    Auditor,
    /// May write every column, reads masks only.
    Writer,
    /// Ciphertext everything and may write (a dump restorer).
    Restorer,
}

pub const ROLES: [Role; 6] = [
    Role::App,
    Role::Support,
    Role::Analyst,
    Role::Auditor,
    Role::Writer,
    Role::Restorer,
];

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::App => "app",
            Role::Support => "support",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Writer => "writer",
            Role::Restorer => "restorer",
        }
    }

    fn password(self) -> String {
        format!("{}-corpus-password-1", self.name())
    }

    /// Whether the role may read the column's plaintext.
    pub fn plain(self, col: Col) -> bool {
        match self {
            Role::App => true,
            Role::Support => matches!(col, Col::FullName | Col::Card | Col::Body),
            _ => false,
        }
    }

    /// Whether the role reads every column as ciphertext (envelopes are its view).
    pub fn envelopes(self) -> bool {
        matches!(self, Role::Auditor | Role::Restorer)
    }

    /// Whether the role reads email and full_name as keyed hashes.
    pub fn hashes(self) -> bool {
        matches!(self, Role::Analyst | Role::Writer)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Col {
    Email,
    FullName,
    Phone,
    Ssn,
    Card,
    Body,
}

pub const COLS: [Col; 6] = [
    Col::Email,
    Col::FullName,
    Col::Phone,
    Col::Ssn,
    Col::Card,
    Col::Body,
];

impl Col {
    pub fn tag(self) -> &'static str {
        match self {
            Col::Email => "em",
            Col::FullName => "fn",
            Col::Phone => "ph",
            Col::Ssn => "ssn",
            Col::Card => "card",
            Col::Body => "body",
        }
    }

    fn from_tag(t: &str) -> Option<Col> {
        COLS.into_iter().find(|c| c.tag() == t)
    }

    fn table(self) -> &'static str {
        match self {
            Col::Card => "orders",
            Col::Body => "comments",
            _ => "users",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Col::Email => "email",
            Col::FullName => "full_name",
            Col::Phone => "phone",
            Col::Ssn => "ssn",
            Col::Card => "card_last4",
            Col::Body => "body",
        }
    }

    fn plain_type(self) -> &'static str {
        match self {
            Col::Email => "varchar(100)",
            Col::FullName => "varchar(60)",
            Col::Phone => "varchar(40)",
            Col::Ssn => "varchar(64)",
            Col::Card => "varchar(40)",
            Col::Body => "text",
        }
    }

    fn access(self, role: Role) -> &'static str {
        use Role::*;
        match (self, role) {
            (_, App) => "\"plaintext\"",
            (_, Auditor | Restorer) => "\"ciphertext\"",
            (Col::Email, Support) => "{ mask = \"email\" }",
            (Col::Email | Col::FullName, Analyst | Writer) => "{ mask = \"hash\" }",
            (Col::FullName | Col::Card | Col::Body, Support) => "\"plaintext\"",
            (Col::Phone, Support | Writer) => "{ mask = \"last-four\" }",
            (Col::Phone, Analyst) => "{ mask = \"null\" }",
            (Col::Ssn, Support | Analyst) => "\"deny\"",
            (Col::Ssn, Writer) => "{ mask = \"fixed\", value = \"***-**-****\" }",
            (Col::Card, Analyst | Writer) => "{ mask = \"full\" }",
            (Col::Body, Analyst) => "{ mask = \"fixed\", value = \"[redacted]\" }",
            (Col::Body, Writer) => "{ mask = \"null\" }",
        }
    }
}

fn policy_toml(db: &str) -> String {
    let mut out = String::new();
    for col in COLS {
        let roles: Vec<String> = ROLES
            .iter()
            .map(|r| format!("{} = {}", r.name(), col.access(*r)))
            .collect();
        out.push_str(&format!(
            "[[column]]\ndatabase = \"{db}\"\ntable = \"{}\"\ncolumn = \"{}\"\ntype = \"{}\"\n",
            col.table(),
            col.column(),
            col.plain_type()
        ));
        if col == Col::Ssn {
            out.push_str("storage = \"base64\"\n");
        }
        if col == Col::Email {
            out.push_str("blind_index = \"email_bidx\"\nnormalize = \"trim-lowercase\"\n");
        }
        out.push_str(&format!(
            "roles = {{ {} }}\nwrite = [\"writer\", \"restorer\"]\n\n",
            roles.join(", ")
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Canaries and what counts as a leak
// ---------------------------------------------------------------------------------------

pub fn canary(col: Col, origin: &str, rid: &str) -> String {
    match col {
        Col::Email => format!("CANARY-em-{origin}-{rid}@example.com"),
        c => format!("CANARY-{}-{origin}-{rid}", c.tag()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    if needle.is_empty() || hay.len() < needle.len() {
        return out;
    }
    let first = needle[0].to_ascii_lowercase();
    for i in 0..=hay.len() - needle.len() {
        if hay[i].to_ascii_lowercase() == first
            && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            out.push(i);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Hit {
    form: &'static str,
    token: String,
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@' | b'.')
}

fn raw_hits(bytes: &[u8], form: &'static str, out: &mut Vec<Hit>) {
    for at in find_ci(bytes, b"canary-") {
        let end = bytes[at..]
            .iter()
            .take(96)
            .position(|b| !token_char(*b))
            .map_or((at + 96).min(bytes.len()), |p| at + p);
        out.push(Hit {
            form,
            token: String::from_utf8_lossy(&bytes[at..end]).to_ascii_lowercase(),
        });
    }
}

/// Maximal runs of bytes satisfying `f`, at least `min` long.
fn runs(bytes: &[u8], f: impl Fn(u8) -> bool, min: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (f(*b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= min {
                    out.push(&bytes[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start
        && bytes.len() - s >= min
    {
        out.push(&bytes[s..]);
    }
    out
}

fn unhex(run: &[u8]) -> Vec<u8> {
    let v = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    };
    run.chunks_exact(2)
        .map(|p| (v(p[0]) << 4) | v(p[1]))
        .collect()
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes base64 characters (no padding), ignoring a trailing partial sextet.
fn unb64(run: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(run.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in run {
        let Some(v) = b64_value(c) else { break };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Every canary in `bytes`: raw (any case), hex (either case, either alignment) or base64
/// (any alignment, line breaks ignored).
fn canary_hits(bytes: &[u8]) -> Vec<Hit> {
    let mut out = Vec::new();
    raw_hits(bytes, "raw", &mut out);
    for run in runs(bytes, |b| b.is_ascii_hexdigit(), 14) {
        for parity in 0..2 {
            raw_hits(&unhex(&run[parity..]), "hex", &mut out);
        }
    }
    let cleaned: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\n' | b'\r'))
        .collect();
    for run in runs(&cleaned, |b| b64_value(b).is_some(), 10) {
        for off in 0..4.min(run.len()) {
            raw_hits(&unb64(&run[off..]), "base64", &mut out);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Seed,
    Run(u64),
    Unknown,
}

/// The column and origin a canary token names (`canary-ssn-r12k0-…`).
fn classify(token: &str) -> (Option<Col>, Origin) {
    let rest = token.strip_prefix("canary-").unwrap_or(token);
    let mut parts = rest.splitn(3, '-');
    let col = parts.next().and_then(Col::from_tag);
    let origin = match parts.next() {
        Some(o) if parts.next().is_some() => {
            if let Some(n) = o.strip_prefix('s') {
                if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() {
                    Origin::Seed
                } else {
                    Origin::Unknown
                }
            } else if let Some(r) = o.strip_prefix('r') {
                match r.split_once('k') {
                    Some((run, k)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()) => {
                        run.parse().map_or(Origin::Unknown, Origin::Run)
                    }
                    _ => Origin::Unknown,
                }
            } else {
                Origin::Unknown
            }
        }
        _ => Origin::Unknown,
    };
    (col, origin)
}

fn envelope_hit(bytes: &[u8]) -> Option<&'static str> {
    if contains(bytes, b"MV\x01\x01") {
        Some("raw envelope")
    } else if contains(bytes, b"TVYBAQ") {
        Some("base64 envelope")
    } else if !find_ci(bytes, b"4d560101").is_empty() {
        Some("hex envelope")
    } else {
        None
    }
}

fn printable(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &c in b.iter().take(max) {
        match c {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > max {
        s.push_str(&format!("…(+{} bytes)", b.len() - max));
    }
    s
}

// ---------------------------------------------------------------------------------------
// A small MySQL client: handshake with any collation, text and binary protocol, COM_INIT_DB,
// LOAD DATA LOCAL, multi-results.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Ok {
        affected: u64,
    },
    Rows {
        cols: Vec<Vec<u8>>,
        rows: Vec<Vec<Option<Vec<u8>>>>,
    },
    Err {
        code: u16,
        msg: String,
    },
}

struct Client {
    c: PacketConn,
    /// How long one reply may take.
    limit: Duration,
}

const CAPS: u32 = 0x0000_0001 // LONG_PASSWORD
    | 0x0000_0004 // LONG_FLAG
    | 0x0000_0080 // LOCAL_FILES
    | 0x0000_0200 // PROTOCOL_41
    | 0x0000_2000 // TRANSACTIONS
    | 0x0000_8000 // SECURE_CONNECTION
    | 0x0001_0000 // MULTI_STATEMENTS
    | 0x0002_0000 // MULTI_RESULTS
    | 0x0004_0000 // PS_MULTI_RESULTS
    | 0x0008_0000; // PLUGIN_AUTH

const READ_LIMIT: usize = 256 << 20;

fn lenenc(b: &[u8]) -> Option<(u64, &[u8])> {
    let (&f, rest) = b.split_first()?;
    match f {
        0..=0xFA => Some((u64::from(f), rest)),
        0xFC => Some((
            u64::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        )),
        0xFD => {
            let v = rest.get(..3)?;
            Some((
                u64::from(v[0]) | (u64::from(v[1]) << 8) | (u64::from(v[2]) << 16),
                &rest[3..],
            ))
        }
        0xFE => {
            let v: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            Some((u64::from_le_bytes(v), &rest[8..]))
        }
        _ => None,
    }
}

fn lenenc_str(b: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    if b.first() == Some(&0xFB) {
        return Some((None, &b[1..]));
    }
    let (n, rest) = lenenc(b)?;
    let n = usize::try_from(n).ok()?;
    Some((Some(rest.get(..n)?), &rest[n..]))
}

fn err_item(p: &[u8]) -> Item {
    let code = u16::from_le_bytes([
        p.get(1).copied().unwrap_or(0),
        p.get(2).copied().unwrap_or(0),
    ]);
    let msg = if p.get(3) == Some(&b'#') {
        p.get(9..).unwrap_or_default()
    } else {
        p.get(3..).unwrap_or_default()
    };
    Item::Err {
        code,
        msg: String::from_utf8_lossy(msg).into_owned(),
    }
}

struct ColDef {
    name: Vec<u8>,
    ty: u8,
    unsigned: bool,
}

fn col_def(p: &[u8]) -> Option<ColDef> {
    let mut rest = p;
    let mut name = Vec::new();
    for i in 0..6 {
        let (v, r) = lenenc_str(rest)?;
        if i == 4 {
            name = v.unwrap_or_default().to_vec();
        }
        rest = r;
    }
    let (_, rest) = lenenc(rest)?;
    let ty = *rest.get(6)?;
    let flags = u16::from_le_bytes([*rest.get(7)?, *rest.get(8)?]);
    Some(ColDef {
        name,
        ty,
        unsigned: flags & 0x20 != 0,
    })
}

/// One binary-protocol value as text.
fn binary_value(ty: u8, unsigned: bool, b: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let fixed = |n: usize| b.get(..n).map(|v| (v, &b[n..]));
    Some(match ty {
        0x01 => {
            let (v, r) = fixed(1)?;
            let s = if unsigned {
                v[0].to_string()
            } else {
                (v[0] as i8).to_string()
            };
            (s.into_bytes(), r)
        }
        0x02 | 0x0D => {
            let (v, r) = fixed(2)?;
            let x = u16::from_le_bytes([v[0], v[1]]);
            let s = if unsigned {
                x.to_string()
            } else {
                (x as i16).to_string()
            };
            (s.into_bytes(), r)
        }
        0x03 | 0x09 => {
            let (v, r) = fixed(4)?;
            let x = u32::from_le_bytes(v.try_into().ok()?);
            let s = if unsigned {
                x.to_string()
            } else {
                (x as i32).to_string()
            };
            (s.into_bytes(), r)
        }
        0x08 => {
            let (v, r) = fixed(8)?;
            let x = u64::from_le_bytes(v.try_into().ok()?);
            let s = if unsigned {
                x.to_string()
            } else {
                (x as i64).to_string()
            };
            (s.into_bytes(), r)
        }
        0x04 => {
            let (v, r) = fixed(4)?;
            (
                f32::from_le_bytes(v.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
                r,
            )
        }
        0x05 => {
            let (v, r) = fixed(8)?;
            (
                f64::from_le_bytes(v.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
                r,
            )
        }
        0x06 => (Vec::new(), b),
        0x07 | 0x0A | 0x0C | 0x0B => {
            let n = usize::from(*b.first()?);
            let v = b.get(1..1 + n)?;
            (hex::encode(v).into_bytes(), &b[1 + n..])
        }
        _ => {
            let (v, r) = lenenc_str(b)?;
            (v.unwrap_or_default().to_vec(), r)
        }
    })
}

impl Client {
    async fn connect(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&[u8]>,
        collation: u8,
    ) -> Result<Client, String> {
        use myveil::wire::auth::{Plugin, scramble};
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
        let mut c = PacketConn::new(myveil::wire::Stream::Plain(tcp));
        let greeting = timeout(c.read_packet(1 << 16)).await?;
        if greeting.payload.first() == Some(&0xFF) {
            return Err(format!("greeting error: {:?}", err_item(&greeting.payload)));
        }
        let g = myveil::wire::handshake::parse_backend_greeting(&greeting.payload)
            .map_err(|e| format!("greeting: {e}"))?;
        let plugin = Plugin::from_name(&g.plugin).unwrap_or(Plugin::Native);
        let mut caps = CAPS;
        if db.is_some() {
            caps |= 0x0000_0008;
        }
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(collation);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let auth = scramble(plugin, &g.salt, password.as_bytes());
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        if let Some(db) = db {
            p.extend_from_slice(db);
            p.push(0);
        }
        p.extend_from_slice(plugin.name().as_bytes());
        p.push(0);
        c.write_packet(1, &p)
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let r = timeout(c.read_packet(1 << 16)).await?;
            match r.payload.first() {
                Some(0x00) => {
                    return Ok(Client {
                        c,
                        limit: Duration::from_secs(5),
                    });
                }
                Some(0xFF) => return Err(format!("login refused: {:?}", err_item(&r.payload))),
                Some(0xFE) => {
                    let body = &r.payload[1..];
                    let nul = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                    let plugin = Plugin::from_name(&body[..nul]).unwrap_or(Plugin::Native);
                    let mut salt = body.get(nul + 1..).unwrap_or_default().to_vec();
                    if salt.last() == Some(&0) {
                        salt.pop();
                    }
                    let reply = scramble(plugin, &salt, password.as_bytes());
                    c.write_packet(r.seq.wrapping_add(1), &reply)
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                Some(0x01) => continue,
                _ => return Err("unexpected login reply".into()),
            }
        }
    }

    async fn send(&mut self, cmd: u8, body: &[u8]) -> Result<(), String> {
        let mut p = Vec::with_capacity(body.len() + 1);
        p.push(cmd);
        p.extend_from_slice(body);
        self.c
            .write_packet(0, &p)
            .await
            .map(drop)
            .map_err(|e| format!("send: {e}"))
    }

    async fn read(&mut self) -> Result<(Vec<u8>, u8), String> {
        let p = match tokio::time::timeout(self.limit, self.c.read_packet(READ_LIMIT)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(format!("connection: {e}")),
            Err(_) => return Err(format!("no reply within {} s", self.limit.as_secs())),
        };
        Ok((p.payload.to_vec(), p.seq))
    }

    /// Reads the replies to one command: OK packets, result sets, and an error that ends them.
    async fn results(&mut self, binary: bool, local: Option<&[u8]>) -> Result<Vec<Item>, String> {
        let mut items = Vec::new();
        loop {
            let (p, seq) = self.read().await?;
            match p.first().copied() {
                Some(0x00) if p.len() < 0xFFFFFF => {
                    let (affected, rest) = lenenc(&p[1..]).ok_or("bad OK")?;
                    let (_, rest) = lenenc(rest).ok_or("bad OK")?;
                    let status = u16::from_le_bytes([
                        rest.first().copied().unwrap_or(0),
                        rest.get(1).copied().unwrap_or(0),
                    ]);
                    items.push(Item::Ok { affected });
                    if status & 0x0008 == 0 {
                        return Ok(items);
                    }
                }
                Some(0xFF) => {
                    items.push(err_item(&p));
                    return Ok(items);
                }
                Some(0xFB) => {
                    // LOCAL INFILE request: send the file (or nothing), then the empty packet.
                    let mut s = seq.wrapping_add(1);
                    if let Some(data) = local
                        && !data.is_empty()
                    {
                        s = self
                            .c
                            .write_packet(s, data)
                            .await
                            .map_err(|e| format!("send: {e}"))?;
                    }
                    self.c
                        .write_packet(s, &[])
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                Some(_) => {
                    let (n, _) = lenenc(&p).ok_or("bad column count")?;
                    let mut defs = Vec::new();
                    for _ in 0..n {
                        let (d, _) = self.read().await?;
                        defs.push(col_def(&d).ok_or("bad column definition")?);
                    }
                    let (eof, _) = self.read().await?;
                    if eof.first() != Some(&0xFE) {
                        return Err("missing EOF after column definitions".into());
                    }
                    let mut rows = Vec::new();
                    let status;
                    loop {
                        let (r, _) = self.read().await?;
                        if r.first() == Some(&0xFE) && r.len() < 9 {
                            status = u16::from_le_bytes([
                                r.get(3).copied().unwrap_or(0),
                                r.get(4).copied().unwrap_or(0),
                            ]);
                            break;
                        }
                        if r.first() == Some(&0xFF) {
                            items.push(Item::Rows {
                                cols: defs.iter().map(|d| d.name.clone()).collect(),
                                rows,
                            });
                            items.push(err_item(&r));
                            return Ok(items);
                        }
                        rows.push(if binary {
                            binary_row(&r, &defs).ok_or("bad binary row")?
                        } else {
                            text_row(&r, defs.len()).ok_or("bad text row")?
                        });
                    }
                    items.push(Item::Rows {
                        cols: defs.iter().map(|d| d.name.clone()).collect(),
                        rows,
                    });
                    if status & 0x0008 == 0 {
                        return Ok(items);
                    }
                }
                None => return Err("empty packet".into()),
            }
        }
    }

    async fn query(&mut self, sql: &[u8], local: Option<&[u8]>) -> Result<Vec<Item>, String> {
        self.send(0x03, sql).await?;
        self.results(false, local).await
    }

    async fn init_db(&mut self, db: &[u8]) -> Result<Vec<Item>, String> {
        self.send(0x02, db).await?;
        self.results(false, None).await
    }

    /// Prepares and executes with string parameters (None: NULL), then closes.
    async fn exec(&mut self, sql: &[u8], params: &[Option<Vec<u8>>]) -> Result<Vec<Item>, String> {
        self.send(0x16, sql).await?;
        let (p, _) = self.read().await?;
        if p.first() == Some(&0xFF) {
            return Ok(vec![err_item(&p)]);
        }
        if p.len() < 12 || p[0] != 0 {
            return Err("bad prepare reply".into());
        }
        let id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
        let ncols = u16::from_le_bytes([p[5], p[6]]);
        let nparams = u16::from_le_bytes([p[7], p[8]]);
        for n in [nparams, ncols] {
            if n > 0 {
                for _ in 0..n {
                    self.read().await?;
                }
                let (eof, _) = self.read().await?;
                if eof.first() != Some(&0xFE) {
                    return Err("missing EOF after prepare definitions".into());
                }
            }
        }
        let n = usize::from(nparams);
        let mut e = Vec::new();
        e.extend_from_slice(&id.to_le_bytes());
        e.push(0);
        e.extend_from_slice(&1u32.to_le_bytes());
        if n > 0 {
            let mut bitmap = vec![0u8; n.div_ceil(8)];
            for i in 0..n {
                if params.get(i).is_none_or(Option::is_none) {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            e.extend_from_slice(&bitmap);
            e.push(1);
            for _ in 0..n {
                e.extend_from_slice(&[0xFD, 0x00]);
            }
            for i in 0..n {
                if let Some(Some(v)) = params.get(i) {
                    put_lenenc(&mut e, v);
                }
            }
        }
        self.send(0x17, &e).await?;
        let items = self.results(true, None).await?;
        self.send(0x19, &id.to_le_bytes()).await?;
        Ok(items)
    }

    async fn quit(mut self) {
        let _ = self.send(0x01, &[]).await;
    }
}

fn put_lenenc(out: &mut Vec<u8>, v: &[u8]) {
    let n = v.len();
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xFC);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        out.push(0xFD);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    out.extend_from_slice(v);
}

fn text_row(p: &[u8], n: usize) -> Option<Vec<Option<Vec<u8>>>> {
    let mut rest = p;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let (v, r) = lenenc_str(rest)?;
        row.push(v.map(<[u8]>::to_vec));
        rest = r;
    }
    Some(row)
}

fn binary_row(p: &[u8], defs: &[ColDef]) -> Option<Vec<Option<Vec<u8>>>> {
    let bitmap_len = (defs.len() + 7 + 2) / 8;
    let bitmap = p.get(1..1 + bitmap_len)?;
    let mut rest = p.get(1 + bitmap_len..)?;
    let mut row = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            row.push(None);
            continue;
        }
        let (v, r) = binary_value(d.ty, d.unsigned, rest)?;
        row.push(Some(v));
        rest = r;
    }
    Some(row)
}

async fn timeout<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("connection: {e}")),
        Err(_) => Err("no reply within 10 s".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Step {
    /// COM_QUERY (template bytes).
    Q(Vec<u8>),
    /// COM_STMT_PREPARE + EXECUTE with string parameters (None: NULL).
    X(Vec<u8>, Vec<Option<String>>),
    /// COM_INIT_DB.
    InitDb(Vec<u8>),
    /// COM_QUERY answering a LOAD DATA LOCAL request with this content.
    Local(Vec<u8>, Vec<u8>),
    /// A step on a second session of the same role, database and collation (opened at its
    /// first step), interleaved with the first: in multiplexed mode the two share one
    /// backend connection, each with its own state.
    Second(Box<Step>),
}

impl Step {
    /// The step with a text statement prepared and executed instead (`Case::binary`).
    fn prepared(&self) -> Step {
        match self {
            Step::Q(q) => Step::X(q.clone(), Vec::new()),
            Step::Second(inner) => Step::Second(Box::new(inner.prepared())),
            other => other.clone(),
        }
    }
}

/// One executed step: what was sent (for reports) and what came back.
#[derive(Clone, Debug)]
pub struct StepOut {
    pub sent: String,
    pub items: Vec<Item>,
    pub io_error: Option<String>,
}

pub type CheckFn = fn(Role, &[StepOut]) -> Option<String>;

#[derive(Clone)]
pub struct Case {
    pub class: &'static str,
    pub name: String,
    pub setup: Vec<String>,
    /// Run directly as root after the proxy last read the schema (an object it does not know yet).
    pub late_setup: Vec<String>,
    pub steps: Vec<Step>,
    pub db: Option<String>,
    pub collation: u8,
    pub must: Vec<Role>,
    pub expect: Vec<(Role, Vec<Vec<Option<String>>>)>,
    pub oracle: Option<Col>,
    pub roles: Vec<Role>,
    pub check: Option<CheckFn>,
}

pub fn case(class: &'static str, name: impl Into<String>) -> Case {
    Case {
        class,
        name: name.into(),
        setup: Vec::new(),
        late_setup: Vec::new(),
        steps: Vec::new(),
        db: Some("{{A}}".into()),
        collation: 45,
        must: Vec::new(),
        expect: Vec::new(),
        oracle: None,
        roles: ROLES.to_vec(),
        check: None,
    }
}

impl Case {
    pub fn q(mut self, sql: &str) -> Self {
        self.steps.push(Step::Q(sql.as_bytes().to_vec()));
        self
    }

    pub fn qb(mut self, sql: &[u8]) -> Self {
        self.steps.push(Step::Q(sql.to_vec()));
        self
    }

    pub fn x(mut self, sql: &str, params: &[Option<&str>]) -> Self {
        self.steps.push(Step::X(
            sql.as_bytes().to_vec(),
            params.iter().map(|p| p.map(str::to_owned)).collect(),
        ));
        self
    }

    /// A COM_QUERY on the case's second session (`Step::Second`).
    pub fn q2(self, sql: &str) -> Self {
        self.qb2(sql.as_bytes())
    }

    pub fn qb2(mut self, sql: &[u8]) -> Self {
        self.steps
            .push(Step::Second(Box::new(Step::Q(sql.to_vec()))));
        self
    }

    pub fn init_db(mut self, db: &str) -> Self {
        self.steps.push(Step::InitDb(db.as_bytes().to_vec()));
        self
    }

    pub fn local(mut self, sql: &str, content: &str) -> Self {
        self.steps.push(Step::Local(
            sql.as_bytes().to_vec(),
            content.as_bytes().to_vec(),
        ));
        self
    }

    /// A statement run directly as root in the protected database before each run.
    pub fn root(mut self, sql: &str) -> Self {
        self.setup.push(sql.to_owned());
        self
    }

    /// A statement run directly as root right before the case, after the proxy's last schema
    /// read (an object created less than a refresh interval ago).
    pub fn late_root(mut self, sql: &str) -> Self {
        self.late_setup.push(sql.to_owned());
        self
    }

    pub fn db(mut self, db: Option<&str>) -> Self {
        self.db = db.map(str::to_owned);
        self
    }

    pub fn coll(mut self, collation: u8) -> Self {
        self.collation = collation;
        self
    }

    pub fn must(mut self, roles: &[Role]) -> Self {
        self.must.extend_from_slice(roles);
        self
    }

    /// The rows the role's last result set must hold (templates allowed; None is NULL).
    pub fn expect(mut self, role: Role, rows: &[&[Option<&str>]]) -> Self {
        self.expect.push((
            role,
            rows.iter()
                .map(|r| r.iter().map(|v| v.map(str::to_owned)).collect())
                .collect(),
        ));
        if !self.must.contains(&role) {
            self.must.push(role);
        }
        self
    }

    pub fn oracle(mut self, col: Col) -> Self {
        self.oracle = Some(col);
        self
    }

    pub fn roles(mut self, roles: &[Role]) -> Self {
        self.roles = roles.to_vec();
        self
    }

    pub fn check(mut self, f: CheckFn) -> Self {
        self.check = Some(f);
        self
    }

    /// The same case with every text statement prepared and executed (binary protocol).
    pub fn binary(&self) -> Case {
        let mut c = self.clone();
        c.name = format!("{} [binary]", self.name);
        c.steps = self.steps.iter().map(Step::prepared).collect();
        c
    }
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

struct Tpl<'a> {
    a: &'a str,
    b: &'a str,
    rid: &'a str,
    run: u64,
    /// The guessed column and whether the guess is an existing value.
    guess: Option<(Col, bool)>,
    outfile: String,
    keys: String,
    envelopes: &'a BTreeMap<(Col, u32), Vec<u8>>,
    own: std::cell::RefCell<BTreeSet<String>>,
    own_envelopes: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl Tpl<'_> {
    fn fresh(&self, col: Col, k: u32) -> String {
        canary(col, &format!("r{}k{k}", self.run), self.rid)
    }

    fn guess_value(&self, col: Col) -> String {
        match self.guess {
            Some((_, true)) => canary(col, "s1", self.rid),
            _ => self.fresh(col, 9),
        }
    }

    fn value(&self, key: &str) -> String {
        let parts: Vec<&str> = key.split(':').collect();
        let col = |i: usize| {
            parts
                .get(i)
                .and_then(|t| Col::from_tag(t))
                .unwrap_or_else(|| panic!("template {{{{{key}}}}}: no column"))
        };
        let row = |i: usize| {
            parts
                .get(i)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1)
        };
        let canary_value = |kind: &str, at: usize| -> String {
            match kind {
                "c" => self.fresh(col(at), 0),
                "c2" => self.fresh(col(at), 1),
                "c3" => self.fresh(col(at), 2),
                "s" => canary(col(at), &format!("s{}", row(at + 1)), self.rid),
                "g" => self.guess_value(col(at)),
                _ => panic!("template {{{{{key}}}}}"),
            }
        };
        let remember = |v: &str| {
            self.own.borrow_mut().insert(v.to_ascii_lowercase());
        };
        match parts[0] {
            "A" => self.a.to_owned(),
            "B" => self.b.to_owned(),
            "syn" => format!("{}_syn", self.a),
            "run" => self.run.to_string(),
            "p" => format!("plain-r{}-{}", self.run, self.rid),
            "twin" => format!("twin-{}@example.com", self.rid),
            "outfile" => self.outfile.clone(),
            "keys" => self.keys.clone(),
            "c" | "c2" | "c3" | "s" | "g" => {
                let v = canary_value(parts[0], 1);
                remember(&v);
                v
            }
            "x" => {
                let v = canary_value(parts[1], 2);
                remember(&v);
                hex::encode_upper(v)
            }
            "b64" => {
                let v = canary_value(parts[1], 2);
                remember(&v);
                base64::engine::general_purpose::STANDARD.encode(v)
            }
            "bits" => {
                let v = canary_value(parts[1], 2);
                remember(&v);
                v.bytes().map(|b| format!("{b:08b}")).collect()
            }
            "env" => {
                // The stored cell of a seeded row, as hex (the base64 text for ssn).
                let c = col(1);
                let raw = self
                    .envelopes
                    .get(&(c, row(2)))
                    .unwrap_or_else(|| panic!("no seeded envelope for {key}"))
                    .clone();
                self.own_envelopes.borrow_mut().push(raw.clone());
                hex::encode_upper(raw)
            }
            "stored" => {
                // The stored cell of a seeded row as it is (a text column's base64).
                let c = col(1);
                let raw = self
                    .envelopes
                    .get(&(c, row(2)))
                    .unwrap_or_else(|| panic!("no seeded envelope for {key}"))
                    .clone();
                self.own_envelopes.borrow_mut().push(raw.clone());
                String::from_utf8(raw).expect("a base64 cell")
            }
            _ => panic!("unknown template {{{{{key}}}}}"),
        }
    }

    fn expand(&self, t: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(t.len() + 64);
        let mut i = 0;
        while i < t.len() {
            if t[i..].starts_with(b"{{")
                && let Some(end) = t[i + 2..].windows(2).position(|w| w == b"}}")
            {
                let key = String::from_utf8_lossy(&t[i + 2..i + 2 + end]).into_owned();
                out.extend_from_slice(self.value(&key).as_bytes());
                i += end + 4;
            } else {
                out.push(t[i]);
                i += 1;
            }
        }
        out
    }

    fn expand_str(&self, t: &str) -> String {
        String::from_utf8_lossy(&self.expand(t.as_bytes())).into_owned()
    }
}

// ---------------------------------------------------------------------------------------
// The environment: databases, the proxy process, checks
// ---------------------------------------------------------------------------------------

const A_TABLES: &[(&str, &str)] = &[
    (
        "users",
        "CREATE TABLE `users` (id INT PRIMARY KEY AUTO_INCREMENT, email VARBINARY(400), \
         email_bidx BINARY(32), full_name VARBINARY(300), phone VARBINARY(200), ssn VARCHAR(300), \
         note VARCHAR(200), UNIQUE KEY email_bidx (email_bidx))",
    ),
    (
        "orders",
        "CREATE TABLE `orders` (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT NOT NULL, \
         total DECIMAL(10,2) NOT NULL DEFAULT 0, card_last4 VARBINARY(200), note VARCHAR(200), KEY (user_id))",
    ),
    (
        "comments",
        "CREATE TABLE `comments` (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT NOT NULL, \
         body VARBINARY(4000), note VARCHAR(200), KEY (user_id))",
    ),
    (
        "notes",
        "CREATE TABLE `notes` (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT, email VARCHAR(400), \
         ssn VARCHAR(400), body TEXT, v VARBINARY(400))",
    ),
    (
        "plain",
        "CREATE TABLE `plain` (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(400), b VARBINARY(400), n INT)",
    ),
];

const B_TABLES: &[(&str, &str)] = &[
    (
        "users",
        "CREATE TABLE `users` (id INT PRIMARY KEY AUTO_INCREMENT, email VARBINARY(400), \
         email_bidx BINARY(32), full_name VARBINARY(300), phone VARBINARY(200), ssn VARCHAR(300), \
         note VARCHAR(200), UNIQUE KEY email_bidx (email_bidx))",
    ),
    (
        "plain",
        "CREATE TABLE `plain` (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(400), b VARBINARY(400), n INT)",
    ),
];

/// What went wrong in one case and role.
struct Failure {
    class: &'static str,
    case: String,
    role: Option<Role>,
    kind: String,
    detail: String,
    sent: Vec<String>,
}

/// A database created by a case through a system procedure (dropped at the end, also on panic).
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(mut c) = mysql_async::Conn::new(common::direct_opts()).await {
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

/// The proxy subprocess; killed if the test ends without stopping it.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_proxy(config: &Path, log: &Path) -> ProxyProcess {
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_myveil"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start myveil serve");
    let mut proxy = ProxyProcess {
        child,
        addr: "127.0.0.1:1".parse().expect("addr"),
        log: log.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("myveil listening") && l.contains("address="))
        {
            let at = line.find("address=").expect("address") + 8;
            let a = line[at..].split_whitespace().next().expect("addr");
            proxy.addr = a.parse().expect("listening address");
            return proxy;
        }
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("myveil exited at start ({status}):\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "myveil did not start listening:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The catalog of the scratch databases: columns, indexes, checks, tables, routines,
/// triggers, events, views (kind, schema, name, detail).
/// The catalog of the scratch databases (kind, schema, name, detail): columns `c`, indexes
/// `i`, checks `k` (only with `full`), tables `t`, routines `r`, triggers `g`, events `e`,
/// views `v`, the synonym database `d`, and `m` rows with each table's CREATE_TIME (changed
/// by any ALTER) and `n` with the server's clock.
async fn catalog_of(conn: &mut mysql_async::Conn, a: &str, b: &str, full: bool) -> Vec<CatalogRow> {
    let dbs = format!("('{a}', '{b}', '{a}_syn')");
    let mut sql = String::new();
    if full {
        sql.push_str(&format!(
            "SELECT 'c', TABLE_SCHEMA, TABLE_NAME, CONCAT_WS(':', ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IFNULL(COLUMN_DEFAULT, '~'), IS_NULLABLE, EXTRA, IFNULL(GENERATION_EXPRESSION, ''), COLUMN_COMMENT) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN {dbs} \
             UNION ALL SELECT 'i', TABLE_SCHEMA, TABLE_NAME, CONCAT_WS(':', INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN {dbs} \
             UNION ALL SELECT 'k', CONSTRAINT_SCHEMA, TABLE_NAME, CONCAT_WS(':', CONSTRAINT_NAME, CHECK_CLAUSE) FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN {dbs} UNION ALL "
        ));
    }
    sql.push_str(&format!(
        "SELECT 't', TABLE_SCHEMA, TABLE_NAME, CONCAT_WS(':', TABLE_TYPE, IFNULL(ENGINE, ''), IFNULL(TABLE_COMMENT, '')) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN {dbs} \
         UNION ALL SELECT 'm', TABLE_SCHEMA, TABLE_NAME, IFNULL(UNIX_TIMESTAMP(CREATE_TIME), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN {dbs} \
         UNION ALL SELECT 'r', db, name, CONCAT_WS(':', type, body) FROM mysql.proc WHERE db IN {dbs} \
         UNION ALL SELECT 'g', TRIGGER_SCHEMA, TRIGGER_NAME, CONCAT_WS(':', EVENT_OBJECT_TABLE, ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN {dbs} \
         UNION ALL SELECT 'e', EVENT_SCHEMA, EVENT_NAME, IFNULL(EVENT_DEFINITION, '') FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN {dbs} \
         UNION ALL SELECT 'v', TABLE_SCHEMA, TABLE_NAME, IFNULL(VIEW_DEFINITION, '') FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN {dbs} \
         UNION ALL SELECT 'd', SCHEMA_NAME, SCHEMA_NAME, '' FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{a}_syn' \
         UNION ALL SELECT 'n', '', '', UNIX_TIMESTAMP()"
    ));
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.expect("catalog");
    rows.into_iter()
        .map(|r| {
            let s = |i: usize| -> String {
                match r.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(mysql_async::Value::Int(n)) => n.to_string(),
                    Some(mysql_async::Value::UInt(n)) => n.to_string(),
                    _ => String::new(),
                }
            };
            (s(0), s(1), s(2), s(3).into_bytes())
        })
        .collect()
}

type Scanned = Vec<((String, String), Result<Vec<mysql_async::Row>, String>)>;

/// `SELECT *` of every table, in one multi-statement round trip (one by one after an error).
async fn scan_tables(conn: &mut mysql_async::Conn, tables: &[(String, String)]) -> Scanned {
    let mut out: Scanned = Vec::new();
    if tables.is_empty() {
        return out;
    }
    let sql: String = tables
        .iter()
        .map(|(s, n)| format!("SELECT * FROM `{s}`.`{n}`;"))
        .collect();
    if let Ok(mut r) = conn.query_iter(sql).await {
        for t in tables {
            match r.collect::<mysql_async::Row>().await {
                Ok(rows) => out.push((t.clone(), Ok(rows))),
                Err(_) => break,
            }
        }
        let _ = r.drop_result().await;
    }
    for t in tables.iter().skip(out.len()) {
        let rows = conn
            .query::<mysql_async::Row, _>(format!("SELECT * FROM `{}`.`{}`", t.0, t.1))
            .await
            .map_err(|e| e.to_string());
        out.push((t.clone(), rows));
    }
    out
}

fn digest(rows: &[mysql_async::Row]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rows {
        for i in 0..r.len() {
            format!("{:?}", r.as_ref(i)).hash(&mut h);
        }
        0xFFu8.hash(&mut h);
    }
    h.finish()
}

fn base_tables(catalog: &[CatalogRow]) -> Vec<(String, String)> {
    catalog
        .iter()
        .filter(|(k, _, _, d)| k == "t" && !d.starts_with(b"VIEW"))
        .map(|(_, s, n, _)| (s.clone(), n.clone()))
        .collect()
}

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    proxy: ProxyProcess,
    old_logs: Vec<PathBuf>,
    a: String,
    b: String,
    c: String,
    syn: DropDb,
    keyring: Keyring,
    secrets: Vec<Vec<u8>>,
    root: mysql_async::Conn,
    /// A second direct connection: the catalog is read on it while the rows are scanned.
    root2: mysql_async::Conn,
    bystander: Option<Client>,
    rid: String,
    envelopes: BTreeMap<(Col, u32), Vec<u8>>,
    /// Prefixes of every stored cell of the baseline in the forms a reply could carry.
    stored: Vec<(Vec<u8>, String)>,
    base_digests: BTreeMap<(String, String), u64>,
    base_shapes: BTreeMap<(String, String), String>,
    base_objects: BTreeSet<(String, String, String)>,
    stale: bool,
    /// The baseline's tables (scanned on every check).
    known_tables: Vec<(String, String)>,
    /// The last columns, indexes and checks read, with the tables' CREATE_TIMEs then.
    full_cache: Option<(UpdateTimes, Vec<CatalogRow>)>,
    force_full: bool,
    run: u64,
    failures: Vec<Failure>,
    outcomes: BTreeMap<&'static str, (usize, usize)>,
    timing: BTreeMap<&'static str, Duration>,
    slow: Vec<(Duration, String)>,
    run_names: BTreeMap<u64, String>,
}

type CatalogRow = (String, String, String, Vec<u8>);
/// Each table's last update time, by (database, table).
type UpdateTimes = BTreeMap<(String, String), i64>;

impl Env {
    async fn root_exec(&mut self, sql: &str) -> Result<(), String> {
        self.root.query_drop(sql).await.map_err(|e| e.to_string())
    }

    fn shapes(catalog: &[CatalogRow]) -> BTreeMap<(String, String), String> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (kind, schema, name, detail) in catalog {
            if matches!(kind.as_str(), "c" | "i" | "k" | "t") {
                out.entry((schema.clone(), name.clone()))
                    .or_default()
                    .push(format!("{kind}={}", String::from_utf8_lossy(detail)));
            }
        }
        out.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v.join("|"))
            })
            .collect()
    }

    fn objects(catalog: &[CatalogRow]) -> BTreeSet<(String, String, String)> {
        catalog
            .iter()
            .filter(|(k, ..)| matches!(k.as_str(), "t" | "r" | "g" | "e" | "d"))
            .map(|(k, s, n, d)| {
                let kind = match k.as_str() {
                    "t" if d.starts_with(b"VIEW") => "view".to_owned(),
                    "t" => "table".to_owned(),
                    "r" if d.starts_with(b"FUNCTION") => "function".to_owned(),
                    "r" => "procedure".to_owned(),
                    "g" => "trigger".to_owned(),
                    "e" => "event".to_owned(),
                    _ => "database".to_owned(),
                };
                (kind, s.clone(), n.clone())
            })
            .collect()
    }

    fn baseline_tables(&self) -> Vec<(String, &'static str, &'static str, String)> {
        let mut v = Vec::new();
        for (t, ddl) in A_TABLES {
            v.push((self.a.clone(), *t, *ddl, format!("a_{t}")));
        }
        for (t, ddl) in B_TABLES {
            v.push((self.b.clone(), *t, *ddl, format!("b_{t}")));
        }
        v
    }

    /// Puts the scratch databases back as the baseline has them: objects a case created are
    /// dropped, changed tables recreated, changed rows restored from the vault.
    async fn restore(&mut self, catalog: &[CatalogRow], scanned: &Scanned) -> Vec<String> {
        let mut problems = Vec::new();
        let objects = Self::objects(catalog);
        let mut changed = false;
        for (kind, schema, name) in objects.difference(&self.base_objects.clone()) {
            let sql = match kind.as_str() {
                "database" => format!("DROP DATABASE IF EXISTS `{name}`"),
                "view" => format!("DROP VIEW IF EXISTS `{schema}`.`{name}`"),
                "table" => format!("DROP TABLE IF EXISTS `{schema}`.`{name}`"),
                "function" => format!("DROP FUNCTION IF EXISTS `{schema}`.`{name}`"),
                "procedure" => format!("DROP PROCEDURE IF EXISTS `{schema}`.`{name}`"),
                "trigger" => format!("DROP TRIGGER IF EXISTS `{schema}`.`{name}`"),
                _ => format!("DROP EVENT IF EXISTS `{schema}`.`{name}`"),
            };
            // The proxy's snapshot holds views, routines, triggers and the tables of the
            // protected database: it must read the schema again after they go.
            if kind != "table" || *schema == self.a {
                changed = true;
            }
            if let Err(e) = self.root_exec(&sql).await {
                problems.push(format!("cleanup {sql}: {e}"));
            }
        }
        let shapes = Self::shapes(catalog);
        let c = self.c.clone();
        for (db, t, ddl, vault) in self.baseline_tables() {
            let key = (db.clone(), t.to_owned());
            if shapes.get(&key) != self.base_shapes.get(&key) {
                changed = true;
                for sql in [
                    format!("DROP TABLE IF EXISTS `{db}`.`{t}`"),
                    ddl.replace("CREATE TABLE `", &format!("CREATE TABLE `{db}`.`")),
                    format!("INSERT INTO `{db}`.`{t}` SELECT * FROM `{c}`.`{vault}`"),
                ] {
                    if let Err(e) = self.root_exec(&sql).await {
                        problems.push(format!("restore {sql}: {e}"));
                    }
                }
            }
        }
        for (db, t, _, vault) in self.baseline_tables() {
            let key = (db.clone(), t.to_owned());
            let now = scanned
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, r)| r.as_ref().ok())
                .map(|r| digest(r));
            if now.is_none() || now != self.base_digests.get(&key).copied() {
                for sql in [
                    format!("DELETE FROM `{db}`.`{t}`"),
                    format!("INSERT INTO `{db}`.`{t}` SELECT * FROM `{c}`.`{vault}`"),
                ] {
                    if let Err(e) = self.root_exec(&sql).await {
                        problems.push(format!("restore {sql}: {e}"));
                    }
                }
            }
        }
        if changed {
            self.stale = true;
        }
        if changed || !problems.is_empty() {
            self.force_full = true;
        }
        problems
    }

    /// Waits until the proxy has read the schema after the server's DDL counters reached
    /// their value now (it logs each such read with the total it saw).
    async fn await_ddl_seen(&mut self) -> Result<(), String> {
        let rows: Vec<(String, String)> = self
            .root
            .query(myveil::frontend::DDL_COUNTERS)
            .await
            .map_err(|e| e.to_string())?;
        let want: u64 = rows
            .iter()
            .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
            .sum();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read(&self.proxy.log).unwrap_or_default();
            let seen = String::from_utf8_lossy(&log)
                .lines()
                .filter(|l| l.contains("schema read after a change on the server"))
                .filter_map(|l| l.split("ddl_total=").nth(1))
                .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            if seen >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "after 10 s the proxy had read the schema for DDL total {seen}, not {want}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the proxy to read the schema again (a DDL on the protected database through the
    /// bystander; the session reads its next command only after the refresh).
    async fn refresh(&mut self) -> Result<(), String> {
        let a = self.a.clone();
        let by = self.bystander.as_mut().ok_or("no bystander")?;
        let r = by
            .query(
                format!("DROP TABLE IF EXISTS `{a}`.`zz_corpus_refresh`").as_bytes(),
                None,
            )
            .await?;
        if r.iter().any(|i| matches!(i, Item::Err { .. })) {
            return Err(format!("refresh refused: {r:?}"));
        }
        let r = by.query(b"SELECT 1", None).await?;
        if !matches!(r.first(), Some(Item::Rows { .. })) {
            return Err(format!("refresh ping: {r:?}"));
        }
        self.stale = false;
        Ok(())
    }

    async fn connect(
        &self,
        role: Role,
        db: Option<&[u8]>,
        collation: u8,
    ) -> Result<Client, String> {
        Client::connect(
            self.proxy.addr,
            role.name(),
            &role.password(),
            db,
            collation,
        )
        .await
    }

    /// Reads the catalog and every table's rows (at once, on two connections).
    async fn snapshot(&mut self) -> (Vec<CatalogRow>, Scanned) {
        let known = self.known_tables.clone();
        let (a, b) = (self.a.clone(), self.b.clone());
        let (mut catalog, mut scanned) = tokio::join!(
            catalog_of(&mut self.root2, &a, &b, false),
            scan_tables(&mut self.root, &known)
        );
        // Columns, indexes and checks change only with a table's definition, which moves its
        // CREATE_TIME (to the second): read them again when a time moved, a table came or
        // went, the last restore changed something, or a change could hide in this second.
        let times: BTreeMap<(String, String), i64> = catalog
            .iter()
            .filter(|(k, ..)| k == "m")
            .map(|(_, s, n, d)| {
                let t = String::from_utf8_lossy(d).parse().unwrap_or(0);
                ((s.clone(), n.clone()), t)
            })
            .collect();
        let now: i64 = catalog
            .iter()
            .find(|(k, ..)| k == "n")
            .and_then(|(_, _, _, d)| String::from_utf8_lossy(d).parse().ok())
            .unwrap_or(0);
        let recent = times.values().any(|t| *t >= now - 2);
        let reuse = !self.force_full
            && !recent
            && self.full_cache.as_ref().is_some_and(|(t, _)| *t == times);
        *self
            .timing
            .entry(if reuse {
                "catalog reused (count ms)"
            } else {
                "catalog read in full (count ms)"
            })
            .or_default() += Duration::from_millis(1);
        let detail = if reuse {
            self.full_cache
                .as_ref()
                .map(|(_, rows)| rows.clone())
                .unwrap_or_default()
        } else {
            let rows: Vec<CatalogRow> = catalog_of(&mut self.root2, &a, &b, true)
                .await
                .into_iter()
                .filter(|(k, ..)| matches!(k.as_str(), "c" | "i" | "k"))
                .collect();
            self.full_cache = Some((times, rows.clone()));
            self.force_full = false;
            rows
        };
        catalog.extend(detail);
        let more: Vec<(String, String)> = base_tables(&catalog)
            .into_iter()
            .filter(|t| !known.contains(t))
            .collect();
        scanned.extend(scan_tables(&mut self.root, &more).await);
        // A table the catalog no longer has was dropped or renamed by the case.
        let now = base_tables(&catalog);
        scanned.retain(|(t, _)| now.contains(t));
        (catalog, scanned)
    }

    /// Every protected cell is NULL or an envelope that opens as its column; no canary is
    /// anywhere in the scratch databases.
    fn at_rest(&self, catalog: &[CatalogRow], scanned: &Scanned) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (kind, schema, name, detail) in catalog {
            for h in canary_hits(detail) {
                out.push((
                    "plaintext at rest (catalog)".to_owned(),
                    format!("{} in {kind} {schema}.{name}: {}", h.form, h.token),
                ));
            }
        }
        for ((schema, name), rows) in scanned {
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    out.push(("scan failed".into(), format!("{schema}.{name}: {e}")));
                    continue;
                }
            };
            let protected =
                *schema == self.a && matches!(name.as_str(), "users" | "orders" | "comments");
            if protected && let Some(first) = rows.first() {
                let names: Vec<String> = first
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().to_ascii_lowercase())
                    .collect();
                for col in COLS.iter().filter(|c| c.table() == name) {
                    if !names.iter().any(|n| n == col.column()) {
                        out.push((
                            "protected column missing".into(),
                            format!("{name}.{} is gone", col.column()),
                        ));
                    }
                }
            }
            for row in rows {
                let cols = row.columns_ref();
                let mut cells: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
                for (i, col) in cols.iter().enumerate() {
                    let v = match row.as_ref(i) {
                        Some(mysql_async::Value::Bytes(b)) => Some(b.clone()),
                        Some(mysql_async::Value::NULL) | None => None,
                        Some(other) => Some(other.as_sql(true).into_bytes()),
                    };
                    if let Some(b) = &v {
                        for h in canary_hits(b) {
                            out.push((
                                "plaintext at rest".to_owned(),
                                format!(
                                    "{} canary in {schema}.{name}.{}: {}",
                                    h.form,
                                    col.name_str(),
                                    h.token
                                ),
                            ));
                        }
                    }
                    cells.insert(col.name_str().to_ascii_lowercase(), v);
                }
                if protected {
                    out.extend(self.check_cells(name, &cells));
                }
            }
        }
        out
    }

    fn check_cells(
        &self,
        table: &str,
        cells: &BTreeMap<String, Option<Vec<u8>>>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let id = cells
            .get("id")
            .cloned()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for col in COLS.iter().filter(|c| c.table() == table) {
            let Some(value) = cells.get(col.column()) else {
                continue;
            };
            let Some(value) = value else {
                if *col == Col::Email && cells.get("email_bidx").is_some_and(Option::is_some) {
                    out.push((
                        "integrity".into(),
                        format!("{table} id={id}: email is NULL but email_bidx is set"),
                    ));
                }
                continue;
            };
            let envelope = if *col == Col::Ssn {
                match base64::engine::general_purpose::STANDARD.decode(value) {
                    Ok(e) => e,
                    Err(_) => {
                        out.push((
                            "plaintext at rest".into(),
                            format!(
                                "{table}.{} id={id} is not base64: {}",
                                col.column(),
                                printable(value, 80)
                            ),
                        ));
                        continue;
                    }
                }
            } else {
                value.clone()
            };
            if !envelope.starts_with(b"MV\x01\x01") || envelope.len() < 36 {
                out.push((
                    "plaintext at rest".into(),
                    format!(
                        "{table}.{} id={id} is not an envelope: {}",
                        col.column(),
                        printable(value, 80)
                    ),
                ));
                continue;
            }
            let scope = format!("{}.{}", col.table(), col.column());
            let cell = Cell {
                scope: &scope,
                table: col.table(),
                column: col.column(),
                plaintext_type: col.plain_type(),
                normalize: if *col == Col::Email {
                    Normalize::TrimLowercase
                } else {
                    Normalize::None
                },
                row_key: None,
            };
            match cells::open(&self.keyring, &cell, &envelope) {
                Ok(plain) => {
                    if *col == Col::Email {
                        let want = cells::blind(&self.keyring, &cell, &plain).ok();
                        let have = cells.get("email_bidx").cloned().flatten();
                        if have.as_deref() != want.as_ref().map(|w| &w[..]) {
                            out.push((
                                "integrity".into(),
                                format!("{table} id={id}: email_bidx does not match the email"),
                            ));
                        }
                    }
                }
                Err(e) => out.push((
                    "integrity".into(),
                    format!(
                        "{table}.{} id={id}: envelope does not open as its column ({e})",
                        col.column()
                    ),
                )),
            }
        }
        out
    }

    fn fail(&mut self, c: &Case, role: Option<Role>, kind: &str, detail: String, sent: &[StepOut]) {
        self.failures.push(Failure {
            class: c.class,
            case: c.name.clone(),
            role,
            kind: kind.to_owned(),
            detail,
            sent: sent.iter().map(|s| s.sent.clone()).collect(),
        });
    }

    /// What the role got back that it may not see.
    fn leaks(
        &self,
        role: Role,
        run: u64,
        own: &BTreeSet<String>,
        own_env: &[Vec<u8>],
        out: &StepOut,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |what: &str, bytes: &[u8]| {
            for h in canary_hits(bytes) {
                let is_own = own.iter().any(|o| {
                    h.token.starts_with(o.as_str())
                        || (h.token.len() >= 20 && o.starts_with(&h.token))
                });
                if is_own {
                    continue;
                }
                let (col, origin) = classify(&h.token);
                if origin == Origin::Run(run) {
                    continue;
                }
                let leak = match col {
                    Some(c) => !role.plain(c),
                    None => role != Role::App,
                };
                if leak {
                    found.push(format!(
                        "canary ({}) of {} in {what}: {}",
                        h.form,
                        col.map_or("an unknown column", Col::column),
                        h.token
                    ));
                }
            }
            if !role.envelopes() {
                let own = own_env.iter().any(|e| {
                    contains(bytes, e)
                        || contains(bytes, hex::encode_upper(e).as_bytes())
                        || contains(bytes, hex::encode(e).as_bytes())
                });
                if let Some((_, cell)) = self.stored.iter().find(|(p, _)| contains(bytes, p)) {
                    if !own {
                        found.push(format!(
                            "the stored ciphertext of {cell} in {what}: {}",
                            printable(bytes, 120)
                        ));
                    }
                } else if let Some(kind) = envelope_hit(bytes) {
                    // A role that writes may see its own freshly sealed literal quoted back in
                    // a server error about the rewritten statement.
                    let echo =
                        what == "an error message" && matches!(role, Role::App | Role::Writer);
                    if !own && !echo {
                        found.push(format!("{kind} in {what}: {}", printable(bytes, 120)));
                    }
                }
            }
            for s in &self.secrets {
                if contains(bytes, s)
                    || contains(bytes, hex::encode(s).as_bytes())
                    || contains(bytes, hex::encode_upper(s).as_bytes())
                {
                    found.push(format!("key material in {what}"));
                }
            }
        };
        for item in &out.items {
            match item {
                Item::Rows { cols, rows } => {
                    for c in cols {
                        check("a column name", c);
                    }
                    for r in rows {
                        for v in r.iter().flatten() {
                            check("a result row", v);
                        }
                    }
                }
                Item::Err { msg, .. } => check("an error message", msg.as_bytes()),
                Item::Ok { .. } => {}
            }
        }
        found
    }

    async fn alive(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(Some(status)) = self.proxy.child.try_wait() {
            let log = std::fs::read_to_string(&self.proxy.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            out.push((
                "proxy crashed".to_owned(),
                format!("exit {status}; log tail:\n{tail}"),
            ));
            self.old_logs.push(self.proxy.log.clone());
            let log = self
                .dir
                .path()
                .join(format!("myveil-{}.log", self.old_logs.len()));
            self.proxy = start_proxy(&self.config, &log);
            self.bystander = None;
        }
        let ok = match self.bystander.as_mut() {
            Some(b) => match b.query(b"SELECT 1", None).await {
                Ok(items) => {
                    matches!(items.first(), Some(Item::Rows { rows, .. }) if rows.len() == 1)
                }
                Err(_) => false,
            },
            None => false,
        };
        if !ok {
            out.push((
                "bystander broken".to_owned(),
                "the long-lived connection no longer answers SELECT 1".to_owned(),
            ));
            let a = self.a.clone();
            self.bystander = self.connect(Role::App, Some(a.as_bytes()), 45).await.ok();
        }
        out
    }

    /// Runs a case as one role; returns what the role observed (for oracle comparisons).
    async fn run_once(&mut self, c: &Case, role: Role, guess: Option<bool>) -> Vec<String> {
        self.run += 1;
        let run = self.run;
        self.run_names
            .insert(run, format!("[{}] {} as {}", c.class, c.name, role.name()));
        let outfile = format!("/tmp/myveil-corpus-{}-{run}.out", std::process::id());
        let _ = std::fs::remove_file(&outfile);
        let envelopes = self.envelopes.clone();
        let keys = self.dir.path().join("keys").display().to_string();
        let tpl = Tpl {
            a: &self.a.clone(),
            b: &self.b.clone(),
            rid: &self.rid.clone(),
            run,
            guess: c.oracle.zip(guess),
            outfile: outfile.clone(),
            keys,
            envelopes: &envelopes,
            own: Default::default(),
            own_envelopes: Default::default(),
        };
        let ts = Instant::now();
        for s in &c.setup {
            let sql = tpl.expand_str(s);
            if let Err(e) = self.root_exec(&sql).await {
                self.fail(
                    c,
                    Some(role),
                    "harness: setup failed",
                    format!("{sql}: {e}"),
                    &[],
                );
            }
        }
        if (self.stale || !c.setup.is_empty())
            && let Err(e) = self.refresh().await
        {
            self.fail(c, Some(role), "harness: refresh failed", e, &[]);
        }
        for s in &c.late_setup {
            let sql = tpl.expand_str(s);
            if let Err(e) = self.root_exec(&sql).await {
                self.fail(
                    c,
                    Some(role),
                    "harness: setup failed",
                    format!("{sql}: {e}"),
                    &[],
                );
            }
        }
        // Objects made on the database directly reach the proxy once it sees the server's
        // DDL counters move and reads the schema again (its documented window): the case
        // runs after that, and must then be refused.
        if !c.late_setup.is_empty()
            && let Err(e) = self.await_ddl_seen().await
        {
            self.fail(c, Some(role), "direct DDL not seen by the proxy", e, &[]);
        }
        *self.timing.entry("setup+refresh").or_default() += ts.elapsed();
        let t0 = Instant::now();
        let db = c.db.as_ref().map(|d| tpl.expand(d.as_bytes()));
        let mut outs: Vec<StepOut> = Vec::new();
        let mut observed = Vec::new();
        match self.connect(role, db.as_deref(), c.collation).await {
            Err(e) => {
                observed.push(format!("connect: {}", e.split(':').next().unwrap_or("")));
                outs.push(StepOut {
                    sent: format!(
                        "(connect as {} to {:?})",
                        role.name(),
                        db.as_deref().map(|d| printable(d, 80))
                    ),
                    items: vec![Item::Err {
                        code: 0,
                        msg: e.clone(),
                    }],
                    io_error: Some(e),
                });
            }
            Ok(mut client) => {
                if c.class == "bounds" {
                    client.limit = Duration::from_secs(60);
                }
                let mut second: Option<Client> = None;
                for step in &c.steps {
                    let (client, step, on) = match step {
                        Step::Second(inner) => {
                            if second.is_none() {
                                match self.connect(role, db.as_deref(), c.collation).await {
                                    Ok(s) => second = Some(s),
                                    Err(e) => {
                                        observed.push("second connect failed".to_owned());
                                        outs.push(StepOut {
                                            sent: "(connect a second session)".to_owned(),
                                            items: vec![Item::Err {
                                                code: 0,
                                                msg: e.clone(),
                                            }],
                                            io_error: Some(e),
                                        });
                                        break;
                                    }
                                }
                            }
                            let Some(s) = second.as_mut() else { break };
                            (s, &**inner, "[second session] ")
                        }
                        other => (&mut client, other, ""),
                    };
                    let (sent, r) = match step {
                        Step::Q(t) => {
                            let sql = tpl.expand(t);
                            (printable(&sql, 400), client.query(&sql, None).await)
                        }
                        Step::X(t, params) => {
                            let sql = tpl.expand(t);
                            let ps: Vec<Option<Vec<u8>>> = params
                                .iter()
                                .map(|p| p.as_ref().map(|p| tpl.expand(p.as_bytes())))
                                .collect();
                            let shown: Vec<String> = ps
                                .iter()
                                .map(|p| p.as_ref().map_or("NULL".into(), |p| printable(p, 80)))
                                .collect();
                            (
                                format!(
                                    "[prepared] {} USING ({})",
                                    printable(&sql, 400),
                                    shown.join(", ")
                                ),
                                client.exec(&sql, &ps).await,
                            )
                        }
                        Step::InitDb(t) => {
                            let db = tpl.expand(t);
                            (
                                format!("[COM_INIT_DB] {}", printable(&db, 200)),
                                client.init_db(&db).await,
                            )
                        }
                        Step::Local(t, content) => {
                            let sql = tpl.expand(t);
                            let data = tpl.expand(content);
                            (
                                format!(
                                    "{} [local file: {}]",
                                    printable(&sql, 400),
                                    printable(&data, 120)
                                ),
                                client.query(&sql, Some(&data)).await,
                            )
                        }
                        Step::Second(_) => unreachable!("a second session's step is not nested"),
                    };
                    let sent = format!("{on}{sent}");
                    match r {
                        Ok(items) => {
                            observed.push(observe(&items));
                            outs.push(StepOut {
                                sent,
                                items,
                                io_error: None,
                            });
                        }
                        Err(e) => {
                            if e.starts_with("no reply within") {
                                self.fail(
                                    c,
                                    Some(role),
                                    "proxy hung",
                                    format!("{sent}: {e}"),
                                    &outs,
                                );
                            } else {
                                self.fail(
                                    c,
                                    Some(role),
                                    "connection dropped instead of an error",
                                    format!("{sent}: {e}"),
                                    &outs,
                                );
                            }
                            observed.push("io-error".to_owned());
                            outs.push(StepOut {
                                sent,
                                items: Vec::new(),
                                io_error: Some(e),
                            });
                            break;
                        }
                    }
                }
                if outs.last().is_some_and(|o| o.io_error.is_none()) {
                    client.quit().await;
                    if let Some(s) = second {
                        s.quit().await;
                    }
                }
            }
        }
        *self.timing.entry("statements").or_default() += t0.elapsed();
        if std::env::var_os("CORPUS_VERBOSE").is_some() {
            let mut text = format!("== [{}] {} as {}\n", c.class, c.name, role.name());
            for o in &outs {
                text.push_str(&format!(
                    "  > {}\n    < {}{}\n",
                    o.sent,
                    printable(observe(&o.items).as_bytes(), 300),
                    o.io_error.as_deref().unwrap_or("")
                ));
                for i in &o.items {
                    if let Item::Err { code, msg } = i {
                        text.push_str(&format!(
                            "    ! {code} {}\n",
                            printable(msg.as_bytes(), 200)
                        ));
                    }
                }
            }
            eprint!("{text}");
        }
        self.slow.push((
            t0.elapsed(),
            format!("{} / {} as {}", c.class, c.name, role.name()),
        ));
        let t1 = Instant::now();
        let own = tpl.own.borrow().clone();
        let own_env = tpl.own_envelopes.borrow().clone();
        // What came back.
        for o in &outs {
            for l in self.leaks(role, run, &own, &own_env, o) {
                self.fail(
                    c,
                    Some(role),
                    "forbidden data returned",
                    format!("{l}\n      in reply to: {}", o.sent),
                    &outs,
                );
            }
        }
        if c.must.contains(&role) {
            for o in &outs {
                let bad = o.io_error.clone().or_else(|| {
                    o.items.iter().find_map(|i| match i {
                        Item::Err { code, msg } => Some(format!("{code} {msg}")),
                        _ => None,
                    })
                });
                if let Some(e) = bad {
                    self.fail(
                        c,
                        Some(role),
                        "legitimate statement failed",
                        format!("{}: {e}", o.sent),
                        &outs,
                    );
                }
            }
        }
        for (r, rows) in &c.expect {
            if *r != role {
                continue;
            }
            let want: Vec<Vec<Option<Vec<u8>>>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| v.as_ref().map(|v| tpl.expand(v.as_bytes())))
                        .collect()
                })
                .collect();
            let got = outs.iter().rev().find_map(|o| {
                o.items.iter().rev().find_map(|i| match i {
                    Item::Rows { rows, .. } => Some(rows.clone()),
                    _ => None,
                })
            });
            if got.as_ref() != Some(&want) {
                let show = |rows: &Vec<Vec<Option<Vec<u8>>>>| -> String {
                    rows.iter()
                        .map(|r| {
                            r.iter()
                                .map(|v| v.as_ref().map_or("NULL".into(), |v| printable(v, 60)))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        })
                        .collect::<Vec<_>>()
                        .join(" ; ")
                };
                self.fail(
                    c,
                    Some(role),
                    "wrong result for a legitimate statement",
                    format!(
                        "want [{}], got [{}]",
                        show(&want),
                        got.as_ref().map_or("no rows".into(), show)
                    ),
                    &outs,
                );
            }
        }
        if let Some(f) = c.check
            && let Some(problem) = f(role, &outs)
        {
            self.fail(c, Some(role), "custom check", problem, &outs);
        }
        *self.timing.entry("reply checks").or_default() += t1.elapsed();
        // The database, the outfile, the proxy.
        let t2 = Instant::now();
        let (catalog, scanned) = self.snapshot().await;
        *self.timing.entry("catalog and scan").or_default() += t2.elapsed();
        let t3 = Instant::now();
        for (kind, detail) in self.at_rest(&catalog, &scanned) {
            self.fail(c, Some(role), &kind, detail, &outs);
        }
        *self.timing.entry("at rest").or_default() += t3.elapsed();
        let t4 = Instant::now();
        if let Ok(bytes) = std::fs::read(&outfile) {
            for h in canary_hits(&bytes) {
                self.fail(
                    c,
                    Some(role),
                    "plaintext in a server-side file",
                    format!("{} {}: {}", h.form, outfile, h.token),
                    &outs,
                );
            }
            let _ = Command::new("rm").arg("-f").arg(&outfile).status();
        }
        for (kind, detail) in self.alive().await {
            self.fail(c, Some(role), &kind, detail, &outs);
        }
        *self.timing.entry("alive").or_default() += t4.elapsed();
        let t5 = Instant::now();
        for p in self.restore(&catalog, &scanned).await {
            self.fail(c, Some(role), "harness: restore", p, &[]);
        }
        *self.timing.entry("restore").or_default() += t5.elapsed();
        let entry = self.outcomes.entry(c.class).or_default();
        entry.0 += 1;
        if outs
            .iter()
            .all(|o| o.io_error.is_none() && o.items.iter().all(|i| !matches!(i, Item::Err { .. })))
        {
            entry.1 += 1;
        }
        observed
    }

    async fn run_case(&mut self, c: &Case) {
        for &role in &c.roles {
            match c.oracle {
                None => {
                    self.run_once(c, role, None).await;
                }
                Some(col) => {
                    let existing = self.run_once(c, role, Some(true)).await;
                    let absent = self.run_once(c, role, Some(false)).await;
                    if !role.plain(col) && existing != absent {
                        self.fail(
                            c,
                            Some(role),
                            "existence oracle",
                            format!(
                                "the answer differs for an existing {} and an absent one:\n      existing: {}\n      absent:   {}",
                                col.column(),
                                printable(existing.join(" / ").as_bytes(), 300),
                                printable(absent.join(" / ").as_bytes(), 300)
                            ),
                            &[],
                        );
                    }
                }
            }
        }
    }
}

/// A summary of replies for comparisons (codes and rows, not messages).
fn observe(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| match i {
            Item::Ok { affected } => format!("ok({affected})"),
            Item::Err { code, .. } => format!("err({code})"),
            Item::Rows { rows, .. } => {
                let body: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| v.as_ref().map_or("NULL".into(), |v| printable(v, 64)))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                format!("rows[{}]", body.join(";"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn random_id() -> String {
    let n: u64 = rand::random();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|i| alphabet[((n >> (i * 6)) % 36) as usize] as char)
        .collect()
}

fn myveil_cli(config: &Path, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_myveil"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run myveil");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "myveil {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn setup() -> (Env, Vec<TestDb>) {
    let rid = random_id();
    let dbs = vec![
        TestDb::create("corpus").await,
        TestDb::create("corpusb").await,
        TestDb::create("corpusv").await,
    ];
    let (a, b, c) = (
        dbs[0].name.clone(),
        dbs[1].name.clone(),
        dbs[2].name.clone(),
    );
    let syn = DropDb(format!("{a}_syn"));
    let mut root = common::direct(Some(&a)).await;
    root.query_drop("SET SESSION lock_wait_timeout = 20, innodb_lock_wait_timeout = 20")
        .await
        .expect("timeouts");
    for (db, tables) in [(&a, A_TABLES), (&b, B_TABLES)] {
        for (_, ddl) in tables {
            root.query_drop(ddl.replace("CREATE TABLE `", &format!("CREATE TABLE `{db}`.`")))
                .await
                .expect("create table");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policy")).expect("policy dir");
    std::fs::write(dir.path().join("policy/corpus.toml"), policy_toml(&a)).expect("policy");
    let keyring = Keyring::generate(
        &dir.path().join("keys"),
        &[
            (Purpose::Column, "*"),
            (Purpose::BlindIndex, "*"),
            (Purpose::Mask, "*"),
            (Purpose::Jwt, "*"),
        ],
    )
    .expect("keys");
    let mut secrets = Vec::new();
    for f in ["master.key", "keyring.toml"] {
        if let Ok(b) = std::fs::read(dir.path().join("keys").join(f))
            && b.len() >= 16
        {
            secrets.push(b[..32.min(b.len())].to_vec());
        }
    }
    let mut roles_toml = String::new();
    for r in ROLES {
        roles_toml.push_str(&format!(
            "[roles.{}]\nbackend_account = \"main\"\n",
            r.name()
        ));
    }
    // In multiplexed mode (MYVEIL_TEST_BACKEND_MODE) the account has one backend connection,
    // so the sessions of the `multiplexed` class's cases always share it, each with its own
    // state; a session that pins it makes the other wait, then fail with 1040.
    let (mode, limit) = match common::backend_mode() {
        "multiplexed" => (
            "mode = \"multiplexed\"\nwait_timeout_ms = 1000\n",
            "max_backend_connections = 1\n",
        ),
        _ => ("", ""),
    };
    let config = dir.path().join("myveil.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nauth_plugin = \"mysql_native_password\"\n\
             [backend]\naddress = \"127.0.0.1:3306\"\n{mode}[backend.accounts.main]\nuser = \"root\"\n{limit}\
             {roles_toml}[users]\nfile = \"users.toml\"\nbcrypt_cost = 4\n\
             [protection]\npolicy_dir = \"policy\"\nkeys_dir = \"keys\"\n[log]\nlevel = \"trace\"\n"
        ),
    )
    .expect("config");
    for r in ROLES {
        myveil_cli(
            &config,
            &[
                "user",
                "add",
                r.name(),
                "--role",
                r.name(),
                "--password-stdin",
            ],
            &format!("{}\n", r.password()),
        );
    }
    let log = dir.path().join("myveil.log");
    let proxy = start_proxy(&config, &log);
    let mut env = Env {
        dir,
        config,
        proxy,
        old_logs: Vec::new(),
        a: a.clone(),
        b: b.clone(),
        c: c.clone(),
        syn,
        keyring,
        secrets,
        root,
        root2: common::direct(Some(&a)).await,
        bystander: None,
        rid: rid.clone(),
        envelopes: BTreeMap::new(),
        stored: Vec::new(),
        base_digests: BTreeMap::new(),
        base_shapes: BTreeMap::new(),
        base_objects: BTreeSet::new(),
        stale: false,
        known_tables: Vec::new(),
        full_cache: None,
        force_full: true,
        run: 0,
        failures: Vec::new(),
        outcomes: BTreeMap::new(),
        timing: BTreeMap::new(),
        slow: Vec::new(),
        run_names: BTreeMap::new(),
    };
    // Secrets seeded through myveil as app.
    let s = |col: Col, n: u32| canary(col, &format!("s{n}"), &rid);
    let twin = format!("twin-{rid}@example.com");
    let mut users = Vec::new();
    for n in 1..=3 {
        users.push(format!(
            "({n}, '{}', '{}', '{}', '{}', 'n{n}')",
            s(Col::Email, n),
            s(Col::FullName, n),
            s(Col::Phone, n),
            s(Col::Ssn, n)
        ));
    }
    users.push("(4, NULL, NULL, NULL, NULL, 'n4')".into());
    users.push(format!("(5, '{twin}', '{twin}', '{twin}', '{twin}', 'n5')"));
    let seeds = [
        format!(
            "INSERT INTO users (id, email, full_name, phone, ssn, note) VALUES {}",
            users.join(", ")
        ),
        format!(
            "INSERT INTO orders (id, user_id, total, card_last4, note) VALUES (1, 1, 10.00, '{}', 'o1'), (2, 2, 20.50, '{}', 'o2'), (3, 3, 30.00, NULL, 'o3'), (4, 5, 5.00, '{twin}', 'o4')",
            s(Col::Card, 1),
            s(Col::Card, 2)
        ),
        format!(
            "INSERT INTO comments (id, user_id, body, note) VALUES (1, 1, '{}', 'c1'), (2, 2, '{}', 'c2'), (3, 5, '{twin}', 'c3')",
            s(Col::Body, 1),
            s(Col::Body, 2)
        ),
    ];
    let mut app = env
        .connect(Role::App, Some(a.as_bytes()), 45)
        .await
        .expect("app connects");
    for sql in &seeds {
        let r = app.query(sql.as_bytes(), None).await.expect("seed");
        assert!(
            matches!(r.as_slice(), [Item::Ok { .. }]),
            "seed {sql}: {r:?}"
        );
    }
    let r = app
        .query(b"SELECT ssn, email FROM users WHERE id = 2", None)
        .await
        .expect("read back");
    assert!(
        matches!(r.as_slice(), [Item::Rows { rows, .. }] if rows[0][0].as_deref() == Some(s(Col::Ssn, 2).as_bytes())),
        "app reads the seeded plaintext: {r:?}"
    );
    app.quit().await;
    for sql in [
        "INSERT INTO notes (id, user_id, email, ssn, body, v) VALUES (1, 1, 'note-1@example.com', 'note-ssn-1', 'note body 1', 'nv1'), (2, 2, 'note-2@example.com', 'note-ssn-2', 'note body 2', 'nv2')".to_owned(),
        "INSERT INTO plain (id, v, b, n) VALUES (1, 'pv1', 'pb1', 1), (2, 'pv2', 'pb2', 2)".to_owned(),
        format!("INSERT INTO `{b}`.users (id, email, full_name, phone, ssn, note) VALUES (1, 'b-user-1@example.com', 'B Name 1', 'b-phone-1', 'b-ssn-1', 'bn1'), (2, 'b-user-2@example.com', 'B Name 2', 'b-phone-2', 'b-ssn-2', 'bn2')"),
        format!("INSERT INTO `{b}`.plain (id, v, b, n) VALUES (1, 'bpv1', 'bpb1', 1)"),
    ] {
        env.root_exec(&sql).await.expect("seed directly");
    }
    // The vault: the baseline rows, copied as they are at rest.
    for (db, t, _, vault) in env.baseline_tables() {
        env.root_exec(&format!("CREATE TABLE `{c}`.`{vault}` LIKE `{db}`.`{t}`"))
            .await
            .expect("vault");
        env.root_exec(&format!(
            "INSERT INTO `{c}`.`{vault}` SELECT * FROM `{db}`.`{t}`"
        ))
        .await
        .expect("vault");
    }
    // Seeded envelopes (for restorer cases that write ciphertext back).
    type Cells = (
        u32,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Cells> = env
        .root
        .query(format!(
            "SELECT id, email, full_name, phone, ssn FROM `{a}`.users WHERE id <= 3"
        ))
        .await
        .expect("envelopes");
    for (id, e, f, p, ssn) in rows {
        for (col, v) in [
            (Col::Email, e),
            (Col::FullName, f),
            (Col::Phone, p),
            (Col::Ssn, ssn),
        ] {
            if let Some(v) = v {
                env.envelopes.insert((col, id), v);
            }
        }
    }
    let rows: Vec<(u32, Option<Vec<u8>>)> = env
        .root
        .query(format!(
            "SELECT id, card_last4 FROM `{a}`.orders WHERE id <= 2"
        ))
        .await
        .expect("envelopes");
    for (id, v) in rows {
        if let Some(v) = v {
            env.envelopes.insert((Col::Card, id), v);
        }
    }
    let rows: Vec<(u32, Option<Vec<u8>>)> = env
        .root
        .query(format!("SELECT id, body FROM `{a}`.comments WHERE id <= 2"))
        .await
        .expect("envelopes");
    for (id, v) in rows {
        if let Some(v) = v {
            env.envelopes.insert((Col::Body, id), v);
        }
    }
    // Every stored cell of the baseline, in the forms a reply could carry it.
    for (t, cols) in [
        ("users", "email, full_name, phone, ssn"),
        ("orders", "card_last4"),
        ("comments", "body"),
    ] {
        let rows: Vec<mysql_async::Row> = env
            .root
            .query(format!("SELECT id, {cols} FROM `{a}`.`{t}`"))
            .await
            .expect("stored cells");
        for r in rows {
            let id: u32 = r.get(0).unwrap_or(0);
            for (i, name) in cols.split(", ").enumerate() {
                let Some(mysql_async::Value::Bytes(v)) = r.as_ref(i + 1) else {
                    continue;
                };
                let raw = if name == "ssn" {
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .unwrap_or_default()
                } else {
                    v.clone()
                };
                if raw.len() < 36 {
                    continue;
                }
                let label = format!("{t}.{name} of row {id}");
                let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
                for form in [
                    raw[..24].to_vec(),
                    hex::encode(&raw[..24]).into_bytes(),
                    hex::encode_upper(&raw[..24]).into_bytes(),
                    b64.as_bytes()[..32].to_vec(),
                ] {
                    env.stored.push((form, label.clone()));
                }
            }
        }
    }
    env.known_tables = env
        .baseline_tables()
        .into_iter()
        .map(|(db, t, ..)| (db, t.to_owned()))
        .collect();
    let (catalog, scanned) = env.snapshot().await;
    let problems = env.at_rest(&catalog, &scanned);
    assert!(
        problems.is_empty(),
        "the seeded baseline is clean: {problems:?}"
    );
    env.base_shapes = Env::shapes(&catalog);
    env.base_objects = Env::objects(&catalog);
    for (k, rows) in &scanned {
        if let Ok(rows) = rows {
            env.base_digests.insert(k.clone(), digest(rows));
        }
    }
    env.bystander = Some(
        env.connect(Role::App, Some(a.as_bytes()), 45)
            .await
            .expect("bystander"),
    );
    env.refresh().await.expect("first refresh");
    (env, dbs)
}

fn report(env: &Env, cases: usize, runs: u64, elapsed: Duration) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "corpus: {cases} cases, {runs} runs (case × role × variant) in {:.1} s; {} failures\n",
        elapsed.as_secs_f64(),
        env.failures.len()
    ));
    for (phase, d) in &env.timing {
        s.push_str(&format!("  time in {phase}: {:.1} s\n", d.as_secs_f64()));
    }
    let mut slow = env.slow.clone();
    slow.sort_by_key(|x| std::cmp::Reverse(x.0));
    for (d, what) in slow.iter().take(25) {
        s.push_str(&format!("  slow: {:.2} s {what}\n", d.as_secs_f64()));
    }
    for (class, (n, ok)) in &env.outcomes {
        s.push_str(&format!(
            "  {class:<12} {n:>5} runs, {ok:>5} fully succeeded\n"
        ));
    }
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &env.failures {
        *by_kind.entry(f.kind.as_str()).or_default() += 1;
    }
    for (k, n) in by_kind {
        s.push_str(&format!("  {n:>5} × {k}\n"));
    }
    for f in &env.failures {
        s.push_str(&format!(
            "\n- [{}] {} — {} as {}\n    {}\n",
            f.class,
            f.case,
            f.kind,
            f.role.map_or("-", Role::name),
            f.detail
        ));
        for sent in &f.sent {
            s.push_str(&format!("    > {sent}\n"));
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_corpus_leaks_nothing_as_any_role() {
    let started = Instant::now();
    let corpus = cases::all();
    if std::env::var_os("CORPUS_LIST").is_some() {
        let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for c in &corpus {
            let e = per.entry(c.class).or_default();
            e.0 += 1;
            e.1 += c.roles.len() * if c.oracle.is_some() { 2 } else { 1 };
        }
        for (class, (n, runs)) in &per {
            eprintln!("{class:<10} {n:>4} cases {runs:>5} runs");
        }
        eprintln!("total {} cases", corpus.len());
        return;
    }
    let (mut env, dbs) = setup().await;
    env.timing.insert("setup", started.elapsed());
    let only = std::env::var("CORPUS_ONLY").ok();
    let mut ran = 0;
    for c in &corpus {
        if only
            .as_deref()
            .is_some_and(|o| !c.name.contains(o) && c.class != o)
        {
            continue;
        }
        ran += 1;
        env.run_case(c).await;
    }
    // The end: the proxy still runs, the logs hold no canary, then it stops.
    let alive = env.alive().await;
    for (kind, detail) in alive {
        env.failures.push(Failure {
            class: "end",
            case: "after all cases".into(),
            role: None,
            kind,
            detail,
            sent: Vec::new(),
        });
    }
    let scan = Instant::now();
    let mut logs = env.old_logs.clone();
    logs.push(env.proxy.log.clone());
    for log in &logs {
        let bytes = std::fs::read(log).unwrap_or_default();
        let mut seen = HashSet::new();
        for h in canary_hits(&bytes) {
            if seen.insert(h.token.clone()) {
                let from = match classify(&h.token).1 {
                    Origin::Run(n) => env.run_names.get(&n).cloned().unwrap_or_default(),
                    _ => "a seeded value".to_owned(),
                };
                env.failures.push(Failure {
                    class: "end",
                    case: "proxy log".into(),
                    role: None,
                    kind: "canary in the log".into(),
                    detail: format!(
                        "{} {} in {} (written by {from})",
                        h.form,
                        h.token,
                        log.display()
                    ),
                    sent: Vec::new(),
                });
            }
        }
        for s in &env.secrets {
            if contains(&bytes, s) || contains(&bytes, hex::encode(s).as_bytes()) {
                env.failures.push(Failure {
                    class: "end",
                    case: "proxy log".into(),
                    role: None,
                    kind: "key material in the log".into(),
                    detail: log.display().to_string(),
                    sent: Vec::new(),
                });
            }
        }
    }
    env.timing.insert("log scan", scan.elapsed());
    if let Ok(to) = std::env::var("CORPUS_KEEP_LOG") {
        for (i, log) in logs.iter().enumerate() {
            let _ = std::fs::copy(log, format!("{to}.{i}"));
        }
    }
    // The vault never held plaintext either.
    let c = env.c.clone();
    let vault: Vec<(String,)> = env
        .root
        .query(format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{c}'"
        ))
        .await
        .expect("vault tables");
    for (t,) in vault {
        let rows: Vec<mysql_async::Row> = env
            .root
            .query(format!("SELECT * FROM `{c}`.`{t}`"))
            .await
            .expect("vault rows");
        for r in rows {
            for i in 0..r.len() {
                if let Some(mysql_async::Value::Bytes(b)) = r.as_ref(i)
                    && !canary_hits(b).is_empty()
                {
                    panic!("the vault holds plaintext in {t}");
                }
            }
        }
    }
    let still_running = matches!(env.proxy.child.try_wait(), Ok(None));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(env.proxy.child.id().to_string())
        .status();
    let stopped = env.proxy.child.wait();
    let text = report(&env, ran, env.run, started.elapsed());
    let path =
        std::env::temp_dir().join(format!("myveil-corpus-report-{}.txt", std::process::id()));
    let _ = std::fs::write(&path, &text);
    let _ = env.bystander.take();
    let _ = env.root.disconnect().await;
    drop(env.syn);
    for db in dbs {
        db.drop_now().await;
    }
    assert!(still_running, "myveil is still running after the corpus");
    assert!(
        stopped.is_ok_and(|s| s.success()),
        "myveil stops cleanly on SIGTERM"
    );
    let shown: String = text.chars().take(60_000).collect();
    assert!(
        env.failures.is_empty(),
        "{shown}\n(full report: {})",
        path.display()
    );
}
