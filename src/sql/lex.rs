//! sql::lex: the one lexer. It reads statement bytes the way MariaDB's lexer does — under
//! the session's sql_mode (ANSI_QUOTES, NO_BACKSLASH_ESCAPES, MSSQL brackets) and client
//! character set (whitespace and identifier bytes, multi-byte characters whose trailing
//! byte may be 0x5C), with executable comments (`/*!`, `/*!NNNNN`, `/*M!`) read as code when
//! their version condition holds — and every later step (reachability, statement kinds,
//! the parser's view, literal values, fingerprints) works on its tokens.
//!
//! Security: anything the server would read differently from the way these tokens say is a
//! way past the guard, so the rules follow the server exactly (docs/adr/0006), and whatever
//! the server would reject (an unterminated literal, a stray NUL) is a `LexError`, which the
//! guard refuses while columns are protected.

use super::charset::Charset;

/// How to read the text: the session's state as the server reports it.
#[derive(Debug, Clone, Copy)]
pub struct Mode<'c> {
    pub charset: &'c Charset,
    /// `"…"` is an identifier.
    pub ansi_quotes: bool,
    /// `\` is an ordinary byte in strings.
    pub no_backslash_escapes: bool,
    /// `[…]` is an identifier (sql_mode MSSQL).
    pub mssql: bool,
    /// The server's version as MariaDB compares it with `/*!NNNNN`, e.g. 101119.
    pub server_version: u32,
    /// `?` is a parameter marker (COM_STMT_PREPARE, PREPARE texts).
    pub prepare: bool,
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// A quoted identifier: `` `x` ``, `"x"` under ANSI_QUOTES, `[x]` under MSSQL.
    Quoted,
    /// A string literal `'…'` (or `"…"` without ANSI_QUOTES).
    Str,
    /// A national string `N'…'`.
    NStr,
    /// `X'…'` or `0x…`.
    Hex,
    /// `B'…'` or `0b…`.
    Bit,
    Number,
    /// `@name`, `@'name'`, `` @`name` ``: a user variable.
    UserVar,
    /// `@@name` (a following `.part` is a Dot and a Word).
    SysVar,
    /// `?` in prepare mode.
    Param,
    /// `\N`.
    Null,
    Semicolon,
    /// `.` between the parts of a name.
    Dot,
    /// Any other operator or punctuation (1–3 bytes).
    Op,
}

/// One token: its kind and its byte range in the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Whitespace or a comment comes right before it.
    pub gap_before: bool,
    /// It is inside an executable comment.
    pub in_exec: bool,
    /// Which executable comment it is in (0: none); a rewrite may not cross their edges.
    pub exec_group: u32,
    /// A word read right after a `name.` separator (no keyword there; `t.1e5` is a name).
    pub after_dot: bool,
}

/// Why the text cannot be read; the server rejects all of these with a syntax error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated {what} at byte {at}")]
    Unterminated { what: &'static str, at: usize },
    #[error("NUL byte at {at}")]
    Nul { at: usize },
    #[error("malformed {what} at byte {at}")]
    Malformed { what: &'static str, at: usize },
    #[error("more than {limit} tokens")]
    TooManyTokens { limit: usize },
}

/// The lexed statement text.
#[derive(Debug, Clone, Default)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    /// The text ends here for the server (trailing whitespace and `;` are trimmed first).
    pub end: usize,
    /// An executable comment was read as code.
    pub executable_comments: bool,
}

struct Lexer<'s, 'c> {
    src: &'s [u8],
    end: usize,
    mode: Mode<'c>,
    at: usize,
    tokens: Vec<Token>,
    gap: bool,
    in_exec: bool,
    executable: bool,
    group: u32,
    max_tokens: usize,
}

/// Reads `src` into tokens, or says why the server would reject it.
pub fn lex(src: &[u8], mode: &Mode<'_>) -> Result<Lexed, LexError> {
    lex_bounded(src, mode, usize::MAX)
}

/// `lex`, giving up past `max_tokens` tokens: tokens, not bytes, are what lexing costs in
/// memory (a 16 MiB string literal is one token; `1,1,1,…` is one per two bytes).
pub fn lex_bounded(src: &[u8], mode: &Mode<'_>, max_tokens: usize) -> Result<Lexed, LexError> {
    let cs = mode.charset;
    let mut start = 0;
    while start < src.len() && cs.is_space(src[start]) {
        start += 1;
    }
    let mut end = src.len();
    while end > start && (src[end - 1] == b';' || cs.is_space(src[end - 1])) {
        end -= 1;
    }
    let mut lx = Lexer {
        src,
        end,
        mode: *mode,
        at: start,
        // About one token in four bytes of usual SQL: rarely grown.
        tokens: Vec::with_capacity((src.len() / 4).min(1 << 16) + 4),
        gap: false,
        in_exec: false,
        executable: false,
        group: 0,
        max_tokens,
    };
    lx.run()?;
    Ok(Lexed {
        tokens: lx.tokens,
        end,
        executable_comments: lx.executable,
    })
}

impl Lexer<'_, '_> {
    fn peek(&self, off: usize) -> Option<u8> {
        let i = self.at + off;
        (i < self.end).then(|| self.src[i])
    }

    fn cs(&self) -> &Charset {
        self.mode.charset
    }

    /// Length of the identifier character at `i` (0: none).
    fn ident_char(&self, i: usize) -> usize {
        let Some(&b) = self.src[..self.end].get(i) else {
            return 0;
        };
        if b < 0x80 || !self.cs().is_multibyte() {
            return usize::from(self.cs().is_ident(b));
        }
        self.cs().mb_len(&self.src[i..self.end]).unwrap_or(0)
    }

    fn push(&mut self, kind: Kind, start: usize, after_dot: bool) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.at,
            gap_before: self.gap,
            in_exec: self.in_exec,
            exec_group: if self.in_exec { self.group } else { 0 },
            after_dot,
        });
        self.gap = false;
    }

    fn run(&mut self) -> Result<(), LexError> {
        while self.at < self.end {
            if self.tokens.len() > self.max_tokens {
                return Err(LexError::TooManyTokens {
                    limit: self.max_tokens,
                });
            }
            let b = self.src[self.at];
            if self.cs().is_space(b) {
                self.at += 1;
                self.gap = true;
                continue;
            }
            let start = self.at;
            match b {
                0 => {
                    if self.at + 1 == self.end {
                        self.at += 1;
                        continue;
                    }
                    return Err(LexError::Nul { at: self.at });
                }
                b'#' => self.line_comment(),
                b'-' if self.peek(1) == Some(b'-')
                    && self.peek(2).is_none_or(|c| self.cs().dash_comment(c)) =>
                {
                    self.line_comment();
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
                b'*' if self.in_exec && self.peek(1) == Some(b'/') => {
                    // The end of an executable comment (at a token boundary only).
                    self.at += 2;
                    self.in_exec = false;
                    self.gap = true;
                }
                b'\'' => {
                    self.quoted(b'\'', true)?;
                    self.push(Kind::Str, start, false);
                }
                b'"' if self.mode.ansi_quotes => {
                    self.quoted(b'"', false)?;
                    self.push(Kind::Quoted, start, false);
                }
                b'"' => {
                    self.quoted(b'"', true)?;
                    self.push(Kind::Str, start, false);
                }
                b'`' => {
                    self.quoted(b'`', false)?;
                    self.push(Kind::Quoted, start, false);
                }
                b'[' if self.mode.mssql => {
                    self.quoted(b']', false)?;
                    self.push(Kind::Quoted, start, false);
                }
                b'@' => self.variable(start)?,
                b'?' if self.mode.prepare && self.ident_char(self.at + 1) == 0 => {
                    self.at += 1;
                    self.push(Kind::Param, start, false);
                }
                b'\\' if self.peek(1) == Some(b'N') => {
                    self.at += 2;
                    self.push(Kind::Null, start, false);
                }
                b';' => {
                    self.at += 1;
                    self.push(Kind::Semicolon, start, false);
                }
                b'.' => self.dot(start)?,
                b'0'..=b'9' => self.number(start)?,
                b'x' | b'X' | b'b' | b'B' if self.peek(1) == Some(b'\'') => {
                    self.bit_or_hex(start, matches!(b, b'x' | b'X'))?;
                }
                b'n' | b'N' if self.peek(1) == Some(b'\'') => {
                    self.at += 1;
                    self.quoted(b'\'', true)?;
                    self.push(Kind::NStr, start, false);
                }
                _ if self.ident_char(self.at) > 0 => {
                    self.word();
                    self.push(Kind::Word, start, false);
                    self.separator()?;
                }
                _ => self.operator(start),
            }
        }
        if self.in_exec {
            return Err(LexError::Unterminated {
                what: "executable comment",
                at: self.end,
            });
        }
        Ok(())
    }

    /// `#` or `-- ` to the end of the line (0x0A) or a NUL.
    fn line_comment(&mut self) {
        while self.at < self.end && !matches!(self.src[self.at], b'\n' | 0) {
            self.at += 1;
        }
        self.gap = true;
    }

    /// `/* … */`, or an executable comment: `/*!`, `/*!NNNNN[N]`, `/*M!`, `/*M!NNNNN[N]`.
    fn block_comment(&mut self) -> Result<(), LexError> {
        let start = self.at;
        let (marker, mariadb) = match (self.peek(2), self.peek(3)) {
            (Some(b'!'), _) => (3, false),
            (Some(b'M'), Some(b'!')) => (4, true),
            _ => {
                // A plain comment: to the first `*/`, no nesting, quotes mean nothing.
                return self.skip_to_close(start + 2, false);
            }
        };
        let mut at = start + marker;
        let digits = |from: usize| {
            self.src[from..self.end]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let run = digits(at);
        let version = if run >= 5 {
            let n = run.min(6);
            let v: u32 = std::str::from_utf8(&self.src[at..at + n])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX);
            at += n;
            Some(v)
        } else {
            None
        };
        let runs = match version {
            None => true,
            // MariaDB skips plain `/*!` comments for MySQL 5.7–8.0 versions.
            Some(v) => v <= self.mode.server_version && (mariadb || !(50700..=99999).contains(&v)),
        };
        if runs {
            self.at = at;
            if !self.in_exec {
                self.group += 1;
            }
            self.in_exec = true;
            self.executable = true;
            self.gap = true;
            Ok(())
        } else {
            self.skip_to_close(at, true)
        }
    }

    /// Skips bytes to the first `*/`; `nested`: one level of `/* … */` may occur inside (a
    /// version comment that does not run).
    fn skip_to_close(&mut self, from: usize, nested: bool) -> Result<(), LexError> {
        let mut i = from;
        let mut depth = 0;
        while i + 1 < self.end {
            match (self.src[i], self.src[i + 1]) {
                (b'/', b'*') if nested && depth == 0 => {
                    depth = 1;
                    i += 2;
                }
                (b'*', b'/') if depth > 0 => {
                    depth = 0;
                    i += 2;
                }
                (b'*', b'/') => {
                    self.at = i + 2;
                    self.gap = true;
                    return Ok(());
                }
                _ => i += 1,
            }
        }
        Err(LexError::Unterminated {
            what: "comment",
            at: from,
        })
    }

    /// A quoted string (`escapes`: backslash escapes apply unless NO_BACKSLASH_ESCAPES) or
    /// identifier; `close` is the closing quote, doubled inside for itself.
    fn quoted(&mut self, close: u8, escapes: bool) -> Result<(), LexError> {
        let open = self.at;
        let backslash = escapes && !self.mode.no_backslash_escapes;
        let cs = self.mode.charset;
        let mut i = self.at + 1;
        loop {
            if i >= self.end {
                return Err(LexError::Unterminated {
                    what: if escapes { "string" } else { "identifier" },
                    at: open,
                });
            }
            // Plain ASCII up to the next byte that may matter, without a call per byte.
            let b = self.src[i];
            if b < 0x80 && b != close && b != b'\\' && b != 0 {
                i += 1;
                continue;
            }
            if cs.is_multibyte()
                && let Some(n) = cs.mb_len(&self.src[i..self.end])
            {
                i += n;
                continue;
            }
            if b == 0 && !escapes {
                return Err(LexError::Nul { at: i });
            }
            if backslash && b == b'\\' {
                i += 2;
                continue;
            }
            if b == close {
                if i + 1 < self.end && self.src[i + 1] == close {
                    i += 2;
                    continue;
                }
                self.at = i + 1;
                return Ok(());
            }
            i += 1;
        }
    }

    /// `@name`, `@'…'`, `@"…"`, `` @`…` ``, `@@name`, `` @@`name` ``.
    fn variable(&mut self, start: usize) -> Result<(), LexError> {
        if self.peek(1) == Some(b'@') {
            self.at += 2;
            if self.peek(0) == Some(b'`') {
                self.quoted(b'`', false)?;
            } else {
                let from = self.at;
                while self.at < self.end && self.cs().is_sysvar(self.src[self.at]) {
                    self.at += 1;
                }
                if self.at == from {
                    return Err(LexError::Malformed {
                        what: "system variable",
                        at: start,
                    });
                }
            }
            self.push(Kind::SysVar, start, false);
            return self.separator();
        }
        self.at += 1;
        match self.peek(0) {
            Some(b'\'') => self.quoted(b'\'', true)?,
            Some(b'"') => self.quoted(b'"', true)?,
            Some(b'`') => self.quoted(b'`', false)?,
            _ => {
                let from = self.at;
                while self.at < self.end && self.cs().is_uservar(self.src[self.at]) {
                    self.at += 1;
                }
                if self.at == from {
                    return Err(LexError::Malformed {
                        what: "user variable",
                        at: start,
                    });
                }
            }
        }
        self.push(Kind::UserVar, start, false);
        Ok(())
    }

    /// After an unquoted name: `.` right after it, followed by an identifier byte, is a
    /// separator, and the next part is read as a name whatever it looks like.
    fn separator(&mut self) -> Result<(), LexError> {
        while self.peek(0) == Some(b'.') && self.ident_char(self.at + 1) > 0 {
            let dot = self.at;
            self.at += 1;
            self.push(Kind::Dot, dot, false);
            let part = self.at;
            self.word();
            self.push(Kind::Word, part, true);
        }
        Ok(())
    }

    /// Identifier characters from the current position.
    fn word(&mut self) {
        loop {
            let n = self.ident_char(self.at);
            if n == 0 {
                return;
            }
            self.at += n;
        }
    }

    /// `.` at a token start: a real number `.5`, the `..` token, or a separator.
    fn dot(&mut self, start: usize) -> Result<(), LexError> {
        if self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
            self.digits();
            self.exponent(true)?;
            self.push(Kind::Number, start, false);
        } else if self.peek(1) == Some(b'.') {
            self.at += 2;
            self.push(Kind::Op, start, false);
        } else {
            self.at += 1;
            self.push(Kind::Dot, start, false);
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// An exponent after a number: `e`/`E`, optional sign, digits. `required`: after a real
    /// number an `e` without digits is a syntax error; otherwise the caller decides.
    /// Returns whether one was read.
    fn exponent(&mut self, required: bool) -> Result<bool, LexError> {
        if !matches!(self.peek(0), Some(b'e' | b'E')) {
            return Ok(false);
        }
        let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
        if self.peek(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1 + sign;
            self.digits();
            return Ok(true);
        }
        if required {
            return Err(LexError::Malformed {
                what: "number",
                at: self.at,
            });
        }
        Ok(false)
    }

    /// A token starting with a digit: `0x…`/`0b…`, an integer, a real number, or a name that
    /// starts with digits (`1abc`, `1e`, `0x1g`).
    fn number(&mut self, start: usize) -> Result<(), LexError> {
        if self.src[start] == b'0' && matches!(self.peek(1), Some(b'x' | b'b')) {
            let hex = self.peek(1) == Some(b'x');
            let mut i = start + 2;
            while i < self.end
                && (if hex {
                    self.src[i].is_ascii_hexdigit()
                } else {
                    matches!(self.src[i], b'0' | b'1')
                })
            {
                i += 1;
            }
            if i > start + 2 && self.ident_char(i) == 0 {
                self.at = i;
                self.push(if hex { Kind::Hex } else { Kind::Bit }, start, false);
                return Ok(());
            }
            // Not a literal after all: the whole run is a name.
            self.word();
            self.push(Kind::Word, start, false);
            return self.separator();
        }
        self.digits();
        let next = self.at;
        if self.ident_char(next) > 0 {
            if matches!(self.src[next], b'e' | b'E') && self.exponent(false)? {
                self.push(Kind::Number, start, false);
                return Ok(());
            }
            self.at = start;
            self.word();
            self.push(Kind::Word, start, false);
            return self.separator();
        }
        if self.peek(0) == Some(b'.') && self.peek(1) != Some(b'.') {
            self.at += 1;
            self.digits();
            self.exponent(true)?;
        }
        self.push(Kind::Number, start, false);
        Ok(())
    }

    /// `X'…'` (an even number of hex digits) or `B'…'` (binary digits).
    fn bit_or_hex(&mut self, start: usize, hex: bool) -> Result<(), LexError> {
        let mut i = start + 2;
        while i < self.end && self.src[i] != b'\'' {
            let ok = if hex {
                self.src[i].is_ascii_hexdigit()
            } else {
                matches!(self.src[i], b'0' | b'1')
            };
            if !ok {
                return Err(LexError::Malformed {
                    what: if hex { "hex literal" } else { "bit literal" },
                    at: start,
                });
            }
            i += 1;
        }
        if i >= self.end || (hex && (i - start - 2) % 2 == 1) {
            return Err(LexError::Malformed {
                what: if hex { "hex literal" } else { "bit literal" },
                at: start,
            });
        }
        self.at = i + 1;
        self.push(if hex { Kind::Hex } else { Kind::Bit }, start, false);
        Ok(())
    }

    /// Operators: `<=>`, two-byte comparisons and shifts, `&&`, `||`, `:=`; any other byte
    /// is a token of its own.
    fn operator(&mut self, start: usize) {
        let two = [self.src[start], self.peek(1).unwrap_or(0)];
        let len = if &two == b"<=" && self.peek(2) == Some(b'>') {
            3
        } else {
            match &two {
                b">=" | b">>" | b"<=" | b"<>" | b"<<" | b"!=" | b"&&" | b"||" | b":=" => 2,
                _ => 1,
            }
        };
        self.at += len;
        self.push(Kind::Op, start, false);
    }
}

impl Token {
    pub fn text<'s>(&self, src: &'s [u8]) -> &'s [u8] {
        &src[self.start..self.end]
    }

    /// An unquoted word equal to `keyword` (ASCII, any case).
    pub fn is_word(&self, src: &[u8], keyword: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(keyword.as_bytes())
    }

    /// An operator token with exactly these bytes.
    pub fn is_op(&self, src: &[u8], op: &str) -> bool {
        self.kind == Kind::Op && self.text(src) == op.as_bytes()
    }

    pub fn is_literal(&self) -> bool {
        matches!(
            self.kind,
            Kind::Str | Kind::NStr | Kind::Hex | Kind::Bit | Kind::Number | Kind::Null
        )
    }

    /// The name a Word, Quoted or variable token stands for (quotes removed, doubled quotes
    /// undone), in the client's bytes.
    pub fn name<'s>(&self, src: &'s [u8], mode: &Mode<'_>) -> std::borrow::Cow<'s, [u8]> {
        let t = self.text(src);
        match self.kind {
            Kind::Quoted => unquote_name(t, mode),
            Kind::UserVar => {
                let rest = &t[1..];
                match rest.first() {
                    Some(b'\'' | b'"') => {
                        string_value(rest, mode).unwrap_or(std::borrow::Cow::Borrowed(rest))
                    }
                    Some(b'`') => unquote_name(rest, mode),
                    _ => rest.into(),
                }
            }
            Kind::SysVar => {
                let rest = &t[2..];
                if rest.first() == Some(&b'`') {
                    unquote_name(rest, mode)
                } else {
                    rest.into()
                }
            }
            _ => t.into(),
        }
    }
}

/// The name inside a quoted identifier.
fn unquote_name<'s>(t: &'s [u8], mode: &Mode<'_>) -> std::borrow::Cow<'s, [u8]> {
    let close = match t.first() {
        Some(b'[') => b']',
        Some(&q) => q,
        None => return t.into(),
    };
    let inner = &t[1..t.len().saturating_sub(1).max(1)];
    if !inner.contains(&close) {
        return inner.into();
    }
    let cs = mode.charset;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if cs.is_multibyte()
            && let Some(n) = cs.mb_len(&inner[i..])
        {
            out.extend_from_slice(&inner[i..i + n]);
            i += n;
            continue;
        }
        out.push(inner[i]);
        i += if inner[i] == close { 2 } else { 1 };
    }
    out.into()
}

/// The value of a string literal token (`'…'`, `"…"`, or `N'…'` without its `N`), with
/// escapes undone as the server does (None for a token that is not a string).
pub fn string_value<'s>(t: &'s [u8], mode: &Mode<'_>) -> Option<std::borrow::Cow<'s, [u8]>> {
    let t = match t.first() {
        Some(b'n' | b'N') => &t[1..],
        _ => t,
    };
    let q = *t.first()?;
    if !matches!(q, b'\'' | b'"') || t.len() < 2 {
        return None;
    }
    let inner = &t[1..t.len() - 1];
    let backslash = !mode.no_backslash_escapes;
    if !(inner.contains(&q) || backslash && inner.contains(&b'\\')) {
        return Some(inner.into());
    }
    let cs = mode.charset;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if cs.is_multibyte()
            && let Some(n) = cs.mb_len(&inner[i..])
        {
            out.extend_from_slice(&inner[i..i + n]);
            i += n;
            continue;
        }
        let b = inner[i];
        if backslash && b == b'\\' && i + 1 < inner.len() {
            let e = inner[i + 1];
            match e {
                b'0' => out.push(0),
                b'b' => out.push(0x08),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'Z' => out.push(0x1A),
                // LIKE wildcards keep their backslash.
                b'%' | b'_' => out.extend_from_slice(&[b'\\', e]),
                other => out.push(other),
            }
            i += 2;
            continue;
        }
        if b == q && inner.get(i + 1) == Some(&q) {
            out.push(q);
            i += 2;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Some(out.into())
}

/// The bytes of a hex or bit literal token (`X'4142'`, `0x4142`, `B'0100'`, `0b01`).
pub fn binary_value(t: &[u8]) -> Option<Vec<u8>> {
    let (digits, hex) = match t {
        [b'x' | b'X', b'\'', rest @ .., b'\''] => (rest, true),
        [b'0', b'x', rest @ ..] => (rest, true),
        [b'b' | b'B', b'\'', rest @ .., b'\''] => (rest, false),
        [b'0', b'b', rest @ ..] => (rest, false),
        _ => return None,
    };
    if hex {
        // `0x4` is 0x04: an odd count has an implied leading zero.
        let mut padded = Vec::with_capacity(digits.len() + 1);
        if digits.len() % 2 == 1 {
            padded.push(b'0');
        }
        padded.extend_from_slice(digits);
        return hex::decode(padded).ok();
    }
    let mut bits: u128 = 0;
    let mut out = Vec::new();
    let n = digits.len();
    if n > 0 && n <= 128 {
        for d in digits {
            bits = bits << 1 | u128::from(*d == b'1');
        }
        let bytes = n.div_ceil(8);
        out.extend_from_slice(&bits.to_be_bytes()[16 - bytes..]);
        return Some(out);
    }
    if n == 0 {
        return Some(out);
    }
    // Longer bit strings: byte by byte from the right.
    let mut acc = Vec::new();
    for chunk in digits.rchunks(8) {
        let mut v = 0u8;
        for d in chunk {
            v = v << 1 | u8::from(*d == b'1');
        }
        acc.push(v);
    }
    acc.reverse();
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(cs: &str) -> Mode<'static> {
        Mode {
            charset: Charset::named(cs).expect("charset"),
            ansi_quotes: false,
            no_backslash_escapes: false,
            mssql: false,
            server_version: 101_119,
            prepare: false,
        }
    }

    fn kinds(src: &[u8], m: &Mode<'_>) -> Vec<(Kind, String)> {
        lex(src, m)
            .expect("lexes")
            .tokens
            .iter()
            .map(|t| (t.kind, String::from_utf8_lossy(t.text(src)).into_owned()))
            .collect()
    }

    fn words(src: &[u8], m: &Mode<'_>) -> Vec<String> {
        kinds(src, m).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn quoting_follows_sql_mode() {
        let m = mode("utf8mb4");
        assert_eq!(
            kinds(br#"UPDATE "users" SET "ssn"='x'"#, &m)[1].0,
            Kind::Str,
            "without ANSI_QUOTES \"…\" is a string"
        );
        let ansi = Mode {
            ansi_quotes: true,
            ..m
        };
        let k = kinds(br#"UPDATE "users" SET "ssn"='x'"#, &ansi);
        assert_eq!(k[1].0, Kind::Quoted);
        assert_eq!(k[3].0, Kind::Quoted);
        // The backslash hides the quote, or not.
        let text = br"SELECT '\'; UPDATE users SET ssn='v'; -- '";
        let t = lex(text, &m).expect("lex").tokens;
        assert!(
            !t.iter().any(|t| t.is_word(text, "UPDATE")),
            "inside a string: {t:?}"
        );
        assert!(!t.iter().any(|t| t.kind == Kind::Semicolon));
        let nbe = Mode {
            no_backslash_escapes: true,
            ..m
        };
        let t = lex(text, &nbe).expect("lex").tokens;
        assert!(t.iter().any(|t| t.is_word(text, "UPDATE")), "{t:?}");
        assert!(t.iter().any(|t| t.kind == Kind::Semicolon));
    }

    #[test]
    fn charsets_decide_spaces_and_trailing_bytes() {
        let latin1 = mode("latin1");
        assert_eq!(
            words(b"UPDATE\xa0users\xa0SET ssn='x'", &latin1),
            ["UPDATE", "users", "SET", "ssn", "=", "'x'"]
        );
        let utf8 = mode("utf8mb4");
        assert_eq!(
            words(b"SELECT\xc2\xa01", &utf8).len(),
            1,
            "NBSP is a letter in utf8"
        );
        // gbk: 0xBF 0x5C is one character, so the quote after it closes the string.
        let gbk = mode("gbk");
        let t = lex(b"SELECT '\xbf\\', ssn FROM users", &gbk)
            .expect("lex")
            .tokens;
        assert_eq!(t[1].kind, Kind::Str);
        assert!(
            t.iter()
                .any(|t| t.is_word(b"SELECT '\xbf\\', ssn FROM users", "ssn"))
        );
        // In latin1 the backslash escapes the quote: the string never ends.
        assert!(lex(b"SELECT '\xbf\\', ssn FROM users", &latin1).is_err());
        // A backslash before a lead byte takes that byte only.
        let sjis = mode("sjis");
        let src = b"SELECT '\\\x81\\''";
        let t = lex(src, &sjis).expect("lex").tokens;
        assert_eq!(t.len(), 2);
        assert_eq!(
            string_value(t[1].text(src), &sjis).as_deref(),
            Some(&b"\x81'"[..])
        );
    }

    #[test]
    fn comments_and_executable_comments() {
        let m = mode("utf8mb4");
        assert_eq!(words(b"SELECT 1 --\x01+1", &m), ["SELECT", "1"]);
        assert_eq!(
            words(b"SELECT 1 --+1", &m),
            ["SELECT", "1", "-", "-", "+", "1"]
        );
        assert_eq!(words(b"SELECT 1 # x\r+1", &m), ["SELECT", "1"]);
        assert_eq!(
            words(b"SELECT 1 --;", &m),
            ["SELECT", "1"],
            "trailing ; trimmed"
        );
        assert_eq!(words(b"SELECT 1 /*! +1 */", &m), ["SELECT", "1", "+", "1"]);
        assert_eq!(words(b"SELECT 1 /*!50700 +1 */", &m), ["SELECT", "1"]);
        assert_eq!(
            words(b"SELECT 1 /*M!50700 +1 */", &m),
            ["SELECT", "1", "+", "1"]
        );
        assert_eq!(words(b"SELECT 1 /*!101120 +1 */", &m), ["SELECT", "1"]);
        assert_eq!(
            words(b"SELECT 1 /*!101119*2 */", &m),
            ["SELECT", "1", "*", "2"]
        );
        assert_eq!(
            words(b"SELECT 1 + /*!123 */", &m),
            ["SELECT", "1", "+", "123"]
        );
        assert_eq!(
            words(b"SELECT CONCAT('a' /*! , '*/' */)", &m),
            ["SELECT", "CONCAT", "(", "'a'", ",", "'*/'", ")"]
        );
        assert_eq!(
            words(b"SELECT 1 /*!99999 /* x */ +1 */", &m),
            ["SELECT", "1"]
        );
        assert!(lex(b"SELECT 1 /*!99999 '*/' */", &m).is_err());
        assert!(lex(b"SELECT 1 /*! +1", &m).is_err());
        assert!(lex(b"SELECT 1 /* abc", &m).is_err());
        let t = lex(b"SELECT /*!40001 SQL_NO_CACHE */ *", &m).expect("lex");
        assert!(t.executable_comments && t.tokens[1].in_exec && !t.tokens[2].in_exec);
    }

    #[test]
    fn literals_numbers_and_names() {
        let m = mode("utf8mb4");
        let k = kinds(
            b"SELECT 0x12g, 0x12, X'41', b'01', 0b2, N'a', 1e5x, 1abc, .5, t.1e5",
            &m,
        );
        let want = [
            (Kind::Word, "SELECT"),
            (Kind::Word, "0x12g"),
            (Kind::Op, ","),
            (Kind::Hex, "0x12"),
            (Kind::Op, ","),
            (Kind::Hex, "X'41'"),
            (Kind::Op, ","),
            (Kind::Bit, "b'01'"),
            (Kind::Op, ","),
            (Kind::Word, "0b2"),
            (Kind::Op, ","),
            (Kind::NStr, "N'a'"),
            (Kind::Op, ","),
            (Kind::Number, "1e5"),
            (Kind::Word, "x"),
            (Kind::Op, ","),
            (Kind::Word, "1abc"),
            (Kind::Op, ","),
            (Kind::Number, ".5"),
            (Kind::Op, ","),
            (Kind::Word, "t"),
            (Kind::Dot, "."),
            (Kind::Word, "1e5"),
        ];
        let got: Vec<(Kind, &str)> = k.iter().map(|(k, t)| (*k, t.as_str())).collect();
        assert_eq!(got, want);
        assert!(lex(b"SELECT X'4'", &m).is_err());
        assert!(lex(b"SELECT 1.5e", &m).is_err());
        assert_eq!(binary_value(b"0x4"), Some(vec![4]));
        assert_eq!(binary_value(b"X'4142'"), Some(b"AB".to_vec()));
        assert_eq!(binary_value(b"b'1000001'"), Some(b"A".to_vec()));
        assert_eq!(binary_value(b"0b100000101000010"), Some(b"AB".to_vec()));
    }

    #[test]
    fn variables_and_operators() {
        let m = mode("utf8mb4");
        let k = kinds(
            b"SELECT @a.b, @'q v', @@session.sql_mode, @a-1, 1<=>2, a:=1, \\N",
            &m,
        );
        let texts: Vec<&str> = k.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "SELECT",
                "@a.b",
                ",",
                "@'q v'",
                ",",
                "@@session",
                ".",
                "sql_mode",
                ",",
                "@a",
                "-",
                "1",
                ",",
                "1",
                "<=>",
                "2",
                ",",
                "a",
                ":=",
                "1",
                ",",
                "\\N"
            ]
        );
        let src = b"SELECT @'q v'";
        let t = lex(src, &m).expect("lex").tokens;
        assert_eq!(&*t[1].name(src, &m), b"q v");
    }

    #[test]
    fn nul_bytes_and_prepare_markers() {
        let m = mode("utf8mb4");
        assert!(lex(b"SELECT 1\x00", &m).is_ok());
        assert!(lex(b"SELECT 1;\x00SELECT 2", &m).is_err());
        assert!(lex(b"SELECT 1 AS `a\x00b`", &m).is_err());
        let p = Mode { prepare: true, ..m };
        let t = lex(b"SELECT ?, '?', ? a", &p).expect("lex").tokens;
        assert_eq!(t.iter().filter(|t| t.kind == Kind::Param).count(), 2);
        let q = lex(b"SELECT ?", &m).expect("lex").tokens;
        assert_eq!(q[1].kind, Kind::Op, "? is no marker outside prepare");
    }

    #[test]
    fn escapes_are_undone_as_the_server_does() {
        let m = mode("utf8mb4");
        let v = string_value(br"'\0\'\b\n\r\t\Z\\\%\_\x'", &m).expect("string");
        assert_eq!(&*v, b"\x00'\x08\n\r\t\x1a\\\\%\\_x");
        assert_eq!(string_value(b"'a''b'", &m).as_deref(), Some(&b"a'b"[..]));
        let nbe = Mode {
            no_backslash_escapes: true,
            ..m
        };
        assert_eq!(string_value(br"'a\n'", &nbe).as_deref(), Some(&br"a\n"[..]));
        let src = b"SELECT `a``b`, [x]";
        let t = lex(src, &m).expect("lex").tokens;
        assert_eq!(&*t[1].name(src, &m), b"a`b");
        let ms = Mode { mssql: true, ..m };
        let t = lex(src, &ms).expect("lex").tokens;
        assert_eq!(t[3].kind, Kind::Quoted);
        assert_eq!(&*t[3].name(src, &ms), b"x");
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let alphabet: &[u8] = b"'\"`\\/*!-#;.@?0123456789xXbBnNeE+ \n\x00\xbf\x5c\xa0[]M";
        for cs in ["utf8mb4", "latin1", "gbk", "sjis", "big5"] {
            let mut m = mode(cs);
            for i in 0..4000 {
                m.ansi_quotes = i % 2 == 0;
                m.no_backslash_escapes = i % 3 == 0;
                m.mssql = i % 5 == 0;
                let len = rng.random_range(0..40);
                let src: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect();
                if let Ok(l) = lex(&src, &m) {
                    for t in &l.tokens {
                        assert!(t.start < t.end && t.end <= l.end, "{src:?}");
                        let _ = t.name(&src, &m);
                        let _ = string_value(t.text(&src), &m);
                    }
                }
            }
        }
    }
}
