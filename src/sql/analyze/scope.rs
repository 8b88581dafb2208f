//! sql::analyze::scope: relations (tables, derived tables, CTEs, views) and the columns they
//! give, name resolution with SQL's scoping, and queries: what each result column carries.

use sqlparser::ast::{
    Cte, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Spanned,
    TableFactor, TableWithJoins,
};

use super::{
    ColumnMeta, MAX_DEPTH, MAX_VIEW_DEPTH, Out, Outcome, Piece, Shape, Work, denied, refuse,
};
use crate::policy::{Access, Protected};

/// What the analysis needs from the live schema.
pub trait Schema {
    /// Columns of a base table, in order (None: not known).
    fn columns(&self, database: &str, table: &str) -> Option<&[ColumnMeta]>;
    /// The definition (a SELECT) of a view (None: not a view, or not known).
    fn view(&self, database: &str, name: &str) -> Option<&str>;
    /// Whether a unique index includes `column`.
    fn unique(&self, database: &str, table: &str, column: &str) -> bool;
    /// Whether `migrate apply` is copying the protected `column` into its shadow (its copy
    /// triggers are there): writes then go to the shadow.
    fn copying(&self, _database: &str, _table: &str, _column: &str) -> bool {
        false
    }
}

/// No schema knowledge.
pub struct NoSchema;

impl Schema for NoSchema {
    fn columns(&self, _: &str, _: &str) -> Option<&[ColumnMeta]> {
        None
    }
    fn view(&self, _: &str, _: &str) -> Option<&str> {
        None
    }
    fn unique(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'p> {
    Plain,
    /// Stored cells of a protected column from table instance `inst`; `base`: directly a
    /// base table's column (so it has a blind index next to it); `window`: that column is
    /// in a migration's shadow window (its value is in `<column>__myveil` where that is
    /// set, see `Work::shadow_ref`).
    Cell {
        col: &'p Protected,
        inst: u32,
        base: bool,
        window: bool,
    },
    /// A plain column that protected columns of instance `inst` are bound to as row key.
    Key {
        name: &'p str,
        inst: u32,
    },
}

impl PartialEq for Origin<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Origin::Plain, Origin::Plain) => true,
            (
                Origin::Cell {
                    col: a,
                    inst: i,
                    base: b,
                    window: w,
                },
                Origin::Cell {
                    col: c,
                    inst: j,
                    base: d,
                    window: x,
                },
            ) => std::ptr::eq(*a, *c) && i == j && b == d && w == x,
            (Origin::Key { name: a, inst: i }, Origin::Key { name: b, inst: j }) => {
                a == b && i == j
            }
            _ => false,
        }
    }
}

impl Origin<'_> {
    pub(crate) fn is_cell(&self) -> bool {
        matches!(self, Origin::Cell { .. })
    }

    /// As a result column carries it: `shadow_ref` or `shadow_star` already read it
    /// through its shadow, so a reference to the result is not rewritten again.
    pub(crate) fn projected(self) -> Self {
        match self {
            Origin::Cell {
                col, inst, base, ..
            } => Origin::Cell {
                col,
                inst,
                base,
                window: false,
            },
            o => o,
        }
    }
}

/// One column of a query's result.
#[derive(Debug, Clone)]
pub(crate) enum Item<'p> {
    Col(String, Origin<'p>),
    /// Plain columns whose number is not known here.
    Run,
    /// Every column of a protected base table whose columns the snapshot does not know
    /// yet: they are told apart by their column definitions, which name the base table's
    /// own columns when they come straight from it (only in the statement's own result).
    TableRun(String),
}

impl<'p> Item<'p> {
    pub(crate) fn origin(&self) -> Origin<'p> {
        match self {
            Item::Col(_, o) => *o,
            Item::Run | Item::TableRun(_) => Origin::Plain,
        }
    }
}

/// A query's result columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Items<'p>(pub(crate) Vec<Item<'p>>);

impl Items<'_> {
    pub(crate) fn has_cells(&self) -> bool {
        self.0
            .iter()
            .any(|i| i.origin().is_cell() || matches!(i, Item::TableRun(_)))
    }

    /// Refuses columns of a protected table that cannot be traced past this point.
    pub(crate) fn traceable(&self) -> Outcome<()> {
        match self.0.iter().find_map(|i| match i {
            Item::TableRun(t) => Some(t),
            _ => None,
        }) {
            Some(t) => refuse(
                t.clone(),
                "the columns of this protected table are not known yet; name them instead of *",
            ),
            None => Ok(()),
        }
    }

    /// The result set's shape, with row keys found among the other columns.
    pub(crate) fn into_shape(self, policy: &crate::policy::Policy) -> Shape {
        let index = |col: &Protected| {
            policy
                .columns()
                .iter()
                .position(|c| std::ptr::eq(c, col))
                .unwrap_or(usize::MAX)
        };
        let columns = self
            .0
            .iter()
            .map(|item| match item {
                Item::Run => Out::Run,
                Item::TableRun(_) => Out::Table,
                Item::Col(_, Origin::Cell { col, inst, .. }) => Out::Cell {
                    column: index(col),
                    key: col.row_key.as_deref().and_then(|rk| {
                        self.0.iter().position(|o| {
                            matches!(o, Item::Col(_, Origin::Key { name, inst: i })
                                if i == inst && name.eq_ignore_ascii_case(rk))
                        })
                    }),
                },
                Item::Col(..) => Out::Plain,
            })
            .collect();
        Shape { columns }
    }
}

/// A relation in a FROM clause.
#[derive(Debug, Clone)]
pub(crate) struct Rel<'p> {
    /// The name it is qualified by (its alias, or the table name), lower-case.
    name: String,
    /// The same name as written: table names and aliases are case-sensitive on a server
    /// with lower_case_table_names=0, so `t` and `T` can be two relations.
    exact: String,
    /// The base table (database, table) it is, if it is one.
    table: Option<(String, String)>,
    /// Its columns (lower-case names) where known.
    cols: Vec<(String, Origin<'p>)>,
    /// Every column is in `cols`.
    complete: bool,
    /// For a base table the snapshot knows: each column's name as defined, and whether it
    /// is INVISIBLE (parallel to `cols`; empty otherwise).
    defined: Vec<(String, bool)>,
}

/// A named common table expression.
#[derive(Debug, Clone)]
pub(crate) struct NamedQuery<'p> {
    name: String,
    items: Items<'p>,
}

/// The relations visible to a query, innermost first through `parent`.
pub(crate) struct Frames<'a, 'p> {
    rels: Vec<Rel<'p>>,
    ctes: Vec<NamedQuery<'p>>,
    /// The frame's FROM joins by USING or NATURAL (where `*` orders columns differently).
    coalesced: bool,
    parent: Option<&'a Frames<'a, 'p>>,
}

impl<'a, 'p> Frames<'a, 'p> {
    pub(crate) fn root() -> Self {
        Self {
            rels: Vec::new(),
            ctes: Vec::new(),
            coalesced: false,
            parent: None,
        }
    }

    pub(crate) fn child(&'a self) -> Frames<'a, 'p> {
        Frames {
            rels: Vec::new(),
            ctes: Vec::new(),
            coalesced: false,
            parent: Some(self),
        }
    }

    /// A frame holding one relation (UPDATE and INSERT targets).
    pub(crate) fn with(&'a self, rel: Rel<'p>) -> Frames<'a, 'p> {
        let mut f = self.child();
        f.rels.push(rel);
        f
    }

    fn cte(&self, name: &str) -> Option<&NamedQuery<'p>> {
        self.ctes
            .iter()
            .rev()
            .find(|c| c.name == name)
            .or_else(|| self.parent.and_then(|p| p.cte(name)))
    }

    /// The relation a qualifier names, innermost frame first. Names are compared as the
    /// server may: ignoring case (lower_case_table_names 1 or 2) or exactly (0). Where the
    /// two would pick different relations, the reference is refused.
    fn by_qualifier(&self, q: &str) -> Outcome<Option<&Rel<'p>>> {
        let lower = q.to_ascii_lowercase();
        let mut frame = Some(self);
        while let Some(f) = frame {
            let mut candidates: Vec<&Rel<'p>> = f.rels.iter().filter(|r| r.name == lower).collect();
            if candidates.is_empty() {
                candidates = f
                    .rels
                    .iter()
                    .filter(|r| r.table.as_ref().is_some_and(|(_, t)| *t == lower))
                    .collect();
            }
            if !candidates.is_empty() {
                let exact: Vec<&Rel<'p>> = candidates
                    .iter()
                    .copied()
                    .filter(|r| r.exact == q)
                    .collect();
                return match (candidates.as_slice(), exact.as_slice()) {
                    ([one], [_]) => Ok(Some(*one)),
                    ([one], []) => {
                        // Differs in case only: an outer relation named exactly so is what a
                        // case-sensitive server takes.
                        let mut outer = f.parent;
                        while let Some(o) = outer {
                            if o.rels.iter().any(|r| r.exact == q) {
                                return refuse(q, AMBIGUOUS_CASE);
                            }
                            outer = o.parent;
                        }
                        Ok(Some(*one))
                    }
                    (_, [one]) => Ok(Some(*one)),
                    _ => refuse(q, AMBIGUOUS_CASE),
                };
            }
            frame = f.parent;
        }
        Ok(None)
    }

    /// Whether any relation in scope may hold a protected column named `name`.
    fn may_hold_cell(&self, name: &str) -> bool {
        let mut frame = Some(self);
        while let Some(f) = frame {
            if f.rels.iter().any(|r| {
                !r.complete
                    || r.cols
                        .iter()
                        .any(|(n, o)| n == name && !matches!(o, Origin::Plain))
            }) {
                return true;
            }
            frame = f.parent;
        }
        false
    }

    fn by_table(&self, db: &str, t: &str) -> Option<&Rel<'p>> {
        let (db, t) = (db.to_ascii_lowercase(), t.to_ascii_lowercase());
        self.rels
            .iter()
            .find(|r| r.table.as_ref().is_some_and(|(d, n)| *d == db && *n == t))
            .or_else(|| self.parent.and_then(|p| p.by_table(&db, &t)))
    }

    pub(crate) fn first_rel(&self) -> Option<&Rel<'p>> {
        self.rels.first()
    }

    /// What an unqualified column name refers to. When a frame has relations whose columns
    /// are not known, the name may be theirs or an outer one's: the outer protected column
    /// is assumed (a wrong guess then fails to open rather than leaking).
    fn unqualified(&self, name: &str) -> Outcome<Origin<'p>> {
        let found: Vec<Origin<'p>> = self
            .rels
            .iter()
            .filter_map(|r| r.cols.iter().find(|(n, _)| n == name).map(|(_, o)| *o))
            .collect();
        if let Some(first) = found.first() {
            let cells: Vec<&Origin<'p>> = found.iter().filter(|o| o.is_cell()).collect();
            return match cells.as_slice() {
                [] => Ok(*first),
                [one] => Ok(**one),
                [a, rest @ ..] if rest.iter().all(|o| same_cell(a, o)) => Ok(**a),
                _ => refuse(name, "ambiguous column name; qualify it with its table"),
            };
        }
        let unknown = self.rels.iter().any(|r| !r.complete);
        match self.parent {
            Some(p) => {
                let outer = p.unqualified(name)?;
                if unknown && !outer.is_cell() {
                    return Ok(Origin::Plain);
                }
                Ok(outer)
            }
            None => Ok(Origin::Plain),
        }
    }

    /// A qualifier no relation in scope has (an outer query myveil does not see, or an
    /// error on the server): plain, unless a protected column of that name is in scope.
    fn unknown_qualifier(&self, q: &str, column: &str) -> Outcome<Origin<'p>> {
        if self.may_hold_cell(column) {
            return refuse(q, "the qualifier names no table of this query");
        }
        Ok(Origin::Plain)
    }

    /// Resolves a column reference.
    pub(crate) fn resolve(&self, idents: &[Ident]) -> Outcome<Origin<'p>> {
        let name = |i: &Ident| i.value.to_ascii_lowercase();
        match idents {
            [c] => self.unqualified(&name(c)),
            [q, c] => match self.by_qualifier(&q.value)? {
                Some(r) => Ok(r.column(&name(c))),
                None => self.unknown_qualifier(&q.value, &name(c)),
            },
            [d, t, c] => match self.by_table(&d.value, &t.value) {
                Some(r) => Ok(r.column(&name(c))),
                None => self.unknown_qualifier(&t.value, &name(c)),
            },
            _ => refuse("", "column reference not understood"),
        }
    }
}

const AMBIGUOUS_CASE: &str =
    "table names or aliases that differ only in case are read differently by servers; rename one";

fn same_cell(a: &Origin<'_>, b: &Origin<'_>) -> bool {
    match (a, b) {
        (Origin::Cell { col: x, .. }, Origin::Cell { col: y, .. }) => std::ptr::eq(*x, *y),
        _ => false,
    }
}

impl<'p> Rel<'p> {
    pub(crate) fn column(&self, name: &str) -> Origin<'p> {
        self.cols
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Origin::Plain, |(_, o)| *o)
    }

    /// The base table it is, if it is one.
    pub(crate) fn table(&self) -> Option<&(String, String)> {
        self.table.as_ref()
    }

    /// Whether `col` is in a migration's shadow window in this table.
    pub(crate) fn in_window(&self, col: &Protected) -> bool {
        matches!(
            self.column(&col.column.to_ascii_lowercase()),
            Origin::Cell { window: true, .. }
        )
    }

    /// Whether any of its columns carries protected cells.
    pub(crate) fn has_cells(&self) -> bool {
        self.cols.iter().any(|(_, o)| o.is_cell())
    }

    fn star(&self, into: &mut Vec<Item<'p>>) {
        if !self.complete && self.table.is_some() && self.has_cells() {
            let (db, t) = self.table.clone().unwrap_or_default();
            into.push(Item::TableRun(format!("{db}.{t}")));
            return;
        }
        into.extend(
            self.cols
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.defined.get(*i).is_some_and(|d| d.1))
                .map(|(_, (n, o))| Item::Col(n.clone(), o.projected())),
        );
        if !self.complete {
            into.push(Item::Run);
        }
    }
}

pub(crate) fn object_idents(name: &ObjectName) -> Option<Vec<Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

impl<'p> Work<'_, 'p> {
    fn role_reads(&self, col: &Protected) -> bool {
        col.decide(self.an.role) != Access::Deny
    }

    /// Checks a reference to a protected value: a role denied the column may not name it.
    pub(crate) fn touch(&mut self, origin: Origin<'p>) -> Outcome<()> {
        if let Origin::Cell { col, .. } = origin {
            self.protected = true;
            if !self.role_reads(col) {
                return denied(col);
            }
        }
        Ok(())
    }

    /// The relation a base table name stands for.
    pub(crate) fn base_table(
        &mut self,
        name: &ObjectName,
        alias: Option<&str>,
    ) -> Outcome<Rel<'p>> {
        let Some(parts) = object_idents(name) else {
            return refuse("", "table name not understood");
        };
        let (db, table) = match parts.as_slice() {
            [t] => (self.database.clone().unwrap_or_default(), t.value.clone()),
            [d, t] => (d.value.clone(), t.value.clone()),
            _ => return refuse("", "table name not understood"),
        };
        let exact = alias.unwrap_or(&table).to_owned();
        let rel_name = exact.to_ascii_lowercase();
        if let Some(def) = self.an.schema.view(&db, &table) {
            let items = self.view_items(&db, &table, def)?;
            return Ok(Rel {
                name: rel_name,
                exact,
                table: None,
                defined: Vec::new(),
                complete: !items.0.iter().any(|i| matches!(i, Item::Run)),
                cols: items
                    .0
                    .into_iter()
                    .filter_map(|i| match i {
                        Item::Col(n, o) => Some((n, o.projected())),
                        Item::Run | Item::TableRun(_) => None,
                    })
                    .collect(),
            });
        }
        let inst = self.next_instance();
        let policy = self.an.policy;
        let protected: Vec<&'p Protected> = policy
            .columns()
            .iter()
            .filter(|c| c.is_in(&db, &table))
            .collect();
        let meta = self.an.schema.columns(&db, &table);
        let origin_of = |n: &str| -> Origin<'p> {
            // A migration's shadow or old column holds the protected column's values.
            let cell = crate::policy::shadowed(n).unwrap_or(n);
            if let Some(c) = protected
                .iter()
                .find(|c| c.column.eq_ignore_ascii_case(cell))
            {
                // The column itself while its shadow exists and has not been swapped in (no
                // old column yet): a migration's shadow window.
                let window = cell.len() == n.len()
                    && meta.is_some_and(|m| {
                        let has = |suffix: &str| {
                            let name = format!("{}{suffix}", c.column);
                            m.iter().any(|x| x.name.eq_ignore_ascii_case(&name))
                        };
                        has(crate::policy::SHADOW_SUFFIX) && !has(crate::policy::OLD_SUFFIX)
                    });
                return Origin::Cell {
                    col: c,
                    inst,
                    base: true,
                    window,
                };
            }
            if let Some(rk) = protected
                .iter()
                .filter_map(|c| c.row_key.as_deref())
                .find(|rk| rk.eq_ignore_ascii_case(n))
            {
                return Origin::Key { name: rk, inst };
            }
            Origin::Plain
        };
        let defined: Vec<(String, bool)> = meta
            .map(|m| m.iter().map(|c| (c.name.clone(), c.invisible)).collect())
            .unwrap_or_default();
        let (cols, complete) = match meta {
            Some(meta) => (
                meta.iter()
                    .map(|m| (m.name.to_ascii_lowercase(), origin_of(&m.name)))
                    .collect(),
                true,
            ),
            None => {
                let mut cols: Vec<(String, Origin<'p>)> = Vec::new();
                for c in &protected {
                    cols.push((c.column.to_ascii_lowercase(), origin_of(&c.column)));
                    if let Some(rk) = c.row_key.as_deref()
                        && !cols.iter().any(|(n, _)| n.eq_ignore_ascii_case(rk))
                    {
                        cols.push((rk.to_ascii_lowercase(), origin_of(rk)));
                    }
                }
                (cols, false)
            }
        };
        if !protected.is_empty() {
            self.protected = true;
        }
        Ok(Rel {
            name: rel_name,
            exact,
            table: Some((db.to_ascii_lowercase(), table.to_ascii_lowercase())),
            cols,
            complete,
            defined,
        })
    }

    /// The result columns of a view, from its definition (analyzed in its own database; a
    /// definition that needed rewriting cannot be protected and is refused).
    fn view_items(&mut self, db: &str, name: &str, def: &str) -> Outcome<Items<'p>> {
        if self.view_depth >= MAX_VIEW_DEPTH {
            return refuse(format!("{db}.{name}"), "views nested too deep");
        }
        let Ok(sqlparser::ast::Statement::Query(q)) = super::parse(def) else {
            return refuse(
                format!("{db}.{name}"),
                "the definition of this view cannot be analyzed",
            );
        };
        let sub = super::Offsets::new(def);
        let inner_work = Work {
            an: self.an,
            view: self.view,
            offsets: &sub,
            edits: Vec::new(),
            protected: false,
            instances: self.instances,
            view_depth: self.view_depth + 1,
            database: Some(db.to_owned()),
            // Spans inside the definition do not map to the statement: no edit there.
            in_view: true,
            high_not: false,
            empty_string_is_null: false,
            flows: std::cell::RefCell::new(Vec::new()),
            shadowed: 0,
        };
        let mut inner = inner_work;
        let items = inner.query(&q, &Frames::root(), 0)?;
        items.traceable()?;
        self.instances = inner.instances;
        self.protected |= inner.protected;
        if !inner.edits.is_empty() {
            return refuse(
                format!("{db}.{name}"),
                "this view filters on protected data where myveil cannot rewrite it",
            );
        }
        Ok(items)
    }

    /// A result column without an alias that `project` read through its shadow
    /// (`shadow_ref`, since `before` of them): a reference is named as written, as it was.
    /// (An expression over one, `ssn IS NULL`, is labelled with its rewritten text for the
    /// window: sqlparser's spans do not tell where such an expression ends.)
    pub(crate) fn name_shadowed(&mut self, e: &sqlparser::ast::Expr, before: usize) -> Outcome<()> {
        let Some(name) = super::expr::idents_of(super::expr::unnest(e)).and_then(|i| i.last())
        else {
            return Ok(());
        };
        if self.shadowed == before {
            return Ok(());
        }
        let (_, mut last) = self.tokens_of(e.span())?;
        // A parenthesized reference's span is the reference's.
        let mut inner = e;
        while let sqlparser::ast::Expr::Nested(n) = inner {
            last = self.closing_paren(last)?;
            inner = n;
        }
        let (_, end) = self.token_bytes(last, last)?;
        self.edits.push(super::Edit {
            start: end,
            end,
            pieces: vec![Piece::Text(
                format!(" AS `{}`", name.value.replace('`', "``")).into(),
            )],
        });
        Ok(())
    }

    /// `*` or `t.*` over a table with a column in a migration's shadow window: written out,
    /// with that column read through its shadow (`shadow_ref`) under its own name. Only
    /// over base tables whose columns the snapshot knows (anything else: name the columns).
    fn shadow_star(&mut self, item: &SelectItem, rels: &[&Rel<'p>]) -> Outcome<()> {
        let windowed = |r: &Rel<'p>| {
            r.cols.iter().find_map(|(_, o)| match o {
                Origin::Cell {
                    col, window: true, ..
                } => Some(*col),
                _ => None,
            })
        };
        let Some(col) = rels.iter().find_map(|r| windowed(r)) else {
            return Ok(());
        };
        if self.in_view {
            return refuse(col.scope(), super::expr::WINDOW_VIEW);
        }
        let options = match item {
            SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) => o,
            _ => return Ok(()),
        };
        let plain_star = options.opt_ilike.is_none()
            && options.opt_exclude.is_none()
            && options.opt_except.is_none()
            && options.opt_replace.is_none()
            && options.opt_rename.is_none()
            && options.opt_alias.is_none();
        let known = rels
            .iter()
            .all(|r| r.table.is_some() && r.complete && r.defined.len() == r.cols.len());
        let distinct = rels.iter().enumerate().all(|(i, r)| {
            rels[..i]
                .iter()
                .all(|o| !o.exact.eq_ignore_ascii_case(&r.exact))
        });
        if !plain_star || !known || !distinct {
            return refuse(
                col.scope(),
                "myveil migrate apply is moving this column to a wider one; name the columns instead of * until the swap",
            );
        }
        let mut list = Vec::new();
        for r in rels {
            let q = format!("`{}`", r.exact.replace('`', "``"));
            for (i, (_, o)) in r.cols.iter().enumerate() {
                let (name, invisible) = &r.defined[i];
                if *invisible {
                    continue;
                }
                let n = format!("`{}`", name.replace('`', "``"));
                list.push(match o {
                    Origin::Cell {
                        col, window: true, ..
                    } => format!(
                        "COALESCE({q}.{}, {q}.{n}) AS {n}",
                        super::expr::shadow_name(col)
                    ),
                    _ => format!("{q}.{n}"),
                });
            }
        }
        let (first, last) = self.tokens_of(item.span())?;
        let (start, end) = self.token_bytes(first, last)?;
        self.edits.push(super::Edit {
            start,
            end,
            pieces: vec![Piece::Text(list.join(", ").into())],
        });
        Ok(())
    }

    /// A query's result columns.
    pub(crate) fn query(
        &mut self,
        q: &Query,
        outer: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<Items<'p>> {
        if depth > MAX_DEPTH {
            return refuse("", "statement nested too deep");
        }
        let mut frames = outer.child();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let items = self.cte(cte, &frames, with.recursive, depth)?;
                frames.ctes.push(NamedQuery {
                    name: cte.alias.name.value.to_ascii_lowercase(),
                    items,
                });
            }
        }
        let order_by = q.order_by.as_ref();
        let items = match q.body.as_ref() {
            SetExpr::Select(s) => self.select(s, &frames, order_by, depth)?,
            body => {
                let items = self.set_expr(body, &frames, depth)?;
                if let Some(ob) = order_by {
                    self.order_by_outputs(ob, &items, &frames, depth)?;
                }
                items
            }
        };
        if let Some(limit) = &q.limit_clause {
            self.limit(limit, &frames, depth)?;
        }
        if q.fetch.is_some() || q.for_clause.is_some() || !q.pipe_operators.is_empty() {
            return refuse(
                "",
                "query clause not supported where protected data is reachable",
            );
        }
        Ok(items)
    }

    fn cte(
        &mut self,
        cte: &Cte,
        frames: &Frames<'_, 'p>,
        recursive: bool,
        depth: usize,
    ) -> Outcome<Items<'p>> {
        let mut items = if recursive {
            // A recursive CTE may name itself: it is analyzed seeing itself as unknown.
            let mut f = frames.child();
            f.ctes.push(NamedQuery {
                name: cte.alias.name.value.to_ascii_lowercase(),
                items: Items(vec![Item::Run]),
            });
            let items = self.query(&cte.query, &f, depth + 1)?;
            if items.has_cells() {
                return refuse(
                    cte.alias.name.value.clone(),
                    "recursive CTEs over protected columns are not supported",
                );
            }
            items
        } else {
            self.query(&cte.query, frames, depth + 1)?
        };
        items.traceable()?;
        rename(
            &mut items,
            &cte.alias
                .columns
                .iter()
                .map(|c| c.name.value.clone())
                .collect::<Vec<_>>(),
        )?;
        Ok(items)
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<Items<'p>> {
        if depth > MAX_DEPTH {
            return refuse("", "statement nested too deep");
        }
        match body {
            SetExpr::Select(s) => self.select(s, frames, None, depth + 1),
            SetExpr::Query(q) => self.query(q, frames, depth + 1),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let l = self.set_expr(left, frames, depth + 1)?;
                let r = self.set_expr(right, frames, depth + 1)?;
                combine(l, r, *op, *set_quantifier)
            }
            SetExpr::Values(v) => {
                let mut width = 0;
                for row in &v.rows {
                    width = width.max(row.content.len());
                    for e in &row.content {
                        self.value(e, frames, depth + 1)?;
                    }
                }
                Ok(Items(
                    (0..width)
                        .map(|i| Item::Col(format!("column_{i}"), Origin::Plain))
                        .collect(),
                ))
            }
            _ => refuse(
                "",
                "query form not supported where protected data is reachable",
            ),
        }
    }

    fn select(
        &mut self,
        s: &Select,
        outer: &Frames<'_, 'p>,
        order_by: Option<&sqlparser::ast::OrderBy>,
        depth: usize,
    ) -> Outcome<Items<'p>> {
        let mut frames = outer.child();
        for twj in &s.from {
            self.add_from(twj, &mut frames, depth)?;
        }
        let mut items = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    if frames.coalesced
                        && frames
                            .rels
                            .iter()
                            .any(|r| r.cols.iter().any(|(_, o)| o.is_cell()))
                    {
                        return refuse(
                            "",
                            "SELECT * over a join by USING or NATURAL with a protected table is not supported; name the columns",
                        );
                    }
                    let rels: Vec<&Rel<'p>> = frames.rels.iter().collect();
                    self.shadow_star(item, &rels)?;
                    for r in &frames.rels {
                        r.star(&mut items);
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return refuse("", "wildcard not understood");
                    };
                    let parts = object_idents(name).unwrap_or_default();
                    let rel = match parts.as_slice() {
                        [q] => frames.by_qualifier(&q.value)?,
                        [d, t] => frames.by_table(&d.value, &t.value),
                        _ => None,
                    };
                    match rel {
                        Some(r) => {
                            self.shadow_star(item, &[r])?;
                            r.star(&mut items);
                        }
                        None => items.push(Item::Run),
                    }
                }
                SelectItem::UnnamedExpr(e) => {
                    let before = self.shadowed;
                    let origin = self.project(e, &frames, depth + 1)?;
                    self.name_shadowed(e, before)?;
                    let name = match e {
                        sqlparser::ast::Expr::Identifier(i) => i.value.to_ascii_lowercase(),
                        sqlparser::ast::Expr::CompoundIdentifier(v) => v
                            .last()
                            .map(|i| i.value.to_ascii_lowercase())
                            .unwrap_or_default(),
                        _ => self.text_of(e).to_ascii_lowercase(),
                    };
                    items.push(Item::Col(name, origin));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let origin = self.project(expr, &frames, depth + 1)?;
                    items.push(Item::Col(alias.value.to_ascii_lowercase(), origin));
                }
                _ => return refuse("", "select item not understood"),
            }
        }
        let items = Items(items);
        if let Some(w) = &s.selection {
            self.filter(w, &frames, depth + 1)?;
        }
        match &s.group_by {
            sqlparser::ast::GroupByExpr::Expressions(exprs, _) => {
                for e in exprs {
                    self.value(e, &frames, depth + 1)?;
                }
            }
            sqlparser::ast::GroupByExpr::All(_) => {
                return refuse("", "GROUP BY ALL is not supported");
            }
        }
        if let Some(h) = &s.having {
            self.value(h, &frames, depth + 1)?;
            self.outputs_not_named(h, &items)?;
        }
        if let Some(ob) = order_by {
            self.order_by_outputs(ob, &items, &frames, depth)?;
        }
        if s.distinct.is_some() && items.has_cells() {
            return refuse(
                "",
                "DISTINCT over an encrypted column compares ciphertexts, not values; it is not supported",
            );
        }
        if s.into.is_some() && items.has_cells() {
            return refuse(
                "",
                "SELECT … INTO with an encrypted column is not supported",
            );
        }
        if !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.qualify.is_some()
            || s.top.is_some()
            || s.value_table_mode.is_some()
        {
            return refuse(
                "",
                "select clause not supported where protected data is reachable",
            );
        }
        if !s.named_window.is_empty() {
            return refuse(
                "",
                "named windows are not supported where protected data is reachable",
            );
        }
        Ok(items)
    }

    /// ORDER BY may name result columns: never an encrypted one, and its expressions hold
    /// no protected value.
    fn order_by_outputs(
        &mut self,
        ob: &sqlparser::ast::OrderBy,
        items: &Items<'p>,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        let sqlparser::ast::OrderByKind::Expressions(exprs) = &ob.kind else {
            return refuse("", "ORDER BY ALL is not supported");
        };
        for o in exprs {
            self.outputs_not_named(&o.expr, items)?;
            self.value(&o.expr, frames, depth + 1)?;
        }
        if let Some(interpolate) = &ob.interpolate {
            let _ = interpolate;
            return refuse("", "INTERPOLATE is not supported");
        }
        Ok(())
    }

    /// Refuses an expression that names (by alias or position) a result column that
    /// carries protected cells.
    fn outputs_not_named(&self, e: &sqlparser::ast::Expr, items: &Items<'p>) -> Outcome<()> {
        use sqlparser::ast::{Expr, Value};
        let cell_named = |name: &str| {
            items.0.iter().any(
                |i| matches!(i, Item::Col(n, o) if o.is_cell() && n.eq_ignore_ascii_case(name)),
            )
        };
        let mut bad = false;
        let _ = sqlparser::ast::visit_expressions(e, |x| {
            match x {
                Expr::Identifier(i) if cell_named(&i.value) => bad = true,
                Expr::Value(v) => {
                    // A position in ORDER/GROUP BY depends on the number written.
                    self.view.read_literals.set(true);
                    self.view.decided.set(true);
                    if let Value::Number(n, _) = &v.value
                        && let Ok(k) = n.parse::<usize>()
                        && items
                            .0
                            .get(k.wrapping_sub(1))
                            .is_some_and(|i| i.origin().is_cell())
                    {
                        bad = true;
                    }
                }
                _ => {}
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if bad {
            return refuse(
                "",
                "ordering or grouping by an encrypted column is not supported",
            );
        }
        Ok(())
    }

    fn limit(
        &mut self,
        limit: &sqlparser::ast::LimitClause,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        use sqlparser::ast::LimitClause;
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if let Some(l) = limit {
                    self.value(l, frames, depth + 1)?;
                }
                if let Some(o) = offset {
                    self.value(&o.value, frames, depth + 1)?;
                }
                for e in limit_by {
                    self.value(e, frames, depth + 1)?;
                }
            }
            LimitClause::OffsetCommaLimit { offset, limit } => {
                self.value(offset, frames, depth + 1)?;
                self.value(limit, frames, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Adds a FROM item (a table and its joins) to `frames`.
    pub(crate) fn add_from(
        &mut self,
        twj: &TableWithJoins,
        frames: &mut Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        self.table_factor(&twj.relation, frames, depth)?;
        for join in &twj.joins {
            self.table_factor(&join.relation, frames, depth)?;
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => c,
                _ => {
                    return refuse(
                        "",
                        "join form not supported where protected data is reachable",
                    );
                }
            };
            match constraint {
                JoinConstraint::On(e) => self.filter(e, frames, depth + 1)?,
                JoinConstraint::Using(names) => {
                    frames.coalesced = true;
                    for n in names {
                        let parts = object_idents(n).unwrap_or_default();
                        if let Some(last) = parts.last() {
                            let hit = frames
                                .rels
                                .iter()
                                .any(|r| r.column(&last.value.to_ascii_lowercase()).is_cell());
                            if hit {
                                return refuse(
                                    last.value.clone(),
                                    "joining on an encrypted column is not supported",
                                );
                            }
                        }
                    }
                }
                JoinConstraint::Natural => {
                    frames.coalesced = true;
                    if frames.rels.iter().any(|r| {
                        r.cols.iter().any(|(_, o)| o.is_cell()) || r.table.is_some() && !r.complete
                    }) {
                        return refuse(
                            "",
                            "NATURAL JOIN with a protected table is not supported; name the join columns",
                        );
                    }
                }
                JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    fn table_factor(
        &mut self,
        tf: &TableFactor,
        frames: &mut Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        if depth > MAX_DEPTH {
            return refuse("", "statement nested too deep");
        }
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    return refuse(
                        "",
                        "table functions are not supported where protected data is reachable",
                    );
                }
                let alias_name = alias.as_ref().map(|a| a.name.value.clone());
                let parts = object_idents(name).unwrap_or_default();
                if let [single] = parts.as_slice()
                    && let Some(cte) = frames.cte(&single.value.to_ascii_lowercase())
                {
                    let items = cte.items.clone();
                    let exact = alias_name.unwrap_or_else(|| single.value.clone());
                    frames.rels.push(derived_rel(exact, items));
                    return Ok(());
                }
                let rel = self.base_table(name, alias_name.as_deref())?;
                if let Some(a) = alias
                    && !a.columns.is_empty()
                {
                    return refuse("", "column aliases on a table are not supported");
                }
                frames.rels.push(rel);
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let mut items = self.query(subquery, frames, depth + 1)?;
                items.traceable()?;
                let name = alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .unwrap_or_default();
                if let Some(a) = alias {
                    rename(
                        &mut items,
                        &a.columns
                            .iter()
                            .map(|c| c.name.value.clone())
                            .collect::<Vec<_>>(),
                    )?;
                }
                frames.rels.push(derived_rel(name, items));
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return refuse("", "aliased nested joins are not supported");
                }
                self.add_from(table_with_joins, frames, depth + 1)?;
            }
            TableFactor::JsonTable {
                json_expr, alias, ..
            } => {
                self.value(json_expr, frames, depth + 1)?;
                let exact = alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .unwrap_or_default();
                frames.rels.push(Rel {
                    name: exact.to_ascii_lowercase(),
                    exact,
                    table: None,
                    cols: Vec::new(),
                    complete: false,
                    defined: Vec::new(),
                });
            }
            _ => {
                return refuse(
                    "",
                    "FROM item not supported where protected data is reachable",
                );
            }
        }
        Ok(())
    }

    /// The text a result column without an alias is named by (its expression as written).
    fn text_of(&self, e: &sqlparser::ast::Expr) -> String {
        self.offsets
            .range(e.span())
            .and_then(|(s, end)| self.offsets_text(s, end))
            .unwrap_or_default()
    }

    fn offsets_text(&self, s: usize, e: usize) -> Option<String> {
        self.offsets.text.get(s..e).map(str::to_owned)
    }
}

fn derived_rel<'p>(exact: String, items: Items<'p>) -> Rel<'p> {
    let complete = !items.0.iter().any(|i| matches!(i, Item::Run));
    Rel {
        name: exact.to_ascii_lowercase(),
        exact,
        table: None,
        cols: items
            .0
            .into_iter()
            .filter_map(|i| match i {
                Item::Col(n, o) => Some((n, o.projected())),
                Item::Run | Item::TableRun(_) => None,
            })
            .collect(),
        complete,
        defined: Vec::new(),
    }
}

/// Renames result columns by a column list (`WITH c(a, b) AS …`, `AS d(a, b)`).
fn rename(items: &mut Items<'_>, names: &[String]) -> Outcome<()> {
    if names.is_empty() {
        return Ok(());
    }
    if items
        .0
        .iter()
        .any(|i| matches!(i, Item::Run | Item::TableRun(_)))
    {
        return refuse(
            "",
            "a column list over columns that are not known is not supported",
        );
    }
    if names.len() != items.0.len() {
        return refuse("", "the column list does not match the query");
    }
    for (item, n) in items.0.iter_mut().zip(names) {
        if let Item::Col(name, _) = item {
            *name = n.to_ascii_lowercase();
        }
    }
    Ok(())
}

/// The result columns of a set operation: the same protected column at a position on both
/// sides (UNION ALL only: the others compare ciphertexts), or plain on both.
fn combine<'p>(
    l: Items<'p>,
    r: Items<'p>,
    op: SetOperator,
    q: SetQuantifier,
) -> Outcome<Items<'p>> {
    l.traceable()?;
    r.traceable()?;
    if !l.has_cells() && !r.has_cells() {
        return Ok(l);
    }
    let all = matches!(q, SetQuantifier::All);
    if op != SetOperator::Union || !all {
        return refuse(
            "",
            "UNION (without ALL), INTERSECT and EXCEPT over encrypted columns compare ciphertexts, not values; they are not supported",
        );
    }
    if l.0.len() != r.0.len() || l.0.iter().chain(&r.0).any(|i| matches!(i, Item::Run)) {
        return refuse(
            "",
            "UNION over protected columns needs the same columns on both sides",
        );
    }
    let mut out = Vec::with_capacity(l.0.len());
    for (a, b) in l.0.into_iter().zip(r.0) {
        let (oa, ob) = (a.origin(), b.origin());
        match (oa, ob) {
            (Origin::Cell { col: x, .. }, Origin::Cell { col: y, .. }) if std::ptr::eq(x, y) => {
                if x.row_key.is_some() {
                    return refuse(x.scope(), "UNION of row-bound columns is not supported");
                }
                out.push(a);
            }
            (Origin::Cell { col, .. }, _) | (_, Origin::Cell { col, .. }) => {
                return refuse(
                    col.scope(),
                    "a UNION column mixes an encrypted column with other values",
                );
            }
            _ => out.push(match a {
                Item::Col(n, _) => Item::Col(n, Origin::Plain),
                other => other,
            }),
        }
    }
    Ok(Items(out))
}
