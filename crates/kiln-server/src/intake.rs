//! `POST /webhook`: verify, record, enqueue — nothing slow.
//!
//! | answer | when |
//! | --- | --- |
//! | 503 | shutting down |
//! | 401 | signature header missing, malformed or not matching (checked before the body is parsed) |
//! | 413 | body above 25 MiB |
//! | 400 | no event or delivery header, body not JSON, no repository |
//! | 403 | repository not in `allowed_repositories` |
//! | 200 | `ping`; a delivery already recorded (redelivery) |
//! | 202 | recorded and committed to disk (or an event kiln ignores) |
//! | 500 | the store failed |

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_store::{DeliveryState, Inserted, NewDelivery, now_ms};

use crate::config::MAX_BODY_BYTES;
use crate::payload::{self, EventKind};
use crate::signature::{self, SignatureError};
use crate::state::AppState;

pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// The webhook handler.
pub async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let (answer, result) = handle(&state, request).await;
    state.metrics.webhook(result);
    answer.into_response()
}

type Answer = (StatusCode, String);

fn answer(status: StatusCode, text: impl Into<String>) -> Answer {
    (status, text.into())
}

async fn handle(state: &AppState, request: Request) -> (Answer, &'static str) {
    if !state.accepting() {
        return (
            answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            "unavailable",
        );
    }
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let secrets = &state.config.webhook_secrets;
    let check_signature = !state.config.insecure_no_signature;
    let signature = headers.get(signature::HEADER).map(|v| v.as_bytes());
    if check_signature && signature.is_none() {
        return unauthorized(SignatureError::Missing);
    }
    let body = match read_body(headers, body).await {
        Ok(body) => body,
        Err(a) => return a,
    };
    if check_signature && let Err(e) = signature::verify(secrets, &body, signature) {
        return unauthorized(e);
    }
    let (Some(event), Some(delivery)) = (
        header(headers, EVENT_HEADER),
        header(headers, DELIVERY_HEADER),
    ) else {
        return (
            answer(
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Event or X-GitHub-Delivery header\n",
            ),
            "malformed",
        );
    };
    if delivery.is_empty() || delivery.len() > 128 {
        return (
            answer(StatusCode::BAD_REQUEST, "invalid X-GitHub-Delivery\n"),
            "malformed",
        );
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return malformed("the body is not UTF-8");
    };
    let payload: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return malformed(&format!(
                "the body is not JSON ({e}); set the webhook's content type to application/json"
            ));
        }
    };
    let kind = EventKind::of(&event);
    match kind {
        EventKind::Ping => {
            tracing::info!(delivery, "ping");
            return (answer(StatusCode::OK, "pong\n"), "ping");
        }
        EventKind::Other => {
            tracing::info!(delivery, event, "event ignored");
            return (
                answer(
                    StatusCode::ACCEPTED,
                    format!("{event} events are ignored\n"),
                ),
                "ignored",
            );
        }
        _ => {}
    }
    let Some(repository) = payload::repository_name(&payload).map(str::to_owned) else {
        return malformed("the payload names no repository");
    };
    if !state.config.repository_allowed(&repository) {
        tracing::warn!(
            delivery,
            event,
            repository,
            "delivery refused: repository not allowed"
        );
        return (
            answer(
                StatusCode::FORBIDDEN,
                format!("repository {repository} is not allowed on this runner\n"),
            ),
            "forbidden",
        );
    }
    let record = NewDelivery {
        id: delivery.clone(),
        event: event.clone(),
        repository: Some(repository.clone()),
        payload: text,
        state: DeliveryState::Queued,
        note: None,
        received_at: now_ms(),
    };
    match state.db.call(move |s| s.insert_delivery(&record)).await {
        Ok(Inserted::New) => {
            state.wake_dispatcher.notify_one();
            tracing::debug!(delivery, event, repository, "delivery queued");
            (answer(StatusCode::ACCEPTED, "queued\n"), "accepted")
        }
        Ok(Inserted::Duplicate) => {
            tracing::info!(delivery, event, repository, "duplicate delivery ignored");
            (
                answer(StatusCode::OK, "duplicate delivery; already queued\n"),
                "duplicate",
            )
        }
        Err(e) => {
            tracing::error!(delivery, error = %e, "cannot record the delivery");
            (
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot record the delivery\n",
                ),
                "error",
            )
        }
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, (Answer, &'static str)> {
    let too_large = || {
        (
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("payload above {MAX_BODY_BYTES} bytes\n"),
            ),
            "too_large",
        )
    };
    let declared = header(headers, "content-length").and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            if over {
                Err(too_large())
            } else {
                Err(malformed("the body could not be read"))
            }
        }
    }
}

fn unauthorized(e: SignatureError) -> (Answer, &'static str) {
    (
        answer(StatusCode::UNAUTHORIZED, format!("{e}\n")),
        "bad_signature",
    )
}

fn malformed(why: &str) -> (Answer, &'static str) {
    (
        answer(StatusCode::BAD_REQUEST, format!("{why}\n")),
        "malformed",
    )
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}
