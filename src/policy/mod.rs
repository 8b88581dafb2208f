//! policy: which columns are protected, how they are stored, and what each role sees.
//!
//! Policies are TOML files in `policy/`. Each `[[column]]` names a table and column, the
//! plaintext type, the storage (binary envelope, or base64 for text columns), an optional
//! blind-index sibling column, an optional row key, and per role one of `"plaintext"`,
//! `"ciphertext"`, `"deny"` or a mask. Roles not listed get deny. `decide` is pure.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::crypto::blind::Normalize;
use crate::crypto::mask::{Kind, Mask};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read policy {path}: {message}")]
    Read { path: String, message: String },
    #[error("policy {path}: {message}")]
    Parse { path: String, message: String },
    #[error("policy: {table}.{column}: {message}")]
    Invalid {
        table: String,
        column: String,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The plaintext type of a protected column: what clients see in column metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainType {
    Char(u32),
    Varchar(u32),
    Text,
    Int,
    BigInt,
    Decimal(u8, u8),
    Date,
    DateTime,
    Varbinary(u32),
    Blob,
}

impl PlainType {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let (name, args) = match s.split_once('(') {
            Some((n, rest)) => (n.trim(), Some(rest.strip_suffix(')')?)),
            None => (s.as_str(), None),
        };
        let nums: Vec<u32> = match args {
            Some(a) => a
                .split(',')
                .map(|x| x.trim().parse().ok())
                .collect::<Option<_>>()?,
            None => Vec::new(),
        };
        let one = |max: u32| match nums.as_slice() {
            [n] if (1..=max).contains(n) => Some(*n),
            _ => None,
        };
        Some(match name {
            "char" => PlainType::Char(one(255)?),
            "varchar" => PlainType::Varchar(one(65_535)?),
            "text" if nums.is_empty() => PlainType::Text,
            "int" | "integer" if nums.is_empty() => PlainType::Int,
            "bigint" if nums.is_empty() => PlainType::BigInt,
            "decimal" => match nums.as_slice() {
                [p, s] if (1..=65).contains(p) && s <= p && *s <= 30 => {
                    PlainType::Decimal(*p as u8, *s as u8)
                }
                _ => return None,
            },
            "date" if nums.is_empty() => PlainType::Date,
            "datetime" if nums.is_empty() => PlainType::DateTime,
            "varbinary" => PlainType::Varbinary(one(65_535)?),
            "blob" if nums.is_empty() => PlainType::Blob,
            _ => return None,
        })
    }

    /// The canonical name, bound into each envelope's AAD.
    pub fn name(self) -> String {
        match self {
            PlainType::Char(n) => format!("char({n})"),
            PlainType::Varchar(n) => format!("varchar({n})"),
            PlainType::Text => "text".into(),
            PlainType::Int => "int".into(),
            PlainType::BigInt => "bigint".into(),
            PlainType::Decimal(p, s) => format!("decimal({p},{s})"),
            PlainType::Date => "date".into(),
            PlainType::DateTime => "datetime".into(),
            PlainType::Varbinary(n) => format!("varbinary({n})"),
            PlainType::Blob => "blob".into(),
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            PlainType::Char(_) | PlainType::Varchar(_) | PlainType::Text => Kind::Text,
            PlainType::Int | PlainType::BigInt => Kind::Integer,
            PlainType::Decimal(..) => Kind::Decimal,
            PlainType::Date => Kind::Date,
            PlainType::DateTime => Kind::DateTime,
            PlainType::Varbinary(_) | PlainType::Blob => Kind::Bytes,
        }
    }

    /// Characters a value may have (0: unbounded), for masks.
    pub fn max_chars(self) -> usize {
        match self {
            PlainType::Char(n) | PlainType::Varchar(n) | PlainType::Varbinary(n) => n as usize,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    /// The envelope as bytes, in VARBINARY/BLOB.
    #[default]
    Binary,
    /// The envelope base64-encoded, for text columns.
    Base64,
}

/// What a role gets for a protected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Plaintext,
    Mask(Mask),
    Ciphertext,
    Deny,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AccessSpec {
    Word(AccessWord),
    Mask(Mask),
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AccessWord {
    Plaintext,
    Ciphertext,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    database: Option<String>,
    table: String,
    column: String,
    #[serde(rename = "type")]
    plain_type: String,
    #[serde(default)]
    storage: Storage,
    blind_index: Option<String>,
    #[serde(default)]
    normalize: Normalize,
    row_key: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, AccessSpec>,
    /// Roles that may write the column without reading its plaintext.
    #[serde(default)]
    write: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default, rename = "column")]
    columns: Vec<ColumnSpec>,
}

/// One protected column.
#[derive(Debug, Clone)]
pub struct Protected {
    /// Database the rule is limited to; None matches the table in any database.
    pub database: Option<String>,
    pub table: String,
    pub column: String,
    pub plain_type: PlainType,
    pub storage: Storage,
    pub blind_index: Option<String>,
    pub normalize: Normalize,
    pub row_key: Option<String>,
    roles: BTreeMap<String, Access>,
    /// Roles granted `write` without plaintext access.
    writers: Vec<String>,
    /// `table.column` and the plaintext type's name, made once (every cell's key lookup and
    /// AAD use them).
    key_scope: String,
    type_name: String,
}

impl Protected {
    /// `table.column`, the key scope and the name used in errors and logs.
    pub fn scope(&self) -> String {
        self.key_scope.clone()
    }

    /// `table.column`, borrowed.
    pub fn key_scope(&self) -> &str {
        &self.key_scope
    }

    /// The plaintext type's name as envelopes bind it (`PlainType::name`).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The roles the policy names for this column and what each gets.
    pub fn roles(&self) -> impl Iterator<Item = (&str, &Access)> {
        self.roles.iter().map(|(r, a)| (r.as_str(), a))
    }

    /// What `role` gets; roles the policy does not name get deny.
    pub fn decide(&self, role: &str) -> Access {
        self.roles.get(role).cloned().unwrap_or(Access::Deny)
    }

    /// Whether `role` may write the column: roles that read plaintext, and roles the policy
    /// grants `write`.
    pub fn may_write(&self, role: &str) -> bool {
        matches!(self.roles.get(role), Some(Access::Plaintext))
            || self.writers.iter().any(|w| w == role)
    }

    /// Whether `role` may filter on the column (through its blind index): only roles that
    /// read plaintext, so a search never answers a question the role could not read.
    pub fn may_search(&self, role: &str) -> bool {
        matches!(self.roles.get(role), Some(Access::Plaintext))
    }

    /// Whether the column belongs to `database.table` (names compared without regard to
    /// ASCII case, which errs toward protecting).
    pub fn is_in(&self, database: &str, table: &str) -> bool {
        self.table.eq_ignore_ascii_case(table)
            && self
                .database
                .as_deref()
                .is_none_or(|d| d.eq_ignore_ascii_case(database))
    }
}

/// All protected columns.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    columns: Vec<Protected>,
}

impl Policy {
    /// Loads every `*.toml` in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let read_err = |message: String| Error::Read {
            path: dir.display().to_string(),
            message,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read_err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut policy = Policy::default();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(e.to_string()))?;
            policy.add_toml(&text, &path.display().to_string())?;
        }
        Ok(policy)
    }

    /// Adds the columns of one policy file, validating each.
    pub fn add_toml(&mut self, text: &str, path: &str) -> Result<()> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for spec in file.columns {
            let invalid = |message: String| Error::Invalid {
                table: spec.table.clone(),
                column: spec.column.clone(),
                message,
            };
            let plain_type = PlainType::parse(&spec.plain_type)
                .ok_or_else(|| invalid(format!("unknown type {:?}", spec.plain_type)))?;
            let mut roles = BTreeMap::new();
            for (role, access) in spec.roles {
                let access = match access {
                    AccessSpec::Word(AccessWord::Plaintext) => Access::Plaintext,
                    AccessSpec::Word(AccessWord::Ciphertext) => Access::Ciphertext,
                    AccessSpec::Word(AccessWord::Deny) => Access::Deny,
                    AccessSpec::Mask(m) => {
                        if !m.fits(plain_type.kind()) {
                            return Err(invalid(format!(
                                "mask {m:?} for role {role} does not fit type {}",
                                plain_type.name()
                            )));
                        }
                        Access::Mask(m)
                    }
                };
                roles.insert(role, access);
            }
            if spec
                .row_key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(&spec.column))
            {
                return Err(invalid("the row key must be another column".into()));
            }
            if spec
                .blind_index
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(&spec.column))
            {
                return Err(invalid("the blind index must be another column".into()));
            }
            let column = Protected {
                database: spec.database,
                key_scope: format!("{}.{}", spec.table, spec.column),
                type_name: plain_type.name(),
                table: spec.table,
                column: spec.column,
                plain_type,
                storage: spec.storage,
                blind_index: spec.blind_index,
                normalize: spec.normalize,
                row_key: spec.row_key,
                roles,
                writers: spec.write,
            };
            if self.columns.iter().any(|c| same_column(c, &column)) {
                return Err(Error::Invalid {
                    table: column.table,
                    column: column.column,
                    message: "declared twice".into(),
                });
            }
            self.columns.push(column);
        }
        Ok(())
    }

    /// The keys `myveil keygen` creates for this policy: fallback keys for every purpose and
    /// a column key (and blind-index key) per protected column.
    pub fn required_keys(&self) -> Vec<(crate::crypto::keyring::Purpose, String)> {
        use crate::crypto::keyring::Purpose;
        let mut keys: Vec<(Purpose, String)> = [
            Purpose::Column,
            Purpose::BlindIndex,
            Purpose::Mask,
            Purpose::Jwt,
        ]
        .into_iter()
        .map(|p| (p, "*".to_owned()))
        .collect();
        for c in &self.columns {
            keys.push((Purpose::Column, c.scope()));
            if c.blind_index.is_some() {
                keys.push((Purpose::BlindIndex, c.scope()));
            }
        }
        keys
    }

    pub fn columns(&self) -> &[Protected] {
        &self.columns
    }

    /// The protected column at `database.table.column`, if any. Table names compare exactly
    /// (as MySQL on Linux does), column names without regard to ASCII case.
    pub fn find(&self, database: &str, table: &str, column: &str) -> Option<&Protected> {
        self.columns.iter().find(|c| {
            c.table == table
                && c.column.eq_ignore_ascii_case(column)
                && c.database.as_deref().is_none_or(|d| d == database)
        })
    }

    /// The protected column at `database.table.column`, names compared without regard to
    /// ASCII case (errs toward protecting).
    pub fn find_any_case(&self, database: &str, table: &str, column: &str) -> Option<&Protected> {
        self.columns
            .iter()
            .find(|c| c.is_in(database, table) && c.column.eq_ignore_ascii_case(column))
    }

    /// `find_any_case`, also for a migration's shadow or old column of a protected column
    /// (which holds its values).
    pub fn find_shadowed(&self, database: &str, table: &str, column: &str) -> Option<&Protected> {
        self.find_any_case(database, table, column)
            .or_else(|| shadowed(column).and_then(|c| self.find_any_case(database, table, c)))
    }

    /// Whether any column of `database.table` is protected.
    pub fn protects_table(&self, database: &str, table: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.table == table && c.database.as_deref().is_none_or(|d| d == database))
    }

    /// Whether `database.table.column` is the blind index of a protected column.
    pub fn is_blind_index(&self, database: &str, table: &str, column: &str) -> bool {
        self.columns.iter().any(|c| {
            c.table == table
                && c.database.as_deref().is_none_or(|d| d == database)
                && c.blind_index
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(column))
        })
    }
}

/// The column a migration's shadow or old column stands for (`ssn__myveil`,
/// `ssn__myveil_old`: `ssn`).
pub fn shadowed(name: &str) -> Option<&str> {
    let lower = name.len();
    for suffix in [OLD_SUFFIX, SHADOW_SUFFIX] {
        if lower > suffix.len()
            && name.is_char_boundary(lower - suffix.len())
            && name[lower - suffix.len()..].eq_ignore_ascii_case(suffix)
        {
            return Some(&name[..lower - suffix.len()]);
        }
    }
    None
}

/// Suffix of the shadow column a retyped column is filled into, and of the old column once
/// it is swapped out (migrate::plan).
pub const SHADOW_SUFFIX: &str = "__myveil";
pub const OLD_SUFFIX: &str = "__myveil_old";

fn same_column(a: &Protected, b: &Protected) -> bool {
    a.table == b.table
        && a.column.eq_ignore_ascii_case(&b.column)
        && (a.database.is_none() || b.database.is_none() || a.database == b.database)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        [[column]]
        table = "users"
        column = "email"
        type = "varchar(255)"
        blind_index = "email_bidx"
        normalize = "trim-lowercase"
        roles = { app = "plaintext", support = { mask = "email" }, analyst = { mask = "hash" }, auditor = "ciphertext" }

        [[column]]
        database = "shop"
        table = "users"
        column = "ssn"
        type = "char(11)"
        storage = "base64"
        roles = { app = "plaintext", support = { mask = "last-four" }, analyst = "deny" }

        [[column]]
        table = "users"
        column = "born"
        type = "date"
        roles = { app = "plaintext", support = { mask = "year" } }
    "#;

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.add_toml(POLICY, "test.toml").expect("valid policy");
        p
    }

    #[test]
    fn decisions_by_role_and_column() {
        let p = policy();
        let roles = ["app", "support", "analyst", "auditor", "nobody"];
        let expected: &[(&str, [Access; 5])] = &[
            (
                "email",
                [
                    Access::Plaintext,
                    Access::Mask(Mask::Email),
                    Access::Mask(Mask::Hash),
                    Access::Ciphertext,
                    Access::Deny,
                ],
            ),
            (
                "ssn",
                [
                    Access::Plaintext,
                    Access::Mask(Mask::LastFour),
                    Access::Deny,
                    Access::Deny,
                    Access::Deny,
                ],
            ),
            (
                "born",
                [
                    Access::Plaintext,
                    Access::Mask(Mask::Year),
                    Access::Deny,
                    Access::Deny,
                    Access::Deny,
                ],
            ),
        ];
        for (column, decisions) in expected {
            let col = p.find("shop", "users", column).expect("protected");
            for (role, want) in roles.iter().zip(decisions) {
                assert_eq!(&col.decide(role), want, "{role} × {column}");
            }
        }
    }

    #[test]
    fn matching_rules() {
        let p = policy();
        assert!(
            p.find("shop", "users", "EMAIL").is_some(),
            "column names ignore case"
        );
        assert!(
            p.find("shop", "Users", "email").is_none(),
            "table names do not"
        );
        assert!(
            p.find("other", "users", "ssn").is_none(),
            "ssn is limited to shop"
        );
        assert!(
            p.find("other", "users", "email").is_some(),
            "email applies everywhere"
        );
        assert!(p.protects_table("x", "users") && !p.protects_table("x", "orders"));
        assert!(p.is_blind_index("shop", "users", "email_bidx"));
        let email = p.find("shop", "users", "email").expect("email");
        assert_eq!(
            (email.plain_type.name(), email.scope()),
            ("varchar(255)".to_owned(), "users.email".to_owned())
        );
    }

    #[test]
    fn invalid_policies_are_refused() {
        for (bad, why) in [
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "varchar"
            "#,
                "varchar needs a length",
            ),
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "date"
                roles = { r = { mask = "email" } }
            "#,
                "email mask on a date",
            ),
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "int"
                roles = { r = "reveal" }
            "#,
                "unknown access",
            ),
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "int"
                colour = "blue"
            "#,
                "unknown field",
            ),
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "int"
                blind_index = "C"
            "#,
                "blind index is the column itself",
            ),
            (
                r#"[[column]]
                table = "t"
                column = "c"
                type = "int"
                row_key = "C"
            "#,
                "row key is the column itself",
            ),
        ] {
            assert!(
                Policy::default().add_toml(bad, "bad.toml").is_err(),
                "{why}"
            );
        }
        let mut twice = policy();
        assert!(
            twice.add_toml(POLICY, "again.toml").is_err(),
            "declared twice"
        );
    }

    #[test]
    fn plain_types_parse_and_print() {
        for s in [
            "char(11)",
            "varchar(255)",
            "text",
            "int",
            "bigint",
            "decimal(10,2)",
            "date",
            "datetime",
            "varbinary(16)",
            "blob",
        ] {
            assert_eq!(PlainType::parse(s).map(PlainType::name).as_deref(), Some(s));
        }
        for s in ["varchar(0)", "decimal(2,3)", "int(5", "float", "char(300)"] {
            assert_eq!(PlainType::parse(s), None, "{s}");
        }
    }
}
