//! migrate::verify: reads every cell of every policy column and says which are not as they
//! must be: not an envelope, under a key the keyring does not have or has retired, not
//! opening, or with a blind index that matches no key in use. Streams each table (memory
//! stays flat whatever its size) and reports counts only, never values or keys.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;

use super::plan::{self, quote};
use crate::crypto::keyring::{Keyring, Purpose, Status};
use crate::policy::Policy;
use crate::sql::rewrite::{canonical_row_key, is_envelope, open_cell};

/// What one column holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnReport {
    pub database: String,
    pub table: String,
    pub column: String,
    /// As `myveil.columns` records it (None: no migration touched it).
    pub state: Option<String>,
    pub cells: u64,
    pub nulls: u64,
    pub plaintext: u64,
    pub unknown_key: u64,
    /// Under a decrypt-only key (being retired).
    pub retired_key: u64,
    pub unopenable: u64,
    pub blind_mismatch: u64,
    /// Blind index under a key in use that is not the primary (a rotation not finished).
    pub blind_stale: u64,
    /// Cells per column key id.
    pub keys: Vec<(u32, u64)>,
    /// Blind indexes per blind-index key id.
    pub blind_keys: Vec<(u32, u64)>,
}

impl ColumnReport {
    /// Cells that are not as they must be.
    pub fn problems(&self) -> u64 {
        self.plaintext + self.unknown_key + self.retired_key + self.unopenable + self.blind_mismatch
    }
}

/// Scans every policy column of every live table.
pub async fn verify(
    conn: &mut mysql_async::Conn,
    policy: &Policy,
    keyring: &Keyring,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<Vec<ColumnReport>, mysql_async::Error> {
    conn.query_drop("SET NAMES utf8mb4").await?;
    let (_, tables) = plan::load(conn, policy, 0).await?;
    let mut out = Vec::new();
    for table in &tables {
        for col in policy
            .columns()
            .iter()
            .filter(|c| c.is_in(&table.database, &table.name))
        {
            let Some(live) = table.column(&col.column) else {
                continue;
            };
            let state =
                super::state::mixed_or_done(conn, &table.database, &table.name, &live.name).await?;
            let mut r = ColumnReport {
                database: table.database.clone(),
                table: table.name.clone(),
                column: live.name.clone(),
                state,
                ..ColumnReport::default()
            };
            let blind = col
                .blind_index
                .as_deref()
                .filter(|b| table.column(b).is_some());
            let sql = format!(
                "SELECT {}, {}, {} FROM {}.{}",
                quote(&live.name),
                blind.map_or_else(|| "NULL".into(), quote),
                col.row_key.as_deref().map_or_else(|| "NULL".into(), quote),
                quote(&table.database),
                quote(&table.name)
            );
            let scope = format!("{}.{}.{}", table.database, table.name, live.name);
            // Every blind-index key that may still hold a cell's index (all but retired),
            // the primary first.
            let primary_blind = keyring
                .primary(Purpose::BlindIndex, col.key_scope())
                .map(|(id, _)| id);
            let mut blind_ids: Vec<(u32, &crate::crypto::keyring::Key)> = keyring
                .infos()
                .filter(|i| {
                    i.purpose == Purpose::BlindIndex
                        && i.status != Status::Retired
                        && (i.scope == col.key_scope() || i.scope == "*")
                })
                .filter_map(|i| keyring.key(i.id).map(|k| (i.id, k)))
                .collect();
            blind_ids.sort_by_key(|(id, _)| Some(*id) != primary_blind);
            let mut rows = conn.query_iter(sql).await?;
            while let Some(row) = rows.next().await? {
                r.cells += 1;
                if r.cells.is_multiple_of(10_000) {
                    progress(&scope, r.cells);
                }
                let get = |i: usize| match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                };
                let Some(stored) = get(0) else {
                    r.nulls += 1;
                    continue;
                };
                if !is_envelope(col, stored) {
                    r.plaintext += 1;
                    continue;
                }
                let envelope = match col.storage {
                    crate::policy::Storage::Binary => stored.to_vec(),
                    crate::policy::Storage::Base64 => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(stored)
                            .unwrap_or_default()
                    }
                };
                let Ok(id) = crate::crypto::envelope::key_id(&envelope) else {
                    r.unopenable += 1;
                    continue;
                };
                match r.keys.iter_mut().find(|(k, _)| *k == id) {
                    Some((_, n)) => *n += 1,
                    None => r.keys.push((id, 1)),
                }
                match keyring.infos().find(|i| i.id == id) {
                    None => {
                        r.unknown_key += 1;
                        continue;
                    }
                    Some(i) if i.status == Status::Retired => {
                        r.retired_key += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                let row_key = get(2).map(canonical_row_key);
                let Ok(plain) = open_cell(keyring, col, stored, row_key.as_deref()) else {
                    r.unopenable += 1;
                    continue;
                };
                if blind.is_some() {
                    let stored_idx = get(1);
                    let under = blind_ids.iter().find(|(_, k)| {
                        stored_idx.is_some_and(|b| {
                            crate::crypto::blind::blind_index_with(
                                k.mac(),
                                &col.table,
                                &col.column,
                                col.normalize,
                                &plain,
                            )
                            .as_slice()
                                == b
                        })
                    });
                    match under {
                        Some((id, _)) => {
                            match r.blind_keys.iter_mut().find(|(k, _)| k == id) {
                                Some((_, n)) => *n += 1,
                                None => r.blind_keys.push((*id, 1)),
                            }
                            if Some(*id) != primary_blind {
                                r.blind_stale += 1;
                            }
                        }
                        None => r.blind_mismatch += 1,
                    }
                }
            }
            r.keys.sort_unstable();
            r.blind_keys.sort_unstable();
            progress(&scope, r.cells);
            out.push(r);
        }
    }
    Ok(out)
}

/// The report as the CLI prints it.
pub fn render(reports: &[ColumnReport]) -> String {
    let mut o = String::new();
    for r in reports {
        let verdict = if r.problems() == 0 { "ok" } else { "FAILED" };
        let _ = writeln!(
            o,
            "{}.{}.{}: {verdict}, {} cells ({} NULL), state {}",
            r.database,
            r.table,
            r.column,
            r.cells,
            r.nulls,
            r.state.as_deref().unwrap_or("done (no migration recorded)")
        );
        for (what, n) in [
            ("not an envelope (plaintext)", r.plaintext),
            ("under a key the keyring does not have", r.unknown_key),
            ("under a retired (decrypt-only) key", r.retired_key),
            (
                "do not open (tampered, moved, or a wrong key)",
                r.unopenable,
            ),
            ("blind index matches no key in use", r.blind_mismatch),
            ("blind index under an older key (re-encrypt)", r.blind_stale),
        ] {
            if n > 0 {
                let _ = writeln!(o, "  {n} cells {what}");
            }
        }
        if !r.keys.is_empty() {
            let keys: Vec<String> = r
                .keys
                .iter()
                .map(|(k, n)| format!("key {k}: {n}"))
                .collect();
            let _ = writeln!(o, "  cells by key: {}", keys.join(", "));
        }
        if !r.blind_keys.is_empty() {
            let keys: Vec<String> = r
                .blind_keys
                .iter()
                .map(|(k, n)| format!("key {k}: {n}"))
                .collect();
            let _ = writeln!(o, "  blind indexes by key: {}", keys.join(", "));
        }
    }
    o
}
