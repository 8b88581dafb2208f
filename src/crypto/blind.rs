//! crypto::blind: blind indexes for equality search over encrypted columns.
//!
//! The index of a value is HMAC-SHA256 under a blind-index key of the normalized value,
//! domain-separated by `table.column`, so equal values in different columns do not match.
//! It is stored in a BINARY(32) sibling column. During a key rotation a search matches the
//! indexes under every blind-index key still in use (`IN (…)`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const BLIND_INDEX_LEN: usize = 32;

/// How a value is normalized before indexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    #[default]
    None,
    Lowercase,
    TrimLowercase,
}

impl Normalize {
    fn apply<'a>(self, value: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            Normalize::None => value.into(),
            Normalize::Lowercase => String::from_utf8_lossy(value)
                .to_lowercase()
                .into_bytes()
                .into(),
            Normalize::TrimLowercase => String::from_utf8_lossy(value)
                .trim()
                .to_lowercase()
                .into_bytes()
                .into(),
        }
    }
}

pub fn blind_index(
    key: &[u8; 32],
    table: &str,
    column: &str,
    normalize: Normalize,
    value: &[u8],
) -> [u8; BLIND_INDEX_LEN] {
    blind_index_with(&mac(key), table, column, normalize, value)
}

/// HMAC-SHA256 keyed with `key`: its inner and outer key blocks hashed once, cloned per
/// index (half the hashing of an index of a short value).
pub fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// `blind_index` with the key's HMAC state made beforehand (`mac`).
pub fn blind_index_with(
    mac: &Hmac<Sha256>,
    table: &str,
    column: &str,
    normalize: Normalize,
    value: &[u8],
) -> [u8; BLIND_INDEX_LEN] {
    let mut m = mac.clone();
    m.update(table.as_bytes());
    m.update(b".");
    m.update(column.as_bytes());
    m.update(&[0]);
    m.update(&normalize.apply(value));
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_match_only_in_their_column_and_under_their_key() {
        let k = [1u8; 32];
        let a = blind_index(&k, "users", "email", Normalize::None, b"a@x.io");
        assert_eq!(
            a,
            blind_index(&k, "users", "email", Normalize::None, b"a@x.io")
        );
        assert_ne!(
            a,
            blind_index(&k, "users", "email", Normalize::None, b"b@x.io")
        );
        assert_ne!(
            a,
            blind_index(&k, "users", "phone", Normalize::None, b"a@x.io")
        );
        assert_ne!(
            a,
            blind_index(&[2u8; 32], "users", "email", Normalize::None, b"a@x.io")
        );
        assert_ne!(
            a,
            blind_index(&k, "users", "email", Normalize::None, b"A@X.io")
        );
        assert_eq!(
            blind_index(&k, "users", "email", Normalize::TrimLowercase, b" A@X.io "),
            blind_index(&k, "users", "email", Normalize::TrimLowercase, b"a@x.io")
        );
    }
}
