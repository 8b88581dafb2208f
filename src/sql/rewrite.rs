//! sql::rewrite: turns an analysis plan into the statement text sent to the backend, sealing
//! literals and computing blind indexes through a `Sealer`, and maps the client's `?`
//! parameters to the backend's.

use std::borrow::Cow;

use base64::Engine;

use super::analyze::{Edit, Keep, Lit, Piece, Refusal};
use crate::crypto::mask::Kind;
use crate::policy::{PlainType, Protected, Storage};

/// What rewriting needs from the keys (a deterministic fake in tests).
pub trait Sealer {
    /// The envelope of `plaintext` for `column` (bound to `row_key` where the policy says so).
    fn seal(
        &self,
        column: &Protected,
        plaintext: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error>;
    /// The blind index under the primary blind-index key (for writes).
    fn blind(&self, column: &Protected, plaintext: &[u8])
    -> Result<[u8; 32], crate::crypto::Error>;
    /// The blind indexes under every blind-index key in use (for searches).
    fn blind_all(
        &self,
        column: &Protected,
        plaintext: &[u8],
    ) -> Result<Vec<[u8; 32]>, crate::crypto::Error>;
    /// How many blind-index keys a search covers.
    fn blind_keys(&self, column: &Protected) -> usize;
    /// Whether a migration is sealing the column's cells (searches then also match the
    /// plaintext of rows it has not reached).
    fn mixed(&self, _column: &Protected) -> bool {
        false
    }
    /// The plaintext of a value written as the column stores it (an envelope, or its base64)
    /// when it is a genuine envelope of this column (bound to `row_key`); None otherwise.
    fn open(&self, column: &Protected, stored: &[u8], row_key: Option<&[u8]>) -> Option<Vec<u8>>;
}

/// Where a row key comes from: a literal in the statement or a client parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    Literal(Vec<u8>),
    Param(usize),
}

/// Where the backend's n-th parameter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamUse {
    /// The client's parameter, as sent.
    Plain(usize),
    /// The client's parameter, sealed for the column (bound to the row key taken from the
    /// client's parameter `row_key`, where the policy binds the column to its row).
    Seal {
        param: usize,
        column: String,
        row_key: Option<RowKey>,
        /// A value that opens as this column's envelope is kept as sent (a ciphertext role
        /// with `write` restoring cells); anything else is sealed.
        keep: bool,
    },
    /// The blind index of the client's parameter under the primary key (of the plaintext
    /// inside it, when `keep` and it is an envelope).
    BlindWrite {
        param: usize,
        column: String,
        keep: bool,
    },
    /// The client's parameter as plaintext, for the rows of a column in the mixed state
    /// (NULL when the column is not mixed at execute time).
    MixedPlain { param: usize, column: String },
    /// The blind index of the client's parameter under the `key`-th key in use, one of
    /// `slots` placeholders the search was prepared with.
    BlindSearch {
        param: usize,
        column: String,
        key: usize,
        slots: usize,
    },
}

/// Placeholders a prepared search over a blind index gets at least: a statement prepared
/// before a rotation still searches the old and the new index after it (a slot past the
/// keys in use takes the primary's index again). More keys in use than slots: the execute
/// is refused rather than missing rows.
pub const BLIND_SEARCH_SLOTS: usize = 3;

#[derive(Debug)]
pub struct Rewritten {
    pub sql: Vec<u8>,
    pub params: Vec<ParamUse>,
}

/// Canonical text of a value for a plaintext type, or a refusal if it does not fit.
pub fn canonical<'v>(column: &Protected, value: &'v [u8]) -> Result<Cow<'v, [u8]>, Refusal> {
    let bad = |why: &str| Refusal {
        target: column.scope(),
        reason: why.to_owned(),
        denied: false,
    };
    let text = || std::str::from_utf8(value).map_err(|_| bad("value is not valid UTF-8"));
    match column.plain_type.kind() {
        Kind::Bytes => {
            let max = column.plain_type.max_chars();
            if max > 0 && value.len() > max {
                return Err(bad("value is longer than the column's declared length"));
            }
            Ok(Cow::Borrowed(value))
        }
        Kind::Text => {
            let t = text()?;
            let max = column.plain_type.max_chars();
            // No more characters than bytes: counted only when the bytes are over.
            if max > 0 && t.len() > max && t.chars().count() > max {
                return Err(bad("value is longer than the column's declared length"));
            }
            if let PlainType::Char(_) = column.plain_type {
                return Ok(Cow::Borrowed(t.trim_end_matches(' ').as_bytes()));
            }
            Ok(Cow::Borrowed(value))
        }
        Kind::Integer => {
            let n: i64 = text()?
                .trim()
                .parse()
                .map_err(|_| bad("value is not an integer"))?;
            if column.plain_type == PlainType::Int && i32::try_from(n).is_err() {
                return Err(bad("value is out of range for INT"));
            }
            Ok(Cow::Owned(n.to_string().into_bytes()))
        }
        Kind::Decimal => {
            let PlainType::Decimal(p, sc) = column.plain_type else {
                return Err(bad("type"));
            };
            decimal(text()?.trim(), p, sc)
                .map(|s| Cow::Owned(s.into_bytes()))
                .ok_or_else(|| bad("value does not fit the column's DECIMAL type"))
        }
        Kind::Date => date(text()?.trim())
            .map(|s| Cow::Owned(s.into_bytes()))
            .ok_or_else(|| bad("value is not a date (YYYY-MM-DD)")),
        Kind::DateTime => {
            let t = text()?.trim();
            let (d, time) = t.split_once([' ', 'T']).unwrap_or((t, "00:00:00"));
            let d = date(d).ok_or_else(|| bad("value is not a datetime"))?;
            let parts: Vec<u32> = time
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()
                .ok_or_else(|| bad("value is not a datetime"))?;
            match parts.as_slice() {
                [h, m, s] if *h < 24 && *m < 60 && *s < 60 => {
                    Ok(Cow::Owned(format!("{d} {h:02}:{m:02}:{s:02}").into_bytes()))
                }
                [h, m] if *h < 24 && *m < 60 => {
                    Ok(Cow::Owned(format!("{d} {h:02}:{m:02}:00").into_bytes()))
                }
                _ => Err(bad("value is not a datetime")),
            }
        }
    }
}

/// The text a row key is bound by: integers without leading zeros or sign noise (as the
/// database returns them), anything else as written.
pub fn canonical_row_key(value: &[u8]) -> Vec<u8> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.trim().parse::<i128>().ok())
        .map_or_else(|| value.to_vec(), |n| n.to_string().into_bytes())
}

fn date(s: &str) -> Option<String> {
    let mut it = s.split('-');
    let y: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || y > 9999 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn decimal(s: &str, precision: u8, scale: u8) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    if frac.len() > usize::from(scale) && frac[usize::from(scale)..].bytes().any(|b| b != b'0') {
        return None;
    }
    if int.len() > usize::from(precision - scale) {
        return None;
    }
    let mut f: String = frac.chars().take(usize::from(scale)).collect();
    while f.len() < usize::from(scale) {
        f.push('0');
    }
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && f.bytes().all(|b| b == b'0');
    let sign = if neg && !zero { "-" } else { "" };
    Some(if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{f}")
    })
}

/// Output bytes with the String calls the rendering uses.
struct Text<'a>(&'a mut Vec<u8>);

impl Text<'_> {
    fn push_str(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }
    /// `X'…'` of `bytes`, written straight into the statement.
    fn push_hex(&mut self, bytes: &[u8]) {
        push_hex_literal(self.0, bytes);
    }
    /// A sealed value as its column stores it, written straight into the statement.
    fn push_sealed(&mut self, column: &Protected, envelope: &[u8]) {
        match column.storage {
            Storage::Binary => self.push_hex(envelope),
            Storage::Base64 => {
                use base64::Engine as _;
                let engine = &base64::engine::general_purpose::STANDARD;
                self.0.push(b'\'');
                let at = self.0.len();
                let len = base64::encoded_len(envelope.len(), true).unwrap_or(0);
                self.0.resize(at + len, 0);
                let written = engine
                    .encode_slice(envelope, &mut self.0[at..])
                    .unwrap_or(0);
                self.0.truncate(at + written);
                self.0.push(b'\'');
            }
        }
    }
    fn push(&mut self, c: char) {
        let mut b = [0u8; 4];
        self.0.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
}

/// Where a sealed value's row key comes from.
fn row_key_of(col: &Protected, row_key: Option<&Lit>) -> Result<Option<RowKey>, Refusal> {
    match row_key {
        None => Ok(None),
        Some(Lit::Bytes(k) | Lit::Stored(k, _)) => Ok(Some(RowKey::Literal(canonical_row_key(k)))),
        Some(Lit::Param(j)) => Ok(Some(RowKey::Param(*j))),
        Some(Lit::Null) => Err(Refusal {
            target: col.scope(),
            reason: "the row key may not be NULL".into(),
            denied: false,
        }),
    }
}

/// The row key of a literal value (a literal value needs a literal row key).
fn literal_key<'k>(
    col: &Protected,
    row_key: &'k Option<RowKey>,
) -> Result<Option<&'k [u8]>, Refusal> {
    match row_key {
        None => Ok(None),
        Some(RowKey::Literal(k)) => Ok(Some(k.as_slice())),
        Some(RowKey::Param(_)) => Err(Refusal {
            target: col.scope(),
            reason: "give the value and its row key both as literals or both as parameters".into(),
            denied: false,
        }),
    }
}

/// A stored form (envelope bytes, or base64 text) as a literal.
pub fn stored_literal(column: &Protected, stored: &[u8]) -> String {
    match column.storage {
        Storage::Binary => hex_literal(stored),
        Storage::Base64 => format!("'{}'", String::from_utf8_lossy(stored)),
    }
}

/// `X'…'` (upper-case hex) of `bytes`.
fn hex_literal(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    push_hex_literal(&mut out, bytes);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `X'…'` (upper-case hex) of `bytes` to `out`.
fn push_hex_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    // Both digits of a byte at once.
    const PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 0x0F]];
            i += 1;
        }
        t
    };
    out.reserve(bytes.len() * 2 + 3);
    out.extend_from_slice(b"X'");
    for &b in bytes {
        out.extend_from_slice(&PAIRS[usize::from(b)]);
    }
    out.push(b'\'');
}

fn sealed_literal(column: &Protected, envelope: &[u8]) -> String {
    let mut out = Vec::new();
    Text(&mut out).push_sealed(column, envelope);
    // Only ASCII (hex or base64) was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Applies `edits` to the statement text `sql`; `placeholders` are the byte offsets of its
/// `?` markers, in order.
pub fn render(
    sql: &[u8],
    edits: &[Edit<'_>],
    placeholders: &[usize],
    sealer: &dyn Sealer,
) -> Result<Rewritten, Refusal> {
    let crypto_err = |column: &Protected, e: crate::crypto::Error| Refusal {
        target: column.scope(),
        reason: e.to_string(),
        denied: false,
    };
    let mut out: Vec<u8> = Vec::with_capacity(sql.len() + 64 * edits.len());
    let mut params = Vec::new();
    let mut pos = 0;
    let mut next_placeholder = 0;
    let plain_params_up_to = |end: usize, params: &mut Vec<ParamUse>, next: &mut usize| {
        while *next < placeholders.len() && placeholders[*next] < end {
            params.push(ParamUse::Plain(*next));
            *next += 1;
        }
    };
    for edit in edits {
        plain_params_up_to(edit.start, &mut params, &mut next_placeholder);
        out.extend_from_slice(&sql[pos..edit.start]);
        // Placeholders inside the replaced range are re-emitted by the pieces.
        while next_placeholder < placeholders.len() && placeholders[next_placeholder] < edit.end {
            next_placeholder += 1;
        }
        for piece in &edit.pieces {
            let out = &mut Text(&mut out);
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Raw(b) => out.0.extend_from_slice(b),
                Piece::Seal(col, lit, row_key, keep) => {
                    let row_key = row_key_of(col, row_key.as_ref())?;
                    match lit {
                        Lit::Null => out.push_str("NULL"),
                        Lit::Bytes(b) => {
                            let key = literal_key(col, &row_key)?;
                            let v = canonical(col, b)?;
                            out.push_sealed(
                                col,
                                &sealer.seal(col, &v, key).map_err(|e| crypto_err(col, e))?,
                            );
                        }
                        Lit::Stored(raw, plain) => {
                            let key = literal_key(col, &row_key)?;
                            // Security: a value is kept as written only when it opens as this
                            // column's envelope (for roles restoring ciphertext); anything
                            // else is sealed as plaintext.
                            if *keep != Keep::No && sealer.open(col, raw, key).is_some() {
                                out.push_str(&stored_literal(col, raw));
                            } else if *keep == Keep::OnlyEnvelopes {
                                return Err(Refusal {
                                    target: col.scope(),
                                    reason: "a unique index on the blind index would tell this role whether a value exists; it may only write envelopes of this column".into(),
                                    denied: false,
                                });
                            } else {
                                let Some(plain) = plain else {
                                    return Err(Refusal {
                                        target: col.scope(),
                                        reason: "value is neither this column's envelope nor readable plaintext".into(),
                                        denied: false,
                                    });
                                };
                                let v = canonical(col, plain)?;
                                out.push_sealed(
                                    col,
                                    &sealer.seal(col, &v, key).map_err(|e| crypto_err(col, e))?,
                                );
                            }
                        }
                        Lit::Param(_) if *keep == Keep::OnlyEnvelopes => {
                            // Security: a parameter would be sealed unseen, and a guess meets
                            // the unique blind index (a "does it exist" answer).
                            return Err(Refusal {
                                target: col.scope(),
                                reason: "a unique index on the blind index would tell this role whether a value exists; it may only write envelopes of this column, as literals".into(),
                                denied: false,
                            });
                        }
                        Lit::Param(i) => {
                            let keep = *keep == Keep::Envelopes;
                            if keep && row_key.is_some() {
                                return Err(Refusal {
                                    target: col.scope(),
                                    reason: "envelopes bound to their row are restored as literals, not parameters".into(),
                                    denied: false,
                                });
                            }
                            out.push('?');
                            params.push(ParamUse::Seal {
                                param: *i,
                                column: col.scope(),
                                row_key,
                                keep,
                            });
                        }
                    }
                }
                Piece::BlindWrite(col, lit, row_key, keep) => match lit {
                    Lit::Null => out.push_str("NULL"),
                    Lit::Bytes(b) => {
                        let v = canonical(col, b)?;
                        let idx = sealer.blind(col, &v).map_err(|e| crypto_err(col, e))?;
                        out.push_hex(&idx);
                    }
                    Lit::Stored(raw, plain) => {
                        let row_key = row_key_of(col, row_key.as_ref())?;
                        let key = literal_key(col, &row_key)?;
                        let opened = (*keep != Keep::No)
                            .then(|| sealer.open(col, raw, key))
                            .flatten();
                        let v = match (opened, plain) {
                            (Some(p), _) => Cow::Owned(p),
                            (None, Some(p)) => canonical(col, p)?,
                            (None, None) => {
                                return Err(Refusal {
                                    target: col.scope(),
                                    reason: "value is neither this column's envelope nor readable plaintext".into(),
                                    denied: false,
                                });
                            }
                        };
                        let idx = sealer.blind(col, &v).map_err(|e| crypto_err(col, e))?;
                        out.push_hex(&idx);
                    }
                    Lit::Param(i) => {
                        out.push('?');
                        params.push(ParamUse::BlindWrite {
                            param: *i,
                            column: col.scope(),
                            keep: *keep == Keep::Envelopes,
                        });
                    }
                },
                Piece::BlindSearch {
                    column,
                    qualifier,
                    values,
                    negated,
                } => {
                    let bidx = column.blind_index.as_deref().unwrap_or_default();
                    let mixed = sealer.mixed(column);
                    // The mixed form: rows a migration has not reached yet have no index and
                    // hold plaintext, compared as it is. A prepared search always takes it (so
                    // its form outlives a change of state); its plaintext parameter goes to
                    // the server only while the column is mixed, else NULL. Written as an OR
                    // of IN lists, which the server serves from the indexes of both columns.
                    let prepared = values.iter().any(|l| matches!(l, Lit::Param(_)));
                    let two = mixed || prepared;
                    let col_name = format!("{qualifier}`{}`", column.column.replace('`', "``"));
                    let b = format!("{qualifier}`{bidx}`");
                    match (two, *negated) {
                        (false, false) => out.push_str(&format!("{b} IN (")),
                        (false, true) => out.push_str(&format!("{b} NOT IN (")),
                        (true, false) => out.push_str(&format!("({b} IN (")),
                        (true, true) => {
                            out.push_str(&format!("(({b} IS NOT NULL AND {b} NOT IN ("))
                        }
                    }
                    let mut first = true;
                    let mut sep = |out: &mut Text<'_>| {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                    };
                    for lit in values {
                        match lit {
                            Lit::Null | Lit::Stored(_, None) => {
                                sep(out);
                                out.push_str("NULL");
                            }
                            Lit::Bytes(b) | Lit::Stored(_, Some(b)) => {
                                // A value that cannot be in the column matches nothing.
                                let Ok(v) = canonical(column, b) else {
                                    sep(out);
                                    out.push_str("NULL");
                                    continue;
                                };
                                for idx in sealer
                                    .blind_all(column, &v)
                                    .map_err(|e| crypto_err(column, e))?
                                {
                                    sep(out);
                                    out.push_hex(&idx);
                                }
                            }
                            Lit::Param(i) => {
                                let slots = sealer.blind_keys(column).max(BLIND_SEARCH_SLOTS);
                                for key in 0..slots {
                                    sep(out);
                                    out.push('?');
                                    params.push(ParamUse::BlindSearch {
                                        param: *i,
                                        column: column.scope(),
                                        key,
                                        slots,
                                    });
                                }
                            }
                        }
                    }
                    out.push(')');
                    if two {
                        if *negated {
                            out.push_str(&format!(") OR ({b} IS NULL AND {col_name} NOT IN ("));
                        } else {
                            out.push_str(&format!(" OR {col_name} IN ("));
                        }
                        let mut first = true;
                        for lit in values {
                            if !first {
                                out.push_str(", ");
                            }
                            first = false;
                            match lit {
                                Lit::Bytes(b) | Lit::Stored(_, Some(b)) if mixed => {
                                    match canonical(column, b) {
                                        Ok(v) if column.plain_type.kind() == Kind::Text => {
                                            out.push_str("_utf8mb4 ");
                                            out.push_hex(&v);
                                        }
                                        Ok(v) => out.push_hex(&v),
                                        Err(_) => out.push_str("NULL"),
                                    }
                                }
                                Lit::Param(i) => {
                                    out.push('?');
                                    params.push(ParamUse::MixedPlain {
                                        param: *i,
                                        column: column.scope(),
                                    });
                                }
                                _ => out.push_str("NULL"),
                            }
                        }
                        out.push_str(if *negated { ")))" } else { "))" });
                    }
                }
            }
        }
        pos = edit.end;
    }
    plain_params_up_to(usize::MAX, &mut params, &mut next_placeholder);
    out.extend_from_slice(&sql[pos..]);
    Ok(Rewritten { sql: out, params })
}

/// A literal's value sealed for `column`, as SQL text (the envelope as a hex or base64
/// literal; NULL stays NULL).
pub fn sealed_text(
    column: &Protected,
    lit: &Lit,
    row_key: Option<&[u8]>,
    sealer: &dyn Sealer,
) -> Result<String, Refusal> {
    let bytes = match lit {
        Lit::Null | Lit::Stored(_, None) => return Ok("NULL".into()),
        Lit::Bytes(b) | Lit::Stored(_, Some(b)) => b,
        Lit::Param(_) => return Ok("?".into()),
    };
    let v = canonical(column, bytes)?;
    let env = sealer.seal(column, &v, row_key).map_err(|e| Refusal {
        target: column.scope(),
        reason: e.to_string(),
        denied: false,
    })?;
    Ok(sealed_literal(column, &env))
}

/// A literal's blind index as SQL text: under the primary key (`key` None) or the
/// `key`-th key in use (a search; a value that cannot be in the column gives NULL).
pub fn blind_text(
    column: &Protected,
    lit: &Lit,
    key: Option<usize>,
    sealer: &dyn Sealer,
) -> Result<String, Refusal> {
    let bytes = match lit {
        Lit::Null | Lit::Stored(_, None) => return Ok("NULL".into()),
        Lit::Bytes(b) | Lit::Stored(_, Some(b)) => b,
        Lit::Param(_) => return Ok("?".into()),
    };
    let crypto = |e: crate::crypto::Error| Refusal {
        target: column.scope(),
        reason: e.to_string(),
        denied: false,
    };
    let v = match canonical(column, bytes) {
        Ok(v) => v,
        Err(_) if key.is_some() => return Ok("NULL".into()),
        Err(r) => return Err(r),
    };
    let idx = match key {
        None => sealer.blind(column, &v).map_err(crypto)?,
        Some(k) => {
            let all = sealer.blind_all(column, &v).map_err(crypto)?;
            match all.get(k).or(all.first()) {
                Some(b) => *b,
                None => return Ok("NULL".into()),
            }
        }
    };
    Ok(hex_literal(&idx))
}

/// The real sealer: keys from the keyring, and the columns a migration is sealing.
pub struct KeyringSealer<'a>(
    pub &'a crate::crypto::keyring::Keyring,
    pub &'a crate::backend::schema::Mixed,
);

fn with_cell<T>(
    column: &Protected,
    row_key: Option<&[u8]>,
    f: impl FnOnce(&crate::crypto::cells::Cell<'_>) -> T,
) -> T {
    let cell = crate::crypto::cells::Cell {
        scope: column.key_scope(),
        table: &column.table,
        column: &column.column,
        plaintext_type: column.type_name(),
        normalize: column.normalize,
        row_key,
    };
    f(&cell)
}

impl Sealer for KeyringSealer<'_> {
    fn open(&self, column: &Protected, stored: &[u8], row_key: Option<&[u8]>) -> Option<Vec<u8>> {
        // A base64 value must be exactly the base64 of an envelope (it is kept as written).
        if column.storage == Storage::Base64
            && !stored
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return None;
        }
        open_cell(self.0, column, stored, row_key).ok()
    }
    fn seal(
        &self,
        column: &Protected,
        plaintext: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::crypto::Error> {
        with_cell(column, row_key, |c| {
            crate::crypto::cells::seal(self.0, c, plaintext)
        })
    }
    fn blind(
        &self,
        column: &Protected,
        plaintext: &[u8],
    ) -> Result<[u8; 32], crate::crypto::Error> {
        with_cell(column, None, |c| {
            crate::crypto::cells::blind(self.0, c, plaintext)
        })
    }
    fn blind_all(
        &self,
        column: &Protected,
        plaintext: &[u8],
    ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
        with_cell(column, None, |c| {
            crate::crypto::cells::blind_all(self.0, c, plaintext)
        })
    }
    fn blind_keys(&self, column: &Protected) -> usize {
        self.0
            .in_use(crate::crypto::keyring::Purpose::BlindIndex, &column.scope())
            .len()
    }
    fn mixed(&self, column: &Protected) -> bool {
        self.1.searches_plaintext(column)
    }
}

/// An envelope as the column stores it (its bytes, or their base64).
pub fn stored_form(column: &Protected, envelope: &[u8]) -> Vec<u8> {
    match column.storage {
        Storage::Binary => envelope.to_vec(),
        Storage::Base64 => base64::engine::general_purpose::STANDARD
            .encode(envelope)
            .into_bytes(),
    }
}

/// Whether a stored value has the form of an envelope of `column` (binary, or the base64 of
/// one): the magic, version and algorithm, and room for a nonce and tag. It says nothing of
/// whether it opens.
pub fn is_envelope(column: &Protected, stored: &[u8]) -> bool {
    use crate::crypto::envelope::{ALG_AES_256_GCM, MAGIC, OVERHEAD, VERSION};
    let head = [MAGIC[0], MAGIC[1], VERSION, ALG_AES_256_GCM];
    match column.storage {
        Storage::Binary => stored.len() >= OVERHEAD && stored.starts_with(&head),
        Storage::Base64 => {
            // "MV", 1, 1 in base64 starts "TVYB"; the whole value must decode.
            stored.len() >= OVERHEAD * 4 / 3
                && stored.starts_with(b"TVYB")
                && base64::engine::general_purpose::STANDARD
                    .decode(stored)
                    .is_ok_and(|e| e.len() >= OVERHEAD && e.starts_with(&head))
        }
    }
}

/// Opens a cell of `column` as stored (binary envelope, or base64 text).
pub fn open_cell(
    keyring: &crate::crypto::keyring::Keyring,
    column: &Protected,
    stored: &[u8],
    row_key: Option<&[u8]>,
) -> Result<Vec<u8>, crate::crypto::Error> {
    let mut out = Vec::with_capacity(crate::crypto::envelope::plaintext_len(stored.len()));
    open_cell_into(keyring, column, stored, row_key, &mut out)?;
    Ok(out)
}

/// `open_cell`, appending the plaintext to `out`; on failure `out` is as it was.
pub fn open_cell_into(
    keyring: &crate::crypto::keyring::Keyring,
    column: &Protected,
    stored: &[u8],
    row_key: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<(), crate::crypto::Error> {
    let envelope = match column.storage {
        Storage::Binary => std::borrow::Cow::Borrowed(stored),
        Storage::Base64 => std::borrow::Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(stored)
                .map_err(|_| crate::crypto::Error::Malformed("stored value is not base64"))?,
        ),
    };
    with_cell(column, row_key, |c| {
        crate::crypto::cells::open_into(keyring, c, &envelope, out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn col(ty: &str) -> Protected {
        let mut p = Policy::default();
        p.add_toml(
            &format!("[[column]]\ntable = \"t\"\ncolumn = \"c\"\ntype = \"{ty}\"\n"),
            "t",
        )
        .expect("policy");
        p.columns()[0].clone()
    }

    #[test]
    fn values_are_canonical_for_their_type() {
        let ok = |ty: &str, v: &str| {
            String::from_utf8(canonical(&col(ty), v.as_bytes()).expect(v).into_owned())
                .expect("utf8")
        };
        assert_eq!(ok("int", "007"), "7");
        assert_eq!(ok("bigint", "-9223372036854775808"), "-9223372036854775808");
        assert_eq!(ok("decimal(10,2)", "12.5"), "12.50");
        assert_eq!(ok("decimal(10,2)", "-0.00"), "0.00");
        assert_eq!(ok("decimal(5,0)", "00042"), "42");
        assert_eq!(ok("date", "2024-2-9"), "2024-02-09");
        assert_eq!(ok("datetime", "2024-02-09 7:05:00"), "2024-02-09 07:05:00");
        assert_eq!(ok("char(5)", "ab  "), "ab");
        assert_eq!(ok("varchar(3)", "Zoë"), "Zoë");
        for (ty, v) in [
            ("int", "x"),
            ("int", "3000000000"),
            ("decimal(4,2)", "123.4"),
            ("decimal(4,2)", "1.234"),
            ("date", "2024-13-01"),
            ("varchar(3)", "four"),
            ("varbinary(2)", "abc"),
        ] {
            assert!(canonical(&col(ty), v.as_bytes()).is_err(), "{ty} {v}");
        }
    }
}
