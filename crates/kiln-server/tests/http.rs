//! The HTTP surface through `app(state)` and `tower::ServiceExt::oneshot`:
//! what the intake answers, what it records, and the read-only endpoints.

mod support;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use kiln_runner::SessionManager;
use kiln_server::config::{RepoPattern, Secret, ServerConfig};
use kiln_server::db::Db;
use kiln_server::fetch::{GitAuth, GitCache};
use kiln_server::{AppState, Shared, app};
use kiln_store::{DeliveryState, NewRun, Store};
use kiln_vm::{MockProvider, MockResponse};
use serde_json::{Value, json};
use tower::ServiceExt;

use support::{SECRET, sign};

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn fixture(tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::new(dir.path());
    config.webhook_secrets = vec![Secret::new(SECRET)];
    tweak(&mut config);
    let db = Db::new(Store::open_in(dir.path()).expect("store"));
    let provider = Arc::new(MockProvider::new(|_| MockResponse::exit(0)));
    let manager = Arc::new(SessionManager::new(provider, 1));
    let cache = Arc::new(GitCache::new(dir.path().join("repos"), GitAuth::None));
    let state = Arc::new(Shared::new(Arc::new(config), db, manager, cache, None));
    Fixture { _dir: dir, state }
}

fn push_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": "a".repeat(40),
        "repository": {"full_name": "octo/app", "clone_url": "file:///nowhere"},
    }))
    .expect("json")
}

fn request(event: &str, delivery: &str, body: Vec<u8>, signature: Option<String>) -> Request<Body> {
    let mut b = Request::post("/webhook")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        b = b.header("x-hub-signature-256", sig);
    }
    b.body(Body::from(body)).expect("request")
}

fn signed(event: &str, delivery: &str, body: Vec<u8>) -> Request<Body> {
    let sig = sign(SECRET, &body);
    request(event, delivery, body, Some(sig))
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, String) {
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn delivery_count(state: &AppState) -> u64 {
    state.db.store().queued_delivery_count().expect("count")
}

#[tokio::test]
async fn signed_delivery_is_recorded_and_accepted() {
    let f = fixture(|_| {});
    let (status, _) = send(&f.state, signed("push", "d-1", push_body())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let d = f.state.db.store().delivery("d-1").unwrap().unwrap();
    assert_eq!((d.event.as_str(), d.state), ("push", DeliveryState::Queued));
    assert_eq!(d.repository.as_deref(), Some("octo/app"));
    assert_eq!(d.payload.as_bytes(), push_body().as_slice());
}

#[tokio::test]
async fn missing_wrong_and_malformed_signatures_are_refused() {
    let f = fixture(|_| {});
    let body = push_body();
    let wrong = sign("another secret", &body);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let cases = [
        ("missing", request("push", "d", body.clone(), None)),
        (
            "wrong secret",
            request("push", "d", body.clone(), Some(wrong)),
        ),
        (
            "tampered body",
            request("push", "d", tampered, Some(sign(SECRET, &body))),
        ),
        (
            "malformed",
            request("push", "d", body.clone(), Some("sha256=xyz".into())),
        ),
        (
            "sha1 only",
            request("push", "d", body.clone(), Some("sha1=0123".into())),
        ),
    ];
    for (what, req) in cases {
        let (status, text) = send(&f.state, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {text}");
    }
    assert_eq!(delivery_count(&f.state), 0, "nothing refused is recorded");
    let metrics = send(
        &f.state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .1;
    assert!(
        metrics.contains("kiln_webhooks_total{result=\"bad_signature\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn either_secret_is_accepted_during_rotation() {
    let f = fixture(|c| c.webhook_secrets = vec![Secret::new("new"), Secret::new(SECRET)]);
    let body = push_body();
    let old = request("push", "d-old", body.clone(), Some(sign(SECRET, &body)));
    let new = request("push", "d-new", body.clone(), Some(sign("new", &body)));
    assert_eq!(send(&f.state, old).await.0, StatusCode::ACCEPTED);
    assert_eq!(send(&f.state, new).await.0, StatusCode::ACCEPTED);
    assert_eq!(delivery_count(&f.state), 2);
}

#[tokio::test]
async fn bodies_above_25_mib_get_413() {
    let f = fixture(|_| {});
    let big = vec![b' '; 25 * 1024 * 1024 + 1];
    let sig = sign(SECRET, &big);
    // Streamed without a length…
    let (status, _) = send(
        &f.state,
        request("push", "big", big.clone(), Some(sig.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // …and announced by Content-Length.
    let req = Request::post("/webhook")
        .header("x-github-event", "push")
        .header("x-github-delivery", "big")
        .header("x-hub-signature-256", sig)
        .header("content-length", big.len().to_string())
        .body(Body::from(big))
        .unwrap();
    assert_eq!(send(&f.state, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly at the limit is fine (and then it is not JSON).
    let edge = vec![b' '; 25 * 1024 * 1024];
    let (status, _) = send(&f.state, signed("push", "edge", edge)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_json_gets_400_after_the_signature_check() {
    let f = fixture(|_| {});
    let (status, text) = send(&f.state, signed("push", "d", b"{not json".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("not JSON"), "{text}");
    // Unsigned garbage is a signature problem first.
    let (status, _) = send(&f.state, request("push", "d", b"{not json".to_vec(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let no_repo = serde_json::to_vec(&json!({"ref": "x"})).unwrap();
    assert_eq!(
        send(&f.state, signed("push", "d", no_repo)).await.0,
        StatusCode::BAD_REQUEST
    );
    let no_delivery = Request::post("/webhook")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(SECRET, &push_body()))
        .body(Body::from(push_body()))
        .unwrap();
    assert_eq!(send(&f.state, no_delivery).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(delivery_count(&f.state), 0);
}

#[tokio::test]
async fn redeliveries_are_recorded_once() {
    let f = fixture(|_| {});
    assert_eq!(
        send(&f.state, signed("push", "same", push_body())).await.0,
        StatusCode::ACCEPTED
    );
    let (status, text) = send(&f.state, signed("push", "same", push_body())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("duplicate"), "{text}");
    assert_eq!(delivery_count(&f.state), 1);
}

#[tokio::test]
async fn ping_and_unknown_events_are_acknowledged_not_queued() {
    let f = fixture(|_| {});
    let (status, text) = send(&f.state, signed("ping", "p", br#"{"zen":"hi"}"#.to_vec())).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "pong\n"));
    let (status, _) = send(
        &f.state,
        signed("issues", "i", br#"{"action":"opened"}"#.to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(delivery_count(&f.state), 0);
    assert!(f.state.db.store().delivery("i").unwrap().is_none());
}

#[tokio::test]
async fn repositories_outside_the_allow_list_get_403() {
    let f = fixture(|c| c.allowed_repositories = vec![RepoPatternExt::exact("octo/other")]);
    let (status, text) = send(&f.state, signed("push", "d", push_body())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert_eq!(delivery_count(&f.state), 0);
}

#[tokio::test]
async fn insecure_mode_accepts_unsigned_deliveries() {
    let f = fixture(|c| {
        c.webhook_secrets.clear();
        c.insecure_no_signature = true;
    });
    let (status, _) = send(&f.state, request("push", "d", push_body(), None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn draining_server_answers_503() {
    let f = fixture(|_| {});
    f.state.stop_accepting();
    assert_eq!(
        send(&f.state, signed("push", "d", push_body())).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _) = send(
        &f.state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(delivery_count(&f.state), 0);
}

#[tokio::test]
async fn read_endpoints() {
    let f = fixture(|_| {});
    let (status, text) = send(
        &f.state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let health: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["status"], "ok");

    let id = f
        .state
        .db
        .store()
        .insert_run(&NewRun {
            repository: "octo/app".into(),
            workflow_path: ".github/workflows/ci.yml".into(),
            workflow_name: "CI".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "a".repeat(40),
            spec: "{}".into(),
            ..NewRun::default()
        })
        .unwrap();
    let (status, text) = send(
        &f.state,
        Request::get("/api/runs").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["runs"][0]["id"], id);
    assert_eq!(list["runs"][0]["state"], "queued");
    let (status, text) = send(
        &f.state,
        Request::get(format!("/api/runs/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let run: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(run["workflow_name"], "CI");
    assert_eq!(run["jobs"], json!([]));
    let (status, _) = send(
        &f.state,
        Request::get("/api/runs/999").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, text) = send(
        &f.state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for metric in [
        "kiln_queue_depth 1",
        "kiln_active_sessions 0",
        "kiln_live_vms 0",
        "kiln_vm_allocation_seconds_bucket",
        "kiln_run_duration_seconds_bucket",
        "kiln_deliveries_pending 0",
    ] {
        assert!(text.contains(metric), "{metric} missing in\n{text}");
    }
}

/// Builds allow-list patterns the way the configuration does.
struct RepoPatternExt;

impl RepoPatternExt {
    fn exact(repo: &str) -> RepoPattern {
        RepoPattern::Exact(repo.to_ascii_lowercase())
    }
}
