//! backend::schema: what the live database says about the tables around protected data —
//! the columns of every table in a database that holds a protected table (order, defaults,
//! types), unique indexes there, view definitions, and the views, routines and triggers
//! that reach protected data where the proxy cannot see. Read through mysql_async on a
//! control-plane connection, never on a client's session.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;

use crate::crypto::envelope::OVERHEAD;
use crate::policy::{PlainType, Policy, Protected, Storage};
use crate::sql::analyze::{ColumnMeta, Schema};

/// A view, routine or trigger that reaches protected data where myveil cannot see it (its
/// body names a protected table or builds SQL at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    /// "view", "procedure", "function" or "trigger".
    pub kind: String,
    pub database: String,
    pub name: String,
    /// What in its body reaches protected data.
    pub reads: String,
    /// For a trigger: the table it fires on (writes to it are refused).
    pub on_table: Option<String>,
    /// Reading it is refused too: it reaches protected data by calling a routine that does
    /// (reading the view runs it, and a function can write), or it selects a generated
    /// column computed from a protected one.
    pub reads_refused: bool,
}

impl Dependent {
    /// The error text for a statement that names this object.
    pub fn refusal(&self) -> String {
        match &self.on_table {
            Some(t) => format!(
                "myveil: table {t} has trigger {}.{} that reaches protected data through {}; writes to {t} cannot be protected",
                self.database, self.name, self.reads
            ),
            None => format!(
                "myveil: {} {}.{} reaches protected data through {} where myveil cannot see it; use the protected table itself",
                self.kind, self.database, self.name, self.reads
            ),
        }
    }
}

/// The live schema around protected data, by lower-case (database, table).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Tells snapshots apart (0: the empty one); caches of decisions are kept per snapshot.
    pub generation: u64,
    tables: HashMap<(String, String), Vec<ColumnMeta>>,
    views: HashMap<(String, String), String>,
    unique: HashSet<(String, String, String)>,
    pub dependents: Vec<Dependent>,
    /// Generated columns of protected tables computed from a protected column:
    /// (database, table, column, the protected column), lower-case. They hold what the
    /// server computed from ciphertext (a copy of the envelope, its length…).
    pub computed: Vec<(String, String, String, String)>,
    /// Protected columns a migration is sealing (migrate::state).
    pub mixed: Mixed,
    /// A migration's shadow and old columns of protected columns: (database, table, the
    /// column, the protected column), lower-case. They hold the protected column's values
    /// (plaintext, while the migration copies them).
    pub shadows: Vec<(String, String, String, String)>,
    /// Protected columns whose shadow has both of the migration's copy triggers
    /// (database, table, column), lower-case: writes through myveil then go to the shadow.
    pub copying: Vec<(String, String, String)>,
}

/// Protected columns in the mixed state: (database, table, column). A migration is sealing
/// their cells, so a cell that is not an envelope is read as its plaintext; it then goes the
/// way of every opened cell (the role's mask, or a refusal), so the window shows no role
/// more than the policy gives it (ADR 0008).
#[derive(Debug, Clone, Default)]
pub struct Mixed(Vec<(String, String, String)>, Vec<(String, String)>);

/// No column in the mixed state.
pub static NO_MIXED: Mixed = Mixed(Vec::new(), Vec::new());

impl Mixed {
    pub fn new(columns: Vec<(String, String, String)>) -> Self {
        Self(columns, Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a policy column is in the mixed state in some database (a rule for a table
    /// in any database is mixed while any of its tables is): for reads, where being mixed
    /// only lets a plaintext cell through the role's rule.
    pub fn contains(&self, column: &Protected) -> bool {
        !self.0.is_empty()
            && self
                .0
                .iter()
                .any(|(d, t, c)| column.column.eq_ignore_ascii_case(c) && column.is_in(d, t))
    }

    /// Whether a search of the column may send its plaintext to the server: mixed, and
    /// not a rule for any database whose table exists in more than one (a search there
    /// cannot tell which of them it reads, and the others' terms would leave in the clear).
    pub fn searches_plaintext(&self, column: &Protected) -> bool {
        self.contains(column)
            && (column.database.is_some()
                || !self.1.iter().any(|(t, c)| {
                    t.eq_ignore_ascii_case(&column.table) && c.eq_ignore_ascii_case(&column.column)
                }))
    }
}

/// A fresh snapshot generation.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn key(db: &str, t: &str) -> (String, String) {
    (db.to_ascii_lowercase(), t.to_ascii_lowercase())
}

impl Snapshot {
    /// Databases that have a table named `table`.
    pub fn databases_with(&self, table: &str) -> Vec<String> {
        let t = table.to_ascii_lowercase();
        let mut v: Vec<String> = self
            .tables
            .keys()
            .filter(|(_, n)| *n == t)
            .map(|(d, _)| d.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A snapshot from known parts (tests, and tools that read the schema another way).
    pub fn from_parts(
        tables: Vec<((String, String), Vec<ColumnMeta>)>,
        views: Vec<((String, String), String)>,
        unique: Vec<(String, String, String)>,
        dependents: Vec<Dependent>,
    ) -> Self {
        Self {
            generation: next_generation(),
            tables: tables
                .into_iter()
                .map(|((d, t), c)| (key(&d, &t), c))
                .collect(),
            views: views
                .into_iter()
                .map(|((d, t), v)| (key(&d, &t), v))
                .collect(),
            unique: unique
                .into_iter()
                .map(|(d, t, c)| {
                    (
                        d.to_ascii_lowercase(),
                        t.to_ascii_lowercase(),
                        c.to_ascii_lowercase(),
                    )
                })
                .collect(),
            dependents,
            computed: Vec::new(),
            mixed: Mixed::default(),
            shadows: Vec::new(),
            copying: Vec::new(),
        }
    }
}

impl Snapshot {
    /// A digest of how a migration's shadow windows lay the protected tables out (which
    /// shadow and old columns exist, which are being copied): a statement planned under
    /// another layout is planned again before it runs.
    pub fn layout(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        if self.shadows.is_empty() && self.copying.is_empty() {
            return 0;
        }
        let mut shadows = self.shadows.clone();
        shadows.sort();
        let mut copying = self.copying.clone();
        copying.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (shadows, copying).hash(&mut h);
        h.finish()
    }
}

impl Schema for Snapshot {
    fn columns(&self, database: &str, table: &str) -> Option<&[ColumnMeta]> {
        self.tables.get(&key(database, table)).map(Vec::as_slice)
    }

    fn view(&self, database: &str, name: &str) -> Option<&str> {
        self.views.get(&key(database, name)).map(String::as_str)
    }

    fn unique(&self, database: &str, table: &str, column: &str) -> bool {
        let (d, t) = key(database, table);
        self.unique.contains(&(d, t, column.to_ascii_lowercase()))
    }

    fn copying(&self, database: &str, table: &str, column: &str) -> bool {
        let (d, t) = key(database, table);
        self.copying
            .iter()
            .any(|(a, b, c)| *a == d && *b == t && c.eq_ignore_ascii_case(column))
    }
}

const SYSTEM_SCHEMAS: &str = "('mysql', 'sys', 'information_schema', 'performance_schema')";

/// Schemas whose routines are not read: they hold none. Routines of `mysql` and `sys` are
/// read like any other (some build SQL at run time: `sys.execute_prepared_stmt`,
/// `mysql.DropGeometryColumn`).
const NO_ROUTINES: &str = "('information_schema', 'performance_schema')";

/// The identifier names a stored body mentions, read with the lexer under its own sql_mode
/// (and, when that is not known, under every quoting mode), lower-case. None: the body
/// cannot be read (it then counts as reaching protected data).
fn body_names(body: &str, sql_mode: Option<&str>) -> Option<BodyNames> {
    use crate::sql::lex::{Kind, Mode, lex};
    let cs = crate::sql::charset::Charset::named("utf8mb4")?;
    let modes: Vec<(bool, bool)> = match sql_mode {
        Some(m) => {
            let m = crate::backend::state::SqlMode::parse(m);
            use crate::backend::state::ModeFlags;
            vec![(
                m.has(ModeFlags::ANSI_QUOTES),
                m.has(ModeFlags::NO_BACKSLASH_ESCAPES),
            )]
        }
        None => vec![(false, false), (true, false), (false, true), (true, true)],
    };
    let mut names = BodyNames::default();
    for (ansi, nbe) in modes {
        let mode = Mode {
            charset: cs,
            ansi_quotes: ansi,
            no_backslash_escapes: nbe,
            mssql: false,
            server_version: u32::MAX,
            prepare: true,
        };
        let lexed = lex(body.as_bytes(), &mode).ok()?;
        let is_name = |k: Kind| matches!(k, Kind::Word | Kind::Quoted | Kind::SysVar);
        let name = |i: usize| {
            String::from_utf8_lossy(&lexed.tokens[i].name(body.as_bytes(), &mode)).to_lowercase()
        };
        for (i, t) in lexed.tokens.iter().enumerate() {
            if !is_name(t.kind) {
                continue;
            }
            let n = name(i);
            if i >= 2 && lexed.tokens[i - 1].kind == Kind::Dot && is_name(lexed.tokens[i - 2].kind)
            {
                names.qualified.insert((name(i - 2), n.clone()));
            } else {
                names.bare.insert(n.clone());
            }
            names.words.insert(n);
        }
    }
    Some(names)
}

/// The names a view, routine, trigger or generation expression mentions, lower-case.
#[derive(Debug, Default)]
struct BodyNames {
    /// Every word (keywords, columns, objects).
    words: HashSet<String>,
    /// Names written without a qualifier.
    bare: HashSet<String>,
    /// Names written `q.name`, as (q, name).
    qualified: HashSet<(String, String)>,
}

impl BodyNames {
    fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// Whether the body can name the object `database.name` (`None`: that name in every
    /// database) when its unqualified names resolve in `home`. `q.name` with another `q`
    /// is another database's object (or a column of a table `name`); an unqualified name
    /// is `home`'s.
    fn names(&self, database: Option<&str>, name: &str, home: &str) -> bool {
        match database {
            None => self.words.contains(name),
            Some(db) => {
                (db == home && self.bare.contains(name))
                    || self.qualified.contains(&(db.to_owned(), name.to_owned()))
            }
        }
    }
}

/// A row of information_schema.COLUMNS: schema, table, column, type, length, default,
/// generation expression, extra.
type ColumnRow = (
    String,
    String,
    String,
    String,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type Body = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Finds views, routines and triggers that reach protected data: bodies that name a
/// protected table (or another such object), routines that build SQL at run time or set
/// session tracking, and triggers on a protected table whose body names its protected
/// columns. Repeated until nothing new is found.
async fn load_dependents(
    conn: &mut mysql_async::Conn,
    policy: &Policy,
    views: &[((String, String), String)],
    computed: &HashSet<String>,
) -> Result<(Vec<Dependent>, Vec<(String, String, String)>), mysql_async::Error> {
    let routines: Vec<(String, String, String, Option<String>, String)> = conn
        .query(format!(
            "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION, SQL_MODE FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA NOT IN {NO_ROUTINES}"
        ))
        .await?;
    let triggers: Vec<(String, String, String, Option<String>, String)> = conn
        .query(format!(
            "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT, SQL_MODE FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
        ))
        .await?;
    // A definition the control account may not read (NULL) counts as reaching protected
    // data: fail closed.
    let mut bodies: Vec<Body> = Vec::new();
    for ((db, name), def) in views {
        bodies.push((
            "view".into(),
            db.clone(),
            name.clone(),
            None,
            Some(def.clone()),
            None,
        ));
    }
    for (db, name, kind, def, mode) in routines {
        bodies.push((kind.to_ascii_lowercase(), db, name, None, def, Some(mode)));
    }
    let mut copy_triggers: HashMap<(String, String, String), usize> = HashMap::new();
    for (db, name, table, def, mode) in triggers {
        // A migration's copy trigger moves a protected column into its shadow, which is
        // read as that column (and written by the migration alone); its forward trigger
        // moves a late write of the shadow's name into the column swapped in.
        let copy = def.as_deref().and_then(|body| {
            policy.columns().iter().find_map(|c| {
                if !c.is_in(&db, &table) {
                    None
                } else if crate::migrate::apply::is_copy_trigger(&table, &c.column, &name, body) {
                    Some(Some(c))
                } else if crate::migrate::apply::is_forward_trigger(&table, &c.column, &name, body)
                {
                    Some(None)
                } else {
                    None
                }
            })
        });
        if let Some(copy) = copy {
            if let Some(c) = copy {
                *copy_triggers
                    .entry((
                        db.to_ascii_lowercase(),
                        table.to_ascii_lowercase(),
                        c.column.to_ascii_lowercase(),
                    ))
                    .or_default() += 1;
            }
            continue;
        }
        bodies.push(("trigger".into(), db, name, Some(table), def, Some(mode)));
    }
    // What a body can reach protected data through, as (database, name), lower-case: the
    // policy's tables (`None`: a rule for every database), then each object found.
    // Unqualified names in a body are its own database's, so a view over another
    // database's table of the same name is not taken for one over protected data.
    let mut reached: HashSet<(Option<String>, String)> = policy
        .columns()
        .iter()
        .map(|c| {
            (
                c.database.as_deref().map(str::to_ascii_lowercase),
                c.table.to_ascii_lowercase(),
            )
        })
        .collect();
    let mut routines_reached: HashSet<(String, String)> = HashSet::new();
    let mut found: Vec<Dependent> = Vec::new();
    loop {
        let before = found.len();
        for (kind, db, name, on_table, body, mode) in &bodies {
            if found
                .iter()
                .any(|d| &d.kind == kind && &d.database == db && &d.name == name)
            {
                continue;
            }
            let mut reads_refused = false;
            let reads = match body {
                None => Some("(its definition is not visible to the control account)".to_owned()),
                Some(b) => match body_names(b, mode.as_deref()) {
                    None => Some("(its definition cannot be read)".to_owned()),
                    Some(names) => {
                        let home = db.to_ascii_lowercase();
                        let table_hit = reached
                            .iter()
                            .find(|(d, n)| names.names(d.as_deref(), n, &home))
                            .map(|(d, n)| match d {
                                Some(d) => format!("{d}.{n}"),
                                None => n.clone(),
                            });
                        let computed_hit = (kind == "view")
                            .then(|| names.words.iter().find(|n| computed.contains(*n)).cloned())
                            .flatten();
                        reads_refused = computed_hit.is_some()
                            || routines_reached
                                .iter()
                                .any(|(d, n)| names.names(Some(d), n, &home));
                        let dynamic = (kind == "procedure" || kind == "function")
                            && names.words.iter().any(|n| {
                                n == "prepare" || n == "execute" || n.starts_with("session_track_")
                            });
                        let column_hit = on_table.as_deref().and_then(|t| {
                            policy
                                .columns()
                                .iter()
                                .filter(|c| c.is_in(db, t))
                                .find(|c| names.contains(&c.column.to_ascii_lowercase()))
                                .map(|c| c.scope())
                        });
                        computed_hit
                            .map(|c| format!("the generated column {c}"))
                            .or(table_hit)
                            .or(column_hit)
                            .or(dynamic.then(|| "SQL built at run time".to_owned()))
                    }
                },
            };
            let Some(reads) = reads else { continue };
            found.push(Dependent {
                kind: kind.clone(),
                database: db.clone(),
                name: name.clone(),
                reads,
                on_table: on_table.clone(),
                reads_refused,
            });
        }
        if found.len() == before {
            break;
        }
        for d in &found[before..] {
            let db = d.database.to_ascii_lowercase();
            if d.kind == "procedure" || d.kind == "function" {
                routines_reached.insert((db.clone(), d.name.to_ascii_lowercase()));
            }
            // Views and routines can be named by other bodies; a trigger is reached through
            // the table it fires on (a view writing into that table reaches it too).
            reached.insert((
                Some(db),
                d.on_table
                    .as_deref()
                    .unwrap_or(&d.name)
                    .to_ascii_lowercase(),
            ));
        }
    }
    let copying = copy_triggers
        .into_iter()
        .filter(|(_, n)| *n == 2)
        .map(|(k, _)| k)
        .collect();
    Ok((found, copying))
}

/// Reads the schema around the policy's tables.
pub async fn load(
    conn: &mut mysql_async::Conn,
    policy: &Policy,
) -> Result<Snapshot, mysql_async::Error> {
    let mut names: Vec<String> = policy.columns().iter().map(|c| c.table.clone()).collect();
    names.sort();
    names.dedup();
    let mut snapshot = Snapshot {
        generation: next_generation(),
        ..Snapshot::default()
    };
    if names.is_empty() {
        return Ok(snapshot);
    }
    // Databases that hold a protected table, or that a rule names.
    let marks = vec!["?"; names.len()].join(", ");
    let found: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT DISTINCT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_NAME IN ({marks}) AND TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
            ),
            names.clone(),
        )
        .await?;
    let mut databases: HashSet<String> = policy
        .columns()
        .iter()
        .filter_map(|c| c.database.clone())
        .collect();
    for (db, t) in &found {
        if policy.columns().iter().any(|c| c.is_in(db, t)) {
            databases.insert(db.clone());
        }
    }
    let databases: Vec<String> = databases.into_iter().collect();
    if !databases.is_empty() {
        let marks = vec!["?"; databases.len()].join(", ");
        let rows: Vec<ColumnRow> = conn
            .exec(
                format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, COLUMN_DEFAULT, GENERATION_EXPRESSION, EXTRA \
                     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({marks}) \
                     ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
                ),
                databases.clone(),
            )
            .await?;
        for (db, table, name, data_type, max_length, default, generated, extra) in rows {
            // A generated column over a protected one: what it holds is the server's work on
            // ciphertext, which no role may read as if it were plain. An expression that
            // cannot be read counts as reaching every protected column of the table.
            if let Some(expr) = generated.as_deref().filter(|e| !e.is_empty()) {
                let names = body_names(expr, None);
                if let Some(from) = policy
                    .columns()
                    .iter()
                    .filter(|c| c.is_in(&db, &table))
                    .find(|c| {
                        names
                            .as_ref()
                            .is_none_or(|n| n.contains(&c.column.to_ascii_lowercase()))
                    })
                {
                    snapshot.computed.push((
                        db.to_ascii_lowercase(),
                        table.to_ascii_lowercase(),
                        name.to_ascii_lowercase(),
                        from.column.to_ascii_lowercase(),
                    ));
                }
            }
            if let Some(of) = crate::policy::shadowed(&name)
                && policy
                    .columns()
                    .iter()
                    .any(|c| c.is_in(&db, &table) && c.column.eq_ignore_ascii_case(of))
            {
                snapshot.shadows.push((
                    db.to_ascii_lowercase(),
                    table.to_ascii_lowercase(),
                    name.to_ascii_lowercase(),
                    of.to_ascii_lowercase(),
                ));
            }
            snapshot
                .tables
                .entry(key(&db, &table))
                .or_default()
                .push(ColumnMeta {
                    name,
                    null_default: null_default(default.as_deref()),
                    data_type: data_type.to_ascii_lowercase(),
                    max_length,
                    invisible: extra.as_deref().is_some_and(|e| {
                        e.split_whitespace()
                            .any(|w| w.eq_ignore_ascii_case("invisible"))
                    }),
                });
        }
        let unique: Vec<(String, String, String)> = conn
            .exec(
                format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                     WHERE NON_UNIQUE = 0 AND TABLE_SCHEMA IN ({marks})"
                ),
                databases,
            )
            .await?;
        snapshot.unique = unique
            .into_iter()
            .map(|(d, t, c)| {
                (
                    d.to_ascii_lowercase(),
                    t.to_ascii_lowercase(),
                    c.to_ascii_lowercase(),
                )
            })
            .collect();
    }
    let views: Vec<(String, String, Option<String>)> = conn
        .query(format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
             WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}"
        ))
        .await?;
    let views: Vec<((String, String), String)> = views
        .into_iter()
        .map(|(d, n, def)| ((d, n), def.unwrap_or_default()))
        .collect();
    let computed: HashSet<String> = snapshot
        .computed
        .iter()
        .map(|(_, _, c, _)| c.clone())
        .collect();
    (snapshot.dependents, snapshot.copying) =
        load_dependents(conn, policy, &views, &computed).await?;
    // Security: a state row counts only for a table the snapshot has (a row left by a
    // dropped database makes no other database's table mixed).
    let rows: Vec<(String, String, String)> = crate::migrate::state::mixed(conn)
        .await?
        .into_iter()
        .filter(|(d, t, _)| snapshot.tables.contains_key(&key(d, t)))
        .collect();
    let ambiguous: Vec<(String, String)> = rows
        .iter()
        .filter(|(_, t, _)| snapshot.databases_with(t).len() > 1)
        .map(|(_, t, c)| (t.clone(), c.clone()))
        .collect();
    snapshot.mixed = Mixed(rows, ambiguous);
    for ((d, n), def) in views {
        snapshot.views.insert(key(&d, &n), def);
    }
    Ok(snapshot)
}

/// Whether information_schema's COLUMN_DEFAULT is no default or NULL (MariaDB shows an
/// explicit NULL default as the text NULL).
pub fn null_default(default: Option<&str>) -> bool {
    default.is_none_or(|d| d.eq_ignore_ascii_case("null"))
}

/// Column types that hold envelopes as bytes, and as base64 text.
pub const BINARY_TYPES: [&str; 6] = [
    "varbinary",
    "binary",
    "blob",
    "mediumblob",
    "longblob",
    "tinyblob",
];
pub const TEXT_TYPES: [&str; 6] = [
    "varchar",
    "char",
    "text",
    "mediumtext",
    "longtext",
    "tinytext",
];

/// What a protected column must hold for its largest value: bytes (binary storage) or
/// characters of base64 (base64 storage).
pub fn stored_size(col: &Protected) -> u64 {
    let envelope = plaintext_bytes(col.plain_type) + OVERHEAD as u64;
    match col.storage {
        Storage::Binary => envelope,
        Storage::Base64 => envelope.div_ceil(3) * 4,
    }
}

/// Bytes the largest plaintext of a type can take (utf8mb4 text: 4 bytes a character).
pub fn plaintext_bytes(t: PlainType) -> u64 {
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
        let places: Vec<(&(String, String), &Vec<ColumnMeta>)> = snapshot
            .tables
            .iter()
            .filter(|((db, t), _)| col.is_in(db, t))
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
            let need = stored_size(col);
            let types: &[&str] = match col.storage {
                Storage::Binary => &BINARY_TYPES,
                Storage::Base64 => &TEXT_TYPES,
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
            if !info.null_default {
                problems.push(format!(
                    "{at}: has a default that is not NULL; a row that leaves the column out would store it as plaintext"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_with_the_lexer() {
        let n = body_names(
            "BEGIN SELECT ssn FROM `Users`; /* orders */ SET @x = 'people'; END",
            Some(""),
        )
        .expect("lexes");
        assert!(n.contains("users") && n.contains("ssn"));
        assert!(!n.contains("orders") && !n.contains("people"));
        let ansi =
            body_names("BEGIN SELECT \"secret\" FROM t; END", Some("ANSI_QUOTES")).expect("lexes");
        assert!(
            ansi.contains("secret"),
            "a quoted identifier under ANSI_QUOTES"
        );
        let unknown = body_names("BEGIN SELECT \"secret\" FROM t; END", None).expect("lexes");
        assert!(
            unknown.contains("secret"),
            "every quoting mode when it is not known"
        );
        assert!(body_names("BEGIN SELECT 'unterminated; END", Some("")).is_none());
    }

    #[test]
    fn body_names_resolve_in_the_bodys_database() {
        let n = body_names(
            "select `shop`.`users`.`ssn` AS `ssn` from `shop`.`users` join orders o",
            Some(""),
        )
        .expect("lexes");
        assert!(n.names(Some("shop"), "users", "test"), "qualified");
        assert!(
            !n.names(Some("test"), "users", "test"),
            "another database's users"
        );
        assert!(
            n.names(Some("test"), "orders", "test"),
            "unqualified: the body's database"
        );
        assert!(!n.names(Some("shop"), "orders", "test"));
        assert!(n.names(None, "orders", "test") && n.names(None, "users", "x"));
    }
}
