//! sql::analyze::write: INSERT, REPLACE, UPDATE and DELETE. A value written to a protected
//! column must be a literal or a parameter (it is sealed, and its blind index written
//! beside it); nothing may copy protected cells elsewhere; a role writes a column only when
//! the policy lets it, and never so that the answer says whether a value exists.

use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr, FromTable, Insert, ObjectName, OnInsert,
    SelectItem, SetExpr, Spanned, TableObject, Update,
};

use super::expr::idents_of;
use super::scope::{Frames, Items, Origin, Rel, object_idents};
use super::{Edit, Lit, Outcome, Piece, Shape, Work, refuse};
use crate::policy::Protected;

impl<'p> Work<'_, 'p> {
    /// The protected columns of a base table.
    fn protected_of(&self, rel: &Rel<'p>) -> Vec<&'p Protected> {
        let Some((db, t)) = rel.table() else {
            return Vec::new();
        };
        self.an
            .policy
            .columns()
            .iter()
            .filter(|c| c.is_in(db, t))
            .collect()
    }

    /// Whether writes of `col` in `rel` go to its shadow: the column is in a migration's
    /// shadow window and the copy into the shadow has begun. Before that (right after the
    /// shadow was added) every proxy already reads through the shadow, so that a write one
    /// makes there is never read past by another whose schema is a moment older.
    fn writes_shadow(&self, rel: &Rel<'p>, col: &Protected) -> bool {
        rel.in_window(col)
            && rel
                .table()
                .is_some_and(|(db, t)| self.an.schema.copying(db, t, &col.column))
    }

    /// Whether the role may write `col`, and without learning whether a value exists: a
    /// role that cannot read the column writes it only when the policy grants `write`, and
    /// then only where no unique index over its blind index could answer "duplicate".
    fn may_write(&self, rel: &Rel<'p>, col: &'p Protected) -> Outcome<()> {
        if !col.may_write(self.an.role) {
            return Err(super::Refusal {
                target: col.scope(),
                reason: "this role may not write the column".into(),
                denied: true,
            });
        }
        if !col.may_search(self.an.role)
            && self.keep_of(col) == super::Keep::No
            && self.unique_blind(rel, col)
        {
            return refuse(
                col.scope(),
                "a unique index on the blind index would tell this role whether a value exists; it may not write the column",
            );
        }
        Ok(())
    }

    /// Whether a unique index covers `col`'s blind index in `rel`.
    fn unique_blind(&self, rel: &Rel<'p>, col: &Protected) -> bool {
        match (&col.blind_index, rel.table()) {
            (Some(b), Some((db, t))) => self.an.schema.unique(db, t, b),
            _ => false,
        }
    }

    /// How the role's writes of `col` in `rel` treat values that are envelopes already.
    fn keep_in(&self, rel: &Rel<'p>, col: &Protected) -> super::Keep {
        match self.keep_of(col) {
            super::Keep::No => super::Keep::No,
            _ if self.unique_blind(rel, col) => super::Keep::OnlyEnvelopes,
            _ => super::Keep::Envelopes,
        }
    }

    /// The target of an INSERT or UPDATE: a base table (writes through views over protected
    /// data are refused).
    fn target(&mut self, name: &ObjectName) -> Outcome<Rel<'p>> {
        let rel = self.base_table(name, None)?;
        if rel.table().is_none() && rel.has_cells() {
            return refuse(
                name.to_string(),
                "writes through a view over protected data are not supported; write the table itself",
            );
        }
        Ok(rel)
    }

    pub(crate) fn insert(&mut self, ins: &Insert) -> Outcome<Option<Shape>> {
        let TableObject::TableName(name) = &ins.table else {
            return refuse("", "INSERT target not understood");
        };
        let rel = self.target(name)?;
        let root = Frames::root();
        let frames = root.with(rel.clone());
        let protected = self.protected_of(&rel);
        if protected.is_empty() {
            // Nothing protected is written; nothing protected may be copied in either.
            if let Some(src) = &ins.source {
                self.insert_source_plain(src, &root)?;
            }
            for a in &ins.assignments {
                self.value(&a.value, &frames, 1)?;
            }
            if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &ins.on {
                for a in assignments {
                    self.value(&a.value, &frames, 1)?;
                }
            }
            return self.returning(ins.returning.as_deref(), &frames);
        }
        self.protected = true;
        let (db, table) = rel.table().cloned().unwrap_or_default();
        let meta = self.an.schema.columns(&db, &table);
        let implicit = ins.columns.is_empty() && ins.assignments.is_empty();
        let names: Vec<String> = if !ins.assignments.is_empty() {
            Vec::new()
        } else if ins.columns.is_empty() {
            match &meta {
                Some(cols) => cols
                    .iter()
                    .filter(|c| !c.invisible)
                    .map(|c| c.name.clone())
                    .collect(),
                None => {
                    return refuse(
                        table,
                        "cannot tell the column order of a protected table; name the columns in the INSERT",
                    );
                }
            }
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    object_idents(c)
                        .and_then(|v| v.last().map(|i| i.value.clone()))
                        .unwrap_or_default()
                })
                .collect()
        };
        if !implicit {
            // A blind-index column in the list is filled in place, and only beside its
            // protected column.
            for n in &names {
                if let Some(c) = protected.iter().find(|c| {
                    c.blind_index
                        .as_deref()
                        .is_some_and(|b| b.eq_ignore_ascii_case(n))
                }) && (!names.iter().any(|m| m.eq_ignore_ascii_case(&c.column))
                    || self.keep_of(c) == super::Keep::No)
                {
                    return refuse(
                        format!("{table}.{n}"),
                        "the blind-index column is filled by myveil; do not write it",
                    );
                }
            }
        }
        let positions: Vec<(usize, &'p Protected)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                protected
                    .iter()
                    .find(|c| c.column.eq_ignore_ascii_case(n))
                    .map(|c| (i, *c))
            })
            .collect();
        for (_, col) in &positions {
            self.may_write(&rel, col)?;
        }
        if ins.ignore || ins.replace_into || ins.on.is_some() {
            for (_, col) in &positions {
                if !col.may_search(self.an.role)
                    && col.blind_index.is_some()
                    && self.keep_in(&rel, col) == super::Keep::No
                {
                    return refuse(
                        col.scope(),
                        "INSERT IGNORE, REPLACE and ON DUPLICATE KEY UPDATE would tell this role whether a value exists",
                    );
                }
            }
        }
        // Protected columns the INSERT leaves out take their default: only NULL is safe.
        if ins.assignments.is_empty()
            && let Some(cols) = &meta
        {
            for col in &protected {
                let written = names.iter().any(|n| n.eq_ignore_ascii_case(&col.column));
                let null_default = cols
                    .iter()
                    .find(|m| m.name.eq_ignore_ascii_case(&col.column))
                    .is_none_or(|m| m.null_default);
                if !written && !null_default {
                    return refuse(
                        col.scope(),
                        "the column has a default that is not NULL; write it explicitly",
                    );
                }
            }
        }
        if let Some(source) = &ins.source {
            match source.body.as_ref() {
                SetExpr::Values(values) => {
                    self.insert_values(ins, &rel, &names, &positions, implicit, values, &root)?;
                }
                _ => {
                    if let Some((_, col)) = positions.first() {
                        return refuse(
                            col.scope(),
                            "INSERT … SELECT into an encrypted column is not supported",
                        );
                    }
                    self.insert_source_plain(source, &root)?;
                }
            }
        }
        if !ins.assignments.is_empty() {
            self.assignments(&ins.assignments, &rel, &frames, None, None)?;
        }
        if let Some(on) = &ins.on {
            let OnInsert::DuplicateKeyUpdate(assignments) = on else {
                return refuse("", "ON CONFLICT is not MariaDB");
            };
            let alias = ins
                .insert_alias
                .as_ref()
                .map(|a| a.row_alias.to_string())
                .or_else(|| ins.table_alias.as_ref().map(|a| a.alias.value.clone()));
            self.assignments(assignments, &rel, &frames, Some(alias), None)?;
        }
        self.returning(ins.returning.as_deref(), &frames)
    }

    /// An INSERT source into a table without protected columns: no protected cells in it.
    fn insert_source_plain(
        &mut self,
        src: &sqlparser::ast::Query,
        root: &Frames<'_, 'p>,
    ) -> Outcome<()> {
        let items = self.query(src, root, 1)?;
        if items.has_cells() {
            return refuse(
                "",
                "copying encrypted columns into a place the policy does not cover is not supported",
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_values(
        &mut self,
        ins: &Insert,
        rel: &Rel<'p>,
        names: &[String],
        positions: &[(usize, &'p Protected)],
        implicit: bool,
        values: &sqlparser::ast::Values,
        root: &Frames<'_, 'p>,
    ) -> Outcome<()> {
        let table = rel.table().map(|(_, t)| t.clone()).unwrap_or_default();
        // Columns in a migration's shadow window: the value goes to the shadow, and the
        // old column (nullable for the window) gets NULL, never plaintext (`shadow_ref`).
        let window: Vec<(usize, &'p Protected)> = positions
            .iter()
            .filter(|(_, c)| self.writes_shadow(rel, c))
            .copied()
            .collect();
        let moved: String = window
            .iter()
            .map(|(i, _)| format!(", `{}`", names[*i].replace('`', "``")))
            .collect();
        // Blind-index columns the INSERT does not name (none given, or INVISIBLE and left
        // out of an INSERT without a column list): added, with the index of each row's value.
        let unnamed_blind: String = positions
            .iter()
            .filter_map(|(_, c)| c.blind_index.as_ref())
            .filter(|b| !names.iter().any(|n| n.eq_ignore_ascii_case(b)))
            .map(|b| format!(", `{}`", b.replace('`', "``")))
            .collect();
        if !implicit {
            for (i, col) in &window {
                let (s, e) = self.range(ins.columns[*i].span())?;
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    pieces: vec![Piece::Text(super::expr::shadow_name(col).into())],
                });
            }
            let added = format!("{unnamed_blind}{moved}");
            if !added.is_empty() {
                let Some(last) = ins.columns.last() else {
                    return refuse(
                        table,
                        "name the columns in the INSERT so myveil can fill the blind index",
                    );
                };
                let (_, end) = self.range(last.span())?;
                self.edits.push(Edit {
                    start: end,
                    end,
                    pieces: vec![Piece::Text(added.into())],
                });
            }
        }
        if implicit {
            // The columns the values were sealed for, named: should the table's columns have
            // moved since the snapshot (a migration made directly on the server), the server
            // then puts each value where myveil sealed it for, or fails; never plaintext into
            // a protected column.
            if ins.partitioned.is_some() || names.iter().any(|n| !n.is_ascii()) {
                return refuse(
                    table,
                    "name the columns in this INSERT into a protected table",
                );
            }
            let TableObject::TableName(name) = &ins.table else {
                return refuse("", "INSERT target not understood");
            };
            let (_, end) = self.range(name.span())?;
            let list: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| match window.iter().find(|(j, _)| *j == i) {
                    Some((_, col)) => super::expr::shadow_name(col),
                    None => format!("`{}`", n.replace('`', "``")),
                })
                .collect();
            self.edits.push(Edit {
                start: end,
                end,
                pieces: vec![Piece::Text(
                    format!(" ({}{unnamed_blind}{moved})", list.join(", ")).into(),
                )],
            });
        }
        for parens in &values.rows {
            let row = &parens.content;
            if row.len() != names.len() {
                return refuse(
                    table.clone(),
                    "row has a different number of values than columns",
                );
            }
            let mut blind = Vec::new();
            for (i, e) in row.iter().enumerate() {
                if positions.iter().any(|(p, _)| *p == i) {
                    continue;
                }
                let is_bidx = implicit
                    && positions.iter().any(|(_, c)| {
                        c.blind_index
                            .as_deref()
                            .is_some_and(|b| b.eq_ignore_ascii_case(&names[i]))
                    });
                if !is_bidx {
                    self.value(e, root, 1)?;
                }
            }
            for (i, col) in positions {
                let expr = &row[*i];
                let lit = match self.written(col, expr)? {
                    Some(l) => l,
                    None if is_default(expr) => {
                        return refuse(
                            col.scope(),
                            "DEFAULT for an encrypted column is not supported; write NULL or a value",
                        );
                    }
                    None => {
                        return refuse(
                            col.scope(),
                            "a value written to an encrypted column must be a literal or a parameter",
                        );
                    }
                };
                let row_key = match &col.row_key {
                    None => None,
                    Some(rk) => {
                        let Some(j) = names.iter().position(|n| n.eq_ignore_ascii_case(rk)) else {
                            return refuse(
                                col.scope(),
                                format!("the row key {rk} must be written in the same INSERT"),
                            );
                        };
                        match self.literal(col, &row[j])? {
                            Some(Lit::Null) | None => {
                                return refuse(
                                    col.scope(),
                                    format!("the row key {rk} must be a literal or a parameter"),
                                );
                            }
                            Some(k) => Some(k),
                        }
                    }
                };
                let (s, e) = self.literal_range(expr)?;
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    pieces: vec![Piece::Seal(
                        col,
                        lit.clone(),
                        row_key.clone(),
                        self.keep_in(rel, col),
                    )],
                });
                let in_place = col
                    .blind_index
                    .as_deref()
                    .is_some_and(|b| names.iter().any(|n| n.eq_ignore_ascii_case(b)));
                match &col.blind_index {
                    Some(b) if in_place => {
                        let Some(j) = names.iter().position(|n| n.eq_ignore_ascii_case(b)) else {
                            return refuse(
                                col.scope(),
                                "the blind-index column is missing from the table",
                            );
                        };
                        let slot = &row[j];
                        // The slot is filled by myveil: NULL or DEFAULT, or (restoring cells
                        // as they were) any literal, replaced by the index of the value.
                        let keep = self.keep_in(rel, col) != super::Keep::No;
                        let null = matches!(slot, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Null));
                        let empty =
                            is_default(slot) || null || (keep && self.raw_literal(slot)?.is_some());
                        if !empty {
                            return refuse(
                                format!("{table}.{b}"),
                                "the blind-index column is filled by myveil; give it as NULL or DEFAULT",
                            );
                        }
                        let (s, e) = self.literal_range(slot)?;
                        self.edits.push(Edit {
                            start: s,
                            end: e,
                            pieces: vec![Piece::BlindWrite(
                                col,
                                lit,
                                row_key,
                                self.keep_in(rel, col),
                            )],
                        });
                    }
                    Some(_) => {
                        blind.push(Piece::Text(", ".into()));
                        blind.push(Piece::BlindWrite(col, lit, row_key, self.keep_in(rel, col)));
                    }
                    None => {}
                }
            }
            for _ in &window {
                blind.push(Piece::Text(", NULL".into()));
            }
            if !blind.is_empty() {
                let (close, _) = self.tokens_of(parens.closing_token.0.span)?;
                let (at, _) = self.token_bytes(close, close)?;
                if let Some(last) = row.last() {
                    // The new values go inside the same executable comment as the row's.
                    let (_, last_tok) = self.tokens_of(last.span())?;
                    self.token_bytes(last_tok, close)?;
                }
                self.edits.push(Edit {
                    start: at,
                    end: at,
                    pieces: blind,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn update(&mut self, up: &Update) -> Outcome<()> {
        if up.from.is_some() || up.returning.is_some() {
            return refuse("", "UPDATE … FROM and RETURNING are not MariaDB");
        }
        let root = Frames::root();
        let mut frames = root.child();
        self.add_from(&up.table, &mut frames, 1)?;
        let rel = frames.first_rel().cloned();
        if let Some(rel) = &rel {
            self.assignments(&up.assignments, rel, &frames, None, up.selection.as_ref())?;
        }
        if let Some(w) = &up.selection {
            self.filter(w, &frames, 1)?;
        }
        for o in &up.order_by {
            self.value(&o.expr, &frames, 1)?;
        }
        if let Some(l) = &up.limit {
            self.value(l, &frames, 1)?;
        }
        Ok(())
    }

    pub(crate) fn delete(&mut self, del: &Delete) -> Outcome<Option<Shape>> {
        let root = Frames::root();
        let mut frames = root.child();
        let from = match &del.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        for twj in from {
            self.add_from(twj, &mut frames, 1)?;
        }
        if let Some(using) = &del.using {
            for twj in using {
                self.add_from(twj, &mut frames, 1)?;
            }
        }
        if let Some(w) = &del.selection {
            self.filter(w, &frames, 1)?;
        }
        for o in &del.order_by {
            self.value(&o.expr, &frames, 1)?;
        }
        if let Some(l) = &del.limit {
            self.value(l, &frames, 1)?;
        }
        self.returning(del.returning.as_deref(), &frames)
    }

    /// `RETURNING …` (MariaDB INSERT and DELETE): a result set over the written rows.
    fn returning(
        &mut self,
        items: Option<&[SelectItem]>,
        frames: &Frames<'_, 'p>,
    ) -> Outcome<Option<Shape>> {
        let Some(items) = items else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let before = self.shadowed;
                    let o = self.project(e, frames, 1)?;
                    self.name_shadowed(e, before)?;
                    out.push(super::scope::Item::Col(String::new(), o));
                }
                SelectItem::ExprWithAlias { expr: e, .. } => {
                    let o = self.project(e, frames, 1)?;
                    out.push(super::scope::Item::Col(String::new(), o));
                }
                SelectItem::Wildcard(_) => {
                    return refuse(
                        "",
                        "RETURNING * with protected columns is not supported; name the columns",
                    );
                }
                _ => return refuse("", "RETURNING item not understood"),
            }
        }
        Ok(Some(Items(out).into_shape(self.an.policy)))
    }

    /// SET assignments (UPDATE, INSERT … SET, ON DUPLICATE KEY UPDATE). `upsert` holds the
    /// INSERT's row alias for ON DUPLICATE KEY UPDATE; `row_filter` is an UPDATE's WHERE.
    fn assignments(
        &mut self,
        assignments: &[Assignment],
        rel: &Rel<'p>,
        frames: &Frames<'_, 'p>,
        upsert: Option<Option<String>>,
        row_filter: Option<&Expr>,
    ) -> Outcome<()> {
        for a in assignments {
            let target = match &a.target {
                AssignmentTarget::ColumnName(n) => n,
                AssignmentTarget::Tuple(v) => {
                    for n in v {
                        if let Some(idents) = object_idents(n)
                            && frames.resolve(&idents)?.is_cell()
                        {
                            return refuse(
                                "",
                                "tuple assignment to an encrypted column is not supported",
                            );
                        }
                    }
                    self.value(&a.value, frames, 1)?;
                    continue;
                }
            };
            let Some(idents) = object_idents(target) else {
                return refuse("", "assignment target not understood");
            };
            let last = idents.last().map(|i| i.value.clone()).unwrap_or_default();
            // Which table the target column is in: its qualifier's, or (single table) the
            // relation written.
            let origin = frames.resolve(&idents)?;
            let in_table = self.protected_of(rel);
            if in_table.iter().any(|c| {
                c.blind_index
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(&last))
            }) {
                return refuse(
                    last,
                    "the blind-index column is filled by myveil; do not write it",
                );
            }
            if let Some(bound) = in_table.iter().find(|c| {
                c.row_key
                    .as_deref()
                    .is_some_and(|rk| rk.eq_ignore_ascii_case(&last))
            }) {
                return refuse(
                    bound.scope(),
                    "changing the row key of rows with row-bound encrypted columns is not supported",
                );
            }
            let Origin::Cell {
                col,
                base: true,
                window,
                ..
            } = origin
            else {
                if origin.is_cell() {
                    return refuse(
                        "",
                        "writing an encrypted column through a derived table is not supported",
                    );
                }
                self.value(&a.value, frames, 1)?;
                continue;
            };
            self.protected = true;
            self.may_write(rel, col)?;
            let row_key = match &col.row_key {
                None => None,
                Some(_) if upsert.is_some() => {
                    return refuse(
                        col.scope(),
                        "ON DUPLICATE KEY UPDATE of a row-bound column is not supported",
                    );
                }
                Some(rk) => match row_filter
                    .map(|f| self.row_key_in(col, f, rk))
                    .transpose()?
                    .flatten()
                {
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
            let (vfirst, vlast) = self.tokens_of(a.value.span())?;
            let vlast = match &a.value {
                // A call's span ends at its last argument: take the closing parenthesis too.
                Expr::Function(_) => match self.view.tokens.get(vlast + 1) {
                    Some(t) if t.text(self.view.src) == b")" => vlast + 1,
                    _ => vlast,
                },
                _ => vlast,
            };
            let (_, value_end) = self.token_bytes(vfirst, vlast)?;
            // In a migration's shadow window the value goes to the shadow column and the old
            // one is set NULL (see `insert_values`).
            let mut after = Vec::new();
            let window = window && self.writes_shadow(rel, col);
            if window {
                let (tfirst, tlast) = self.tokens_of(target.span())?;
                let (s, e) = self.token_bytes(tfirst, tlast)?;
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    pieces: vec![Piece::Text(
                        format!("{qualifier}{}", super::expr::shadow_name(col)).into(),
                    )],
                });
                after.push(Piece::Text(
                    format!(", {qualifier}`{}` = NULL", last.replace('`', "``")).into(),
                ));
            }
            if let Some(lit) = self.written(col, &a.value)? {
                let (s, e) = self.literal_range(&a.value)?;
                self.edits.push(Edit {
                    start: s,
                    end: e,
                    pieces: vec![Piece::Seal(
                        col,
                        lit.clone(),
                        row_key.clone(),
                        self.keep_in(rel, col),
                    )],
                });
                if let Some(b) = &col.blind_index {
                    after.push(Piece::Text(format!(", {qualifier}`{b}` = ").into()));
                    after.push(Piece::BlindWrite(col, lit, row_key, self.keep_in(rel, col)));
                }
                if !after.is_empty() {
                    self.edits.push(Edit {
                        start: value_end,
                        end: value_end,
                        pieces: after,
                    });
                }
                continue;
            }
            // ON DUPLICATE KEY UPDATE c = VALUES(c) / c = alias.c: the new row's sealed value.
            if let Some(alias) = &upsert
                && copies_new_value(&a.value, alias.as_deref(), &col.column)
            {
                let copy_of = |c: &str| match &a.value {
                    Expr::Function(_) => format!("VALUES({c})"),
                    _ => format!("{}.{c}", alias.as_deref().unwrap_or_default()),
                };
                if window {
                    // The new row's value is in its shadow (the INSERT wrote it there), or,
                    // once swapped in, in the column (the stand-in's forward trigger moved
                    // it before the update reads it).
                    let (s, e) = self.token_bytes(vfirst, vlast)?;
                    let own = format!("`{}`", col.column.replace('`', "``"));
                    self.edits.push(Edit {
                        start: s,
                        end: e,
                        pieces: vec![Piece::Text(
                            format!(
                                "COALESCE({}, {})",
                                copy_of(&super::expr::shadow_name(col)),
                                copy_of(&own)
                            )
                            .into(),
                        )],
                    });
                }
                if let Some(b) = &col.blind_index {
                    let copy = copy_of(&format!("`{b}`"));
                    after.push(Piece::Text(format!(", {qualifier}`{b}` = {copy}").into()));
                }
                if !after.is_empty() {
                    self.edits.push(Edit {
                        start: value_end,
                        end: value_end,
                        pieces: after,
                    });
                }
                continue;
            }
            return refuse(
                col.scope(),
                "a value written to an encrypted column must be a literal or a parameter",
            );
        }
        Ok(())
    }

    /// The value `rk = <literal>` gives in a WHERE clause, looking through ANDs only.
    fn row_key_in(&self, col: &Protected, filter: &Expr, rk: &str) -> Outcome<Option<Lit>> {
        let mut todo = vec![filter];
        while let Some(e) = todo.pop() {
            match e {
                Expr::BinaryOp {
                    left,
                    op: sqlparser::ast::BinaryOperator::And,
                    right,
                } => {
                    todo.push(left);
                    todo.push(right);
                }
                Expr::Nested(inner) => todo.push(inner),
                Expr::BinaryOp {
                    left,
                    op: sqlparser::ast::BinaryOperator::Eq,
                    right,
                } => {
                    let (c, v) = if idents_of(left).is_some() {
                        (left, right)
                    } else {
                        (right, left)
                    };
                    let Some(name) = idents_of(c).and_then(|i| i.last()) else {
                        continue;
                    };
                    if !name.value.eq_ignore_ascii_case(rk) {
                        continue;
                    }
                    // The row key is read as text, whatever the protected column's type.
                    if let Some(l) = self.literal_text(col, v)?
                        && l != Lit::Null
                    {
                        return Ok(Some(l));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// A literal as text (row keys), whatever the column's type.
    fn literal_text(&self, col: &Protected, e: &Expr) -> Outcome<Option<Lit>> {
        self.literal(col, e)
    }
}

fn is_default(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `VALUES(col)` or `alias.col` naming the column itself.
fn copies_new_value(value: &Expr, alias: Option<&str>, column: &str) -> bool {
    match value {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("values") => {
            let arg = f.args.to_string();
            arg.trim_matches(['(', ')', '`', ' '])
                .eq_ignore_ascii_case(column)
        }
        Expr::CompoundIdentifier(v) => matches!(
            v.as_slice(),
            [a, c] if alias.is_some_and(|al| al.eq_ignore_ascii_case(&a.value))
                && c.value.eq_ignore_ascii_case(column)
        ),
        _ => false,
    }
}
