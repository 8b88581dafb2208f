//! guard::reach: which names can lead a statement to protected data — protected databases,
//! tables protected in every database, and views, routines and triggers that reach them.
//! Built from the policy and the schema snapshot, and rebuilt when either changes.

use std::collections::{HashMap, HashSet};

/// Names looked up once per identifier of every statement: a fast hash. Security: the sets
/// are built from the policy and the schema, not from what clients send; a client only
/// looks names up, which colliding hashes cannot slow down past a probe of the set's own
/// (admin-chosen) names.
pub type Names = HashSet<String, foldhash::fast::RandomState>;

use crate::backend::schema::Snapshot;
use crate::policy::Policy;

/// The names a statement must mention to reach protected data.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The policy version these names were built from (`Protection::version`).
    pub version: String,
    /// Databases that hold a protected table (or that a rule names), lower-case.
    pub databases: Names,
    /// Protected table names by database (lower-case).
    pub tables: HashMap<String, Names, foldhash::fast::RandomState>,
    /// Tables protected in any database (rules without a database), lower-case.
    pub anywhere: Names,
    /// Views, routines and trigger tables that reach protected data, as (database, name),
    /// lower-case.
    pub dependents: HashSet<(String, String), foldhash::fast::RandomState>,
    /// Their names alone: most statements name none of them, which one pass decides.
    pub dependent_names: Names,
    /// Generated columns computed from a protected column (lower-case): statements that
    /// name one are refused.
    pub computed: Names,
    /// Some of these names are not ASCII (then a name in a character set myveil cannot
    /// read might be one of them).
    pub non_ascii: bool,
}

impl Reach {
    pub fn new(policy: &Policy, version: &str, snapshot: &Snapshot) -> Self {
        let mut r = Reach {
            version: version.to_owned(),
            ..Reach::default()
        };
        for c in policy.columns() {
            let table = c.table.to_ascii_lowercase();
            match &c.database {
                Some(db) => {
                    let db = db.to_ascii_lowercase();
                    r.tables.entry(db.clone()).or_default().insert(table);
                    r.databases.insert(db);
                }
                None => {
                    r.anywhere.insert(table.clone());
                    for db in snapshot.databases_with(&c.table) {
                        let db = db.to_ascii_lowercase();
                        r.tables
                            .entry(db.clone())
                            .or_default()
                            .insert(table.clone());
                        r.databases.insert(db);
                    }
                }
            }
        }
        for d in &snapshot.dependents {
            let name = d
                .on_table
                .as_deref()
                .unwrap_or(&d.name)
                .to_ascii_lowercase();
            r.dependent_names.insert(name.clone());
            r.dependents.insert((d.database.to_ascii_lowercase(), name));
        }
        // Statements that name myveil's own schema, or a migration's shadow column, are
        // looked at closely (guard::reserved).
        r.anywhere.insert(crate::migrate::state::SCHEMA.to_owned());
        for (_, _, shadow, _) in &snapshot.shadows {
            r.anywhere.insert(shadow.clone());
        }
        r.computed = snapshot
            .computed
            .iter()
            .map(|(_, _, c, _)| c.clone())
            .collect();
        r.non_ascii = r
            .databases
            .iter()
            .chain(&r.anywhere)
            .chain(&r.dependent_names)
            .chain(r.tables.values().flatten())
            .any(|n| !n.is_ascii());
        r
    }

    /// Whether a name (an identifier of the statement, lower-case) can lead to protected
    /// data when the session's database is `database`. Dependents are matched with their
    /// database by the guard (`Stmt::names_object`), after `dependent_names` says one may
    /// be named.
    ///
    /// `current` is the current database's protected tables ([`Reach::tables_of`]), looked
    /// up once per statement rather than once per name.
    pub fn names(&self, name: &str, current: Option<&Names>) -> bool {
        self.databases.contains(name)
            || self.anywhere.contains(name)
            || current.is_some_and(|t| t.contains(name))
    }

    /// The protected tables of `database` (as the session names it: any case).
    pub fn tables_of(&self, database: Option<&str>) -> Option<&Names> {
        let db = database?;
        if db.bytes().any(|b| b.is_ascii_uppercase()) {
            self.tables.get(&db.to_ascii_lowercase())
        } else {
            self.tables.get(db)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.databases.is_empty() && self.anywhere.is_empty()
    }
}
