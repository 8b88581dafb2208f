//! frontend::mux: what keeps a multiplexed session on its backend connection (ADR 0009).
//!
//! Between statements a multiplexed session gives its connection back to the pool and takes
//! one again for its next command, with its state (database, character sets, sql_mode,
//! time_zone, autocommit, isolation and every session variable the server reported) replayed
//! over it. Some state lives on the connection and cannot move: it *pins* the session to the
//! connection for the rest of its life (or until COM_RESET_CONNECTION / COM_CHANGE_USER
//! clear it). Some only needs the next statement on the same connection: it *holds* the
//! connection for one more command. A transaction, autocommit off, an open cursor and
//! prepared statements keep it while they last.
//!
//! Security: the rules err towards pinning. A statement myveil cannot read pins; so does
//! anything that names a user variable, since the server does not report them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::state::SessionState;
use crate::sql::lex::{self, Kind, Mode, Token};

/// Most tokens read to find pins (a longer text pins: it is not read).
const MAX_TOKENS: usize = 65_536;

/// A multiplexed session's hold on its backend connection.
#[derive(Debug, Default)]
pub struct Mux {
    /// What keeps the connection for the rest of the session (None: nothing).
    pub pinned: Option<&'static str>,
    /// Commands the connection is still kept for.
    pub hold: u8,
    /// Backend thread of the connection the session had last: taken back first, when idle.
    pub last: u32,
    /// The session's prepared statements by the id its client knows (myveil's own: a
    /// statement is prepared again on whichever connection runs it).
    pub statements: HashMap<u32, Statement>,
    pub next_id: u32,
    /// The statement prepared last (MariaDB's id -1).
    pub last_prepared: Option<u32>,
    /// Long data was sent for a statement and its execute has not come yet.
    pub long_data: bool,
}

/// One of a multiplexed session's prepared statements.
#[derive(Debug)]
pub struct Statement {
    /// What it is prepared under and as (`statement_key`).
    pub key: Arc<[u8]>,
    /// The backend statement's parameter count.
    pub params: u16,
    /// The parameter types this session bound last (2 bytes each, as sent): a client sends
    /// them once and then executes with `new_params_bound_flag` 0, but the backend
    /// statement it lands on may have been bound by another session, or never.
    types: Option<Box<[u8]>>,
}

/// COM_STMT_EXECUTE's flag (MariaDB) for a parameter count sent in the packet: its layout
/// is then not the one `Mux::bind_types` reads.
const PARAMETER_COUNT_AVAILABLE: u8 = 0x08;

impl Mux {
    /// Keeps a statement prepared under `key`; returns the id its client gets.
    pub fn prepared(&mut self, key: Arc<[u8]>, params: u16) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        while self.statements.contains_key(&self.next_id) || self.next_id == u32::MAX {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        self.statements.insert(
            self.next_id,
            Statement {
                key,
                params,
                types: None,
            },
        );
        self.last_prepared = Some(self.next_id);
        self.next_id
    }

    /// The key of the statement a client id names (-1: the one prepared last).
    pub fn key(&self, id: u32) -> Option<(u32, Arc<[u8]>)> {
        let id = if id == u32::MAX {
            self.last_prepared?
        } else {
            id
        };
        self.statements.get(&id).map(|s| (id, s.key.clone()))
    }

    /// A COM_STMT_EXECUTE of the client's statement `id`, about to go to whichever
    /// connection the session is on: types it binds are remembered, and an execute that
    /// binds none gets the ones the session bound last, so the server never reads the
    /// values with the types another session bound on a shared statement (or with none).
    pub fn bind_types(&mut self, id: u32, execute: &mut Vec<u8>) {
        let Some(st) = self.statements.get_mut(&id) else {
            return;
        };
        let n = usize::from(st.params);
        if n == 0
            || execute
                .get(5)
                .is_none_or(|f| f & PARAMETER_COUNT_AVAILABLE != 0)
        {
            return;
        }
        let at = 10 + n.div_ceil(8);
        match execute.get(at) {
            Some(0) => {
                if let Some(types) = &st.types {
                    execute[at] = 1;
                    execute.splice(at + 1..at + 1, types.iter().copied());
                }
            }
            // The server takes any non-zero flag as "types follow".
            Some(_) => {
                if let Some(types) = execute.get(at + 1..at + 1 + 2 * n) {
                    st.types = Some(types.into());
                }
            }
            None => {}
        }
    }

    /// The server forgot every statement (reset, change of user).
    pub fn forget_statements(&mut self) {
        self.statements.clear();
        self.last_prepared = None;
        self.long_data = false;
    }
}

/// What a statement is prepared under and as: the state that changes how the server reads
/// it (database, sql_mode, character sets and collation) and its text. Two sessions of a
/// role share a statement on a connection only when the keys are equal.
pub fn statement_key(state: &SessionState, text: &[u8]) -> Arc<[u8]> {
    let mut k = Vec::with_capacity(text.len() + 96);
    k.extend_from_slice(state_key(state).as_bytes());
    k.extend_from_slice(text);
    k.into()
}

/// The state part of a statement key, ending in a NUL after each part.
pub fn state_key(state: &SessionState) -> String {
    let var = |n: &str| state.variables.get(n).map_or("", String::as_str).to_owned();
    format!(
        "{}\0{}\0{}\0{}\0",
        state.database.as_deref().unwrap_or(""),
        var("sql_mode"),
        var("character_set_client"),
        var("collation_connection"),
    )
}

/// What a statement text asks of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the next statement may run anywhere.
    Nothing,
    /// The next statement on the same connection (FOUND_ROWS, LAST_INSERT_ID).
    Next,
    /// The same connection for good, for this reason.
    Pin(&'static str),
}

/// Reads a COM_QUERY text for what it leaves on its connection.
pub fn needs(text: &[u8], mode: Option<&Mode<'_>>) -> Needs {
    let Some(mode) = mode else {
        return Needs::Pin("a statement in a character set myveil cannot read");
    };
    let Ok(lexed) = lex::lex_bounded(text, mode, MAX_TOKENS) else {
        return Needs::Pin("a statement myveil cannot read");
    };
    let tokens = &lexed.tokens;
    let mut needs = Needs::Nothing;
    for statement in tokens.split(|t| t.kind == Kind::Semicolon) {
        match of_statement(statement, text) {
            Needs::Pin(why) => return Needs::Pin(why),
            Needs::Next => needs = Needs::Next,
            Needs::Nothing => {}
        }
    }
    needs
}

fn of_statement(t: &[Token], src: &[u8]) -> Needs {
    let word = |i: usize, w: &str| t.get(i).is_some_and(|t| t.is_word(src, w));
    let any = |w: &str| t.iter().any(|t| t.is_word(src, w));
    let call = |i: usize| t.get(i + 1).is_some_and(|n| n.text(src) == b"(");
    // The first word, after any number of opening parentheses.
    let first = t
        .iter()
        .position(|t| t.text(src) != b"(")
        .unwrap_or(t.len());
    // A user variable assigned (SET @a, @a := …, INTO @a): the server does not report
    // them. Reading one assigns nothing: a session that never assigned one reads NULL on
    // any connection (one that did is pinned, and a connection goes back to the pool
    // reset when its session ends).
    let assigned = t.iter().enumerate().any(|(i, tok)| {
        tok.kind == Kind::UserVar
            && (word(first, "set")
                || t.get(i + 1).is_some_and(|n| n.is_op(src, ":="))
                || i > 0 && t[i - 1].is_word(src, "into"))
    });
    if assigned {
        return Needs::Pin("user variables");
    }
    for (w, why) in [
        ("lock", "LOCK TABLES"),
        ("handler", "HANDLER"),
        ("xa", "an XA transaction"),
        ("prepare", "SQL-level prepared statements"),
        ("execute", "SQL-level prepared statements"),
        ("deallocate", "SQL-level prepared statements"),
        ("call", "a stored procedure (it may leave any state)"),
        ("backup", "BACKUP LOCK"),
    ] {
        if word(first, w) {
            return Needs::Pin(why);
        }
    }
    if word(first, "flush") && any("lock") {
        return Needs::Pin("FLUSH TABLES … WITH READ LOCK");
    }
    if word(first, "create") && (first + 1..(first + 5).min(t.len())).any(|i| word(i, "temporary"))
    {
        return Needs::Pin("temporary tables");
    }
    if word(first, "set") {
        if any("role") && word(first + 1, "role") {
            return Needs::Pin("SET ROLE");
        }
        if any("transaction") && !any("session") && !any("global") {
            return Needs::Pin("SET TRANSACTION (the next transaction's characteristics)");
        }
        // `SET @@name` without a scope word: MariaDB does not report the change.
        let unscoped = t.iter().enumerate().any(|(i, tok)| {
            tok.kind == Kind::SysVar && t.get(i + 1).is_none_or(|n| n.kind != Kind::Dot)
        });
        if unscoped {
            return Needs::Pin("SET @@name without a scope (the server does not report it)");
        }
        if t.iter().any(|tok| {
            tok.text(src).len() > 14 && tok.text(src)[..14].eq_ignore_ascii_case(b"session_track_")
        }) {
            return Needs::Pin("a change of session tracking");
        }
    }
    for (i, tok) in t.iter().enumerate() {
        if tok.kind != Kind::Word {
            continue;
        }
        let w = tok.text(src);
        if (w.eq_ignore_ascii_case(b"get_lock") || w.eq_ignore_ascii_case(b"release_lock"))
            && call(i)
        {
            return Needs::Pin("GET_LOCK");
        }
        if w.eq_ignore_ascii_case(b"nextval")
            || w.eq_ignore_ascii_case(b"lastval")
            || w.eq_ignore_ascii_case(b"setval")
            || (w.eq_ignore_ascii_case(b"next") || w.eq_ignore_ascii_case(b"previous"))
                && word(i + 1, "value")
                && word(i + 2, "for")
        {
            return Needs::Pin("sequences (LASTVAL is the session's)");
        }
    }
    // FOUND_ROWS() after SQL_CALC_FOUND_ROWS, LAST_INSERT_ID() after LAST_INSERT_ID(expr):
    // the next statement asks this connection. (An insert id the server reports holds
    // the connection as well: Session::after.)
    let sets_insert_id = t.iter().enumerate().any(|(i, tok)| {
        tok.is_word(src, "last_insert_id")
            && call(i)
            && t.get(i + 2).is_some_and(|n| n.text(src) != b")")
    });
    if any("sql_calc_found_rows") || sets_insert_id {
        return Needs::Next;
    }
    Needs::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::charset::Charset;

    fn of(sql: &str) -> Needs {
        let cs = Charset::named("utf8mb4").expect("utf8mb4");
        let mode = crate::guard::lex_mode(
            cs,
            &crate::backend::state::SqlMode::parse(""),
            101_100,
            false,
        );
        needs(sql.as_bytes(), Some(&mode))
    }

    /// COM_STMT_EXECUTE of statement 1 with `n` parameters, all given, types when given.
    fn execute(n: usize, types: Option<&[u8]>, values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        p.extend(std::iter::repeat_n(0, n.div_ceil(8)));
        match types {
            Some(t) => {
                p.push(1);
                p.extend_from_slice(t);
            }
            None => p.push(0),
        }
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn executes_without_types_get_the_ones_the_session_bound() {
        let mut mux = Mux::default();
        let id = mux.prepared(Arc::from(&b"k"[..]), 2);
        // Nothing bound yet: the execute goes as it is (the server refuses it).
        let mut p = execute(2, None, b"vv");
        mux.bind_types(id, &mut p);
        assert_eq!(p, execute(2, None, b"vv"));
        let types = [0x08, 0, 0xfd, 0];
        let mut p = execute(2, Some(&types), b"v1");
        mux.bind_types(id, &mut p);
        assert_eq!(p, execute(2, Some(&types), b"v1"), "bound as sent");
        let mut p = execute(2, None, b"v2");
        mux.bind_types(id, &mut p);
        assert_eq!(p, execute(2, Some(&types), b"v2"), "the bound types added");
        // Any non-zero flag binds types.
        let mut p = execute(2, Some(&types), b"v1");
        p[11] = 2;
        mux.bind_types(id, &mut p);
        let mut p = execute(2, None, b"v2");
        mux.bind_types(id, &mut p);
        assert_eq!(p, execute(2, Some(&types), b"v2"));
        // New types replace them.
        let other = [0x03, 0x80, 0x03, 0];
        mux.bind_types(id, &mut execute(2, Some(&other), b"v3"));
        let mut p = execute(2, None, b"v4");
        mux.bind_types(id, &mut p);
        assert_eq!(p, execute(2, Some(&other), b"v4"));
        // No parameters, MariaDB's parameter count in the packet, a short packet or an
        // unknown id: untouched.
        let none = mux.prepared(Arc::from(&b"k0"[..]), 0);
        let mut p = execute(0, None, b"");
        p.pop();
        let before = p.clone();
        mux.bind_types(none, &mut p);
        assert_eq!(p, before);
        let mut p = execute(2, None, b"v5");
        p[5] = PARAMETER_COUNT_AVAILABLE;
        let before = p.clone();
        mux.bind_types(id, &mut p);
        assert_eq!(p, before);
        let mut p = vec![0x17, 1, 0, 0, 0];
        mux.bind_types(id, &mut p);
        assert_eq!(p, [0x17, 1, 0, 0, 0]);
        let mut p = execute(2, None, b"v6");
        mux.bind_types(999, &mut p);
        assert_eq!(p, execute(2, None, b"v6"));
    }

    #[test]
    fn statements_that_leave_state_on_the_connection_pin_it() {
        for sql in [
            "SET @a = 1",
            "SELECT 1 INTO @x",
            "SELECT 1; SET @a := 2",
            "SELECT @a := 1",
            "SELECT a INTO @a, @b FROM t",
            "CREATE TEMPORARY TABLE t (a INT)",
            "create or replace temporary table t (a int)",
            "/*!32312 CREATE TEMPORARY TABLE t (a INT) */",
            "LOCK TABLES t WRITE",
            "FLUSH TABLES WITH READ LOCK",
            "SELECT GET_LOCK('x', 1)",
            "DO get_lock ('x', 1)",
            "PREPARE s FROM 'SELECT 1'",
            "EXECUTE s",
            "CALL p()",
            "XA START 'x'",
            "HANDLER t OPEN",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET ROLE r",
            "SET @@sort_buffer_size = 1000000",
            "SET session_track_system_variables = ''",
            "SELECT NEXTVAL(s)",
            "SELECT NEXT VALUE FOR s",
            "BACKUP LOCK t",
        ] {
            assert!(matches!(of(sql), Needs::Pin(_)), "{sql} should pin");
        }
    }

    #[test]
    fn statements_whose_state_the_server_reports_do_not() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "SET NAMES latin1",
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET @@session.time_zone = '+01:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "USE test",
            "BEGIN",
            "START TRANSACTION",
            "SELECT @@sql_mode",
            "SELECT @never_set",
            "SELECT * FROM t WHERE a = @x",
            "SELECT '@x', 'GET_LOCK(1)' FROM t",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "CREATE TABLE temporary_things (a INT)",
        ] {
            assert_eq!(of(sql), Needs::Nothing, "{sql}");
        }
        assert_eq!(of("SELECT SQL_CALC_FOUND_ROWS * FROM t"), Needs::Next);
        assert_eq!(of("SELECT LAST_INSERT_ID()"), Needs::Nothing);
        assert_eq!(of("UPDATE t SET id = LAST_INSERT_ID(id + 1)"), Needs::Next);
    }
}
