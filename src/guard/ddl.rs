//! guard::ddl: schema changes where protected data is reachable. A protected table changes
//! only by an allowlist — indexes, unprotected columns, table options — never a default,
//! a generated value or a type change of a protected column, a rename out of the policy's
//! reach, or a copy of its columns into a table the policy does not cover.

use super::Refusal;
use super::statement::Stmt;
use crate::policy::Policy;
use crate::sql::lex::Kind;

/// Whether `database.table` has protected columns.
fn protected_columns<'p>(
    policy: &'p Policy,
    db: &str,
    table: &str,
) -> Vec<&'p crate::policy::Protected> {
    policy
        .columns()
        .iter()
        .filter(|c| c.is_in(db, table))
        .collect()
}

/// A table name at token `i` (`t` or `db.t`): (database, table, next token).
fn table_at(s: &Stmt<'_>, i: usize, database: Option<&str>) -> Option<(String, String, usize)> {
    let first = s.name(i)?;
    if s.token(i + 1).is_some_and(|t| t.kind == Kind::Dot) {
        let second = s.name(i + 2)?;
        return Some((first, second, i + 3));
    }
    Some((
        database.unwrap_or_default().to_ascii_lowercase(),
        first,
        i + 1,
    ))
}

/// Splits tokens `[from, to)` at top-level commas.
fn specs(s: &Stmt<'_>, from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = from;
    let mut depth = 0usize;
    for i in from..to {
        if s.op(i, "(") {
            depth += 1;
        } else if s.op(i, ")") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && s.op(i, ",") {
            out.push((start, i));
            start = i + 1;
        }
    }
    if start < to {
        out.push((start, to));
    }
    out
}

fn not_supported(table: &str, why: &str) -> Refusal {
    Refusal::not_supported(format!("{table}: {why}"))
}

/// Names of `[from, to)` that are protected columns (or their blind indexes) of `cols`.
fn mentions(
    s: &Stmt<'_>,
    from: usize,
    to: usize,
    cols: &[&crate::policy::Protected],
) -> Option<String> {
    (from..to).find_map(|i| {
        let n = s.name(i)?;
        cols.iter()
            .find(|c| {
                c.column.eq_ignore_ascii_case(&n)
                    || c.blind_index
                        .as_deref()
                        .is_some_and(|b| b.eq_ignore_ascii_case(&n))
            })
            .map(|c| c.scope())
    })
}

/// A column definition for a protected column: no default but NULL, no generated value,
/// no check.
fn plain_definition(s: &Stmt<'_>, from: usize, to: usize) -> Result<(), &'static str> {
    let mut i = from;
    while i < to {
        if s.word(i, "default") {
            let null =
                s.word(i + 1, "null") || s.token(i + 1).is_some_and(|t| t.kind == Kind::Null);
            if !null {
                return Err("a default for a protected column would be stored as plaintext");
            }
        }
        if s.word(i, "as")
            || s.word(i, "generated")
            || s.word(i, "check")
            || s.word(i, "references")
        {
            return Err(
                "a generated value, check or reference on a protected column is not supported",
            );
        }
        i += 1;
    }
    Ok(())
}

/// ALTER TABLE: checked spec by spec against the allowlist.
pub fn alter_table(s: &Stmt<'_>, policy: &Policy, database: Option<&str>) -> Result<(), Refusal> {
    let mut i = 1;
    while s.word(i, "online") || s.word(i, "offline") || s.word(i, "ignore") {
        i += 1;
    }
    i += 1; // TABLE
    if s.word(i, "if") && s.word(i + 1, "exists") {
        i += 2;
    }
    let Some((db, table, mut next)) = table_at(s, i, database) else {
        return Err(Refusal::not_supported("ALTER TABLE target not understood"));
    };
    // `WAIT n` / `NOWAIT` come before the first spec and belong to none: taken for a spec,
    // they would carry the one that follows them past the allowlist.
    if s.word(next, "nowait") {
        next += 1;
    } else if s.word(next, "wait") {
        next += 2;
    }
    let cols = protected_columns(policy, &db, &table);
    for (a, b) in specs(s, next, s.len()) {
        // Tables a spec moves rows or a name to: EXCHANGE PARTITION … WITH TABLE x swaps
        // rows with x; RENAME TO x gives this table a protected name.
        let other = if s.word(a, "exchange") {
            (a..b)
                .find(|&k| s.word(k, "with") && s.word(k + 1, "table"))
                .and_then(|k| table_at(s, k + 2, database))
        } else if s.word(a, "rename")
            && !s.word(a + 1, "index")
            && !s.word(a + 1, "key")
            && !s.word(a + 1, "column")
        {
            let k = if s.word(a + 1, "to") || s.word(a + 1, "as") {
                a + 2
            } else {
                a + 1
            };
            table_at(s, k, database)
        } else {
            None
        };
        if let Some((odb, otable, _)) = other
            && !protected_columns(policy, &odb, &otable).is_empty()
        {
            return Err(not_supported(
                &otable,
                "moving rows or a table into a protected table's place is not supported",
            ));
        }
        if !cols.is_empty() {
            alter_spec(s, a, b, &table, &cols)?;
        }
    }
    Ok(())
}

/// DROP TABLE, TRUNCATE: a protected table is dropped or emptied only by a role that may
/// write every protected column of it.
pub fn drop_table(
    s: &Stmt<'_>,
    policy: &Policy,
    database: Option<&str>,
    role: &str,
) -> Result<(), Refusal> {
    if !(s.word(0, "truncate") || (s.word(0, "drop") && (1..4).any(|i| s.word(i, "table")))) {
        return Ok(());
    }
    let mut i = 1;
    while i < s.len()
        && (s.word(i, "temporary")
            || s.word(i, "table")
            || s.word(i, "tables")
            || (s.word(i, "if") && s.word(i + 1, "exists"))
            || s.word(i, "exists"))
    {
        i += 1;
    }
    for (a, _) in specs(s, i, s.len()) {
        let Some((db, table, _)) = table_at(s, a, database) else {
            continue;
        };
        if let Some(c) = protected_columns(policy, &db, &table)
            .into_iter()
            .find(|c| !c.may_write(role))
        {
            return Err(not_supported(
                &c.scope(),
                "this role may not write the column, so it may not drop or empty its table",
            ));
        }
    }
    Ok(())
}

fn alter_spec(
    s: &Stmt<'_>,
    a: usize,
    b: usize,
    table: &str,
    cols: &[&crate::policy::Protected],
) -> Result<(), Refusal> {
    let w = |k: usize, x: &str| s.word(a + k, x);
    let is_protected = |name: Option<String>| {
        name.is_some_and(|n| {
            cols.iter().any(|c| {
                c.column.eq_ignore_ascii_case(&n)
                    || c.blind_index
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(&n))
                    || c.row_key
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(&n))
            })
        })
    };
    // Index and key changes, and table options: allowed.
    const INDEX: &[&str] = &["index", "key", "unique", "primary", "fulltext", "spatial"];
    const OPTIONS: &[&str] = &[
        "engine",
        "auto_increment",
        "default",
        "charset",
        "character",
        "collate",
        "comment",
        "row_format",
        "key_block_size",
        "stats_persistent",
        "stats_auto_recalc",
        "stats_sample_pages",
        "pack_keys",
        "checksum",
        "delay_key_write",
        "algorithm",
        "lock",
        "force",
        "order",
        "avg_row_length",
        "max_rows",
        "min_rows",
        "page_checksum",
        "transactional",
        "encrypted",
        "encryption_key_id",
        "page_compressed",
        "page_compression_level",
        "disable",
        "enable",
        "convert",
    ];
    if OPTIONS.iter().any(|o| w(0, o)) {
        return Ok(());
    }
    if w(0, "add") {
        let mut k = 1;
        if w(k, "constraint") {
            k += 1;
            if !INDEX.iter().any(|x| w(k, x)) && !w(k, "foreign") && !w(k, "check") {
                k += 1; // the constraint's name
            }
        }
        if INDEX.iter().any(|x| w(k, x)) {
            return Ok(());
        }
        if w(k, "foreign") || w(k, "check") || w(k, "period") || w(k, "system") {
            if let Some(c) = mentions(s, a + k, b, cols) {
                return Err(not_supported(
                    &c,
                    "a check or foreign key on a protected column is not supported",
                ));
            }
            return Ok(());
        }
        if w(k, "partition") {
            return Ok(());
        }
        if w(k, "column") {
            k += 1;
        }
        if w(k, "if") && w(k + 1, "not") && w(k + 2, "exists") {
            k += 3;
        }
        if s.op(a + k, "(") {
            for (x, y) in specs(s, a + k + 1, b.saturating_sub(1)) {
                column_definition(s, x, y, table, cols)?;
            }
            return Ok(());
        }
        return column_definition(s, a + k, b, table, cols);
    }
    if w(0, "drop") {
        let mut k = 1;
        if INDEX.iter().any(|x| w(k, x))
            || w(k, "foreign")
            || w(k, "constraint")
            || w(k, "check")
            || w(k, "partition")
        {
            return Ok(());
        }
        if w(k, "column") {
            k += 1;
        }
        if w(k, "if") && w(k + 1, "exists") {
            k += 2;
        }
        if w(k, "default") {
            return Ok(());
        }
        if is_protected(s.name(a + k)) {
            return Err(not_supported(
                table,
                "dropping a protected column, its blind index or its row key is not supported through myveil",
            ));
        }
        return Ok(());
    }
    if w(0, "modify") || w(0, "change") {
        let mut k = 1;
        if w(k, "column") {
            k += 1;
        }
        if w(k, "if") && w(k + 1, "exists") {
            k += 2;
        }
        let old = s.name(a + k);
        let new = if w(0, "change") {
            s.name(a + k + 1)
        } else {
            None
        };
        if is_protected(old) || is_protected(new) {
            return Err(not_supported(
                table,
                "changing the definition of a protected column is not supported",
            ));
        }
        if let Some(c) = mentions(s, a + k + 1, b, cols) {
            return Err(not_supported(
                &c,
                "a column defined from a protected column is not supported",
            ));
        }
        return Ok(());
    }
    if w(0, "alter") {
        let mut k = 1;
        if w(k, "column") {
            k += 1;
        }
        if INDEX.iter().any(|x| w(k, x)) || w(k, "check") || w(k, "constraint") {
            return Ok(());
        }
        if is_protected(s.name(a + k)) {
            if w(k + 1, "drop") && w(k + 2, "default") {
                return Ok(());
            }
            return Err(not_supported(
                table,
                "a default for a protected column would be stored as plaintext",
            ));
        }
        return Ok(());
    }
    if w(0, "rename") {
        if w(1, "index") || w(1, "key") {
            return Ok(());
        }
        if w(1, "column") {
            if is_protected(s.name(a + 2)) || is_protected(s.name(a + 4)) {
                return Err(not_supported(
                    table,
                    "renaming a protected column is not supported",
                ));
            }
            return Ok(());
        }
        return Err(not_supported(
            table,
            "renaming a protected table moves it out of the policy's reach",
        ));
    }
    if w(0, "exchange") || w(0, "discard") || w(0, "import") {
        return Err(not_supported(
            table,
            "moving data in or out of a protected table this way is not supported",
        ));
    }
    if [
        "partition",
        "coalesce",
        "reorganize",
        "analyze",
        "check",
        "optimize",
        "rebuild",
        "repair",
        "truncate",
        "remove",
    ]
    .iter()
    .any(|o| w(0, o))
    {
        if let Some(c) = mentions(s, a, b, cols) {
            return Err(not_supported(
                &c,
                "partitioning by a protected column is not supported",
            ));
        }
        return Ok(());
    }
    Err(not_supported(
        table,
        "this change to a protected table is not supported",
    ))
}

/// A column definition in ALTER TABLE ADD or CREATE TABLE.
fn column_definition(
    s: &Stmt<'_>,
    a: usize,
    b: usize,
    table: &str,
    cols: &[&crate::policy::Protected],
) -> Result<(), Refusal> {
    let name = s.name(a);
    let protected = name
        .as_deref()
        .is_some_and(|n| cols.iter().any(|c| c.column.eq_ignore_ascii_case(n)));
    if protected {
        return plain_definition(s, a + 1, b).map_err(|why| not_supported(table, why));
    }
    if let Some(c) = mentions(s, a + 1, b, cols) {
        return Err(not_supported(
            &c,
            "a column defined from a protected column is not supported",
        ));
    }
    Ok(())
}

/// CREATE TABLE: a protected table may be created without defaults or generated values
/// for its protected columns; LIKE a protected table only where the policy covers the copy;
/// CREATE … SELECT is the guard's (the query is analyzed).
pub fn create_table(
    s: &Stmt<'_>,
    policy: &Policy,
    database: Option<&str>,
) -> Result<CreateTable, Refusal> {
    let mut i = 1;
    while i < s.len() && !s.word(i, "table") {
        i += 1;
    }
    i += 1;
    if s.word(i, "if") && s.word(i + 1, "not") && s.word(i + 2, "exists") {
        i += 3;
    }
    let Some((db, table, next)) = table_at(s, i, database) else {
        return Err(Refusal::not_supported("CREATE TABLE target not understood"));
    };
    let cols = protected_columns(policy, &db, &table);
    let like_at = if s.word(next, "like") {
        Some(next + 1)
    } else if s.op(next, "(") && s.word(next + 1, "like") {
        Some(next + 2)
    } else {
        None
    };
    if let Some(at) = like_at {
        let Some((sdb, stable, _)) = table_at(s, at, database) else {
            return Err(Refusal::not_supported(
                "CREATE TABLE … LIKE source not understood",
            ));
        };
        for c in protected_columns(policy, &sdb, &stable) {
            let covered = policy.columns().iter().any(|p| {
                p.is_in(&db, &table)
                    && p.column.eq_ignore_ascii_case(&c.column)
                    && p.plain_type == c.plain_type
            });
            if !covered {
                return Err(not_supported(
                    &c.scope(),
                    "a copy of a protected table outside the policy's reach is not supported",
                ));
            }
        }
        return Ok(CreateTable::Plain);
    }
    // The query of CREATE … [AS] SELECT starts at the first top-level SELECT / WITH.
    let mut depth = 0usize;
    let mut query_at = None;
    for k in next..s.len() {
        if s.op(k, "(") {
            depth += 1;
        } else if s.op(k, ")") {
            depth = depth.saturating_sub(1);
        } else if (s.word(k, "select") || s.word(k, "with") || s.word(k, "values"))
            && (depth == 0 || (depth == 1 && s.op(k - 1, "(") && k > next + 1 && !s.op(next, "(")))
        {
            query_at = Some(k);
            break;
        } else if depth == 0 && s.word(k, "as") && (s.word(k + 1, "select") || s.op(k + 1, "(")) {
            query_at = Some(k + 1);
            break;
        }
    }
    if query_at.is_none() && (next..s.len()).any(|k| s.word(k, "select")) {
        // `CREATE TABLE t (SELECT …)`, `CREATE TABLE t (x INT) (SELECT …)`: a query in a
        // form not read here.
        return Err(not_supported(
            &table,
            "this CREATE TABLE holds a query in a form myveil does not read; use CREATE TABLE … AS SELECT",
        ));
    }
    if let Some(q) = query_at {
        if !cols.is_empty() {
            return Err(not_supported(
                &table,
                "CREATE … SELECT into a protected table is not supported; create it, then INSERT",
            ));
        }
        return Ok(CreateTable::Select(q));
    }
    if !cols.is_empty() && s.op(next, "(") {
        let close = (next + 1..s.len())
            .rev()
            .find(|&k| s.op(k, ")"))
            .unwrap_or(s.len());
        for (a, b) in specs(s, next + 1, close) {
            if [
                "primary",
                "key",
                "index",
                "unique",
                "fulltext",
                "spatial",
                "constraint",
                "foreign",
                "check",
                "period",
            ]
            .iter()
            .any(|x| s.word(a, x))
            {
                if (s.word(a, "check") || s.word(a, "foreign") || s.word(a, "constraint"))
                    && let Some(c) = mentions(s, a, b, &cols)
                {
                    return Err(not_supported(
                        &c,
                        "a check or foreign key on a protected column is not supported",
                    ));
                }
                continue;
            }
            column_definition(s, a, b, &table, &cols)?;
        }
    }
    Ok(CreateTable::Plain)
}

/// What a CREATE TABLE needs after the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateTable {
    Plain,
    /// CREATE … SELECT: its query starts at this token.
    Select(usize),
}

/// RENAME TABLE a TO b[, …]: a protected table may only be renamed where the policy still
/// covers it.
pub fn rename_table(s: &Stmt<'_>, policy: &Policy, database: Option<&str>) -> Result<(), Refusal> {
    for (a, b) in specs(s, 2, s.len()) {
        let Some((db, table, next)) = table_at(s, a, database) else {
            return Err(Refusal::not_supported("RENAME TABLE not understood"));
        };
        let cols = protected_columns(policy, &db, &table);
        let Some((ndb, ntable, _)) = (s.word(next, "to"))
            .then(|| table_at(s, next + 1, database))
            .flatten()
        else {
            return Err(Refusal::not_supported("RENAME TABLE not understood"));
        };
        let _ = b;
        // A table renamed into a protected name brings its cells: only a protected table
        // with the same protected columns may.
        for p in protected_columns(policy, &ndb, &ntable) {
            if !cols
                .iter()
                .any(|c| c.column.eq_ignore_ascii_case(&p.column) && c.plain_type == p.plain_type)
            {
                return Err(not_supported(
                    &ntable,
                    "renaming a table into a protected table's place is not supported",
                ));
            }
        }
        for c in cols {
            if !policy
                .columns()
                .iter()
                .any(|p| p.is_in(&ndb, &ntable) && p.column.eq_ignore_ascii_case(&c.column))
            {
                return Err(not_supported(
                    &table,
                    "renaming a protected table moves it out of the policy's reach",
                ));
            }
        }
    }
    Ok(())
}
