//! guard::statement: one statement's tokens — what kind of statement it is (from its
//! leading words), the names it mentions, and the session state a SET or USE gives it.

use crate::backend::state::{ModeFlags, SqlMode};
use crate::sql::lex::{Kind, Mode, Token};
use crate::sql::view::Unit;

/// What a statement is, by its leading words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// SELECT, WITH, VALUES, TABLE or a parenthesized query.
    Query,
    /// INSERT or REPLACE.
    Insert,
    Update,
    Delete,
    /// EXPLAIN / DESCRIBE / ANALYZE of the statement starting at this token.
    Explain(usize),
    /// Metadata only: SHOW, DESCRIBE a table, HELP.
    Metadata,
    Set,
    Use,
    Prepare,
    Execute,
    ExecuteImmediate,
    Deallocate,
    Call,
    Do,
    AlterTable,
    CreateTable,
    /// CREATE VIEW, TRIGGER, PROCEDURE, FUNCTION, EVENT, PACKAGE.
    CreateObject,
    RenameTable,
    /// DROP, TRUNCATE, CREATE/DROP INDEX and DATABASE, table maintenance, LOCK/UNLOCK,
    /// transactions, accounts, KILL, FLUSH: nothing that moves column values.
    NoData,
    /// LOAD DATA, LOAD XML, HANDLER: reads or writes rows around the analysis.
    Bulk,
    /// A compound statement (BEGIN NOT ATOMIC, IF, CASE, loops).
    Compound,
    Empty,
    Other,
}

/// A statement's tokens and how to read them.
#[derive(Clone, Copy)]
pub struct Stmt<'a> {
    pub src: &'a [u8],
    pub tokens: &'a [Token],
    pub unit: Unit,
    pub mode: Mode<'a>,
}

impl<'a> Stmt<'a> {
    pub fn len(&self) -> usize {
        self.unit.last - self.unit.first
    }

    pub fn token(&self, i: usize) -> Option<&'a Token> {
        (i < self.len()).then(|| &self.tokens[self.unit.first + i])
    }

    pub fn word(&self, i: usize, w: &str) -> bool {
        self.token(i).is_some_and(|t| t.is_word(self.src, w))
    }

    pub fn op(&self, i: usize, op: &str) -> bool {
        self.token(i).is_some_and(|t| t.is_op(self.src, op))
    }

    /// The name an identifier token stands for, lower-case UTF-8 (None: not a name, or not
    /// readable in the client's character set).
    pub fn name(&self, i: usize) -> Option<String> {
        let t = self.token(i)?;
        if !matches!(t.kind, Kind::Word | Kind::Quoted) {
            return None;
        }
        let raw = t.name(self.src, &self.mode);
        if raw.is_ascii() {
            // Every client character set reads ASCII as ASCII.
            return Some(String::from_utf8_lossy(&raw).to_ascii_lowercase());
        }
        match self.mode.charset.to_utf8(&raw) {
            Some(text) => Some(text.to_lowercase()),
            // Not readable here: kept as a name no ASCII name equals.
            None => Some(String::from_utf8_lossy(&raw).to_lowercase()),
        }
    }

    /// Index of the first token after a leading `(` run (a parenthesized query).
    fn lead(&self) -> usize {
        let mut i = 0;
        while self.op(i, "(") {
            i += 1;
        }
        i
    }

    pub fn kind(&self) -> StatementKind {
        use StatementKind as K;
        if self.len() == 0 {
            return K::Empty;
        }
        if self.unit.compound {
            return if self.word(0, "create") {
                K::CreateObject
            } else {
                K::Compound
            };
        }
        let first = self.lead();
        let w = |i: usize, x: &str| self.word(i, x);
        if ["select", "with", "values", "table"]
            .iter()
            .any(|x| w(first, x))
        {
            return K::Query;
        }
        if w(0, "insert") || w(0, "replace") {
            return K::Insert;
        }
        if w(0, "update") {
            return K::Update;
        }
        if w(0, "delete") {
            return K::Delete;
        }
        if w(0, "explain") || w(0, "describe") || w(0, "desc") || w(0, "analyze") {
            // ANALYZE TABLE is maintenance; EXPLAIN t / DESC t describe a table.
            if w(0, "analyze")
                && (w(1, "table") || w(1, "tables") || w(1, "local") || w(1, "no_write_to_binlog"))
            {
                return K::NoData;
            }
            let mut i = 1;
            while i < self.len() {
                if [
                    "select", "insert", "replace", "update", "delete", "with", "values", "table",
                ]
                .iter()
                .any(|x| w(i, x))
                    || self.op(i, "(")
                {
                    return K::Explain(i);
                }
                i += 1;
            }
            return K::Metadata;
        }
        if w(0, "show") || w(0, "help") {
            return K::Metadata;
        }
        if w(0, "set") {
            return K::Set;
        }
        if w(0, "use") {
            return K::Use;
        }
        if w(0, "prepare") {
            return K::Prepare;
        }
        if w(0, "execute") {
            return if w(1, "immediate") {
                K::ExecuteImmediate
            } else {
                K::Execute
            };
        }
        if (w(0, "deallocate") || w(0, "drop")) && w(1, "prepare") {
            return K::Deallocate;
        }
        if w(0, "call") {
            return K::Call;
        }
        if w(0, "do") {
            return K::Do;
        }
        if w(0, "alter") {
            let mut i = 1;
            while i < 4 && (w(i, "online") || w(i, "offline") || w(i, "ignore")) {
                i += 1;
            }
            if w(i, "table") {
                return K::AlterTable;
            }
            if w(i, "view") || w(i, "definer") || w(i, "algorithm") || w(i, "sql") || w(i, "event")
            {
                return K::CreateObject;
            }
            return K::NoData;
        }
        if w(0, "create") {
            let mut i = 1;
            while i < self.len() && i < 24 {
                if w(i, "table") {
                    return K::CreateTable;
                }
                if [
                    "view",
                    "trigger",
                    "procedure",
                    "function",
                    "event",
                    "package",
                ]
                .iter()
                .any(|x| w(i, x))
                {
                    return K::CreateObject;
                }
                if [
                    "index",
                    "database",
                    "schema",
                    "user",
                    "role",
                    "server",
                    "sequence",
                    "tablespace",
                    "logfile",
                ]
                .iter()
                .any(|x| w(i, x))
                {
                    return if w(i, "sequence") {
                        K::Other
                    } else {
                        K::NoData
                    };
                }
                i += 1;
            }
            return K::Other;
        }
        if w(0, "rename") {
            return if w(1, "table") || w(1, "tables") {
                K::RenameTable
            } else {
                K::NoData
            };
        }
        if w(0, "load") || w(0, "handler") {
            return K::Bulk;
        }
        const NO_DATA: &[&str] = &[
            "drop",
            "truncate",
            "optimize",
            "check",
            "repair",
            "checksum",
            "flush",
            "lock",
            "unlock",
            "begin",
            "start",
            "commit",
            "rollback",
            "savepoint",
            "release",
            "xa",
            "grant",
            "revoke",
            "kill",
            "reset",
            "purge",
            "install",
            "uninstall",
            "shutdown",
            "backup",
            "cache",
            "signal",
            "resignal",
            "get",
        ];
        if NO_DATA.iter().any(|x| w(0, x)) {
            return K::NoData;
        }
        K::Other
    }

    /// Whether the statement names something that can reach protected data.
    pub fn names_any(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        (0..self.len()).any(|i| self.with_name(i, matches).unwrap_or(false))
    }

    /// `f` of token `i`'s name as [`Stmt::name`] gives it, without allocating for the usual
    /// short ASCII names (every statement's names are matched against many sets).
    pub fn with_name<R>(&self, i: usize, f: impl FnOnce(&str) -> R) -> Option<R> {
        let t = self.token(i)?;
        if !matches!(t.kind, Kind::Word | Kind::Quoted) {
            return None;
        }
        let raw = t.name(self.src, &self.mode);
        if raw.is_ascii() && raw.len() <= 64 {
            let mut buf = [0u8; 64];
            let b = &mut buf[..raw.len()];
            b.copy_from_slice(&raw);
            b.make_ascii_lowercase();
            if let Ok(n) = std::str::from_utf8(b) {
                return Some(f(n));
            }
        }
        self.name(i).map(|n| f(&n))
    }

    /// Whether the statement names the object `database`.`name` (both lower-case): written
    /// qualified, or unqualified while `current` is its database.
    pub fn names_object(&self, database: &str, name: &str, current: Option<&str>) -> bool {
        (0..self.len()).any(|i| {
            if self.with_name(i, |n| n == name) != Some(true) {
                return false;
            }
            let dotted = i >= 2 && self.token(i - 1).is_some_and(|t| t.kind == Kind::Dot);
            if dotted {
                // `db.name`; `x.name` with another x is a column of table x.
                self.with_name(i - 2, |n| n == database) == Some(true)
            } else {
                current.is_some_and(|c| c.eq_ignore_ascii_case(database))
            }
        })
    }

    /// The byte range of tokens `[from, to)` of this statement.
    pub fn bytes(&self, from: usize, to: usize) -> (usize, usize) {
        let first = self.tokens[self.unit.first + from].start;
        let last = self.tokens[self.unit.first + to - 1].end;
        (first, last)
    }
}

/// What a SET statement does to the session state the lexer depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetEffect {
    pub sql_mode: Option<SqlMode>,
    pub charset: Option<String>,
    /// It changes sql_mode or the client character set in a way not known from the text.
    pub unknown: bool,
    /// It names a session-tracking variable.
    pub tracking: bool,
    /// `SET STATEMENT … FOR`: the token where the inner statement starts.
    pub statement_for: Option<usize>,
    /// SET STATEMENT changes sql_mode or a character set for its statement.
    pub statement_mode: bool,
}

/// Reads a SET statement's assignments (top-level, comma-separated).
pub fn set_effect(s: &Stmt<'_>, current: &SqlMode) -> SetEffect {
    let mut e = SetEffect::default();
    let mut i = 1;
    if s.word(1, "statement") {
        // SET STATEMENT var = value [, …] FOR statement
        let mut j = 2;
        let mut depth = 0usize;
        while j < s.len() {
            if s.op(j, "(") {
                depth += 1;
            } else if s.op(j, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && s.word(j, "for") {
                e.statement_for = Some(j + 1);
                break;
            }
            if let Some(n) = s.name(j)
                && (is_mode_or_charset(&n) || n.starts_with("session_track_"))
            {
                e.statement_mode = true;
                e.tracking |= n.starts_with("session_track_");
            }
            j += 1;
        }
        return e;
    }
    // A scope keyword holds for the assignments after it, up to the next one (the server's
    // grammar): `SET GLOBAL a = 1, sql_mode = …` changes the global sql_mode.
    let mut global = false;
    while i < s.len() {
        if s.word(i, "global") || s.word(i, "persist") || s.word(i, "persist_only") {
            global = true;
        } else if s.word(i, "session") || s.word(i, "local") {
            global = false;
        }
        // One assignment: up to the next top-level comma.
        let mut end = i;
        let mut depth = 0usize;
        while end < s.len() {
            if s.op(end, "(") {
                depth += 1;
            } else if s.op(end, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && s.op(end, ",") {
                break;
            }
            end += 1;
        }
        assignment(s, i, end, current, global, &mut e);
        i = end + 1;
    }
    e
}

fn is_mode_or_charset(n: &str) -> bool {
    matches!(
        n,
        "sql_mode"
            | "character_set_client"
            | "names"
            | "charset"
            | "character"
            | "collation_connection"
            | "character_set_connection"
    )
}

/// One `SET` assignment, tokens `[i, end)`.
fn assignment(
    s: &Stmt<'_>,
    i: usize,
    end: usize,
    current: &SqlMode,
    global: bool,
    e: &mut SetEffect,
) {
    let mentions_tracking = (i..end).any(|k| {
        s.token(k).is_some_and(|t| {
            matches!(t.kind, Kind::Word | Kind::Quoted | Kind::SysVar)
                && t.name(s.src, &s.mode)
                    .to_ascii_lowercase()
                    .starts_with(b"session_track_")
        })
    });
    e.tracking |= mentions_tracking;
    let mut k = i;
    // Scope: GLOBAL changes nothing of this session.
    if s.word(k, "global") || s.word(k, "persist") || s.word(k, "persist_only") {
        return;
    }
    let explicit_session = s.word(k, "session") || s.word(k, "local");
    if explicit_session {
        k += 1;
    }
    // Under a running GLOBAL, a change of how statements are read may be the global value's
    // or the session's: not known from the text.
    let scoped = |e: &mut SetEffect, change: &mut dyn FnMut(&mut SetEffect)| {
        if global && !explicit_session {
            e.unknown = true;
        } else {
            change(e);
        }
    };
    if s.word(k, "names") {
        scoped(e, &mut |e| match charset_name(s, k + 1) {
            Some(cs) if cs != "default" => e.charset = Some(cs),
            _ => e.unknown = true,
        });
        return;
    }
    if (s.word(k, "character") && s.word(k + 1, "set")) || s.word(k, "charset") {
        let at = if s.word(k, "charset") { k + 1 } else { k + 2 };
        scoped(e, &mut |e| match charset_name(s, at) {
            Some(cs) if cs != "default" => e.charset = Some(cs),
            _ => e.unknown = true,
        });
        return;
    }
    let mut explicit = explicit_session;
    let var = match s.token(k).map(|t| t.kind) {
        Some(Kind::SysVar) => {
            let scope = s
                .token(k)
                .map(|t| t.name(s.src, &s.mode).to_ascii_lowercase());
            if s.token(k + 1).is_some_and(|t| t.kind == Kind::Dot) {
                match scope.as_deref() {
                    Some(b"global") => return,
                    Some(b"session") | Some(b"local") => {
                        k += 2;
                        explicit = true;
                        s.name(k)
                    }
                    _ => {
                        // A structured variable (`@@x.y`): not one the lexer uses.
                        return;
                    }
                }
            } else {
                scope.map(|v| String::from_utf8_lossy(&v).into_owned())
            }
        }
        Some(Kind::Word | Kind::Quoted) => s.name(k),
        _ => return,
    };
    let Some(var) = var else { return };
    let value_at = k + 1;
    let assigns = s.op(value_at, "=") || s.op(value_at, ":=");
    if !assigns {
        return;
    }
    let value = value_at + 1;
    let single = value + 1 == end;
    if global && !explicit && is_mode_or_charset(&var) {
        e.unknown = true;
        return;
    }
    match var.as_str() {
        "sql_mode" => match s.token(value).filter(|_| single) {
            Some(t) if matches!(t.kind, Kind::Str) => {
                let raw = crate::sql::lex::string_value(t.text(s.src), &s.mode);
                match raw.and_then(|r| String::from_utf8(r.into_owned()).ok()) {
                    Some(text) => e.sql_mode = Some(expand_mode(&text, current)),
                    None => e.unknown = true,
                }
            }
            _ => e.unknown = true,
        },
        "character_set_client" => match charset_name(s, value).filter(|_| single) {
            Some(cs) if cs != "default" => e.charset = Some(cs),
            _ => e.unknown = true,
        },
        _ => {}
    }
}

/// A character set name given as a word or a string.
fn charset_name(s: &Stmt<'_>, i: usize) -> Option<String> {
    let t = s.token(i)?;
    match t.kind {
        Kind::Word | Kind::Quoted => s.name(i),
        Kind::Str => crate::sql::lex::string_value(t.text(s.src), &s.mode)
            .and_then(|v| String::from_utf8(v.into_owned()).ok())
            .map(|v| v.to_ascii_lowercase()),
        _ => None,
    }
}

/// The sql_mode a `SET sql_mode = '…'` leaves, as far as lexing goes: the named flags,
/// with MariaDB's combination names expanded.
fn expand_mode(text: &str, _current: &SqlMode) -> SqlMode {
    let mut names: Vec<&str> = Vec::new();
    for n in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        names.push(n);
        let extra: &[&str] = match n.to_ascii_uppercase().as_str() {
            "ANSI" => &["PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE"],
            "DB2" | "MAXDB" | "POSTGRESQL" => &["PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE"],
            "MSSQL" => &["PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "MSSQL"],
            "ORACLE" => &["PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "ORACLE"],
            "MYSQL323" | "MYSQL40" => &["HIGH_NOT_PRECEDENCE"],
            _ => &[],
        };
        names.extend_from_slice(extra);
    }
    let joined = names.join(",");
    SqlMode::parse(&joined)
}

/// The lexer's mode for a session state.
pub fn lex_mode<'c>(
    charset: &'c crate::sql::charset::Charset,
    mode: &SqlMode,
    server_version: u32,
    prepare: bool,
) -> Mode<'c> {
    Mode {
        charset,
        ansi_quotes: mode.has(ModeFlags::ANSI_QUOTES),
        no_backslash_escapes: mode.has(ModeFlags::NO_BACKSLASH_ESCAPES),
        mssql: mode.has(ModeFlags::MSSQL),
        server_version,
        prepare,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::charset::Charset;
    use crate::sql::lex::lex;
    use crate::sql::view::statements;

    fn with<T>(sql: &str, f: impl Fn(&Stmt<'_>) -> T) -> Vec<T> {
        let m = lex_mode(
            Charset::named("utf8mb4").expect("cs"),
            &SqlMode::default(),
            101_119,
            false,
        );
        let lexed = lex(sql.as_bytes(), &m).expect("lex");
        statements(sql.as_bytes(), &lexed)
            .expect("split")
            .into_iter()
            .map(|u| {
                f(&Stmt {
                    src: sql.as_bytes(),
                    tokens: &lexed.tokens,
                    unit: u,
                    mode: m,
                })
            })
            .collect()
    }

    #[test]
    fn kinds_come_from_leading_words() {
        use StatementKind as K;
        let k = with(
            "SELECT 1; (SELECT 2); WITH c AS (SELECT 1) SELECT * FROM c; insert into t values (1); \
             EXPLAIN SELECT 1; DESC t; ANALYZE TABLE t; ANALYZE SELECT 1; SET @a = 1; USE db; \
             EXECUTE IMMEDIATE 'x'; EXECUTE s; DROP PREPARE s; CREATE TABLE t (a int); \
             CREATE OR REPLACE VIEW v AS SELECT 1; ALTER TABLE t ADD x INT; LOAD DATA INFILE 'x' INTO TABLE t; \
             LOCK TABLES t READ; RENAME TABLE a TO b",
            |s| s.kind(),
        );
        assert_eq!(
            k,
            vec![
                K::Query,
                K::Query,
                K::Query,
                K::Insert,
                K::Explain(1),
                K::Metadata,
                K::NoData,
                K::Explain(1),
                K::Set,
                K::Use,
                K::ExecuteImmediate,
                K::Execute,
                K::Deallocate,
                K::CreateTable,
                K::CreateObject,
                K::AlterTable,
                K::Bulk,
                K::NoData,
                K::RenameTable,
            ]
        );
    }

    #[test]
    fn set_effects_are_read_from_the_assignments() {
        let e = with(
            "SET sql_mode='ANSI_QUOTES'; SET NAMES latin1; SET @@session.character_set_client = 'gbk'; \
             SET sql_mode = CONCAT(@@sql_mode, ',ANSI'); SET GLOBAL sql_mode = 'ANSI'; \
             SET @x = 1, autocommit = 0; SET session_track_schema = OFF; \
             SET STATEMENT sql_mode='ANSI_QUOTES' FOR SELECT 1; SET sql_mode = 'ANSI'",
            |s| set_effect(s, &SqlMode::default()),
        );
        assert!(
            e[0].sql_mode
                .as_ref()
                .is_some_and(|m| m.has(ModeFlags::ANSI_QUOTES))
        );
        assert_eq!(e[1].charset.as_deref(), Some("latin1"));
        assert_eq!(e[2].charset.as_deref(), Some("gbk"));
        assert!(e[3].unknown);
        assert_eq!(e[4], SetEffect::default());
        assert_eq!(e[5], SetEffect::default());
        assert!(e[6].tracking);
        assert!(e[7].statement_mode && e[7].statement_for.is_some());
        assert!(
            e[8].sql_mode
                .as_ref()
                .is_some_and(|m| m.has(ModeFlags::ANSI_QUOTES))
        );
    }
}
