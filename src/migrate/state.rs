//! migrate::state: what the `myveil` schema on the backend records about migrations.
//!
//! - `myveil.columns`: one row per protected column that a migration has touched, with its
//!   state. `mixed` (cells are being sealed, or opened back: a cell that is not an envelope
//!   is read as its plaintext) or `done` (every cell is an envelope). The proxies read it
//!   with the schema; a column without a row is `done` (fail closed).
//! - `myveil.jobs`: one row per table and job (`encrypt`, `reencrypt`, `revert`), with its
//!   phase and checkpoint (the last primary key handled), written in the same transaction
//!   as the batch it follows, so a run killed at any point resumes where its data is.
//! - `myveil.instances`: one row per running `myveil serve`, with the identity and
//!   generation of the keyring it has loaded, refreshed every few seconds and after each
//!   reload (`report_instance`). `keys retire` and the demotion of blind-index keys refuse
//!   while a live instance of the same keyring is on another generation (`stale_instances`):
//!   it may still seal or index under the key being put away.
//!
//! Security: the proxies trust these rows to relax reads of a column (a plaintext cell is
//! shown by the role's rule rather than refused). Only the control account may write the
//! `myveil` schema; the guard refuses client statements that name it (ADR 0008).

use mysql_async::prelude::Queryable;

/// The reserved schema on the backend.
pub const SCHEMA: &str = "myveil";

/// The advisory lock one migration or re-encryption holds for its whole run (per server).
pub const LOCK: &str = "myveil.migrate";

const CREATE: [&str; 5] = [
    "CREATE DATABASE IF NOT EXISTS `myveil`",
    "CREATE TABLE IF NOT EXISTS `myveil`.`columns` (\
       db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, col VARCHAR(64) NOT NULL, \
       state VARCHAR(16) NOT NULL, \
       updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
       PRIMARY KEY (db, tbl, col)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS `myveil`.`jobs` (\
       db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, job VARCHAR(80) NOT NULL, \
       phase VARCHAR(16) NOT NULL, last_pk TEXT NULL, \
       rows_done BIGINT UNSIGNED NOT NULL DEFAULT 0, rows_total BIGINT UNSIGNED NOT NULL DEFAULT 0, \
       updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
       PRIMARY KEY (db, tbl, job)) ENGINE=InnoDB",
    // A job's name holds a column's (`copy:<column>`); first releases made it shorter.
    "ALTER TABLE `myveil`.`jobs` MODIFY job VARCHAR(80) NOT NULL",
    "CREATE TABLE IF NOT EXISTS `myveil`.`instances` (\
       instance CHAR(32) NOT NULL, keyring CHAR(16) NOT NULL, generation CHAR(16) NOT NULL, \
       host VARCHAR(255) NOT NULL, pid INT UNSIGNED NOT NULL, \
       seen TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
       PRIMARY KEY (instance)) ENGINE=InnoDB",
];

/// How often a running instance reports its keyring (it also does after each reload).
pub const INSTANCE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// An instance whose last report is older than this is taken as gone.
pub const INSTANCE_LIVE_SECS: u64 = 30;

/// Records that this instance runs with the keyring `keyring` at `generation`. Err where
/// the table is missing (nothing migrated or rotated yet) or not writable.
pub async fn report_instance(
    conn: &mut mysql_async::Conn,
    instance: &str,
    keyring: &str,
    generation: &str,
) -> Result<(), mysql_async::Error> {
    let host = hostname();
    conn.exec_drop(
        "INSERT INTO `myveil`.`instances` (instance, keyring, generation, host, pid, seen) \
         VALUES (?, ?, ?, ?, ?, CURRENT_TIMESTAMP) ON DUPLICATE KEY UPDATE \
         keyring = VALUES(keyring), generation = VALUES(generation), seen = CURRENT_TIMESTAMP",
        (instance, keyring, generation, host, std::process::id()),
    )
    .await
}

/// Removes this instance's row (it stops).
pub async fn forget_instance(
    conn: &mut mysql_async::Conn,
    instance: &str,
) -> Result<(), mysql_async::Error> {
    conn.exec_drop(
        "DELETE FROM `myveil`.`instances` WHERE instance = ?",
        (instance,),
    )
    .await
}

/// A running instance as it last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance: String,
    pub generation: String,
    pub host: String,
    pub pid: u32,
    /// Seconds since its last report.
    pub age: u64,
}

/// The live instances of keyring `keyring` (reported within `INSTANCE_LIVE_SECS`), where
/// the table exists.
pub async fn instances(
    conn: &mut mysql_async::Conn,
    keyring: &str,
) -> Result<Vec<Instance>, mysql_async::Error> {
    if !has_table(conn, "instances").await? {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, String, String, u32, u64)> = conn
        .exec(
            "SELECT instance, generation, host, pid, \
             GREATEST(0, TIMESTAMPDIFF(SECOND, seen, CURRENT_TIMESTAMP)) \
             FROM `myveil`.`instances` WHERE keyring = ? \
             AND seen >= CURRENT_TIMESTAMP - INTERVAL ? SECOND ORDER BY host, pid",
            (keyring, INSTANCE_LIVE_SECS),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(instance, generation, host, pid, age)| Instance {
            instance,
            generation,
            host,
            pid,
            age,
        })
        .collect())
}

/// The live instances of the keyring that have not loaded its `generation` yet.
pub async fn stale_instances(
    conn: &mut mysql_async::Conn,
    keyring: &str,
    generation: &str,
) -> Result<Vec<Instance>, mysql_async::Error> {
    Ok(instances(conn, keyring)
        .await?
        .into_iter()
        .filter(|i| i.generation != generation)
        .collect())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Creates the `myveil` schema and its tables where missing.
pub async fn ensure(conn: &mut mysql_async::Conn) -> Result<(), mysql_async::Error> {
    for sql in CREATE {
        conn.query_drop(sql).await?;
    }
    Ok(())
}

/// Whether the server has one of the `myveil` schema's tables (text protocol: one round
/// trip; `table` is one of this module's names). A server never migrated has none.
async fn has_table(
    conn: &mut mysql_async::Conn,
    table: &'static str,
) -> Result<bool, mysql_async::Error> {
    let n: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'myveil' AND TABLE_NAME = '{table}'"
        ))
        .await?;
    Ok(n.unwrap_or(0) > 0)
}

/// Columns in the mixed state: (database, table, column) as recorded. A server without the
/// `myveil` schema has none.
pub async fn mixed(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(String, String, String)>, mysql_async::Error> {
    if !has_table(conn, "columns").await? {
        return Ok(Vec::new());
    }
    conn.query("SELECT db, tbl, col FROM `myveil`.`columns` WHERE state = 'mixed'")
        .await
}

/// The recorded state of one column, where the state table exists (None: no row).
pub async fn mixed_or_done(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    column: &str,
) -> Result<Option<String>, mysql_async::Error> {
    if !has_table(conn, "columns").await? {
        return Ok(None);
    }
    column_state(conn, db, table, column).await
}

/// The recorded state of one column (None: no row).
pub async fn column_state(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    column: &str,
) -> Result<Option<String>, mysql_async::Error> {
    conn.exec_first(
        "SELECT state FROM `myveil`.`columns` WHERE db = ? AND tbl = ? AND col = ?",
        (db, table, column),
    )
    .await
}

/// Records a column's state, and makes every proxy read the schema again within a moment
/// (they watch the server's DDL counters; a comment change on the state table moves them).
pub async fn set_column_state(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    column: &str,
    state: &str,
) -> Result<(), mysql_async::Error> {
    conn.exec_drop(
        "INSERT INTO `myveil`.`columns` (db, tbl, col, state) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE state = VALUES(state)",
        (db, table, column, state),
    )
    .await?;
    announce(conn).await
}

/// Moves the DDL counters the proxies watch, so they read the schema (and the column
/// states) again.
pub async fn announce(conn: &mut mysql_async::Conn) -> Result<(), mysql_async::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    conn.query_drop(format!(
        "ALTER TABLE `myveil`.`columns` COMMENT = 'myveil column states, changed {now}'"
    ))
    .await
}

/// A job's phase and checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Job {
    pub phase: String,
    /// The last primary key handled, each column's value as the server returned it.
    pub last_pk: Option<Vec<Vec<u8>>>,
    pub rows_done: u64,
    pub rows_total: u64,
}

/// The recorded job of a table (None: none).
pub async fn job(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    job: &str,
) -> Result<Option<Job>, mysql_async::Error> {
    let row: Option<(String, Option<String>, u64, u64)> = conn
        .exec_first(
            "SELECT phase, last_pk, rows_done, rows_total FROM `myveil`.`jobs` \
             WHERE db = ? AND tbl = ? AND job = ?",
            (db, table, job),
        )
        .await?;
    Ok(row.map(|(phase, last_pk, rows_done, rows_total)| Job {
        phase,
        last_pk: last_pk.as_deref().and_then(decode_pk),
        rows_done,
        rows_total,
    }))
}

/// The statement that records a job's progress (run inside the batch's transaction).
pub fn job_update_sql(db: &str, table: &str, job: &str, state: &Job) -> String {
    let pk = state
        .last_pk
        .as_ref()
        .map_or_else(|| "NULL".to_owned(), |k| text_literal(&encode_pk(k)));
    format!(
        "INSERT INTO `myveil`.`jobs` (db, tbl, job, phase, last_pk, rows_done, rows_total) \
         VALUES ({}, {}, {}, {}, {pk}, {}, {}) ON DUPLICATE KEY UPDATE phase = VALUES(phase), \
         last_pk = VALUES(last_pk), rows_done = VALUES(rows_done), rows_total = VALUES(rows_total)",
        text_literal(db),
        text_literal(table),
        text_literal(job),
        text_literal(&state.phase),
        state.rows_done,
        state.rows_total
    )
}

/// A string as a SQL literal that reads the same under any sql_mode (hex, in utf8mb4).
pub fn text_literal(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    format!("_utf8mb4 X'{}'", hex::encode(s.as_bytes()))
}

fn encode_pk(pk: &[Vec<u8>]) -> String {
    serde_json::Value::Array(
        pk.iter()
            .map(|v| serde_json::Value::String(hex::encode(v)))
            .collect(),
    )
    .to_string()
}

fn decode_pk(text: &str) -> Option<Vec<Vec<u8>>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.as_array()?
        .iter()
        .map(|x| hex::decode(x.as_str()?).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_any_bytes() {
        let pk = vec![b"42".to_vec(), vec![0, 0xFF, b'\'', b'\\']];
        assert_eq!(decode_pk(&encode_pk(&pk)), Some(pk));
        assert_eq!(decode_pk("not json"), None);
        assert_eq!(text_literal("a'b"), "_utf8mb4 X'612762'");
    }
}
