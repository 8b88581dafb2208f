//! frontend::ids: the connection ids clients see. Each client session gets an id of its own
//! from myveil (never the backend's thread id, which a pooled connection carries from client
//! to client): the greeting carries it, `CONNECTION_ID()` returns it, and `KILL` /
//! `KILL QUERY` / COM_PROCESS_KILL name it and are sent on as the backend thread the session
//! runs on at that moment (ADR 0007).
//!
//! Ids count up from 1 and are not reused while the process runs (a wrap past u32::MAX skips
//! ids still live), so a reconnect always gets a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::sql::lex::{Kind, Lexed, Mode, Token};
use crate::sql::view::statements;

/// Every live session's id, with who it is and which backend thread it runs on.
#[derive(Default)]
pub struct Sessions {
    last: AtomicU32,
    live: Mutex<HashMap<u32, Entry>>,
}

#[derive(Clone)]
struct Entry {
    /// The myveil user (empty until the login succeeds).
    user: String,
    /// The backend thread id of the session's connection (0: none at the moment); the
    /// session sets it without the lock (a multiplexed session does, every statement).
    backend: Arc<AtomicU32>,
    /// The client's address, as SHOW PROCESSLIST's Host shows it.
    peer: String,
    /// The session's database, for SHOW PROCESSLIST while it is on no backend connection
    /// (a multiplexed session between statements).
    database: Option<String>,
    /// Turns true once the session has closed its client's socket.
    gone: Arc<Gone>,
    /// Turns true when a KILL CONNECTION finds the session on no backend connection (a
    /// multiplexed session between statements): it then ends itself.
    killed: Arc<Gone>,
}

/// A session's end, for a KILL CONNECTION that must not answer before it.
#[derive(Default)]
pub struct Gone {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gone {
    /// Resolves once set.
    pub async fn set_now(&self) {
        loop {
            let notified = self.notify.notified();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Waits until the session is gone, at most `limit`.
    pub async fn wait(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.notify.notified();
                if self.flag.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// A session's id, registered while it lives.
pub struct SessionId {
    id: u32,
    sessions: Arc<Sessions>,
    backend: Arc<AtomicU32>,
}

impl SessionId {
    pub fn get(&self) -> u32 {
        self.id
    }

    fn update(&self, f: impl FnOnce(&mut Entry)) {
        if let Ok(mut live) = self.sessions.live.lock()
            && let Some(e) = live.get_mut(&self.id)
        {
            f(e);
        }
    }

    /// The session logged in (or changed user) as `user`.
    pub fn set_user(&self, user: &str) {
        self.update(|e| user.clone_into(&mut e.user));
    }

    /// The client's address (`ip:port`).
    pub fn set_peer(&self, peer: &std::net::SocketAddr) {
        let peer = peer.to_string();
        self.update(|e| e.peer = peer);
    }

    /// Set when a KILL CONNECTION of the session finds it on no backend connection.
    pub fn killed(&self) -> Arc<Gone> {
        self.sessions
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(&self.id).map(|e| e.killed.clone()))
            .unwrap_or_default()
    }

    /// The session's database, as SHOW PROCESSLIST shows it between statements.
    pub fn set_database(&self, database: Option<&str>) {
        let database = database.map(str::to_owned);
        self.update(|e| e.database = database);
    }

    /// The session now runs on backend thread `thread` (0: on none).
    pub fn set_backend(&self, thread: u32) {
        self.backend.store(thread, Ordering::SeqCst);
    }
}

impl SessionId {
    /// The session has closed its client's socket.
    pub fn closed(&self) {
        self.update(|e| e.gone.set());
    }
}

impl Drop for SessionId {
    fn drop(&mut self) {
        if let Ok(mut live) = self.sessions.live.lock()
            && let Some(e) = live.remove(&self.id)
        {
            e.gone.set();
        }
    }
}

/// Why a KILL cannot be sent on.
#[derive(Debug, PartialEq, Eq)]
pub enum KillRefused {
    /// No live session has that id (MariaDB's 1094).
    Unknown(u64),
    /// The session belongs to another user (MariaDB's 1095).
    NotOwner(u64),
}

impl Sessions {
    /// Registers a new session and returns its id.
    pub fn open(self: &Arc<Self>) -> SessionId {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let id = loop {
            let id = self.last.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 && !live.contains_key(&id) {
                break id;
            }
        };
        let backend = Arc::new(AtomicU32::new(0));
        live.insert(
            id,
            Entry {
                user: String::new(),
                backend: backend.clone(),
                peer: String::new(),
                database: None,
                gone: Arc::default(),
                killed: Arc::default(),
            },
        );
        SessionId {
            id,
            sessions: self.clone(),
            backend,
        }
    }

    /// The backend thread to send a KILL of session `target` to, asked by `user`. Ok(None):
    /// the session runs on no backend connection at the moment (nothing to stop).
    /// Security: a user may kill only its own sessions, as MariaDB lets an account kill its
    /// own threads; every myveil user shares a few backend accounts, so the backend's own
    /// check would let anyone kill anyone.
    pub fn kill_target(
        &self,
        target: u64,
        user: &str,
    ) -> Result<Option<(u32, Arc<Gone>)>, KillRefused> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let entry = u32::try_from(target)
            .ok()
            .and_then(|t| live.get(&t))
            .filter(|e| !e.user.is_empty())
            .ok_or(KillRefused::Unknown(target))?;
        if entry.user != user {
            return Err(KillRefused::NotOwner(target));
        }
        let thread = entry.backend.load(Ordering::SeqCst);
        Ok((thread != 0).then(|| (thread, entry.gone.clone())))
    }
}

impl Sessions {
    /// Ends session `target`, which runs on no backend connection (a KILL CONNECTION after
    /// `kill_target` said so): it closes itself; returns what to wait on for that.
    pub fn kill_detached(&self, target: u64) -> Option<Arc<Gone>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let entry = live.get(&u32::try_from(target).ok()?)?;
        entry.killed.set();
        Some(entry.gone.clone())
    }

    /// `SHOW [FULL] PROCESSLIST` as a query of the backend's process list that shows what a
    /// direct server would: the sessions of `user` (Security: never other users' — they share
    /// backend accounts), each with its own id, user name and client address; `own` is the
    /// asking session, whose row shows the statement as the client sent it.
    pub fn processlist_sql(
        &self,
        user: &str,
        own: u32,
        text: &[u8],
        full: bool,
        quote: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Vec<u8> {
        // (id, backend thread, entry): each thread read once. Sessions on no backend
        // connection (multiplexed, between statements) are rows of their own: Sleep.
        type Row = (u32, u32, Entry);
        let (mine, idle): (Vec<Row>, Vec<Row>) = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<Row> = live
                .iter()
                .filter(|(_, e)| e.user == user && !e.gone.flag.load(Ordering::SeqCst))
                .map(|(id, e)| (*id, e.backend.load(Ordering::SeqCst), e.clone()))
                .collect();
            v.sort_by_key(|(id, _, _)| *id);
            v.into_iter().partition(|(_, thread, _)| *thread != 0)
        };
        let mut sql = b"SELECT CASE ID".to_vec();
        let case = |sql: &mut Vec<u8>, f: &dyn Fn(&Row) -> Vec<u8>, name: &str| {
            if mine.is_empty() {
                sql.extend_from_slice(b" WHEN 0 THEN NULL");
            }
            for m in &mine {
                sql.extend_from_slice(format!(" WHEN {} THEN ", m.1).as_bytes());
                sql.extend_from_slice(&f(m));
            }
            sql.extend_from_slice(format!(" END AS {name}").as_bytes());
        };
        case(&mut sql, &|m| m.0.to_string().into_bytes(), "Id");
        sql.extend_from_slice(b", CASE ID");
        case(&mut sql, &|m| quote(m.2.user.as_bytes()), "User");
        sql.extend_from_slice(b", CASE ID");
        case(&mut sql, &|m| quote(m.2.peer.as_bytes()), "Host");
        sql.extend_from_slice(
            format!(
                ", DB AS db, COMMAND AS Command, TIME AS Time, \
                 CASE WHEN ID = {own} THEN 'starting' ELSE STATE END AS State, \
                 CASE WHEN ID = {own} THEN "
            )
            .as_bytes(),
        );
        sql.extend_from_slice(&quote(text));
        sql.extend_from_slice(if full {
            b" ELSE INFO END AS Info"
        } else {
            b" ELSE LEFT(INFO, 100) END AS Info"
        });
        sql.extend_from_slice(b", CAST(PROGRESS AS DOUBLE) AS Progress FROM information_schema.PROCESSLIST WHERE ID IN (");
        let ids: Vec<String> = mine.iter().map(|m| m.1.to_string()).collect();
        sql.extend_from_slice(
            if ids.is_empty() {
                "0".to_owned()
            } else {
                ids.join(", ")
            }
            .as_bytes(),
        );
        sql.extend_from_slice(b")");
        for (id, _, e) in &idle {
            sql.extend_from_slice(format!(" UNION ALL SELECT {id}, ").as_bytes());
            sql.extend_from_slice(&quote(e.user.as_bytes()));
            sql.extend_from_slice(b", ");
            sql.extend_from_slice(&quote(e.peer.as_bytes()));
            sql.extend_from_slice(b", ");
            match &e.database {
                Some(db) => sql.extend_from_slice(&quote(db.as_bytes())),
                None => sql.extend_from_slice(b"NULL"),
            }
            sql.extend_from_slice(b", 'Sleep', 0, '', NULL, CAST(0 AS DOUBLE)");
        }
        sql.extend_from_slice(b" ORDER BY Id");
        sql
    }
}

/// What the id layer makes of a command's text before the guard sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing to change.
    Keep,
    /// `CONNECTION_ID()` replaced by the session's id.
    Text(Vec<u8>),
    /// A KILL of a session: (`HARD`/`SOFT` and `CONNECTION`/`QUERY` words as written, the
    /// target id).
    Kill { words: String, target: u64 },
    /// A KILL myveil cannot send on, with the reason.
    Refuse(&'static str),
    /// `SHOW [FULL] PROCESSLIST`.
    ProcessList { full: bool },
}

/// Reads `text` for `CONNECTION_ID()` and KILL. Cheap when neither word appears.
pub fn rewrite(text: &[u8], mode: &Mode<'_>, id: u32) -> Rewrite {
    let [has_cid, has_kill, has_list, has_socket] =
        contains_words(text, [b"connection_id", b"kill", b"processlist", b"socket"]);
    if !has_cid && !has_kill && !has_list && !has_socket {
        return Rewrite::Keep;
    }
    let Ok(lexed) = crate::sql::lex::lex(text, mode) else {
        return Rewrite::Keep;
    };
    let t = &lexed.tokens;
    if has_list {
        let w = |k: &Token, s: &str| {
            k.kind == Kind::Word && text[k.start..k.end].eq_ignore_ascii_case(s.as_bytes())
        };
        match t.as_slice() {
            [a, b] if w(a, "show") && w(b, "processlist") => {
                return Rewrite::ProcessList { full: false };
            }
            [a, f, b] if w(a, "show") && w(f, "full") && w(b, "processlist") => {
                return Rewrite::ProcessList { full: true };
            }
            _ => {}
        }
    }
    let word = |i: usize, w: &str| {
        t.get(i).is_some_and(|k| {
            k.kind == Kind::Word && text[k.start..k.end].eq_ignore_ascii_case(w.as_bytes())
        })
    };
    let op = |i: usize, o: &[u8]| {
        t.get(i)
            .is_some_and(|k| k.kind == Kind::Op && &text[k.start..k.end] == o)
    };
    // CONNECTION_ID ( ) → the id, named as the call was written when it is a whole select item.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    // The call (or variable) as written, as a column alias when it is a whole select item.
    let aliased = |mut value: Vec<u8>, from: usize, to: usize| {
        if is_select_item(text, t, from, to) {
            value.extend_from_slice(b" AS `");
            for &b in &text[t[from].start..t[to].end] {
                if b == b'`' {
                    value.push(b'`');
                }
                value.push(b);
            }
            value.push(b'`');
        }
        value
    };
    let mut i = 0;
    while (has_cid || has_socket) && i < t.len() {
        if has_cid
            && word(i, "connection_id")
            && !t[i].after_dot
            && op(i + 1, b"(")
            && op(i + 2, b")")
            && t[i].exec_group == t[i + 2].exec_group
        {
            // Cast so the column is typed as CONNECTION_ID()'s (INT UNSIGNED, width 10).
            let value = format!("CAST({id:010} AS UNSIGNED)").into_bytes();
            edits.push((t[i].start, t[i + 2].end, aliased(value, i, i + 2)));
            i += 3;
            continue;
        }
        // Security: `@@socket` names the backend's unix socket; drivers that prefer sockets
        // (mysql_async, the mysql crate) would reconnect through it straight to the
        // database, past myveil. Through myveil there is no socket: NULL.
        if has_socket && t[i].kind == Kind::SysVar {
            let name = &text[t[i].start..t[i].end];
            let scoped =
                name.eq_ignore_ascii_case(b"@@global") || name.eq_ignore_ascii_case(b"@@session");
            let last = if name.eq_ignore_ascii_case(b"@@socket") {
                Some(i)
            } else if scoped
                && t.get(i + 1).is_some_and(|k| k.kind == Kind::Dot)
                && word(i + 2, "socket")
            {
                Some(i + 2)
            } else {
                None
            };
            if let Some(last) = last
                && t[i].exec_group == t[last].exec_group
            {
                let value = b"CAST(NULL AS CHAR)".to_vec();
                edits.push((t[i].start, t[last].end, aliased(value, i, last)));
                i = last + 1;
                continue;
            }
        }
        i += 1;
    }
    let rewritten = if edits.is_empty() {
        None
    } else {
        let mut out = Vec::with_capacity(text.len() + 16 * edits.len());
        let mut at = 0;
        for (s, e, v) in &edits {
            out.extend_from_slice(&text[at..*s]);
            out.extend_from_slice(v);
            at = *e;
        }
        out.extend_from_slice(&text[at..]);
        Some(out)
    };
    if has_kill && let Some(r) = kill(text, &lexed, id) {
        return r;
    }
    match rewritten {
        Some(t) => Rewrite::Text(t),
        None => Rewrite::Keep,
    }
}

/// Whether `text` is one `SHOW [GLOBAL | SESSION | LOCAL] STATUS …` statement. Its
/// `Compression` row (in either scope: the server reads it from the asking connection)
/// describes the backend's leg, which myveil never compresses; the client asks about its own.
/// Cheap when the word `status` does not appear.
pub fn shows_status(text: &[u8], mode: &Mode<'_>) -> bool {
    if !contains_words(text, [b"status"])[0] {
        return false;
    }
    let Ok(lexed) = crate::sql::lex::lex(text, mode) else {
        return false;
    };
    let Ok(units) = statements(text, &lexed) else {
        return false;
    };
    let [u] = units.as_slice() else {
        return false;
    };
    let t = &lexed.tokens[u.first..u.last];
    let is = |i: usize, w: &str| {
        t.get(i).is_some_and(|k| {
            k.kind == Kind::Word && text[k.start..k.end].eq_ignore_ascii_case(w.as_bytes())
        })
    };
    let at = if is(1, "session") || is(1, "local") || is(1, "global") {
        2
    } else {
        1
    };
    is(0, "show")
        && is(at, "status")
        && (t.len() == at + 1 || is(at + 1, "like") || is(at + 1, "where"))
}

/// A KILL statement in the text, read as the server reads it. None: there is none.
fn kill(text: &[u8], lexed: &Lexed, id: u32) -> Option<Rewrite> {
    let units = statements(text, lexed).ok()?;
    let t = &lexed.tokens;
    let is = |k: &Token, w: &str| {
        k.kind == Kind::Word && text[k.start..k.end].eq_ignore_ascii_case(w.as_bytes())
    };
    let kills = units
        .iter()
        .filter(|u| t.get(u.first).is_some_and(|k| is(k, "kill")))
        .count();
    if kills == 0 {
        return None;
    }
    if units.len() > 1 {
        return Some(Rewrite::Refuse(
            "KILL must be sent on its own, not in a multi-statement query, through myveil",
        ));
    }
    let u = &units[0];
    let toks = &t[u.first + 1..u.last];
    let mut words = Vec::new();
    let mut k = 0;
    if toks.get(k).is_some_and(|x| is(x, "hard") || is(x, "soft")) {
        words.push(&text[toks[k].start..toks[k].end]);
        k += 1;
    }
    if toks.get(k).is_some_and(|x| is(x, "connection")) {
        words.push(&text[toks[k].start..toks[k].end]);
        k += 1;
    } else if toks.get(k).is_some_and(|x| is(x, "query")) {
        words.push(&text[toks[k].start..toks[k].end]);
        k += 1;
        if toks.get(k).is_some_and(|x| is(x, "id")) {
            return Some(Rewrite::Refuse(
                "KILL QUERY ID is not supported through myveil (query ids are the backend's); use KILL QUERY with a connection id",
            ));
        }
    }
    if toks.get(k).is_some_and(|x| is(x, "user")) {
        return Some(Rewrite::Refuse(
            "KILL USER is not supported through myveil (every session shares the backend account); kill sessions by id",
        ));
    }
    let rest = &toks[k..];
    let target = match rest {
        [n] if n.kind == Kind::Number => std::str::from_utf8(&text[n.start..n.end])
            .ok()
            .and_then(|n| n.parse::<u64>().ok()),
        [f, open, close]
            if is(f, "connection_id")
                && &text[open.start..open.end] == b"("
                && &text[close.start..close.end] == b")" =>
        {
            Some(u64::from(id))
        }
        _ => None,
    };
    let Some(target) = target else {
        return Some(Rewrite::Refuse(
            "KILL through myveil takes a connection id number (or CONNECTION_ID())",
        ));
    };
    let words = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Rewrite::Kill { words, target })
}

/// Whether tokens `[from, to]` make a whole item of a select list (or RETURNING list), so
/// that the column is named after them.
fn is_select_item(text: &[u8], t: &[Token], from: usize, to: usize) -> bool {
    let is = |k: &Token, ws: &[&str]| {
        k.kind == Kind::Word
            && ws
                .iter()
                .any(|w| text[k.start..k.end].eq_ignore_ascii_case(w.as_bytes()))
    };
    let op = |k: &Token, o: &[u8]| k.kind == Kind::Op && &text[k.start..k.end] == o;
    const LIST_START: &[&str] = &[
        "select",
        "returning",
        "distinct",
        "distinctrow",
        "all",
        "high_priority",
        "straight_join",
        "sql_small_result",
        "sql_big_result",
        "sql_buffer_result",
        "sql_cache",
        "sql_no_cache",
        "sql_calc_found_rows",
    ];
    const AFTER_ITEM: &[&str] = &[
        "from",
        "into",
        "where",
        "group",
        "having",
        "order",
        "limit",
        "union",
        "except",
        "intersect",
        "for",
        "lock",
        "window",
    ];
    // What follows must end the item.
    match t.get(to + 1) {
        None => {}
        Some(k) if k.kind == Kind::Semicolon || op(k, b",") || op(k, b")") || is(k, AFTER_ITEM) => {
        }
        Some(_) => return false,
    }
    // Walking back at the same depth: the list's start, or a comma of the same list.
    let mut depth = 0i32;
    let mut i = from;
    let mut first = true;
    while i > 0 {
        i -= 1;
        let k = &t[i];
        if op(k, b")") {
            depth += 1;
        } else if op(k, b"(") {
            if depth == 0 {
                return false;
            }
            depth -= 1;
        } else if depth == 0 {
            if first {
                if !(op(k, b",") || is(k, LIST_START)) {
                    return false;
                }
                if is(k, LIST_START) {
                    return true;
                }
            } else if is(k, &["select", "returning"]) {
                return true;
            } else if k.kind == Kind::Semicolon
                || is(
                    k,
                    &[
                        "from", "where", "by", "set", "values", "value", "having", "on", "using",
                        "limit", "into", "when", "then", "else",
                    ],
                )
            {
                return false;
            }
            first = false;
        }
    }
    false
}

/// Which of `words` (lower-case ASCII, distinct first letters) occur in `text`, ignoring
/// case: one pass over the text, every query pays it.
fn contains_words<const N: usize>(text: &[u8], words: [&[u8]; N]) -> [bool; N] {
    let mut found = [false; N];
    for (i, &b) in text.iter().enumerate() {
        let b = b.to_ascii_lowercase();
        for (k, w) in words.iter().enumerate() {
            if !found[k]
                && w[0] == b
                && text.len() - i >= w.len()
                && text[i..i + w.len()].eq_ignore_ascii_case(w)
            {
                found[k] = true;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::charset::Charset;

    fn mode() -> Mode<'static> {
        Mode {
            charset: Charset::named("utf8mb4").expect("utf8mb4"),
            ansi_quotes: false,
            no_backslash_escapes: false,
            mssql: false,
            server_version: 101_119,
            prepare: false,
        }
    }

    fn text(sql: &str) -> String {
        match rewrite(sql.as_bytes(), &mode(), 42) {
            Rewrite::Text(t) => String::from_utf8(t).expect("utf8"),
            Rewrite::Keep => sql.to_owned(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn connection_id_becomes_the_session_id_and_keeps_its_column_name() {
        assert_eq!(
            text("SELECT CONNECTION_ID()"),
            "SELECT CAST(0000000042 AS UNSIGNED) AS `CONNECTION_ID()`"
        );
        assert_eq!(
            text("select connection_id(), 1"),
            "select CAST(0000000042 AS UNSIGNED) AS `connection_id()`, 1"
        );
        assert_eq!(
            text("SELECT 1, Connection_Id() FROM dual"),
            "SELECT 1, CAST(0000000042 AS UNSIGNED) AS `Connection_Id()` FROM dual"
        );
        assert_eq!(
            text("SELECT (SELECT CONNECTION_ID())"),
            "SELECT (SELECT CAST(0000000042 AS UNSIGNED) AS `CONNECTION_ID()`)"
        );
        // Not a whole item: a plain literal.
        assert_eq!(
            text("SELECT CONNECTION_ID() + 1"),
            "SELECT CAST(0000000042 AS UNSIGNED) + 1"
        );
        assert_eq!(
            text("SELECT CONNECTION_ID() AS me"),
            "SELECT CAST(0000000042 AS UNSIGNED) AS me"
        );
        assert_eq!(
            text("SELECT CONCAT('a', CONNECTION_ID())"),
            "SELECT CONCAT('a', CAST(0000000042 AS UNSIGNED))"
        );
        assert_eq!(
            text("SELECT * FROM t WHERE id IN (1, CONNECTION_ID())"),
            "SELECT * FROM t WHERE id IN (1, CAST(0000000042 AS UNSIGNED))"
        );
        assert_eq!(
            text("SELECT a FROM t ORDER BY a, CONNECTION_ID()"),
            "SELECT a FROM t ORDER BY a, CAST(0000000042 AS UNSIGNED)"
        );
        assert_eq!(
            text("INSERT INTO t VALUES (CONNECTION_ID(), 2)"),
            "INSERT INTO t VALUES (CAST(0000000042 AS UNSIGNED), 2)"
        );
        assert_eq!(
            text("DO CONNECTION_ID()"),
            "DO CAST(0000000042 AS UNSIGNED)"
        );
        // Strings, comments, quoted names and qualified functions are left alone.
        for same in [
            "SELECT 'CONNECTION_ID()'",
            "SELECT 1 /* CONNECTION_ID() */",
            "SELECT `CONNECTION_ID`()",
            "SELECT db.CONNECTION_ID()",
            "SELECT CONNECTION_ID",
        ] {
            assert_eq!(text(same), same);
        }
        // An executable comment runs: rewritten inside it.
        assert_eq!(
            text("SELECT /*!100000 CONNECTION_ID() */"),
            "SELECT /*!100000 CAST(0000000042 AS UNSIGNED) AS `CONNECTION_ID()` */"
        );
    }

    #[test]
    fn the_backend_socket_is_never_named() {
        assert_eq!(
            text("SELECT @@socket"),
            "SELECT CAST(NULL AS CHAR) AS `@@socket`"
        );
        assert_eq!(
            text("select @@global.socket, 1"),
            "select CAST(NULL AS CHAR) AS `@@global.socket`, 1"
        );
        assert_eq!(
            text("SELECT @@SOCKET IS NULL"),
            "SELECT CAST(NULL AS CHAR) IS NULL"
        );
        for same in ["SELECT @socket", "SELECT 'socket'", "SELECT @@port"] {
            assert_eq!(text(same), same);
        }
    }

    #[test]
    fn status_is_read_as_the_server_reads_it() {
        let yes = |sql: &str| shows_status(sql.as_bytes(), &mode());
        for sql in [
            "SHOW STATUS",
            "show session status like 'Compression'",
            "SHOW LOCAL STATUS WHERE Variable_name = 'Compression'",
            "/* a */ SHOW /* b */ STATUS LIKE 'Compr%';",
            "/*!50000 SHOW SESSION STATUS */",
            "SHOW GLOBAL STATUS LIKE 'Compression'",
        ] {
            assert!(yes(sql), "{sql}");
        }
        for sql in [
            "SHOW SLAVE STATUS",
            "SHOW TABLE STATUS",
            "SELECT status FROM t",
            "SHOW STATUS; SELECT 1",
            "SELECT 'SHOW STATUS'",
            "SHOW STATUS x",
        ] {
            assert!(!yes(sql), "{sql}");
        }
    }

    #[test]
    fn kills_are_read_as_the_server_reads_them() {
        let k = |sql: &str| rewrite(sql.as_bytes(), &mode(), 42);
        assert_eq!(
            k("KILL 7"),
            Rewrite::Kill {
                words: String::new(),
                target: 7
            }
        );
        assert_eq!(
            k("kill query 7"),
            Rewrite::Kill {
                words: "QUERY".into(),
                target: 7
            }
        );
        assert_eq!(
            k("KILL HARD CONNECTION 9;"),
            Rewrite::Kill {
                words: "HARD CONNECTION".into(),
                target: 9
            }
        );
        assert_eq!(
            k("KILL /* me */ CONNECTION_ID()"),
            Rewrite::Kill {
                words: String::new(),
                target: 42
            }
        );
        assert_eq!(
            k("KILL QUERY CONNECTION_ID()"),
            Rewrite::Kill {
                words: "QUERY".into(),
                target: 42
            }
        );
        for refused in [
            "KILL USER bob",
            "KILL QUERY ID 5",
            "KILL 1+2",
            "KILL @v",
            "SELECT 1; KILL 5",
            "KILL 5; SELECT 1",
        ] {
            assert!(matches!(k(refused), Rewrite::Refuse(_)), "{refused}");
        }
        // Not KILL statements.
        assert_eq!(k("SELECT 'kill 5'"), Rewrite::Keep);
        assert_eq!(k("SELECT kill FROM t"), Rewrite::Keep);
    }

    #[test]
    fn ids_are_unique_while_live_and_never_handed_out_twice() {
        let s = Arc::new(Sessions::default());
        let a = s.open();
        let b = s.open();
        assert_ne!(a.get(), b.get());
        let old = a.get();
        drop(a);
        let c = s.open();
        assert!(
            c.get() != old && c.get() != b.get(),
            "a reconnect gets a new id"
        );
        // Past the wrap, live ids are skipped.
        s.last.store(u32::MAX - 1, Ordering::Relaxed);
        let d = s.open();
        assert_eq!(d.get(), u32::MAX);
        let e = s.open();
        assert!(e.get() != 0 && e.get() != b.get() && e.get() != c.get());
    }

    #[test]
    fn kill_targets_only_live_sessions_of_the_same_user() {
        let s = Arc::new(Sessions::default());
        let a = s.open();
        a.set_user("ann");
        a.set_backend(1001);
        let b = s.open();
        b.set_user("bob");
        assert_eq!(
            s.kill_target(u64::from(a.get()), "ann")
                .map(|t| t.map(|t| t.0)),
            Ok(Some(1001))
        );
        assert_eq!(
            s.kill_target(u64::from(a.get()), "bob")
                .map(|t| t.map(|t| t.0)),
            Err(KillRefused::NotOwner(u64::from(a.get())))
        );
        assert!(matches!(s.kill_target(u64::from(b.get()), "bob"), Ok(None)));
        assert_eq!(
            s.kill_target(999, "ann").map(|t| t.map(|t| t.0)),
            Err(KillRefused::Unknown(999))
        );
        assert_eq!(
            s.kill_target(1 << 40, "ann").map(|t| t.map(|t| t.0)),
            Err(KillRefused::Unknown(1 << 40))
        );
        let gone = a.get();
        drop(a);
        assert_eq!(
            s.kill_target(u64::from(gone), "ann")
                .map(|t| t.map(|t| t.0)),
            Err(KillRefused::Unknown(u64::from(gone)))
        );
    }
}
