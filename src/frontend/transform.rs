//! frontend::transform: result sets that carry protected columns. Column definitions are
//! matched to the policy by the backend's own metadata (schema, org_table, org_name — so
//! aliases, `SELECT *` and joins work) and rewritten to the plaintext type; each protected
//! cell is opened, masked or left as ciphertext per role, in the text and binary protocols.

use crate::crypto::mask::{self, Kind, Mask};
use crate::policy::{Access, PlainType, Policy, Protected};
use crate::sql::analyze::{Out, Shape};
use crate::wire::packets::{lenenc_int, put_lenenc_int};
use crate::wire::types::*;

const NOT_NULL_FLAG: u16 = 0x0001;
const PRI_KEY_FLAG: u16 = 0x0002;
const UNIQUE_KEY_FLAG: u16 = 0x0004;
const MULTIPLE_KEY_FLAG: u16 = 0x0008;
const BLOB_FLAG: u16 = 0x0010;
const BINARY_FLAG: u16 = 0x0080;
const NUM_FLAG: u16 = 0x8000;

const UTF8MB4_GENERAL_CI: u16 = 45;
const LATIN1_SWEDISH_CI: u16 = 8;
const BINARY_CHARSET: u16 = 63;

/// Why a result cannot be given to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The role may not see this column (ER_COLUMNACCESS_DENIED_ERROR).
    Denied { scope: String },
    /// A cell does not open (tampered, moved, unknown key).
    Cell { scope: String, reason: String },
    /// The backend sent a row myveil cannot read.
    Malformed,
    /// The column definitions name a protected column where the statement's analysis
    /// traced something else (or the other way round).
    Conflict { scope: String },
    /// The result's columns do not line up with the statement's analysis.
    Shape,
}

/// Opens cells and keys masks (the keyring in production, a fake in tests).
pub trait Cells: Sync {
    fn open(
        &self,
        column: &Protected,
        stored: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, String>;
    fn mask_key(&self, column: &Protected) -> Result<[u8; 32], String>;
    /// Whether a migration is sealing the column's cells (a cell that is not an envelope is
    /// then its plaintext).
    fn mixed(&self, _column: &Protected) -> bool {
        false
    }
    /// A fresh envelope of a plaintext cell as the column stores it, for a role that reads
    /// ciphertext, during a migration.
    fn seal(
        &self,
        column: &Protected,
        _plaintext: &[u8],
        _row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        Err(format!("no keys to seal {}", column.scope()))
    }
    /// `open`, appending the plaintext to `out`; on failure `out` is as it was.
    fn open_into(
        &self,
        column: &Protected,
        stored: &[u8],
        row_key: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(&self.open(column, stored, row_key)?);
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Action<'p> {
    Pass,
    /// A role that reads ciphertext, on a column in the mixed state: envelopes pass, a
    /// plaintext cell is sealed on the way out (never shown as it is).
    Cipher(&'p Protected),
    Open(&'p Protected),
    Mask(&'p Protected, Mask),
}

/// What to do with each column of one result set.
#[derive(Debug, Clone)]
pub struct ResultPlan<'p> {
    actions: Vec<Action<'p>>,
    /// Column types as the client sees them (after rewriting), for binary rows.
    types: Vec<u8>,
    /// For each column bound to its row: the index of the row-key column in the result.
    row_keys: Vec<Option<usize>>,
    /// Original type and unsigned flag of each column, to read a row key in binary rows.
    original: Vec<(u8, bool)>,
    /// Results go to the client in latin1 (`character_set_results`): opened text is
    /// converted as the server would convert a latin1 column's.
    latin1: bool,
}

/// The fields of a column definition myveil reads.
struct ColumnDef<'a> {
    schema: &'a [u8],
    org_table: &'a [u8],
    org_name: &'a [u8],
    /// Offset of the fixed-length part (after the 0x0c length byte).
    fixed: usize,
    column_type: u8,
    unsigned: bool,
}

const UNSIGNED_FLAG: u16 = 0x0020;

fn lenenc_str(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (len, n) = lenenc_int(buf.get(at..)?)?;
    let start = at + n;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(start..end)?, end))
}

fn parse_def(p: &[u8]) -> Option<ColumnDef<'_>> {
    let (_catalog, at) = lenenc_str(p, 0)?;
    let (schema, at) = lenenc_str(p, at)?;
    let (_table, at) = lenenc_str(p, at)?;
    let (org_table, at) = lenenc_str(p, at)?;
    let (_name, at) = lenenc_str(p, at)?;
    let (org_name, at) = lenenc_str(p, at)?;
    let (fixed_len, n) = lenenc_int(p.get(at..)?)?;
    let fixed = at + n;
    if fixed_len < 12 || p.len() < fixed + 12 {
        return None;
    }
    let flags = u16::from_le_bytes([p[fixed + 7], p[fixed + 8]]);
    Some(ColumnDef {
        schema,
        org_table,
        org_name,
        fixed,
        column_type: p[fixed + 6],
        unsigned: flags & UNSIGNED_FLAG != 0,
    })
}

/// The column definition fields for a plaintext type: type, charset, length, flags, decimals.
fn plain_metadata(t: PlainType) -> (u8, u16, u32, u16, u8) {
    match t {
        PlainType::Char(n) => (MYSQL_TYPE_STRING, UTF8MB4_GENERAL_CI, n * 4, 0, 0),
        PlainType::Varchar(n) => (MYSQL_TYPE_VAR_STRING, UTF8MB4_GENERAL_CI, n * 4, 0, 0),
        PlainType::Text => (MYSQL_TYPE_BLOB, UTF8MB4_GENERAL_CI, 262_140, BLOB_FLAG, 0),
        PlainType::Int => (MYSQL_TYPE_LONG, BINARY_CHARSET, 11, NUM_FLAG, 0),
        PlainType::BigInt => (MYSQL_TYPE_LONGLONG, BINARY_CHARSET, 20, NUM_FLAG, 0),
        PlainType::Decimal(p, s) => (
            MYSQL_TYPE_NEWDECIMAL,
            BINARY_CHARSET,
            u32::from(p) + u32::from(s > 0) + 1,
            NUM_FLAG,
            s,
        ),
        PlainType::Date => (MYSQL_TYPE_DATE, BINARY_CHARSET, 10, BINARY_FLAG, 0),
        PlainType::DateTime => (MYSQL_TYPE_DATETIME, BINARY_CHARSET, 19, BINARY_FLAG, 0),
        PlainType::Varbinary(n) => (MYSQL_TYPE_VAR_STRING, BINARY_CHARSET, n, BINARY_FLAG, 0),
        PlainType::Blob => (
            MYSQL_TYPE_BLOB,
            BINARY_CHARSET,
            65_535,
            BLOB_FLAG | BINARY_FLAG,
            0,
        ),
    }
}

/// Rewrites a column definition to the plaintext type, keeping names and key flags.
fn rewrite_def(p: &[u8], def: &ColumnDef<'_>, t: PlainType, latin1: bool) -> Vec<u8> {
    let (ty, mut charset, mut length, type_flags, decimals) = plain_metadata(t);
    if latin1 && t.kind() == Kind::Text {
        charset = LATIN1_SWEDISH_CI;
        length /= 4;
    }
    let f = def.fixed;
    let old_flags = u16::from_le_bytes([p[f + 7], p[f + 8]]);
    let kept = old_flags & (NOT_NULL_FLAG | PRI_KEY_FLAG | UNIQUE_KEY_FLAG | MULTIPLE_KEY_FLAG);
    let mut out = p.to_vec();
    out[f..f + 2].copy_from_slice(&charset.to_le_bytes());
    out[f + 2..f + 6].copy_from_slice(&length.to_le_bytes());
    out[f + 6] = ty;
    out[f + 7..f + 9].copy_from_slice(&(kept | type_flags).to_le_bytes());
    out[f + 9] = decimals;
    out
}

/// Plans a result set from the statement's shape (where each result column comes from, as
/// the analysis traced it) and the backend's column definitions; rewrites the definitions
/// of protected columns in place. `Ok(None)`: nothing to open or mask, rows pass untouched.
///
/// Security: the shape decides; the definitions only confirm it. A definition that names a
/// protected column where the shape says otherwise (a derived table aliased like the table,
/// say) is a conflict, and the result is refused.
pub fn plan<'p>(
    defs: &mut [Vec<u8>],
    policy: &'p Policy,
    role: &str,
    shape: &Shape,
    results_charset: Option<&str>,
    cells: &dyn Cells,
) -> Result<Option<ResultPlan<'p>>, Failure> {
    // Opened text is UTF-8; other result charsets than latin1 get it as it is.
    let latin1 = results_charset.is_some_and(|c| c.eq_ignore_ascii_case("latin1"));
    let outs = expand(shape, defs.len())?;
    // (org_table, org_name) of every column: a row key inside a run straight from a base
    // table is found by name.
    let names: Vec<(Vec<u8>, Vec<u8>)> = defs
        .iter()
        .map(|d| parse_def(d).map(|c| (c.org_table.to_vec(), c.org_name.to_vec())))
        .collect::<Option<_>>()
        .ok_or(Failure::Malformed)?;
    let mut actions = Vec::with_capacity(defs.len());
    let mut types = Vec::with_capacity(defs.len());
    let mut row_keys = Vec::with_capacity(defs.len());
    let mut original = Vec::with_capacity(defs.len());
    let mut any = false;
    for (raw, out) in defs.iter_mut().zip(&outs) {
        let Some(def) = parse_def(raw) else {
            return Err(Failure::Malformed);
        };
        original.push((def.column_type, def.unsigned));
        let named = (!def.org_table.is_empty())
            .then(|| {
                policy.find_shadowed(
                    &String::from_utf8_lossy(def.schema),
                    &String::from_utf8_lossy(def.org_table),
                    &String::from_utf8_lossy(def.org_name),
                )
            })
            .flatten();
        let (col, key) = match *out {
            Out::Cell { column, key } => {
                let col = policy.columns().get(column).ok_or(Failure::Malformed)?;
                if named.is_some_and(|n| !std::ptr::eq(n, col)) {
                    return Err(Failure::Conflict { scope: col.scope() });
                }
                (Some(col), key)
            }
            Out::Table => {
                // Straight from the base table: its definition names the column.
                let key = named.and_then(|c| c.row_key.as_deref()).and_then(|rk| {
                    names.iter().position(|(t, n)| {
                        named.is_some_and(|c| t.eq_ignore_ascii_case(c.table.as_bytes()))
                            && n.eq_ignore_ascii_case(rk.as_bytes())
                    })
                });
                (named, key)
            }
            Out::Plain | Out::Run => {
                if let Some(n) = named {
                    return Err(Failure::Conflict { scope: n.scope() });
                }
                (None, None)
            }
        };
        let action = match col {
            None => Action::Pass,
            Some(col) => match col.decide(role) {
                Access::Deny => return Err(Failure::Denied { scope: col.scope() }),
                Access::Ciphertext if cells.mixed(col) => Action::Cipher(col),
                Access::Ciphertext => Action::Pass,
                Access::Plaintext => Action::Open(col),
                Access::Mask(m) => Action::Mask(col, m),
            },
        };
        let ty = match &action {
            Action::Pass => def.column_type,
            Action::Cipher(_) => {
                any = true;
                def.column_type
            }
            Action::Open(col) | Action::Mask(col, _) => {
                any = true;
                let rewritten = rewrite_def(raw, &def, col.plain_type, latin1);
                let ty = plain_metadata(col.plain_type).0;
                *raw = rewritten;
                ty
            }
        };
        let row_key = match &action {
            // Needed only to seal a plaintext cell; its absence is an error then.
            Action::Cipher(col) => col.row_key.as_ref().and(key),
            Action::Open(col) | Action::Mask(col, _) => match (&col.row_key, key) {
                (None, _) => None,
                (Some(_), Some(k)) => Some(k),
                (Some(rk), None) => {
                    return Err(Failure::Cell {
                        scope: col.scope(),
                        reason: format!("select the row key column {rk} too"),
                    });
                }
            },
            Action::Pass => None,
        };
        actions.push(action);
        types.push(ty);
        row_keys.push(row_key);
    }
    Ok(any.then_some(ResultPlan {
        actions,
        types,
        row_keys,
        original,
        latin1,
    }))
}

/// The shape's columns laid over `n` result columns: a run of plain columns of unknown
/// width takes what the others leave; row-key positions move with it.
fn expand(shape: &Shape, n: usize) -> Result<Vec<Out>, Failure> {
    let runs = shape
        .columns
        .iter()
        .filter(|c| matches!(c, Out::Run | Out::Table))
        .count();
    let known = shape.columns.len() - runs;
    let width = match runs {
        0 if known == n => 0,
        1 if known <= n => n - known,
        _ if shape.is_plain() && !shape.columns.contains(&Out::Table) && known <= n => {
            // Only plain columns: where the runs split does not matter.
            return Ok(vec![Out::Plain; n]);
        }
        _ => return Err(Failure::Shape),
    };
    // Position of each shape column in the result.
    let mut at = Vec::with_capacity(shape.columns.len());
    let mut pos = 0;
    for c in &shape.columns {
        at.push(pos);
        pos += if matches!(c, Out::Run | Out::Table) {
            width
        } else {
            1
        };
    }
    let mut out = Vec::with_capacity(n);
    for c in &shape.columns {
        match c {
            Out::Run => out.extend(std::iter::repeat_n(Out::Plain, width)),
            Out::Table => out.extend(std::iter::repeat_n(Out::Table, width)),
            Out::Cell { column, key } => out.push(Out::Cell {
                column: *column,
                key: key.map(|k| at[k]),
            }),
            Out::Plain => out.push(Out::Plain),
        }
    }
    Ok(out)
}

impl ResultPlan<'_> {
    /// The canonical row key cell `i` is bound to (None: it is bound to none).
    fn row_key(
        &self,
        i: usize,
        col: &Protected,
        row_key: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, Failure> {
        match (self.row_keys[i], row_key) {
            (None, _) => Ok(None),
            (Some(_), Some(k)) => Ok(Some(crate::sql::rewrite::canonical_row_key(k))),
            (Some(_), None) => Err(Failure::Cell {
                scope: col.scope(),
                reason: "the row key is NULL".into(),
            }),
        }
    }

    /// The client's view of one stored cell (None: NULL).
    fn cell(
        &self,
        i: usize,
        stored: &[u8],
        row_key: Option<&[u8]>,
        cells: &dyn Cells,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let (col, mask) = match &self.actions[i] {
            Action::Pass => return Ok(Some(stored.to_vec())),
            Action::Cipher(col) => return self.reseal(i, col, stored, row_key, cells).map(Some),
            Action::Open(col) => (*col, None),
            Action::Mask(col, m) => (*col, Some(m)),
        };
        let row_key = self.row_key(i, col, row_key)?;
        let plain = cells
            .open(col, stored, row_key.as_deref())
            .map_err(|reason| Failure::Cell {
                scope: col.scope(),
                reason,
            })?;
        let value = match mask {
            None => Some(plain),
            Some(m) => {
                let key = cells.mask_key(col).map_err(|reason| Failure::Cell {
                    scope: col.scope(),
                    reason,
                })?;
                mask::apply(
                    m,
                    col.plain_type.kind(),
                    &plain,
                    col.plain_type.max_chars(),
                    &key,
                )
            }
        };
        Ok(match value {
            Some(v) if self.latin1 && col.plain_type.kind() == Kind::Text => {
                Some(crate::sql::charset::utf8_to_latin1(&v).into_owned())
            }
            v => v,
        })
    }

    /// A ciphertext role's view of a cell of a mixed column: an envelope as stored, a
    /// plaintext cell sealed now (its type checked as a write's would be).
    fn reseal(
        &self,
        i: usize,
        col: &Protected,
        stored: &[u8],
        row_key: Option<&[u8]>,
        cells: &dyn Cells,
    ) -> Result<Vec<u8>, Failure> {
        if crate::sql::rewrite::is_envelope(col, stored) {
            return Ok(stored.to_vec());
        }
        let fail = |reason: String| Failure::Cell {
            scope: col.scope(),
            reason,
        };
        let row_key = self.row_key(i, col, row_key)?;
        let plain = crate::sql::rewrite::canonical(col, stored).map_err(|r| fail(r.reason))?;
        cells.seal(col, &plain, row_key.as_deref()).map_err(fail)
    }

    /// Transforms a text-protocol row.
    pub fn text_row(&self, row: &[u8], cells: &dyn Cells) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::with_capacity(row.len());
        self.text_row_into(row, cells, &mut out)?;
        Ok(out)
    }

    /// Transforms a text-protocol row into `out` (emptied first; the relay keeps one buffer
    /// for all rows). Columns that pass are copied; opened cells are decrypted in place.
    pub fn text_row_into(
        &self,
        row: &[u8],
        cells: &dyn Cells,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        out.clear();
        out.reserve(row.len());
        // Cells first (a row key may come after the column bound to it), then the new row.
        let n = self.actions.len();
        with_spans(n, |spans: &mut [Option<(usize, usize, usize)>]| {
            self.text_row_spans(row, cells, out, spans)
        })
    }

    fn text_row_spans(
        &self,
        row: &[u8],
        cells: &dyn Cells,
        out: &mut Vec<u8>,
        spans: &mut [Option<(usize, usize, usize)>],
    ) -> Result<(), Failure> {
        type Span = Option<(usize, usize, usize)>;
        let mut at = 0;
        for span in spans.iter_mut() {
            if row.get(at) == Some(&0xFB) {
                at += 1;
                continue;
            }
            let (value, next) = lenenc_str(row, at).ok_or(Failure::Malformed)?;
            *span = Some((at, next - value.len(), next));
            at = next;
        }
        if at != row.len() {
            return Err(Failure::Malformed);
        }
        let spans: &[Span] = spans;
        let value = |i: usize| spans[i].map(|(_, s, e)| &row[s..e]);
        for (i, span) in spans.iter().enumerate() {
            let Some((start, vs, end)) = *span else {
                out.push(0xFB);
                continue;
            };
            if matches!(self.actions[i], Action::Pass) {
                out.extend_from_slice(&row[start..end]);
                continue;
            }
            let key = self.row_keys[i].and_then(value);
            if let Action::Open(col) = self.actions[i]
                && !(self.latin1 && col.plain_type.kind() == Kind::Text)
            {
                // Decrypted in place at the end of the row, then given its length prefix.
                let row_key = self.row_key(i, col, key)?;
                let start = out.len();
                cells
                    .open_into(col, &row[vs..end], row_key.as_deref(), out)
                    .map_err(|reason| Failure::Cell {
                        scope: col.scope(),
                        reason,
                    })?;
                let (prefix, len) =
                    crate::wire::packets::lenenc_int_bytes((out.len() - start) as u64);
                out.splice(start..start, prefix[..len].iter().copied());
                continue;
            }
            match self.cell(i, &row[vs..end], key, cells)? {
                Some(v) => {
                    put_lenenc_int(out, v.len() as u64);
                    out.extend_from_slice(&v);
                }
                None => out.push(0xFB),
            }
        }
        Ok(())
    }

    /// Transforms a binary-protocol row (header 0x00, NULL bitmap offset 2, typed values).
    pub fn binary_row(
        &self,
        row: &[u8],
        original_types: &[u8],
        cells: &dyn Cells,
    ) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::with_capacity(row.len());
        self.binary_row_into(row, original_types, cells, &mut out)?;
        Ok(out)
    }

    /// Transforms a binary-protocol row into `out` (emptied first; the relay keeps one
    /// buffer for all rows). Columns that pass are copied; opened cells are decrypted in
    /// place and re-encoded there in their plaintext type, with no value in between.
    pub fn binary_row_into(
        &self,
        row: &[u8],
        original_types: &[u8],
        cells: &dyn Cells,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let n = self.actions.len();
        let bitmap_len = (n + 7 + 2) / 8;
        if row.first() != Some(&0x00) || row.len() < 1 + bitmap_len || original_types.len() != n {
            return Err(Failure::Malformed);
        }
        with_spans(n, |spans: &mut [Option<(usize, usize)>]| {
            self.binary_row_spans(row, original_types, cells, out, spans)
        })
    }

    fn binary_row_spans(
        &self,
        row: &[u8],
        original_types: &[u8],
        cells: &dyn Cells,
        out: &mut Vec<u8>,
        spans: &mut [Option<(usize, usize)>],
    ) -> Result<(), Failure> {
        type Span = Option<(usize, usize)>;
        let bitmap_len = (spans.len() + 7 + 2) / 8;
        let bitmap = &row[1..1 + bitmap_len];
        let null_bit = |i: usize| ((i + 2) / 8, 1u8 << ((i + 2) % 8));
        let mut at = 1 + bitmap_len;
        for (i, (span, ty)) in spans.iter_mut().zip(original_types).enumerate() {
            let (byte, bit) = null_bit(i);
            if bitmap[byte] & bit != 0 {
                continue;
            }
            let end = binary_value_end(row, at, *ty).ok_or(Failure::Malformed)?;
            *span = Some((at, end));
            at = end;
        }
        if at != row.len() {
            return Err(Failure::Malformed);
        }
        let spans: &[Span] = spans;
        out.clear();
        out.reserve(row.len());
        out.push(0x00);
        out.extend_from_slice(bitmap);
        for (i, span) in spans.iter().enumerate() {
            let Some((start, end)) = *span else { continue };
            let col = match &self.actions[i] {
                Action::Pass => {
                    out.extend_from_slice(&row[start..end]);
                    continue;
                }
                Action::Cipher(col) => {
                    let (stored, _) = lenenc_str(row, start).ok_or(Failure::Malformed)?;
                    let key = match self.row_keys[i].and_then(|k| spans[k].map(|s| (k, s))) {
                        Some((k, (ks, ke))) => Some(
                            binary_text(&row[ks..ke], self.original[k])
                                .ok_or(Failure::Malformed)?,
                        ),
                        None => None,
                    };
                    let v = self.reseal(i, col, stored, key.as_deref(), cells)?;
                    put_lenenc_int(out, v.len() as u64);
                    out.extend_from_slice(&v);
                    continue;
                }
                Action::Open(col) | Action::Mask(col, _) => *col,
            };
            let (stored, _) = lenenc_str(row, start).ok_or(Failure::Malformed)?;
            let key = match self.row_keys[i].and_then(|k| spans[k].map(|s| (k, s))) {
                Some((k, (ks, ke))) => {
                    Some(binary_text(&row[ks..ke], self.original[k]).ok_or(Failure::Malformed)?)
                }
                None => None,
            };
            let misfit = || Failure::Cell {
                scope: col.scope(),
                reason: "opened value does not fit the declared type".into(),
            };
            if matches!(self.actions[i], Action::Open(_))
                && !(self.latin1 && col.plain_type.kind() == Kind::Text)
            {
                // Decrypted in place at the end of the row, then encoded there.
                let row_key = self.row_key(i, col, key.as_deref())?;
                let at = out.len();
                cells
                    .open_into(col, stored, row_key.as_deref(), out)
                    .map_err(|reason| Failure::Cell {
                        scope: col.scope(),
                        reason,
                    })?;
                match fixed_binary(col.plain_type, &out[at..]).map_err(|()| misfit())? {
                    Some((bytes, len)) => {
                        out.truncate(at);
                        out.extend_from_slice(&bytes[..len]);
                    }
                    None => {
                        let (prefix, len) =
                            crate::wire::packets::lenenc_int_bytes((out.len() - at) as u64);
                        out.splice(at..at, prefix[..len].iter().copied());
                    }
                }
                continue;
            }
            match self.cell(i, stored, key.as_deref(), cells)? {
                Some(v) => encode_binary(out, col.plain_type, &v).ok_or_else(misfit)?,
                None => {
                    let (byte, bit) = null_bit(i);
                    out[1 + byte] |= bit;
                }
            }
        }
        Ok(())
    }

    pub fn types(&self) -> &[u8] {
        &self.types
    }
}

/// Runs `f` over `n` value positions of a row, kept on the stack for up to 32 columns (no
/// allocation per row).
fn with_spans<T: Copy, R>(n: usize, f: impl FnOnce(&mut [Option<T>]) -> R) -> R {
    let mut stack: [Option<T>; 32] = [None; 32];
    if n <= stack.len() {
        f(&mut stack[..n])
    } else {
        f(&mut vec![None; n])
    }
}

/// The text form of a binary-protocol value (integers and strings: what row keys are).
fn binary_text(v: &[u8], (ty, unsigned): (u8, bool)) -> Option<Vec<u8>> {
    let int = |n: usize| -> Option<Vec<u8>> {
        let b = v.get(..n)?;
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(b);
        if !unsigned && b[n - 1] & 0x80 != 0 {
            buf[n..].fill(0xFF);
        }
        Some(
            if unsigned {
                u64::from_le_bytes(buf).to_string()
            } else {
                i64::from_le_bytes(buf).to_string()
            }
            .into_bytes(),
        )
    };
    match ty {
        MYSQL_TYPE_TINY => int(1),
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => int(2),
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => int(4),
        MYSQL_TYPE_LONGLONG => int(8),
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DATE | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIME | MYSQL_TYPE_NULL => None,
        _ => lenenc_str(v, 0).map(|(s, _)| s.to_vec()),
    }
}

/// Encodes a plaintext value (text form) as the binary protocol carries its type.
fn encode_binary(out: &mut Vec<u8>, t: PlainType, v: &[u8]) -> Option<()> {
    match fixed_binary(t, v).ok()? {
        Some((bytes, len)) => out.extend_from_slice(&bytes[..len]),
        None => {
            put_lenenc_int(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
    Some(())
}

/// The binary-protocol bytes of a plaintext value (text form) of a type the protocol sends
/// in a fixed form (integers, dates); None: a type sent as a length-prefixed string.
/// Err: the value does not parse as its type.
fn fixed_binary(t: PlainType, v: &[u8]) -> Result<Option<([u8; 8], usize)>, ()> {
    let text = || std::str::from_utf8(v).map_err(|_| ());
    let mut b = [0u8; 8];
    let len = match t {
        PlainType::Int => {
            let n = text()?.parse::<i32>().map_err(|_| ())?;
            b[..4].copy_from_slice(&n.to_le_bytes());
            4
        }
        PlainType::BigInt => {
            let n = text()?.parse::<i64>().map_err(|_| ())?;
            b.copy_from_slice(&n.to_le_bytes());
            8
        }
        PlainType::Date | PlainType::DateTime => {
            let s = text()?;
            let num =
                |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u16>().ok()).ok_or(());
            let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
            let [y0, y1] = y.to_le_bytes();
            if t == PlainType::Date {
                b[..5].copy_from_slice(&[4, y0, y1, m as u8, d as u8]);
                5
            } else {
                let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
                b = [7, y0, y1, m as u8, d as u8, h as u8, mi as u8, sec as u8];
                8
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((b, len)))
}

/// The original column types of a result set's definitions, for binary rows.
pub fn original_types(defs: &[Vec<u8>]) -> Option<Vec<u8>> {
    defs.iter()
        .map(|d| parse_def(d).map(|c| c.column_type))
        .collect()
}

/// No keyring: nothing opens (a relay that transforms no protected column).
pub struct NoCells;

impl Cells for NoCells {
    fn open(&self, column: &Protected, _: &[u8], _: Option<&[u8]>) -> Result<Vec<u8>, String> {
        Err(format!("no keys to open {}", column.scope()))
    }

    fn mask_key(&self, column: &Protected) -> Result<[u8; 32], String> {
        Err(format!("no keys to mask {}", column.scope()))
    }
}

/// Cells opened with the keyring; the columns a migration is sealing take a cell that is not
/// an envelope as its plaintext.
pub struct KeyringCells<'a>(
    pub &'a crate::crypto::keyring::Keyring,
    pub &'a crate::backend::schema::Mixed,
);

impl KeyringCells<'_> {
    /// Security: only a column in the mixed state, and only a cell without an envelope's
    /// form, is taken as plaintext; a cell with that form must open. What is taken goes on
    /// to the role's rule like any opened cell.
    fn plaintext<'s>(&self, column: &Protected, stored: &'s [u8]) -> Option<&'s [u8]> {
        (!self.1.is_empty()
            && self.1.contains(column)
            && !crate::sql::rewrite::is_envelope(column, stored))
        .then_some(stored)
    }
}

impl Cells for KeyringCells<'_> {
    fn open(
        &self,
        column: &Protected,
        stored: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        if let Some(p) = self.plaintext(column, stored) {
            return Ok(p.to_vec());
        }
        crate::sql::rewrite::open_cell(self.0, column, stored, row_key).map_err(|e| e.to_string())
    }

    fn open_into(
        &self,
        column: &Protected,
        stored: &[u8],
        row_key: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        if let Some(p) = self.plaintext(column, stored) {
            out.extend_from_slice(p);
            return Ok(());
        }
        crate::sql::rewrite::open_cell_into(self.0, column, stored, row_key, out)
            .map_err(|e| e.to_string())
    }

    fn mixed(&self, column: &Protected) -> bool {
        self.1.contains(column)
    }

    fn seal(
        &self,
        column: &Protected,
        plaintext: &[u8],
        row_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        use crate::sql::rewrite::Sealer;
        let sealer = crate::sql::rewrite::KeyringSealer(self.0, self.1);
        let env = sealer
            .seal(column, plaintext, row_key)
            .map_err(|e| e.to_string())?;
        Ok(crate::sql::rewrite::stored_form(column, &env))
    }

    fn mask_key(&self, column: &Protected) -> Result<[u8; 32], String> {
        crate::crypto::cells::mask_key(self.0, &column.scope())
            .map(|k| *k)
            .ok_or_else(|| "no mask key; run `myveil keygen`".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        [[column]]
        table = "users"
        column = "email"
        type = "varchar(100)"
        roles = { app = "plaintext", support = { mask = "email" }, auditor = "ciphertext", analyst = "deny" }
        [[column]]
        table = "users"
        column = "age"
        type = "int"
        roles = { app = "plaintext", support = { mask = "full" } }
        [[column]]
        table = "users"
        column = "born"
        type = "date"
        roles = { app = "plaintext", support = { mask = "null" } }
    "#;

    /// Stored values are "E:" + plaintext; anything else fails to open.
    struct Fake;
    impl Cells for Fake {
        fn open(&self, _: &Protected, stored: &[u8], _: Option<&[u8]>) -> Result<Vec<u8>, String> {
            stored
                .strip_prefix(b"E:")
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "does not open".to_owned())
        }
        fn mask_key(&self, _: &Protected) -> Result<[u8; 32], String> {
            Ok([3; 32])
        }
    }

    fn def(schema: &str, table: &str, column: &str, ty: u8) -> Vec<u8> {
        let mut p = Vec::new();
        for s in ["def", schema, table, table, column, column] {
            put_lenenc_int(&mut p, s.len() as u64);
            p.extend_from_slice(s.as_bytes());
        }
        p.push(0x0c);
        p.extend_from_slice(&BINARY_CHARSET.to_le_bytes());
        p.extend_from_slice(&255u32.to_le_bytes());
        p.push(ty);
        p.extend_from_slice(&(BINARY_FLAG | NOT_NULL_FLAG).to_le_bytes());
        p.push(0);
        p.extend_from_slice(&[0, 0]);
        p
    }

    fn text_row(cells: &[Option<&[u8]>]) -> Vec<u8> {
        let mut r = Vec::new();
        for c in cells {
            match c {
                Some(v) => {
                    put_lenenc_int(&mut r, v.len() as u64);
                    r.extend_from_slice(v);
                }
                None => r.push(0xFB),
            }
        }
        r
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.add_toml(POLICY, "t").expect("policy");
        p
    }

    /// The shape of `SELECT id, email, age, born FROM users`.
    fn shape() -> Shape {
        Shape {
            columns: vec![
                Out::Plain,
                Out::Cell {
                    column: 0,
                    key: None,
                },
                Out::Cell {
                    column: 1,
                    key: None,
                },
                Out::Cell {
                    column: 2,
                    key: None,
                },
            ],
        }
    }

    fn defs() -> Vec<Vec<u8>> {
        vec![
            def("shop", "users", "id", MYSQL_TYPE_LONG),
            def("shop", "users", "email", MYSQL_TYPE_VAR_STRING),
            def("shop", "users", "age", MYSQL_TYPE_BLOB),
            def("shop", "users", "born", MYSQL_TYPE_VAR_STRING),
        ]
    }

    #[test]
    fn metadata_is_rewritten_to_the_plaintext_type() {
        let p = policy();
        let mut d = defs();
        let before = d[0].clone();
        let app = plan(&mut d, &p, "app", &shape(), None, &Fake)
            .expect("plan")
            .expect("protected");
        assert_eq!(d[0], before, "unprotected definitions are untouched");
        let email = parse_def(&d[1]).expect("def");
        assert_eq!(email.column_type, MYSQL_TYPE_VAR_STRING);
        let f = email.fixed;
        assert_eq!(
            u16::from_le_bytes([d[1][f], d[1][f + 1]]),
            UTF8MB4_GENERAL_CI
        );
        assert_eq!(
            u32::from_le_bytes([d[1][f + 2], d[1][f + 3], d[1][f + 4], d[1][f + 5]]),
            400
        );
        assert_eq!(
            u16::from_le_bytes([d[1][f + 7], d[1][f + 8]]),
            NOT_NULL_FLAG,
            "binary flag dropped, key flags kept"
        );
        assert_eq!(
            app.types(),
            &[
                MYSQL_TYPE_LONG,
                MYSQL_TYPE_VAR_STRING,
                MYSQL_TYPE_LONG,
                MYSQL_TYPE_DATE
            ]
        );
        assert!(
            plan_or_none(
                &p,
                "app",
                vec![def("shop", "orders", "email", MYSQL_TYPE_VAR_STRING)],
                Shape {
                    columns: vec![Out::Plain]
                }
            )
            .is_none()
        );
        // A definition naming a protected column where the statement traced a plain one:
        // refused, whatever the metadata claims (a derived table aliased like the table).
        let mut spoof = vec![def("shop", "users", "email", MYSQL_TYPE_VAR_STRING)];
        assert_eq!(
            plan(
                &mut spoof,
                &p,
                "app",
                &Shape {
                    columns: vec![Out::Plain]
                },
                None,
                &Fake
            )
            .err(),
            Some(Failure::Conflict {
                scope: "users.email".into()
            })
        );
        // A column the statement traced to a protected one is opened whatever the
        // metadata says (a view, a derived table).
        let mut derived = vec![def("shop", "d", "x", MYSQL_TYPE_VAR_STRING)];
        assert!(
            plan(
                &mut derived,
                &p,
                "app",
                &Shape {
                    columns: vec![Out::Cell {
                        column: 0,
                        key: None
                    }]
                },
                None,
                &Fake
            )
            .expect("plan")
            .is_some()
        );
        // Runs of unknown width take what the other columns leave.
        let mut wide = vec![
            def("x", "t", "a", MYSQL_TYPE_LONG),
            def("x", "t", "b", MYSQL_TYPE_LONG),
            def("shop", "users", "email", MYSQL_TYPE_VAR_STRING),
        ];
        assert!(
            plan(
                &mut wide,
                &p,
                "app",
                &Shape {
                    columns: vec![
                        Out::Run,
                        Out::Cell {
                            column: 0,
                            key: None
                        }
                    ]
                },
                None,
                &Fake
            )
            .expect("plan")
            .is_some()
        );
        assert!(
            plan_or_none(
                &p,
                "auditor",
                vec![def("shop", "users", "email", MYSQL_TYPE_VAR_STRING)],
                Shape {
                    columns: vec![Out::Cell {
                        column: 0,
                        key: None
                    }]
                }
            )
            .is_none(),
            "ciphertext role: untouched"
        );
        let mut denied = defs();
        assert_eq!(
            plan(&mut denied, &p, "analyst", &shape(), None, &Fake).err(),
            Some(Failure::Denied {
                scope: "users.email".into()
            })
        );
    }

    fn plan_or_none(p: &Policy, role: &str, mut d: Vec<Vec<u8>>, s: Shape) -> Option<()> {
        plan(&mut d, p, role, &s, None, &Fake)
            .expect("plan")
            .map(|_| ())
    }

    #[test]
    fn a_latin1_client_gets_latin1_text() {
        let p = policy();
        let mut d = defs();
        let app = plan(&mut d, &p, "app", &shape(), Some("latin1"), &Fake)
            .expect("plan")
            .expect("protected");
        let email = parse_def(&d[1]).expect("def");
        let f = email.fixed;
        assert_eq!(
            u16::from_le_bytes([d[1][f], d[1][f + 1]]),
            LATIN1_SWEDISH_CI
        );
        assert_eq!(
            u32::from_le_bytes([d[1][f + 2], d[1][f + 3], d[1][f + 4], d[1][f + 5]]),
            100
        );
        let row = text_row(&[
            Some(b"1"),
            Some("E:josé@€.io".as_bytes()),
            Some(b"E:42"),
            None,
        ]);
        assert_eq!(
            app.text_row(&row, &Fake).expect("row"),
            text_row(&[Some(b"1"), Some(b"jos\xe9@\x80.io"), Some(b"42"), None])
        );
    }

    #[test]
    fn text_rows_are_opened_or_masked_per_role() {
        let p = policy();
        let row = text_row(&[Some(b"1"), Some(b"E:ann@example.com"), Some(b"E:42"), None]);
        let mut d = defs();
        let app = plan(&mut d, &p, "app", &shape(), None, &Fake)
            .expect("plan")
            .expect("protected");
        assert_eq!(
            app.text_row(&row, &Fake).expect("row"),
            text_row(&[Some(b"1"), Some(b"ann@example.com"), Some(b"42"), None])
        );
        let mut d = defs();
        let support = plan(&mut d, &p, "support", &shape(), None, &Fake)
            .expect("plan")
            .expect("protected");
        let row2 = text_row(&[
            Some(b"1"),
            Some(b"E:ann@example.com"),
            Some(b"E:42"),
            Some(b"E:1990-01-01"),
        ]);
        assert_eq!(
            support.text_row(&row2, &Fake).expect("row"),
            text_row(&[Some(b"1"), Some(b"a***@example.com"), Some(b"0"), None])
        );
        let tampered = text_row(&[Some(b"1"), Some(b"X:ann"), Some(b"E:1"), None]);
        assert_eq!(
            app.text_row(&tampered, &Fake).err(),
            Some(Failure::Cell {
                scope: "users.email".into(),
                reason: "does not open".into()
            })
        );
        assert_eq!(
            app.text_row(&row[..row.len() - 2], &Fake).err(),
            Some(Failure::Malformed)
        );
    }

    #[test]
    fn binary_rows_are_re_encoded_in_the_plaintext_type() {
        let p = policy();
        let mut d = defs();
        let original = original_types(&d).expect("types");
        let app = plan(&mut d, &p, "app", &shape(), None, &Fake)
            .expect("plan")
            .expect("protected");
        let mut row = vec![0x00, 0x00];
        row.extend_from_slice(&7i32.to_le_bytes());
        for v in [&b"E:ann@x.io"[..], b"E:42", b"E:1990-05-01"] {
            put_lenenc_int(&mut row, v.len() as u64);
            row.extend_from_slice(v);
        }
        let out = app.binary_row(&row, &original, &Fake).expect("row");
        let mut want = vec![0x00, 0x00];
        want.extend_from_slice(&7i32.to_le_bytes());
        want.push(8);
        want.extend_from_slice(b"ann@x.io");
        want.extend_from_slice(&42i32.to_le_bytes());
        want.extend_from_slice(&[4, 0xC6, 0x07, 5, 1]);
        assert_eq!(out, want);
        // One buffer for every row, as the relay runs it: the next row replaces the last.
        let mut buf = b"left from the last row".to_vec();
        app.binary_row_into(&row, &original, &Fake, &mut buf)
            .expect("row");
        assert_eq!(buf, want);

        // An opened value that is not of its declared type is an error, not a guess.
        let mut bad = vec![0x00, 0x00];
        bad.extend_from_slice(&7i32.to_le_bytes());
        for v in [&b"E:ann@x.io"[..], b"E:forty-two", b"E:1990-05-01"] {
            put_lenenc_int(&mut bad, v.len() as u64);
            bad.extend_from_slice(v);
        }
        assert!(matches!(
            app.binary_row(&bad, &original, &Fake),
            Err(Failure::Cell { .. })
        ));

        // NULL stays NULL; a mask to NULL sets the bitmap bit.
        let mut d = defs();
        let support = plan(&mut d, &p, "support", &shape(), None, &Fake)
            .expect("plan")
            .expect("protected");
        let mut row = vec![0x00, 0b0000_1000]; // email (column 1) is NULL
        row.extend_from_slice(&7i32.to_le_bytes());
        for v in [&b"E:42"[..], b"E:1990-05-01"] {
            put_lenenc_int(&mut row, v.len() as u64);
            row.extend_from_slice(v);
        }
        let out = support.binary_row(&row, &original, &Fake).expect("row");
        let mut want = vec![0x00, 0b0010_1000];
        want.extend_from_slice(&7i32.to_le_bytes());
        want.extend_from_slice(&0i32.to_le_bytes());
        assert_eq!(out, want);
        assert_eq!(
            support.binary_row(&row[..5], &original, &Fake).err(),
            Some(Failure::Malformed)
        );
    }

    #[test]
    fn a_mixed_column_reads_plaintext_cells_by_each_roles_rule() {
        use crate::crypto::keyring::{Keyring, Purpose};
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::generate(dir.path(), &[(Purpose::Column, "*"), (Purpose::Mask, "*")])
            .expect("keys");
        let p = policy();
        let email = &p.columns()[0];
        let mixed = crate::backend::schema::Mixed::new(vec![(
            "shop".into(),
            "users".into(),
            "email".into(),
        )]);
        let during = KeyringCells(&ring, &mixed);
        let after = KeyringCells(&ring, &crate::backend::schema::NO_MIXED);
        let sealed = during.seal(email, b"ann@x.io", None).expect("seal");
        let only_email = Shape {
            columns: vec![
                Out::Plain,
                Out::Cell {
                    column: 0,
                    key: None,
                },
            ],
        };
        let row_of = |cell: &[u8]| text_row(&[Some(b"1"), Some(cell)]);
        let read = |role: &str, cells: &dyn Cells, cell: &[u8]| -> Result<Vec<u8>, Failure> {
            let mut d = vec![
                def("shop", "users", "id", MYSQL_TYPE_LONG),
                def("shop", "users", "email", MYSQL_TYPE_VAR_STRING),
            ];
            match plan(&mut d, &p, role, &only_email, None, cells)? {
                Some(plan) => plan.text_row(&row_of(cell), cells),
                None => Ok(row_of(cell)),
            }
        };
        // Plaintext and envelopes side by side: the app reads both as plaintext.
        for cell in [&b"ann@x.io"[..], &sealed] {
            assert_eq!(
                read("app", &during, cell).expect("app"),
                row_of(b"ann@x.io")
            );
        }
        // The masked role gets the mask of either, never the value.
        let masked = read("support", &during, b"ann@x.io").expect("support");
        assert_eq!(masked, read("support", &during, &sealed).expect("support"));
        assert!(!String::from_utf8_lossy(&masked).contains("ann@x.io"));
        // The ciphertext role gets an envelope for the plaintext cell, sealed on the way
        // out, and the stored envelope as it is.
        let out = read("auditor", &during, b"ann@x.io").expect("auditor");
        assert!(!String::from_utf8_lossy(&out).contains("ann@x.io"));
        let fresh = &out[3..];
        assert!(crate::sql::rewrite::is_envelope(email, fresh), "{out:?}");
        assert_eq!(during.open(email, fresh, None).expect("opens"), b"ann@x.io");
        assert_eq!(
            read("auditor", &during, &sealed).expect("auditor"),
            row_of(&sealed)
        );
        // The denied role is refused whatever the cell holds.
        assert!(matches!(
            read("analyst", &during, b"ann@x.io"),
            Err(Failure::Denied { .. })
        ));
        // An envelope's form that does not open is refused even while mixed.
        let mut forged = sealed.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(read("app", &during, &forged).is_err());
        // Done (no mixed state): a plaintext cell is refused, for every role that reads it.
        for role in ["app", "support"] {
            assert!(read(role, &after, b"ann@x.io").is_err(), "{role}");
        }
        assert_eq!(
            read("auditor", &after, b"ann@x.io").expect("auditor"),
            row_of(b"ann@x.io"),
            "a ciphertext role outside a migration gets what is stored"
        );
    }
}
