//! sql::analyze: decides what to do with a statement that names protected data, and how to
//! rewrite it.
//!
//! The statement is parsed (sqlparser, MySQL dialect). Writes of literals and parameters to
//! protected columns become sealed literals (and fill the blind-index column); equality and
//! IN filters on protected columns become filters on the blind index. Every other reference
//! to a protected column is refused: a reference is allowed only where the analysis put it
//! on the allowed list (plain projections, the filters it rewrote, IS [NOT] NULL), so
//! anything it does not understand fails closed. Edits replace byte ranges of the original
//! text; the rest of the text is kept as the client sent it.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, FromTable, Ident, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, OnInsert, Query, SelectItem, SetExpr, Spanned, Statement,
    TableFactor, TableObject, TableWithJoins, UnaryOperator, Value, Visit, Visitor,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span};

use crate::policy::{Access, Policy, Protected};

/// Column order of tables, for INSERT without a column list.
pub trait Schema {
    fn columns(&self, database: &str, table: &str) -> Option<Vec<String>>;
}

/// No schema knowledge: INSERT without a column list into a protected table is refused.
pub struct NoSchema;

impl Schema for NoSchema {
    fn columns(&self, _: &str, _: &str) -> Option<Vec<String>> {
        None
    }
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

/// A value in the statement bound for a protected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    Null,
    /// The literal's value, unescaped (numbers as written).
    Bytes(Vec<u8>),
    /// The n-th `?` of the statement (0-based).
    Param(usize),
}

/// One piece of replacement text.
#[derive(Debug, Clone)]
pub enum Piece<'p> {
    Text(String),
    /// The sealed value, as a literal (or a parameter to seal), with the row key it is bound
    /// to where the policy declares one.
    Seal(&'p Protected, Lit, Option<Lit>),
    /// The blind index under the primary key (writes).
    BlindWrite(&'p Protected, Lit),
    /// `<qualifier><blind index column> [NOT] IN (…)` over every blind-index key in use.
    BlindSearch {
        column: &'p Protected,
        qualifier: String,
        values: Vec<Lit>,
        negated: bool,
    },
}

/// Replace `[start, end)` of the original text with `pieces`.
#[derive(Debug, Clone)]
pub struct Edit<'p> {
    pub start: usize,
    pub end: usize,
    pub pieces: Vec<Piece<'p>>,
}

/// The outcome of analysis.
#[derive(Debug)]
pub enum Plan<'p> {
    /// Nothing protected is involved: forward the original text.
    Forward,
    /// Apply these edits (sorted, non-overlapping); `placeholders` are the byte offsets of
    /// every `?` in the original text, in order.
    Rewrite {
        edits: Vec<Edit<'p>>,
        placeholders: Vec<usize>,
    },
    Refuse(Refusal),
}

pub struct Analyzer<'a> {
    pub policy: &'a Policy,
    pub database: Option<&'a str>,
    pub role: &'a str,
    pub schema: &'a dyn Schema,
}

type Outcome<T> = Result<T, Refusal>;

fn refuse<T>(target: impl Into<String>, reason: impl Into<String>) -> Outcome<T> {
    Err(Refusal {
        target: target.into(),
        reason: reason.into(),
        denied: false,
    })
}

/// Byte offsets of each line start, to turn sqlparser locations (line, char column) into
/// byte offsets.
pub(crate) struct Offsets<'s> {
    text: &'s str,
    lines: Vec<usize>,
}

impl<'s> Offsets<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, lines }
    }

    fn at(&self, loc: Location) -> Option<usize> {
        let line_start = *self
            .lines
            .get(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let rest = &self.text[line_start..];
        match rest.char_indices().nth(col) {
            Some((i, _)) => Some(line_start + i),
            None if rest.chars().count() == col => Some(line_start + rest.len()),
            None => None,
        }
    }

    pub(crate) fn range(&self, span: Span) -> Option<(usize, usize)> {
        let (s, e) = (self.at(span.start)?, self.at(span.end)?);
        (s <= e).then_some((s, e))
    }
}

/// A table named in the statement.
#[derive(Debug, Clone)]
struct TableRef {
    database: String,
    table: String,
}

impl<'a> Analyzer<'a> {
    /// Analyzes `sql` (one or more statements).
    pub fn analyze(&self, sql: &str) -> Plan<'a> {
        match self.run(sql) {
            Ok(p) => p,
            Err(r) => Plan::Refuse(r),
        }
    }

    fn run(&self, sql: &str) -> Outcome<Plan<'a>> {
        let statements = match Parser::parse_sql(&MySqlDialect {}, sql) {
            Ok(s) => s,
            Err(_) => return refuse("", "statement names protected data and cannot be parsed"),
        };
        let offsets = Offsets::new(sql);
        let mut work = Work {
            an: self,
            offsets: &offsets,
            edits: Vec::new(),
            allowed: HashSet::new(),
            placeholders: super::lex::placeholder_offsets(sql.as_bytes()),
            scope: Scope::default(),
        };
        let mut touched = false;
        for statement in &statements {
            work.scope = Scope::of(statement, self);
            if work.scope.protected.is_empty() {
                continue;
            }
            touched = true;
            work.statement(statement)?;
        }
        if !touched {
            return Ok(Plan::Forward);
        }
        work.finish()
    }
}

/// Protected tables of one statement and how names resolve to them.
#[derive(Default)]
struct Scope<'p> {
    /// Every table named, by alias or name (lower-case alias, exact table name).
    tables: Vec<(Option<String>, TableRef)>,
    /// Columns of protected tables in scope, by lower-case column name.
    protected: HashMap<String, Vec<&'p Protected>>,
    /// Blind-index columns in scope, by lower-case name.
    blind: HashSet<String>,
}

impl<'p> Scope<'p> {
    fn of(statement: &Statement, an: &Analyzer<'p>) -> Self {
        struct Collect<'x> {
            tables: Vec<(Option<String>, ObjectName)>,
            _p: std::marker::PhantomData<&'x ()>,
        }
        impl Visitor for Collect<'_> {
            type Break = ();
            fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
                if let TableFactor::Table { name, alias, .. } = t {
                    self.tables.push((
                        alias.as_ref().map(|a| a.name.value.to_ascii_lowercase()),
                        name.clone(),
                    ));
                }
                ControlFlow::Continue(())
            }
            fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
                self.tables.push((None, r.clone()));
                ControlFlow::Continue(())
            }
        }
        let mut c = Collect {
            tables: Vec::new(),
            _p: std::marker::PhantomData,
        };
        let _ = statement.visit(&mut c);
        if let Statement::Insert(ins) = statement
            && let TableObject::TableName(name) = &ins.table
        {
            c.tables.push((None, name.clone()));
        }
        let mut scope = Scope::default();
        for (alias, name) in c.tables {
            let Some(t) = an.resolve_table(&name) else {
                continue;
            };
            for col in an.policy.columns() {
                if col.table == t.table && col.database.as_deref().is_none_or(|d| d == t.database) {
                    let entry = scope
                        .protected
                        .entry(col.column.to_ascii_lowercase())
                        .or_default();
                    if !entry.iter().any(|p| std::ptr::eq(*p, col)) {
                        entry.push(col);
                    }
                    if let Some(b) = &col.blind_index {
                        scope.blind.insert(b.to_ascii_lowercase());
                    }
                }
            }
            scope.tables.push((alias, t));
        }
        scope
    }

    /// The protected column an identifier chain names, if any. Err when it cannot tell.
    fn column(&self, idents: &[Ident]) -> Outcome<Option<&'p Protected>> {
        let Some(last) = idents.last() else {
            return Ok(None);
        };
        let name = last.value.to_ascii_lowercase();
        let Some(candidates) = self.protected.get(&name) else {
            return Ok(None);
        };
        let matching: Vec<&'p Protected> = match &idents[..idents.len() - 1] {
            [] => candidates.clone(),
            [.., qualifier] => {
                let q = qualifier.value.as_str();
                let tables: Vec<&TableRef> = self
                    .tables
                    .iter()
                    .filter(|(alias, t)| {
                        alias.as_deref() == Some(&q.to_ascii_lowercase())
                            || (alias.is_none() && t.table == q)
                    })
                    .map(|(_, t)| t)
                    .collect();
                candidates
                    .iter()
                    .copied()
                    .filter(|c| tables.is_empty() || tables.iter().any(|t| t.table == c.table))
                    .collect()
            }
        };
        match matching.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [first, ..] => refuse(
                first.scope(),
                "ambiguous column name; qualify it with its table",
            ),
        }
    }
}

fn idents_of(expr: &Expr) -> Option<&[Ident]> {
    match expr {
        Expr::Identifier(i) => Some(std::slice::from_ref(i)),
        Expr::CompoundIdentifier(v) => Some(v),
        Expr::Nested(inner) => idents_of(inner),
        _ => None,
    }
}

fn object_idents(name: &ObjectName) -> Vec<Ident> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

impl Analyzer<'_> {
    fn resolve_table(&self, name: &ObjectName) -> Option<TableRef> {
        let parts = object_idents(name);
        match parts.as_slice() {
            [t] => Some(TableRef {
                database: self.database.unwrap_or_default().to_owned(),
                table: t.value.clone(),
            }),
            [d, t] => Some(TableRef {
                database: d.value.clone(),
                table: t.value.clone(),
            }),
            _ => None,
        }
    }
}

struct Work<'w, 'p> {
    an: &'w Analyzer<'p>,
    offsets: &'w Offsets<'w>,
    edits: Vec<Edit<'p>>,
    /// Start offsets of column references the analysis accounted for.
    allowed: HashSet<usize>,
    placeholders: Vec<usize>,
    scope: Scope<'p>,
}

impl<'w, 'p> Work<'w, 'p> {
    fn range(&self, span: Span) -> Outcome<(usize, usize)> {
        match self.offsets.range(span) {
            Some(r) => Ok(r),
            None => refuse("", "cannot locate part of the statement"),
        }
    }

    fn allow(&mut self, expr: &Expr) -> Outcome<()> {
        let (s, _) = self.range(expr.span())?;
        self.allowed.insert(s);
        Ok(())
    }

    fn literal(&self, expr: &Expr) -> Option<Lit> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Null => Some(Lit::Null),
                Value::SingleQuotedString(s)
                | Value::DoubleQuotedString(s)
                | Value::NationalStringLiteral(s) => Some(Lit::Bytes(s.as_bytes().to_vec())),
                Value::Number(n, _) => Some(Lit::Bytes(n.to_string().into_bytes())),
                Value::HexStringLiteral(h) => hex::decode(h).ok().map(Lit::Bytes),
                Value::Placeholder(p) if p == "?" => {
                    let (s, _) = self.offsets.range(v.span)?;
                    Some(Lit::Param(self.placeholder_index(s)))
                }
                _ => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match self.literal(expr)? {
                Lit::Bytes(b) if b.first().is_some_and(u8::is_ascii_digit) => {
                    let mut v = b"-".to_vec();
                    v.extend_from_slice(&b);
                    Some(Lit::Bytes(v))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The 0-based number of the `?` at `offset`.
    fn placeholder_index(&self, offset: usize) -> usize {
        self.placeholders.partition_point(|&p| p < offset)
    }

    fn require_write(&self, col: &Protected) -> Outcome<()> {
        if self.an.role_access(col) == Access::Deny {
            return Err(Refusal {
                target: col.scope(),
                reason: "access denied for this role".into(),
                denied: true,
            });
        }
        Ok(())
    }

    fn statement(&mut self, statement: &Statement) -> Outcome<()> {
        match statement {
            Statement::Query(q) => self.query(q)?,
            Statement::Insert(ins) => self.insert(ins)?,
            Statement::Update(up) => {
                self.tables_with_joins(std::slice::from_ref(&up.table))?;
                self.assignments(&up.assignments, None, up.selection.as_ref())?;
            }
            Statement::Delete(del) => {
                let from = match &del.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                self.tables_with_joins(from)?;
                if let Some(using) = &del.using {
                    self.tables_with_joins(using)?;
                }
            }
            Statement::AlterTable(_)
            | Statement::Drop { .. }
            | Statement::Truncate(_)
            | Statement::CreateIndex(_)
            | Statement::ShowColumns { .. }
            | Statement::ShowCreate { .. }
            | Statement::ExplainTable { .. } => {}
            Statement::CreateTable(ct) if ct.query.is_none() => {}
            _ => {
                let target = self
                    .scope
                    .tables
                    .iter()
                    .find(|(_, t)| self.an.policy.protects_table(&t.database, &t.table))
                    .map(|(_, t)| t.table.clone())
                    .unwrap_or_default();
                return refuse(
                    target,
                    "this kind of statement is not supported on a protected table",
                );
            }
        }
        self.generic(statement)
    }

    /// SELECTs anywhere in a query: projections of plain column references are allowed
    /// (they are opened or masked on the way back); joins by USING/NATURAL are refused.
    fn query(&mut self, q: &Query) -> Outcome<()> {
        struct Selects<'x, 'w, 'p> {
            work: &'x mut Work<'w, 'p>,
            error: Option<Refusal>,
        }
        impl Visitor for Selects<'_, '_, '_> {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                if let Err(e) = self.work.set_expr(&q.body) {
                    self.error = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        let mut v = Selects {
            work: self,
            error: None,
        };
        let _ = q.visit(&mut v);
        match v.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn set_expr(&mut self, body: &SetExpr) -> Outcome<()> {
        match body {
            SetExpr::Select(s) => {
                for item in &s.projection {
                    let expr = match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                        _ => continue,
                    };
                    if let Some(idents) = idents_of(expr)
                        && let Some(col) = self.scope.column(idents)?
                    {
                        if self.an.role_access(col) == Access::Deny {
                            return Err(Refusal {
                                target: col.scope(),
                                reason: "access denied for this role".into(),
                                denied: true,
                            });
                        }
                        self.allow(expr)?;
                    }
                }
                self.tables_with_joins(&s.from)
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            _ => Ok(()),
        }
    }

    fn tables_with_joins(&mut self, from: &[TableWithJoins]) -> Outcome<()> {
        for twj in from {
            for join in &twj.joins {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::Semi(c)
                    | JoinOperator::LeftSemi(c)
                    | JoinOperator::RightSemi(c)
                    | JoinOperator::Anti(c)
                    | JoinOperator::LeftAnti(c)
                    | JoinOperator::RightAnti(c)
                    | JoinOperator::StraightJoin(c) => Some(c),
                    _ => None,
                };
                match constraint {
                    Some(JoinConstraint::Using(names)) => {
                        for n in names {
                            if let Some(col) = self.scope.column(&object_idents(n))? {
                                return refuse(
                                    col.scope(),
                                    "joining on an encrypted column is not supported",
                                );
                            }
                        }
                    }
                    Some(JoinConstraint::Natural) => {
                        return refuse(
                            "",
                            "NATURAL JOIN with a protected table is not supported; name the join columns",
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, ins: &sqlparser::ast::Insert) -> Outcome<()> {
        let TableObject::TableName(name) = &ins.table else {
            return refuse("", "INSERT target not understood");
        };
        let Some(target) = self.an.resolve_table(name) else {
            return refuse("", "INSERT target not understood");
        };
        if !self
            .an
            .policy
            .protects_table(&target.database, &target.table)
        {
            if let Some(src) = &ins.source {
                self.query(src)?;
            }
            return Ok(());
        }
        let table_cols: Vec<&'p Protected> = self
            .an
            .policy
            .columns()
            .iter()
            .filter(|c| {
                c.table == target.table
                    && c.database.as_deref().is_none_or(|d| d == target.database)
            })
            .collect();
        let names: Vec<String> = if ins.columns.is_empty() {
            if ins.source.is_none() {
                Vec::new()
            } else {
                match self.an.schema.columns(&target.database, &target.table) {
                    Some(c) => c,
                    None => {
                        return refuse(
                            target.table.clone(),
                            "cannot tell the column order of a protected table; name the columns in the INSERT",
                        );
                    }
                }
            }
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    object_idents(c)
                        .last()
                        .map(|i| i.value.clone())
                        .unwrap_or_default()
                })
                .collect()
        };
        // Without a column list every column is written, the blind index too: the client
        // gives it as NULL or DEFAULT and myveil fills it in place.
        let implicit = ins.columns.is_empty();
        for n in names.iter().filter(|_| !implicit) {
            if table_cols.iter().any(|c| {
                c.blind_index
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(n))
            }) {
                return refuse(
                    format!("{}.{n}", target.table),
                    "the blind-index column is filled by myveil; do not write it",
                );
            }
        }
        let positions: Vec<(usize, &'p Protected)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                table_cols
                    .iter()
                    .find(|c| c.column.eq_ignore_ascii_case(n))
                    .map(|c| (i, *c))
            })
            .collect();
        if let Some(source) = &ins.source {
            let SetExpr::Values(values) = source.body.as_ref() else {
                if let Some((_, col)) = positions.first() {
                    return refuse(
                        col.scope(),
                        "INSERT … SELECT into an encrypted column is not supported",
                    );
                }
                return self.query(source);
            };
            for (_, col) in &positions {
                self.require_write(col)?;
            }
            let mut added_columns = Vec::new();
            for (_, col) in positions.iter().filter(|_| !implicit) {
                if let Some(b) = &col.blind_index {
                    added_columns.push(format!(", `{b}`"));
                }
            }
            if !added_columns.is_empty() {
                let Some(last) = ins.columns.last() else {
                    return refuse(
                        target.table.clone(),
                        "name the columns in the INSERT so myveil can fill the blind index",
                    );
                };
                let (_, end) = self.range(last.span())?;
                self.edits.push(Edit {
                    start: end,
                    end,
                    pieces: vec![Piece::Text(added_columns.concat())],
                });
            }
            for row in &values.rows {
                if row.content.len() != names.len() {
                    return refuse(
                        target.table.clone(),
                        "row has a different number of values than columns",
                    );
                }
                let mut blind = Vec::new();
                for (i, col) in &positions {
                    let expr = &row.content[*i];
                    let Some(lit) = self.literal(expr) else {
                        return refuse(
                            col.scope(),
                            "a value written to an encrypted column must be a literal or a parameter",
                        );
                    };
                    let row_key = match &col.row_key {
                        None => None,
                        Some(rk) => {
                            let Some(j) = names.iter().position(|n| n.eq_ignore_ascii_case(rk))
                            else {
                                return refuse(
                                    col.scope(),
                                    format!("the row key {rk} must be written in the same INSERT"),
                                );
                            };
                            match self.literal(&row.content[j]) {
                                Some(Lit::Null) | None => {
                                    return refuse(
                                        col.scope(),
                                        format!(
                                            "the row key {rk} must be a literal or a parameter"
                                        ),
                                    );
                                }
                                Some(k) => Some(k),
                            }
                        }
                    };
                    let (s, e) = self.range(expr.span())?;
                    let (s, e) = self.widen_unary(expr, s, e);
                    self.edits.push(Edit {
                        start: s,
                        end: e,
                        pieces: vec![Piece::Seal(col, lit.clone(), row_key)],
                    });
                    match &col.blind_index {
                        Some(b) if implicit => {
                            let Some(j) = names.iter().position(|n| n.eq_ignore_ascii_case(b))
                            else {
                                return refuse(
                                    col.scope(),
                                    "the blind-index column is missing from the table",
                                );
                            };
                            let slot = &row.content[j];
                            let is_default = matches!(slot, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
                            if !(is_default || matches!(self.literal(slot), Some(Lit::Null))) {
                                return refuse(
                                    format!("{}.{b}", target.table),
                                    "the blind-index column is filled by myveil; give it as NULL or DEFAULT",
                                );
                            }
                            let (s, e) = self.range(slot.span())?;
                            self.edits.push(Edit {
                                start: s,
                                end: e,
                                pieces: vec![Piece::BlindWrite(col, lit)],
                            });
                        }
                        Some(_) => {
                            blind.push(Piece::Text(", ".into()));
                            blind.push(Piece::BlindWrite(col, lit));
                        }
                        None => {}
                    }
                }
                if !blind.is_empty() {
                    let (close, _) = self.range(row.closing_token.0.span)?;
                    self.edits.push(Edit {
                        start: close,
                        end: close,
                        pieces: blind,
                    });
                }
            }
        }
        if !ins.assignments.is_empty() {
            self.assignments(&ins.assignments, None, None)?;
        }
        if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &ins.on {
            let alias = ins.table_alias.as_ref().map(|a| a.alias.value.clone());
            self.assignments(assignments, Some(alias), None)?;
        }
        Ok(())
    }

    /// Byte range of a literal including a leading minus sign.
    fn widen_unary(&self, expr: &Expr, s: usize, e: usize) -> (usize, usize) {
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            ..
        } = expr
        {
            let text = self.offsets.text.as_bytes();
            let mut i = s;
            while i > 0 && text[i - 1].is_ascii_whitespace() {
                i -= 1;
            }
            if i > 0 && text[i - 1] == b'-' && text.get(s) != Some(&b'-') {
                return (i - 1, e);
            }
        }
        (s, e)
    }

    /// SET assignments (UPDATE, INSERT … SET, ON DUPLICATE KEY UPDATE). `upsert` holds the
    /// INSERT's row alias when these are ON DUPLICATE KEY UPDATE assignments.
    fn assignments(
        &mut self,
        assignments: &[sqlparser::ast::Assignment],
        upsert: Option<Option<String>>,
        row_filter: Option<&Expr>,
    ) -> Outcome<()> {
        for a in assignments {
            let targets: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(v) => v.iter().collect(),
            };
            for t in &targets {
                let idents = object_idents(t);
                if let Some(last) = idents.last()
                    && self.scope.blind.contains(&last.value.to_ascii_lowercase())
                {
                    return refuse(
                        last.value.clone(),
                        "the blind-index column is filled by myveil; do not write it",
                    );
                }
            }
            let [target] = targets.as_slice() else {
                for t in &targets {
                    if let Some(col) = self.scope.column(&object_idents(t))? {
                        return refuse(
                            col.scope(),
                            "tuple assignment to an encrypted column is not supported",
                        );
                    }
                }
                continue;
            };
            let idents = object_idents(target);
            if let Some(last) = idents.last()
                && let Some(bound) = self.scope.protected.values().flatten().find(|c| {
                    c.row_key
                        .as_deref()
                        .is_some_and(|rk| rk.eq_ignore_ascii_case(&last.value))
                })
            {
                return refuse(
                    bound.scope(),
                    "changing the row key of rows with row-bound encrypted columns is not supported",
                );
            }
            let Some(col) = self.scope.column(&idents)? else {
                continue;
            };
            self.require_write(col)?;
            let row_key = match &col.row_key {
                None => None,
                Some(_) if upsert.is_some() => {
                    return refuse(
                        col.scope(),
                        "ON DUPLICATE KEY UPDATE of a row-bound column is not supported",
                    );
                }
                Some(rk) => match row_filter.and_then(|f| self.row_key_in(f, rk)) {
                    Some(k) => Some(k),
                    None => {
                        return refuse(
                            col.scope(),
                            format!("an UPDATE of a row-bound column needs WHERE {rk} = <value>"),
                        );
                    }
                },
            };
            let qualifier: String = idents[..idents.len() - 1]
                .iter()
                .map(|i| format!("{i}."))
                .collect();
            let (_, mut value_end) = self.range(a.value.span())?;
            if let Expr::Function(_) = &a.value {
                // A call's span ends at its last argument; take the closing parenthesis too.
                let text = self.offsets.text.as_bytes();
                let mut i = value_end;
                while i < text.len() && text[i].is_ascii_whitespace() {
                    i += 1;
                }
                if text.get(i) == Some(&b')') {
                    value_end = i + 1;
                }
            }
            if let Some(lit) = self.literal(&a.value) {
                let (s, e) = self.range(a.value.span())?;
                let (s, e) = self.widen_unary(&a.value, s, e);
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    pieces: vec![Piece::Seal(col, lit.clone(), row_key)],
                });
                if let Some(b) = &col.blind_index {
                    self.edits.push(Edit {
                        start: value_end,
                        end: value_end,
                        pieces: vec![
                            Piece::Text(format!(", {qualifier}`{b}` = ")),
                            Piece::BlindWrite(col, lit),
                        ],
                    });
                }
                continue;
            }
            // ON DUPLICATE KEY UPDATE c = VALUES(c) / c = alias.c: the new row's (sealed) value.
            if let Some(alias) = &upsert {
                let copies_new_value = match &a.value {
                    Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("values") => {
                        let arg = f.args.to_string();
                        arg.trim_matches(['(', ')', '`', ' '])
                            .eq_ignore_ascii_case(&col.column)
                    }
                    Expr::CompoundIdentifier(v) => {
                        matches!(v.as_slice(), [a_, c] if alias.as_deref() == Some(a_.value.as_str()) && c.value.eq_ignore_ascii_case(&col.column))
                    }
                    _ => false,
                };
                if copies_new_value {
                    // The column reference inside VALUES()/alias names the new row: allowed.
                    self.allow_within(&a.value)?;
                    if let Some(b) = &col.blind_index {
                        let copy = match &a.value {
                            Expr::Function(_) => format!("VALUES(`{b}`)"),
                            _ => format!("{}.`{b}`", alias.as_deref().unwrap_or_default()),
                        };
                        self.edits.push(Edit {
                            start: value_end,
                            end: value_end,
                            pieces: vec![Piece::Text(format!(", {qualifier}`{b}` = {copy}"))],
                        });
                    }
                    continue;
                }
            }
            return refuse(
                col.scope(),
                "a value written to an encrypted column must be a literal or a parameter",
            );
        }
        Ok(())
    }

    /// The value `rk = <literal>` gives in a WHERE clause, looking through ANDs only.
    fn row_key_in(&self, filter: &Expr, rk: &str) -> Option<Lit> {
        match filter {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => self
                .row_key_in(left, rk)
                .or_else(|| self.row_key_in(right, rk)),
            Expr::Nested(inner) => self.row_key_in(inner, rk),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let (col, val) = if idents_of(left).is_some() {
                    (left, right)
                } else {
                    (right, left)
                };
                let name = idents_of(col)?.last()?;
                if !name.value.eq_ignore_ascii_case(rk) {
                    return None;
                }
                self.literal(val).filter(|l| !matches!(l, Lit::Null))
            }
            _ => None,
        }
    }

    /// Allows every column reference inside `expr`.
    fn allow_within(&mut self, expr: &Expr) -> Outcome<()> {
        let mut starts = Vec::new();
        let _ = sqlparser::ast::visit_expressions(expr, |e| {
            if idents_of(e).is_some() {
                starts.push(e.span());
            }
            ControlFlow::<()>::Continue(())
        });
        for span in starts {
            let (s, _) = self.range(span)?;
            self.allowed.insert(s);
        }
        Ok(())
    }

    /// The pass over every expression: rewrites equality/IN filters on protected columns and
    /// refuses any reference the analysis did not account for.
    fn generic(&mut self, statement: &Statement) -> Outcome<()> {
        let mut exprs: Vec<Expr> = Vec::new();
        let _ = sqlparser::ast::visit_expressions(statement, |e| {
            exprs.push(e.clone());
            ControlFlow::<()>::Continue(())
        });
        // Parents come before their children (pre-order): a rewritten filter allows the
        // column reference inside it before that reference is checked.
        let mut parent_kind: HashMap<usize, &'static str> = HashMap::new();
        for e in &exprs {
            self.filter(e, &mut parent_kind)?;
        }
        for e in &exprs {
            let Some(idents) = idents_of(e) else { continue };
            let col = self.scope.column(idents)?;
            let (s, _) = self.range(e.span())?;
            if self.allowed.contains(&s) {
                continue;
            }
            if let Some(col) = col {
                let why = parent_kind.get(&s).copied().unwrap_or(
                    "only plain reads, equality or IN search and literal writes are supported",
                );
                return refuse(col.scope(), why);
            }
        }
        Ok(())
    }

    /// Handles one expression if it is a filter shape myveil rewrites; records, for column
    /// references under other shapes, what that shape is (for the refusal message).
    fn filter(&mut self, e: &Expr, parent_kind: &mut HashMap<usize, &'static str>) -> Outcome<()> {
        let mut note = |this: &Self, child: &Expr, why: &'static str| {
            if idents_of(child).is_some()
                && let Some((s, _)) = this.offsets.range(child.span())
            {
                parent_kind.entry(s).or_insert(why);
            }
        };
        match e {
            Expr::BinaryOp { left, op, right } => {
                let eq = matches!(
                    op,
                    BinaryOperator::Eq | BinaryOperator::NotEq | BinaryOperator::Spaceship
                );
                let (colside, litside) = if idents_of(left).is_some() {
                    (left, right)
                } else {
                    (right, left)
                };
                if eq
                    && let Some(idents) = idents_of(colside)
                    && let Some(col) = self.scope.column(idents)?
                    && !self.allowed.contains(&self.range(colside.span())?.0)
                {
                    let Some(lit) = self.literal(litside) else {
                        return refuse(
                            col.scope(),
                            "comparing an encrypted column with anything but a literal or parameter is not supported",
                        );
                    };
                    self.search(
                        e,
                        colside,
                        idents,
                        col,
                        vec![lit],
                        matches!(op, BinaryOperator::NotEq),
                    )?;
                    return Ok(());
                }
                let why = match op {
                    BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq => {
                        "range comparisons on an encrypted column are not supported"
                    }
                    _ if eq => {
                        "comparing an encrypted column with anything but a literal or parameter is not supported"
                    }
                    _ => "expressions over an encrypted column are not supported",
                };
                note(self, left, why);
                note(self, right, why);
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                if let Some(idents) = idents_of(expr)
                    && let Some(col) = self.scope.column(idents)?
                {
                    let mut lits = Vec::new();
                    for item in list {
                        match self.literal(item) {
                            Some(l) => lits.push(l),
                            None => {
                                return refuse(
                                    col.scope(),
                                    "IN over an encrypted column takes literals or parameters only",
                                );
                            }
                        }
                    }
                    self.search(e, expr, idents, col, lits, *negated)?;
                }
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) if idents_of(inner).is_some() => {
                self.allow(inner)?
            }
            Expr::Like { expr, .. }
            | Expr::ILike { expr, .. }
            | Expr::RLike { expr, .. }
            | Expr::SimilarTo { expr, .. } => {
                note(
                    self,
                    expr,
                    "LIKE and pattern matching on an encrypted column are not supported",
                );
            }
            Expr::Between { expr, .. } => note(
                self,
                expr,
                "range comparisons on an encrypted column are not supported",
            ),
            Expr::Cast { expr, .. } => {
                note(self, expr, "CAST of an encrypted column is not supported")
            }
            Expr::Function(f) => {
                let _ = sqlparser::ast::visit_expressions(&f.args, |arg| {
                    note(
                        self,
                        arg,
                        "functions over an encrypted column are not supported",
                    );
                    ControlFlow::<()>::Continue(())
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn search(
        &mut self,
        whole: &Expr,
        colside: &Expr,
        idents: &[Ident],
        col: &'p Protected,
        values: Vec<Lit>,
        negated: bool,
    ) -> Outcome<()> {
        match self.an.role_access(col) {
            Access::Plaintext => {}
            Access::Deny => {
                return Err(Refusal {
                    target: col.scope(),
                    reason: "access denied for this role".into(),
                    denied: true,
                });
            }
            _ => {
                return refuse(
                    col.scope(),
                    "this role sees the column masked and may not filter on it",
                );
            }
        }
        if col.blind_index.is_none() {
            return refuse(
                col.scope(),
                "equality search needs a blind index on this column",
            );
        }
        let qualifier: String = idents[..idents.len() - 1]
            .iter()
            .map(|i| format!("{i}."))
            .collect();
        let (s, mut e) = self.range(whole.span())?;
        if let Expr::InList { .. } = whole {
            // The span of an IN list ends at its last item; take the closing parenthesis too.
            let text = self.offsets.text.as_bytes();
            let mut i = e;
            while i < text.len() && text[i].is_ascii_whitespace() {
                i += 1;
            }
            if text.get(i) != Some(&b')') {
                return refuse(col.scope(), "IN list not understood");
            }
            e = i + 1;
        }
        self.allow(colside)?;
        self.edits.push(Edit {
            start: s,
            end: e,
            pieces: vec![Piece::BlindSearch {
                column: col,
                qualifier,
                values,
                negated,
            }],
        });
        Ok(())
    }

    fn finish(mut self) -> Outcome<Plan<'p>> {
        self.edits.sort_by_key(|e| (e.start, e.end));
        for pair in self.edits.windows(2) {
            if pair[1].start < pair[0].end {
                return refuse("", "overlapping rewrites; statement not supported");
            }
        }
        Ok(Plan::Rewrite {
            edits: self.edits,
            placeholders: self.placeholders,
        })
    }
}

impl Analyzer<'_> {
    fn role_access(&self, col: &Protected) -> Access {
        col.decide(self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::rewrite::{ParamUse, Sealer, render};

    const POLICY: &str = r#"
        [[column]]
        table = "users"
        column = "email"
        type = "varchar(100)"
        blind_index = "email_bidx"
        roles = { app = "plaintext", support = { mask = "email" }, analyst = "deny" }

        [[column]]
        table = "users"
        column = "ssn"
        type = "char(11)"
        roles = { app = "plaintext", support = { mask = "last-four" }, analyst = "deny" }

        [[column]]
        table = "users"
        column = "born"
        type = "date"
        roles = { app = "plaintext", analyst = { mask = "year" } }
    "#;

    /// Readable stand-ins: S[value] for a sealed value, B<key>[value] for a blind index.
    struct Fake;

    fn pad(s: String) -> [u8; 32] {
        let mut out = [b'.'; 32];
        let b = s.as_bytes();
        out[..b.len().min(32)].copy_from_slice(&b[..b.len().min(32)]);
        out
    }

    impl Sealer for Fake {
        fn seal(
            &self,
            _: &Protected,
            p: &[u8],
            row_key: Option<&[u8]>,
        ) -> Result<Vec<u8>, crate::crypto::Error> {
            Ok(match row_key {
                Some(k) => format!(
                    "S[{}@{}]",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(k)
                ),
                None => format!("S[{}]", String::from_utf8_lossy(p)),
            }
            .into_bytes())
        }
        fn blind(&self, _: &Protected, p: &[u8]) -> Result<[u8; 32], crate::crypto::Error> {
            Ok(pad(format!("B0[{}]", String::from_utf8_lossy(p))))
        }
        fn blind_all(
            &self,
            _: &Protected,
            p: &[u8],
        ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
            Ok((0..2)
                .map(|k| pad(format!("B{k}[{}]", String::from_utf8_lossy(p))))
                .collect())
        }
        fn blind_keys(&self, _: &Protected) -> usize {
            2
        }
    }

    /// Shows X'…' literals decoded, dropping blind-index padding.
    fn readable(sql: &str) -> String {
        let mut out = String::new();
        let mut rest = sql;
        while let Some(at) = rest.find("X'") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 2..];
            let end = tail.find('\'').unwrap_or(tail.len());
            let bytes = hex::decode(&tail[..end]).unwrap_or_default();
            out.push_str(&format!(
                "X'{}'",
                String::from_utf8_lossy(&bytes).trim_end_matches('.')
            ));
            rest = &tail[(end + 1).min(tail.len())..];
        }
        out.push_str(rest);
        out
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.add_toml(POLICY, "t").expect("policy");
        p
    }

    fn analyze(role: &str, sql: &str) -> Result<(String, Vec<ParamUse>), Refusal> {
        let p = policy();
        let an = Analyzer {
            policy: &p,
            database: Some("shop"),
            role,
            schema: &NoSchema,
        };
        match an.analyze(sql) {
            Plan::Forward => Ok((format!("FORWARD {sql}"), Vec::new())),
            Plan::Refuse(r) => Err(r),
            Plan::Rewrite {
                edits,
                placeholders,
            } => render(sql, &edits, &placeholders, &Fake).map(|r| (readable(&r.sql), r.params)),
        }
    }

    fn rewrite(sql: &str) -> String {
        match analyze("app", sql) {
            Ok((s, _)) => s,
            Err(r) => panic!("{sql}: refused: {r}"),
        }
    }

    #[test]
    fn golden_rewrites() {
        let cases: &[(&str, &str)] = &[
            (
                "SELECT id FROM orders WHERE note = 'email'",
                "FORWARD SELECT id FROM orders WHERE note = 'email'",
            ),
            (
                "INSERT INTO users (id, email, name) VALUES (1, 'a@x.io', 'Ann'), (2, NULL, 'Bob')",
                "INSERT INTO users (id, email, name, `email_bidx`) VALUES (1, X'S[a@x.io]', 'Ann', X'B0[a@x.io]'), (2, NULL, 'Bob', NULL)",
            ),
            (
                "insert into shop.users (ssn, born) values ('123-45-6789', '1990-5-1')",
                "insert into shop.users (ssn, born) values (X'S[123-45-6789]', X'S[1990-05-01]')",
            ),
            (
                "UPDATE users SET email = 'b@x.io', name = 'B' WHERE id = 1",
                "UPDATE users SET email = X'S[b@x.io]', `email_bidx` = X'B0[b@x.io]', name = 'B' WHERE id = 1",
            ),
            (
                "SELECT id, email FROM users WHERE email = 'a@x.io' AND id > 3",
                "SELECT id, email FROM users WHERE `email_bidx` IN (X'B0[a@x.io]', X'B1[a@x.io]') AND id > 3",
            ),
            (
                "SELECT u.* FROM users AS u WHERE u.email NOT IN ('a', 'b')",
                "SELECT u.* FROM users AS u WHERE u.`email_bidx` NOT IN (X'B0[a]', X'B1[a]', X'B0[b]', X'B1[b]')",
            ),
            (
                "DELETE FROM users WHERE 'x@y' = email",
                "DELETE FROM users WHERE `email_bidx` IN (X'B0[x@y]', X'B1[x@y]')",
            ),
            (
                "SELECT email FROM users WHERE id = 1 AND ssn IS NOT NULL",
                "SELECT email FROM users WHERE id = 1 AND ssn IS NOT NULL",
            ),
            (
                "INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = VALUES(email)",
                "INSERT INTO users (id, email, `email_bidx`) VALUES (1, X'S[a]', X'B0[a]') ON DUPLICATE KEY UPDATE email = VALUES(email), `email_bidx` = VALUES(`email_bidx`)",
            ),
            (
                "INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = 'z'",
                "INSERT INTO users (id, email, `email_bidx`) VALUES (1, X'S[a]', X'B0[a]') ON DUPLICATE KEY UPDATE email = X'S[z]', `email_bidx` = X'B0[z]'",
            ),
            (
                "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = 'q'",
                "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.`email_bidx` IN (X'B0[q]', X'B1[q]')",
            ),
            (
                "SELECT 1; UPDATE users SET ssn = '1' WHERE id = 2",
                "SELECT 1; UPDATE users SET ssn = X'S[1]' WHERE id = 2",
            ),
            (
                "REPLACE INTO users (id, born) VALUES (7, '2001-02-03')",
                "REPLACE INTO users (id, born) VALUES (7, X'S[2001-02-03]')",
            ),
            (
                "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 5)",
                "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 5)",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&rewrite(input), want, "input: {input}");
        }
    }

    struct Columns;
    impl Schema for Columns {
        fn columns(&self, _: &str, table: &str) -> Option<Vec<String>> {
            (table == "users").then(|| {
                ["id", "email", "email_bidx", "ssn"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
        }
    }

    #[test]
    fn insert_without_column_list_uses_the_schema() {
        let p = policy();
        let an = Analyzer {
            policy: &p,
            database: Some("shop"),
            role: "app",
            schema: &Columns,
        };
        let sql = "INSERT INTO users VALUES (1, 'a@x.io', DEFAULT, '1'), (2, NULL, NULL, NULL)";
        let Plan::Rewrite {
            edits,
            placeholders,
        } = an.analyze(sql)
        else {
            panic!("rewrite")
        };
        let out = readable(
            &render(sql, &edits, &placeholders, &Fake)
                .expect("render")
                .sql,
        );
        assert_eq!(
            out,
            "INSERT INTO users VALUES (1, X'S[a@x.io]', X'B0[a@x.io]', X'S[1]'), (2, NULL, NULL, NULL)"
        );
        let bad = an.analyze("INSERT INTO users VALUES (1, 'a@x.io', X'00', '1')");
        assert!(matches!(bad, Plan::Refuse(r) if r.reason.contains("NULL or DEFAULT")));
    }

    #[test]
    fn row_bound_columns_take_their_row_key() {
        let mut p = Policy::default();
        p.add_toml("[[column]]\ntable = \"acct\"\ncolumn = \"iban\"\ntype = \"varchar(34)\"\nrow_key = \"id\"\nroles = { app = \"plaintext\" }\n", "t").expect("policy");
        let an = Analyzer {
            policy: &p,
            database: Some("shop"),
            role: "app",
            schema: &NoSchema,
        };
        let run = |sql: &str| match an.analyze(sql) {
            Plan::Rewrite {
                edits,
                placeholders,
            } => render(sql, &edits, &placeholders, &Fake)
                .map(|r| (readable(&r.sql), r.params))
                .map_err(|r| r.to_string()),
            Plan::Refuse(r) => Err(r.to_string()),
            Plan::Forward => Err("forward".into()),
        };
        assert_eq!(
            run("INSERT INTO acct (id, iban) VALUES (007, 'DE1'), (8, 'DE2')").map(|r| r.0),
            Ok("INSERT INTO acct (id, iban) VALUES (007, X'S[DE1@7]'), (8, X'S[DE2@8]')".into())
        );
        assert_eq!(
            run("UPDATE acct SET iban = 'DE3' WHERE id = 8 AND 1 = 1").map(|r| r.0),
            Ok("UPDATE acct SET iban = X'S[DE3@8]' WHERE id = 8 AND 1 = 1".into())
        );
        let (_, params) = run("INSERT INTO acct (iban, id) VALUES (?, ?)").expect("prepared");
        assert_eq!(
            params[0],
            ParamUse::Seal {
                param: 0,
                column: "acct.iban".into(),
                row_key: Some(crate::sql::rewrite::RowKey::Param(1))
            }
        );
        for (sql, why) in [
            ("INSERT INTO acct (iban) VALUES ('x')", "same INSERT"),
            (
                "INSERT INTO acct (id, iban) VALUES (NULL, 'x')",
                "literal or a parameter",
            ),
            ("UPDATE acct SET iban = 'x' WHERE id > 3", "needs WHERE id"),
            ("UPDATE acct SET iban = 'x'", "needs WHERE id"),
            (
                "UPDATE acct SET id = 9 WHERE id = 8",
                "changing the row key",
            ),
            (
                "INSERT INTO acct (id, iban) VALUES (1, 'x') ON DUPLICATE KEY UPDATE iban = 'y'",
                "ON DUPLICATE KEY UPDATE",
            ),
        ] {
            let err = run(sql).expect_err(sql);
            assert!(err.contains(why), "{sql}: {err}");
        }
    }

    #[test]
    fn parameters_are_mapped() {
        let (sql, params) =
            analyze("app", "INSERT INTO users (id, email) VALUES (?, ?)").expect("ok");
        assert_eq!(
            sql,
            "INSERT INTO users (id, email, `email_bidx`) VALUES (?, ?, ?)"
        );
        assert_eq!(
            params,
            vec![
                ParamUse::Plain(0),
                ParamUse::Seal {
                    param: 1,
                    column: "users.email".into(),
                    row_key: None
                },
                ParamUse::BlindWrite {
                    param: 1,
                    column: "users.email".into()
                }
            ]
        );
        let (sql, params) =
            analyze("app", "SELECT * FROM users WHERE email = ? AND id = ?").expect("ok");
        assert_eq!(
            sql,
            "SELECT * FROM users WHERE `email_bidx` IN (?, ?) AND id = ?"
        );
        assert_eq!(
            params,
            vec![
                ParamUse::BlindSearch {
                    param: 0,
                    column: "users.email".into(),
                    key: 0
                },
                ParamUse::BlindSearch {
                    param: 0,
                    column: "users.email".into(),
                    key: 1
                },
                ParamUse::Plain(1)
            ]
        );
        let (_, params) = analyze(
            "app",
            "UPDATE users SET born = ? WHERE id = ? AND note = '?'",
        )
        .expect("ok");
        assert_eq!(
            params,
            vec![
                ParamUse::Seal {
                    param: 0,
                    column: "users.born".into(),
                    row_key: None
                },
                ParamUse::Plain(1)
            ]
        );
    }

    #[test]
    fn refusals_name_the_column_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("app", "SELECT UPPER(email) FROM users", "functions"),
            ("app", "SELECT id FROM users WHERE email LIKE 'a%'", "LIKE"),
            ("app", "SELECT id FROM users ORDER BY email", "supported"),
            (
                "app",
                "SELECT email, COUNT(*) FROM users GROUP BY email",
                "supported",
            ),
            ("app", "SELECT id FROM users WHERE ssn = '1'", "blind index"),
            (
                "app",
                "SELECT id FROM users WHERE born > '2000-01-01'",
                "range",
            ),
            (
                "app",
                "SELECT id FROM users WHERE born BETWEEN '1' AND '2'",
                "range",
            ),
            ("app", "SELECT CAST(email AS BINARY) FROM users", "CAST"),
            ("app", "SELECT CONCAT(email, 'x') FROM users", "functions"),
            (
                "app",
                "INSERT INTO users (email) SELECT email FROM old_users",
                "INSERT … SELECT",
            ),
            (
                "app",
                "INSERT INTO users (email) VALUES (CONCAT('a', 'b'))",
                "literal or a parameter",
            ),
            ("app", "INSERT INTO users VALUES (1, 'a')", "column order"),
            (
                "app",
                "UPDATE users SET email = name",
                "literal or a parameter",
            ),
            (
                "app",
                "UPDATE users SET email = @v",
                "literal or a parameter",
            ),
            (
                "app",
                "INSERT INTO users (email, email_bidx) VALUES ('a', 'b')",
                "blind-index",
            ),
            ("app", "UPDATE users SET email_bidx = 'x'", "blind-index"),
            (
                "app",
                "SELECT id FROM users WHERE email = name",
                "literal or parameter",
            ),
            (
                "support",
                "SELECT id FROM users WHERE email = 'a'",
                "masked",
            ),
            (
                "app",
                "SELECT 1; SELECT UPPER(email) FROM users",
                "functions",
            ),
            (
                "app",
                "SELECT u.id FROM users u NATURAL JOIN orders",
                "NATURAL",
            ),
            (
                "app",
                "SELECT u.id FROM users u JOIN contacts c USING (email)",
                "joining",
            ),
            (
                "app",
                "SELECT id FROM users WHERE email = 'a' OR LOWER(email) = 'b'",
                "functions",
            ),
            (
                "app",
                "LOAD DATA INFILE '/tmp/x' INTO TABLE users",
                "myveil",
            ),
            (
                "app",
                "SELECT id FROM users WHERE email = ('a')",
                "literal or parameter",
            ),
            (
                "app",
                "SELECT email FROM users WHERE email = 'a' LIMIT",
                "cannot be parsed",
            ),
            ("app", "SELECT id FROM users WHERE (email) > 'a'", "range"),
        ];
        for (role, sql, why) in cases {
            match analyze(role, sql) {
                Err(r) => {
                    assert!(
                        r.to_string().contains(why),
                        "{sql}: reason {:?} lacks {why:?}",
                        r.to_string()
                    );
                    assert!(!r.denied, "{sql}");
                }
                Ok((out, _)) => panic!("{sql} was not refused: {out}"),
            }
        }
        let denied = analyze("analyst", "SELECT ssn FROM users").expect_err("deny");
        assert!(denied.denied && denied.target == "users.ssn", "{denied:?}");
        let denied = analyze("analyst", "UPDATE users SET email = 'a'").expect_err("deny");
        assert!(denied.denied);
        let denied =
            analyze("analyst", "SELECT id FROM users WHERE email = 'a'").expect_err("deny");
        assert!(denied.denied);
        // Masked roles may read the column (masked on the way back).
        assert!(analyze("support", "SELECT email FROM users").is_ok());
    }
}
