//! migrate::plan: what each protected column's table needs before it holds envelopes, as the
//! exact DDL and the algorithm the server runs it with.
//!
//! Every ALTER carries its `ALGORITHM=` (and `LOCK=NONE` where it is INPLACE), so a server
//! that cannot run it that way refuses it instead of silently copying the table under a lock.
//! A column that cannot be widened in place is migrated through a shadow column: added
//! (instantly), filled with envelopes by `migrate apply`, then swapped in by name.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;

use crate::backend::schema::{BINARY_TYPES, TEXT_TYPES, plaintext_bytes, stored_size};
use crate::crypto::envelope::OVERHEAD;
use crate::policy::{Policy, Protected, Storage};

pub use crate::policy::{OLD_SUFFIX, SHADOW_SUFFIX};

/// Rows a second `apply` is assumed to seal when no rate is given (its own default rate).
pub const DEFAULT_RATE: u64 = 5_000;

/// The server's flavor and version, as `SELECT VERSION()` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub mariadb: bool,
    pub version: (u32, u32, u32),
}

impl Server {
    /// `10.11.6-MariaDB-0+deb12u1`, `8.0.36`, `5.5.5-10.11.6-MariaDB` (the prefix old
    /// clients are given).
    pub fn parse(version: &str) -> Option<Self> {
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let v = version.strip_prefix("5.5.5-").unwrap_or(version);
        let mut nums = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().ok());
        let major = nums.next().flatten()?;
        let minor = nums.next().flatten()?;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Server {
            mariadb,
            version: (major, minor, patch),
        })
    }

    fn at_least(&self, mariadb: (u32, u32, u32), mysql: (u32, u32, u32)) -> bool {
        self.version >= if self.mariadb { mariadb } else { mysql }
    }

    /// ADD COLUMN (nullable, last) without rebuilding the table.
    fn instant_add(&self) -> bool {
        self.at_least((10, 3, 2), (8, 0, 12))
    }

    /// DROP COLUMN without rebuilding the table.
    fn instant_drop(&self) -> bool {
        self.at_least((10, 4, 0), (8, 0, 29))
    }

    /// How a column is dropped (or added anywhere but last): INSTANT where the server can.
    fn drop_algorithm(&self) -> Algorithm {
        if self.instant_drop() {
            Algorithm::Instant
        } else {
            Algorithm::Inplace
        }
    }

    /// INVISIBLE columns (left out of `*` and of INSERTs without a column list).
    pub fn invisible(&self) -> bool {
        self.at_least((10, 3, 3), (8, 0, 23))
    }

    /// `RENAME COLUMN a TO b` (else `CHANGE a b <type>`).
    fn rename_column(&self) -> bool {
        self.at_least((10, 5, 2), (8, 0, 0))
    }

    /// A longer VARCHAR/VARBINARY of unchanged length bytes, without a rebuild (MySQL does it
    /// in place too, as INPLACE).
    fn instant_widen(&self) -> bool {
        self.mariadb && self.at_least((10, 4, 0), (u32::MAX, 0, 0))
    }
}

/// A column of a live table (information_schema.COLUMNS and STATISTICS).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveColumn {
    pub name: String,
    /// Lower-case: `varchar`, `int`…
    pub data_type: String,
    /// As the server shows it: `varchar(64)`, `int(11) unsigned`…
    pub column_type: String,
    pub nullable: bool,
    /// No default, or NULL.
    pub default_null: bool,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub max_chars: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Some index covers it.
    pub indexed: bool,
    /// Average stored length over a sample of rows (None: not sampled).
    pub avg_len: Option<f64>,
    /// COLUMN_COMMENT.
    pub comment: String,
}

/// The comment of a shadow column whose column was NOT NULL before the window (it is made
/// nullable for it): the swap makes it NOT NULL again, and the copy triggers refuse NULL.
pub const NOT_NULL_COMMENT: &str = "myveil: NOT NULL once swapped in";

/// A live table with a protected column.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTable {
    pub database: String,
    pub name: String,
    pub engine: String,
    /// The server's estimate (information_schema.TABLES.TABLE_ROWS).
    pub rows: u64,
    pub primary_key: Vec<String>,
    pub columns: Vec<LiveColumn>,
}

impl LiveTable {
    pub fn column(&self, name: &str) -> Option<&LiveColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Metadata only: no rebuild, no lock past a moment.
    Instant,
    /// Online: the table is rebuilt or the index built while reads and writes go on.
    Inplace,
    /// Not DDL: `myveil migrate apply` seals existing values in batches.
    Backfill,
}

impl Algorithm {
    pub fn label(self) -> &'static str {
        match self {
            Algorithm::Instant => "INSTANT",
            Algorithm::Inplace => "INPLACE, online",
            Algorithm::Backfill => "myveil migrate apply",
        }
    }

    fn clause(self) -> &'static str {
        match self {
            Algorithm::Instant => ", ALGORITHM=INSTANT",
            Algorithm::Inplace => ", ALGORITHM=INPLACE, LOCK=NONE",
            Algorithm::Backfill => "",
        }
    }
}

/// What a step is, for `apply` (which runs some of them its own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// DDL run as printed.
    Ddl,
    /// The shadow column filled from the old one, kept current by triggers.
    ShadowFill,
    /// The shadow column swapped in by name (the triggers dropped with it, under a short
    /// write lock).
    Swap,
    /// The old plaintext column dropped.
    DropOld,
    /// A column that was NOT NULL before its shadow window made NOT NULL again (online,
    /// after the swap; skipped with a warning when a row holds NULL).
    NotNull,
    /// Existing values sealed where they are (and their blind indexes filled).
    Seal,
}

/// One step of a column's migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The statement (None: a backfill step myveil runs).
    pub sql: Option<String>,
    pub algorithm: Algorithm,
    pub what: String,
    pub kind: StepKind,
}

/// How a column's existing values are brought under protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approach {
    /// Already holds envelopes' sizes: values are sealed where they are.
    InPlace,
    /// Widened in place, then values are sealed where they are.
    Widen,
    /// Retyped through a shadow column, filled and swapped in by name.
    Shadow,
}

/// What one protected column of one table needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    pub database: String,
    pub table: String,
    pub column: String,
    /// The column's type now (None: the column is missing).
    pub current: Option<String>,
    /// The type it is given (None: it already fits).
    pub target: Option<String>,
    pub approach: Approach,
    pub steps: Vec<Step>,
    /// What stops the migration (no primary key, a missing column…).
    pub blockers: Vec<String>,
    /// What to know before running it.
    pub notes: Vec<String>,
    pub rows: u64,
    /// Extra bytes at rest when done (envelopes over plaintext, the blind index and its
    /// index), and at the peak of a shadow migration (both columns).
    pub extra_bytes: u64,
    pub peak_bytes: u64,
    pub seconds: f64,
    /// Retyped through a shadow column, it was NOT NULL before (and is again after the
    /// swap): the window refuses NULL as the column did.
    pub not_null: bool,
}

/// A name quoted as an identifier.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Bytes a character may take in a character set (what CHARACTER_OCTET_LENGTH divides by).
fn bytes_per_char(col: &LiveColumn) -> u64 {
    match (col.max_bytes, col.max_chars) {
        (Some(b), Some(c)) if c > 0 => (b / c).max(1),
        _ => match col.charset.as_deref() {
            Some("utf8mb4") => 4,
            Some("utf8mb3" | "utf8") => 3,
            Some("latin1" | "ascii" | "binary") | None => 1,
            Some(_) => 4,
        },
    }
}

/// The column type that holds a protected column's envelopes, kept in the live column's
/// family and character set where it can be (so that it widens in place).
fn target_type(col: &Protected, live: &LiveColumn) -> String {
    let need = stored_size(col);
    match col.storage {
        Storage::Binary => {
            if need <= 4_096 {
                format!("VARBINARY({need})")
            } else if need <= 65_535 {
                "BLOB".into()
            } else {
                "MEDIUMBLOB".into()
            }
        }
        Storage::Base64 => {
            let text = TEXT_TYPES.contains(&live.data_type.as_str());
            let (charset, per_char) = match (&live.charset, text) {
                (Some(cs), true) => (cs.clone(), bytes_per_char(live)),
                _ => ("ascii".into(), 1),
            };
            let ty = if need * per_char <= 16_383 {
                format!("VARCHAR({need})")
            } else if need * per_char <= 65_535 {
                "TEXT".into()
            } else {
                "MEDIUMTEXT".into()
            };
            match (&live.collation, text) {
                (Some(coll), true) => format!("{ty} CHARACTER SET {charset} COLLATE {coll}"),
                _ => format!("{ty} CHARACTER SET {charset}"),
            }
        }
    }
}

/// Whether the live column can simply be made longer (same family, same character set,
/// unchanged length bytes), and how.
fn widening(col: &Protected, live: &LiveColumn, server: Server) -> Option<Algorithm> {
    let need = stored_size(col);
    let family = match col.storage {
        Storage::Binary => "varbinary",
        Storage::Base64 => "varchar",
    };
    if live.data_type != family {
        return None;
    }
    let per_char = match col.storage {
        Storage::Binary => 1,
        Storage::Base64 => bytes_per_char(live),
    };
    let new_bytes = need * per_char;
    // VARBINARY up to 4,096 bytes and VARCHAR up to 16,383 bytes stay of their type.
    if new_bytes > 16_383 || (col.storage == Storage::Binary && need > 4_096) {
        return None;
    }
    let old_bytes = live.max_bytes?;
    if (old_bytes <= 255) != (new_bytes <= 255) {
        // One length byte becomes two: every row changes.
        return None;
    }
    Some(if server.instant_widen() && !live.indexed {
        Algorithm::Instant
    } else {
        Algorithm::Inplace
    })
}

/// Whether the live column already holds this column's envelopes.
fn fits(col: &Protected, live: &LiveColumn) -> bool {
    let types: &[&str] = match col.storage {
        Storage::Binary => &BINARY_TYPES,
        Storage::Base64 => &TEXT_TYPES,
    };
    types.contains(&live.data_type.as_str()) && live.max_chars.is_none_or(|m| m >= stored_size(col))
}

/// Stored bytes of a value of `len` plaintext bytes.
fn stored_len(storage: Storage, len: f64) -> f64 {
    let envelope = len + OVERHEAD as f64;
    match storage {
        Storage::Binary => envelope,
        Storage::Base64 => (envelope / 3.0).ceil() * 4.0,
    }
}

/// The plan of one protected column in one live table; `rate`: rows sealed a second.
pub fn plan_column(col: &Protected, table: &LiveTable, server: Server, rate: u64) -> ColumnPlan {
    let t = format!("{}.{}", quote(&table.database), quote(&table.name));
    let c = quote(&col.column);
    let mut plan = ColumnPlan {
        database: table.database.clone(),
        table: table.name.clone(),
        column: col.column.clone(),
        current: None,
        target: None,
        approach: Approach::InPlace,
        steps: Vec::new(),
        blockers: Vec::new(),
        notes: Vec::new(),
        rows: table.rows,
        extra_bytes: 0,
        peak_bytes: 0,
        seconds: table.rows as f64 / rate.max(1) as f64,
        not_null: false,
    };
    if !table.engine.eq_ignore_ascii_case("innodb") {
        plan.notes.push(format!(
            "engine {}: the algorithms below are InnoDB's; the server refuses a step it cannot run that way",
            table.engine
        ));
    }
    if table.primary_key.is_empty() {
        plan.blockers.push(
            "the table has no primary key: migrate apply works in batches by primary key; add one first"
                .into(),
        );
    }
    for k in &table.primary_key {
        if let Some(kc) = table.column(k)
            && crate::migrate::apply::UNPAGEABLE_KEYS.contains(&kc.data_type.as_str())
        {
            plan.blockers.push(format!(
                "the primary key column {k} is {}: migrate apply pages by the key, and such a key does not compare as it sorts",
                kc.data_type
            ));
        }
    }
    let Some(live) = table.column(&col.column) else {
        plan.blockers.push("the column does not exist".into());
        return plan;
    };
    plan.current = Some(live.column_type.clone());
    let add = if server.instant_add() {
        Algorithm::Instant
    } else {
        Algorithm::Inplace
    };
    let null = if live.nullable { "NULL" } else { "NOT NULL" };
    let avg = live.avg_len.unwrap_or_else(|| {
        // Not sampled: half the declared size.
        plaintext_bytes(col.plain_type) as f64 / 2.0
    });
    let grow = (stored_len(col.storage, avg) - avg).max(0.0);
    plan.extra_bytes = (grow * table.rows as f64) as u64;
    plan.peak_bytes = plan.extra_bytes;
    let shadow_name = format!("{}{SHADOW_SUFFIX}", col.column);
    let old_name = format!("{}{OLD_SUFFIX}", col.column);
    if table.column(&old_name).is_some() {
        // A swap went through (an interrupted apply): the old plaintext goes first.
        let drop = server.drop_algorithm();
        plan.steps.push(Step {
            sql: Some(format!(
                "ALTER TABLE {t} DROP COLUMN {}{}",
                quote(&old_name),
                drop.clause()
            )),
            algorithm: drop,
            what: "drop the old plaintext column left by an earlier swap".into(),
            kind: StepKind::DropOld,
        });
    }
    // The blind-index column first: writes through a shadow window fill it too.
    if let Some(b) = &col.blind_index {
        let bq = quote(b);
        match table.column(b) {
            None => {
                // INVISIBLE where the server has it: `SELECT *` and INSERTs without a
                // column list see the table as the application made it.
                let invisible = if server.invisible() { " INVISIBLE" } else { "" };
                plan.steps.push(Step {
                    sql: Some(format!(
                        "ALTER TABLE {t} ADD COLUMN {bq} BINARY(32) NULL{invisible}{}",
                        add.clause()
                    )),
                    algorithm: add,
                    what: "the blind-index column".into(),
                    kind: StepKind::Ddl,
                });
            }
            Some(bc)
                if !matches!(bc.data_type.as_str(), "binary" | "varbinary")
                    || bc.max_bytes.is_some_and(|m| m < 32) =>
            {
                plan.blockers.push(format!(
                    "the blind-index column {b} is {}, not BINARY(32)",
                    bc.column_type
                ));
            }
            Some(_) => {}
        }
        if table.column(b).is_none_or(|bc| !bc.indexed) {
            plan.steps.push(Step {
                sql: Some(format!(
                    "ALTER TABLE {t} ADD INDEX {bq} ({bq}){}",
                    Algorithm::Inplace.clause()
                )),
                algorithm: Algorithm::Inplace,
                what: "its index, for searches".into(),
                kind: StepKind::Ddl,
            });
        }
        // 32 bytes in the row, and an index entry of the index and the primary key.
        let per_row = 32.0 + 32.0 + 8.0 * table.primary_key.len().max(1) as f64;
        plan.extra_bytes += (per_row * table.rows as f64) as u64;
        plan.peak_bytes += (per_row * table.rows as f64) as u64;
    }
    if fits(col, live) {
        if live.comment == NOT_NULL_COMMENT {
            // Swapped in by a run that stopped before making it NOT NULL again.
            plan.not_null = true;
            let ty = live.column_type.to_ascii_uppercase();
            plan.steps
                .push(not_null_step(&t, &c, &format!("{ty}{}", charset_of(live))));
        }
        if !live.default_null {
            plan.steps.push(Step {
                sql: Some(format!(
                    "ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT{}",
                    Algorithm::Instant.clause()
                )),
                algorithm: Algorithm::Instant,
                what:
                    "drop the default: a row that leaves the column out would store it as plaintext"
                        .into(),
                kind: StepKind::Ddl,
            });
        }
    } else if let Some(alg) = widening(col, live, server) {
        let target = target_type(col, live);
        plan.approach = Approach::Widen;
        plan.steps.push(Step {
            sql: Some(format!(
                "ALTER TABLE {t} MODIFY {c} {target} {null}{}",
                alg.clause()
            )),
            algorithm: alg,
            what: format!(
                "widen {} to {target} for envelopes (its default, if any, goes)",
                live.column_type
            ),
            kind: StepKind::Ddl,
        });
        plan.target = Some(target);
    } else {
        let target = target_type(col, live);
        plan.approach = Approach::Shadow;
        let shadow = quote(&shadow_name);
        let old = quote(&old_name);
        // NOT NULL before the window: kept on the shadow's comment (the old column is made
        // nullable for the window), restored by the swap, enforced meanwhile by the triggers.
        let existing = table.column(&shadow_name);
        plan.not_null = !live.nullable || existing.is_some_and(|s| s.comment == NOT_NULL_COMMENT);
        if existing.is_none() {
            // Right after the old column, so that once swapped in and the old one dropped it
            // sits where the old one was (INSERTs without a column list still line up).
            // INVISIBLE: `SELECT *` and INSERTs without a column list see the table as before.
            let add_after = server.drop_algorithm();
            let invisible = if server.invisible() { " INVISIBLE" } else { "" };
            let comment = if plan.not_null {
                format!(" COMMENT '{NOT_NULL_COMMENT}'")
            } else {
                String::new()
            };
            plan.steps.push(Step {
                sql: Some(format!(
                    "ALTER TABLE {t} ADD COLUMN {shadow} {target} NULL{invisible}{comment} AFTER {c}{}",
                    add_after.clause()
                )),
                algorithm: add_after,
                what: format!(
                    "a shadow column for the envelopes ({} cannot become {target} in place)",
                    live.column_type
                ),
                kind: StepKind::Ddl,
            });
        } else {
            plan.notes.push(format!(
                "{shadow} exists: an earlier apply stopped while filling it; apply goes on from there"
            ));
        }
        if !live.nullable {
            plan.steps.push(Step {
                sql: Some(format!(
                    "ALTER TABLE {t} MODIFY {c} {} NULL{}",
                    live.column_type,
                    Algorithm::Inplace.clause()
                )),
                algorithm: Algorithm::Inplace,
                what: "let the old column be NULL, so that writes through the shadow and after the swap need not fill it"
                    .into(),
                kind: StepKind::Ddl,
            });
        }
        plan.steps.push(Step {
            sql: None,
            algorithm: Algorithm::Backfill,
            what: format!(
                "copy {c} into {shadow} in batches by primary key (triggers keep rows written meanwhile current)"
            ),
            kind: StepKind::ShadowFill,
        });
        // Metadata only, under the write lock: CHANGE, not RENAME, for the shadow (it becomes
        // visible as it takes the name) and, where the server has INVISIBLE, for the old
        // column (hidden until it is dropped); nullable, with the NOT NULL marker kept, so
        // the rebuild that NOT NULL takes runs online afterwards.
        let marker = if plan.not_null {
            format!(" COMMENT '{NOT_NULL_COMMENT}'")
        } else {
            String::new()
        };
        let charset = charset_of(live);
        let swap = if server.invisible() {
            format!(
                "ALTER TABLE {t} CHANGE {c} {old} {}{charset} NULL INVISIBLE, CHANGE {shadow} {c} {target} NULL{marker}",
                live.column_type
            )
        } else if server.rename_column() {
            format!(
                "ALTER TABLE {t} RENAME COLUMN {c} TO {old}, CHANGE {shadow} {c} {target} NULL{marker}"
            )
        } else {
            format!(
                "ALTER TABLE {t} CHANGE {c} {old} {}{charset} NULL, CHANGE {shadow} {c} {target} NULL{marker}",
                live.column_type
            )
        };
        plan.steps.push(Step {
            sql: Some(format!("{swap}{}", Algorithm::Inplace.clause())),
            algorithm: Algorithm::Inplace,
            what: "swap the shadow column in by name (the triggers go with it, under a write lock of a moment)".into(),
            kind: StepKind::Swap,
        });
        let drop = server.drop_algorithm();
        plan.steps.push(Step {
            sql: Some(format!(
                "ALTER TABLE {t} DROP COLUMN {old}{}",
                drop.clause()
            )),
            algorithm: drop,
            what: "drop the old plaintext column".into(),
            kind: StepKind::DropOld,
        });
        if plan.not_null {
            plan.steps.push(not_null_step(&t, &c, &target));
        }
        plan.peak_bytes = (stored_len(col.storage, avg) * table.rows as f64) as u64;
        if col.storage == Storage::Binary && TEXT_TYPES.contains(&live.data_type.as_str()) {
            plan.notes.push(
                "with storage = \"base64\" for this column, its text type would be widened in place instead"
                    .into(),
            );
        }
        plan.target = Some(target);
    }
    if live.indexed {
        plan.notes.push(format!(
            "an index covers {c}: once sealed it orders ciphertext and a UNIQUE one no longer holds; search by the blind index"
        ));
    }
    plan.steps.push(Step {
        sql: None,
        algorithm: Algorithm::Backfill,
        what: match &col.blind_index {
            Some(b) => format!(
                "seal {c} where it is and fill {} from each value, in batches by primary key",
                quote(b)
            ),
            None => format!("seal {c} where it is, in batches by primary key"),
        },
        kind: StepKind::Seal,
    });
    plan
}

/// `CHARACTER SET … COLLATE …` of a text column as it is (empty for others).
fn charset_of(live: &LiveColumn) -> String {
    match (&live.charset, &live.collation) {
        (Some(cs), Some(coll)) => format!(" CHARACTER SET {cs} COLLATE {coll}"),
        (Some(cs), None) => format!(" CHARACTER SET {cs}"),
        _ => String::new(),
    }
}

/// Makes a column swapped in through a shadow NOT NULL again (an online rebuild).
fn not_null_step(t: &str, c: &str, ty: &str) -> Step {
    Step {
        sql: Some(format!(
            "ALTER TABLE {t} MODIFY {c} {ty} NOT NULL{}",
            Algorithm::Inplace.clause()
        )),
        algorithm: Algorithm::Inplace,
        what: "NOT NULL again, as before the migration (skipped if a row holds NULL)".into(),
        kind: StepKind::NotNull,
    }
}

/// The plan of every policy column in every live table it applies to.
pub fn plan(policy: &Policy, tables: &[LiveTable], server: Server, rate: u64) -> Vec<ColumnPlan> {
    let mut out = Vec::new();
    for col in policy.columns() {
        let mut found = false;
        for t in tables.iter().filter(|t| col.is_in(&t.database, &t.name)) {
            found = true;
            out.push(plan_column(col, t, server, rate));
        }
        if !found {
            out.push(ColumnPlan {
                database: col.database.clone().unwrap_or_else(|| "*".into()),
                table: col.table.clone(),
                column: col.column.clone(),
                current: None,
                target: None,
                approach: Approach::InPlace,
                steps: Vec::new(),
                blockers: vec!["no such table in the database".into()],
                notes: Vec::new(),
                rows: 0,
                extra_bytes: 0,
                peak_bytes: 0,
                seconds: 0.0,
                not_null: false,
            });
        }
    }
    out
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_time(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The plan as the CLI prints it.
pub fn render(plans: &[ColumnPlan], server: Server, rate: u64) -> String {
    let mut o = String::new();
    let flavor = if server.mariadb { "MariaDB" } else { "MySQL" };
    let (a, b, c) = server.version;
    let _ = writeln!(
        o,
        "server: {flavor} {a}.{b}.{c}; estimates at {rate} rows/s (--rate)"
    );
    for p in plans {
        let _ = writeln!(o);
        let Some(current) = &p.current else {
            let _ = writeln!(o, "{}.{}.{}: not found", p.database, p.table, p.column);
            for b in &p.blockers {
                let _ = writeln!(o, "  BLOCKED: {b}");
            }
            continue;
        };
        let _ = writeln!(
            o,
            "{}.{}.{}: {current} → {}",
            p.database,
            p.table,
            p.column,
            p.target.as_deref().unwrap_or("(fits)")
        );
        let _ = writeln!(
            o,
            "  rows ≈ {}; sealing ≈ {}; extra space ≈ {} ({} at the peak)",
            p.rows,
            human_time(p.seconds),
            human_bytes(p.extra_bytes),
            human_bytes(p.peak_bytes)
        );
        for b in &p.blockers {
            let _ = writeln!(o, "  BLOCKED: {b}");
        }
        for (i, s) in p.steps.iter().enumerate() {
            let _ = writeln!(o, "  {}. [{}] {}", i + 1, s.algorithm.label(), s.what);
            if let Some(sql) = &s.sql {
                let _ = writeln!(o, "     {sql};");
            }
        }
        for n in &p.notes {
            let _ = writeln!(o, "  note: {n}");
        }
    }
    o
}

/// Reads the server version and the live tables of the policy's columns: columns, keys,
/// row estimates, and each protected column's average length over up to `sample` rows.
pub async fn load(
    conn: &mut mysql_async::Conn,
    policy: &Policy,
    sample: u64,
) -> Result<(Server, Vec<LiveTable>), mysql_async::Error> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let server = Server::parse(&version).unwrap_or(Server {
        mariadb: true,
        version: (0, 0, 0),
    });
    let mut names: Vec<String> = policy.columns().iter().map(|c| c.table.clone()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok((server, Vec::new()));
    }
    let marks = vec!["?"; names.len()].join(", ");
    let found: Vec<(String, String, Option<String>, Option<u64>)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_NAME IN ({marks}) AND TABLE_TYPE = 'BASE TABLE' \
                 AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
            names,
        )
        .await?;
    let mut tables = Vec::new();
    for (db, name, engine, rows) in found {
        let cols: Vec<&Protected> = policy
            .columns()
            .iter()
            .filter(|c| c.is_in(&db, &name))
            .collect();
        if cols.is_empty() {
            continue;
        }
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
            String,
        );
        let rows_of: Vec<Row> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
                 CHARACTER_SET_NAME, COLLATION_NAME, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, \
                 COLUMN_COMMENT \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (&db, &name),
            )
            .await?;
        let keys: Vec<(String, String)> = conn
            .exec(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (&db, &name),
            )
            .await?;
        let mut columns = Vec::new();
        for (cname, dt, ct, nullable, default, cs, coll, chars, octets, comment) in rows_of {
            let indexed = keys.iter().any(|(_, k)| k.eq_ignore_ascii_case(&cname));
            columns.push(LiveColumn {
                data_type: dt.to_ascii_lowercase(),
                column_type: ct,
                nullable: nullable.eq_ignore_ascii_case("yes"),
                default_null: crate::backend::schema::null_default(default.as_deref()),
                charset: cs,
                collation: coll,
                max_chars: chars,
                max_bytes: octets,
                indexed,
                avg_len: None,
                name: cname,
                comment,
            });
        }
        let t = format!("{}.{}", quote(&db), quote(&name));
        for col in &cols {
            if let Some(live) = columns
                .iter_mut()
                .find(|c| c.name.eq_ignore_ascii_case(&col.column))
                && sample > 0
            {
                let c = quote(&live.name);
                let avg: Option<Option<f64>> = conn
                    .query_first(format!(
                        "SELECT AVG(LENGTH({c})) FROM (SELECT {c} FROM {t} LIMIT {sample}) s"
                    ))
                    .await?;
                live.avg_len = avg.flatten();
            }
        }
        let primary_key = keys
            .iter()
            .filter(|(i, _)| i == "PRIMARY")
            .map(|(_, c)| c.clone())
            .collect();
        tables.push(LiveTable {
            database: db,
            name,
            engine: engine.unwrap_or_default(),
            rows: rows.unwrap_or(0),
            primary_key,
            columns,
        });
    }
    Ok((server, tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(storage: &str) -> Policy {
        let mut p = Policy::default();
        p.add_toml(
            &format!(
                r#"
[[column]]
database = "shop"
table = "users"
column = "ssn"
type = "varchar(64)"
storage = "{storage}"
roles = {{ app = "plaintext" }}
[[column]]
database = "shop"
table = "users"
column = "email"
type = "varchar(100)"
storage = "{storage}"
blind_index = "email_bidx"
roles = {{ app = "plaintext" }}
"#
            ),
            "test",
        )
        .expect("policy");
        p
    }

    fn varchar(name: &str, chars: u64, nullable: bool, indexed: bool) -> LiveColumn {
        LiveColumn {
            name: name.into(),
            data_type: "varchar".into(),
            column_type: format!("varchar({chars})"),
            nullable,
            default_null: true,
            charset: Some("utf8mb4".into()),
            collation: Some("utf8mb4_general_ci".into()),
            max_chars: Some(chars),
            max_bytes: Some(chars * 4),
            indexed,
            avg_len: Some(11.0),
            comment: String::new(),
        }
    }

    fn table(columns: Vec<LiveColumn>, pk: bool) -> LiveTable {
        LiveTable {
            database: "shop".into(),
            name: "users".into(),
            engine: "InnoDB".into(),
            rows: 1_000_000,
            primary_key: if pk { vec!["id".into()] } else { Vec::new() },
            columns,
        }
    }

    const MARIADB_1011: Server = Server {
        mariadb: true,
        version: (10, 11, 6),
    };

    #[test]
    fn versions_are_read_as_servers_report_them() {
        assert_eq!(
            Server::parse("10.11.6-MariaDB-0+deb12u1"),
            Some(MARIADB_1011)
        );
        assert_eq!(Server::parse("5.5.5-10.11.6-MariaDB"), Some(MARIADB_1011));
        assert_eq!(
            Server::parse("8.0.36"),
            Some(Server {
                mariadb: false,
                version: (8, 0, 36)
            })
        );
        assert_eq!(Server::parse("garbage"), None);
    }

    #[test]
    fn a_varchar_is_widened_in_place_under_base64() {
        let p = policy("base64");
        let t = table(
            vec![
                varchar("ssn", 64, true, false),
                varchar("email", 100, true, true),
            ],
            true,
        );
        let plans = plan(&p, &[t], MARIADB_1011, 10_000);
        let ssn = &plans[0];
        assert_eq!(ssn.approach, Approach::Widen);
        assert!(ssn.blockers.is_empty());
        let ddl = ssn.steps[0].sql.as_deref().expect("ddl");
        assert!(
            ddl.starts_with("ALTER TABLE `shop`.`users` MODIFY `ssn` VARCHAR(")
                && ddl.contains("CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL")
                && ddl.ends_with("ALGORITHM=INSTANT"),
            "{ddl}"
        );
        assert_eq!(
            ssn.steps.last().map(|s| s.algorithm),
            Some(Algorithm::Backfill)
        );
        assert!((ssn.seconds - 100.0).abs() < 1e-9);
        // Indexed: INPLACE (the index is rebuilt), online; and the blind index is added.
        let email = &plans[1];
        let widen = email
            .steps
            .iter()
            .find(|s| {
                s.sql
                    .as_deref()
                    .is_some_and(|q| q.contains("MODIFY `email`"))
            })
            .expect("widen");
        assert_eq!(widen.algorithm, Algorithm::Inplace);
        let all: Vec<&str> = email
            .steps
            .iter()
            .filter_map(|s| s.sql.as_deref())
            .collect();
        assert!(all.iter().any(|s| {
            s.contains("ADD COLUMN `email_bidx` BINARY(32) NULL INVISIBLE, ALGORITHM=INSTANT")
        }));
        assert!(all.iter().any(|s| {
            s.contains("ADD INDEX `email_bidx` (`email_bidx`), ALGORITHM=INPLACE, LOCK=NONE")
        }));
        assert!(email.notes.iter().any(|n| n.contains("index covers")));
    }

    #[test]
    fn a_retyped_column_goes_through_a_shadow_column() {
        let p = policy("binary");
        let t = table(
            vec![
                varchar("ssn", 64, false, false),
                varchar("email", 100, true, false),
            ],
            true,
        );
        let plans = plan(&p, &[t], MARIADB_1011, DEFAULT_RATE);
        let ssn = &plans[0];
        assert_eq!(ssn.approach, Approach::Shadow);
        let all: Vec<&str> = ssn.steps.iter().filter_map(|s| s.sql.as_deref()).collect();
        // The shadow first (its comment keeps the NOT NULL), then the old column nullable.
        assert!(
            all[0].contains("ADD COLUMN `ssn__myveil` VARBINARY(")
                && all[0].contains(
                    ") NULL INVISIBLE COMMENT 'myveil: NOT NULL once swapped in' AFTER `ssn`"
                ),
            "{all:?}"
        );
        assert!(all[1].contains("MODIFY `ssn` varchar(64) NULL"), "{all:?}");
        assert!(ssn.not_null);
        // The shadow takes the name and becomes visible with it, the old column hidden, both
        // nullable (metadata only, under the lock); NOT NULL comes back online afterwards.
        assert!(
            all[2].contains("CHANGE `ssn` `ssn__myveil_old` varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL INVISIBLE, CHANGE `ssn__myveil` `ssn` VARBINARY(")
                && all[2].contains(") NULL COMMENT 'myveil: NOT NULL once swapped in', ALGORITHM=INPLACE"),
            "{all:?}"
        );
        assert!(all[3].contains("DROP COLUMN `ssn__myveil_old`, ALGORITHM=INSTANT"));
        assert!(
            all[4].contains("MODIFY `ssn` VARBINARY(")
                && all[4].contains(") NOT NULL, ALGORITHM=INPLACE, LOCK=NONE"),
            "{all:?}"
        );
        assert!(ssn.peak_bytes > ssn.extra_bytes);
        assert!(ssn.notes.iter().any(|n| n.contains("base64")));
        // An older server: CHANGE instead of RENAME COLUMN, INPLACE drops.
        let old = Server {
            mariadb: true,
            version: (10, 3, 39),
        };
        let t = table(vec![varchar("ssn", 64, true, false)], true);
        let plans = plan(&p, &[t], old, DEFAULT_RATE);
        let all: Vec<&str> = plans[0]
            .steps
            .iter()
            .filter_map(|s| s.sql.as_deref())
            .collect();
        assert!(
            all.iter()
                .any(|s| s.contains("CHANGE `ssn` `ssn__myveil_old` varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL INVISIBLE")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|s| s.contains("DROP COLUMN `ssn__myveil_old`, ALGORITHM=INPLACE"))
        );
    }

    #[test]
    fn crossing_the_length_byte_boundary_is_not_in_place() {
        let p = policy("base64");
        let mut ssn = varchar("ssn", 60, true, false);
        ssn.charset = Some("latin1".into());
        ssn.collation = Some("latin1_swedish_ci".into());
        ssn.max_bytes = Some(60);
        let plans = plan(&p, &[table(vec![ssn], true)], MARIADB_1011, DEFAULT_RATE);
        assert_eq!(plans[0].approach, Approach::Shadow);
    }

    #[test]
    fn no_primary_key_or_no_column_blocks() {
        let p = policy("base64");
        let plans = plan(
            &p,
            &[table(vec![varchar("ssn", 64, true, false)], false)],
            MARIADB_1011,
            DEFAULT_RATE,
        );
        assert!(plans[0].blockers.iter().any(|b| b.contains("primary key")));
        assert!(
            plans[1]
                .blockers
                .iter()
                .any(|b| b.contains("does not exist"))
        );
        let none = plan(&p, &[], MARIADB_1011, DEFAULT_RATE);
        assert!(
            none.iter()
                .all(|c| c.blockers.iter().any(|b| b.contains("no such table")))
        );
    }

    #[test]
    fn a_fitting_column_only_loses_a_default() {
        let p = policy("binary");
        let mut ssn = varchar("ssn", 0, true, false);
        ssn.data_type = "varbinary".into();
        ssn.column_type = "varbinary(512)".into();
        ssn.max_chars = Some(512);
        ssn.max_bytes = Some(512);
        ssn.default_null = false;
        let plans = plan(&p, &[table(vec![ssn], true)], MARIADB_1011, DEFAULT_RATE);
        assert_eq!(plans[0].approach, Approach::InPlace);
        assert!(
            plans[0].steps[0]
                .sql
                .as_deref()
                .is_some_and(|s| s.contains("DROP DEFAULT"))
        );
    }
}
