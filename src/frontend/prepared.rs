//! frontend::prepared: prepared statements on protected columns. The backend prepares the
//! rewritten statement, which may have more parameters than the client's (a written value
//! also feeds its blind index; a search covers every blind-index key). The client keeps
//! seeing its own parameter count; each COM_STMT_EXECUTE is rebuilt with the protected
//! parameters sealed or indexed, and long data for them is held until the execute.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::policy::{Policy, Protected, Storage};
use crate::sql::analyze::Refusal;
use crate::sql::rewrite::{ParamUse, RowKey, Sealer, canonical, canonical_row_key};
use crate::wire::packets::{lenenc_int, put_lenenc_int};
use crate::wire::types::*;

const UNSIGNED_PARAM: u8 = 0x80;

/// A prepared statement whose results or parameters involve protected columns.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Parameters the client sees.
    pub client_params: usize,
    /// Where each backend parameter comes from.
    pub uses: Vec<ParamUse>,
    /// Where the result's columns come from (None: it returns none).
    pub shape: Option<crate::sql::analyze::Shape>,
    /// Types bound by the last execute that sent them (type, flags) per client parameter.
    types: Vec<(u8, u8)>,
    /// Long data held for client parameters that feed protected columns.
    long: HashMap<usize, Vec<u8>>,
    /// Plain client parameters whose value went to the backend as long data.
    long_plain: std::collections::HashSet<usize>,
    /// Long data that could not be taken: the next execute is refused with this.
    poisoned: Option<Refusal>,
    /// The client's text, the schema layout it was planned under (`Snapshot::layout`:
    /// planned again when a migration's shadow window changes it) and the session state
    /// it was read under (`mux::state_key`: its database, sql_mode and character set).
    pub text: Vec<u8>,
    pub layout: u64,
    pub state: String,
    /// Prepared again on the backend since the client last bound types: the next execute
    /// sends them, whatever the client's flag says.
    rebind: bool,
}

fn bad(reason: &str) -> Refusal {
    Refusal {
        target: String::new(),
        reason: reason.to_owned(),
        denied: false,
    }
}

impl Prepared {
    pub fn new(
        client_params: usize,
        uses: Vec<ParamUse>,
        shape: Option<crate::sql::analyze::Shape>,
    ) -> Self {
        Self {
            client_params,
            uses,
            shape,
            ..Self::default()
        }
    }

    /// Where it was planned from: the client's text under the schema layout `layout` and
    /// the session state `state`.
    pub fn planned(mut self, text: Vec<u8>, layout: u64, state: String) -> Self {
        self.text = text;
        self.layout = layout;
        self.state = state;
        self
    }

    /// Planned again (the same text, the same parameters and result columns for the
    /// client) and prepared again on the backend under `layout`.
    pub fn replanned(
        &mut self,
        uses: Vec<ParamUse>,
        shape: Option<crate::sql::analyze::Shape>,
        layout: u64,
    ) {
        self.uses = uses;
        self.shape = shape;
        self.layout = layout;
        self.rebind = true;
        // Long data held for protected parameters stays (the client's indexes are the
        // same); plain long data went to the backend statement just closed.
        if !self.long_plain.is_empty() {
            self.long_plain.clear();
            self.poisoned = Some(bad(
                "the statement was prepared again (a migration step) after its long data was sent; send the long data again",
            ));
        }
    }

    /// Whether executes go to the backend as the client sends them (every parameter plain,
    /// in order, and no long data held).
    fn identity(&self) -> bool {
        self.uses.len() == self.client_params
            && self
                .uses
                .iter()
                .enumerate()
                .all(|(i, u)| matches!(u, ParamUse::Plain(p) if *p == i))
    }

    /// Whether a client parameter feeds a protected column (its long data is held here).
    fn is_protected(&self, param: usize) -> bool {
        self.uses
            .iter()
            .any(|u| !matches!(u, ParamUse::Plain(p) if *p == param) && param_of(u) == param)
    }

    /// The backend's index of a plain client parameter.
    fn backend_index(&self, param: usize) -> Option<usize> {
        self.uses
            .iter()
            .position(|u| matches!(u, ParamUse::Plain(p) if *p == param))
    }

    /// COM_STMT_SEND_LONG_DATA: returns the packet to forward (parameter index remapped), or
    /// None when the data is held for a protected parameter.
    pub fn long_data(&mut self, payload: &[u8], limit: usize) -> Result<Option<Vec<u8>>, Refusal> {
        let index = payload
            .get(5..7)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| bad("malformed long data"))?;
        let data = &payload[7..];
        if self.is_protected(index) {
            let held = self.long.entry(index).or_default();
            if held.len() + data.len() > limit {
                return Err(bad(
                    "long data for an encrypted parameter exceeds max_packet_bytes",
                ));
            }
            held.extend_from_slice(data);
            return Ok(None);
        }
        let backend = self
            .backend_index(index)
            .ok_or_else(|| bad("long data for an unknown parameter"))?;
        self.long_plain.insert(index);
        let mut out = payload[..5].to_vec();
        out.extend_from_slice(&(backend as u16).to_le_bytes());
        out.extend_from_slice(data);
        Ok(Some(out))
    }

    /// COM_STMT_RESET drops held long data.
    pub fn reset(&mut self) {
        self.long.clear();
        self.long_plain.clear();
        self.poisoned = None;
    }

    /// Remembers a long-data failure for the next execute.
    pub fn poison(&mut self, r: Refusal) {
        self.long.clear();
        self.poisoned = Some(r);
    }

    /// Rebuilds a COM_STMT_EXECUTE for the backend's parameters (None: the client's own
    /// goes as it is).
    pub fn execute(
        &mut self,
        payload: &[u8],
        policy: &Policy,
        sealer: &dyn Sealer,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        if let Some(r) = self.poisoned.take() {
            self.reset();
            return Err(r);
        }
        let n = self.client_params;
        if self.identity() && self.long.is_empty() && !self.rebind {
            // The types are kept all the same, for an execute after a new prepare.
            let at = 10 + n.div_ceil(8);
            if n > 0
                && payload.get(at) == Some(&1)
                && let Some(raw) = payload.get(at + 1..at + 1 + 2 * n)
            {
                self.types.clear();
                self.types.extend(raw.chunks(2).map(|c| (c[0], c[1])));
            }
            return Ok(None);
        }
        self.rebind = false;
        let head = payload.get(..10).ok_or_else(|| bad("malformed execute"))?;
        let bitmap_len = n.div_ceil(8);
        let mut at = 10;
        let nulls = if n > 0 {
            payload
                .get(at..at + bitmap_len)
                .ok_or_else(|| bad("malformed execute"))?
        } else {
            &[][..]
        };
        at += bitmap_len;
        if n > 0 {
            let bound = *payload.get(at).ok_or_else(|| bad("malformed execute"))?;
            at += 1;
            if bound == 1 {
                let raw = payload
                    .get(at..at + 2 * n)
                    .ok_or_else(|| bad("malformed execute"))?;
                self.types.clear();
                self.types.extend(raw.chunks(2).map(|c| (c[0], c[1])));
                at += 2 * n;
            }
            if self.types.len() != n {
                return Err(bad("execute without parameter types"));
            }
        }
        // The client's values: None for NULL; the bytes, and whether they are raw long data
        // rather than the packet's encoding. Values sent as long data are not in the packet.
        // Borrowed from the packet (no copy per parameter); long data is owned.
        let mut values: Vec<Option<(Cow<'_, [u8]>, bool)>> = Vec::with_capacity(n);
        for i in 0..n {
            if nulls[i / 8] & (1 << (i % 8)) != 0 {
                values.push(None);
                continue;
            }
            if !self.long.is_empty()
                && let Some(data) = self.long.remove(&i)
            {
                values.push(Some((data.into(), true)));
                continue;
            }
            if !self.long_plain.is_empty() && self.long_plain.contains(&i) {
                values.push(Some((Vec::new().into(), true)));
                continue;
            }
            let (ty, _) = self.types[i];
            let end = binary_value_end(payload, at, ty)
                .ok_or_else(|| bad("malformed parameter value"))?;
            values.push(Some((payload[at..end].into(), false)));
            at = end;
        }
        let long_plain = std::mem::take(&mut self.long_plain);
        let m = self.uses.len();
        // The flags byte (cursor type) is kept: cursor rows are transformed on fetch.
        let mut out = Vec::with_capacity(payload.len() + 64 * m);
        out.extend_from_slice(head);
        if m == 0 {
            return Ok(Some(out));
        }
        let mut bitmap = vec![0u8; m.div_ceil(8)];
        let mut types = Vec::with_capacity(2 * m);
        let mut body = Vec::new();
        // A search's slots are consecutive uses of one parameter: its indexes under every
        // key in use are computed once for all of them.
        let mut searched: Option<(usize, Vec<[u8; 32]>)> = None;
        for (j, u) in self.uses.iter().enumerate() {
            let param = param_of(u);
            let Some((raw, from_long)) = values
                .get(param)
                .ok_or_else(|| bad("parameter out of range"))?
            else {
                bitmap[j / 8] |= 1 << (j % 8);
                types.extend_from_slice(&[MYSQL_TYPE_NULL, 0]);
                continue;
            };
            match u {
                ParamUse::Plain(i) => {
                    let (ty, flags) = self.types[*i];
                    types.extend_from_slice(&[ty, flags]);
                    if long_plain.is_empty() || !long_plain.contains(i) {
                        body.extend_from_slice(raw);
                    }
                }
                ParamUse::MixedPlain { column, .. } => {
                    // Security: the plaintext goes to the server only while a migration has
                    // plaintext rows of the column to compare it with.
                    let col = find(policy, column)?;
                    let (ty, flags) = self.types[param];
                    let plain = sealer
                        .mixed(col)
                        .then(|| as_text(ty, flags, raw, *from_long))
                        .flatten()
                        .and_then(|t| canonical(col, &t).ok().map(Cow::into_owned));
                    match plain {
                        Some(v) => {
                            types.extend_from_slice(&[MYSQL_TYPE_BLOB, 0]);
                            put_lenenc_int(&mut body, v.len() as u64);
                            body.extend_from_slice(&v);
                        }
                        None => {
                            bitmap[j / 8] |= 1 << (j % 8);
                            types.extend_from_slice(&[MYSQL_TYPE_NULL, 0]);
                        }
                    }
                }
                ParamUse::Seal { column, .. }
                | ParamUse::BlindWrite { column, .. }
                | ParamUse::BlindSearch { column, .. } => {
                    let col = find(policy, column)?;
                    let (ty, flags) = self.types[param];
                    let text = as_text(ty, flags, raw, *from_long).ok_or_else(|| Refusal {
                        target: col.scope(),
                        reason: "parameter type not supported for an encrypted column".into(),
                        denied: false,
                    })?;
                    // A ciphertext role restoring cells: a value that opens as this
                    // column's envelope goes on as sent (its blind index from what it holds).
                    let opened = match u {
                        ParamUse::Seal { keep: true, .. }
                        | ParamUse::BlindWrite { keep: true, .. } => sealer.open(col, &text, None),
                        _ => None,
                    };
                    let kept = opened.is_some();
                    let v = match opened {
                        Some(plain) => Cow::Owned(plain),
                        None => canonical(col, &text)?,
                    };
                    let bytes = match u {
                        ParamUse::Seal { .. } if kept => text.to_vec(),
                        ParamUse::Seal { row_key, .. } => {
                            let key = match row_key {
                                None => None,
                                Some(RowKey::Literal(k)) => Some(k.clone()),
                                Some(RowKey::Param(j)) => {
                                    let Some(Some((raw, from_long))) = values.get(*j) else {
                                        return Err(Refusal {
                                            target: col.scope(),
                                            reason: "the row key may not be NULL".into(),
                                            denied: false,
                                        });
                                    };
                                    let (kt, kf) = self.types[*j];
                                    let text =
                                        as_text(kt, kf, raw, *from_long).ok_or_else(|| {
                                            bad("row key parameter type not supported")
                                        })?;
                                    Some(canonical_row_key(&text))
                                }
                            };
                            let env =
                                sealer.seal(col, &v, key.as_deref()).map_err(|e| Refusal {
                                    target: col.scope(),
                                    reason: e.to_string(),
                                    denied: false,
                                })?;
                            match col.storage {
                                Storage::Binary => env,
                                Storage::Base64 => {
                                    use base64::Engine;
                                    base64::engine::general_purpose::STANDARD
                                        .encode(env)
                                        .into_bytes()
                                }
                            }
                        }
                        ParamUse::BlindWrite { .. } => sealer
                            .blind(col, &v)
                            .map_err(|e| Refusal {
                                target: col.scope(),
                                reason: e.to_string(),
                                denied: false,
                            })?
                            .to_vec(),
                        ParamUse::BlindSearch { key, slots, .. } => {
                            let all = match searched.take() {
                                Some((p, all)) if p == param => all,
                                _ => sealer.blind_all(col, &v).map_err(|e| Refusal {
                                    target: col.scope(),
                                    reason: e.to_string(),
                                    denied: false,
                                })?,
                            };
                            if all.len() > *slots {
                                return Err(Refusal {
                                    target: col.scope(),
                                    reason: format!(
                                        "{} blind-index keys are in use and this statement was prepared for {slots}: prepare it again",
                                        all.len()
                                    ),
                                    denied: false,
                                });
                            }
                            let idx = all
                                .get(*key)
                                .or(all.first())
                                .map(|k| k.to_vec())
                                .unwrap_or_default();
                            searched = Some((param, all));
                            idx
                        }
                        ParamUse::Plain(_) | ParamUse::MixedPlain { .. } => Vec::new(),
                    };
                    types.extend_from_slice(&[MYSQL_TYPE_BLOB, 0]);
                    put_lenenc_int(&mut body, bytes.len() as u64);
                    body.extend_from_slice(&bytes);
                }
            }
        }
        out.extend_from_slice(&bitmap);
        out.push(1);
        out.extend_from_slice(&types);
        out.extend_from_slice(&body);
        Ok(Some(out))
    }
}

fn param_of(u: &ParamUse) -> usize {
    match u {
        ParamUse::Plain(p) => *p,
        ParamUse::Seal { param, .. }
        | ParamUse::BlindWrite { param, .. }
        | ParamUse::BlindSearch { param, .. }
        | ParamUse::MixedPlain { param, .. } => *param,
    }
}

fn find<'p>(policy: &'p Policy, scope: &str) -> Result<&'p Protected, Refusal> {
    policy
        .columns()
        .iter()
        .find(|c| c.key_scope() == scope)
        .ok_or_else(|| bad("the policy changed since the statement was prepared; prepare it again"))
}

/// The text form of a binary parameter value (`from_long`: raw long data, no length prefix).
/// Strings are borrowed from the packet.
fn as_text(ty: u8, flags: u8, raw: &[u8], from_long: bool) -> Option<Cow<'_, [u8]>> {
    let unsigned = flags & UNSIGNED_PARAM != 0;
    let int = |bytes: &[u8]| -> Option<String> {
        // Exactly the type's width (long data can be any length).
        let width = match ty {
            MYSQL_TYPE_TINY => 1,
            MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => 2,
            MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => 4,
            _ => 8,
        };
        if bytes.len() != width {
            return None;
        }
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        let signed_extend = !unsigned && bytes.last().is_some_and(|x| x & 0x80 != 0);
        if signed_extend {
            for x in &mut b[bytes.len()..] {
                *x = 0xFF;
            }
        }
        Some(if unsigned {
            u64::from_le_bytes(b).to_string()
        } else {
            i64::from_le_bytes(b).to_string()
        })
    };
    Some(Cow::Owned(match ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR | MYSQL_TYPE_LONG
        | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONGLONG => int(raw)?.into_bytes(),
        MYSQL_TYPE_FLOAT => f32::from_le_bytes(raw.try_into().ok()?)
            .to_string()
            .into_bytes(),
        MYSQL_TYPE_DOUBLE => f64::from_le_bytes(raw.try_into().ok()?)
            .to_string()
            .into_bytes(),
        MYSQL_TYPE_DATE | MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP => {
            let b = raw.get(1..)?;
            let (y, m, d) = match b.len() {
                0 => (0, 0, 0),
                _ => (
                    u16::from_le_bytes([*b.first()?, *b.get(1)?]),
                    *b.get(2)?,
                    *b.get(3)?,
                ),
            };
            let (h, mi, s) = if b.len() >= 7 {
                (b[4], b[5], b[6])
            } else {
                (0, 0, 0)
            };
            if ty == MYSQL_TYPE_DATE || b.len() <= 4 && h == 0 {
                format!("{y:04}-{m:02}-{d:02}").into_bytes()
            } else {
                format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}").into_bytes()
            }
        }
        MYSQL_TYPE_TIME => return None,
        _ if from_long => return Some(Cow::Borrowed(raw)),
        _ => {
            let (len, n) = lenenc_int(raw)?;
            return raw
                .get(n..n + usize::try_from(len).ok()?)
                .map(Cow::Borrowed);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `execute` fuzz target: long data for an integer parameter is not the
    /// integer's width (it panicked slicing 17 bytes into 8).
    #[test]
    fn integer_parameters_must_have_their_width() {
        assert_eq!(as_text(MYSQL_TYPE_LONG, 0, &[1; 17], true), None);
        assert_eq!(as_text(MYSQL_TYPE_LONG, 0, &[1, 0], true), None);
        assert_eq!(
            as_text(MYSQL_TYPE_LONG, 0, &[7, 0, 0, 0], true),
            Some(Cow::Borrowed(&b"7"[..]))
        );
        assert_eq!(
            as_text(MYSQL_TYPE_TINY, 0, &[0xFF], false),
            Some(Cow::Borrowed(&b"-1"[..]))
        );
        assert_eq!(
            as_text(MYSQL_TYPE_TINY, UNSIGNED_PARAM, &[0xFF], false),
            Some(Cow::Borrowed(&b"255"[..]))
        );
    }

    struct Fake;
    impl Sealer for Fake {
        fn seal(
            &self,
            _: &Protected,
            p: &[u8],
            _: Option<&[u8]>,
        ) -> Result<Vec<u8>, crate::crypto::Error> {
            Ok([b"S:", p].concat())
        }
        fn blind(&self, _: &Protected, p: &[u8]) -> Result<[u8; 32], crate::crypto::Error> {
            let mut o = [b'.'; 32];
            o[..p.len().min(32)].copy_from_slice(&p[..p.len().min(32)]);
            Ok(o)
        }
        fn blind_all(
            &self,
            c: &Protected,
            p: &[u8],
        ) -> Result<Vec<[u8; 32]>, crate::crypto::Error> {
            Ok(vec![self.blind(c, p)?])
        }
        fn blind_keys(&self, _: &Protected) -> usize {
            1
        }
        /// Fake envelopes are `S[plaintext]`.
        fn open(&self, _: &Protected, stored: &[u8], _: Option<&[u8]>) -> Option<Vec<u8>> {
            stored
                .strip_prefix(b"S[")
                .and_then(|s| s.strip_suffix(b"]"))
                .map(<[u8]>::to_vec)
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.add_toml("[[column]]\ntable = \"t\"\ncolumn = \"email\"\ntype = \"varchar(50)\"\nblind_index = \"b\"\nroles = { app = \"plaintext\" }\n[[column]]\ntable = \"t\"\ncolumn = \"n\"\ntype = \"int\"\nroles = { app = \"plaintext\" }\n", "t").expect("policy");
        p
    }

    fn execute(types: &[(u8, u8)], values: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut p = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0];
        let mut bitmap = vec![0u8; values.len().div_ceil(8)];
        for (i, v) in values.iter().enumerate() {
            if v.is_none() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        p.extend_from_slice(&bitmap);
        p.push(1);
        for (t, f) in types {
            p.extend_from_slice(&[*t, *f]);
        }
        for v in values.iter().flatten() {
            p.extend_from_slice(v);
        }
        p
    }

    fn lenenc(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_lenenc_int(&mut v, s.len() as u64);
        v.extend_from_slice(s);
        v
    }

    #[test]
    fn execute_is_rebuilt_with_sealed_and_indexed_parameters() {
        let p = policy();
        let uses = vec![
            ParamUse::Plain(0),
            ParamUse::Seal {
                param: 1,
                column: "t.email".into(),
                row_key: None,
                keep: false,
            },
            ParamUse::BlindWrite {
                param: 1,
                column: "t.email".into(),
                keep: false,
            },
            ParamUse::Seal {
                param: 2,
                column: "t.n".into(),
                row_key: None,
                keep: false,
            },
        ];
        let mut prep = Prepared::new(3, uses, None);
        let client = execute(
            &[
                (MYSQL_TYPE_LONG, 0),
                (MYSQL_TYPE_VAR_STRING, 0),
                (MYSQL_TYPE_LONGLONG, 0),
            ],
            &[
                Some(5i32.to_le_bytes().to_vec()),
                Some(lenenc(b"a@x.io")),
                Some((-42i64).to_le_bytes().to_vec()),
            ],
        );
        let out = prep
            .execute(&client, &p, &Fake)
            .expect("rebuilt")
            .expect("rebuilt");
        let want = execute(
            &[
                (MYSQL_TYPE_LONG, 0),
                (MYSQL_TYPE_BLOB, 0),
                (MYSQL_TYPE_BLOB, 0),
                (MYSQL_TYPE_BLOB, 0),
            ],
            &[
                Some(5i32.to_le_bytes().to_vec()),
                Some(lenenc(b"S:a@x.io")),
                Some(lenenc(b"a@x.io..........................")),
                Some(lenenc(b"S:-42")),
            ],
        );
        assert_eq!(out, want);

        // Re-execute without re-sending types, with a NULL: NULL stays NULL everywhere it feeds.
        let mut again = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0b0000_0010, 0];
        again.extend_from_slice(&6i32.to_le_bytes());
        again.extend_from_slice(&1i64.to_le_bytes());
        let out = prep
            .execute(&again, &p, &Fake)
            .expect("rebuilt")
            .expect("rebuilt");
        assert_eq!(
            out[10], 0b0000_0110,
            "both backend parameters fed by the NULL are NULL"
        );
    }

    #[test]
    fn a_restoring_role_keeps_envelopes_and_seals_anything_else() {
        let p = policy();
        let uses = vec![
            ParamUse::Seal {
                param: 0,
                column: "t.email".into(),
                row_key: None,
                keep: true,
            },
            ParamUse::BlindWrite {
                param: 0,
                column: "t.email".into(),
                keep: true,
            },
        ];
        let mut prep = Prepared::new(1, uses, None);
        let run = |prep: &mut Prepared, v: &[u8]| {
            let client = execute(&[(MYSQL_TYPE_VAR_STRING, 0)], &[Some(lenenc(v))]);
            prep.execute(&client, &p, &Fake)
                .expect("rebuilt")
                .expect("rebuilt")
        };
        let blob2 = [(MYSQL_TYPE_BLOB, 0), (MYSQL_TYPE_BLOB, 0)];
        // An envelope goes on as sent; its blind index is of what it holds.
        assert_eq!(
            run(&mut prep, b"S[a@x.io]"),
            execute(
                &blob2,
                &[
                    Some(lenenc(b"S[a@x.io]")),
                    Some(lenenc(b"a@x.io..........................")),
                ],
            )
        );
        // Anything else is plaintext, sealed.
        let mut prep = Prepared::new(
            1,
            vec![ParamUse::Seal {
                param: 0,
                column: "t.email".into(),
                row_key: None,
                keep: true,
            }],
            None,
        );
        assert_eq!(
            run(&mut prep, b"b@x.io"),
            execute(&blob2[..1], &[Some(lenenc(b"S:b@x.io"))])
        );
    }

    #[test]
    fn long_data_is_held_for_protected_parameters_and_remapped_for_others() {
        let p = policy();
        let uses = vec![
            ParamUse::Seal {
                param: 0,
                column: "t.email".into(),
                row_key: None,
                keep: false,
            },
            ParamUse::BlindWrite {
                param: 0,
                column: "t.email".into(),
                keep: false,
            },
            ParamUse::Plain(1),
        ];
        let mut prep = Prepared::new(2, uses, None);
        let long = |param: u16, data: &[u8]| {
            [&[0x18, 7, 0, 0, 0][..], &param.to_le_bytes(), data].concat()
        };
        assert_eq!(prep.long_data(&long(0, b"a@"), 100).expect("held"), None);
        assert_eq!(prep.long_data(&long(0, b"x.io"), 100).expect("held"), None);
        assert_eq!(
            prep.long_data(&long(1, b"zz"), 100).expect("forwarded"),
            Some(long(2, b"zz"))
        );
        assert!(prep.long_data(&long(0, &[0; 200]), 100).is_err(), "bounded");
        let client = execute(&[(MYSQL_TYPE_BLOB, 0), (MYSQL_TYPE_BLOB, 0)], &[]);
        let client = [
            &client[..10],
            &[0, 1, MYSQL_TYPE_BLOB, 0, MYSQL_TYPE_BLOB, 0],
        ]
        .concat();
        let out = prep
            .execute(&client, &p, &Fake)
            .expect("rebuilt")
            .expect("rebuilt");
        let tail = &out[10..];
        assert_eq!(tail[0], 0, "no NULLs");
        assert!(
            out.windows(8).any(|w| w == b"S:a@x.io"),
            "held long data was sealed"
        );
    }

    #[test]
    fn malformed_executes_are_refused() {
        let p = policy();
        let mut prep = Prepared::new(
            1,
            vec![ParamUse::Seal {
                param: 0,
                column: "t.email".into(),
                row_key: None,
                keep: false,
            }],
            None,
        );
        for bad in [
            &[0x17u8, 1][..],
            &[0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
            &[0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xFD, 0, 0xFC],
        ] {
            assert!(prep.execute(bad, &p, &Fake).is_err(), "{bad:?}");
        }
    }
}
