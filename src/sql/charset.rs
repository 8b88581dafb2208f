//! sql::charset: how a client character set classifies bytes for MariaDB's lexer —
//! whitespace, identifier bytes, the bytes that make `--` a comment, and which multi-byte
//! sequences are read as one character (so a trailing 0x5C in gbk is not a backslash).
//! The tables (`charset_tables`) were surveyed on a live server, byte by byte.

use super::charset_tables::CHARSETS;

/// One shape of multi-byte character: a lead byte range and the ranges each following byte
/// may take (positions are independent).
#[derive(Debug)]
pub struct Sequence {
    pub lead: (u8, u8),
    pub len: u8,
    pub trail: &'static [(u8, u8)],
    pub trail3: &'static [(u8, u8)],
    pub trail4: &'static [(u8, u8)],
}

/// A client character set as the lexer sees it.
#[derive(Debug)]
pub struct Charset {
    pub name: &'static str,
    pub(super) space: [u8; 32],
    pub(super) ident: [u8; 32],
    pub(super) uservar: [u8; 32],
    pub(super) sysvar: [u8; 32],
    pub(super) dash_comment: [u8; 32],
    pub(super) multibyte: &'static [Sequence],
}

/// Charsets are one per name.
impl PartialEq for Charset {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

fn bit(set: &[u8; 32], b: u8) -> bool {
    set[usize::from(b / 8)] & (1 << (b % 8)) != 0
}

fn within(ranges: &[(u8, u8)], b: u8) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&b))
}

impl Charset {
    /// The charset named as MariaDB reports character_set_client (`utf8` is utf8mb3).
    pub fn named(name: &str) -> Option<&'static Charset> {
        // Asked for on every statement: no allocation, the usual charset without a search,
        // and the name as the server reports it (lower-case) found by a plain comparison.
        static UTF8MB4: std::sync::LazyLock<Option<&'static Charset>> =
            std::sync::LazyLock::new(|| CHARSETS.iter().find(|c| c.name == "utf8mb4"));
        if name == "utf8mb4" {
            return *UTF8MB4;
        }
        if let Some(c) = CHARSETS.iter().find(|c| c.name == name) {
            return Some(c);
        }
        let name = name.trim();
        let name = if name.eq_ignore_ascii_case("utf8") {
            "utf8mb3"
        } else {
            name
        };
        CHARSETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn is_space(&self, b: u8) -> bool {
        bit(&self.space, b)
    }

    /// A byte that is an identifier character on its own.
    pub fn is_ident(&self, b: u8) -> bool {
        bit(&self.ident, b)
    }

    /// A byte that continues an unquoted `@name` (read byte by byte, never as multi-byte).
    pub fn is_uservar(&self, b: u8) -> bool {
        bit(&self.uservar, b)
    }

    /// A byte that continues an unquoted `@@name` (byte by byte).
    pub fn is_sysvar(&self, b: u8) -> bool {
        bit(&self.sysvar, b)
    }

    /// Whether `--` followed by `b` starts a comment.
    pub fn dash_comment(&self, b: u8) -> bool {
        b == 0 || bit(&self.dash_comment, b)
    }

    pub fn is_multibyte(&self) -> bool {
        !self.multibyte.is_empty()
    }

    /// Whether `b` can start a multi-byte character.
    pub fn is_lead(&self, b: u8) -> bool {
        self.multibyte
            .iter()
            .any(|s| (s.lead.0..=s.lead.1).contains(&b))
    }

    /// The length of the valid multi-byte character at the start of `bytes` (None when the
    /// bytes there are not one).
    pub fn mb_len(&self, bytes: &[u8]) -> Option<usize> {
        let first = *bytes.first()?;
        // Read for every byte of every string: ASCII never starts a multi-byte character in
        // any charset of the table (`no_multibyte_character_starts_in_ascii`).
        if first < 0x80 {
            return None;
        }
        self.multibyte.iter().find_map(|s| {
            if !(s.lead.0..=s.lead.1).contains(&first) {
                return None;
            }
            let len = usize::from(s.len);
            let seq = bytes.get(..len)?;
            let ok = (len < 2 || within(s.trail, seq[1]))
                && (len < 3 || within(s.trail3, seq[2]))
                && (len < 4 || within(s.trail4, seq[3]));
            ok.then_some(len)
        })
    }

    /// Whether every valid character of this charset is ASCII-compatible text myveil can turn
    /// into UTF-8 (the charsets whose literals may reach protected columns).
    pub fn converts_to_utf8(&self) -> bool {
        matches!(
            self.name,
            "utf8mb4" | "utf8mb3" | "ascii" | "latin1" | "binary"
        )
    }

    /// Text in this charset as UTF-8 (None when it does not convert).
    pub fn to_utf8<'a>(&self, bytes: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
        match self.name {
            "utf8mb4" | "utf8mb3" | "binary" => std::str::from_utf8(bytes).ok().map(Into::into),
            "ascii" => bytes
                .is_ascii()
                .then(|| std::str::from_utf8(bytes).ok())
                .flatten()
                .map(Into::into),
            "latin1" => Some(if bytes.is_ascii() {
                std::str::from_utf8(bytes).ok()?.into()
            } else {
                bytes.iter().map(|&b| cp1252(b)).collect::<String>().into()
            }),
            // Other charsets keep ASCII as it is (their multibyte characters start above it).
            _ => bytes
                .is_ascii()
                .then(|| std::str::from_utf8(bytes).ok())
                .flatten()
                .map(Into::into),
        }
    }
}

/// UTF-8 text as MariaDB's latin1 (Windows-1252) bytes, the way the server converts a column
/// for `character_set_results = latin1`: a character latin1 lacks becomes `?`. Bytes that
/// are not UTF-8 are kept as they are.
pub fn utf8_to_latin1(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.is_ascii() {
        return bytes.into();
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.into();
    };
    text.chars()
        .map(|c| match u32::from(c) {
            n @ (0..=0x7F | 0xA0..=0xFF) => n as u8,
            _ => (0x80..=0x9Fu8).find(|&b| cp1252(b) == c).unwrap_or(b'?'),
        })
        .collect::<Vec<u8>>()
        .into()
}

/// MariaDB's latin1 is Windows-1252; its five unassigned bytes map to the C1 controls.
fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}',
        '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}',
        '\u{178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_multibyte_character_starts_in_ascii() {
        // `mb_len` answers None for an ASCII byte without looking at the table.
        for cs in CHARSETS {
            for seq in cs.multibyte {
                assert!(seq.lead.0 >= 0x80, "{} has a lead byte in ASCII", cs.name);
            }
        }
    }

    #[test]
    fn utf8_goes_back_to_latin1() {
        assert_eq!(
            &*utf8_to_latin1("José €5 😀".as_bytes()),
            b"Jos\xe9 \x805 ?"
        );
        assert_eq!(&*utf8_to_latin1(b"plain"), b"plain");
        let latin1 = Charset::named("latin1").expect("latin1");
        for b in 0x20..=0xFFu8 {
            let there = latin1.to_utf8(&[b]).expect("converts").into_owned();
            assert_eq!(&*utf8_to_latin1(there.as_bytes()), &[b], "byte {b:#x}");
        }
    }

    #[test]
    fn classes_match_the_survey() {
        let latin1 = Charset::named("latin1").expect("latin1");
        assert!(latin1.is_space(0xA0) && latin1.is_space(b' ') && !latin1.is_space(0x85));
        assert!(
            latin1.dash_comment(0xA0) && latin1.dash_comment(0x7F) && !latin1.dash_comment(b'x')
        );
        assert!(latin1.is_ident(0xE9) && !latin1.is_ident(0xD7));
        let utf8 = Charset::named("utf8").expect("utf8");
        assert_eq!(utf8.name, "utf8mb3");
        assert!(!utf8.is_space(0xA0));
        assert_eq!(utf8.mb_len("é".as_bytes()), Some(2));
        assert_eq!(utf8.mb_len(&[0xC3]), None);
        let gbk = Charset::named("gbk").expect("gbk");
        assert_eq!(
            gbk.mb_len(&[0xBF, 0x5C]),
            Some(2),
            "0x5C is a trailing byte in gbk"
        );
        assert_eq!(gbk.mb_len(&[0xBF, 0x27]), None, "never a quote");
        let mb4 = Charset::named("utf8mb4").expect("mb4");
        assert_eq!(mb4.mb_len("😀".as_bytes()), Some(4));
        assert!(Charset::named("ucs2").is_none());
    }

    #[test]
    fn latin1_is_windows_1252() {
        let latin1 = Charset::named("latin1").expect("latin1");
        assert_eq!(latin1.to_utf8(b"caf\xe9 \x80").as_deref(), Some("café €"));
        let gbk = Charset::named("gbk").expect("gbk");
        assert_eq!(gbk.to_utf8(b"a").as_deref(), Some("a"));
        assert_eq!(gbk.to_utf8(b"\xc4\xe3"), None);
    }
}
