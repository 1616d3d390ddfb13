//! The fake's request handling: one handler that records, injects failures,
//! checks credentials and routes by hand. Routing by hand keeps recording
//! and failure injection in one place for every path, known or not.
//!
//! Validation uses GitHub's documented literals, not this crate's types, so
//! a client that sent the wrong spelling would fail here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CheckRunState, DEFAULT_INSTALLATION_ID, IssuedToken, RecordedRequest, State, StatusRecord,
    TEST_APP_ID, TEST_APP_PUBLIC_KEY_PEM, TEST_TOKEN, Transition, lock,
};

const STATUSES: &[&str] = &["queued", "in_progress", "completed"];
const CONCLUSIONS: &[&str] = &[
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];
const STATES: &[&str] = &["error", "failure", "pending", "success"];
const MAX_OUTPUT_CHARS: usize = 65535;
const MAX_DESCRIPTION_CHARS: usize = 140;
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

type Shared = Arc<Mutex<State>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    AxumState(state): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&body);
    let mut state = lock(&state);
    let index = state.requests.len();
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        status: 0,
    });
    let reply = match injected_failure(&mut state) {
        Some(reply) => reply,
        None => route(&mut state, &method, uri.path(), &headers, body.as_ref()),
    };
    state.requests[index].status = reply.status.as_u16();
    reply.into_response()
}

/// A response under construction: status, extra headers, JSON body.
struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn error(status: StatusCode, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
        )
    }

    /// GitHub's shape for a 422.
    fn invalid(resource: &str, field: &str, code: &str) -> Reply {
        Reply::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "message": "Validation Failed",
                "errors": [{ "resource": resource, "field": field, "code": code }],
            }),
        )
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                headers.append(k, v);
            }
        }
        (self.status, headers, axum::Json(self.body)).into_response()
    }
}

fn parse_body(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

fn injected_failure(state: &mut State) -> Option<Reply> {
    let failure = state.failures.front_mut()?;
    if failure.remaining == 0 {
        state.failures.pop_front();
        return injected_failure(state);
    }
    failure.remaining -= 1;
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status.as_u16() {
        429 | 403 => "API rate limit exceeded (fake)".to_owned(),
        code => format!("fake failure {code}"),
    };
    let mut reply = Reply::error(status, &message);
    reply.headers = failure.headers.clone();
    Some(reply)
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Reply {
    // GitHub Enterprise Server serves the API under /api/v3.
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let empty = Value::Null;
    let body = body.unwrap_or(&empty);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["repos", owner, name, "installation"]) => {
            if let Err(reply) = verify_jwt(headers) {
                return reply;
            }
            let id = installation_of(state, &format!("{owner}/{name}"));
            Reply::json(StatusCode::OK, json!({ "id": id, "app_id": TEST_APP_ID }))
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            if let Err(reply) = verify_jwt(headers) {
                return reply;
            }
            mint_token(state, id)
        }
        ("POST", ["repos", owner, name, "check-runs"]) => {
            let repo = format!("{owner}/{name}");
            match verify_token(state, headers, &repo) {
                Ok(()) => create_check_run(state, repo, body),
                Err(reply) => reply,
            }
        }
        ("PATCH", ["repos", owner, name, "check-runs", id]) => {
            let repo = format!("{owner}/{name}");
            match verify_token(state, headers, &repo) {
                Ok(()) => update_check_run(state, &repo, id, body),
                Err(reply) => reply,
            }
        }
        ("POST", ["repos", owner, name, "statuses", sha]) => {
            let repo = format!("{owner}/{name}");
            match verify_token(state, headers, &repo) {
                Ok(()) => create_status(state, repo, sha, body),
                Err(reply) => reply,
            }
        }
        _ => Reply::error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn installation_of(state: &State, repo: &str) -> u64 {
    state
        .installations
        .get(&repo.to_ascii_lowercase())
        .copied()
        .unwrap_or(DEFAULT_INSTALLATION_ID)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
}

/// GitHub's checks on an app JWT: RS256 signed by the app's key, issued by
/// the app, `iat` not in the future, `exp` at most 10 minutes ahead.
fn verify_jwt(headers: &HeaderMap) -> Result<(), Reply> {
    #[derive(Deserialize)]
    struct Claims {
        iat: u64,
        exp: u64,
    }
    let refuse = |why: &str| Reply::error(StatusCode::UNAUTHORIZED, why);
    let jwt = bearer(headers).ok_or_else(|| refuse("Requires authentication"))?;
    let key = DecodingKey::from_rsa_pem(TEST_APP_PUBLIC_KEY_PEM.as_bytes())
        .map_err(|e| refuse(&format!("fake: bad test public key: {e}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_issuer(&[TEST_APP_ID.to_string()]);
    validation.set_required_spec_claims(&["iat", "exp", "iss"]);
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .map_err(|e| refuse(&format!("A JSON web token could not be decoded: {e}")))?
        .claims;
    let now = now_secs();
    if claims.iat > now {
        return Err(refuse(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past",
        ));
    }
    if claims.exp > now + 600 {
        return Err(refuse(
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(())
}

/// The caller's token must be [`TEST_TOKEN`] or a live installation token
/// of the installation that owns `repo`.
fn verify_token(state: &State, headers: &HeaderMap, repo: &str) -> Result<(), Reply> {
    let refuse = || Reply::error(StatusCode::UNAUTHORIZED, "Bad credentials");
    let token = bearer(headers).ok_or_else(refuse)?;
    if token == TEST_TOKEN {
        return Ok(());
    }
    let issued = state
        .tokens
        .iter()
        .find(|t| t.token == token)
        .ok_or_else(refuse)?;
    if issued.revoked || issued.expires_at <= SystemTime::now() {
        return Err(refuse());
    }
    if issued.installation != installation_of(state, repo) {
        return Err(Reply::error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ));
    }
    Ok(())
}

fn mint_token(state: &mut State, id: &str) -> Reply {
    let Ok(installation) = id.parse::<u64>() else {
        return Reply::error(StatusCode::NOT_FOUND, "Not Found");
    };
    let known = installation == DEFAULT_INSTALLATION_ID
        || state.installations.values().any(|&i| i == installation);
    if !known {
        return Reply::error(StatusCode::NOT_FOUND, "Not Found");
    }
    let lifetime = state.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let expires_at = SystemTime::now() + lifetime;
    let token = format!("ghs_fake_{installation}_{}", state.tokens.len() + 1);
    state.tokens.push(IssuedToken {
        token: token.clone(),
        installation,
        expires_at,
        revoked: false,
    });
    Reply::json(
        StatusCode::CREATED,
        json!({
            "token": token,
            "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
            "permissions": { "checks": "write", "statuses": "write" },
        }),
    )
}

fn create_check_run(state: &mut State, repo: String, body: &Value) -> Reply {
    let (Some(name), Some(head_sha)) = (str_field(body, "name"), str_field(body, "head_sha"))
    else {
        return Reply::invalid("CheckRun", "name/head_sha", "missing_field");
    };
    let mut run = CheckRunState {
        id: 1000 + state.check_runs.len() as u64 + 1,
        repo,
        name: name.to_owned(),
        head_sha: head_sha.to_owned(),
        status: "queued".to_owned(),
        conclusion: None,
        started_at: None,
        completed_at: None,
        output: None,
        external_id: str_field(body, "external_id").map(str::to_owned),
        details_url: str_field(body, "details_url").map(str::to_owned),
        history: Vec::new(),
    };
    if let Err(reply) = apply(&mut run, body) {
        return reply;
    }
    let reply = Reply::json(StatusCode::CREATED, run_json(&run));
    state.check_runs.push(run);
    reply
}

fn update_check_run(state: &mut State, repo: &str, id: &str, body: &Value) -> Reply {
    let run = id.parse::<u64>().ok().and_then(|id| {
        state
            .check_runs
            .iter_mut()
            .find(|r| r.id == id && r.repo.eq_ignore_ascii_case(repo))
    });
    let Some(run) = run else {
        return Reply::error(StatusCode::NOT_FOUND, "Not Found");
    };
    // Validate on a copy: a rejected update changes nothing.
    let mut updated = run.clone();
    if let Err(reply) = apply(&mut updated, body) {
        return reply;
    }
    *run = updated;
    Reply::json(StatusCode::OK, run_json(run))
}

/// The fields create and update share, with GitHub's rules: a conclusion
/// completes the run; completed needs a conclusion; output needs a title and
/// a summary within the limits.
fn apply(run: &mut CheckRunState, body: &Value) -> Result<(), Reply> {
    let status = match body.get("status") {
        None => None,
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => return Err(Reply::invalid("CheckRun", "status", "invalid")),
    };
    let conclusion = match body.get("conclusion") {
        None => None,
        Some(Value::String(s)) if CONCLUSIONS.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => return Err(Reply::invalid("CheckRun", "conclusion", "invalid")),
    };
    let new_status = match (&conclusion, status) {
        (Some(_), Some(s)) if s != "completed" => {
            return Err(Reply::invalid("CheckRun", "status", "invalid"));
        }
        (Some(_), _) => "completed".to_owned(),
        (None, Some(s)) => s,
        (None, None) => run.status.clone(),
    };
    let new_conclusion = conclusion.or_else(|| run.conclusion.clone());
    if new_status == "completed" && new_conclusion.is_none() {
        return Err(Reply::invalid("CheckRun", "conclusion", "missing_field"));
    }
    for field in ["started_at", "completed_at"] {
        if let Some(value) = body.get(field) {
            let ok = value
                .as_str()
                .is_some_and(|s| humantime::parse_rfc3339(s).is_ok());
            if !ok {
                return Err(Reply::invalid("CheckRun", field, "invalid"));
            }
        }
    }
    if let Some(output) = body.get("output") {
        for field in ["title", "summary"] {
            if str_field(output, field).is_none() {
                return Err(Reply::invalid(
                    "CheckRun",
                    &format!("output.{field}"),
                    "missing_field",
                ));
            }
        }
        for field in ["summary", "text"] {
            if str_field(output, field).is_some_and(|s| s.chars().count() > MAX_OUTPUT_CHARS) {
                return Err(Reply::invalid(
                    "CheckRun",
                    &format!("output.{field}"),
                    "too_long",
                ));
            }
        }
        run.output = Some(output.clone());
    }
    if let Some(t) = str_field(body, "started_at") {
        run.started_at = Some(t.to_owned());
    }
    if let Some(t) = str_field(body, "completed_at") {
        run.completed_at = Some(t.to_owned());
    }
    let changed =
        run.history.is_empty() || run.status != new_status || run.conclusion != new_conclusion;
    run.status = new_status;
    run.conclusion = new_conclusion;
    if changed {
        run.history.push(Transition {
            status: run.status.clone(),
            conclusion: run.conclusion.clone(),
        });
    }
    Ok(())
}

fn run_json(run: &CheckRunState) -> Value {
    json!({
        "id": run.id,
        "name": run.name,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion,
        "external_id": run.external_id,
        "details_url": run.details_url,
        "html_url": format!("https://github.invalid/{}/runs/{}", run.repo, run.id),
    })
}

fn create_status(state: &mut State, repo: String, sha: &str, body: &Value) -> Reply {
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, "No commit found for SHA");
    }
    let Some(state_value) = str_field(body, "state").filter(|s| STATES.contains(s)) else {
        return Reply::invalid("Status", "state", "invalid");
    };
    let description = str_field(body, "description");
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Reply::invalid("Status", "description", "too_long");
    }
    let record = StatusRecord {
        repo,
        sha: sha.to_owned(),
        state: state_value.to_owned(),
        context: str_field(body, "context").unwrap_or("default").to_owned(),
        description: description.map(str::to_owned),
        target_url: str_field(body, "target_url").map(str::to_owned),
    };
    let reply = Reply::json(
        StatusCode::CREATED,
        json!({
            "id": state.statuses.len() + 1,
            "state": record.state,
            "context": record.context,
            "description": record.description,
            "target_url": record.target_url,
        }),
    );
    state.statuses.push(record);
    reply
}

fn str_field<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key)?.as_str()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
