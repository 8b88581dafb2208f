//! admin::backups: backups on the admin port — start one as a background job and follow its
//! progress, list the backup directory, verify a file's signature and digests.
//!
//! Restores are not offered here on purpose: they need the RSA private key, which never
//! lives on the proxy host (ADR 0004; it is also what keeps RUSTSEC-2023-0071 away).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, ApiError, Authenticated};
use crate::backup;

/// Finished jobs kept for `GET /v1/backups/jobs/{id}`.
const KEEP_JOBS: usize = 32;

#[derive(Debug, Clone, Default)]
struct JobStatus {
    state: &'static str,
    started_at: u64,
    finished_at: Option<u64>,
    started_by: String,
    database: String,
    table: String,
    rows: u64,
    bytes: u64,
    file: Option<String>,
    file_bytes: Option<u64>,
    sha256: Option<String>,
    error: Option<String>,
}

impl JobStatus {
    fn json(&self, id: &str) -> Value {
        json!({
            "id": id,
            "state": self.state,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "started_by": self.started_by,
            "progress": { "database": self.database, "table": self.table, "rows": self.rows, "bytes": self.bytes },
            "file": self.file,
            "file_bytes": self.file_bytes,
            "sha256": self.sha256,
            "error": self.error,
        })
    }
}

/// Backup jobs of this instance: at most one runs at a time.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, JobStatus>>,
    running: Mutex<Option<String>>,
}

fn update(jobs: &Arc<AdminState>, id: &str, f: impl FnOnce(&mut JobStatus)) {
    if let Ok(mut j) = jobs.backups.jobs.lock()
        && let Some(s) = j.get_mut(id)
    {
        f(s);
    }
}

/// Clears the running job when dropped; a job still marked running then failed.
struct Running(Arc<AdminState>, String);

impl Drop for Running {
    fn drop(&mut self) {
        update(&self.0, &self.1, |s| {
            if s.state == "running" {
                s.state = "failed";
                s.error = Some("the backup job stopped unexpectedly".into());
                s.finished_at = Some(crate::tokens::now_secs());
            }
        });
        if let Ok(mut r) = self.0.backups.running.lock() {
            *r = None;
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StartBackup {
    /// Databases to dump instead of `[backup] databases`.
    databases: Option<Vec<String>>,
}

fn dir(state: &AdminState) -> PathBuf {
    state.shared.config.resolve(&state.shared.config.backup.dir)
}

fn verify_key(state: &AdminState) -> Result<backup::VerifyKey, ApiError> {
    let config = &state.shared.config;
    let path = config
        .backup
        .verify_key
        .as_ref()
        .map(|p| config.resolve(p))
        .unwrap_or_else(|| {
            backup::keys::verify_key_path(&config.resolve(&config.backup.signing_key))
        });
    backup::VerifyKey::load(&path).map_err(|e| {
        tracing::error!(error = %e, "cannot load the backup verifying key");
        ApiError::BadRequest(
            "backups are not set up: no verifying key (run `myveil keygen`)".into(),
        )
    })
}

pub async fn start(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    body: Option<Json<StartBackup>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let config = &state.shared.config;
    let databases = body
        .databases
        .unwrap_or_else(|| config.backup.databases.clone());
    if databases.is_empty() {
        return Err(ApiError::BadRequest(
            "no databases to back up: set [backup] databases or give databases".into(),
        ));
    }
    let opts = backup::CreateOptions {
        opts: backup::connect_opts(config).map_err(|e| {
            tracing::error!(error = %e, "backup connection options");
            ApiError::Internal
        })?,
        databases,
        dir: dir(&state),
        public_key: config.resolve(&config.backup.public_key),
        signing_key: config.resolve(&config.backup.signing_key),
        source_host: config.backend.address.clone(),
        policy: Some(state.shared.protection.load().policy.clone()),
        retention: config.backup.retention,
    };
    let id = hex::encode(rand::random::<[u8; 8]>());
    {
        let mut running = state
            .backups
            .running
            .lock()
            .map_err(|_| ApiError::Internal)?;
        if running.is_some() {
            return Err(ApiError::Conflict("a backup is already running"));
        }
        *running = Some(id.clone());
        let mut jobs = state.backups.jobs.lock().map_err(|_| ApiError::Internal)?;
        while jobs.len() >= KEEP_JOBS {
            let oldest = jobs
                .iter()
                .filter(|(_, s)| s.state != "running")
                .min_by_key(|(_, s)| s.started_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => jobs.remove(&k),
                None => break,
            };
        }
        jobs.insert(
            id.clone(),
            JobStatus {
                state: "running",
                started_at: crate::tokens::now_secs(),
                started_by: who.0.sub.clone(),
                ..JobStatus::default()
            },
        );
    }
    tracing::info!(by = %who.0.sub, job = %id, "backup started");
    let job_state = state.clone();
    let job_id = id.clone();
    tokio::spawn(async move {
        // However the job ends (even by a panic), the next backup may start.
        let _running = Running(job_state.clone(), job_id.clone());
        let progress_state = job_state.clone();
        let progress_id = job_id.clone();
        let progress = move |p: &backup::Progress<'_>| {
            update(&progress_state, &progress_id, |s| {
                // The last phases report no table: keep the last one named.
                if !p.table.is_empty() && s.table != p.table {
                    s.table = p.table.to_owned();
                }
                if !p.database.is_empty() && s.database != p.database {
                    s.database = p.database.to_owned();
                }
                s.rows = p.rows;
                s.bytes = p.bytes;
            });
        };
        let result = backup::create(&opts, &progress).await;
        update(&job_state, &job_id, |s| {
            s.finished_at = Some(crate::tokens::now_secs());
            match &result {
                Ok(created) => {
                    s.state = "done";
                    s.file = created
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    s.file_bytes = Some(created.bytes);
                    s.sha256 = Some(created.file_sha256.clone());
                }
                Err(e) => {
                    s.state = "failed";
                    // Backup errors name files, tables and checks, never values or keys.
                    s.error = Some(e.to_string());
                }
            }
        });
        match &result {
            Ok(c) => {
                tracing::info!(job = %job_id, file = %c.path.display(), bytes = c.bytes, "backup done")
            }
            Err(e) => tracing::error!(job = %job_id, error = %e, "backup failed"),
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "state": "running" })),
    ))
}

pub async fn job(
    State(state): State<Arc<AdminState>>,
    _who: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let jobs = state.backups.jobs.lock().map_err(|_| ApiError::Internal)?;
    let status = jobs.get(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(status.json(&id)))
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    _who: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let trusted = verify_key(&state).ok();
    let dir = dir(&state);
    let listed = tokio::task::spawn_blocking(move || backup::list(&dir, trusted.as_ref()))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot list backups");
            ApiError::Internal
        })?;
    let items: Vec<Value> = listed
        .iter()
        .rev()
        .map(|l| {
            let name = l
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            // Manifest fields are shown only when the signature vouches for them.
            let m = l.manifest.as_ref().filter(|_| l.signature_ok == Some(true));
            json!({
                "name": name,
                "bytes": l.bytes,
                "created_at": m.map(|m| m.created_at.clone()),
                "databases": m.map(|m| m.databases.iter().map(|d| d.name.clone()).collect::<Vec<_>>()),
                "rows": m.map(|m| m.databases.iter().flat_map(|d| d.tables.iter()).fold(0u64, |n, t| n.saturating_add(t.rows))),
                "key_ids": m.map(|m| m.key_ids.clone()),
                "signature_ok": l.signature_ok,
                "error": l.error,
            })
        })
        .collect();
    Ok(Json(json!({ "backups": items })))
}

pub async fn verify(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Security: only a file the listing would show; no path from the request reaches open().
    let dir = dir(&state);
    let path = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || backup::backup_files(&dir))
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|_| ApiError::Internal)?
    }
    .into_iter()
    .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
    .ok_or(ApiError::NotFound)?;
    let trusted = verify_key(&state)?;
    let checked = tokio::task::spawn_blocking(move || {
        backup::verify(&path, &trusted, None, &backup::no_progress)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    tracing::info!(by = %who.0.sub, backup = %name, ok = checked.is_ok(), "backup verified");
    match checked {
        Ok(v) => Ok(Json(json!({
            "name": name,
            "ok": true,
            "file_sha256": v.file_sha256,
            "chunks": v.manifest.chunks,
            "key_ids": v.manifest.key_ids,
            "decrypted": v.decrypted,
        }))),
        Err(e) => Ok(Json(
            json!({ "name": name, "ok": false, "error": e.to_string() }),
        )),
    }
}
