//! backup::restore: the offline restore — signature first, then the RSA unwrap, then the
//! chunks decrypted in order into a temporary database; only when the whole file has been
//! read and every digest matches are the tables renamed into the target (one atomic
//! RENAME TABLE) and the views, routines and triggers created there.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params, Value};

use super::format::{self, ChunkCipher, Envelope, Manifest, TableEntry};
use super::keys::{UnwrapKey, VerifyKey};
use super::stream::{Decoder, Record};
use super::{Error, Phase, Progress, ProgressFn, Result, quote};

/// Decrypted chunks in flight between the reader thread and the loader.
const READ_QUEUE: usize = 4;
/// Rows per INSERT at most (and never more than 65535 placeholders).
const BATCH_ROWS: usize = 2000;
/// Bytes of values per INSERT at most (kept under max_allowed_packet).
const BATCH_BYTES: usize = 4 << 20;

pub struct RestoreOptions {
    pub opts: Opts,
    pub file: PathBuf,
    /// The Ed25519 key the backup must be signed with.
    pub verify_key: VerifyKey,
    pub private_key: PathBuf,
    /// Target database (created when missing).
    pub into: String,
    /// The database of the backup to restore; may be left out when it holds only one.
    pub database: Option<String>,
    /// Replace the target's objects that the backup also contains.
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct Restored {
    pub source: String,
    pub database: String,
    pub tables: Vec<TableEntry>,
    pub views: usize,
    pub routines: usize,
    pub triggers: usize,
    /// Keys the target myveil needs to open the protected columns.
    pub key_ids: Vec<u32>,
    pub manifest: Manifest,
}

/// The chunk cipher of a signed backup: the data key unwrapped with the private key.
/// Callers have checked the signature (`open_signed`) before this RSA operation.
pub(crate) fn chunk_cipher(env: &Envelope, key: &UnwrapKey) -> Result<ChunkCipher> {
    if key.id != env.header.rsa_key_id {
        return Err(Error::Key(format!(
            "this backup's data key is wrapped for RSA key {}, but the private key given is {}",
            env.header.rsa_key_id, key.id
        )));
    }
    let wrapped = B64
        .decode(&env.header.wrapped_key)
        .map_err(|_| Error::Format("header: wrapped key is not base64".into()))?;
    let data_key = key.unwrap_data_key(&wrapped)?;
    let id = format::parse_backup_id(&env.header.backup_id)?;
    Ok(ChunkCipher::new(&data_key, id))
}

/// Follows the decrypted record stream and checks it against the signed manifest: every
/// table in the manifest, with its row count, and nothing else.
pub(crate) struct StreamCheck {
    manifest: Manifest,
    decoder: Decoder,
    database: Option<usize>,
    table: Option<(String, u64)>,
    tables_seen: usize,
}

impl StreamCheck {
    pub(crate) fn new(manifest: &Manifest) -> Self {
        Self {
            manifest: manifest.clone(),
            decoder: Decoder::default(),
            database: None,
            table: None,
            tables_seen: 0,
        }
    }

    pub(crate) fn feed(&mut self, plain: &[u8]) -> Result<()> {
        self.decoder.feed(plain);
        while let Some(r) = self.decoder.next_record()? {
            self.record(&r)?;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Record>> {
        let r = self.decoder.next_record()?;
        if let Some(r) = &r {
            self.record(r)?;
        }
        Ok(r)
    }

    fn record(&mut self, r: &Record) -> Result<()> {
        let bad = |m: String| Error::Integrity(format!("dump stream: {m}"));
        match r {
            Record::Database { name, .. } => {
                let i = self
                    .manifest
                    .databases
                    .iter()
                    .position(|d| &d.name == name)
                    .ok_or_else(|| bad(format!("database {name} is not in the manifest")))?;
                self.database = Some(i);
            }
            Record::Table { name, .. } => {
                if self.database.is_none() {
                    return Err(bad("table outside a database".into()));
                }
                self.table = Some((name.clone(), 0));
            }
            Record::Row(_) => {
                if let Some((_, rows)) = &mut self.table {
                    *rows += 1;
                }
            }
            Record::EndTable { rows } => {
                let (name, counted) = self
                    .table
                    .take()
                    .ok_or_else(|| bad("table end outside a table".into()))?;
                let db = self
                    .database
                    .and_then(|i| self.manifest.databases.get(i))
                    .ok_or_else(|| bad("table outside a database".into()))?;
                let listed = db.tables.iter().find(|t| t.name == name).map(|t| t.rows);
                if listed != Some(counted) || *rows != counted {
                    return Err(bad(format!(
                        "table {}.{name} has {counted} rows, the manifest says {listed:?}",
                        db.name
                    )));
                }
                self.tables_seen += 1;
            }
            Record::View { .. } | Record::Trigger { .. } | Record::Routine { .. } => {
                if self.database.is_none() {
                    return Err(bad("object outside a database".into()));
                }
            }
            Record::End => {}
        }
        Ok(())
    }

    pub(crate) fn finish(&self) -> Result<()> {
        let listed: usize = self.manifest.databases.iter().map(|d| d.tables.len()).sum();
        if !self.decoder.ended() || listed != self.tables_seen {
            return Err(Error::Integrity(
                "dump stream: ends early or does not hold every table of the manifest".into(),
            ));
        }
        Ok(())
    }
}

/// An object created after the tables, in dump order.
struct Deferred {
    kind: &'static str,
    name: String,
    sql_mode: Option<String>,
    create: String,
}

struct Loader<'a> {
    conn: &'a mut Conn,
    source: &'a str,
    selected: bool,
    table: Option<Batch>,
    tables: Vec<TableEntry>,
    deferred: Vec<Deferred>,
    max_batch_bytes: usize,
    progress: ProgressFn<'a>,
    read: Arc<AtomicU64>,
    total: u64,
}

struct Batch {
    name: String,
    columns: Vec<String>,
    params: Vec<Value>,
    rows: usize,
    bytes: usize,
    total_rows: u64,
    full_sql: Option<String>,
}

impl Batch {
    fn rows_per_batch(&self) -> usize {
        BATCH_ROWS.min(65_535 / self.columns.len().max(1)).max(1)
    }

    fn sql(&self, rows: usize) -> String {
        let cols = self
            .columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let one = format!("({})", vec!["?"; self.columns.len()].join(", "));
        format!(
            "INSERT INTO {} ({cols}) VALUES {}",
            quote(&self.name),
            vec![one; rows].join(", ")
        )
    }
}

impl Loader<'_> {
    async fn run(&mut self, sql: &str, what: &str) -> Result<()> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(Error::db(what.to_owned()))
    }

    async fn apply(&mut self, r: Record) -> Result<()> {
        match r {
            Record::Database { name, .. } => self.selected = name == self.source,
            _ if !self.selected => {}
            Record::Table {
                name,
                create,
                columns,
            } => {
                self.run(&create, &format!("creating table {name}")).await?;
                self.table = Some(Batch {
                    name,
                    columns,
                    params: Vec::new(),
                    rows: 0,
                    bytes: 0,
                    total_rows: 0,
                    full_sql: None,
                });
            }
            Record::Row(values) => {
                let row_bytes: usize = values.iter().flatten().map(Vec::len).sum();
                let pending = self.table.as_ref().map_or(0, |b| b.bytes);
                // A big row goes in the next INSERT rather than pushing this one past the
                // server's packet limit.
                if pending > 0 && pending + row_bytes > self.max_batch_bytes {
                    self.flush().await?;
                }
                let Some(b) = &mut self.table else {
                    return Err(Error::Integrity("dump stream: row outside a table".into()));
                };
                for v in values {
                    b.params.push(v.map_or(Value::NULL, Value::Bytes));
                }
                b.bytes += row_bytes;
                b.rows += 1;
                b.total_rows += 1;
                if b.rows >= b.rows_per_batch() || b.bytes >= self.max_batch_bytes {
                    self.flush().await?;
                }
            }
            Record::EndTable { .. } => {
                self.flush().await?;
                if let Some(b) = self.table.take() {
                    self.tables.push(TableEntry {
                        name: b.name,
                        rows: b.total_rows,
                    });
                }
            }
            Record::View { name, create } => self.deferred.push(Deferred {
                kind: "VIEW",
                name,
                sql_mode: None,
                create,
            }),
            Record::Routine {
                kind,
                name,
                sql_mode,
                create,
            } => self.deferred.push(Deferred {
                kind: if kind == "FUNCTION" {
                    "FUNCTION"
                } else {
                    "PROCEDURE"
                },
                name,
                sql_mode: Some(sql_mode),
                create,
            }),
            Record::Trigger {
                name,
                sql_mode,
                create,
            } => self.deferred.push(Deferred {
                kind: "TRIGGER",
                name,
                sql_mode: Some(sql_mode),
                create,
            }),
            Record::End => {}
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(b) = &mut self.table else {
            return Ok(());
        };
        if b.rows == 0 {
            return Ok(());
        }
        let sql = if b.rows == b.rows_per_batch() {
            if b.full_sql.is_none() {
                b.full_sql = Some(b.sql(b.rows));
            }
            b.full_sql.clone().unwrap_or_default()
        } else {
            b.sql(b.rows)
        };
        let params = std::mem::take(&mut b.params);
        let (name, total_rows) = (b.name.clone(), b.total_rows);
        b.rows = 0;
        b.bytes = 0;
        self.conn
            .exec_drop(sql, Params::Positional(params))
            .await
            .map_err(Error::db(format!("loading rows of {name}")))?;
        (self.progress)(&Progress {
            phase: Phase::Restore,
            database: self.source,
            table: &name,
            rows: total_rows,
            bytes: self.read.load(Ordering::Relaxed),
            total_bytes: Some(self.total),
        });
        Ok(())
    }
}

/// Restores one database of a backup into `opts.into`.
pub async fn restore(opts: &RestoreOptions, progress: ProgressFn<'_>) -> Result<Restored> {
    let (mut reader, len) = super::open_file(&opts.file)?;
    // Security: the signature is checked before the private key is even read, so the RSA
    // decryption below only ever sees a wrapped key this project's signing key vouched for.
    let env = super::open_signed(&mut reader, len, &opts.verify_key)?;
    let source = match &opts.database {
        Some(d) => d.clone(),
        None => match env.manifest.databases.as_slice() {
            [one] => one.name.clone(),
            many => {
                return Err(Error::Invalid(format!(
                    "the backup holds {} databases ({}); choose one with --database",
                    many.len(),
                    many.iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        },
    };
    let Some(source_entry) = env
        .manifest
        .databases
        .iter()
        .find(|d| d.name == source)
        .cloned()
    else {
        return Err(Error::Invalid(format!(
            "the backup has no database {source}"
        )));
    };
    let target = opts.into.clone();
    if target.is_empty() || target.len() > 64 || target.ends_with(' ') {
        return Err(Error::Invalid(format!(
            "{target:?} is not a valid database name"
        )));
    }

    let mut conn = Conn::new(opts.opts.clone())
        .await
        .map_err(Error::db("connecting to the backend"))?;
    let existing = target_objects(&mut conn, &target).await?;
    if existing.any() && !opts.force {
        let _ = conn.disconnect().await;
        return Err(Error::TargetNotEmpty(target));
    }

    let key = UnwrapKey::load(&opts.private_key)?;
    let chunks = chunk_cipher(&env, &key)?;
    drop(key);

    let mut suffix = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut suffix);
    let temp = format!("myveil_restore_{}", hex::encode(suffix));
    let result = restore_into(
        &mut conn,
        reader,
        env.clone(),
        chunks,
        &source,
        &temp,
        &target,
        &source_entry,
        &existing,
        opts.force,
        len,
        progress,
    )
    .await;
    // Only databases this restore created under its random names are dropped. After a
    // failure, tables --force already moved aside are kept, not dropped.
    let old = old_name(&temp);
    let mut conn = conn;
    let kept_old = if result.is_err() {
        let moved: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                (old.as_str(),),
            )
            .await
            .ok()
            .flatten();
        moved.is_some_and(|n| n > 0)
    } else {
        false
    };
    let mut created = vec![temp.clone()];
    if !kept_old {
        created.push(old.clone());
    }
    let leftover = drop_created(conn, &opts.opts, &created).await;
    let result = match result {
        Err(e) if kept_old => Err(Error::Invalid(format!(
            "{e}; the target's replaced tables are kept in database {old}"
        ))),
        r => r,
    };
    let (tables, deferred) = match (result, leftover) {
        // A failed drop after a success leaves an empty database behind, nothing more.
        (Ok(r), _) => r,
        (Err(e), None) => return Err(e),
        (Err(e), Some(left)) => {
            return Err(Error::Invalid(format!(
                "{e}; the temporary database {left} could not be dropped (the target is untouched): drop it by hand"
            )));
        }
    };
    Ok(Restored {
        source,
        database: target,
        tables,
        views: deferred.iter().filter(|d| d.kind == "VIEW").count(),
        routines: deferred
            .iter()
            .filter(|d| d.kind == "PROCEDURE" || d.kind == "FUNCTION")
            .count(),
        triggers: deferred.iter().filter(|d| d.kind == "TRIGGER").count(),
        key_ids: env.manifest.key_ids.clone(),
        manifest: env.manifest,
    })
}

/// Drops the databases this restore created. When the restore's own session is gone (a
/// backend that died or a killed connection), a fresh one is tried. Returns a name that
/// could not be dropped.
async fn drop_created(
    mut conn: Conn,
    opts: &mysql_async::Opts,
    names: &[String],
) -> Option<String> {
    let statements: Vec<String> = names
        .iter()
        .map(|n| format!("DROP DATABASE IF EXISTS {}", quote(n)))
        .collect();
    let mut failed = false;
    for s in &statements {
        if conn.query_drop(s).await.is_err() {
            failed = true;
            break;
        }
    }
    let _ = conn.disconnect().await;
    if !failed {
        return None;
    }
    let Ok(mut fresh) = Conn::new(opts.clone()).await else {
        return names.first().cloned();
    };
    let mut left = None;
    for (s, n) in statements.iter().zip(names) {
        if fresh.query_drop(s).await.is_err() && left.is_none() {
            left = Some(n.clone());
        }
    }
    let _ = fresh.disconnect().await;
    left
}

const READER_STOPPED: &str = "the restore stopped";

fn old_name(temp: &str) -> String {
    format!("{temp}_old")
}

/// What the target database holds now.
#[derive(Default)]
struct Existing {
    exists: bool,
    /// (name, TABLE_TYPE)
    tables: Vec<(String, String)>,
    /// (name, ROUTINE_TYPE)
    routines: Vec<(String, String)>,
    /// (trigger, table)
    triggers: Vec<(String, String)>,
}

impl Existing {
    fn any(&self) -> bool {
        !self.tables.is_empty() || !self.routines.is_empty()
    }
}

async fn target_objects(conn: &mut Conn, db: &str) -> Result<Existing> {
    let ctx = || Error::db(format!("inspecting database {db}"));
    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await
        .map_err(ctx())?;
    if exists.is_none() {
        return Ok(Existing::default());
    }
    Ok(Existing {
        exists: true,
        tables: conn
            .exec(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                (db,),
            )
            .await
            .map_err(ctx())?,
        routines: conn
            .exec(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
                (db,),
            )
            .await
            .map_err(ctx())?,
        triggers: conn
            .exec(
                "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
                (db,),
            )
            .await
            .map_err(ctx())?,
    })
}

#[allow(clippy::too_many_arguments)]
async fn restore_into(
    conn: &mut Conn,
    mut reader: std::io::BufReader<std::fs::File>,
    env: Envelope,
    chunks: ChunkCipher,
    source: &str,
    temp: &str,
    target: &str,
    source_entry: &format::DatabaseEntry,
    existing: &Existing,
    force: bool,
    total: u64,
    progress: ProgressFn<'_>,
) -> Result<(Vec<TableEntry>, Vec<Deferred>)> {
    for setup in [
        "SET NAMES utf8mb4",
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION net_read_timeout = 3600",
        "SET SESSION foreign_key_checks = 0",
        "SET SESSION unique_checks = 0",
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
    ] {
        conn.query_drop(setup)
            .await
            .map_err(Error::db("preparing the session"))?;
    }
    let max_packet: Option<u64> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .map_err(Error::db("reading max_allowed_packet"))?;
    let max_batch_bytes = BATCH_BYTES.min(max_packet.unwrap_or(1 << 20) as usize / 2);
    conn.query_drop(format!(
        "CREATE DATABASE {} CHARACTER SET {} COLLATE {}",
        quote(temp),
        quote(&source_entry.charset),
        quote(&source_entry.collation)
    ))
    .await
    .map_err(Error::db("creating the temporary database"))?;
    conn.query_drop(format!("USE {}", quote(temp)))
        .await
        .map_err(Error::db("using the temporary database"))?;

    // The reader thread: file reads, digests and chunk decryption off the async workers.
    let read = Arc::new(AtomicU64::new(0));
    let read_in_thread = read.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(READ_QUEUE);
    let manifest = env.manifest.clone();
    let reader_task = tokio::task::spawn_blocking(move || -> Result<format::BodySummary> {
        reader
            .seek(SeekFrom::Start(env.body_start))
            .map_err(Error::read)?;
        format::scan_body(
            &mut reader,
            &env,
            Some(&chunks),
            &mut |plain| {
                tx.blocking_send(plain)
                    .map_err(|_| Error::Io(READER_STOPPED.into()))
            },
            &mut |bytes| read_in_thread.store(env.body_start + bytes, Ordering::Relaxed),
        )
    });

    let mut check = StreamCheck::new(&manifest);
    let mut loader = Loader {
        conn,
        source,
        selected: false,
        table: None,
        tables: Vec::new(),
        deferred: Vec::new(),
        max_batch_bytes: max_batch_bytes.max(1),
        progress,
        read,
        total,
    };
    let loaded: Result<()> = async {
        while let Some(plain) = rx.recv().await {
            check.decoder.feed(&plain);
            while let Some(r) = check.next()? {
                loader.apply(r).await?;
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    let read_result = reader_task
        .await
        .map_err(|e| Error::Io(format!("reader thread: {e}")))?;
    // A broken file stops the reader first: its error is the one that explains. A reader
    // that only stopped because the loader gave up reports nothing new: the loader's does.
    match (read_result, loaded) {
        (Err(Error::Io(m)), Err(e)) if m == READER_STOPPED => return Err(e),
        (r, l) => {
            r?;
            l?;
        }
    }
    check.finish()?;

    let Loader {
        conn,
        tables,
        deferred,
        ..
    } = loader;
    // Everything is loaded and every digest matched. Create the views, routines and
    // triggers in the temporary database first, so a definition the server refuses fails
    // here, before the target is touched.
    create_deferred(conn, &deferred).await?;
    for d in deferred.iter().filter(|d| d.kind == "TRIGGER") {
        // Tables with triggers cannot move to another database.
        conn.query_drop(format!("DROP TRIGGER {}.{}", quote(temp), quote(&d.name)))
            .await
            .map_err(Error::db(format!("moving trigger {}", d.name)))?;
    }

    let restored: std::collections::BTreeSet<&str> =
        tables.iter().map(|t| t.name.as_str()).collect();
    let mut renames = Vec::new();
    if force && existing.exists {
        let old = old_name(temp);
        conn.query_drop(format!("CREATE DATABASE {}", quote(&old)))
            .await
            .map_err(Error::db("creating the database for replaced tables"))?;
        for (trigger, table) in &existing.triggers {
            let replaced_table = restored.contains(table.as_str());
            let same_name = deferred
                .iter()
                .any(|d| d.kind == "TRIGGER" && &d.name == trigger);
            if replaced_table || same_name {
                conn.query_drop(format!("DROP TRIGGER {}.{}", quote(target), quote(trigger)))
                    .await
                    .map_err(Error::db(format!("replacing trigger {trigger}")))?;
            }
        }
        for (name, kind) in &existing.tables {
            let named = restored.contains(name.as_str())
                || deferred.iter().any(|d| d.kind == "VIEW" && &d.name == name);
            if !named {
                continue;
            }
            if kind == "VIEW" {
                conn.query_drop(format!("DROP VIEW {}.{}", quote(target), quote(name)))
                    .await
                    .map_err(Error::db(format!("replacing view {name}")))?;
            } else {
                renames.push(format!(
                    "{}.{} TO {}.{}",
                    quote(target),
                    quote(name),
                    quote(&old),
                    quote(name)
                ));
            }
        }
        for (name, kind) in &existing.routines {
            if deferred
                .iter()
                .any(|d| d.kind == kind.as_str() && &d.name == name)
            {
                conn.query_drop(format!("DROP {kind} {}.{}", quote(target), quote(name)))
                    .await
                    .map_err(Error::db(format!("replacing routine {name}")))?;
            }
        }
    }
    if !existing.exists {
        conn.query_drop(format!(
            "CREATE DATABASE {} CHARACTER SET {} COLLATE {}",
            quote(target),
            quote(&source_entry.charset),
            quote(&source_entry.collation)
        ))
        .await
        .map_err(Error::db(format!("creating database {target}")))?;
    }
    for t in &tables {
        renames.push(format!(
            "{}.{} TO {}.{}",
            quote(temp),
            quote(&t.name),
            quote(target),
            quote(&t.name)
        ));
    }
    if !renames.is_empty() {
        // One statement: the target gets all tables or none.
        conn.query_drop(format!("RENAME TABLE {}", renames.join(", ")))
            .await
            .map_err(Error::db(format!("moving the tables into {target}")))?;
    }
    conn.query_drop(format!("USE {}", quote(target)))
        .await
        .map_err(Error::db(format!("using {target}")))?;
    create_deferred(conn, &deferred)
        .await
        .map_err(|e| Error::Invalid(format!(
            "the tables of {target} are restored, but creating the views, routines and triggers failed: {e}"
        )))?;
    Ok((tables, deferred))
}

/// Creates views (in passes, since a view may use another), routines and triggers in the
/// current database, each trigger and routine under the sql_mode it was created with.
async fn create_deferred(conn: &mut Conn, deferred: &[Deferred]) -> Result<()> {
    // Routines first: views may call stored functions (routine bodies are not checked
    // against other objects when created), triggers last.
    create_with_mode(
        conn,
        deferred
            .iter()
            .filter(|d| d.kind == "PROCEDURE" || d.kind == "FUNCTION"),
    )
    .await?;
    let mut views: Vec<&Deferred> = deferred.iter().filter(|d| d.kind == "VIEW").collect();
    while !views.is_empty() {
        let mut left = Vec::new();
        let mut last_error = None;
        for v in &views {
            if let Err(e) = conn.query_drop(v.create.as_str()).await {
                last_error = Some((v.name.clone(), e));
                left.push(*v);
            }
        }
        if left.len() == views.len()
            && let Some((name, e)) = last_error
        {
            return Err(Error::Database {
                context: format!("creating view {name}"),
                source: e,
            });
        }
        views = left;
    }
    create_with_mode(conn, deferred.iter().filter(|d| d.kind == "TRIGGER")).await
}

/// Creates routines or triggers, each under the sql_mode it was defined with.
async fn create_with_mode<'a>(
    conn: &mut Conn,
    objects: impl Iterator<Item = &'a Deferred>,
) -> Result<()> {
    for d in objects {
        if let Some(mode) = &d.sql_mode {
            conn.exec_drop("SET SESSION sql_mode = ?", (mode.as_str(),))
                .await
                .map_err(Error::db(format!("sql_mode of {}", d.name)))?;
        }
        conn.query_drop(d.create.as_str())
            .await
            .map_err(Error::db(format!(
                "creating {} {}",
                d.kind.to_ascii_lowercase(),
                d.name
            )))?;
    }
    conn.query_drop("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
        .await
        .map_err(Error::db("resetting sql_mode"))?;
    Ok(())
}
