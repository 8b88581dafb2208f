//! admin::migrations: `migrate apply` and `keys reencrypt` as background jobs of the admin
//! port, with their progress: `POST /v1/migrations` starts one, `GET /v1/migrations[/{id}]`
//! follows it, `DELETE /v1/migrations/{id}` stops it after its current batch (a stopped job
//! resumes from its checkpoint when started again, here or from the CLI).
//!
//! Security: admins only (they rewrite every protected cell). Progress names tables and
//! counts, never values. The server's advisory lock keeps one job per server whoever starts
//! it (CLI or any instance's admin port).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, ApiError, Authenticated};
use crate::admin::users::AdminRole;
use crate::migrate::apply;

/// Finished jobs kept for `GET /v1/migrations/{id}`.
const KEEP_JOBS: usize = 32;

#[derive(Debug, Clone, Default)]
struct JobStatus {
    kind: &'static str,
    state: &'static str,
    started_at: u64,
    finished_at: Option<u64>,
    started_by: String,
    progress: apply::Progress,
    tables: Vec<apply::TableReport>,
    error: Option<String>,
}

impl JobStatus {
    fn json(&self, id: &str) -> Value {
        let p = &self.progress;
        json!({
            "id": id,
            "kind": self.kind,
            "state": self.state,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "started_by": self.started_by,
            "progress": {
                "database": p.database, "table": p.table, "phase": p.phase,
                "rows": p.rows, "total": p.total, "rows_per_second": p.rate.round(),
            },
            "tables": self.tables.iter().map(|t| json!({
                "database": t.database, "table": t.table, "columns": t.columns,
                "sealed": t.sealed, "already": t.already, "raced": t.raced, "seconds": t.seconds,
            })).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// Migration jobs of this instance: at most one runs at a time.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, JobStatus>>,
    running: Mutex<Option<(String, Arc<AtomicBool>)>>,
}

fn update(state: &AdminState, id: &str, f: impl FnOnce(&mut JobStatus)) {
    if let Ok(mut j) = state.migrations.jobs.lock()
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
                s.error = Some("the job stopped unexpectedly".into());
                s.finished_at = Some(crate::tokens::now_secs());
            }
        });
        if let Ok(mut r) = self.0.migrations.running.lock() {
            *r = None;
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartJob {
    /// "apply" (seal plaintext columns) or "reencrypt" (re-seal under the primary keys).
    kind: String,
    /// Rows a second at most (0: unthrottled).
    rate: Option<u64>,
    batch: Option<usize>,
}

pub async fn start(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Json(body): Json<StartJob>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if who.0.role != AdminRole::Admin {
        return Err(ApiError::Forbidden);
    }
    let kind: &'static str = match body.kind.as_str() {
        "apply" => "apply",
        "reencrypt" => "reencrypt",
        _ => return Err(ApiError::BadRequest("kind is apply or reencrypt".into())),
    };
    let options = apply::Options {
        rate: body.rate.unwrap_or(crate::migrate::plan::DEFAULT_RATE),
        batch: body.batch.unwrap_or(apply::DEFAULT_BATCH).clamp(1, 10_000),
    };
    let keyring = state
        .shared
        .keyring
        .load_full()
        .ok_or_else(|| ApiError::BadRequest("no keyring: run `myveil keygen` first".into()))?;
    let opts = state.shared.control_opts().map_err(|e| {
        tracing::error!(error = %e, "migration connection options");
        ApiError::Internal
    })?;
    let id = hex::encode(rand::random::<[u8; 8]>());
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut running = state
            .migrations
            .running
            .lock()
            .map_err(|_| ApiError::Internal)?;
        if running.is_some() {
            return Err(ApiError::Conflict("a migration job is already running"));
        }
        *running = Some((id.clone(), cancel.clone()));
        let mut jobs = state
            .migrations
            .jobs
            .lock()
            .map_err(|_| ApiError::Internal)?;
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
                kind,
                state: "running",
                started_at: crate::tokens::now_secs(),
                started_by: who.0.sub.clone(),
                ..JobStatus::default()
            },
        );
    }
    tracing::info!(by = %who.0.sub, job = %id, kind, "migration job started");
    let job_state = state.clone();
    let job_id = id.clone();
    tokio::spawn(async move {
        let _running = Running(job_state.clone(), job_id.clone());
        let policy = job_state.shared.protection.load_full();
        let progress_state = job_state.clone();
        let progress_id = job_id.clone();
        let progress = move |p: &apply::Progress| {
            update(&progress_state, &progress_id, |s| s.progress = p.clone());
        };
        let mode = if kind == "apply" {
            apply::Mode::Encrypt
        } else {
            apply::Mode::Reencrypt
        };
        let result = apply::run(
            mode,
            opts,
            &policy.policy,
            &keyring,
            &options,
            &progress,
            &cancel,
        )
        .await;
        // This instance sees the new column states at once (others within their poll).
        job_state.shared.schema_changed().await;
        update(&job_state, &job_id, |s| {
            s.finished_at = Some(crate::tokens::now_secs());
            match &result {
                Ok(tables) => {
                    s.state = "done";
                    s.tables = tables.clone();
                }
                Err(apply::Error::Cancelled) => s.state = "stopped",
                Err(e) => {
                    s.state = "failed";
                    // Names tables, columns and counts, never values or keys.
                    s.error = Some(e.to_string());
                }
            }
        });
        match &result {
            Ok(_) => tracing::info!(job = %job_id, kind, "migration job done"),
            Err(e) => tracing::error!(job = %job_id, kind, error = %e, "migration job ended"),
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "state": "running" })),
    ))
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    _who: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let jobs = state
        .migrations
        .jobs
        .lock()
        .map_err(|_| ApiError::Internal)?;
    Ok(Json(json!({
        "jobs": jobs.iter().map(|(id, s)| s.json(id)).collect::<Vec<_>>()
    })))
}

pub async fn job(
    State(state): State<Arc<AdminState>>,
    _who: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let jobs = state
        .migrations
        .jobs
        .lock()
        .map_err(|_| ApiError::Internal)?;
    let status = jobs.get(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(status.json(&id)))
}

/// Stops a running job after its current batch (its checkpoint is where it resumes).
pub async fn stop(
    State(state): State<Arc<AdminState>>,
    who: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if who.0.role != AdminRole::Admin {
        return Err(ApiError::Forbidden);
    }
    let running = state
        .migrations
        .running
        .lock()
        .map_err(|_| ApiError::Internal)?;
    match running.as_ref() {
        Some((r, cancel)) if *r == id => {
            cancel.store(true, Ordering::Relaxed);
            tracing::info!(by = %who.0.sub, job = %id, "migration job stop asked");
            Ok(StatusCode::ACCEPTED)
        }
        _ => Err(ApiError::NotFound),
    }
}
