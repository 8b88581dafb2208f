//! crypto::cells: sealing, opening and indexing the cells of protected columns with the
//! keyring: which key, which context, and the per-key usage budget.

use super::blind::{Normalize, blind_index_with};
use super::envelope::{self, CellContext};
use super::keyring::{Keyring, Purpose};
use super::{Error, Result};
use crate::telemetry::metrics::METRICS;

/// Where a cell belongs, as the policy names it.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    /// `table.column`: the scope its keys are looked up by.
    pub scope: &'a str,
    pub table: &'a str,
    pub column: &'a str,
    pub plaintext_type: &'a str,
    pub normalize: Normalize,
    /// The row's key (canonical text), when the policy binds cells to their row.
    pub row_key: Option<&'a [u8]>,
}

impl Cell<'_> {
    fn context(&self) -> CellContext<'_> {
        CellContext {
            table: self.table,
            column: self.column,
            plaintext_type: self.plaintext_type,
            row_key: self.row_key,
        }
    }
}

/// Seals with the primary column key of the cell's scope.
pub fn seal(keyring: &Keyring, cell: &Cell<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
    let (id, key) = keyring
        .primary(Purpose::Column, cell.scope)
        .ok_or_else(|| Error::NoKey {
            purpose: "column",
            scope: cell.scope.to_owned(),
        })?;
    keyring.note_use(id)?;
    let sealed = envelope::seal_with(key.cipher(), id, &cell.context(), plaintext)?;
    METRICS.encrypted();
    Ok(sealed)
}

/// Opens with the key the envelope names.
pub fn open(keyring: &Keyring, cell: &Cell<'_>, envelope: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(envelope::plaintext_len(envelope.len()));
    open_into(keyring, cell, envelope, &mut out)?;
    Ok(out)
}

/// Opens with the key the envelope names, appending the plaintext to `out` (decrypted in
/// place there); on failure `out` is as it was.
pub fn open_into(
    keyring: &Keyring,
    cell: &Cell<'_>,
    envelope: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let opened = envelope::key_id(envelope).and_then(|id| {
        let key = keyring.key(id).ok_or(Error::UnknownKey { key_id: id })?;
        envelope::open_into(key.cipher(), &cell.context(), envelope, out)
    });
    match &opened {
        Ok(_) => METRICS.decrypted(),
        Err(_) => METRICS.decrypt_failed(),
    }
    opened
}

/// The blind index under the primary blind-index key (for writes).
pub fn blind(keyring: &Keyring, cell: &Cell<'_>, plaintext: &[u8]) -> Result<[u8; 32]> {
    let (_, key) = keyring
        .primary(Purpose::BlindIndex, cell.scope)
        .ok_or_else(|| Error::NoKey {
            purpose: "blind-index",
            scope: cell.scope.to_owned(),
        })?;
    Ok(blind_index_with(
        key.mac(),
        cell.table,
        cell.column,
        cell.normalize,
        plaintext,
    ))
}

/// The blind indexes under every blind-index key in use (for searches during rotation).
pub fn blind_all(keyring: &Keyring, cell: &Cell<'_>, plaintext: &[u8]) -> Result<Vec<[u8; 32]>> {
    let keys = keyring.in_use(Purpose::BlindIndex, cell.scope);
    if keys.is_empty() {
        return Err(Error::NoKey {
            purpose: "blind-index",
            scope: cell.scope.to_owned(),
        });
    }
    Ok(keys
        .into_iter()
        .map(|(_, k)| blind_index_with(k.mac(), cell.table, cell.column, cell.normalize, plaintext))
        .collect())
}

/// The key consistent-hash masks use for a column: derived from the mask key of its scope
/// and the scope itself, so the same value gets a different pseudonym in every column (a
/// role cannot compare a guess written to one column with another column's pseudonyms).
pub fn mask_key(keyring: &Keyring, scope: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    use hmac::{Hmac, Mac};
    let (_, k) = keyring.primary(Purpose::Mask, scope)?;
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(k.bytes()).ok()?;
    m.update(b"myveil-mask-column|");
    m.update(scope.as_bytes());
    Some(zeroize::Zeroizing::new(m.finalize().into_bytes().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyring::Status;

    #[test]
    fn mask_keys_differ_per_column_under_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::generate(dir.path(), &[(Purpose::Mask, "*")]).expect("keys");
        let a = mask_key(&ring, "users.email").expect("key");
        let b = mask_key(&ring, "users.full_name").expect("key");
        assert_ne!(*a, *b, "one fallback key, two columns: two pseudonym keys");
        assert_eq!(*a, *mask_key(&ring, "users.email").expect("key"), "stable");
        let p = |k: &[u8; 32]| {
            crate::crypto::mask::apply(
                &crate::crypto::mask::Mask::Hash,
                crate::crypto::mask::Kind::Text,
                b"ann@example.com",
                0,
                k,
            )
        };
        assert_ne!(p(&a), p(&b));
    }

    #[test]
    fn seal_open_and_search_across_a_blind_key_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ring = Keyring::generate(
            dir.path(),
            &[(Purpose::Column, "*"), (Purpose::BlindIndex, "*")],
        )
        .expect("keys");
        let cell = Cell {
            scope: "users.email",
            table: "users",
            column: "email",
            plaintext_type: "varchar(100)",
            normalize: Normalize::None,
            row_key: None,
        };
        let env = seal(&ring, &cell, b"ann@x.io").expect("seal");
        assert_eq!(open(&ring, &cell, &env).expect("open"), b"ann@x.io");
        let other = Cell {
            scope: "users.phone",
            column: "phone",
            ..cell
        };
        assert!(matches!(open(&ring, &other, &env), Err(Error::Open { .. })));
        let before = blind(&ring, &cell, b"ann@x.io").expect("blind");
        ring.add(Purpose::BlindIndex, "*", Status::Primary);
        let after = blind(&ring, &cell, b"ann@x.io").expect("blind");
        assert_ne!(before, after);
        assert_eq!(
            blind_all(&ring, &cell, b"ann@x.io").expect("all"),
            vec![after, before],
            "primary first, old key still searched"
        );
        assert!(matches!(
            seal(
                &Keyring::generate(&dir.path().join("empty"), &[]).expect("keys"),
                &cell,
                b"x"
            ),
            Err(Error::NoKey { .. })
        ));
    }
}
