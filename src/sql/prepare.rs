//! sql::prepare: SQL-level prepared statements — `PREPARE name FROM '…'`, `EXECUTE name
//! [USING …]`, `DEALLOCATE|DROP PREPARE name` — read well enough to analyze the prepared
//! text and to rebuild the USING list with sealed values.

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::analyze::Lit;

/// One item of an `EXECUTE … USING` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Using {
    /// A literal value (unescaped), or NULL.
    Literal(Lit),
    /// Anything else (a user variable, an expression): only passed through as written.
    Other,
}

/// A SQL-level prepared-statement command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PREPARE name FROM 'text'`; `text` is None when it comes from a variable.
    Prepare {
        name: String,
        text: Option<String>,
    },
    /// `EXECUTE name USING …`: each item with its byte range in the statement.
    Execute {
        name: String,
        using: Vec<(Using, usize, usize)>,
    },
    Deallocate {
        name: String,
    },
}

fn tokens(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let all = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    Some(
        all.into_iter()
            .filter(|t| {
                !matches!(
                    t.token,
                    Token::Whitespace(_) | Token::SemiColon | Token::EOF
                )
            })
            .collect(),
    )
}

fn word(t: Option<&TokenWithSpan>) -> Option<String> {
    match &t?.token {
        Token::Word(w) => Some(w.value.clone()),
        _ => None,
    }
}

fn keyword(t: Option<&TokenWithSpan>, k: &str) -> bool {
    word(t).is_some_and(|w| w.eq_ignore_ascii_case(k))
}

/// Reads `sql` as a SQL-level prepared-statement command, if it is one.
pub fn parse(
    sql: &str,
    offsets: impl Fn(sqlparser::tokenizer::Span) -> Option<(usize, usize)>,
) -> Option<Command> {
    let t = tokens(sql)?;
    if keyword(t.first(), "prepare") {
        let name = word(t.get(1))?.to_ascii_lowercase();
        if !keyword(t.get(2), "from") || t.len() != 4 {
            return None;
        }
        let text = match &t[3].token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        };
        return Some(Command::Prepare { name, text });
    }
    if keyword(t.first(), "execute") {
        let name = word(t.get(1))?.to_ascii_lowercase();
        let mut using = Vec::new();
        if t.len() > 2 {
            if !keyword(t.get(2), "using") {
                return None;
            }
            for item in t[3..].split(|x| x.token == Token::Comma) {
                let (first, last) = (item.first()?, item.last()?);
                let (start, _) = offsets(first.span)?;
                let (_, end) = offsets(last.span)?;
                let value = match item {
                    [one] => match &one.token {
                        Token::SingleQuotedString(s)
                        | Token::DoubleQuotedString(s)
                        | Token::NationalStringLiteral(s) => {
                            Using::Literal(Lit::Bytes(s.clone().into_bytes()))
                        }
                        Token::Number(n, _) => Using::Literal(Lit::Bytes(n.clone().into_bytes())),
                        Token::HexStringLiteral(h) => hex::decode(h)
                            .map(|b| Using::Literal(Lit::Bytes(b)))
                            .unwrap_or(Using::Other),
                        Token::Word(w)
                            if w.value.eq_ignore_ascii_case("null") && w.quote_style.is_none() =>
                        {
                            Using::Literal(Lit::Null)
                        }
                        _ => Using::Other,
                    },
                    [minus, num] if minus.token == Token::Minus => match &num.token {
                        Token::Number(n, _) => {
                            Using::Literal(Lit::Bytes(format!("-{n}").into_bytes()))
                        }
                        _ => Using::Other,
                    },
                    _ => Using::Other,
                };
                using.push((value, start, end));
            }
        }
        return Some(Command::Execute { name, using });
    }
    let dealloc = keyword(t.first(), "deallocate") || keyword(t.first(), "drop");
    if dealloc && keyword(t.get(1), "prepare") && t.len() == 3 {
        return Some(Command::Deallocate {
            name: word(t.get(2))?.to_ascii_lowercase(),
        });
    }
    None
}

/// Quotes `s` as a MySQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sql: &str) -> Option<Command> {
        let lines: Vec<usize> = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let at = |l: sqlparser::tokenizer::Location| -> Option<usize> {
            let start = *lines.get(usize::try_from(l.line).ok()?.checked_sub(1)?)?;
            let col = usize::try_from(l.column).ok()?.checked_sub(1)?;
            sql[start..]
                .char_indices()
                .nth(col)
                .map(|(i, _)| start + i)
                .or(Some(sql.len()))
        };
        parse(sql, |s| Some((at(s.start)?, at(s.end)?)))
    }

    #[test]
    fn commands_are_recognized() {
        assert_eq!(
            p("PREPARE ins FROM 'INSERT INTO t (a) VALUES (?)'"),
            Some(Command::Prepare {
                name: "ins".into(),
                text: Some("INSERT INTO t (a) VALUES (?)".into())
            })
        );
        assert_eq!(
            p("prepare Ins from @sql"),
            Some(Command::Prepare {
                name: "ins".into(),
                text: None
            })
        );
        let Some(Command::Execute { name, using }) =
            p("EXECUTE ins USING 'it''s', -5, NULL, @v, x'41'")
        else {
            panic!("execute")
        };
        assert_eq!(name, "ins");
        let values: Vec<Using> = using.iter().map(|(u, _, _)| u.clone()).collect();
        assert_eq!(
            values,
            vec![
                Using::Literal(Lit::Bytes(b"it's".to_vec())),
                Using::Literal(Lit::Bytes(b"-5".to_vec())),
                Using::Literal(Lit::Null),
                Using::Other,
                Using::Literal(Lit::Bytes(b"A".to_vec())),
            ]
        );
        let sql = "EXECUTE ins USING 'it''s', -5, NULL, @v, x'41'";
        assert_eq!(&sql[using[0].1..using[0].2], "'it''s'");
        assert_eq!(&sql[using[3].1..using[3].2], "@v");
        assert_eq!(
            p("EXECUTE ins"),
            Some(Command::Execute {
                name: "ins".into(),
                using: vec![]
            })
        );
        assert_eq!(
            p("DEALLOCATE PREPARE ins"),
            Some(Command::Deallocate { name: "ins".into() })
        );
        assert_eq!(
            p("DROP PREPARE ins;"),
            Some(Command::Deallocate { name: "ins".into() })
        );
        assert_eq!(p("SELECT 1"), None);
        assert_eq!(p("PREPARE a FROM 'x' extra"), None);
    }

    #[test]
    fn quoting_round_trips_through_the_tokenizer() {
        for s in ["plain", "it's", "back\\slash", "multi\nline"] {
            let t = tokens(&quote(s)).expect("tokens");
            assert_eq!(t[0].token, Token::SingleQuotedString(s.to_owned()));
        }
    }
}
