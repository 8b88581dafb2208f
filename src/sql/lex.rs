//! sql::lex: a cheap pass over statement text, before any parsing: does the text name a
//! protected table or column at all, and does it hold executable comments (`/*! … */`)?
//! Statements that name nothing protected are forwarded untouched without being parsed.

use std::collections::HashSet;

/// What the quick scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Some identifier equals (ignoring ASCII case) one of the watched names.
    pub names_watched: bool,
    /// `/*!` or `/*M!` outside quotes: MySQL runs what is inside.
    pub executable_comment: bool,
    /// The word PREPARE appears: the statement to prepare hides in a string literal.
    pub prepare: bool,
    /// The word EXECUTE or DEALLOCATE appears: a SQL-level prepared statement is used.
    pub execute: bool,
}

/// Whether any watched name occurs anywhere in `sql`, string literals included.
pub fn mentions_anywhere(sql: &[u8], watched: &HashSet<String>) -> bool {
    let lower = String::from_utf8_lossy(sql).to_ascii_lowercase();
    watched.iter().any(|w| lower.contains(w.as_str()))
}

/// Scans `sql` for identifiers in `watched` (lower-case) and for executable comments.
pub fn scan(sql: &[u8], watched: &HashSet<String>) -> Scan {
    let mut out = Scan::default();
    let mut i = 0;
    let mut word = Vec::new();
    let check = |w: &[u8], out: &mut Scan| {
        if !w.is_empty() {
            let lower = String::from_utf8_lossy(w).to_ascii_lowercase();
            if watched.contains(&lower) {
                out.names_watched = true;
            }
            match lower.as_str() {
                "prepare" => out.prepare = true,
                "execute" | "deallocate" => out.execute = true,
                _ => {}
            }
        }
    };
    while i < sql.len() {
        let c = sql[i];
        match c {
            b'\'' | b'"' => {
                check(&word, &mut out);
                word.clear();
                i = skip_quoted(sql, i, c);
            }
            b'`' => {
                check(&word, &mut out);
                word.clear();
                let end = skip_quoted(sql, i, b'`');
                let inner = &sql[i + 1..end.saturating_sub(1).max(i + 1)];
                check(
                    &inner
                        .iter()
                        .copied()
                        .filter(|&b| b != b'`')
                        .collect::<Vec<_>>(),
                    &mut out,
                );
                i = end;
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                check(&word, &mut out);
                word.clear();
                if matches!(sql.get(i + 2), Some(b'!')) || sql.get(i + 2..i + 4) == Some(b"M!") {
                    out.executable_comment = true;
                    // Read on as code: what is inside is executed.
                    i += 3;
                } else {
                    i = sql[i + 2..]
                        .windows(2)
                        .position(|w| w == b"*/")
                        .map_or(sql.len(), |p| i + 2 + p + 2);
                }
            }
            b'#' => {
                check(&word, &mut out);
                word.clear();
                i = sql[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(sql.len(), |p| i + p + 1);
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|b| b.is_ascii_whitespace()) =>
            {
                check(&word, &mut out);
                word.clear();
                i = sql[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(sql.len(), |p| i + p + 1);
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                word.push(c);
                i += 1;
            }
            _ => {
                check(&word, &mut out);
                word.clear();
                i += 1;
            }
        }
    }
    check(&word, &mut out);
    out
}

/// Byte offsets of the `?` parameter markers of a statement (outside quotes and comments).
pub fn placeholder_offsets(sql: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(sql, i, q),
            b'/' if sql.get(i + 1) == Some(&b'*') && sql.get(i + 2) != Some(&b'!') => {
                i = sql[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(sql.len(), |p| i + 2 + p + 2);
            }
            b'#' => {
                i = sql[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(sql.len(), |p| i + p + 1)
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|b| b.is_ascii_whitespace()) =>
            {
                i = sql[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(sql.len(), |p| i + p + 1);
            }
            b'?' => {
                out.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Index after a quoted token starting at `start` (backslash escapes and doubled quotes;
/// unterminated: the end of the text).
pub(crate) fn skip_quoted(sql: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < sql.len() {
        match sql[i] {
            b'\\' if quote != b'`' => i += 2,
            q if q == quote => {
                if sql.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> HashSet<String> {
        ["users", "email"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_names_outside_literals_only() {
        let w = watched();
        assert!(scan(b"SELECT email FROM t", &w).names_watched);
        assert!(scan(b"select * from `Users`", &w).names_watched);
        assert!(scan(b"select * from shop.USERS", &w).names_watched);
        assert!(!scan(b"select 'users', \"email\" from t", &w).names_watched);
        assert!(!scan(b"select emails from t -- users\n", &w).names_watched);
        assert!(!scan(b"select 1 /* users */", &w).names_watched);
        assert!(!scan(b"select x_email from t # email", &w).names_watched);
    }

    #[test]
    fn executable_comments_are_code() {
        let w = watched();
        let s = scan(b"SELECT 1 /*! , email */ FROM t", &w);
        assert!(s.executable_comment && s.names_watched);
        assert!(scan(b"SELECT /*M!100000 email */ 1", &w).executable_comment);
        assert!(!scan(b"SELECT '/*!' FROM t", &w).executable_comment);
    }

    #[test]
    fn placeholders_outside_literals_and_comments() {
        let sql = b"SELECT ? , '?' , `a?` /* ? */ , ? -- ?\n, \"\\\"?\" , ?";
        let found = placeholder_offsets(sql);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|&i| sql[i] == b'?'));
    }

    #[test]
    fn prepare_hides_the_statement_in_a_string() {
        let w = watched();
        let sql = b"PREPARE s FROM 'INSERT INTO users (email) VALUES (?)'";
        let s = scan(sql, &w);
        assert!(s.prepare && !s.names_watched);
        assert!(mentions_anywhere(sql, &w));
    }
}
