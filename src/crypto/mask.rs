//! crypto::mask: what a role that may not see a protected value sees instead. Every mask
//! keeps the column's type: strings stay strings of at most the declared length, numbers stay
//! numbers, dates stay valid dates. Values are in their text form (as the text protocol
//! carries them); `None` is SQL NULL.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The family of a plaintext type, which decides what a mask may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Decimal,
    Date,
    DateTime,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mask", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Mask {
    /// Every character replaced; numbers become 0, dates 1900-01-01.
    Full,
    /// Keep the first and last characters, replace the rest.
    Partial { first: usize, last: usize },
    /// `a***@example.com`.
    Email,
    /// `*******1234`.
    LastFour,
    /// A consistent pseudonym: equal values give equal pseudonyms (HMAC under a mask key).
    Hash,
    /// SQL NULL.
    Null,
    /// A fixed value.
    Fixed { value: String },
    /// Dates keep their year only.
    Year,
}

impl Mask {
    /// Whether this mask can produce a value of `kind`.
    pub fn fits(&self, kind: Kind) -> bool {
        match self {
            Mask::Email | Mask::Partial { .. } => kind == Kind::Text,
            Mask::Year => matches!(kind, Kind::Date | Kind::DateTime),
            Mask::Fixed { value } => fixed_fits(kind, value),
            Mask::Full | Mask::LastFour | Mask::Hash | Mask::Null => true,
        }
    }
}

fn fixed_fits(kind: Kind, value: &str) -> bool {
    match kind {
        Kind::Text | Kind::Bytes => true,
        Kind::Integer => value.parse::<i64>().is_ok(),
        Kind::Decimal => value.parse::<f64>().is_ok(),
        Kind::Date => parse_date(value).is_some() && value.len() == 10,
        Kind::DateTime => value.len() >= 19 && parse_date(&value[..10]).is_some(),
    }
}

fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    let mut it = s.get(..10)?.split('-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn pseudonym(key: &[u8; 32], value: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"myveil-mask|");
    m.update(value);
    m.finalize().into_bytes().into()
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

/// Applies `mask` to a value of `kind` whose column holds at most `max_chars` characters
/// (0: no limit). `key` makes hash pseudonyms consistent and unguessable.
pub fn apply(
    mask: &Mask,
    kind: Kind,
    value: &[u8],
    max_chars: usize,
    key: &[u8; 32],
) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(value);
    let chars: Vec<char> = text.chars().collect();
    let full = || -> String {
        match kind {
            Kind::Text => stars(chars.len()),
            Kind::Bytes => stars(value.len()),
            Kind::Integer | Kind::Decimal => "0".to_owned(),
            Kind::Date => "1900-01-01".to_owned(),
            Kind::DateTime => "1900-01-01 00:00:00".to_owned(),
        }
    };
    let out = match mask {
        Mask::Null => return None,
        Mask::Full => full(),
        Mask::Fixed { value } => value.clone(),
        Mask::Partial { first, last } if kind == Kind::Text => {
            if chars.len() <= first + last {
                stars(chars.len())
            } else {
                let head: String = chars[..*first].iter().collect();
                let tail: String = chars[chars.len() - last..].iter().collect();
                format!("{head}{}{tail}", stars(chars.len() - first - last))
            }
        }
        Mask::Email if kind == Kind::Text => match text.split_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            _ => full(),
        },
        Mask::LastFour => match kind {
            Kind::Text | Kind::Bytes | Kind::Integer | Kind::Decimal => {
                let keep = chars.len().min(4);
                let tail: String = chars[chars.len() - keep..].iter().collect();
                match kind {
                    Kind::Integer | Kind::Decimal => tail
                        .trim_start_matches('-')
                        .parse::<u64>()
                        .map_or("0".to_owned(), |n| n.to_string()),
                    _ => format!("{}{tail}", stars(chars.len() - keep)),
                }
            }
            _ => full(),
        },
        Mask::Hash => {
            let h = pseudonym(key, value);
            let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
            match kind {
                Kind::Text | Kind::Bytes => hex::encode(&h[..8]),
                Kind::Integer | Kind::Decimal => (n % 1_000_000_000).to_string(),
                Kind::Date | Kind::DateTime => {
                    let (y, m, d) = civil_from_days((n % 36_500) as i64);
                    let date = format!("{y:04}-{m:02}-{d:02}");
                    if kind == Kind::Date {
                        date
                    } else {
                        format!("{date} 00:00:00")
                    }
                }
            }
        }
        Mask::Year => match (kind, parse_date(&text)) {
            (Kind::Date, Some((y, _, _))) => format!("{y:04}-01-01"),
            (Kind::DateTime, Some((y, _, _))) => format!("{y:04}-01-01 00:00:00"),
            _ => full(),
        },
        Mask::Partial { .. } | Mask::Email => full(),
    };
    let mut out = out;
    if max_chars > 0 && matches!(kind, Kind::Text) && out.chars().count() > max_chars {
        out = out.chars().take(max_chars).collect();
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [9; 32];

    fn m(mask: Mask, kind: Kind, v: &str) -> Option<String> {
        apply(&mask, kind, v.as_bytes(), 0, &K).map(|b| String::from_utf8(b).expect("utf8"))
    }

    #[test]
    fn masks_keep_the_type() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(m(Mask::Full, Kind::Text, "Zoë"), s("***"));
        assert_eq!(m(Mask::Full, Kind::Integer, "123"), s("0"));
        assert_eq!(m(Mask::Full, Kind::Date, "1990-05-01"), s("1900-01-01"));
        assert_eq!(
            m(Mask::Partial { first: 1, last: 2 }, Kind::Text, "Jonathan"),
            s("J*****an")
        );
        assert_eq!(
            m(Mask::Partial { first: 3, last: 3 }, Kind::Text, "Ann"),
            s("***")
        );
        assert_eq!(
            m(Mask::Email, Kind::Text, "ann.lee@example.com"),
            s("a***@example.com")
        );
        assert_eq!(
            m(Mask::Email, Kind::Text, "not an email"),
            s("************")
        );
        assert_eq!(
            m(Mask::LastFour, Kind::Text, "123-45-6789"),
            s("*******6789")
        );
        assert_eq!(m(Mask::LastFour, Kind::Integer, "5551234"), s("1234"));
        assert_eq!(m(Mask::Null, Kind::Text, "x"), None);
        assert_eq!(
            m(
                Mask::Fixed {
                    value: "REDACTED".into()
                },
                Kind::Text,
                "x"
            ),
            s("REDACTED")
        );
        assert_eq!(m(Mask::Year, Kind::Date, "1990-05-01"), s("1990-01-01"));
        assert_eq!(
            m(Mask::Year, Kind::DateTime, "1990-05-01 10:11:12"),
            s("1990-01-01 00:00:00")
        );
    }

    #[test]
    fn hash_pseudonyms_are_consistent_typed_and_keyed() {
        let a = m(Mask::Hash, Kind::Text, "ann@example.com");
        assert_eq!(a, m(Mask::Hash, Kind::Text, "ann@example.com"));
        assert_ne!(a, m(Mask::Hash, Kind::Text, "bob@example.com"));
        assert_ne!(
            a,
            apply(&Mask::Hash, Kind::Text, b"ann@example.com", 0, &[1; 32])
                .map(|b| String::from_utf8(b).expect("utf8"))
        );
        let n = m(Mask::Hash, Kind::Integer, "42").expect("value");
        assert!(n.parse::<u64>().is_ok());
        let d = m(Mask::Hash, Kind::Date, "1990-05-01").expect("value");
        assert!(parse_date(&d).is_some() && d.len() == 10, "{d}");
        for days in [0, 59, 60, 365, 10_957, 36_499] {
            let (y, mo, da) = civil_from_days(days);
            assert!((1970..2070).contains(&y) && (1..=12).contains(&mo) && (1..=31).contains(&da));
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
    }

    #[test]
    fn output_fits_the_column_length() {
        let out = apply(
            &Mask::Fixed {
                value: "a long replacement".into(),
            },
            Kind::Text,
            b"x",
            5,
            &K,
        )
        .expect("value");
        assert_eq!(out, b"a lon");
        assert!(!Mask::Email.fits(Kind::Date));
        assert!(
            !Mask::Fixed {
                value: "abc".into()
            }
            .fits(Kind::Integer)
        );
        assert!(
            Mask::Fixed {
                value: "2020-01-01".into()
            }
            .fits(Kind::Date)
        );
        assert!(Mask::Hash.fits(Kind::DateTime));
    }
}
