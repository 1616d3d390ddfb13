//! Read-only HTTP endpoints: `/healthz`, `/metrics`, `/api/runs`,
//! `/api/runs/{id}` (with jobs and steps) and `/api/runs/{id}/logs`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_store::{RunRecord, RunState};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: 200 while serving, 503 once draining for shutdown.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let stats = state.manager.stats();
    let (status, text) = if state.accepting() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    };
    (
        status,
        Json(json!({
            "status": text,
            "active_sessions": stats.active,
            "session_limit": state.manager.limit(),
        })),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = state
        .db
        .call(|s| Ok((s.run_count(RunState::Queued)?, s.queued_delivery_count()?)))
        .await;
    let m = &state.metrics;
    if let Ok((runs, deliveries)) = counts {
        m.queue_depth.set(i64::try_from(runs).unwrap_or(i64::MAX));
        m.deliveries_pending
            .set(i64::try_from(deliveries).unwrap_or(i64::MAX));
    }
    let active = i64::try_from(state.manager.stats().active).unwrap_or(i64::MAX);
    m.active_sessions.set(active);
    m.live_vms.set(active);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
}

/// `GET /api/runs?limit=N`: the newest runs first.
pub async fn list_runs(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    match state.db.call(move |s| s.list_runs(limit)).await {
        Ok(runs) => Json(json!({ "runs": runs })).into_response(),
        Err(e) => internal(&e),
    }
}

/// `GET /api/runs/{id}`: the run with its jobs and their steps.
pub async fn get_run(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let found = state
        .db
        .call(move |s| {
            let Some(run) = s.run(id)? else {
                return Ok(None);
            };
            Ok(Some((run, s.jobs(id)?)))
        })
        .await;
    match found {
        Ok(Some((run, jobs))) => Json(run_json(&run, &jobs)).into_response(),
        Ok(None) => not_found(id),
        Err(e) => internal(&e),
    }
}

/// `GET /api/runs/{id}/logs`: the run's log as text.
pub async fn get_logs(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let found = state
        .db
        .call(move |s| {
            if s.run(id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(s.logs(id, None, 0)?))
        })
        .await;
    match found {
        Ok(Some(lines)) => {
            let mut text = String::new();
            for l in lines {
                if let Some(job) = &l.job {
                    text.push_str(job);
                    text.push_str(" | ");
                }
                text.push_str(&l.line);
                text.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Ok(None) => not_found(id),
        Err(e) => internal(&e),
    }
}

/// A run and its jobs as the API shows them.
pub fn run_json(run: &RunRecord, jobs: &[kiln_store::JobRecord]) -> serde_json::Value {
    let mut value = serde_json::to_value(run).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "jobs".into(),
            serde_json::to_value(jobs).unwrap_or_default(),
        );
    }
    value
}

fn not_found(id: i64) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no run {id}") })),
    )
        .into_response()
}

fn internal(e: &kiln_store::StoreError) -> Response {
    tracing::error!(error = %e, "store error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "store error" })),
    )
        .into_response()
}
