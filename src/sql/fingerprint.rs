//! sql::fingerprint: a statement's shape with every literal replaced by `?`, for logs.
//!
//! Security: strings (either quote style, since "…" is a string unless ANSI_QUOTES), numbers,
//! hex and bit literals and comments never survive; identifiers in backticks do. Invalid
//! UTF-8 and unterminated literals are treated as literals to the end.

use super::lex::skip_quoted;

/// Longest fingerprint kept, in bytes.
const MAX_FINGERPRINT_LEN: usize = 512;

pub fn fingerprint(sql: &[u8]) -> String {
    let mut out = String::with_capacity(sql.len().min(MAX_FINGERPRINT_LEN));
    let mut i = 0;
    let mut pending_space = false;
    let push = |out: &mut String, s: &str, pending_space: &mut bool| {
        if *pending_space && !out.is_empty() {
            out.push(' ');
        }
        *pending_space = false;
        out.push_str(s);
    };
    while i < sql.len() && out.len() < MAX_FINGERPRINT_LEN {
        let c = sql[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                pending_space = true;
                i += 1;
            }
            b'\'' | b'"' => {
                i = skip_quoted(sql, i, c);
                push(&mut out, "?", &mut pending_space);
            }
            b'`' => {
                let end = skip_quoted(sql, i, b'`');
                push(
                    &mut out,
                    &String::from_utf8_lossy(&sql[i..end]),
                    &mut pending_space,
                );
                i = end;
            }
            b'#' => i = skip_line(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|b| b.is_ascii_whitespace()) =>
            {
                i = skip_line(sql, i);
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(sql.len(), |p| i + 2 + p + 2);
                pending_space = true;
            }
            b'0'..=b'9' => {
                i = skip_number(sql, i);
                push(&mut out, "?", &mut pending_space);
            }
            b'.' if sql.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = skip_number(sql, i);
                push(&mut out, "?", &mut pending_space);
            }
            b'x' | b'X' | b'b' | b'B' if sql.get(i + 1) == Some(&b'\'') => {
                i = skip_quoted(sql, i + 1, b'\'');
                push(&mut out, "?", &mut pending_space);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@' || c >= 0x80 => {
                let start = i;
                while i < sql.len()
                    && (sql[i].is_ascii_alphanumeric()
                        || matches!(sql[i], b'_' | b'$' | b'@' | b'.')
                        || sql[i] >= 0x80)
                {
                    i += 1;
                }
                push(
                    &mut out,
                    &String::from_utf8_lossy(&sql[start..i]),
                    &mut pending_space,
                );
            }
            _ => {
                let mut b = [0u8; 4];
                push(
                    &mut out,
                    char::from(c).encode_utf8(&mut b),
                    &mut pending_space,
                );
                i += 1;
            }
        }
    }
    out
}

fn skip_line(sql: &[u8], start: usize) -> usize {
    sql[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(sql.len(), |p| start + p + 1)
}

fn skip_number(sql: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < sql.len() && (sql[i].is_ascii_alphanumeric() || sql[i] == b'.') {
        // exponent sign: 1e-5
        i += 1;
        if i < sql.len() && matches!(sql[i], b'+' | b'-') && matches!(sql[i - 1], b'e' | b'E') {
            i += 1;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn literals_become_placeholders() {
        let cases: &[(&str, &str)] = &[
            (
                "SELECT * FROM t WHERE a = 'secret' AND b = 42",
                "SELECT * FROM t WHERE a = ? AND b = ?",
            ),
            (
                "insert into `users` (email) values (\"x@y.z\"), ('it''s')",
                "insert into `users` (email) values (?), (?)",
            ),
            (
                "select 1.5e-3, .5, 0xCAFE, x'00ff', b'101'",
                "select ?, ?, ?, ?, ?",
            ),
            ("select 'a\\'b' -- trailing 'secret'\n, 2", "select ? , ?"),
            ("select /* 'hidden' */ c # 9\nfrom t", "select c from t"),
            ("select 'unterminated", "select ?"),
            ("SET @v := 'pii'", "SET @v := ?"),
        ];
        for (input, want) in cases {
            assert_eq!(fingerprint(input.as_bytes()), *want, "input: {input}");
        }
    }

    #[test]
    fn canary_never_survives() {
        let canary = "CANARY-7f3a";
        for q in [
            format!("select '{canary}'"),
            format!("select \"{canary}\""),
            format!("select 1 /*! , '{canary}' */"),
            format!("select 1 -- {canary}"),
        ] {
            assert!(!fingerprint(q.as_bytes()).contains(canary), "{q}");
        }
    }

    #[test]
    fn output_is_bounded() {
        let long = "select ".to_owned() + &"a, ".repeat(10_000);
        assert!(fingerprint(long.as_bytes()).len() <= super::MAX_FINGERPRINT_LEN + 8);
    }
}
