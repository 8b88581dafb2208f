//! backup::dump: `create` — a streaming logical dump from one consistent snapshot, written
//! as an encrypted, signed backup file. Rows are streamed from the server and leave in
//! ≤ 1 MiB buffers, so memory stays flat whatever the database size.

use std::collections::BTreeSet;
use std::io::BufWriter;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};

use super::format::{self, DataKey, DatabaseEntry, FileWriter, Header, Manifest, TableEntry};
use super::keys::{SignKey, WrapKey};
use super::stream::{self, put_cell, put_str, put_varint};
use super::{Error, Phase, Progress, ProgressFn, Result, quote};
use crate::policy::{Policy, Storage};

/// Buffers in flight between the dump and the writer thread.
const WRITE_QUEUE: usize = 4;
/// Progress is reported every this many rows.
const PROGRESS_ROWS: u64 = 8192;

pub struct CreateOptions {
    pub opts: Opts,
    pub databases: Vec<String>,
    pub dir: PathBuf,
    pub public_key: PathBuf,
    pub signing_key: PathBuf,
    /// Recorded in the manifest (the backend address).
    pub source_host: String,
    /// The protection policy, to find the key ids the protected cells name.
    pub policy: Option<Policy>,
    /// Keep the newest N backups in `dir` afterwards; 0 keeps all.
    pub retention: usize,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub file_sha256: String,
    pub bytes: u64,
    /// Old backups removed by retention.
    pub removed: Vec<PathBuf>,
}

const WRITER_STOPPED: &str = "the backup writer stopped";

/// Removes the temporary file unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Dumps `opts.databases` into a new backup file in `opts.dir`.
pub async fn create(opts: &CreateOptions, progress: ProgressFn<'_>) -> Result<Created> {
    if opts.databases.is_empty() {
        return Err(Error::Invalid(
            "no databases to back up (set [backup] databases)".into(),
        ));
    }
    // Keys are loaded before anything is written or read from the server.
    let wrap_key = WrapKey::load(&opts.public_key)?;
    let sign_key = SignKey::load(&opts.signing_key)?;
    let data_key = DataKey::random();
    let wrapped = wrap_key.wrap(&data_key)?;
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (created_at, stamp) = super::utc(now);
    let header = Header {
        format: format::FORMAT_VERSION,
        backup_id: hex::encode(id),
        created_at: created_at.clone(),
        chunk_bytes: format::CHUNK_BYTES as u32,
        cipher: format::CIPHER.into(),
        key_wrap: format::KEY_WRAP.into(),
        rsa_key_id: wrap_key.id.clone(),
        wrapped_key: B64.encode(&wrapped),
        signing_key_id: sign_key.verify_key().id,
    };

    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::Io(format!("{}: {e}", opts.dir.display())))?;
    let name = format!(
        "myveil-{stamp}-{}.{}",
        &header.backup_id[..8],
        super::EXTENSION
    );
    let path = opts.dir.join(&name);
    let tmp_path = opts.dir.join(format!(".{name}.tmp"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(|e| Error::Io(format!("{}: {e}", tmp_path.display())))?;
    let mut guard = TempFile(Some(tmp_path.clone()));
    let mut writer = FileWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        &header,
        &data_key,
        id,
    )?;
    drop(data_key);

    // The writer thread: hashing, encryption and file writes off the async workers (and in
    // parallel with reading rows).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer_task = tokio::task::spawn_blocking(move || -> Result<_> {
        while let Some(buf) = rx.blocking_recv() {
            writer.push(&buf)?;
        }
        let summary = writer.finish_body()?;
        Ok((writer, summary))
    });

    let mut dumper = Dumper {
        tx,
        buf: Vec::with_capacity(format::CHUNK_BYTES + (64 << 10)),
        plain_bytes: 0,
        key_ids: BTreeSet::new(),
        progress,
    };
    let dumped = dumper.dump_all(opts).await;
    let key_ids = std::mem::take(&mut dumper.key_ids);
    drop(dumper);
    let joined = writer_task
        .await
        .map_err(|e| Error::Io(format!("writer thread: {e}")))?;
    // A dump error usually closed the channel and made the writer fail too: report the
    // dump's — unless the dump only stopped because the writer failed (a full disk).
    let ((databases, server_version), (writer, body)) = match (dumped, joined) {
        (Err(Error::Io(m)), Err(e)) if m == WRITER_STOPPED => return Err(e),
        (d, j) => (d?, j?),
    };

    let manifest = Manifest {
        format: format::FORMAT_VERSION,
        backup_id: header.backup_id.clone(),
        created_at,
        source_host: opts.source_host.clone(),
        server_version,
        databases,
        key_ids: key_ids.into_iter().collect(),
        plaintext_bytes: body.plaintext_bytes,
        plaintext_sha256: body.plaintext_sha256,
        chunks: body.chunks,
        body_bytes: body.body_bytes,
        body_sha256: body.body_sha256,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Format(format!("manifest: {e}")))?;
    let signature = sign_key.sign(&format::signed_message(writer.preamble(), &manifest_bytes));
    let finish_path = tmp_path.clone();
    let final_path = path.clone();
    let (digest, bytes) = tokio::task::spawn_blocking(move || -> Result<([u8; 32], u64)> {
        let (out, digest) = writer.finish(&manifest_bytes, &signature)?;
        let file = out
            .into_inner()
            .map_err(|e| Error::Io(format!("{}: {}", finish_path.display(), e.error())))?;
        file.sync_all().map_err(Error::write)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        std::fs::rename(&finish_path, &final_path)
            .map_err(|e| Error::Io(format!("{}: {e}", final_path.display())))?;
        if let Some(dir) = final_path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok((digest, bytes))
    })
    .await
    .map_err(|e| Error::Io(format!("writer thread: {e}")))??;
    guard.0 = None;
    progress(&Progress {
        phase: Phase::Finish,
        database: "",
        table: "",
        rows: 0,
        bytes,
        total_bytes: Some(bytes),
    });
    let removed = super::apply_retention_keeping(&opts.dir, opts.retention, Some(&path))?;
    Ok(Created {
        path,
        manifest,
        file_sha256: hex::encode(digest),
        bytes,
        removed,
    })
}

struct Dumper<'p> {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    plain_bytes: u64,
    key_ids: BTreeSet<u32>,
    progress: ProgressFn<'p>,
}

/// A protected column in the dumped column list: where its key id is read from.
struct KeyColumn {
    index: usize,
    storage: Storage,
}

fn text(row: &mut Row, i: usize, what: &str) -> Result<String> {
    match row.take_opt::<Value, _>(i) {
        Some(Ok(Value::Bytes(b))) => String::from_utf8(b)
            .map_err(|_| Error::Invalid(format!("{what}: the server sent text that is not UTF-8"))),
        Some(Ok(Value::NULL)) => Err(Error::Invalid(format!(
            "{what}: the server did not show it (missing privilege?)"
        ))),
        _ => Err(Error::Invalid(format!(
            "{what}: unexpected answer from the server"
        ))),
    }
}

impl Dumper<'_> {
    async fn flush(&mut self) -> Result<()> {
        let full = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(format::CHUNK_BYTES + (64 << 10)),
        );
        self.plain_bytes += full.len() as u64;
        self.tx
            .send(full)
            .await
            .map_err(|_| Error::Io(WRITER_STOPPED.into()))
    }

    async fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= format::CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn dump_all(&mut self, opts: &CreateOptions) -> Result<(Vec<DatabaseEntry>, String)> {
        let mut conn = Conn::new(opts.opts.clone())
            .await
            .map_err(Error::db("connecting to the backend"))?;
        let result = self.dump_conn(&mut conn, opts).await;
        let _ = conn.disconnect().await;
        let out = result?;
        self.buf.push(stream::TAG_END);
        self.flush().await?;
        Ok(out)
    }

    async fn dump_conn(
        &mut self,
        conn: &mut Conn,
        opts: &CreateOptions,
    ) -> Result<(Vec<DatabaseEntry>, String)> {
        for setup in [
            "SET NAMES utf8mb4",
            // SHOW CREATE output must use backticks whatever the server's sql_mode
            // (ANSI_QUOTES or ORACLE would quote with "…" and break the restore).
            "SET SESSION sql_mode = ''",
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION net_write_timeout = 3600",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            // Every table is read from this one snapshot (InnoDB; like mariadb-dump
            // --single-transaction, DDL during the dump is not isolated).
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        ] {
            conn.query_drop(setup)
                .await
                .map_err(Error::db("starting the snapshot"))?;
        }
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(Error::db("SELECT VERSION()"))?;
        self.buf.extend_from_slice(stream::STREAM_MAGIC);
        let mut entries = Vec::new();
        for db in &opts.databases {
            entries.push(self.dump_database(conn, db, opts.policy.as_ref()).await?);
        }
        conn.query_drop("COMMIT")
            .await
            .map_err(Error::db("ending the snapshot"))?;
        Ok((entries, version.unwrap_or_default()))
    }

    async fn dump_database(
        &mut self,
        conn: &mut Conn,
        db: &str,
        policy: Option<&Policy>,
    ) -> Result<DatabaseEntry> {
        let ctx = |what: &str| format!("{what} of database {db}");
        let schema: Option<(String, String)> = conn
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(Error::db(ctx("charset")))?;
        let Some((charset, collation)) = schema else {
            return Err(Error::Invalid(format!("database {db} does not exist")));
        };
        // With the database as default, SHOW CREATE VIEW leaves its own name out of the
        // definition, so the view can be restored under another name.
        conn.query_drop(format!("USE {}", quote(db)))
            .await
            .map_err(Error::db(ctx("USE")))?;
        self.buf.push(stream::TAG_DATABASE);
        put_str(&mut self.buf, db.as_bytes());
        put_str(&mut self.buf, charset.as_bytes());
        put_str(&mut self.buf, collation.as_bytes());

        let mut tables: Vec<(String, String)> = conn
            .query("SHOW FULL TABLES")
            .await
            .map_err(Error::db(ctx("SHOW FULL TABLES")))?;
        tables.sort();
        let mut entry = DatabaseEntry {
            name: db.to_owned(),
            charset,
            collation,
            tables: Vec::new(),
            views: Vec::new(),
            triggers: Vec::new(),
            routines: Vec::new(),
        };
        for (table, kind) in &tables {
            if kind == "BASE TABLE" {
                let rows = self.dump_table(conn, db, table, policy).await?;
                entry.tables.push(TableEntry {
                    name: table.clone(),
                    rows,
                });
            }
        }
        for (view, kind) in &tables {
            if kind == "VIEW" {
                let mut row: Row = conn
                    .query_first(format!("SHOW CREATE VIEW {}", quote(view)))
                    .await
                    .map_err(Error::db(format!("SHOW CREATE VIEW {db}.{view}")))?
                    .ok_or_else(|| Error::Invalid(format!("view {db}.{view} vanished")))?;
                let create = text(&mut row, 1, &format!("view {db}.{view}"))?;
                self.buf.push(stream::TAG_VIEW);
                put_str(&mut self.buf, view.as_bytes());
                put_str(&mut self.buf, create.as_bytes());
                entry.views.push(view.clone());
            }
        }
        let routines: Vec<(String, String)> = conn
            .exec(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
                (db,),
            )
            .await
            .map_err(Error::db(ctx("routines")))?;
        for (name, kind) in routines {
            let kind = if kind == "FUNCTION" {
                "FUNCTION"
            } else {
                "PROCEDURE"
            };
            let mut row: Row = conn
                .query_first(format!("SHOW CREATE {kind} {}", quote(&name)))
                .await
                .map_err(Error::db(format!("SHOW CREATE {kind} {db}.{name}")))?
                .ok_or_else(|| Error::Invalid(format!("routine {db}.{name} vanished")))?;
            let what = format!("{} {db}.{name}", kind.to_ascii_lowercase());
            let sql_mode = text(&mut row, 1, &what)?;
            let create = text(&mut row, 2, &what)?;
            self.buf.push(stream::TAG_ROUTINE);
            put_str(&mut self.buf, kind.as_bytes());
            put_str(&mut self.buf, name.as_bytes());
            put_str(&mut self.buf, sql_mode.as_bytes());
            put_str(&mut self.buf, create.as_bytes());
            entry
                .routines
                .push(format!("{} {name}", kind.to_ascii_lowercase()));
        }
        let triggers: Vec<String> = conn
            .exec(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
                (db,),
            )
            .await
            .map_err(Error::db(ctx("triggers")))?;
        for name in triggers {
            let mut row: Row = conn
                .query_first(format!("SHOW CREATE TRIGGER {}", quote(&name)))
                .await
                .map_err(Error::db(format!("SHOW CREATE TRIGGER {db}.{name}")))?
                .ok_or_else(|| Error::Invalid(format!("trigger {db}.{name} vanished")))?;
            let what = format!("trigger {db}.{name}");
            let sql_mode = text(&mut row, 1, &what)?;
            let create = text(&mut row, 2, &what)?;
            self.buf.push(stream::TAG_TRIGGER);
            put_str(&mut self.buf, name.as_bytes());
            put_str(&mut self.buf, sql_mode.as_bytes());
            put_str(&mut self.buf, create.as_bytes());
            entry.triggers.push(name);
        }
        self.maybe_flush().await?;
        Ok(entry)
    }

    async fn dump_table(
        &mut self,
        conn: &mut Conn,
        db: &str,
        table: &str,
        policy: Option<&Policy>,
    ) -> Result<u64> {
        let mut row: Row = conn
            .query_first(format!("SHOW CREATE TABLE {}", quote(table)))
            .await
            .map_err(Error::db(format!("SHOW CREATE TABLE {db}.{table}")))?
            .ok_or_else(|| Error::Invalid(format!("table {db}.{table} vanished")))?;
        let create = text(&mut row, 1, &format!("table {db}.{table}"))?;
        let columns: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, IS_GENERATED FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(Error::db(format!("columns of {db}.{table}")))?;
        // Generated columns are recomputed on restore, so they are neither dumped nor inserted.
        let columns: Vec<String> = columns
            .into_iter()
            .filter(|(_, generated)| generated != "ALWAYS")
            .map(|(c, _)| c)
            .collect();
        if columns.is_empty() {
            return Err(Error::Invalid(format!(
                "table {db}.{table} has no stored columns"
            )));
        }
        let key_columns: Vec<KeyColumn> = columns
            .iter()
            .enumerate()
            .filter_map(|(index, c)| {
                policy
                    .and_then(|p| p.find(db, table, c))
                    .map(|p| KeyColumn {
                        index,
                        storage: p.storage,
                    })
            })
            .collect();
        self.buf.push(stream::TAG_TABLE);
        put_str(&mut self.buf, table.as_bytes());
        put_str(&mut self.buf, create.as_bytes());
        put_varint(&mut self.buf, columns.len() as u64);
        for c in &columns {
            put_str(&mut self.buf, c.as_bytes());
        }
        let select = format!(
            "SELECT {} FROM {}",
            columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", "),
            quote(table)
        );
        let mut result = conn
            .query_iter(select)
            .await
            .map_err(Error::db(format!("reading {db}.{table}")))?;
        let mut rows = 0u64;
        let report = |rows: u64, bytes: u64| {
            (self.progress)(&Progress {
                phase: Phase::Dump,
                database: db,
                table,
                rows,
                bytes,
                total_bytes: None,
            })
        };
        report(0, self.plain_bytes + self.buf.len() as u64);
        while let Some(row) = result
            .next()
            .await
            .map_err(Error::db(format!("reading {db}.{table}")))?
        {
            let values = row.unwrap_raw();
            if values.len() != columns.len() {
                return Err(Error::Invalid(format!(
                    "{db}.{table}: the server sent {} columns for {}",
                    values.len(),
                    columns.len()
                )));
            }
            self.buf.push(stream::TAG_ROW);
            for v in &values {
                match v {
                    None | Some(Value::NULL) => put_cell(&mut self.buf, None),
                    Some(Value::Bytes(b)) => put_cell(&mut self.buf, Some(b)),
                    Some(_) => {
                        return Err(Error::Invalid(format!(
                            "{db}.{table}: unexpected binary value in a text result"
                        )));
                    }
                }
            }
            for k in &key_columns {
                if let Some(Some(Value::Bytes(b))) = values.get(k.index)
                    && let Some(id) = envelope_key_id(b, k.storage)
                {
                    self.key_ids.insert(id);
                }
            }
            rows += 1;
            if self.buf.len() >= format::CHUNK_BYTES {
                // The buffer is handed over; the result set stays open (flat memory).
                self.flush().await?;
            }
            if rows.is_multiple_of(PROGRESS_ROWS) {
                report(rows, self.plain_bytes + self.buf.len() as u64);
            }
        }
        drop(result);
        report(rows, self.plain_bytes + self.buf.len() as u64);
        self.buf.push(stream::TAG_END_TABLE);
        put_varint(&mut self.buf, rows);
        self.maybe_flush().await?;
        Ok(rows)
    }
}

/// The key id in a stored envelope (binary, or base64 in a text column); None for a value
/// that is not an envelope.
fn envelope_key_id(stored: &[u8], storage: Storage) -> Option<u32> {
    match storage {
        Storage::Binary => crate::crypto::envelope::key_id(stored).ok(),
        Storage::Base64 => {
            // The envelope's fixed header is within the first 12 base64 characters; the
            // whole value is decoded so `key_id` sees a complete envelope.
            let raw = B64.decode(stored).ok()?;
            crate::crypto::envelope::key_id(&raw).ok()
        }
    }
}
