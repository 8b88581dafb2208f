//! sql::view: lexed text cut into statements, and each statement as the parser sees it.
//!
//! The server splits a multi-statement COM_QUERY at top-level `;` tokens; compound
//! statements (`BEGIN NOT ATOMIC … END`, `IF … END IF`, routine bodies) hold `;` inside and
//! are one statement to the end of the text. sqlparser then reads a *view* of one statement
//! built from its tokens: every literal becomes a placeholder string (its value always comes
//! from the token), quoted identifiers are backtick-quoted whatever the sql_mode, words after
//! `name.` are quoted (no keywords there), comments are gone, and MariaDB-only modifiers that
//! do not change what data is touched (`SQL_NO_CACHE`, `LOCK IN SHARE MODE`, …) are left
//! out. A map takes every byte of the view back to the token it came from.

use std::borrow::Cow;

use super::lex::{Kind, Lexed, Mode, Token, binary_value, string_value};

/// One statement: a range of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub first: usize,
    /// One past the last token (the `;` that ends it is not included).
    pub last: usize,
    /// A compound statement or a stored-program definition: holds `;` and runs to the end.
    pub compound: bool,
}

/// Words that begin a compound statement at the top level.
const COMPOUND_STARTS: &[&str] = &["if", "case", "while", "loop", "repeat", "for"];

/// Splits the tokens into statements. Err: a `;` inside an executable comment, which the
/// server rejects (with multi-statements it aborts the whole packet).
pub fn statements(src: &[u8], lexed: &Lexed) -> Result<Vec<Unit>, usize> {
    let t = &lexed.tokens;
    let mut out = Vec::new();
    let mut first = 0;
    while first < t.len() {
        if is_compound(src, &t[first..]) {
            out.push(Unit {
                first,
                last: t.len(),
                compound: true,
            });
            return Ok(out);
        }
        let mut i = first;
        while i < t.len() && t[i].kind != Kind::Semicolon {
            i += 1;
        }
        if i < t.len() && t[i].in_exec {
            return Err(t[i].start);
        }
        out.push(Unit {
            first,
            last: i,
            compound: false,
        });
        first = i + 1;
    }
    Ok(out)
}

fn is_compound(src: &[u8], t: &[Token]) -> bool {
    let word = |i: usize, w: &str| t.get(i).is_some_and(|t| t.is_word(src, w));
    if word(0, "begin") && word(1, "not") && word(2, "atomic") {
        return true;
    }
    if COMPOUND_STARTS.iter().any(|w| word(0, w)) {
        return true;
    }
    // CREATE [OR REPLACE] [DEFINER = user] [SQL SECURITY …] [AGGREGATE]
    // PROCEDURE|FUNCTION|TRIGGER|EVENT|PACKAGE: read by grammar position, so a column named
    // `event` in a CREATE TABLE is not a program.
    if !word(0, "create") {
        return false;
    }
    let mut i = 1;
    if word(i, "or") && word(i + 1, "replace") {
        i += 2;
    }
    if word(i, "definer") {
        // `= user`: a name, a quoted name and `@host`, or CURRENT_USER[()]/CURRENT_ROLE.
        i += 1;
        if t.get(i).is_some_and(|tok| tok.is_op(src, "=")) {
            i += 1;
        }
        let mut steps = 0;
        while steps < 8
            && t.get(i).is_some_and(|tok| {
                !PROGRAMS.iter().any(|w| tok.is_word(src, w))
                    && !tok.is_word(src, "sql")
                    && !tok.is_word(src, "aggregate")
            })
        {
            i += 1;
            steps += 1;
        }
    }
    if word(i, "sql") && word(i + 1, "security") {
        i += 3;
    }
    if word(i, "aggregate") {
        i += 1;
    }
    PROGRAMS.iter().any(|w| word(i, w))
}

/// The stored programs a CREATE can define (their bodies may hold `;`).
const PROGRAMS: &[&str] = &["procedure", "function", "trigger", "event", "package"];

/// Select, insert, update and delete modifiers sqlparser does not read; none changes which
/// rows or columns a statement touches.
const DROPPED_MODIFIERS: &[&str] = &[
    "sql_no_cache",
    "sql_cache",
    "sql_calc_found_rows",
    "sql_small_result",
    "sql_big_result",
    "sql_buffer_result",
    "high_priority",
    "low_priority",
    "delayed",
    "quick",
];

/// A piece of the view and the tokens it stands for.
#[derive(Debug, Clone, Copy)]
struct Piece {
    view_start: usize,
    first: usize,
    last: usize,
    /// A literal (string run with its introducer, hex, bit, number, NULL).
    literal: bool,
}

/// One statement as sqlparser reads it, with the way back to the tokens.
#[derive(Debug)]
pub struct View<'s> {
    pub text: String,
    pieces: Vec<Piece>,
    pub src: &'s [u8],
    pub tokens: &'s [Token],
    pub mode: Mode<'s>,
    /// The analysis looked at a literal or a number's value: its outcome may depend on
    /// literals, so it is not reused for another statement of the same form.
    pub read_literals: std::cell::Cell<bool>,
    /// A literal's value decided more than the value written where the literal was (an
    /// ORDER BY position, a value kept as stored): the outcome is not a template for other
    /// literals (guard's plan cache).
    pub decided: std::cell::Cell<bool>,
}

/// A literal as written: one token, or adjacent strings (`'a' 'b'`) with an introducer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub first: usize,
    pub last: usize,
}

/// Why a statement has no view, or a literal no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("an identifier is not valid in the client's character set")]
    Identifier,
    #[error("a literal cannot be read")]
    Literal,
}

/// A literal's bytes and the character set they are in (None: binary), or None for NULL.
pub type LiteralValue<'c> = Option<(Vec<u8>, Option<&'c super::charset::Charset>)>;

impl<'s> View<'s> {
    /// Builds the view of `unit`.
    pub fn of(
        src: &'s [u8],
        lexed: &'s Lexed,
        unit: Unit,
        mode: Mode<'s>,
    ) -> Result<Self, ViewError> {
        let tokens = &lexed.tokens[..];
        let mut text = String::with_capacity((lexed.end.min(src.len())) + 16);
        let mut pieces = Vec::with_capacity(unit.last - unit.first);
        let mut vars = 0usize;
        let mut i = unit.first;
        let at_start = |i: usize| i == unit.first;
        while i < unit.last {
            let t = tokens[i];
            let start = i;
            // Modifiers and locking clauses that the parser does not need.
            if t.kind == Kind::Word && !t.after_dot {
                let low = t.text(src).to_ascii_lowercase();
                if DROPPED_MODIFIERS.contains(&std::str::from_utf8(&low).unwrap_or(""))
                    && !at_start(i)
                {
                    i += 1;
                    continue;
                }
                // `UPDATE [LOW_PRIORITY] IGNORE t`: the parser would read IGNORE as the table
                // and `t` as its alias (a write myveil would not see). The server only turns
                // errors into warnings, so the analysis is the same without it.
                if low == b"ignore"
                    && word_at(src, tokens, unit.first, unit.last, "update")
                    && (unit.first + 1..i)
                        .all(|k| word_at(src, tokens, k, unit.last, "low_priority"))
                {
                    i += 1;
                    continue;
                }
                if low == b"lock"
                    && word_at(src, tokens, i + 1, unit.last, "in")
                    && word_at(src, tokens, i + 2, unit.last, "share")
                    && word_at(src, tokens, i + 3, unit.last, "mode")
                {
                    i += 4;
                    continue;
                }
                if low == b"distinctrow" {
                    push_piece(
                        &mut text,
                        &mut pieces,
                        t.gap_before,
                        "DISTINCT",
                        (i, i),
                        false,
                    );
                    i += 1;
                    continue;
                }
            }
            let rendered: Cow<'_, str> = match t.kind {
                Kind::Str | Kind::NStr => {
                    // Adjacent strings are one literal; so is an introducer before them.
                    let mut j = i;
                    while j + 1 < unit.last && tokens[j + 1].kind == Kind::Str {
                        j += 1;
                    }
                    i = j;
                    "'s'".into()
                }
                Kind::Hex | Kind::Bit => "'s'".into(),
                Kind::Null => "NULL".into(),
                Kind::Word
                    if is_introducer(t.text(src))
                        && tokens
                            .get(i + 1)
                            .filter(|_| i + 1 < unit.last)
                            .is_some_and(|n| {
                                matches!(n.kind, Kind::Str | Kind::Hex | Kind::Bit)
                            }) =>
                {
                    let mut j = i + 1;
                    if tokens[j].kind == Kind::Str {
                        while j + 1 < unit.last && tokens[j + 1].kind == Kind::Str {
                            j += 1;
                        }
                    }
                    i = j;
                    "'s'".into()
                }
                Kind::Word => {
                    let raw = t.text(src);
                    let plain = raw.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
                        && !raw[0].is_ascii_digit();
                    if plain && !t.after_dot {
                        std::str::from_utf8(raw).unwrap_or_default().into()
                    } else {
                        backtick(&mode.charset.to_utf8(raw).ok_or(ViewError::Identifier)?).into()
                    }
                }
                Kind::Quoted => {
                    let name = t.name(src, &mode);
                    backtick(&mode.charset.to_utf8(&name).ok_or(ViewError::Identifier)?).into()
                }
                Kind::UserVar => {
                    vars += 1;
                    format!("@myveil_v{vars}").into()
                }
                Kind::SysVar => {
                    let name = t.name(src, &mode);
                    let ok = name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
                    if !ok || name.is_empty() {
                        return Err(ViewError::Identifier);
                    }
                    format!("@@{}", String::from_utf8_lossy(&name)).into()
                }
                Kind::Param => "?".into(),
                Kind::Semicolon => ";".into(),
                Kind::Dot => ".".into(),
                Kind::Number | Kind::Op => String::from_utf8_lossy(t.text(src)).into_owned().into(),
            };
            let literal = t.is_literal() || (t.kind == Kind::Word && i > start);
            push_piece(
                &mut text,
                &mut pieces,
                t.gap_before,
                &rendered,
                (start, i),
                literal,
            );
            i += 1;
        }
        Ok(View {
            text,
            pieces,
            src,
            tokens,
            mode,
            read_literals: std::cell::Cell::new(false),
            decided: std::cell::Cell::new(false),
        })
    }

    /// The tokens (first, last inclusive) the view byte `at` came from.
    fn piece_at(&self, at: usize) -> Option<&Piece> {
        let k = self.pieces.partition_point(|p| p.view_start <= at);
        self.pieces.get(k.checked_sub(1)?)
    }

    /// The original byte range of the view range `[start, end)`.
    pub fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let a = self.piece_at(start)?;
        let b = self.piece_at(end.checked_sub(1)?.max(start))?;
        Some((self.tokens[a.first].start, self.tokens[b.last].end))
    }

    /// The tokens of the view range `[start, end)`: first and last (inclusive).
    pub fn token_range(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let a = self.piece_at(start)?;
        let b = self.piece_at(end.checked_sub(1)?.max(start))?;
        Some((a.first, b.last))
    }

    /// The literal that the view range starting at `start` stands for.
    pub fn literal_at(&self, start: usize) -> Option<Literal> {
        self.read_literals.set(true);
        let p = self.piece_at(start)?;
        (p.literal && p.view_start == start).then_some(Literal {
            first: p.first,
            last: p.last,
        })
    }

    /// The value of a literal: its bytes as the server reads them, and the character set
    /// they are in (None: binary, from a hex or bit literal or `_binary`). A NULL literal
    /// gives Ok(None).
    pub fn value(&self, lit: &Literal) -> Result<LiteralValue<'s>, ViewError> {
        literal_value(self.src, self.tokens, lit, &self.mode)
    }
}

/// The value of the literal of tokens `lit` in `src` (see `View::value`).
pub fn literal_value<'c>(
    src: &[u8],
    tokens: &[Token],
    lit: &Literal,
    mode: &Mode<'c>,
) -> Result<LiteralValue<'c>, ViewError> {
    let toks = tokens.get(lit.first..=lit.last).ok_or(ViewError::Literal)?;
    let mut charset: Option<&'c super::charset::Charset> = Some(mode.charset);
    let mut strings = toks;
    if let Some(first) = toks.first()
        && first.kind == Kind::Word
    {
        let name = String::from_utf8_lossy(&first.text(src)[1..]).to_ascii_lowercase();
        charset = match super::charset::Charset::named(&name) {
            Some(cs) if cs.name == "binary" => None,
            Some(cs) => Some(cs),
            None => return Err(ViewError::Literal),
        };
        strings = &toks[1..];
    }
    let mut out = Vec::new();
    for t in strings {
        match t.kind {
            Kind::Str | Kind::NStr => {
                let v = string_value(t.text(src), mode).ok_or(ViewError::Literal)?;
                out.extend_from_slice(&v);
                if t.kind == Kind::NStr {
                    charset = super::charset::Charset::named("utf8mb3");
                }
            }
            Kind::Hex | Kind::Bit => {
                out.extend_from_slice(&binary_value(t.text(src)).ok_or(ViewError::Literal)?);
                if strings.len() == toks.len() {
                    charset = None;
                }
            }
            Kind::Number => out.extend_from_slice(t.text(src)),
            Kind::Null => return Ok(None),
            _ => return Err(ViewError::Literal),
        }
    }
    Ok(Some((out, charset)))
}

fn word_at(src: &[u8], tokens: &[Token], i: usize, last: usize, w: &str) -> bool {
    i < last && tokens[i].is_word(src, w)
}

fn push_piece(
    text: &mut String,
    pieces: &mut Vec<Piece>,
    gap: bool,
    rendered: &str,
    (first, last): (usize, usize),
    literal: bool,
) {
    if gap && !text.is_empty() {
        text.push(' ');
    }
    pieces.push(Piece {
        view_start: text.len(),
        first,
        last,
        literal,
    });
    text.push_str(rendered);
}

fn backtick(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// A charset introducer word: `_latin1`, `_binary`, `_utf8mb4`, …
pub fn is_introducer(word: &[u8]) -> bool {
    word.len() > 1
        && word[0] == b'_'
        && super::charset::Charset::named(&String::from_utf8_lossy(&word[1..])).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::charset::Charset;
    use crate::sql::lex::lex;

    fn mode() -> Mode<'static> {
        Mode {
            charset: Charset::named("utf8mb4").expect("cs"),
            ansi_quotes: false,
            no_backslash_escapes: false,
            mssql: false,
            server_version: 101_119,
            prepare: false,
        }
    }

    fn views(src: &[u8], m: Mode<'static>) -> Vec<String> {
        let lexed = lex(src, &m).expect("lex");
        statements(src, &lexed)
            .expect("split")
            .into_iter()
            .map(|u| View::of(src, &lexed, u, m).expect("view").text)
            .collect()
    }

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let m = mode();
        assert_eq!(
            views(b"SELECT 'a;b'; SELECT 2 /* ; */; SELECT 3 # ;\n", m),
            ["SELECT 's'", "SELECT 2", "SELECT 3"]
        );
        let v = views(b"SELECT 1; BEGIN NOT ATOMIC SELECT 1; SELECT 2; END", m);
        assert_eq!(v.len(), 2);
        assert!(v[1].starts_with("BEGIN NOT ATOMIC"));
        let lexed = lex(b"SELECT 1 /*! ; SELECT 2 */", &m).expect("lex");
        assert!(statements(b"SELECT 1 /*! ; SELECT 2 */", &lexed).is_err());
    }

    #[test]
    fn the_view_is_what_the_parser_needs() {
        let m = mode();
        assert_eq!(
            views(
                b"SELECT /*!40001 SQL_NO_CACHE */ * FROM `users` LOCK IN SHARE MODE",
                m
            ),
            ["SELECT * FROM `users`"]
        );
        assert_eq!(
            views(
                b"INSERT INTO t (a) VALUES ('x' 'y', _latin1'z', X'41', 0x41, N'n', \\N)",
                m
            ),
            ["INSERT INTO t (a) VALUES ('s', 's', 's', 's', 's', NULL)"]
        );
        let ansi = Mode {
            ansi_quotes: true,
            ..m
        };
        assert_eq!(
            views(br#"UPDATE "users" SET "ssn"='x' WHERE t.select = @a"#, ansi),
            ["UPDATE `users` SET `ssn`='s' WHERE t.`select` = @myveil_v1"]
        );
    }

    #[test]
    fn literal_values_come_from_the_tokens() {
        let m = mode();
        let src =
            b"INSERT INTO t VALUES ('a' \"b\" 'c', _latin1'\xe9', X'4142', 0x43, N'd', \\N, 7)";
        let lexed = lex(src, &m).expect("lex");
        let unit = statements(src, &lexed).expect("split")[0];
        let view = View::of(src, &lexed, unit, m).expect("view");
        let mut values = Vec::new();
        let mut at = 0;
        while let Some(p) = view.text[at..].find("'s'").map(|p| p + at) {
            let lit = view.literal_at(p).expect("literal");
            let v = view.value(&lit).expect("value");
            values.push(v.map(|(b, cs)| (b, cs.map(|c| c.name))));
            at = p + 3;
        }
        assert_eq!(
            values,
            vec![
                Some((b"abc".to_vec(), Some("utf8mb4"))),
                Some((b"\xe9".to_vec(), Some("latin1"))),
                Some((b"AB".to_vec(), None)),
                Some((b"C".to_vec(), None)),
                Some((b"d".to_vec(), Some("utf8mb3"))),
            ]
        );
        let null_at = view.text.find("NULL").expect("null");
        let lit = view.literal_at(null_at).expect("literal");
        assert_eq!(view.value(&lit), Ok(None));
        // Every byte of the view maps back into the statement.
        let (s, e) = view.original(0, view.text.len()).expect("range");
        assert_eq!((s, e), (0, src.len()));
    }
}
