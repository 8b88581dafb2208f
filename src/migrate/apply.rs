//! migrate::apply: seals the existing plaintext of policy columns online.
//!
//! Per table, in order:
//! 1. its columns are marked `mixed` (migrate::state): the proxies read a cell that is not
//!    an envelope as its plaintext, and searches also match plaintext, until the end;
//! 2. the plan's DDL runs (migrate::plan), each statement with its ALGORITHM clause. A
//!    column that cannot be widened in place gets a shadow column, filled from the old one
//!    in batches while triggers keep rows written meanwhile current, then swapped in by name
//!    under a write lock of a moment (the triggers dropped inside it), and the old column
//!    dropped;
//! 3. the cells are sealed where they are, in batches by primary key: each batch is read,
//!    sealed here, and written back by one UPDATE per column whose every row is conditioned
//!    on the cell still holding what was read, so a newer write by an app (which myveil
//!    sealed) is never overwritten. The batch and its checkpoint commit together;
//! 4. sweeps find cells written as plaintext meanwhile (by a client that bypassed myveil, or
//!    a proxy still on an old policy) and seal them, until one finds none;
//! 5. the columns are marked `done`: from then on a cell that is not an envelope is refused.
//!
//! One run at a time per server (an advisory lock held by a connection for the whole run:
//! a run killed with `kill -9` releases it with its connection). A run started again
//! resumes from the checkpoints and from what the live schema shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};

use super::plan::{self, ColumnPlan, LiveColumn, LiveTable, StepKind, quote};
use super::state::{self, Job, text_literal};
use crate::crypto::keyring::Keyring;
use crate::policy::{Policy, Protected, Storage};
use crate::sql::rewrite::{KeyringSealer, Sealer, canonical, canonical_row_key, is_envelope};

/// Rows read and sealed per batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 500;
/// Bytes of SQL one UPDATE carries at most (a batch of large cells is split).
const MAX_STATEMENT: usize = 4 << 20;
/// Sweeps after the first pass before plaintext that keeps arriving is reported.
const MAX_SWEEPS: usize = 5;
/// Retries of a batch that lost a lock wait or a deadlock to an app's transaction.
const RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "another migration or re-encryption holds the lock on this server (one runs at a time)"
    )]
    Locked,
    #[error("the lock was lost (the server restarted or the lock connection dropped)")]
    LockLost,
    #[error("cannot migrate as it is:\n{}", .0.join("\n"))]
    Blocked(Vec<String>),
    #[error("database: {0}")]
    Db(#[from] mysql_async::Error),
    #[error("{scope}: {reason}")]
    Keys { scope: String, reason: String },
    #[error(
        "{0} cells could not be sealed or re-sealed (not readable as their policy type, an envelope's form that does not open, or plaintext left for `migrate apply`); a migrated column stays mixed. `myveil migrate verify` counts them by column"
    )]
    Unreadable(u64),
    #[error(
        "plaintext kept arriving in {0} after {MAX_SWEEPS} sweeps: a client writes it without myveil's policy (reload every proxy, or stop the direct writer), then run apply again"
    )]
    PlaintextKeepsComing(String),
    #[error("stopped")]
    Cancelled,
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows a second at most (0: as fast as the server takes them).
    pub rate: u64,
    /// Rows per batch.
    pub batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rate: plan::DEFAULT_RATE,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Where a run is (names and counts only, never values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub database: String,
    pub table: String,
    /// "schema", "copy", "seal", "sweep" or "done".
    pub phase: &'static str,
    pub rows: u64,
    /// The server's estimate of the table's rows.
    pub total: u64,
    /// Rows a second over the phase so far.
    pub rate: f64,
}

/// What a run did to one table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableReport {
    pub database: String,
    pub table: String,
    pub columns: Vec<String>,
    /// Cells sealed (and blind indexes filled).
    pub sealed: u64,
    /// Cells that already held envelopes.
    pub already: u64,
    /// Cells an app wrote between the read and the write of their batch (left as written).
    pub raced: u64,
    /// Cells that could not be sealed.
    pub unreadable: u64,
    pub seconds: f64,
}

/// The columns of one table being sealed.
struct Target<'p> {
    col: &'p Protected,
    /// As the live table names it.
    name: String,
    text: bool,
    blind: Option<String>,
    /// Index in the selected row of the row-key value.
    row_key: Option<usize>,
}

/// A table's primary key columns, as literals are written for them.
struct Key {
    names: Vec<String>,
    kinds: Vec<KeyKind>,
}

#[derive(Clone, PartialEq, Eq)]
enum KeyKind {
    Number,
    Bytes,
    /// Text, read as its bytes in its character set and written back with that set's
    /// introducer and the column's collation (so it compares as the key sorts).
    Text {
        charset: String,
        collation: Option<String>,
    },
}

/// Key types whose values do not compare as they sort when written back as literals
/// (ENUM and SET sort by their index, FLOAT and DOUBLE do not round-trip as text).
pub const UNPAGEABLE_KEYS: [&str; 4] = ["enum", "set", "float", "double"];

fn text_key() -> KeyKind {
    KeyKind::Text {
        charset: "utf8mb4".into(),
        collation: None,
    }
}

fn key_kind(col: &LiveColumn) -> KeyKind {
    const NUMBERS: [&str; 10] = [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "decimal",
        "year",
        "float",
        "double",
    ];
    if NUMBERS.contains(&col.data_type.as_str()) {
        return KeyKind::Number;
    }
    if crate::backend::schema::BINARY_TYPES.contains(&col.data_type.as_str())
        || col.data_type == "bit"
    {
        return KeyKind::Bytes;
    }
    let name_ok = |n: &String| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    KeyKind::Text {
        charset: col
            .charset
            .clone()
            .filter(name_ok)
            .unwrap_or_else(|| "utf8mb4".into()),
        collation: col.collation.clone().filter(name_ok),
    }
}

impl Key {
    fn of(table: &LiveTable) -> Self {
        let kinds = table
            .primary_key
            .iter()
            .map(|k| table.column(k).map_or_else(text_key, key_kind))
            .collect();
        Self {
            names: table.primary_key.iter().map(|k| quote(k)).collect(),
            kinds,
        }
    }

    /// One key value as a literal that compares in the column's own terms (so the primary
    /// key's index serves it).
    fn literal(&self, i: usize, value: &[u8]) -> Option<String> {
        Some(match &self.kinds[i] {
            KeyKind::Number => {
                let ok = !value.is_empty()
                    && value.iter().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                    });
                if !ok {
                    return None;
                }
                String::from_utf8(value.to_vec()).ok()?
            }
            KeyKind::Bytes => format!("X'{}'", hex::encode(value)),
            KeyKind::Text { charset, collation } => match collation {
                Some(coll) => format!("_{charset} X'{}' COLLATE {coll}", hex::encode(value)),
                None => format!("_{charset} X'{}'", hex::encode(value)),
            },
        })
    }

    fn literals(&self, values: &[Vec<u8>]) -> Option<Vec<String>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| self.literal(i, v))
            .collect()
    }

    /// `key > last` in key order, for keyset batches.
    fn after(&self, last: &[String]) -> String {
        let mut ors = Vec::new();
        for i in 0..self.names.len() {
            let mut ands: Vec<String> = (0..i)
                .map(|j| format!("{} = {}", self.names[j], last[j]))
                .collect();
            ands.push(format!("{} > {}", self.names[i], last[i]));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!("({})", ors.join(" OR "))
    }

    /// The key columns as selected: text as its bytes (what `literal` writes back).
    fn select(&self) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.kinds)
            .map(|(n, k)| match k {
                KeyKind::Text { .. } => format!("CAST({n} AS BINARY)"),
                _ => n.clone(),
            })
            .collect()
    }

    fn equals(&self, values: &[String]) -> String {
        let parts: Vec<String> = self
            .names
            .iter()
            .zip(values)
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        format!("({})", parts.join(" AND "))
    }

    fn order(&self) -> String {
        self.names.join(", ")
    }
}

/// What a run does to every cell of the policy's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `migrate apply`: plaintext becomes an envelope (the columns go mixed, then done).
    Encrypt,
    /// `keys reencrypt`: an envelope under a key that is not its column's primary is sealed
    /// again under it, and a blind index under an older key is refilled. Plaintext cells are
    /// left to `apply` (and counted).
    Reencrypt,
    /// `migrate revert`: an envelope becomes plaintext again where it is, blind indexes
    /// emptied. The columns stay mixed, so the proxies read what is left either way: take
    /// them out of the policy, reload, and run it again for cells written meanwhile.
    Revert,
}

impl Mode {
    fn job(self) -> &'static str {
        match self {
            Mode::Encrypt => "encrypt",
            Mode::Reencrypt => "reencrypt",
            Mode::Revert => "revert",
        }
    }
}

/// Runs `mode` over every policy column, under the server's lock. `progress` is called
/// after every batch; `cancel` stops the run after its current batch.
pub async fn run(
    mode: Mode,
    opts: mysql_async::Opts,
    policy: &Policy,
    keyring: &Keyring,
    options: &Options,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<Vec<TableReport>, Error> {
    let mut lock = mysql_async::Conn::new(opts.clone()).await?;
    let got: Option<Option<i64>> = lock
        .query_first(format!("SELECT GET_LOCK({}, 0)", text_literal(state::LOCK)))
        .await?;
    if got.flatten() != Some(1) {
        return Err(Error::Locked);
    }
    let mut conn = mysql_async::Conn::new(opts).await?;
    // Our own session: literals read the same whatever the server's defaults, and the
    // assignments of one UPDATE run left to right.
    conn.query_drop("SET NAMES utf8mb4").await?;
    conn.query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
        .await?;
    state::ensure(&mut conn).await?;
    let (server, tables) = plan::load(&mut conn, policy, 0).await?;
    let plans = plan::plan(policy, &tables, server, options.rate.max(1));
    let blocked: Vec<String> = plans
        .iter()
        .flat_map(|p| {
            p.blockers
                .iter()
                .map(move |b| format!("  {}.{}.{}: {b}", p.database, p.table, p.column))
        })
        .collect();
    if !blocked.is_empty() {
        return Err(Error::Blocked(blocked));
    }
    let mut by_table: BTreeMap<(String, String), Vec<&ColumnPlan>> = BTreeMap::new();
    for p in &plans {
        by_table
            .entry((p.database.clone(), p.table.clone()))
            .or_default()
            .push(p);
    }
    let sealer = KeyringSealer(keyring, &crate::backend::schema::NO_MIXED);
    let mut run = Run {
        conn,
        lock,
        sealer,
        options,
        progress,
        cancel,
        mode,
        server,
    };
    let mut reports = Vec::new();
    for ((db, table), plans) in by_table {
        let Some(live) = tables.iter().find(|t| t.database == db && t.name == table) else {
            continue;
        };
        reports.push(run.table(policy, live, &db, &table, &plans).await?);
    }
    let _ = run.lock.query_drop("DO RELEASE_ALL_LOCKS()").await;
    let _ = run.conn.disconnect().await;
    let _ = run.lock.disconnect().await;
    Ok(reports)
}

struct Run<'a> {
    conn: mysql_async::Conn,
    lock: mysql_async::Conn,
    sealer: KeyringSealer<'a>,
    options: &'a Options,
    progress: &'a (dyn Fn(&Progress) + Sync),
    cancel: &'a AtomicBool,
    mode: Mode,
    server: plan::Server,
}

/// How long a schema change takes to reach every proxy at the latest (its DDL poll, then
/// a schema read), with room to spare: a shadow window's phases are this far apart.
pub const PROXY_GRACE: Duration = Duration::from_secs(2);

/// Paces a phase at `rate` rows a second.
struct Pace {
    started: Instant,
    rows: u64,
    rate: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            started: Instant::now(),
            rows: 0,
            rate,
        }
    }

    async fn after(&mut self, rows: u64) {
        self.rows += rows;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.rows as f64 / self.rate as f64);
        let spent = self.started.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-6)
    }
}

/// The hex SHA-256 of a cell as read, which the write is conditioned on.
fn digest(value: &[u8]) -> String {
    hex::encode(Sha256::digest(value))
}

/// The cell's SHA-256 as the server computes it, over the same bytes the batch read.
fn digest_sql(target: &Target<'_>) -> String {
    let c = quote(&target.name);
    if target.text {
        format!("SHA2(CONVERT({c} USING utf8mb4), 256)")
    } else {
        format!("SHA2({c}, 256)")
    }
}

/// One cell's change in a batch.
struct Edit {
    key: Vec<String>,
    old: String,
    cell: Option<String>,
    blind: Option<String>,
}

impl Run<'_> {
    fn check(&self) -> Result<(), Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    async fn still_locked(&mut self) -> Result<(), Error> {
        let mine: Option<Option<i64>> = self
            .lock
            .query_first(format!(
                "SELECT IS_USED_LOCK({}) = CONNECTION_ID()",
                text_literal(state::LOCK)
            ))
            .await
            .map_err(|_| Error::LockLost)?;
        if mine.flatten() != Some(1) {
            return Err(Error::LockLost);
        }
        Ok(())
    }

    async fn table(
        &mut self,
        policy: &Policy,
        before: &LiveTable,
        db: &str,
        table: &str,
        plans: &[&ColumnPlan],
    ) -> Result<TableReport, Error> {
        let started = Instant::now();
        let mut report = TableReport {
            database: db.to_owned(),
            table: table.to_owned(),
            columns: plans.iter().map(|p| p.column.clone()).collect(),
            ..TableReport::default()
        };
        let total = plans.first().map_or(0, |p| p.rows);
        let progress = self.progress;
        let show = |phase: &'static str, rows: u64, rate: f64| {
            progress(&Progress {
                database: db.to_owned(),
                table: table.to_owned(),
                phase,
                rows,
                total,
                rate,
            })
        };
        show("schema", 0, 0.0);
        let mode = self.mode;
        // 1. Mixed first: from here the proxies take plaintext cells as such.
        for p in plans.iter().filter(|_| mode != Mode::Reencrypt) {
            let now = state::column_state(&mut self.conn, db, table, &p.column).await?;
            if now.as_deref() != Some("done") || mode == Mode::Revert {
                state::set_column_state(&mut self.conn, db, table, &p.column, "mixed").await?;
            }
        }
        // 2. The DDL, in the plan's order.
        for p in plans.iter().filter(|_| mode == Mode::Encrypt) {
            for step in &p.steps {
                self.check()?;
                match step.kind {
                    StepKind::DropOld => {
                        if let Some(sql) = &step.sql {
                            self.drop_old(db, table, &p.column, sql).await?;
                        }
                    }
                    StepKind::NotNull => {
                        if let Some(sql) = &step.sql {
                            self.not_null(db, table, &p.column, sql).await?;
                        }
                    }
                    StepKind::Ddl => {
                        if let Some(sql) = &step.sql {
                            tracing::info!(database = db, table, column = %p.column, what = %step.what, "migrate: DDL");
                            self.conn.query_drop(sql).await?;
                        }
                    }
                    StepKind::ShadowFill => {
                        self.shadow_fill(before, &p.column, p.not_null, total)
                            .await?;
                    }
                    StepKind::Swap => {
                        if let (Some(sql), Some(target)) = (&step.sql, &p.target) {
                            self.swap(db, table, &p.column, sql, target).await?;
                        }
                    }
                    StepKind::Seal => {}
                }
            }
        }
        // The table as it is now (columns retyped, added, renamed).
        let (_, tables) = plan::load(&mut self.conn, policy, 0).await?;
        let live = tables
            .into_iter()
            .find(|t| t.database == db && t.name == table)
            .ok_or_else(|| Error::Blocked(vec![format!("  {db}.{table}: the table is gone")]))?;
        let key = Key::of(&live);
        let n_key = key.names.len();
        // Row layout: key columns, then per target its cell and blind index, then the
        // row-key columns that are not in the key.
        enum At {
            Key(usize),
            Extra(usize),
        }
        let mut extra: Vec<String> = Vec::new();
        let mut found = Vec::new();
        for p in plans {
            let Some(col) = policy.find(db, table, &p.column) else {
                continue;
            };
            let Some(lc) = live.column(&col.column) else {
                continue;
            };
            let at = col.row_key.as_ref().map(|rk| {
                match live
                    .primary_key
                    .iter()
                    .position(|k| k.eq_ignore_ascii_case(rk))
                {
                    Some(i) => At::Key(i),
                    None => At::Extra(
                        extra
                            .iter()
                            .position(|e| e.eq_ignore_ascii_case(rk))
                            .unwrap_or_else(|| {
                                extra.push(rk.clone());
                                extra.len() - 1
                            }),
                    ),
                }
            });
            found.push((col, lc, at));
        }
        let base = n_key + 2 * found.len();
        let targets: Vec<Target<'_>> = found
            .into_iter()
            .map(|(col, lc, at)| Target {
                col,
                name: lc.name.clone(),
                text: crate::backend::schema::TEXT_TYPES.contains(&lc.data_type.as_str()),
                blind: col.blind_index.clone(),
                row_key: at.map(|a| match a {
                    At::Key(i) => i,
                    At::Extra(x) => base + x,
                }),
            })
            .collect();
        let mut select = key.select();
        for t in &targets {
            select.push(quote(&t.name));
            select.push(t.blind.as_deref().map_or_else(|| "NULL".into(), quote));
        }
        select.extend(extra.iter().map(|e| quote(e)));
        let from = format!("{}.{}", quote(db), quote(table));
        // 3. The first pass, from the checkpoint.
        let job = state::job(&mut self.conn, db, table, mode.job()).await?;
        let resume = job.filter(|j| j.phase == "seal");
        let mut pass = Pass {
            from: &from,
            select: &select,
            key: &key,
            targets: &targets,
            filter: None,
            db,
            table,
            total,
        };
        let (sealed, _) = self
            .pass(&mut pass, resume, "seal", &mut report, &show)
            .await?;
        report.sealed += sealed;
        // 4. Sweeps for plaintext that arrived behind the first pass (a re-encryption looks
        // at every row again: which key a cell is under is not in a prefix).
        let filter = sweep_filter(&targets);
        if mode == Mode::Encrypt {
            pass.filter = Some(&filter);
        }
        let mut clean = false;
        // Reverting, writes through myveil go on sealing: one sweep, and the columns stay
        // mixed.
        let sweeps = if mode == Mode::Revert { 1 } else { MAX_SWEEPS };
        for _ in 0..sweeps {
            // A sweep finds the cells that could not be sealed again: it counts them anew.
            report.unreadable = 0;
            let (changed, tried) = self
                .pass(&mut pass, None, "sweep", &mut report, &show)
                .await?;
            report.sealed += changed;
            // Clean only when a sweep finds nothing to change (not when its changes all lost
            // to newer writes: those may be plaintext again).
            if tried == 0 {
                clean = true;
                break;
            }
        }
        if !clean && mode != Mode::Revert {
            return Err(Error::PlaintextKeepsComing(format!("{db}.{table}")));
        }
        if report.unreadable > 0 {
            return Err(Error::Unreadable(report.unreadable));
        }
        // 5. Done.
        for t in targets.iter().filter(|_| mode == Mode::Encrypt) {
            state::set_column_state(&mut self.conn, db, table, &t.col.column, "done").await?;
        }
        self.conn
            .query_drop(state::job_update_sql(
                db,
                table,
                mode.job(),
                &Job {
                    phase: "done".into(),
                    last_pk: None,
                    rows_done: report.sealed,
                    rows_total: total,
                },
            ))
            .await?;
        report.seconds = started.elapsed().as_secs_f64();
        show("done", total, 0.0);
        Ok(report)
    }

    /// Fills a shadow column from the old one, in batches by primary key, with triggers
    /// that copy every row written meanwhile around myveil. Resumes from its checkpoint.
    ///
    /// From the moment the shadow exists, proxies write the column's values into it (and
    /// NULL into the old column) and read it first (`sql::analyze`'s `shadow_ref`): the
    /// copy fills only rows whose old column holds a value the shadow does not (a write
    /// through myveil left it NULL), so it never overwrites an app's write.
    async fn shadow_fill(
        &mut self,
        live: &LiveTable,
        column: &str,
        not_null: bool,
        total: u64,
    ) -> Result<(), Error> {
        let (db, table) = (live.database.as_str(), live.name.as_str());
        let (ins, upd) = trigger_names(table, column);
        let t = format!("{}.{}", quote(db), quote(table));
        let c = quote(column);
        let s = quote(&format!("{column}{}", plan::SHADOW_SUFFIX));
        let job_name = format!("copy:{column}");
        // A copy counts only for rows written while both triggers were there, as they are
        // now: without them (a new shadow, or a run stopped between dropping them and the
        // swap) it starts over.
        let present: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME IN (?, ?)",
                (db, &ins, &upd),
            )
            .await?;
        let current = present.len() == 2
            && present
                .iter()
                .all(|(n, body)| is_copy_trigger(table, column, n, body));
        if !current {
            self.conn
                .exec_drop(
                    "DELETE FROM `myveil`.`jobs` WHERE db = ? AND tbl = ? AND job = ?",
                    (db, table, &job_name),
                )
                .await?;
            // The triggers tell the proxies to write into the shadow. Every proxy reads
            // through it from the moment it exists; the grace makes sure all of them do
            // before any of them writes there (ADR 0008).
            tokio::time::sleep(PROXY_GRACE).await;
            // Replaced, not kept: an older run's body may differ.
            self.drop_triggers(db, [&ins, &upd]).await?;
            self.create_triggers(db, &t, (&ins, &upd), |event| {
                trigger_body(column, event, not_null)
            })
            .await?;
        }
        // Only rows whose old column holds a value the shadow does not: a write through
        // myveil since the window opened left the old column NULL (its value, sealed, is in
        // the shadow and is never overwritten); a plaintext copy that is current is left as
        // it is, and a stale one (a write around myveil while the triggers were gone) is
        // copied again.
        let not_sealed =
            format!("({c} IS NOT NULL AND NOT (CAST({s} AS BINARY) <=> CAST({c} AS BINARY)))");
        let key = Key::of(live);
        let job = state::job(&mut self.conn, db, table, &job_name).await?;
        if job.as_ref().is_some_and(|j| j.phase == "done") {
            return Ok(());
        }
        let mut last: Option<Vec<Vec<u8>>> = job.and_then(|j| j.last_pk);
        let mut done = 0u64;
        let mut pace = Pace::new(self.options.rate);
        let order = key.order();
        loop {
            self.check()?;
            self.still_locked().await?;
            let after = match &last {
                Some(l) => {
                    let lits = key.literals(l).ok_or_else(|| bad_key(db, table))?;
                    format!("WHERE {}", key.after(&lits))
                }
                None => String::new(),
            };
            let rows: Vec<mysql_async::Row> = self
                .conn
                .query(format!(
                    "SELECT {} FROM {t} {after} ORDER BY {order} LIMIT {}",
                    key.select().join(", "),
                    self.options.batch
                ))
                .await?;
            let Some(upper) = rows.last() else { break };
            let upper = row_bytes(upper, key.names.len());
            let upper_lits = key.literals(&upper).ok_or_else(|| bad_key(db, table))?;
            let range = if after.is_empty() {
                format!("WHERE NOT {}", key.after(&upper_lits))
            } else {
                format!("{after} AND NOT {}", key.after(&upper_lits))
            };
            done += rows.len() as u64;
            let checkpoint = state::job_update_sql(
                db,
                table,
                &job_name,
                &Job {
                    phase: "copy".into(),
                    last_pk: Some(upper.clone()),
                    rows_done: done,
                    rows_total: total,
                },
            );
            let sql = [
                format!("UPDATE {t} SET {s} = {c} {range} AND {not_sealed}"),
                checkpoint,
            ];
            self.in_transaction(&sql).await?;
            last = Some(upper);
            pace.after(rows.len() as u64).await;
            (self.progress)(&Progress {
                database: db.into(),
                table: table.into(),
                phase: "copy",
                rows: done,
                total,
                rate: pace.rate(),
            });
        }
        self.conn
            .query_drop(state::job_update_sql(
                db,
                table,
                &job_name,
                &Job {
                    phase: "done".into(),
                    last_pk: None,
                    rows_done: done,
                    rows_total: total,
                },
            ))
            .await?;
        Ok(())
    }

    /// Swaps the shadow column in: under a write lock on the table, the triggers go and the
    /// columns are renamed, so no write falls between them. A proxy whose schema is a
    /// moment older still writes and reads the shadow's name: an empty column of that name
    /// takes its place, and forward triggers move what it is given into the column (until
    /// `drop_old`, after the grace).
    async fn swap(
        &mut self,
        db: &str,
        table: &str,
        column: &str,
        sql: &str,
        target: &str,
    ) -> Result<(), Error> {
        let (ins, upd) = trigger_names(table, column);
        let (fins, fupd) = forward_names(table, column);
        let invisible = if self.server.invisible() {
            " INVISIBLE"
        } else {
            ""
        };
        let shadow = quote(&format!("{column}{}", plan::SHADOW_SUFFIX));
        let stand_in = format!(
            "ALTER TABLE {}.{} ADD COLUMN {shadow} {target} NULL{invisible}",
            quote(db),
            quote(table),
        );
        let t = format!("{}.{}", quote(db), quote(table));
        // LOCK TABLES makes the server refuse LOCK=NONE; the lock is ours already.
        let sql = sql.replace(", LOCK=NONE", "");
        tracing::info!(
            database = db,
            table,
            column,
            "migrate: swapping the shadow column in"
        );
        self.lock_table(&t).await?;
        let swapped = async {
            self.drop_triggers(db, [&ins, &upd]).await?;
            self.conn.query_drop(&sql).await?;
            self.conn.query_drop(&stand_in).await?;
            self.create_triggers(db, &t, (&fins, &fupd), |_| forward_body(column))
                .await
        }
        .await;
        let unlocked = self.conn.query_drop("UNLOCK TABLES").await;
        swapped?;
        unlocked?;
        self.conn
            .query_drop(format!(
                "DELETE FROM `myveil`.`jobs` WHERE db = {} AND tbl = {} AND job = {}",
                text_literal(db),
                text_literal(table),
                text_literal(&format!("copy:{column}"))
            ))
            .await?;
        Ok(())
    }

    /// Makes a column swapped in through its shadow NOT NULL again, as it was (an online
    /// rebuild, outside any lock). A row that holds NULL (written around myveil before the
    /// copy triggers, or through it since the swap) keeps it nullable, with a warning.
    async fn not_null(
        &mut self,
        db: &str,
        table: &str,
        column: &str,
        sql: &str,
    ) -> Result<(), Error> {
        let t = format!("{}.{}", quote(db), quote(table));
        let nulls: Option<u64> = self
            .conn
            .query_first(format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {t} WHERE {} IS NULL LIMIT 1) n",
                quote(column)
            ))
            .await?;
        let refused = |e: &mysql_async::Error| matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1138 | 1263 | 1265));
        let outcome = if nulls.unwrap_or(0) > 0 {
            None
        } else {
            tracing::info!(database = db, table, column, "migrate: NOT NULL again");
            match self.conn.query_drop(sql).await {
                Ok(()) => Some(()),
                Err(e) if refused(&e) => None,
                Err(e) => return Err(e.into()),
            }
        };
        if outcome.is_none() {
            tracing::warn!(
                database = db,
                table,
                column,
                "migrate: rows hold NULL in a column that was NOT NULL; it stays nullable (make it NOT NULL once they are filled)"
            );
            // The marker goes, so that a later run does not try again.
            self.conn
                .query_drop(sql.replace(" NOT NULL", " NULL"))
                .await?;
        }
        Ok(())
    }

    /// Drops triggers of database `db` that may be there.
    async fn drop_triggers(
        &mut self,
        db: &str,
        names: [&String; 2],
    ) -> Result<(), mysql_async::Error> {
        for name in names {
            self.conn
                .query_drop(format!(
                    "DROP TRIGGER IF EXISTS {}.{}",
                    quote(db),
                    quote(name)
                ))
                .await?;
        }
        Ok(())
    }

    /// Creates the BEFORE INSERT and BEFORE UPDATE triggers `(ins, upd)` on table `t` (of
    /// database `db`), with the body `body` gives for each event.
    async fn create_triggers(
        &mut self,
        db: &str,
        t: &str,
        (ins, upd): (&String, &String),
        body: impl Fn(&str) -> String,
    ) -> Result<(), mysql_async::Error> {
        for (name, event) in [(ins, "INSERT"), (upd, "UPDATE")] {
            self.conn
                .query_drop(format!(
                    "CREATE TRIGGER {}.{} BEFORE {event} ON {t} FOR EACH ROW {}",
                    quote(db),
                    quote(name),
                    body(event)
                ))
                .await?;
        }
        Ok(())
    }

    /// `LOCK TABLES t WRITE`. A long transaction of an app holds the table: wait a moment
    /// at a time (queries behind the waiting lock wait too), and try again.
    async fn lock_table(&mut self, t: &str) -> Result<(), Error> {
        self.conn
            .query_drop("SET SESSION lock_wait_timeout = 2")
            .await?;
        let mut tries = 0;
        loop {
            match self.conn.query_drop(format!("LOCK TABLES {t} WRITE")).await {
                Ok(()) => return Ok(()),
                Err(mysql_async::Error::Server(e)) if e.code == 1205 && tries < RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drops the old column left by a swap, after the grace (so no proxy still uses the
    /// shadow's name), with the stand-in of that name and its forward triggers, which go
    /// together under a write lock (a trigger without its column would fail every write).
    async fn drop_old(
        &mut self,
        db: &str,
        table: &str,
        column: &str,
        sql: &str,
    ) -> Result<(), Error> {
        let t = format!("{}.{}", quote(db), quote(table));
        let stand_in = format!("{column}{}", plan::SHADOW_SUFFIX);
        let (fins, fupd) = forward_names(table, column);
        let leftovers: Option<u64> = self
            .conn
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.COLUMNS \
                   WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?) \
                 + (SELECT COUNT(*) FROM information_schema.TRIGGERS \
                   WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME IN (?, ?))",
                (db, table, &stand_in, db, &fins, &fupd),
            )
            .await?;
        if leftovers.unwrap_or(0) > 0 {
            tokio::time::sleep(PROXY_GRACE).await;
            self.lock_table(&t).await?;
            let dropped = async {
                self.drop_triggers(db, [&fins, &fupd]).await?;
                let there: Option<u64> = self
                    .conn
                    .exec_first(
                        "SELECT COUNT(*) FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                        (db, table, &stand_in),
                    )
                    .await?;
                if there.unwrap_or(0) > 0 {
                    self.conn
                        .query_drop(format!("ALTER TABLE {t} DROP COLUMN {}", quote(&stand_in)))
                        .await?;
                }
                Ok::<(), mysql_async::Error>(())
            }
            .await;
            let unlocked = self.conn.query_drop("UNLOCK TABLES").await;
            dropped?;
            unlocked?;
        }
        tracing::info!(
            database = db,
            table,
            column,
            "migrate: dropping the old column"
        );
        self.conn.query_drop(sql).await?;
        Ok(())
    }

    /// Runs statements as one transaction, again after a lock wait or deadlock.
    async fn in_transaction(&mut self, sql: &[String]) -> Result<Vec<u64>, Error> {
        let mut tries = 0;
        loop {
            match self.try_transaction(sql).await {
                Ok(a) => return Ok(a),
                Err(mysql_async::Error::Server(e))
                    if (e.code == 1213 || e.code == 1205) && tries < RETRIES =>
                {
                    tries += 1;
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    tokio::time::sleep(Duration::from_millis(20 << tries.min(5))).await;
                }
                Err(e) => {
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    return Err(e.into());
                }
            }
        }
    }

    async fn try_transaction(&mut self, sql: &[String]) -> Result<Vec<u64>, mysql_async::Error> {
        self.conn.query_drop("BEGIN").await?;
        let mut affected = Vec::with_capacity(sql.len());
        for s in sql {
            self.conn.query_drop(s).await?;
            affected.push(self.conn.affected_rows());
        }
        self.conn.query_drop("COMMIT").await?;
        Ok(affected)
    }

    /// One pass over the table in key order (with `filter`: only rows it selects). Returns
    /// the cells changed and the changes it tried (a change an app's write got ahead of is
    /// tried but not made).
    async fn pass(
        &mut self,
        p: &mut Pass<'_>,
        resume: Option<Job>,
        phase: &'static str,
        report: &mut TableReport,
        show: &(dyn Fn(&'static str, u64, f64) + Sync),
    ) -> Result<(u64, u64), Error> {
        let mut last = resume.as_ref().and_then(|j| j.last_pk.clone());
        let mut rows_done = resume.as_ref().map_or(0, |j| j.rows_done);
        let mut sealed = 0u64;
        let mut edits_planned = 0u64;
        let mut pace = Pace::new(self.options.rate);
        let n_key = p.key.names.len();
        loop {
            self.check()?;
            self.still_locked().await?;
            let mut conds = Vec::new();
            if let Some(l) = &last {
                let lits = p.key.literals(l).ok_or_else(|| bad_key(p.db, p.table))?;
                conds.push(p.key.after(&lits));
            }
            if let Some(f) = p.filter {
                conds.push(f.to_owned());
            }
            let filter = if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            };
            let rows: Vec<mysql_async::Row> = self
                .conn
                .query(format!(
                    "SELECT {} FROM {} {filter} ORDER BY {} LIMIT {}",
                    p.select.join(", "),
                    p.from,
                    p.key.order(),
                    self.options.batch
                ))
                .await?;
            let Some(last_row) = rows.last() else { break };
            let upper = row_bytes(last_row, n_key);
            let mut edits: Vec<Vec<Edit>> = (0..p.targets.len()).map(|_| Vec::new()).collect();
            for row in &rows {
                let keys = row_bytes(row, n_key);
                let key_lits = p
                    .key
                    .literals(&keys)
                    .ok_or_else(|| bad_key(p.db, p.table))?;
                for (j, t) in p.targets.iter().enumerate() {
                    let cell = value(row, n_key + 2 * j);
                    let blind = value(row, n_key + 2 * j + 1);
                    let Some(stored) = cell else { continue };
                    let row_key = match t.row_key {
                        None => None,
                        Some(i) => match value(row, i) {
                            Some(k) => Some(canonical_row_key(&k)),
                            None => {
                                report.unreadable += 1;
                                continue;
                            }
                        },
                    };
                    match self.edit(t, &stored, blind.as_deref(), row_key.as_deref()) {
                        Ok(Some((cell, blind))) => edits[j].push(Edit {
                            key: key_lits.clone(),
                            old: digest(&stored),
                            cell,
                            blind,
                        }),
                        Ok(None) if phase == "seal" => report.already += 1,
                        Ok(None) => {}
                        Err(()) => report.unreadable += 1,
                    }
                }
            }
            rows_done += rows.len() as u64;
            let mut sql = Vec::new();
            let mut planned = 0u64;
            for (t, e) in p.targets.iter().zip(&edits) {
                planned += e.len() as u64;
                sql.extend(updates(p.from, p.key, t, e));
            }
            if phase == "seal" {
                sql.push(state::job_update_sql(
                    p.db,
                    p.table,
                    self.mode.job(),
                    &Job {
                        phase: "seal".into(),
                        last_pk: Some(upper.clone()),
                        rows_done,
                        rows_total: p.total,
                    },
                ));
            }
            let affected = self.in_transaction(&sql).await?;
            let changed: u64 = affected
                .iter()
                .take(sql.len() - usize::from(phase == "seal"))
                .sum();
            sealed += changed;
            edits_planned += planned;
            report.raced += planned.saturating_sub(changed);
            last = Some(upper);
            pace.after(rows.len() as u64).await;
            show(phase, rows_done, pace.rate());
        }
        Ok((sealed, edits_planned))
    }

    /// What to write for one cell: None when it is already an envelope with its index;
    /// Err when it cannot be sealed.
    #[allow(clippy::type_complexity)]
    fn edit(
        &self,
        t: &Target<'_>,
        stored: &[u8],
        blind: Option<&[u8]>,
        row_key: Option<&[u8]>,
    ) -> Result<Option<(Option<String>, Option<String>)>, ()> {
        let has_blind = blind.is_some();
        let col = t.col;
        let hex = |b: &[u8]| format!("X'{}'", hex::encode(b));
        if self.mode == Mode::Reencrypt {
            return self.reedit(t, stored, blind, row_key);
        }
        if self.mode == Mode::Revert {
            if !is_envelope(col, stored) {
                return Ok(None);
            }
            let plain = crate::sql::rewrite::open_cell(self.sealer.0, col, stored, row_key)
                .map_err(|_| ())?;
            let cell = if t.text {
                format!("_utf8mb4 X'{}'", hex::encode(&plain))
            } else {
                hex(&plain)
            };
            return Ok(Some((
                Some(cell),
                t.blind.as_ref().map(|_| "NULL".to_owned()),
            )));
        }
        if is_envelope(col, stored) {
            if t.blind.is_none() || has_blind {
                return Ok(None);
            }
            // Sealed by an app before its index column existed: the index only.
            let plain = crate::sql::rewrite::open_cell(self.sealer.0, col, stored, row_key)
                .map_err(|_| ())?;
            let idx = self.sealer.blind(col, &plain).map_err(|_| ())?;
            return Ok(Some((None, Some(hex(&idx)))));
        }
        let plain = canonical(col, stored).map_err(|_| ())?;
        let env = self.sealer.seal(col, &plain, row_key).map_err(|_| ())?;
        let cell = match col.storage {
            Storage::Binary => hex(&env),
            Storage::Base64 => format!(
                "'{}'",
                String::from_utf8(crate::sql::rewrite::stored_form(col, &env)).map_err(|_| ())?
            ),
        };
        let blind = match &t.blind {
            Some(_) => Some(hex(&self.sealer.blind(col, &plain).map_err(|_| ())?)),
            None => None,
        };
        Ok(Some((Some(cell), blind)))
    }
}

impl Run<'_> {
    /// A re-encryption's change to one cell: a fresh envelope under the primary key for one
    /// under another, the primary blind index for another. A plaintext cell is not its
    /// business (Err: counted, left for `apply`).
    #[allow(clippy::type_complexity)]
    fn reedit(
        &self,
        t: &Target<'_>,
        stored: &[u8],
        blind: Option<&[u8]>,
        row_key: Option<&[u8]>,
    ) -> Result<Option<(Option<String>, Option<String>)>, ()> {
        use crate::crypto::keyring::Purpose;
        let col = t.col;
        if !is_envelope(col, stored) {
            return Err(());
        }
        let keyring = self.sealer.0;
        let primary = keyring
            .primary(Purpose::Column, col.key_scope())
            .map(|(id, _)| id)
            .ok_or(())?;
        let envelope = match col.storage {
            Storage::Binary => std::borrow::Cow::Borrowed(stored),
            Storage::Base64 => {
                use base64::Engine as _;
                std::borrow::Cow::Owned(
                    base64::engine::general_purpose::STANDARD
                        .decode(stored)
                        .map_err(|_| ())?,
                )
            }
        };
        let under = crate::crypto::envelope::key_id(&envelope).map_err(|_| ())?;
        let blind_keys = keyring.in_use(Purpose::BlindIndex, col.key_scope()).len();
        let reseal = under != primary;
        // With one blind-index key in use, every index is under it.
        let check_blind = t.blind.is_some() && (blind_keys > 1 || blind.is_none());
        if !reseal && !check_blind {
            return Ok(None);
        }
        let plain =
            crate::sql::rewrite::open_cell(keyring, col, stored, row_key).map_err(|_| ())?;
        let hex = |b: &[u8]| format!("X'{}'", hex::encode(b));
        let cell = if reseal {
            let env = self.sealer.seal(col, &plain, row_key).map_err(|_| ())?;
            Some(match col.storage {
                Storage::Binary => hex(&env),
                Storage::Base64 => format!(
                    "'{}'",
                    String::from_utf8(crate::sql::rewrite::stored_form(col, &env))
                        .map_err(|_| ())?
                ),
            })
        } else {
            None
        };
        let new_blind = if check_blind {
            let idx = self.sealer.blind(col, &plain).map_err(|_| ())?;
            (blind != Some(idx.as_slice())).then(|| hex(&idx))
        } else {
            None
        };
        if cell.is_none() && new_blind.is_none() {
            return Ok(None);
        }
        Ok(Some((cell, new_blind)))
    }
}

struct Pass<'a> {
    from: &'a str,
    select: &'a [String],
    key: &'a Key,
    targets: &'a [Target<'a>],
    filter: Option<&'a str>,
    db: &'a str,
    table: &'a str,
    total: u64,
}

fn bad_key(db: &str, table: &str) -> Error {
    Error::Blocked(vec![format!(
        "  {db}.{table}: a primary key value cannot be written back as a literal"
    )])
}

/// The names of the triggers that keep a shadow column current (short, and the same for
/// every run).
fn trigger_names(table: &str, column: &str) -> (String, String) {
    named_triggers("copy", table, column)
}

/// `myveil_<kind>_<hash of table and column>_ins` and `…_upd`.
fn named_triggers(kind: &str, table: &str, column: &str) -> (String, String) {
    let h = hex::encode(&Sha256::digest(format!("{table}.{column}").as_bytes())[..6]);
    (
        format!("myveil_{kind}_{h}_ins"),
        format!("myveil_{kind}_{h}_upd"),
    )
}

/// The body of a trigger that keeps a shadow column current for writes made around
/// myveil (which write the old column). A write through myveil sets the shadow itself: an
/// INSERT's shadow value is kept when given; an UPDATE's when it changed it (a fresh
/// envelope always differs). Otherwise a changed old column is copied over.
///
/// `not_null`: the column was NOT NULL before the window (it is nullable for it): a row
/// left without a value is refused as the server refused it then (1048).
fn trigger_body(column: &str, event: &str, not_null: bool) -> String {
    let s = quote(&format!("{column}{}", plan::SHADOW_SUFFIX));
    let c = quote(column);
    // Compared as bytes: under a case-insensitive or PAD SPACE collation `'a'` → `'A'` is a
    // change all the same.
    let same = |x: &str| format!("CAST(NEW.{x} AS BINARY) <=> CAST(OLD.{x} AS BINARY)");
    let set = if event == "INSERT" {
        format!("SET NEW.{s} = COALESCE(NEW.{s}, NEW.{c})")
    } else {
        format!(
            "SET NEW.{s} = IF({} AND NOT ({}), NEW.{c}, NEW.{s})",
            same(&s),
            same(&c)
        )
    };
    if !not_null {
        return set;
    }
    // Only a row this statement leaves without a value: one already so (written around
    // myveil before the triggers) does not stop the copy or other columns' updates.
    let was = if event == "INSERT" {
        String::new()
    } else {
        format!(" AND NOT (OLD.{s} IS NULL AND OLD.{c} IS NULL)")
    };
    format!(
        "BEGIN {set}; IF NEW.{s} IS NULL AND NEW.{c} IS NULL{was} THEN SIGNAL SQLSTATE '23000' \
         SET MESSAGE_TEXT = 'Column ''{}'' cannot be null', MYSQL_ERRNO = 1048; END IF; END",
        column.replace('\'', "''").replace('\\', "\\\\")
    )
}

/// The names of the triggers that move a late write of a swapped-in shadow's name into the
/// column (`Run::swap`).
fn forward_names(table: &str, column: &str) -> (String, String) {
    named_triggers("fwd", table, column)
}

/// The body of a forward trigger: a value given to the shadow's name (by a proxy that has
/// not seen the swap yet, which wrote NULL to the column's own name) becomes the column's.
fn forward_body(column: &str) -> String {
    let s = quote(&format!("{column}{}", plan::SHADOW_SUFFIX));
    let c = quote(column);
    format!("SET NEW.{c} = IF(NEW.{s} IS NULL, NEW.{c}, NEW.{s}), NEW.{s} = NULL")
}

/// The statements that make `column`'s copy triggers on `table` as `migrate apply` does,
/// in the current database (tests stage a shadow window with them).
pub fn copy_triggers_ddl(table: &str, column: &str, not_null: bool) -> [String; 2] {
    let (ins, upd) = trigger_names(table, column);
    [(ins, "INSERT"), (upd, "UPDATE")].map(|(name, event)| {
        format!(
            "CREATE TRIGGER {} BEFORE {event} ON {} FOR EACH ROW {}",
            quote(&name),
            quote(table),
            trigger_body(column, event, not_null)
        )
    })
}

/// Whether a trigger on `table` is one of a migration's forward triggers for `column`.
pub fn is_forward_trigger(table: &str, column: &str, name: &str, body: &str) -> bool {
    let (ins, upd) = forward_names(table, column);
    (name == ins || name == upd) && body.trim() == forward_body(column)
}

/// Whether a trigger on `table` is one of a migration's copy triggers for `column`, by its
/// name and its whole body (which copies the column into its shadow and does nothing else).
pub fn is_copy_trigger(table: &str, column: &str, name: &str, body: &str) -> bool {
    let (ins, upd) = trigger_names(table, column);
    let body = body.trim();
    [false, true].iter().any(|&not_null| {
        (name == ins && body == trigger_body(column, "INSERT", not_null))
            || (name == upd && body == trigger_body(column, "UPDATE", not_null))
    })
}

fn value(row: &mysql_async::Row, i: usize) -> Option<Vec<u8>> {
    match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => Some(b.clone()),
        Some(mysql_async::Value::NULL) | None => None,
        Some(v) => Some(v.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
    }
}

fn row_bytes(row: &mysql_async::Row, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| value(row, i).unwrap_or_default()).collect()
}

/// Rows a sweep looks at: a cell without an envelope's form, or one without its index.
fn sweep_filter(targets: &[Target<'_>]) -> String {
    let mut ors = Vec::new();
    for t in targets {
        let c = quote(&t.name);
        let head = match t.col.storage {
            Storage::Binary => "X'4D560101'",
            Storage::Base64 => "'TVYB'",
        };
        ors.push(format!(
            "({c} IS NOT NULL AND CAST(LEFT({c}, 4) AS BINARY) <> {head})"
        ));
        if let Some(b) = &t.blind {
            ors.push(format!("({c} IS NOT NULL AND {} IS NULL)", quote(b)));
        }
    }
    format!("({})", ors.join(" OR "))
}

/// The UPDATEs of one column for a batch: every row's new values conditioned on its key
/// and on the cell still holding what was read. The blind index is assigned first, while
/// the cell is still the one read (a single-table UPDATE assigns left to right).
fn updates(from: &str, key: &Key, t: &Target<'_>, edits: &[Edit]) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < edits.len() {
        let mut size = 0;
        let mut end = start;
        while end < edits.len() && (end == start || size < MAX_STATEMENT) {
            size += edits[end].cell.as_ref().map_or(0, String::len) + 200;
            end += 1;
        }
        out.push(update(from, key, t, &edits[start..end]));
        start = end;
    }
    out
}

fn update(from: &str, key: &Key, t: &Target<'_>, edits: &[Edit]) -> String {
    let c = quote(&t.name);
    let digest = digest_sql(t);
    let mut sql = format!("UPDATE {from} SET ");
    let case = |sql: &mut String, target: &str, pick: &dyn Fn(&Edit) -> Option<&String>| {
        let _ = write!(sql, "{target} = CASE");
        for e in edits {
            if let Some(v) = pick(e) {
                let _ = write!(
                    sql,
                    " WHEN {} AND {digest} = '{}' THEN {v}",
                    key.equals(&e.key),
                    e.old
                );
            }
        }
        let _ = write!(sql, " ELSE {target} END");
    };
    let mut first = true;
    if let Some(b) = &t.blind
        && edits.iter().any(|e| e.blind.is_some())
    {
        case(&mut sql, &quote(b), &|e| e.blind.as_ref());
        first = false;
    }
    if edits.iter().any(|e| e.cell.is_some()) {
        if !first {
            sql.push_str(", ");
        }
        case(&mut sql, &c, &|e| e.cell.as_ref());
    }
    let keys: Vec<String> = edits
        .iter()
        .map(|e| {
            if e.key.len() == 1 {
                e.key[0].clone()
            } else {
                format!("({})", e.key.join(", "))
            }
        })
        .collect();
    let names = if key.names.len() == 1 {
        key.names[0].clone()
    } else {
        format!("({})", key.names.join(", "))
    };
    let _ = write!(sql, " WHERE {names} IN ({})", keys.join(", "));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_conditions_follow_the_key_order() {
        let key = Key {
            names: vec!["`a`".into(), "`b`".into()],
            kinds: vec![KeyKind::Number, text_key()],
        };
        let lits = key
            .literals(&[b"7".to_vec(), b"x'y".to_vec()])
            .expect("lits");
        assert_eq!(lits[1], "_utf8mb4 X'782779'");
        assert_eq!(
            key.after(&lits),
            "((`a` > 7) OR (`a` = 7 AND `b` > _utf8mb4 X'782779'))"
        );
        assert!(key.literal(0, b"1 OR 1=1").is_none(), "a number is digits");
        let latin = Key {
            names: vec!["`k`".into()],
            kinds: vec![KeyKind::Text {
                charset: "latin1".into(),
                collation: Some("latin1_german2_ci".into()),
            }],
        };
        assert_eq!(
            latin.literal(0, b"\xe4").expect("lit"),
            "_latin1 X'e4' COLLATE latin1_german2_ci"
        );
        assert_eq!(latin.select(), vec!["CAST(`k` AS BINARY)".to_owned()]);
    }

    #[test]
    fn trigger_names_are_short_and_stable() {
        let (i, u) = trigger_names("people", "ssn");
        assert!(i.len() <= 64 && u.len() <= 64);
        assert_eq!(trigger_names("people", "ssn"), (i, u));
        assert_ne!(
            trigger_names("people", "note").0,
            trigger_names("people", "ssn").0
        );
    }
}
