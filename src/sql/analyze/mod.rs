//! sql::analyze: what a statement that can reach protected data does with it, and how to
//! rewrite it.
//!
//! The statement's view (sql::view) is parsed with sqlparser; the analysis then follows
//! every column reference to where its value comes from — a base table, a derived table, a
//! CTE, a view, a set operation, a scalar subquery — with the scoping rules SQL uses. A
//! value whose origin is a protected column may only appear where the analysis accounts for
//! it:
//! - as a result column (opened, masked or passed as ciphertext on the way back, by position
//!   in the result: `Shape`);
//! - in `col = lit`, `col <> lit`, `col IN (lits)` filters on a base table's column, which
//!   become blind-index searches (for roles that read plaintext);
//! - in `col IS [NOT] NULL`;
//! - as the target of a write of a literal or parameter (sealed, blind index filled).
//!
//! Anything else that touches a protected value is refused, as is anything whose origin
//! cannot be traced. Edits replace byte ranges of the original text; literal values come
//! from the lexer's tokens, never from the parser.

mod expr;
mod scope;
mod write;

use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span};

use super::view::View;
use crate::policy::{Policy, Protected};

pub use scope::{NoSchema, Schema};

/// A column of a table as the live database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    pub name: String,
    /// The column has no default, or NULL (an INSERT that leaves it out stores NULL).
    pub null_default: bool,
    /// information_schema's DATA_TYPE, lower-case.
    pub data_type: String,
    /// Maximum length in bytes (binary types) or characters (text types), if bounded.
    pub max_length: Option<u64>,
    /// INVISIBLE: left out of `*` and of an INSERT without a column list.
    pub invisible: bool,
}

/// Why a statement is refused. Names, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `table.column` or `table` the refusal is about (empty when none applies).
    pub target: String,
    pub reason: String,
    /// The role may not see the column at all (ER_COLUMNACCESS_DENIED_ERROR).
    pub denied: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.target.is_empty() {
            write!(f, "myveil: {}", self.reason)
        } else {
            write!(f, "myveil: {}: {}", self.target, self.reason)
        }
    }
}

pub(crate) fn refuse<T>(target: impl Into<String>, reason: impl Into<String>) -> Outcome<T> {
    Err(Refusal {
        target: target.into(),
        reason: reason.into(),
        denied: false,
    })
}

pub(crate) fn denied<T>(col: &Protected) -> Outcome<T> {
    Err(Refusal {
        target: col.scope(),
        reason: "access denied for this role".into(),
        denied: true,
    })
}

pub(crate) type Outcome<T> = Result<T, Refusal>;

/// A value in the statement bound for a protected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    Null,
    /// The literal's value, in the form the column stores (text as UTF-8).
    Bytes(Vec<u8>),
    /// The n-th `?` of the statement (0-based).
    Param(usize),
    /// A value written by a role that restores ciphertext: its bytes as the column would
    /// store them, and the plaintext they stand for when they are not an envelope (None:
    /// not readable as the column's plaintext).
    Stored(Vec<u8>, Option<Vec<u8>>),
}

/// One piece of replacement text.
#[derive(Debug, Clone)]
pub enum Piece<'p> {
    Text(std::sync::Arc<str>),
    /// Bytes in the client's character set (a re-quoted statement text).
    Raw(Vec<u8>),
    /// The sealed value, as a literal (or a parameter to seal), with the row key it is bound
    /// to where the policy declares one.
    Seal(&'p Protected, Lit, Option<Lit>, Keep),
    /// The blind index under the primary key (writes) of the value (with its row key).
    BlindWrite(&'p Protected, Lit, Option<Lit>, Keep),
    /// `<qualifier><blind index column> [NOT] IN (…)` over every blind-index key in use.
    BlindSearch {
        column: &'p Protected,
        qualifier: String,
        values: Vec<Lit>,
        negated: bool,
    },
}

/// Whether a written value that already is an envelope of its column is kept as it is: for
/// roles that read the column's ciphertext and may write it (a dump restored through the
/// proxy keeps its cells; anything that does not open as the column's envelope is sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    No,
    Envelopes,
    /// Envelopes only: a plaintext write would be sealed and meet a unique index over its
    /// blind index, which tells a role that cannot read the column whether a value exists.
    OnlyEnvelopes,
}

/// Replace `[start, end)` of the original text with `pieces`.
#[derive(Debug, Clone)]
pub struct Edit<'p> {
    pub start: usize,
    pub end: usize,
    pub pieces: Vec<Piece<'p>>,
}

/// Where one result column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Not from a protected column.
    Plain,
    /// The stored cells of the policy's column `column` (an index into `Policy::columns`);
    /// `key`: the result column holding the row key it is bound to.
    Cell { column: usize, key: Option<usize> },
    /// Any number of plain columns (`*` over a table whose columns are not known).
    Run,
    /// Any number of columns straight from a protected base table whose columns are not
    /// known: each is what its column definition names.
    Table,
}

/// The columns of a result set, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    pub columns: Vec<Out>,
}

impl Shape {
    pub fn is_plain(&self) -> bool {
        self.columns.iter().all(|c| !matches!(c, Out::Cell { .. }))
    }
}

/// The outcome of analyzing one statement.
#[derive(Debug, Default)]
pub struct Analysis<'p> {
    /// Sorted, non-overlapping.
    pub edits: Vec<Edit<'p>>,
    /// The result set the statement returns, when it returns one.
    pub shape: Option<Shape>,
    /// The statement touches protected data (reads, writes or searches it).
    pub protected: bool,
    /// Nothing in the outcome depended on a literal's value (see `View::read_literals`).
    pub literal_free: bool,
    /// Every literal value the outcome holds, and where it came from.
    pub flows: Vec<Flow>,
    /// A literal's value decided more than the value it became (`View::decided`).
    pub values_decide: bool,
}

/// A literal read into a value for a protected column: tokens `first..=last` of the
/// statement, with a minus sign before them or not, read for the policy's column `column`
/// (an index into `Policy::columns`), became `lit` (`expr::lit_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub first: usize,
    pub last: usize,
    pub neg: bool,
    pub column: usize,
    pub lit: Lit,
}

/// `Flow::lit` again, from the same tokens of another statement of the same form (its
/// `tokens` and `src`, lexed under `mode`). None: the literal is not read the same way (the
/// caller analyzes the statement instead).
pub fn replay(
    flow: &Flow,
    src: &[u8],
    tokens: &[crate::sql::lex::Token],
    mode: &crate::sql::lex::Mode<'_>,
    col: &Protected,
    empty_string_is_null: bool,
) -> Option<Lit> {
    let lit = crate::sql::view::Literal {
        first: flow.first,
        last: flow.last,
    };
    let value = crate::sql::view::literal_value(src, tokens, &lit, mode).ok()?;
    let number = tokens[flow.first].kind == crate::sql::lex::Kind::Number;
    match expr::lit_of(value, flow.neg, number, col, empty_string_is_null) {
        Ok(Some(l)) if std::mem::discriminant(&l) == std::mem::discriminant(&flow.lit) => Some(l),
        _ => None,
    }
}

pub struct Analyzer<'a, 'q> {
    pub policy: &'a Policy,
    pub database: Option<&'q str>,
    pub role: &'q str,
    pub schema: &'q dyn Schema,
    /// sql_mode HIGH_NOT_PRECEDENCE: `NOT a = b` is `(NOT a) = b`.
    pub high_not_precedence: bool,
    /// sql_mode EMPTY_STRING_IS_NULL: `''` is NULL.
    pub empty_string_is_null: bool,
}

/// Deepest expression or query nesting followed; deeper statements are refused.
pub const MAX_DEPTH: usize = 128;
/// Views followed inside views.
const MAX_VIEW_DEPTH: usize = 8;

/// Byte offsets of each line start, to turn sqlparser locations (line, char column) into
/// byte offsets of the view text.
pub(crate) struct Offsets<'s> {
    text: &'s str,
    lines: Vec<usize>,
    /// For each line that is not ASCII, the byte offset of each character (and of its end):
    /// a location is found in constant time, so analysis stays linear in the text.
    chars: Vec<Option<Vec<usize>>>,
}

impl<'s> Offsets<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let chars = (0..lines.len())
            .map(|k| {
                let (start, end) = (lines[k], lines.get(k + 1).copied().unwrap_or(text.len()));
                let line = &text[start..end];
                (!line.is_ascii()).then(|| {
                    line.char_indices()
                        .map(|(i, _)| start + i)
                        .chain(std::iter::once(end))
                        .collect()
                })
            })
            .collect();
        Self { text, lines, chars }
    }

    fn at(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let line_start = *self.lines.get(line)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        match self.chars.get(line)? {
            None => {
                let end = self.lines.get(line + 1).copied().unwrap_or(self.text.len());
                (col <= end - line_start).then_some(line_start + col)
            }
            Some(offsets) => offsets.get(col).copied(),
        }
    }

    pub(crate) fn range(&self, span: Span) -> Option<(usize, usize)> {
        let (s, e) = (self.at(span.start)?, self.at(span.end)?);
        (s <= e).then_some((s, e))
    }
}

impl<'a> Analyzer<'a, '_> {
    /// Analyzes the one statement of `view`.
    pub fn analyze(&self, view: &View<'_>) -> Outcome<Analysis<'a>> {
        let statement = parse(&view.text)?;
        let offsets = Offsets::new(&view.text);
        let mut work = Work {
            an: self,
            view,
            offsets: &offsets,
            edits: Vec::new(),
            protected: false,
            instances: 0,
            view_depth: 0,
            database: self.database.map(str::to_owned),
            in_view: false,
            high_not: self.high_not_precedence,
            empty_string_is_null: self.empty_string_is_null,
            flows: std::cell::RefCell::new(Vec::new()),
            shadowed: 0,
        };
        let shape = work.statement(&statement)?;
        let mut edits = work.edits;
        edits.sort_by_key(|e| (e.start, e.end));
        if edits.windows(2).any(|w| w[0].end > w[1].start) {
            return refuse("", "overlapping rewrites");
        }
        Ok(Analysis {
            protected: work.protected || !edits.is_empty(),
            literal_free: !view.read_literals.get(),
            values_decide: view.decided.get(),
            flows: work.flows.into_inner(),
            edits,
            shape,
        })
    }
}

/// Parses one statement of a view.
fn parse(text: &str) -> Outcome<Statement> {
    let parsed = Parser::new(&MySqlDialect {})
        .with_recursion_limit(MAX_DEPTH / 2)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements());
    match parsed {
        Ok(mut v) if v.len() == 1 => Ok(v.remove(0)),
        Ok(_) => refuse("", "expected one statement"),
        Err(_) => refuse(
            "",
            "statement can reach protected data and cannot be analyzed",
        ),
    }
}

/// The state of one analysis.
pub(crate) struct Work<'w, 'p> {
    an: &'w Analyzer<'p, 'w>,
    view: &'w View<'w>,
    offsets: &'w Offsets<'w>,
    edits: Vec<Edit<'p>>,
    protected: bool,
    /// Table instances seen (each FROM item gets a number, for row keys).
    instances: u32,
    view_depth: usize,
    /// The default database names resolve against (a view's own inside its definition).
    database: Option<String>,
    /// Analyzing a view's definition: nothing there can be rewritten.
    in_view: bool,
    high_not: bool,
    empty_string_is_null: bool,
    /// Literal values read so far (`Analysis::flows`).
    flows: std::cell::RefCell<Vec<Flow>>,
    /// References read through a shadow so far (`shadow_ref`).
    shadowed: usize,
}

impl<'p> Work<'_, 'p> {
    /// The original byte range of a node.
    fn range(&self, span: Span) -> Outcome<(usize, usize)> {
        if self.in_view {
            return refuse("", "cannot rewrite inside a view's definition");
        }
        self.offsets
            .range(span)
            .and_then(|(s, e)| self.view.original(s, e))
            .map_or_else(|| refuse("", "cannot locate part of the statement"), Ok)
    }

    /// The token range (first, last inclusive) of a node.
    fn tokens_of(&self, span: Span) -> Outcome<(usize, usize)> {
        if self.in_view {
            return refuse("", "cannot rewrite inside a view's definition");
        }
        self.offsets
            .range(span)
            .and_then(|(s, e)| self.view.token_range(s, e))
            .map_or_else(|| refuse("", "cannot locate part of the statement"), Ok)
    }

    fn statement(&mut self, statement: &Statement) -> Outcome<Option<Shape>> {
        match statement {
            Statement::Query(q) => {
                let shape = self.query(q, &scope::Frames::root(), 0)?;
                Ok(Some(shape.into_shape(self.an.policy)))
            }
            Statement::Insert(ins) => self.insert(ins),
            Statement::Update(up) => self.update(up).map(|_| None),
            Statement::Delete(del) => self.delete(del),
            Statement::Explain { statement, .. } => {
                // EXPLAIN runs nothing and returns a plan; ANALYZE-style forms run the
                // statement: either way it is rewritten as the statement would be.
                self.statement(statement)?;
                Ok(None)
            }
            _ => refuse(
                "",
                "this kind of statement is not supported where protected data is reachable",
            ),
        }
    }

    fn next_instance(&mut self) -> u32 {
        self.instances += 1;
        self.instances
    }
}

#[cfg(test)]
mod tests;
