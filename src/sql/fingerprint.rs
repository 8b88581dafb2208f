//! sql::fingerprint: a statement's shape with every literal replaced by `?`, for logs,
//! built from the lexer's tokens (so what counts as a literal follows the session's
//! sql_mode and character set, as the server reads the text).
//!
//! Security: strings, numbers, hex and bit literals, variables' quoted names and comments
//! never survive; identifiers do, quoted identifiers with their quotes, but only while they
//! look like names: one longer than a name may be (64 characters) or with a space, a quote
//! or a semicolon in it is logged as its quotes around `…` (data smuggled into an alias, or
//! text the server reads as a string when myveil's idea of the mode is wrong). Text the lexer
//! cannot read gives a placeholder only. The lexing is right only while the session's mode
//! holds: after a statement that may change sql_mode or the character set (`SET`, `CALL`,
//! `EXECUTE`, anything with such a word) the rest of a multi-statement text may read
//! differently to the server (a string to it, identifiers and words here), so it is left out.

use super::lex::{Kind, Lexed};

/// Longest fingerprint kept, in bytes.
const MAX_FINGERPRINT_LEN: usize = 512;

/// The fingerprint of `src` as lexed into `lexed`.
pub fn fingerprint(src: &[u8], lexed: &Lexed) -> String {
    let mut out = String::with_capacity(src.len().min(MAX_FINGERPRINT_LEN));
    let mut may_change_mode = false;
    for (i, t) in lexed.tokens.iter().enumerate() {
        if out.len() >= MAX_FINGERPRINT_LEN {
            break;
        }
        if t.kind == Kind::Semicolon && may_change_mode && i + 1 < lexed.tokens.len() {
            out.push_str("; …");
            break;
        }
        // `SET STATEMENT sql_mode = … FOR stmt`: the inner statement may read differently.
        if may_change_mode && t.kind == Kind::Word && t.text(src).eq_ignore_ascii_case(b"for") {
            out.push_str(" FOR …");
            break;
        }
        if t.kind == Kind::Word {
            let w = t.text(src);
            may_change_mode |= [&b"set"[..], b"call", b"execute"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k));
        }
        let joined = i > 0 && !t.gap_before;
        if i > 0 && !joined {
            out.push(' ');
        }
        match t.kind {
            Kind::Str | Kind::NStr | Kind::Hex | Kind::Bit | Kind::Number | Kind::Null => {
                // Adjacent strings are one literal.
                if !(t.kind == Kind::Str && i > 0 && lexed.tokens[i - 1].kind == Kind::Str) {
                    out.push('?');
                } else if out.ends_with(' ') {
                    out.pop();
                }
            }
            Kind::UserVar => out.push_str("@?"),
            Kind::Quoted if !name_like(t.text(src)) => {
                // Its own quotes: `…`, "…" under ANSI_QUOTES, […] under MSSQL.
                let q = t.text(src);
                out.push(q.first().map_or('`', |&c| char::from(c)));
                out.push('…');
                out.push(q.last().map_or('`', |&c| char::from(c)));
            }
            _ => out.push_str(&String::from_utf8_lossy(t.text(src))),
        }
    }
    out
}

/// Whether a quoted identifier (with its quotes) is short and plain enough to be a name.
fn name_like(quoted: &[u8]) -> bool {
    const MAX_NAME: usize = 64;
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(&[]);
    inner.len() <= MAX_NAME * 4
        && std::str::from_utf8(inner).is_ok_and(|s| s.chars().count() <= MAX_NAME)
        && !inner
            .iter()
            .any(|&b| b.is_ascii_whitespace() || b.is_ascii_control() || b"'\"`;\\".contains(&b))
}

/// A fingerprint for text the lexer could not read.
pub const UNREADABLE: &str = "<unreadable statement>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::charset::Charset;
    use crate::sql::lex::{Mode, lex};

    fn mode(nbe: bool) -> Mode<'static> {
        Mode {
            charset: Charset::named("utf8mb4").expect("cs"),
            ansi_quotes: false,
            no_backslash_escapes: nbe,
            mssql: false,
            server_version: 101_119,
            prepare: false,
        }
    }

    fn fp(sql: &str, nbe: bool) -> String {
        let m = mode(nbe);
        let lexed = lex(sql.as_bytes(), &m).expect("lex");
        fingerprint(sql.as_bytes(), &lexed)
    }

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
            ("SET @v := 'pii'", "SET @? := ?"),
            ("select 'a' 'b'", "select ?"),
            (
                "select `a b` , `c;d`, `ok_name` from `t`",
                "select `…` , `…`, `ok_name` from `t`",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(fp(input, false), *want, "input: {input}");
        }
    }

    #[test]
    fn canary_never_survives_in_any_mode() {
        let canary = "CANARY-7f3a";
        for (q, nbe) in [
            (format!("select '{canary}'"), false),
            (format!("select \"{canary}\""), false),
            (format!("select 1 /*! , '{canary}' */"), false),
            (format!("select 1 -- {canary}"), false),
            // Under NO_BACKSLASH_ESCAPES the backslash does not hide the next quote.
            (format!("select 'a\\' , '{canary}'"), true),
            (format!("select @'{canary}'"), false),
        ] {
            assert!(!fp(&q, nbe).contains(canary), "{q}: {}", fp(&q, nbe));
        }
    }

    #[test]
    fn nothing_after_a_possible_mode_change_is_shown() {
        // Read under the old mode, the hex literal would sit inside a quoted identifier.
        let m = Mode {
            ansi_quotes: true,
            ..mode(false)
        };
        let sql = r#"SET sql_mode = ''; SELECT 1 AS "a\""; UPDATE t SET c = 0x4341 -- ""#;
        let lexed = lex(sql.as_bytes(), &m).expect("lex");
        assert_eq!(fingerprint(sql.as_bytes(), &lexed), "SET sql_mode = ?; …");
        // Under ANSI_QUOTES all of it is one alias: not a name, not logged.
        let sql = r#"SELECT 1 AS "a\""; UPDATE t SET c = 0x4341 WHERE id = 1; -- ""#;
        let lexed = lex(sql.as_bytes(), &m).expect("lex");
        assert_eq!(fingerprint(sql.as_bytes(), &lexed), r#"SELECT ? AS "…""#);
        let mssql = Mode {
            mssql: true,
            ..mode(false)
        };
        let sql = "SELECT 1 AS [a; UPDATE t SET c = 0x4341], [ok]";
        let lexed = lex(sql.as_bytes(), &mssql).expect("lex");
        assert_eq!(fingerprint(sql.as_bytes(), &lexed), "SELECT ? AS […], [ok]");
        assert_eq!(
            fp("SELECT a FROM t; SELECT b FROM u", false),
            "SELECT a FROM t; SELECT b FROM u"
        );
        assert_eq!(fp("SET @a = 1;", false), "SET @? = ?");
        let sql = r#"SET STATEMENT sql_mode = '' FOR SELECT 1 AS "a\"", 0x4341 -- ""#;
        let lexed = lex(sql.as_bytes(), &m).expect("lex");
        assert_eq!(
            fingerprint(sql.as_bytes(), &lexed),
            "SET STATEMENT sql_mode = ? FOR …"
        );
    }

    #[test]
    fn output_is_bounded() {
        let long = "select ".to_owned() + &"a, ".repeat(10_000) + "a";
        assert!(fp(&long, false).len() <= MAX_FINGERPRINT_LEN + 8);
    }
}
