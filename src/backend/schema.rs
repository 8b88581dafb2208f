//! backend::schema: what the live database says about protected tables — column order (for
//! INSERT without a column list) and column types (for `myveil check`). Read through
//! mysql_async on a control-plane connection, never on a client's session.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;

use crate::crypto::envelope::OVERHEAD;
use crate::policy::{PlainType, Policy, Storage};
use crate::sql::analyze::Schema;

/// One column as information_schema describes it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    /// Maximum length in bytes (binary types) or characters (text types), if bounded.
    pub max_length: Option<u64>,
}

/// A view, routine or trigger whose body names a protected table: statements through it
/// would reach protected columns where myveil cannot see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    /// "view", "procedure", "function" or "trigger".
    pub kind: String,
    pub database: String,
    pub name: String,
    /// The protected table (or dependent object) its body names.
    pub reads: String,
    /// For a trigger: the table it fires on (statements on it are refused too).
    pub on_table: Option<String>,
}

/// Columns of the tables the policy names, in ordinal order, by (database, table), and the
/// objects that reach protected tables indirectly.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    tables: HashMap<(String, String), Vec<ColumnInfo>>,
    pub dependents: Vec<Dependent>,
    /// Lower-case names of dependents (and tables with such triggers) for the quick scan.
    pub dependent_names: HashSet<String>,
}

impl Dependent {
    /// The error text for a statement that names this object.
    pub fn refusal(&self) -> String {
        match &self.on_table {
            Some(t) => format!(
                "myveil: table {t} has trigger {}.{} that reaches protected data through {}; statements on {t} cannot be protected",
                self.database, self.name, self.reads
            ),
            None => format!(
                "myveil: {} {}.{} reaches protected data through {} where myveil cannot see it; use the protected table itself",
                self.kind, self.database, self.name, self.reads
            ),
        }
    }
}

impl Snapshot {
    /// The dependent a statement names, if any.
    pub fn dependent_named(&self, sql: &[u8]) -> Option<&Dependent> {
        if self.dependent_names.is_empty() {
            return None;
        }
        // Only pay for a word-by-word look when some name occurs at all.
        if !crate::sql::lex::scan(sql, &self.dependent_names).names_watched {
            return None;
        }
        self.dependents.iter().find(|d| {
            let one: HashSet<String> = [d
                .on_table
                .as_deref()
                .unwrap_or(&d.name)
                .to_ascii_lowercase()]
            .into();
            crate::sql::lex::scan(sql, &one).names_watched
        })
    }
}

const SYSTEM_SCHEMAS: &str = "('mysql', 'sys', 'information_schema', 'performance_schema')";

/// Finds views, routines and triggers whose bodies name a protected table, or (for views and
/// routines) another such object, until nothing new is found.
async fn load_dependents(
    conn: &mut mysql_async::Conn,
    tables: &[String],
) -> Result<Vec<Dependent>, mysql_async::Error> {
    let views: Vec<(String, String, Option<String>)> = conn
        .query(format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
             WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
        ))
        .await?;
    let routines: Vec<(String, String, String, Option<String>)> = conn
        .query(format!(
            "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
        ))
        .await?;
    let triggers: Vec<(String, String, String, Option<String>)> = conn
        .query(format!(
            "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
        ))
        .await?;
    // A definition the control account may not read (NULL) counts as reaching protected
    // data: fail closed.
    type Body = (String, String, String, Option<String>, Option<String>);
    let mut bodies: Vec<Body> = Vec::new();
    for (db, name, def) in views {
        bodies.push(("view".into(), db, name, None, def));
    }
    for (db, name, kind, def) in routines {
        bodies.push((kind.to_ascii_lowercase(), db, name, None, def));
    }
    for (db, name, table, def) in triggers {
        bodies.push(("trigger".into(), db, name, Some(table), def));
    }
    let mut reached: HashSet<String> = tables.iter().map(|t| t.to_ascii_lowercase()).collect();
    let mut found: Vec<Dependent> = Vec::new();
    loop {
        let before = found.len();
        for (kind, db, name, on_table, body) in &bodies {
            if found
                .iter()
                .any(|d| &d.kind == kind && &d.database == db && &d.name == name)
            {
                continue;
            }
            let reads = match body {
                None => "(its definition is not visible to the control account)".to_owned(),
                // One pass over the body first; which name matched only when one did.
                Some(b) if crate::sql::lex::scan(b.as_bytes(), &reached).names_watched => reached
                    .iter()
                    .find(|t| {
                        let one: HashSet<String> = [(*t).clone()].into();
                        crate::sql::lex::scan(b.as_bytes(), &one).names_watched
                    })
                    .cloned()
                    .unwrap_or_default(),
                Some(_) => continue,
            };
            found.push(Dependent {
                kind: kind.clone(),
                database: db.clone(),
                name: name.clone(),
                reads,
                on_table: on_table.clone(),
            });
        }
        if found.len() == before {
            break;
        }
        for d in &found[before..] {
            // Views and routines can be named by other bodies; a trigger is reached through
            // the table it fires on (a view writing into that table reaches it too).
            reached.insert(
                d.on_table
                    .as_deref()
                    .unwrap_or(&d.name)
                    .to_ascii_lowercase(),
            );
        }
    }
    Ok(found)
}

impl Schema for Snapshot {
    fn columns(&self, database: &str, table: &str) -> Option<Vec<String>> {
        self.tables
            .get(&(database.to_owned(), table.to_owned()))
            .map(|cols| cols.iter().map(|c| c.name.clone()).collect())
    }
}

/// Reads the columns of every table the policy protects.
pub async fn load(
    conn: &mut mysql_async::Conn,
    policy: &Policy,
) -> Result<Snapshot, mysql_async::Error> {
    let mut names: Vec<String> = policy.columns().iter().map(|c| c.table.clone()).collect();
    names.sort();
    names.dedup();
    let mut snapshot = Snapshot::default();
    if names.is_empty() {
        return Ok(snapshot);
    }
    let marks = vec!["?"; names.len()].join(", ");
    let rows: Vec<(String, String, String, String, Option<u64>)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
                 WHERE TABLE_NAME IN ({marks}) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ),
            names.clone(),
        )
        .await?;
    snapshot.dependents = load_dependents(conn, &names).await?;
    snapshot.dependent_names = snapshot
        .dependents
        .iter()
        .map(|d| {
            d.on_table
                .as_deref()
                .unwrap_or(&d.name)
                .to_ascii_lowercase()
        })
        .collect();
    for (db, table, name, data_type, max_length) in rows {
        snapshot
            .tables
            .entry((db, table))
            .or_default()
            .push(ColumnInfo {
                name,
                data_type: data_type.to_ascii_lowercase(),
                max_length,
            });
    }
    Ok(snapshot)
}

/// Bytes the largest plaintext of a type can take (utf8mb4 text: 4 bytes a character).
fn plaintext_bytes(t: PlainType) -> u64 {
    match t {
        PlainType::Char(n) | PlainType::Varchar(n) => u64::from(n) * 4,
        PlainType::Text => 65_535,
        PlainType::Int => 11,
        PlainType::BigInt => 20,
        PlainType::Decimal(p, _) => u64::from(p) + 2,
        PlainType::Date => 10,
        PlainType::DateTime => 19,
        PlainType::Varbinary(n) => u64::from(n),
        PlainType::Blob => 65_535,
    }
}

/// Checks the live schema against the policy: every protected column exists where its table
/// does, its type holds the envelope, and its blind-index column exists. Returns problems.
pub fn check(snapshot: &Snapshot, policy: &Policy) -> Vec<String> {
    let mut problems = Vec::new();
    for col in policy.columns() {
        let places: Vec<(&(String, String), &Vec<ColumnInfo>)> = snapshot
            .tables
            .iter()
            .filter(|((db, t), _)| {
                *t == col.table && col.database.as_deref().is_none_or(|d| d == db)
            })
            .collect();
        if places.is_empty() {
            problems.push(format!("{}: table not found in the database", col.scope()));
        }
        for ((db, table), columns) in places {
            let at = format!("{db}.{table}.{}", col.column);
            let Some(info) = columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&col.column))
            else {
                problems.push(format!("{at}: column not found"));
                continue;
            };
            let envelope = plaintext_bytes(col.plain_type) + OVERHEAD as u64;
            let (types, need): (&[&str], u64) = match col.storage {
                Storage::Binary => (
                    &[
                        "varbinary",
                        "binary",
                        "blob",
                        "mediumblob",
                        "longblob",
                        "tinyblob",
                    ],
                    envelope,
                ),
                Storage::Base64 => (
                    &[
                        "varchar",
                        "char",
                        "text",
                        "mediumtext",
                        "longtext",
                        "tinytext",
                    ],
                    envelope.div_ceil(3) * 4,
                ),
            };
            if !types.contains(&info.data_type.as_str()) {
                problems.push(format!(
                    "{at}: type {} cannot hold a {:?} envelope (use one of {})",
                    info.data_type,
                    col.storage,
                    types.join(", ")
                ));
            } else if info.max_length.is_some_and(|m| m < need) {
                problems.push(format!(
                    "{at}: holds {} but a {} value needs up to {need}",
                    info.max_length.unwrap_or(0),
                    col.plain_type.name()
                ));
            }
            if let Some(b) = &col.blind_index {
                match columns.iter().find(|c| c.name.eq_ignore_ascii_case(b)) {
                    None => {
                        problems.push(format!("{db}.{table}.{b}: blind-index column not found"))
                    }
                    Some(i)
                        if !matches!(i.data_type.as_str(), "binary" | "varbinary")
                            || i.max_length.is_some_and(|m| m < 32) =>
                    {
                        problems.push(format!("{db}.{table}.{b}: a blind index needs BINARY(32)"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    problems
}
