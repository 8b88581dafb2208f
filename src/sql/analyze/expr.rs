//! sql::analyze::expr: expressions. A result column may be a protected value as it is; a
//! filter may compare a base table's protected column with literals (a blind-index search)
//! or test it for NULL; anywhere else a protected value is refused. Subqueries met on the
//! way are analyzed in their own scope.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, Query, Spanned, UnaryOperator, Value, Visit, Visitor,
};

use super::scope::{Frames, Origin, object_idents};
use super::{Lit, MAX_DEPTH, Outcome, Piece, Work, denied, refuse};
use crate::policy::{Access, Protected};
use crate::sql::lex::Kind;

/// A column reference: the identifiers of a plain or qualified name.
pub(crate) fn idents_of(e: &Expr) -> Option<&[Ident]> {
    match e {
        Expr::Identifier(i) => Some(std::slice::from_ref(i)),
        Expr::CompoundIdentifier(v) => Some(v),
        _ => None,
    }
}

/// Looks through parentheses.
pub(crate) fn unnest(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// Checks every expression and subquery under a node where no protected value may be.
struct ValueCheck<'x, 'w, 'p, 'f> {
    work: &'x mut Work<'w, 'p>,
    frames: &'x Frames<'f, 'p>,
    depth: usize,
    /// Inside a subquery analyzed on its own: expressions there are not checked again.
    skip: Option<*const Query>,
    error: Option<super::Refusal>,
}

impl Visitor for ValueCheck<'_, '_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.skip.is_some() {
            return ControlFlow::Continue(());
        }
        self.skip = Some(q as *const Query);
        match self.work.query(q, self.frames, self.depth + 1) {
            Ok(items) if items.has_cells() => {
                self.error = Some(super::Refusal {
                    target: String::new(),
                    reason: "a subquery's encrypted column used in an expression is not supported"
                        .into(),
                    denied: false,
                });
                ControlFlow::Break(())
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.skip == Some(q as *const Query) {
            self.skip = None;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.skip.is_some() {
            return ControlFlow::Continue(());
        }
        let refs: Vec<Vec<Ident>> = match e {
            Expr::Identifier(i) => vec![vec![i.clone()]],
            Expr::CompoundIdentifier(v) => vec![v.clone()],
            Expr::MatchAgainst { columns, .. } => {
                columns.iter().filter_map(object_idents).collect()
            }
            _ => Vec::new(),
        };
        for idents in refs {
            let outcome = self.frames.resolve(&idents).and_then(|o| {
                self.work.touch(o)?;
                match o {
                    Origin::Cell { col, .. } => refuse(col.scope(), reason_for(e)),
                    _ => Ok(()),
                }
            });
            if let Err(err) = outcome {
                self.error = Some(err);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Why a read through a view of a column in a migration's shadow window is refused.
pub(crate) const WINDOW_VIEW: &str = "myveil migrate apply is moving this column to a wider one; read it from its table rather than through a view until the swap";

/// The quoted name of a protected column's shadow (`` `ssn__myveil` ``).
pub(crate) fn shadow_name(col: &Protected) -> String {
    format!(
        "`{}{}`",
        col.column.replace('`', "``"),
        crate::policy::SHADOW_SUFFIX
    )
}

fn reason_for(e: &Expr) -> &'static str {
    match e {
        Expr::MatchAgainst { .. } => "full-text search on an encrypted column is not supported",
        _ => "expressions over an encrypted column are not supported",
    }
}

impl<'p> Work<'_, 'p> {
    /// An expression whose value may not carry protected cells.
    pub(crate) fn value(&mut self, e: &Expr, frames: &Frames<'_, 'p>, depth: usize) -> Outcome<()> {
        if depth > MAX_DEPTH {
            return refuse("", "statement nested too deep");
        }
        let e = unnest(e);
        // A better reason than "expressions over …" for the common shapes.
        match e {
            Expr::BinaryOp { left, op, right } if is_range(op) => {
                for side in [left, right] {
                    if let Some(idents) = idents_of(unnest(side))
                        && let Origin::Cell { col, .. } = frames.resolve(idents)?
                    {
                        self.touch(frames.resolve(idents)?)?;
                        return refuse(
                            col.scope(),
                            "range comparisons on an encrypted column are not supported",
                        );
                    }
                }
            }
            Expr::Between { expr, .. } => {
                if let Some(idents) = idents_of(unnest(expr))
                    && let o @ Origin::Cell { col, .. } = frames.resolve(idents)?
                {
                    self.touch(o)?;
                    return refuse(
                        col.scope(),
                        "range comparisons on an encrypted column are not supported",
                    );
                }
            }
            Expr::Like { expr, .. } | Expr::ILike { expr, .. } | Expr::RLike { expr, .. } => {
                if let Some(idents) = idents_of(unnest(expr))
                    && let o @ Origin::Cell { col, .. } = frames.resolve(idents)?
                {
                    self.touch(o)?;
                    return refuse(
                        col.scope(),
                        "LIKE and pattern matching on an encrypted column are not supported",
                    );
                }
            }
            Expr::Function(f) => {
                let any_cell = function_args_cells(f, frames)?;
                if let Some(o @ Origin::Cell { col, .. }) = any_cell {
                    self.touch(o)?;
                    return refuse(
                        col.scope(),
                        "functions over an encrypted column are not supported",
                    );
                }
            }
            Expr::Cast { expr, .. } | Expr::Convert { expr, .. } => {
                if let Some(idents) = idents_of(unnest(expr))
                    && let o @ Origin::Cell { col, .. } = frames.resolve(idents)?
                {
                    self.touch(o)?;
                    return refuse(
                        col.scope(),
                        "CAST and CONVERT of an encrypted column are not supported",
                    );
                }
            }
            _ => {}
        }
        let mut check = ValueCheck {
            work: self,
            frames,
            depth,
            skip: None,
            error: None,
        };
        let _ = e.visit(&mut check);
        match check.error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// A result column: a protected value may pass as it is (a reference, in parentheses,
    /// or a scalar subquery's one column). Returns where its values come from.
    pub(crate) fn project(
        &mut self,
        e: &Expr,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<Origin<'p>> {
        if depth > MAX_DEPTH {
            return refuse("", "statement nested too deep");
        }
        let e = unnest(e);
        if let Some(idents) = idents_of(e) {
            let o = frames.resolve(idents)?;
            self.touch(o)?;
            if let Origin::Cell {
                col, window: true, ..
            } = o
            {
                self.shadow_ref(e, idents, col)?;
            }
            return Ok(match o {
                Origin::Cell { col, inst, .. } => Origin::Cell {
                    col,
                    inst,
                    base: false,
                    window: false,
                },
                o => o,
            });
        }
        if let Expr::Subquery(q) = e {
            let items = self.query(q, frames, depth + 1)?;
            return Ok(match items.0.as_slice() {
                [one] => match one.origin() {
                    Origin::Cell { col, inst, .. } => {
                        if col.row_key.is_some() {
                            return refuse(
                                col.scope(),
                                "a row-bound column from a subquery cannot be opened",
                            );
                        }
                        Origin::Cell {
                            col,
                            inst,
                            base: false,
                            window: false,
                        }
                    }
                    _ => Origin::Plain,
                },
                _ => Origin::Plain,
            });
        }
        if let Expr::IsNull(inner) | Expr::IsNotNull(inner) = e
            && let Some(idents) = idents_of(unnest(inner))
        {
            let o = frames.resolve(idents)?;
            self.touch(o)?;
            self.null_test(unnest(inner), idents, o)?;
            return Ok(Origin::Plain);
        }
        self.value(e, frames, depth + 1)?;
        Ok(Origin::Plain)
    }

    /// A WHERE or ON condition: AND/OR/XOR/NOT of conditions, each of which may be a search
    /// on a protected column (rewritten to its blind index) or a NULL test; anything else is
    /// a value.
    pub(crate) fn filter(
        &mut self,
        e: &Expr,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        // Flattened without recursion: long AND chains are common.
        let mut todo: Vec<(&Expr, usize)> = vec![(e, depth)];
        while let Some((e, depth)) = todo.pop() {
            if depth > MAX_DEPTH {
                return refuse("", "statement nested too deep");
            }
            let e = unnest(e);
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor,
                    right,
                } => {
                    todo.push((left, depth));
                    todo.push((right, depth));
                }
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr,
                } if !self.high_not => todo.push((expr, depth + 1)),
                Expr::BinaryOp { left, op, right }
                    if matches!(
                        op,
                        BinaryOperator::Eq | BinaryOperator::NotEq | BinaryOperator::Spaceship
                    ) =>
                {
                    self.comparison(e, left, op, right, frames, depth)?;
                }
                Expr::InList {
                    expr,
                    list,
                    negated,
                } => self.in_list(e, expr, list, *negated, frames, depth)?,
                Expr::IsNull(inner) | Expr::IsNotNull(inner)
                    if idents_of(unnest(inner)).is_some() =>
                {
                    if let Some(idents) = idents_of(unnest(inner)) {
                        let o = frames.resolve(idents)?;
                        self.touch(o)?;
                        self.null_test(unnest(inner), idents, o)?;
                    }
                }
                Expr::InSubquery { expr, subquery, .. } => {
                    self.value(expr, frames, depth + 1)?;
                    let items = self.query(subquery, frames, depth + 1)?;
                    if items.has_cells() {
                        return refuse(
                            "",
                            "IN over a subquery's encrypted column is not supported",
                        );
                    }
                }
                Expr::Exists { subquery, .. } => {
                    self.query(subquery, frames, depth + 1)?;
                }
                other => self.value(other, frames, depth + 1)?,
            }
        }
        Ok(())
    }

    /// `col = lit`, `lit = col`, `col <> lit`, `col <=> lit`.
    fn comparison(
        &mut self,
        whole: &Expr,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        let (l, r) = (unnest(left), unnest(right));
        let found = match (side(l, frames)?, side(r, frames)?) {
            (Some((o @ Origin::Cell { .. }, idents)), _) => Some((o, idents, left, right)),
            (_, Some((o @ Origin::Cell { .. }, idents))) => Some((o, idents, right, left)),
            _ => None,
        };
        let Some((origin, idents, colside, litside)) = found else {
            self.value(left, frames, depth + 1)?;
            return self.value(right, frames, depth + 1);
        };
        self.touch(origin)?;
        let Origin::Cell { col, base, .. } = origin else {
            return Ok(());
        };
        let Some(lit) = self.search_literal(col, litside)? else {
            return refuse(
                col.scope(),
                "comparing an encrypted column with anything but a literal or parameter is not supported",
            );
        };
        if lit == Lit::Null && matches!(op, BinaryOperator::Spaceship) {
            // `col <=> NULL` is `col IS NULL`: no value to compare.
            return self.null_test(unnest(colside), idents, origin);
        }
        self.search(
            whole,
            idents,
            col,
            base,
            vec![lit],
            matches!(op, BinaryOperator::NotEq),
        )
    }

    fn in_list(
        &mut self,
        whole: &Expr,
        expr: &Expr,
        list: &[Expr],
        negated: bool,
        frames: &Frames<'_, 'p>,
        depth: usize,
    ) -> Outcome<()> {
        let target = unnest(expr);
        if let Some(idents) = idents_of(target)
            && let origin @ Origin::Cell { col, base, .. } = frames.resolve(idents)?
        {
            self.touch(origin)?;
            let mut lits = Vec::with_capacity(list.len());
            for item in list {
                match self.search_literal(col, item)? {
                    Some(l) => lits.push(l),
                    None => {
                        return refuse(
                            col.scope(),
                            "IN on an encrypted column takes literals or parameters only",
                        );
                    }
                }
            }
            return self.search(whole, idents, col, base, lits, negated);
        }
        self.value(expr, frames, depth + 1)?;
        for item in list {
            self.value(item, frames, depth + 1)?;
        }
        Ok(())
    }

    /// Rewrites a search on a base table's protected column into one on its blind index.
    fn search(
        &mut self,
        whole: &Expr,
        idents: &[Ident],
        col: &'p Protected,
        base: bool,
        values: Vec<Lit>,
        negated: bool,
    ) -> Outcome<()> {
        match col.decide(self.an.role) {
            Access::Deny => return denied(col),
            _ if !col.may_search(self.an.role) => {
                return refuse(
                    col.scope(),
                    "this role does not see the column's plaintext and may not filter on it",
                );
            }
            _ => {}
        }
        if col.blind_index.is_none() {
            return refuse(
                col.scope(),
                "equality search needs a blind index on this column",
            );
        }
        if !base {
            return refuse(
                col.scope(),
                "search on an encrypted column through a derived table, CTE or view is not supported; search the table itself",
            );
        }
        if self.high_not {
            return refuse(
                col.scope(),
                "search on an encrypted column under sql_mode HIGH_NOT_PRECEDENCE is not supported",
            );
        }
        let (first, last) = self.tokens_of(whole.span())?;
        // An IN list's span ends at its last item: take the closing parenthesis too.
        let last = match whole {
            Expr::InList { .. } => self.closing_paren(last)?,
            _ => last,
        };
        let (start, end) = self.token_bytes(first, last)?;
        let qualifier = self.qualifier_text(idents)?;
        self.edits.push(super::Edit {
            start,
            end,
            pieces: vec![Piece::BlindSearch {
                column: col,
                qualifier,
                values,
                negated,
            }],
        });
        Ok(())
    }

    /// `col IS [NOT] NULL` (or `col <=> NULL`) on a column in a migration's shadow window
    /// tests the value it holds (`shadow_ref`): a value written through myveil in the window
    /// left the old column NULL.
    fn null_test(&mut self, e: &Expr, idents: &[Ident], origin: Origin<'p>) -> Outcome<()> {
        match origin {
            Origin::Cell {
                col, window: true, ..
            } => self.shadow_ref(e, idents, col),
            _ => Ok(()),
        }
    }

    /// A reference to a column in a migration's shadow window (`migrate apply` retyping it
    /// through `<column>__myveil`), read as the value the row holds: the shadow's where it
    /// is set (the copy reached the row, or a write came since the window opened: through
    /// myveil it went to the shadow, around myveil the copy triggers took it), else the
    /// column's own (a row the copy has not reached). So the window reads what it will
    /// read after the swap, and a write through myveil never needs the narrow column.
    ///
    /// Security: the shadow holds the same cells as the column (plaintext copies or
    /// envelopes), opened by the same rules; a view's definition cannot be rewritten, so a
    /// read through a view is refused until the swap rather than shown the old column.
    pub(crate) fn shadow_ref(
        &mut self,
        e: &Expr,
        idents: &[Ident],
        col: &Protected,
    ) -> Outcome<()> {
        if self.in_view {
            return refuse(col.scope(), WINDOW_VIEW);
        }
        let (first, last) = self.tokens_of(e.span())?;
        let (start, end) = self.token_bytes(first, last)?;
        let qualifier = self.qualifier_text(idents)?;
        self.shadowed += 1;
        self.edits.push(super::Edit {
            start,
            end,
            pieces: vec![
                Piece::Text(format!("COALESCE({qualifier}{}, ", shadow_name(col)).into()),
                Piece::Raw(self.view.src[start..end].to_vec()),
                Piece::Text(")".into()),
            ],
        });
        Ok(())
    }

    /// The original text of a column reference's qualifier (`u.`, `` `db`.`t`. ``).
    fn qualifier_text(&self, idents: &[Ident]) -> Outcome<String> {
        if idents.len() < 2 {
            return Ok(String::new());
        }
        let (first, _) = self.tokens_of(idents[0].span)?;
        let (_, last) = self.tokens_of(idents[idents.len() - 2].span)?;
        let (s, e) = self.token_bytes(first, last)?;
        let text = std::str::from_utf8(&self.view.src[s..e])
            .map_err(|_| super::Refusal {
                target: String::new(),
                reason: "a qualifier is not UTF-8".into(),
                denied: false,
            })?
            .to_owned();
        Ok(format!("{text}."))
    }

    /// The token after `last` when it is `)`.
    pub(crate) fn closing_paren(&self, last: usize) -> Outcome<usize> {
        let next = last + 1;
        match self.view.tokens.get(next) {
            Some(t) if t.kind == Kind::Op && t.text(self.view.src) == b")" => Ok(next),
            _ => refuse("", "cannot locate the end of an IN list"),
        }
    }

    /// The original bytes from the start of token `first` to the end of token `last`, when
    /// that range does not cross the edge of an executable comment.
    pub(crate) fn token_bytes(&self, first: usize, last: usize) -> Outcome<(usize, usize)> {
        if self.in_view {
            return refuse("", "cannot rewrite inside a view's definition");
        }
        let toks = &self.view.tokens[first..=last];
        let group = toks[0].exec_group;
        if toks.iter().any(|t| t.exec_group != group) {
            return refuse(
                "",
                "an executable comment splits an expression on protected data",
            );
        }
        Ok((toks[0].start, toks[toks.len() - 1].end))
    }

    /// A literal or parameter compared with a protected column, in the column's form.
    fn search_literal(&mut self, col: &Protected, e: &Expr) -> Outcome<Option<Lit>> {
        self.literal(col, e)
    }

    /// A literal written to `col` by this role: for a role that restores ciphertext, its
    /// stored form is kept beside the plaintext it would otherwise stand for.
    pub(crate) fn written(&self, col: &Protected, e: &Expr) -> Outcome<Option<Lit>> {
        if self.keep_of(col) == super::Keep::No {
            return self.literal(col, e);
        }
        let raw = self.raw_literal(e)?;
        match raw {
            Some(raw) => {
                let plain = match self.literal(col, e) {
                    Ok(Some(Lit::Bytes(b))) => Some(b),
                    _ => None,
                };
                Ok(Some(Lit::Stored(raw, plain)))
            }
            None => self.literal(col, e),
        }
    }

    /// The bytes of a string, hex or bit literal exactly as given (no charset conversion).
    pub(crate) fn raw_literal(&self, e: &Expr) -> Outcome<Option<Vec<u8>>> {
        let Expr::Value(v) = e else {
            return Ok(None);
        };
        if matches!(v.value, Value::Placeholder(_) | Value::Null) {
            return Ok(None);
        }
        let Some((start, _)) = self.offsets.range(v.span) else {
            return Ok(None);
        };
        let Some(lit) = self.view.literal_at(start) else {
            return Ok(None);
        };
        // A value kept as stored: the plan cache does not template it.
        self.view.decided.set(true);
        if self.view.tokens[lit.first].kind == Kind::Number {
            return Ok(None);
        }
        Ok(match self.view.value(&lit) {
            Ok(Some((bytes, _))) => Some(bytes),
            _ => None,
        })
    }

    /// Whether this role's writes keep values that already are envelopes of `col`.
    pub(crate) fn keep_of(&self, col: &Protected) -> super::Keep {
        if col.decide(self.an.role) == Access::Ciphertext && col.may_write(self.an.role) {
            super::Keep::Envelopes
        } else {
            super::Keep::No
        }
    }

    /// The value of a literal or parameter expression for `col` (None: not a literal).
    pub(crate) fn literal(&self, col: &Protected, e: &Expr) -> Outcome<Option<Lit>> {
        if self.in_view {
            return refuse("", "cannot rewrite inside a view's definition");
        }
        let (neg, inner) = match e {
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => (true, expr.as_ref()),
            other => (false, other),
        };
        let Expr::Value(v) = inner else {
            return Ok(None);
        };
        let Some((start, _)) = self.offsets.range(v.span) else {
            return refuse("", "cannot locate a literal");
        };
        if let Value::Placeholder(p) = &v.value {
            if p != "?" || neg {
                return Ok(None);
            }
            let (tok, _) = self.tokens_of(v.span)?;
            let index = self.view.tokens[..tok]
                .iter()
                .filter(|t| t.kind == Kind::Param)
                .count();
            return Ok(Some(Lit::Param(index)));
        }
        if let Value::Null = &v.value {
            return Ok((!neg).then_some(Lit::Null));
        }
        let Some(lit) = self.view.literal_at(start) else {
            return Ok(None);
        };
        let Ok(value) = self.view.value(&lit) else {
            return refuse(col.scope(), "literal not understood");
        };
        let number = self.view.tokens[lit.first].kind == Kind::Number;
        let made = lit_of(value, neg, number, col, self.empty_string_is_null)?;
        // Where the value went, for the plan cache: the same tokens of another statement of
        // this form give their value the same way (`lit_of`).
        match (
            &made,
            self.an
                .policy
                .columns()
                .iter()
                .position(|c| std::ptr::eq(c, col)),
        ) {
            (Some(l), Some(column)) => self.flows.borrow_mut().push(super::Flow {
                first: lit.first,
                last: lit.last,
                neg,
                column,
                lit: l.clone(),
            }),
            _ => self.view.decided.set(true),
        }
        Ok(made)
    }

    /// The original byte range of a literal expression, its sign included.
    pub(crate) fn literal_range(&self, e: &Expr) -> Outcome<(usize, usize)> {
        let (first, last) = self.tokens_of(e.span())?;
        let first = match e {
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                ..
            } if self.view.tokens[first].text(self.view.src) != b"-" => {
                match first.checked_sub(1) {
                    Some(p) if self.view.tokens[p].text(self.view.src) == b"-" => p,
                    _ => first,
                }
            }
            _ => first,
        };
        self.token_bytes(first, last)
    }
}

/// A literal's value (`View::value`) in the form `col` stores: its sign applied, text in
/// UTF-8 (bytes columns keep the bytes), `''` as NULL under EMPTY_STRING_IS_NULL. None: not a
/// value for the column (a negated string).
pub(crate) fn lit_of(
    value: crate::sql::view::LiteralValue<'_>,
    neg: bool,
    number: bool,
    col: &Protected,
    empty_string_is_null: bool,
) -> Outcome<Option<Lit>> {
    let Some((bytes, charset)) = value else {
        return Ok((!neg).then_some(Lit::Null));
    };
    if neg && !number {
        return Ok(None);
    }
    if empty_string_is_null && bytes.is_empty() && charset.is_some() && !number {
        return Ok(Some(Lit::Null));
    }
    let stored = match (col.plain_type.kind(), charset) {
        (crate::crypto::mask::Kind::Bytes, _) | (_, None) => bytes,
        (_, Some(cs)) => match cs.to_utf8(&bytes) {
            // Already UTF-8: the literal's own bytes, not a copy.
            Some(std::borrow::Cow::Borrowed(_)) => bytes,
            Some(std::borrow::Cow::Owned(text)) => text.into_bytes(),
            None => {
                return Err(super::Refusal {
                    target: col.scope(),
                    reason: format!(
                        "the value is not text in character set {} (values of utf8mb4, utf8mb3, latin1, ascii and binary literals can be protected)",
                        cs.name
                    ),
                    denied: false,
                });
            }
        },
    };
    let out = if neg {
        let mut out = Vec::with_capacity(stored.len() + 1);
        out.push(b'-');
        out.extend_from_slice(&stored);
        out
    } else {
        stored
    };
    Ok(Some(Lit::Bytes(out)))
}

/// A comparison operand that is a column reference, with what it resolves to.
fn side<'e, 'p>(
    x: &'e Expr,
    frames: &Frames<'_, 'p>,
) -> Outcome<Option<(Origin<'p>, &'e [Ident])>> {
    match idents_of(x) {
        Some(idents) => Ok(Some((frames.resolve(idents)?, idents))),
        None => Ok(None),
    }
}

fn is_range(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq
    )
}

/// The protected column a function's arguments name directly, if any.
fn function_args_cells<'p>(
    f: &sqlparser::ast::Function,
    frames: &Frames<'_, 'p>,
) -> Outcome<Option<Origin<'p>>> {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let FunctionArguments::List(list) = &f.args else {
        return Ok(None);
    };
    for a in &list.args {
        let e = match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(e),
                ..
            } => e,
            _ => continue,
        };
        if let Some(idents) = idents_of(unnest(e)) {
            let o = frames.resolve(idents)?;
            if o.is_cell() {
                return Ok(Some(o));
            }
        }
    }
    Ok(None)
}
