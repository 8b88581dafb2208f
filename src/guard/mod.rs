//! guard: the one place that decides what happens to a statement — pass it untouched,
//! refuse it, or protect it (rewrite its literals, transform its results).
//!
//! ```text
//! text ─ lex (session's sql_mode and charset, as the server reports them) ─ statements
//!   each statement: SET/USE effects on the lexer (a later statement is lexed again)
//!                   myveil's own schema?                         → refuse (1044)
//!                   can it reach protected data? (names a protected database, a table
//!                   protected everywhere, a protected table of the current database, a
//!                   view/routine/trigger over one, or runs SQL built at run time)
//!                       no  → untouched
//!                       yes → by kind: analyze (sql::analyze) | DDL allowlist | refuse
//! edits of every statement → one rewritten text; result shapes per statement
//! ```
//! `decide` is pure: session state, policy, schema snapshot and keys in, a `Decision` out.

mod ddl;
mod error;
mod plan;
pub mod reach;
mod statement;

use std::borrow::Cow;
use std::collections::HashMap;

pub use error::Refusal;
pub use reach::Reach;
pub use statement::lex_mode;
use statement::{StatementKind, Stmt, set_effect};

use crate::backend::schema::Snapshot;
use crate::backend::state::{ModeFlags, SessionState, SqlMode};
use crate::policy::Policy;
use crate::sql::analyze::{Analyzer, Edit, Lit, Shape};
use crate::sql::charset::Charset;
use crate::sql::lex::{self, Kind, Lexed};
use crate::sql::rewrite::{ParamUse, Sealer};
use crate::sql::view::{Unit, View, statements};

/// Longest statement analyzed; longer ones that reach protected data are refused.
pub const DEFAULT_MAX_ANALYZED_BYTES: usize = 4 << 20;
/// Most operators in one analyzed statement (bounds the depth of its syntax tree).
const MAX_OPERATORS: usize = 1_000;
/// Most set operations and joins in one analyzed statement: sqlparser chains them without
/// counting them against its recursion limit, and the tree is as deep as the chain.
const MAX_CHAINED: usize = 256;
/// Most tokens read in one text (about 64 MiB of tokens at most).
const MAX_LEXED_TOKENS: usize = 2_000_000;
/// Most changes of sql_mode or the character set in one text (each re-reads the rest).
const MAX_RELEX: usize = 16;
/// Most tokens in one analyzed statement.
const MAX_TOKENS: usize = 1_000_000;

/// The command a text came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// COM_QUERY (possibly several statements).
    Query,
    /// COM_STMT_PREPARE (one statement, `?` markers).
    Prepare,
}

/// A SQL-level prepared statement (`PREPARE name FROM '…'`) as the guard left it.
#[derive(Debug, Clone, Default)]
pub struct SqlPrepared {
    /// Where each backend parameter comes from, when the statement is protected.
    pub uses: Option<Vec<ParamUse>>,
    pub shape: Option<Shape>,
    /// Running it changes the database, sql_mode or the client character set.
    pub changes_state: bool,
    /// The schema layout it was planned under (`Snapshot::layout`).
    pub layout: u64,
}

/// Everything a decision depends on.
pub struct Context<'a> {
    pub state: &'a SessionState,
    pub policy: &'a Policy,
    pub schema: &'a Snapshot,
    pub reach: &'a Reach,
    pub role: &'a str,
    /// The server's version as `/*!NNNNN` compares it (e.g. 101119).
    pub server_version: u32,
    /// myveil's own schema (token store), never reachable through the proxy.
    pub store_schema: Option<&'a str>,
    pub sealer: &'a dyn Sealer,
    pub sql_prepared: &'a HashMap<String, SqlPrepared>,
    pub max_analyzed_bytes: usize,
    /// The session's cache of decisions that needed no rewrite (None: no cache).
    pub cache: Option<&'a std::sync::Mutex<ShapeCache>>,
}

/// A session's decisions for statements whose analysis needed no rewrite and read no
/// literal's value, by the statement's form with its literals left out: a repeated read
/// (`SELECT c FROM t WHERE id = 5`, then `… id = 6`) skips the parser. Valid for one policy,
/// schema snapshot, role and server version; the key holds the lexing state and every token
/// (kind, flags and bytes) but literals, so two statements share an entry only when they
/// differ in literals alone, and the analysis did not look at them.
#[derive(Debug, Default)]
pub struct ShapeCache {
    valid_for: Option<(String, u64, String, u32)>,
    entries: HashMap<Vec<u8>, std::sync::Arc<Cached>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
struct Cached {
    shape: Option<Shape>,
    protected: bool,
    /// The rewrite, without its values (empty: none).
    plan: plan::Template,
    /// Statements its cache decided from a plan: the cache's own counter, counted through
    /// the entry so that a hit needs no second lock.
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Most entries of a cache (one per role, shared by its sessions), and the longest statement
/// it keeps.
const CACHE_ENTRIES: usize = 1024;
const CACHE_STATEMENT_BYTES: usize = 2048;

impl ShapeCache {
    /// Statements decided from a plan.
    #[cfg(test)]
    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Empties the cache when what its entries were decided under has changed.
    fn check(&mut self, cx: &Context<'_>) {
        let same = self.valid_for.as_ref().is_some_and(|(p, s, r, v)| {
            *p == cx.reach.version
                && *s == cx.schema.generation
                && r == cx.role
                && *v == cx.server_version
        });
        if !same {
            self.entries.clear();
            self.valid_for = Some((
                cx.reach.version.clone(),
                cx.schema.generation,
                cx.role.to_owned(),
                cx.server_version,
            ));
        }
    }
}

/// The cache key of tokens `[from, …)` of a statement under a lexing state (None: too long).
fn cache_key(s: &Stmt<'_>, from: usize, state: &LexState<'_>, prepare: bool) -> Option<Vec<u8>> {
    if s.len() == 0 {
        return None;
    }
    let (a, b) = s.bytes(0, s.len());
    if b - a > CACHE_STATEMENT_BYTES {
        return None;
    }
    let database = state.database.as_deref().unwrap_or("\0");
    let state_len = database.len() + state.sql_mode.text.len() + state.charset.len();
    // Every length is written in 16 bits: no key for a state longer than that.
    if state_len > CACHE_STATEMENT_BYTES {
        return None;
    }
    // The text, four bytes per token (kind, flags, length) and the state: never grown.
    let mut k = Vec::with_capacity(b - a + 4 * s.len() + state_len + 16);
    let part = |k: &mut Vec<u8>, bytes: &[u8]| {
        k.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        k.extend_from_slice(bytes);
    };
    part(&mut k, database.as_bytes());
    part(&mut k, state.sql_mode.text.as_bytes());
    part(&mut k, state.charset.as_bytes());
    k.push(u8::from(prepare));
    k.extend_from_slice(&(from as u32).to_le_bytes());
    for i in 0..s.len() {
        let t = s.token(i)?;
        k.push(t.kind as u8);
        // Which tokens share an executable comment (a rewrite may not cross one's edge).
        let same_comment = i > 0 && s.token(i - 1).is_some_and(|p| p.exec_group == t.exec_group);
        k.push(
            u8::from(t.gap_before)
                | u8::from(t.after_dot) << 1
                | u8::from(t.in_exec) << 2
                | u8::from(same_comment) << 3,
        );
        match t.kind {
            // Security: no literal's value is kept in a key (nor in a plan: guard::plan).
            Kind::Str | Kind::NStr | Kind::Hex | Kind::Bit | Kind::Number => {}
            _ => part(&mut k, t.text(s.src)),
        }
    }
    Some(k)
}

/// Bookkeeping the session applies with a decision.
#[derive(Debug, Clone)]
pub enum Effect {
    Prepared(String, SqlPrepared),
    Deallocated(String),
}

/// What to do with a command's text.
#[derive(Debug)]
pub enum Outcome {
    /// Relay it untouched.
    Pass,
    Refuse(Refusal),
    /// Relay `text` (None: the client's own) and transform results by `shapes`.
    Protect(Protected),
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    pub fn is_refuse(&self) -> bool {
        matches!(self, Outcome::Refuse(_))
    }
}

#[derive(Debug)]
pub struct Protected {
    pub text: Option<Vec<u8>>,
    /// One per statement (COM_QUERY), or the prepared statement's (COM_STMT_PREPARE).
    pub shapes: Vec<Option<Shape>>,
    /// COM_STMT_PREPARE: where each backend parameter comes from.
    pub params: Vec<ParamUse>,
    /// COM_STMT_PREPARE: the parameters the client sees.
    pub client_params: usize,
    /// It changes the schema of protected tables: the snapshot is read again after it.
    pub schema_changed: bool,
}

#[derive(Debug)]
pub struct Decision {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}

impl Decision {
    fn pass() -> Self {
        Decision {
            outcome: Outcome::Pass,
            effects: Vec::new(),
        }
    }

    fn refuse(r: Refusal) -> Self {
        Decision {
            outcome: Outcome::Refuse(r),
            effects: Vec::new(),
        }
    }
}

/// Whether protection is on at all (columns protected or a store schema to keep away).
pub fn needed(policy: &Policy, store_schema: Option<&str>) -> bool {
    !policy.columns().is_empty() || store_schema.is_some()
}

/// The lexing state a statement starts in (it changes along a multi-statement text).
/// It borrows the session's state until a statement of the text changes it (no copy per
/// statement).
#[derive(Debug, Clone)]
struct LexState<'s> {
    database: Option<Cow<'s, str>>,
    sql_mode: Cow<'s, SqlMode>,
    charset: Cow<'s, str>,
}

/// One statement's part of the decision.
#[derive(Default)]
struct UnitResult<'p> {
    edits: Vec<Edit<'p>>,
    shape: Option<Shape>,
    protected: bool,
    /// A CALL: its results cannot be counted.
    call: bool,
    /// DDL on a protected table.
    ddl: bool,
}

/// Decides what to do with `text`.
pub fn decide(text: &[u8], command: Command, cx: &Context<'_>) -> Decision {
    match Decider::new(cx).run(text, command) {
        Ok(d) => d,
        Err(r) => Decision::refuse(r),
    }
}

struct Decider<'c, 'a> {
    cx: &'c Context<'a>,
    active: bool,
    effects: Vec<Effect>,
}

impl<'c, 'a> Decider<'c, 'a> {
    fn new(cx: &'c Context<'a>) -> Self {
        Self {
            cx,
            active: !cx.policy.columns().is_empty(),
            effects: Vec::new(),
        }
    }

    fn run(mut self, text: &[u8], command: Command) -> Result<Decision, Refusal> {
        if !needed(self.cx.policy, self.cx.store_schema) {
            return Ok(Decision::pass());
        }
        if !self.cx.state.known {
            return Err(Refusal::not_supported(
                "the session's state is not known; reconnect",
            ));
        }
        let mut state = LexState {
            database: self.cx.state.database.as_deref().map(Cow::Borrowed),
            sql_mode: Cow::Borrowed(&self.cx.state.sql_mode),
            charset: Cow::Borrowed(&self.cx.state.client_charset),
        };
        let prepare = command == Command::Prepare;
        let mut edits: Vec<Edit<'a>> = Vec::new();
        let mut shapes = Vec::new();
        let mut protected = false;
        let mut calls = false;
        let mut ddl = false;
        let mut params = Vec::new();
        let mut pos = 0;
        let mut relexed = 0usize;
        'text: while pos < text.len() {
            let rest = &text[pos..];
            let charset = self.charset(&state.charset)?;
            let mode = lex_mode(charset, &state.sql_mode, self.cx.server_version, prepare);
            // Every text is lexed (to know what it reaches), and tokens take memory (32 bytes
            // each): a text of more tokens than that bound is refused. Its length alone is
            // not (a 16 MiB string literal is one token); large texts are lexed a few at a
            // time (the session's analysis slots).
            let lexed = lex::lex_bounded(rest, &mode, MAX_LEXED_TOKENS).map_err(|e| match e {
                lex::LexError::TooManyTokens { limit } => Refusal::not_supported(format!(
                    "a query of more than {limit} tokens is more than myveil reads while columns are protected; split it"
                )),
                e => Refusal::Syntax {
                    message: format!("cannot read the statement: {e}"),
                },
            })?;
            let units = statements(rest, &lexed).map_err(|at| Refusal::Syntax {
                message: format!("';' inside an executable comment at byte {}", pos + at),
            })?;
            if prepare && units.len() > 1 {
                // The server refuses several statements in one prepare.
                return Ok(Decision::pass());
            }
            for (k, unit) in units.iter().enumerate() {
                let stmt = Stmt {
                    src: rest,
                    tokens: &lexed.tokens,
                    unit: *unit,
                    mode,
                };
                let before = lexing(&state);
                let mut unknown = false;
                let r = self.unit(&stmt, &lexed, &mut state, &mut unknown, prepare)?;
                if r.protected && calls {
                    return Err(Refusal::not_supported(
                        "a CALL before a statement on protected data in one query is not supported; send them separately",
                    ));
                }
                // The whole text is decided on one schema snapshot: after a schema change,
                // what follows would be read against columns that may have moved.
                if r.protected && ddl {
                    return Err(Refusal::not_supported(
                        "a statement on protected data after a schema change in one query is not supported; send them separately",
                    ));
                }
                calls |= r.call;
                ddl |= r.ddl;
                protected |= r.protected;
                if edits.is_empty() && pos == 0 {
                    // The usual single statement: its edits as they are.
                    edits = r.edits;
                } else {
                    for mut e in r.edits {
                        e.start += pos;
                        e.end += pos;
                        edits.push(e);
                    }
                }
                shapes.push(r.shape);
                if prepare {
                    params = lexed
                        .tokens
                        .iter()
                        .filter(|t| t.kind == Kind::Param)
                        .map(|t| t.start + pos)
                        .collect();
                }
                let more = k + 1 < units.len();
                if unknown && more {
                    return Err(Refusal::not_supported(
                        "a statement that changes sql_mode or the character set in a way myveil cannot read must be the last of a multi-statement query",
                    ));
                }
                let relex = before != lexing(&state);
                if more && relex {
                    // Each change re-reads the rest of the text: bounded, so work stays
                    // linear in the text's length.
                    relexed += 1;
                    if relexed > MAX_RELEX {
                        return Err(Refusal::not_supported(format!(
                            "more than {MAX_RELEX} changes of sql_mode or the character set in one query; send them separately"
                        )));
                    }
                    // The rest is read under the new mode: lex it again from the next statement.
                    let sep = lexed.tokens.get(unit.last).map_or(rest.len(), |t| t.end);
                    pos += sep;
                    continue 'text;
                }
            }
            break;
        }
        if !protected && !ddl {
            return Ok(Decision {
                outcome: Outcome::Pass,
                effects: self.effects,
            });
        }
        edits.sort_by_key(|e| (e.start, e.end));
        let rendered = if edits.is_empty() {
            None
        } else {
            Some(
                crate::sql::rewrite::render(text, &edits, &params, self.cx.sealer)
                    .map_err(Refusal::from)?,
            )
        };
        let client_params = params.len();
        let (text, params) = match rendered {
            Some(r) => (Some(r.sql), r.params),
            None => (None, (0..client_params).map(ParamUse::Plain).collect()),
        };
        Ok(Decision {
            outcome: Outcome::Protect(Protected {
                text,
                shapes,
                params,
                client_params,
                schema_changed: ddl,
            }),
            effects: self.effects,
        })
    }

    fn charset(&self, name: &str) -> Result<&'static Charset, Refusal> {
        Charset::named(name).ok_or_else(|| {
            Refusal::not_supported(format!(
                "character set {name} is not supported while columns are protected"
            ))
        })
    }

    /// Decides one statement.
    fn unit(
        &mut self,
        s: &Stmt<'_>,
        lexed: &Lexed,
        state: &mut LexState<'_>,
        unknown: &mut bool,
        prepare: bool,
    ) -> Result<UnitResult<'a>, Refusal> {
        let kind = s.kind();
        // The lexer's state for what follows, whatever the statement reaches.
        match kind {
            StatementKind::Set => {
                let eff = set_effect(s, &state.sql_mode);
                if eff.tracking && self.active {
                    return Err(Refusal::not_supported(
                        "session_track_* variables are managed by myveil while columns are protected",
                    ));
                }
                if let Some(m) = eff.sql_mode {
                    state.sql_mode = Cow::Owned(m);
                }
                if let Some(cs) = eff.charset {
                    state.charset = Cow::Owned(cs);
                }
                *unknown |= eff.unknown;
                if let Some(at) = eff.statement_for {
                    if eff.statement_mode && self.active {
                        return Err(Refusal::not_supported(
                            "SET STATEMENT with sql_mode or a character set is not supported while columns are protected",
                        ));
                    }
                    return self.inner(s, lexed, at, state, prepare);
                }
            }
            StatementKind::Use => {
                if let Some(db) = s.name(1) {
                    self.store_check(&db)?;
                    state.database = Some(Cow::Owned(db));
                }
            }
            StatementKind::Execute => {
                let name = s.name(1);
                match name.as_deref().and_then(|n| self.cx.sql_prepared.get(n)) {
                    Some(p) => *unknown |= p.changes_state,
                    // Prepared where myveil did not see it (by a routine, or before a failed
                    // multi-statement query ended): its text, and what it does, are not known.
                    None if self.active => {
                        return Err(Refusal::not_supported(
                            "EXECUTE of a statement myveil did not see prepared in this session is not supported while columns are protected; PREPARE it again",
                        ));
                    }
                    None => *unknown = true,
                }
            }
            StatementKind::ExecuteImmediate => {
                // Its text may change the database, sql_mode or charset for what follows.
                *unknown |= self
                    .literal_text(s, kind)
                    .is_none_or(|(inner, _, _)| changes_state(&inner, state, self.cx));
            }
            _ => {}
        }
        if let Some(store) = self.cx.store_schema
            && s.names_any(&|n| n.eq_ignore_ascii_case(store))
        {
            return Err(Refusal::StoreSchema {
                schema: store.to_ascii_lowercase(),
            });
        }
        if !self.active {
            // Only the store schema to keep away: literals of dynamic SQL are read too.
            return self.store_dynamic(s, state);
        }
        if state.sql_mode.has(ModeFlags::ORACLE) {
            let reach = self.reaches(s, state);
            if reach {
                return Err(Refusal::not_supported(
                    "sql_mode ORACLE is not supported on protected data",
                ));
            }
        }
        // SQL built or prepared elsewhere is decided whatever this text names.
        let dynamic = match kind {
            StatementKind::Prepare | StatementKind::ExecuteImmediate => true,
            StatementKind::Execute => s
                .name(1)
                .and_then(|n| self.cx.sql_prepared.get(&n))
                .is_some_and(|p| p.uses.is_some()),
            _ => false,
        };
        // A stored program's body (or a compound statement) runs later or as one: SQL built at
        // run time, tracking changes, and changes of how text is read have no place in it.
        // (Were a unit taken for a program wrongly, it would also hold every statement after
        // it in the text: those words are refused there too.)
        if matches!(kind, StatementKind::Compound | StatementKind::CreateObject)
            && (0..s.len()).any(|i| {
                s.word(i, "prepare")
                    || s.word(i, "execute")
                    || s.name(i).is_some_and(|n| {
                        n.starts_with("session_track_")
                            || n == "sql_mode"
                            || n.starts_with("character_set_")
                            || n.starts_with("collation_")
                    })
                    || (s.word(i, "set")
                        && (s.word(i + 1, "names")
                            || s.word(i + 1, "charset")
                            || (s.word(i + 1, "character") && s.word(i + 2, "set"))))
                    || (s.word(i, "use")
                        && i > 0
                        && s.token(i - 1).is_some_and(|t| t.kind == Kind::Semicolon))
            })
        {
            return Err(Refusal::not_supported(
                "a stored program or compound statement that runs SQL built at run time or changes how statements are read cannot be created or run through myveil while columns are protected",
            ));
        }
        // Ways to reach tables by a name in a string or through a server of its own, which
        // no reading of the statement can follow.
        if reaches_by_string(s) {
            return Err(Refusal::not_supported(
                "FEDERATED, CONNECT and SPIDER tables, CREATE SERVER and INSTALL are not supported through myveil while columns are protected",
            ));
        }
        if !dynamic && !self.reaches(s, state) {
            return Ok(UnitResult {
                call: kind == StatementKind::Call,
                // Views, routines and triggers anywhere may come to reach protected data:
                // the snapshot is read again before the session goes on.
                ddl: defines_object(s),
                ..UnitResult::default()
            });
        }
        // A statement of a form decided before under the same key: its plan, without the
        // checks that follow. Security: a plan is made only for a statement that passed them
        // all, and they read nothing but its tokens (kinds, flags and every byte but
        // literals'), the lexing state, the policy and the snapshot, all in the key or the
        // cache's validity; its length, which literals change, is checked again.
        let mut key = None;
        if matches!(
            kind,
            StatementKind::Query
                | StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
        ) && let Some(cache) = self.cx.cache
            && let Some(k) = cache_key(s, 0, state, prepare)
        {
            if let Some(r) = self.cached(cache, &k, s, state)? {
                return Ok(r);
            }
            key = Some((cache, k));
        }
        // After the cache: a plan is made only for a statement that passed, and the names
        // and the snapshot this reads are in its key.
        reserved(s, kind, self.cx.schema, state.database.as_deref())?;
        self.bounds(s)?;
        let writes = matches!(
            kind,
            StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
                | StatementKind::Call
                | StatementKind::Do
        ) || (matches!(kind, StatementKind::Explain(_)) && s.word(0, "analyze"));
        let database = state.database.as_deref();
        self.dependents(s, writes, database)?;
        if !self.cx.reach.computed.is_empty()
            && let Some(c) = (0..s.len())
                .filter_map(|i| s.name(i))
                .find(|n| self.cx.reach.computed.contains(n))
            && let Some((db, t, col, from)) =
                self.cx.schema.computed.iter().find(|(_, _, x, _)| *x == c)
        {
            return Err(Refusal::not_supported(format!(
                "{db}.{t}.{col} is generated from the protected column {from}: the server computes it from ciphertext; drop it or compute it in the application"
            )));
        }
        match kind {
            StatementKind::Query
            | StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete => self.analyze_cached(s, lexed, state, key),
            StatementKind::Explain(at) => {
                let mut r = self.analyze(s, lexed, at, state, prepare)?;
                r.shape = None;
                Ok(r)
            }
            StatementKind::Metadata
            | StatementKind::NoData
            | StatementKind::Use
            | StatementKind::Empty => {
                if (0..s.len()).any(|i| s.word(i, "select")) {
                    return Err(Refusal::not_supported(
                        "this statement holds a query over protected data myveil cannot analyze",
                    ));
                }
                ddl::drop_table(s, self.cx.policy, database, self.cx.role)?;
                // DROP, TRUNCATE, CREATE INDEX …: the snapshot follows.
                let ddl = kind == StatementKind::NoData
                    && (s.word(0, "drop") || s.word(0, "create") || s.word(0, "truncate"));
                Ok(UnitResult {
                    protected: ddl,
                    ddl,
                    ..UnitResult::default()
                })
            }
            StatementKind::AlterTable => {
                ddl::alter_table(s, self.cx.policy, database)?;
                Ok(UnitResult {
                    protected: true,
                    ddl: true,
                    ..UnitResult::default()
                })
            }
            StatementKind::CreateTable => match ddl::create_table(s, self.cx.policy, database)? {
                ddl::CreateTable::Plain => Ok(UnitResult {
                    protected: true,
                    ddl: true,
                    ..UnitResult::default()
                }),
                ddl::CreateTable::Select(at) => {
                    let mut r = self.analyze(s, lexed, at, state, prepare)?;
                    if r.shape.as_ref().is_some_and(|sh| !sh.is_plain()) {
                        return Err(Refusal::not_supported(
                            "copying encrypted columns into a new table is not supported",
                        ));
                    }
                    r.shape = None;
                    Ok(r)
                }
            },
            StatementKind::RenameTable => {
                ddl::rename_table(s, self.cx.policy, database)?;
                Ok(UnitResult {
                    protected: true,
                    ddl: true,
                    ..UnitResult::default()
                })
            }
            StatementKind::Prepare => self.prepare(s, state),
            StatementKind::ExecuteImmediate => self.execute_immediate(s, state),
            StatementKind::Execute => self.execute(s),
            StatementKind::Deallocate => {
                if let Some(name) = s.name(2) {
                    self.effects.push(Effect::Deallocated(name));
                }
                Ok(UnitResult::default())
            }
            StatementKind::Set => Err(Refusal::not_supported(
                "a SET that reads protected data is not supported",
            )),
            StatementKind::Call => Err(Refusal::not_supported(
                "this routine reaches protected data where myveil cannot see it; use the protected table itself",
            )),
            StatementKind::CreateObject => Err(Refusal::not_supported(
                "views, routines, triggers and events over protected data are not created through myveil; create them on the database directly",
            )),
            StatementKind::Bulk => Err(Refusal::not_supported(
                "LOAD DATA and HANDLER on protected tables are not supported",
            )),
            StatementKind::Compound => Err(Refusal::not_supported(
                "compound statements on protected data are not supported",
            )),
            StatementKind::Do | StatementKind::Other => Err(Refusal::not_supported(
                "this kind of statement is not supported where protected data is reachable",
            )),
        }
    }

    /// Whether a statement can reach protected data by what it names.
    fn reaches(&self, s: &Stmt<'_>, state: &LexState<'_>) -> bool {
        let db = state.database.as_deref();
        let reach = self.cx.reach;
        let current = reach.tables_of(db);
        if s.names_any(&|n| reach.names(n, current)) {
            return true;
        }
        // A view, routine or trigger table over protected data, named with its database
        // (`db.v`, or `v` while `db` is current): another database's object of the same
        // name does not reach it.
        if !reach.dependent_names.is_empty()
            && s.names_any(&|n| reach.dependent_names.contains(n))
            && reach
                .dependents
                .iter()
                .any(|(d, n)| s.names_object(d, n, db))
        {
            return true;
        }
        // A non-ASCII name in a character set myveil cannot read could be a protected one.
        self.cx.reach.non_ascii
            && !s.mode.charset.converts_to_utf8()
            && (0..s.len()).any(|i| {
                s.token(i).is_some_and(|t| {
                    matches!(t.kind, Kind::Word | Kind::Quoted) && !t.text(s.src).is_ascii()
                })
            })
    }

    /// Whether a name of the statement is a protected table: `db.t` with a protected `t` of
    /// `db`, or an unqualified `t` of the current database or of every database.
    fn names_protected_table(&self, s: &Stmt<'_>, state: &LexState<'_>) -> bool {
        let reach = self.cx.reach;
        let current = state.database.as_deref().map(str::to_ascii_lowercase);
        (0..s.len()).any(|i| {
            s.with_name(i, |n| {
                let dotted = i >= 2 && s.token(i - 1).is_some_and(|t| t.kind == Kind::Dot);
                let in_db = |db: &str| reach.tables.get(db).is_some_and(|t| t.contains(n));
                reach.anywhere.contains(n)
                    || if dotted {
                        s.with_name(i - 2, in_db) == Some(true)
                    } else {
                        current.as_deref().is_some_and(in_db)
                    }
            }) == Some(true)
        })
    }

    /// Refuses a routine or a trigger table that reaches protected data where myveil cannot
    /// see: statements naming them (routines) or writing them (tables with such triggers).
    fn dependents(&self, s: &Stmt<'_>, write: bool, database: Option<&str>) -> Result<(), Refusal> {
        // Most statements name none of them: one pass over the names decides that.
        let names = &self.cx.reach.dependent_names;
        if names.is_empty() || !s.names_any(&|n| names.contains(n)) {
            return Ok(());
        }
        // The current database's objects first, so the message names the right one.
        let here = |d: &&crate::backend::schema::Dependent| {
            database.is_some_and(|db| d.database.eq_ignore_ascii_case(db))
        };
        let deps = &self.cx.schema.dependents;
        for d in deps
            .iter()
            .filter(here)
            .chain(deps.iter().filter(|d| !here(d)))
        {
            // Views are read through (the analysis follows their columns); nothing is
            // written through one that reaches protected data.
            let relevant = match d.kind.as_str() {
                "view" => write || d.reads_refused,
                "trigger" => write,
                _ => true,
            };
            if !relevant {
                continue;
            }
            let name = d
                .on_table
                .as_deref()
                .unwrap_or(&d.name)
                .to_ascii_lowercase();
            if s.names_object(&d.database.to_ascii_lowercase(), &name, database) {
                return Err(Refusal::NotSupported {
                    message: d.refusal(),
                });
            }
        }
        Ok(())
    }

    fn store_check(&self, name: &str) -> Result<(), Refusal> {
        match self.cx.store_schema {
            Some(store) if store.eq_ignore_ascii_case(name) => Err(Refusal::StoreSchema {
                schema: store.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Without protected columns: the literals of dynamic SQL may still name the store.
    fn store_dynamic(
        &mut self,
        s: &Stmt<'_>,
        state: &LexState<'_>,
    ) -> Result<UnitResult<'a>, Refusal> {
        let kind = s.kind();
        if matches!(
            kind,
            StatementKind::Prepare | StatementKind::ExecuteImmediate
        ) && let Some((inner, _, _)) = self.literal_text(s, kind)
        {
            let d = Decider::new(self.cx).run_inner(&inner, state)?;
            let _ = d;
        } else if matches!(
            kind,
            StatementKind::Prepare | StatementKind::ExecuteImmediate
        ) {
            return Err(Refusal::not_supported(
                "SQL built at run time cannot be checked; use a string literal",
            ));
        }
        Ok(UnitResult::default())
    }

    /// Runs the whole decision on an inner text (a PREPARE or EXECUTE IMMEDIATE literal)
    /// in the current lexing state.
    fn run_inner(self, inner: &[u8], state: &LexState<'_>) -> Result<Decision, Refusal> {
        let mut st = self.cx.state.clone();
        st.database = state.database.as_deref().map(str::to_owned);
        st.sql_mode = state.sql_mode.clone().into_owned();
        st.client_charset = state.charset.clone().into_owned();
        let cx = Context {
            state: &st,
            policy: self.cx.policy,
            schema: self.cx.schema,
            reach: self.cx.reach,
            role: self.cx.role,
            server_version: self.cx.server_version,
            store_schema: self.cx.store_schema,
            sealer: self.cx.sealer,
            sql_prepared: self.cx.sql_prepared,
            max_analyzed_bytes: self.cx.max_analyzed_bytes,
            cache: self.cx.cache,
        };
        Decider::new(&cx).run(inner, Command::Prepare)
    }

    /// Token-level bounds before the parser sees a statement.
    /// Refuses a statement longer than myveil analyzes.
    fn length_bound(&self, s: &Stmt<'_>) -> Result<(), Refusal> {
        let (start, end) = if s.len() > 0 {
            s.bytes(0, s.len())
        } else {
            (0, 0)
        };
        if end - start > self.cx.max_analyzed_bytes || s.len() > MAX_TOKENS {
            return Err(Refusal::not_supported(format!(
                "statement of {} bytes on protected data is over the {} bytes myveil analyzes; split it",
                end - start,
                self.cx.max_analyzed_bytes
            )));
        }
        Ok(())
    }

    fn bounds(&self, s: &Stmt<'_>) -> Result<(), Refusal> {
        self.length_bound(s)?;
        const BINARY: &[&str] = &[
            "+", "-", "*", "/", "%", "=", "<", ">", "<=", ">=", "<>", "!=", "<=>", "&&", "||", "&",
            "|", "^", "<<", ">>", "!", "~", ":=",
        ];
        let mut ops = 0usize;
        let mut chained = 0usize;
        let mut depth = 0usize;
        for i in 0..s.len() {
            let Some(t) = s.token(i) else { break };
            match t.kind {
                Kind::Op => {
                    let text = t.text(s.src);
                    if text == b"(" {
                        depth += 1;
                        if depth > crate::sql::analyze::MAX_DEPTH / 2 {
                            return Err(Refusal::not_supported(
                                "statement nested too deep to analyze",
                            ));
                        }
                    } else if text == b")" {
                        depth = depth.saturating_sub(1);
                    } else if BINARY.iter().any(|b| b.as_bytes() == text) {
                        // A sign right before a number in a list is part of that literal.
                        let signed = matches!(text, b"-" | b"+")
                            && s.token(i + 1).is_some_and(|n| n.kind == Kind::Number)
                            && (i == 0 || s.op(i - 1, ",") || s.op(i - 1, "("));
                        if !signed {
                            ops += 1;
                        }
                    }
                }
                Kind::Word => {
                    let w = t.text(s.src);
                    if [
                        "and", "or", "xor", "not", "div", "mod", "is", "like", "between", "in",
                    ]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
                    {
                        ops += 1;
                    }
                    if ["union", "intersect", "except", "join", "select"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
                    {
                        chained += 1;
                        if chained > MAX_CHAINED {
                            return Err(Refusal::not_supported(format!(
                                "statement with more than {MAX_CHAINED} queries, set operations and joins is too complex to analyze"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        if ops > MAX_OPERATORS {
            return Err(Refusal::not_supported(format!(
                "statement with {ops} operators is too complex to analyze (limit {MAX_OPERATORS})"
            )));
        }
        Ok(())
    }

    /// Analyzes a statement, or takes the decision the session's cache holds for its form.
    /// The decision of a statement from the plan of an earlier one of its form (None: no
    /// plan, or one of its literals reads differently).
    fn cached(
        &self,
        cache: &std::sync::Mutex<ShapeCache>,
        key: &[u8],
        s: &Stmt<'_>,
        state: &LexState<'_>,
    ) -> Result<Option<UnitResult<'a>>, Refusal> {
        let hit = {
            let mut c = cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.check(self.cx);
            c.entries.get(key).cloned()
        };
        let Some(hit) = hit else { return Ok(None) };
        self.length_bound(s)?;
        // Replayed outside the lock (the cache may be shared by many sessions).
        let empty_string_is_null = state.sql_mode.has(ModeFlags::EMPTY_STRING_IS_NULL);
        let Some(edits) = hit.plan.replay(
            self.cx.policy,
            s.src,
            s.tokens,
            s.unit.first,
            &s.mode,
            empty_string_is_null,
        ) else {
            return Ok(None);
        };
        hit.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::telemetry::metrics::METRICS.plan(true);
        Ok(Some(UnitResult {
            shape: hit.shape.clone(),
            protected: hit.protected,
            edits,
            ..UnitResult::default()
        }))
    }

    /// Analyzes a statement, and keeps its plan under `key` when it has one.
    fn analyze_cached(
        &mut self,
        s: &Stmt<'_>,
        lexed: &Lexed,
        state: &LexState<'_>,
        key: Option<(&std::sync::Mutex<ShapeCache>, Vec<u8>)>,
    ) -> Result<UnitResult<'a>, Refusal> {
        let Some((cache, key)) = key else {
            return self.analyze(s, lexed, 0, state, false);
        };
        crate::telemetry::metrics::METRICS.plan(false);
        let (r, flows, values_decide) = self.analyze_from(s, lexed, 0, state)?;
        let plan = if values_decide {
            None
        } else {
            let tokens = &s.tokens[s.unit.first..s.unit.last];
            plan::Template::of(&r.edits, &flows, self.cx.policy, tokens, s.unit.first)
        };
        if let Some(plan) = plan {
            let mut c = cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Security: a cache shared by sessions may have moved on to another policy or
            // snapshot since the lookup; the plan goes in only under what it was made under.
            c.check(self.cx);
            if c.entries.len() >= CACHE_ENTRIES {
                c.entries.clear();
            }
            let hits = c.hits.clone();
            c.entries.insert(
                key,
                std::sync::Arc::new(Cached {
                    shape: r.shape.clone(),
                    protected: r.protected,
                    plan,
                    hits,
                }),
            );
        }
        Ok(r)
    }

    /// Analyzes tokens `[from, …)` of a statement as one statement.
    fn analyze(
        &mut self,
        s: &Stmt<'_>,
        lexed: &Lexed,
        from: usize,
        state: &LexState<'_>,
        _prepare: bool,
    ) -> Result<UnitResult<'a>, Refusal> {
        self.analyze_from(s, lexed, from, state).map(|(r, _, _)| r)
    }

    /// Analyzes tokens `[from, …)`; also where its literal values went, and whether a value
    /// decided more than that (for the plan cache).
    fn analyze_from(
        &mut self,
        s: &Stmt<'_>,
        lexed: &Lexed,
        from: usize,
        state: &LexState<'_>,
    ) -> Result<(UnitResult<'a>, Vec<crate::sql::analyze::Flow>, bool), Refusal> {
        let unit = Unit {
            first: s.unit.first + from,
            last: s.unit.last,
            compound: false,
        };
        let view = View::of(s.src, lexed, unit, s.mode)
            .map_err(|e| Refusal::not_supported(e.to_string()))?;
        let analyzer = Analyzer {
            policy: self.cx.policy,
            database: state.database.as_deref(),
            role: self.cx.role,
            schema: self.cx.schema,
            high_not_precedence: state.sql_mode.has(ModeFlags::HIGH_NOT_PRECEDENCE),
            empty_string_is_null: state.sql_mode.has(ModeFlags::EMPTY_STRING_IS_NULL),
        };
        let a = analyzer.analyze(&view).map_err(Refusal::from)?;
        // A write that names a protected table yet, as parsed, touches nothing protected was
        // read differently from the server (a modifier taken for the table, say): refused.
        if !a.protected
            && matches!(
                s.kind(),
                StatementKind::Insert | StatementKind::Update | StatementKind::Delete
            )
            && self.names_protected_table(s, state)
        {
            return Err(Refusal::not_supported(
                "this write names a protected table in a form myveil cannot analyze",
            ));
        }
        // Under PIPES_AS_CONCAT the parser's reading of || (a concatenation, binding tighter
        // than comparisons) is the server's; a rewrite around one is still refused, as the two
        // may group its operands differently against arithmetic.
        if state.sql_mode.has(ModeFlags::PIPES_AS_CONCAT) && !a.edits.is_empty() {
            let pipes = (0..s.len()).any(|i| s.op(i, "||"));
            if pipes {
                return Err(Refusal::not_supported(
                    "|| under sql_mode PIPES_AS_CONCAT on protected data is not supported; use CONCAT()",
                ));
            }
        }
        Ok((
            UnitResult {
                protected: a.protected,
                edits: a.edits,
                shape: a.shape,
                call: false,
                ddl: false,
            },
            a.flows,
            a.values_decide,
        ))
    }

    /// A SET STATEMENT's inner statement.
    fn inner(
        &mut self,
        s: &Stmt<'_>,
        lexed: &Lexed,
        at: usize,
        state: &mut LexState<'_>,
        prepare: bool,
    ) -> Result<UnitResult<'a>, Refusal> {
        let inner = Stmt {
            unit: Unit {
                first: s.unit.first + at,
                last: s.unit.last,
                compound: false,
            },
            ..*s
        };
        let mut unknown = false;
        let r = self.unit(&inner, lexed, state, &mut unknown, prepare)?;
        Ok(r)
    }

    /// The text of a PREPARE or EXECUTE IMMEDIATE that is one literal: its bytes, and the
    /// literal's token range in the statement (first, last inclusive).
    fn literal_text(&self, s: &Stmt<'_>, kind: StatementKind) -> Option<(Vec<u8>, usize, usize)> {
        let at = match kind {
            StatementKind::Prepare => {
                if !s.word(2, "from") {
                    return None;
                }
                3
            }
            _ => 2,
        };
        let first = s.token(at)?;
        if first.kind != Kind::Str {
            return None;
        }
        let mut last = at;
        let mut bytes = Vec::new();
        while let Some(t) = s.token(last).filter(|t| t.kind == Kind::Str) {
            bytes.extend_from_slice(&lex::string_value(t.text(s.src), &s.mode)?);
            last += 1;
        }
        let end_ok = match kind {
            StatementKind::Prepare => last == s.len(),
            _ => last == s.len() || s.word(last, "using"),
        };
        end_ok.then_some((bytes, at, last - 1))
    }

    /// `PREPARE name FROM '…'`: the text is decided like a prepare; a protected one is
    /// re-sent rewritten.
    fn prepare(&mut self, s: &Stmt<'_>, state: &LexState<'_>) -> Result<UnitResult<'a>, Refusal> {
        let Some(name) = s.name(1) else {
            return Err(Refusal::not_supported("PREPARE not understood"));
        };
        let Some((inner, first, last)) = self.literal_text(s, StatementKind::Prepare) else {
            return Err(Refusal::not_supported(
                "PREPARE … FROM anything but a string literal cannot be analyzed while columns are protected",
            ));
        };
        let d = Decider::new(self.cx).run_inner(&inner, state)?;
        let changes_state = changes_state(&inner, state, self.cx);
        match d.outcome {
            Outcome::Refuse(r) => Err(r),
            Outcome::Pass => {
                self.effects.push(Effect::Prepared(
                    name,
                    SqlPrepared {
                        uses: None,
                        shape: None,
                        changes_state,
                        layout: self.cx.schema.layout(),
                    },
                ));
                Ok(UnitResult::default())
            }
            Outcome::Protect(p) => {
                self.effects.push(Effect::Prepared(
                    name,
                    SqlPrepared {
                        uses: Some(p.params),
                        shape: p.shapes.into_iter().next().flatten(),
                        changes_state,
                        layout: self.cx.schema.layout(),
                    },
                ));
                let mut edits = Vec::new();
                if let Some(text) = p.text {
                    let (start, end) = s.bytes(first, last + 1);
                    edits.push(Edit {
                        start,
                        end,
                        pieces: vec![crate::sql::analyze::Piece::Raw(quote(&text, &s.mode))],
                    });
                }
                Ok(UnitResult {
                    edits,
                    protected: true,
                    ..UnitResult::default()
                })
            }
        }
    }

    /// `EXECUTE IMMEDIATE '…' [USING …]`: a prepare and an execute in one.
    fn execute_immediate(
        &mut self,
        s: &Stmt<'_>,
        state: &LexState<'_>,
    ) -> Result<UnitResult<'a>, Refusal> {
        let Some((inner, first, last)) = self.literal_text(s, StatementKind::ExecuteImmediate)
        else {
            return Err(Refusal::not_supported(
                "EXECUTE IMMEDIATE of anything but a string literal cannot be analyzed while columns are protected",
            ));
        };
        let d = Decider::new(self.cx).run_inner(&inner, state)?;
        match d.outcome {
            Outcome::Refuse(r) => Err(r),
            Outcome::Pass => Ok(UnitResult::default()),
            Outcome::Protect(p) => {
                let mut edits = Vec::new();
                if let Some(text) = &p.text {
                    let (start, end) = s.bytes(first, last + 1);
                    edits.push(Edit {
                        start,
                        end,
                        pieces: vec![crate::sql::analyze::Piece::Raw(quote(text, &s.mode))],
                    });
                }
                if s.word(last + 1, "using") {
                    edits.extend(self.using(s, last + 2, &p.params)?);
                } else if p.params.iter().any(|u| !matches!(u, ParamUse::Plain(_))) {
                    return Err(Refusal::not_supported("EXECUTE IMMEDIATE without USING"));
                }
                Ok(UnitResult {
                    edits,
                    shape: p.shapes.into_iter().next().flatten(),
                    protected: true,
                    ..UnitResult::default()
                })
            }
        }
    }

    /// `EXECUTE name [USING …]` of a protected SQL-level prepared statement.
    fn execute(&mut self, s: &Stmt<'_>) -> Result<UnitResult<'a>, Refusal> {
        let Some(name) = s.name(1) else {
            return Ok(UnitResult::default());
        };
        let Some(prepared) = self.cx.sql_prepared.get(&name) else {
            return Ok(UnitResult::default());
        };
        let Some(uses) = &prepared.uses else {
            return Ok(UnitResult::default());
        };
        // Security: its text on the server was rewritten for another layout of a migration's
        // shadow window (the old column read, or a shadow gone since).
        if prepared.layout != self.cx.schema.layout() {
            return Err(Refusal::not_supported(
                "the table changed under this prepared statement (a migration step); PREPARE it again",
            ));
        }
        let edits = if s.word(2, "using") {
            self.using(s, 3, uses)?
        } else {
            if uses.iter().any(|u| !matches!(u, ParamUse::Plain(_))) {
                return Err(Refusal::not_supported(
                    "EXECUTE of a protected statement needs USING",
                ));
            }
            Vec::new()
        };
        Ok(UnitResult {
            edits,
            shape: prepared.shape.clone(),
            protected: true,
            ..UnitResult::default()
        })
    }

    /// Rebuilds a USING list (tokens from `at`) for the backend's parameters: literals for
    /// protected columns sealed or indexed, other items passed as written.
    fn using(&self, s: &Stmt<'_>, at: usize, uses: &[ParamUse]) -> Result<Vec<Edit<'a>>, Refusal> {
        // The client's items: token ranges split at top-level commas.
        let mut items: Vec<(usize, usize)> = Vec::new();
        let mut start = at;
        let mut depth = 0usize;
        for i in at..s.len() {
            if s.op(i, "(") {
                depth += 1;
            } else if s.op(i, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && s.op(i, ",") {
                items.push((start, i));
                start = i + 1;
            }
        }
        if start < s.len() {
            items.push((start, s.len()));
        }
        let text_of = |(a, b): (usize, usize)| {
            let (x, y) = s.bytes(a, b);
            String::from_utf8_lossy(&s.src[x..y]).into_owned()
        };
        let literal = |col: &crate::policy::Protected,
                       (a, b): (usize, usize)|
         -> Result<Option<Lit>, Refusal> {
            let toks: Vec<&lex::Token> = (a..b).filter_map(|i| s.token(i)).collect();
            let (neg, toks) = match toks.as_slice() {
                [m, rest @ ..] if m.is_op(s.src, "-") => (true, rest.to_vec()),
                _ => (false, toks),
            };
            match toks.as_slice() {
                [t] if t.kind == Kind::Null || t.is_word(s.src, "null") => Ok(Some(Lit::Null)),
                [t] if matches!(t.kind, Kind::Number) => {
                    let mut v = if neg { b"-".to_vec() } else { Vec::new() };
                    v.extend_from_slice(t.text(s.src));
                    Ok(Some(Lit::Bytes(v)))
                }
                ts if !neg && !ts.is_empty() && ts.iter().all(|t| t.kind == Kind::Str) => {
                    let mut v = Vec::new();
                    for t in ts {
                        v.extend_from_slice(
                            &lex::string_value(t.text(s.src), &s.mode).unwrap_or_default(),
                        );
                    }
                    let text = s.mode.charset.to_utf8(&v).ok_or_else(|| {
                        Refusal::not_supported(format!(
                            "{}: value in a character set that cannot be protected",
                            col.scope()
                        ))
                    })?;
                    Ok(Some(Lit::Bytes(text.as_bytes().to_vec())))
                }
                [t] if matches!(t.kind, Kind::Hex | Kind::Bit) && !neg => {
                    Ok(lex::binary_value(t.text(s.src)).map(Lit::Bytes))
                }
                _ => Ok(None),
            }
        };
        let column = |scope: &str| {
            self.cx
                .policy
                .columns()
                .iter()
                .find(|c| c.key_scope() == scope)
                .ok_or_else(|| {
                    Refusal::not_supported("the policy changed since PREPARE; prepare again")
                })
        };
        let sealer = self.cx.sealer;
        let mut rendered = Vec::with_capacity(uses.len());
        for u in uses {
            let piece = match u {
                ParamUse::Plain(i) => {
                    let item = items.get(*i).ok_or_else(|| {
                        Refusal::not_supported("EXECUTE … USING has too few values")
                    })?;
                    text_of(*item)
                }
                ParamUse::MixedPlain { param, column: c } => {
                    let col = column(c)?;
                    let item = *items.get(*param).ok_or_else(|| {
                        Refusal::not_supported("EXECUTE … USING has too few values")
                    })?;
                    // The plaintext only while the column is mixed (as for COM_STMT_EXECUTE).
                    match literal(col, item)? {
                        Some(Lit::Bytes(b) | Lit::Stored(_, Some(b))) if sealer.mixed(col) => {
                            match crate::sql::rewrite::canonical(col, &b) {
                                Ok(v) => format!("X'{}'", hex::encode(&v)),
                                Err(_) => "NULL".into(),
                            }
                        }
                        _ => "NULL".into(),
                    }
                }
                ParamUse::Seal {
                    param,
                    column: c,
                    row_key,
                    keep,
                } => {
                    let col = column(c)?;
                    let item = *items.get(*param).ok_or_else(|| {
                        Refusal::not_supported("EXECUTE … USING has too few values")
                    })?;
                    let Some(lit) = literal(col, item)? else {
                        return Err(Refusal::not_supported(format!(
                            "{c}: EXECUTE … USING takes literals for encrypted columns"
                        )));
                    };
                    // Security: kept as written only when it opens as this column's envelope.
                    if let (true, Lit::Stored(raw, _)) = (*keep, &lit)
                        && sealer.open(col, raw, None).is_some()
                    {
                        rendered.push(crate::sql::rewrite::stored_literal(col, raw));
                        continue;
                    }
                    let key = match row_key {
                        None => None,
                        Some(crate::sql::rewrite::RowKey::Literal(k)) => Some(k.clone()),
                        Some(crate::sql::rewrite::RowKey::Param(j)) => {
                            let item = *items.get(*j).ok_or_else(|| {
                                Refusal::not_supported("EXECUTE … USING has too few values")
                            })?;
                            match literal(col, item)? {
                                Some(Lit::Bytes(k)) => {
                                    Some(crate::sql::rewrite::canonical_row_key(&k))
                                }
                                _ => {
                                    return Err(Refusal::not_supported(format!(
                                        "{c}: EXECUTE … USING takes a literal row key"
                                    )));
                                }
                            }
                        }
                    };
                    crate::sql::rewrite::sealed_text(col, &lit, key.as_deref(), sealer)
                        .map_err(Refusal::from)?
                }
                ParamUse::BlindWrite {
                    param,
                    column: c,
                    keep,
                } => {
                    let col = column(c)?;
                    let item = *items.get(*param).ok_or_else(|| {
                        Refusal::not_supported("EXECUTE … USING has too few values")
                    })?;
                    let Some(mut lit) = literal(col, item)? else {
                        return Err(Refusal::not_supported(format!(
                            "{c}: EXECUTE … USING takes literals for encrypted columns"
                        )));
                    };
                    if let (true, Lit::Stored(raw, _)) = (*keep, &lit)
                        && let Some(plain) = sealer.open(col, raw, None)
                    {
                        lit = Lit::Bytes(plain);
                    }
                    crate::sql::rewrite::blind_text(col, &lit, None, sealer)
                        .map_err(Refusal::from)?
                }
                ParamUse::BlindSearch {
                    param,
                    column: c,
                    key,
                    slots,
                } => {
                    let col = column(c)?;
                    if sealer.blind_keys(col) > *slots {
                        return Err(Refusal::not_supported(format!(
                            "{c}: more blind-index keys are in use than this statement was prepared for: PREPARE it again"
                        )));
                    }
                    let item = *items.get(*param).ok_or_else(|| {
                        Refusal::not_supported("EXECUTE … USING has too few values")
                    })?;
                    let Some(lit) = literal(col, item)? else {
                        return Err(Refusal::not_supported(format!(
                            "{c}: EXECUTE … USING takes literals for encrypted columns"
                        )));
                    };
                    crate::sql::rewrite::blind_text(col, &lit, Some(*key), sealer)
                        .map_err(Refusal::from)?
                }
            };
            rendered.push(piece);
        }
        let (start, end) = if items.is_empty() {
            let (_, e) = s.bytes(0, s.len());
            (e, e)
        } else {
            s.bytes(at, s.len())
        };
        Ok(vec![Edit {
            start,
            end,
            pieces: vec![crate::sql::analyze::Piece::Text(rendered.join(", ").into())],
        }])
    }
}

/// Whether a statement sets up a table or server that reaches other tables by a name in a
/// string (FEDERATED, CONNECT, SPIDER; CREATE SERVER) or installs server code.
/// Refuses what names myveil's own schema (`myveil.t`, `USE myveil`), and anything but a
/// query that names a migration's shadow or old column.
///
/// Security: the proxies take the migration states in `myveil.columns` as given, so no
/// client may write them; a shadow column holds a protected column's values (plaintext while
/// a migration copies them), so it is read as that column and never written but by the
/// migration.
fn reserved(
    s: &Stmt<'_>,
    kind: StatementKind,
    schema: &crate::backend::schema::Snapshot,
    current: Option<&str>,
) -> Result<(), Refusal> {
    let schema_name = crate::migrate::state::SCHEMA;
    // Unqualified names reach the current database: it may not be this one either.
    let names_schema = current.is_some_and(|d| d.eq_ignore_ascii_case(schema_name))
        || (0..s.len()).any(|i| {
            s.with_name(i, |n| n == schema_name) == Some(true)
                && (s.token(i + 1).is_some_and(|t| t.kind == Kind::Dot)
                    || (i == 1 && s.word(0, "use"))
                    || (i > 0
                        && (s.word(i - 1, "database")
                            || s.word(i - 1, "schema")
                            || s.word(i - 1, "from")
                            || s.word(i - 1, "in"))))
        });
    if names_schema {
        return Err(Refusal::not_supported(
            "the myveil schema holds myveil's own state; it is not reachable through myveil",
        ));
    }
    if kind != StatementKind::Query
        && !schema.shadows.is_empty()
        && (0..s.len()).any(|i| {
            s.with_name(i, |n| schema.shadows.iter().any(|(_, _, c, _)| c == n)) == Some(true)
        })
    {
        return Err(Refusal::not_supported(
            "this column is a migration's shadow of a protected column; only myveil migrate writes it",
        ));
    }
    Ok(())
}

fn reaches_by_string(s: &Stmt<'_>) -> bool {
    const ENGINES: &[&str] = &["federated", "federatedx", "connect", "spider"];
    if (s.word(0, "install") || s.word(0, "uninstall"))
        && (s.word(1, "plugin") || s.word(1, "soname"))
    {
        return true;
    }
    if (s.word(0, "create") || s.word(0, "alter")) && (1..4).any(|i| s.word(i, "server")) {
        return true;
    }
    (0..s.len()).any(|i| {
        s.word(i, "engine") && {
            let at = if s.op(i + 1, "=") { i + 2 } else { i + 1 };
            s.name(at).is_some_and(|n| ENGINES.contains(&n.as_str()))
        }
    })
}

/// Whether a statement creates, changes or drops a view, routine, trigger, event or package
/// (wider than needed: a match only costs reading the schema again).
fn defines_object(s: &Stmt<'_>) -> bool {
    (s.word(0, "create") || s.word(0, "drop") || s.word(0, "alter"))
        && (1..s.len().min(12)).any(|i| {
            [
                "view",
                "procedure",
                "function",
                "trigger",
                "event",
                "package",
            ]
            .iter()
            .any(|w| s.word(i, w))
        })
}

/// What of a lexing state decides how the lexer reads text: when it changes along a text,
/// what follows is read again.
fn lexing<'s>(state: &LexState<'s>) -> (ModeFlags, Cow<'s, str>) {
    const LEXING: ModeFlags = ModeFlags::ANSI_QUOTES
        .union(ModeFlags::NO_BACKSLASH_ESCAPES)
        .union(ModeFlags::MSSQL);
    (state.sql_mode.flags & LEXING, state.charset.clone())
}

/// Whether running a prepared text changes the database, sql_mode, the character set or
/// session tracking.
fn changes_state(inner: &[u8], state: &LexState<'_>, cx: &Context<'_>) -> bool {
    let Some(cs) = Charset::named(&state.charset) else {
        return true;
    };
    let mode = lex_mode(cs, &state.sql_mode, cx.server_version, true);
    let Ok(lexed) = lex::lex(inner, &mode) else {
        return true;
    };
    let Ok(units) = statements(inner, &lexed) else {
        return true;
    };
    units.iter().any(|u| {
        let s = Stmt {
            src: inner,
            tokens: &lexed.tokens,
            unit: *u,
            mode,
        };
        match s.kind() {
            StatementKind::Set => {
                let e = set_effect(&s, &state.sql_mode);
                e.sql_mode.is_some() || e.charset.is_some() || e.unknown || e.tracking
            }
            StatementKind::Use => true,
            _ => false,
        }
    })
}

/// Quotes bytes as a string literal the lexer reads back exactly in `mode`.
pub fn quote(text: &[u8], mode: &lex::Mode<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'\'');
    let mut i = 0;
    while i < text.len() {
        if mode.charset.is_multibyte()
            && let Some(n) = mode.charset.mb_len(&text[i..])
        {
            out.extend_from_slice(&text[i..i + n]);
            i += n;
            continue;
        }
        match text[i] {
            b'\'' => out.extend_from_slice(b"''"),
            b'\\' if !mode.no_backslash_escapes => out.extend_from_slice(b"\\\\"),
            b => out.push(b),
        }
        i += 1;
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests;
