//! The REST client: URL building, authentication per request, retries.
//!
//! Retried POSTs are not idempotent on GitHub's side: a 502 may hide a check
//! run that was created, and the retry creates a second one. Callers that
//! care set [`CheckRunCreate::external_id`] so duplicates can be recognised;
//! for commit statuses it does not matter (the latest per context wins).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::{AppAuth, InstallationToken};
use crate::retry::{self, Verdict};
use crate::truncate::{MAX_OUTPUT_LEN, truncate_description, truncate_output};
use crate::{
    Auth, CheckOutput, CheckRunCreate, CheckRunStatus, CheckRunUpdate, CommitStatus, GitHubConfig,
    GitHubError, RetryPolicy,
};

/// The REST API version Kiln is written against.
const API_VERSION: &str = "2022-11-28";
/// A single attempt's limit; retries get their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A GitHub REST client. Cheap to clone: clones share the connection pool and
/// the installation-token cache.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing `/`; paths start with one.
    api_url: String,
    retry: RetryPolicy,
    auth: Credentials,
}

enum Credentials {
    Token(String),
    App(AppAuth),
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.inner.api_url)
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// Checks the configuration (API URL, private key) without any request.
    pub fn new(config: GitHubConfig) -> Result<GitHubClient, GitHubError> {
        let api_url = config.api_url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(GitHubError::InvalidRequest(format!(
                    "api url `{}` is not an http(s) URL",
                    config.api_url
                )));
            }
        }
        let auth = match config.auth {
            Auth::Token(token) => Credentials::Token(token),
            Auth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => Credentials::App(AppAuth::new(app_id, &private_key_pem, installation_id)?),
        };
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|source| GitHubError::Transport {
                url: api_url.clone(),
                source,
            })?;
        Ok(GitHubClient {
            inner: Arc::new(Inner {
                http,
                api_url,
                retry: config.retry,
                auth,
            }),
        })
    }

    /// The API root requests go to, without a trailing `/`.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// Creates a check run on `repo` (`owner/name`) and returns its id.
    pub async fn create_check_run(
        &self,
        repo: &str,
        run: &CheckRunCreate,
    ) -> Result<u64, GitHubError> {
        let path = format!("{}/check-runs", repo_path(repo)?);
        let status = match run.conclusion {
            // GitHub completes a run given a conclusion; say so rather than
            // send a contradiction.
            Some(_) => CheckRunStatus::Completed,
            None => run.status,
        };
        let mut body = serde_json::Map::new();
        body.insert("name".into(), run.name.clone().into());
        body.insert("head_sha".into(), run.head_sha.clone().into());
        body.insert("status".into(), status.as_str().into());
        insert_time(&mut body, "started_at", run.started_at);
        insert_opt(&mut body, "conclusion", run.conclusion.map(|c| c.as_str()));
        insert_opt(&mut body, "external_id", run.external_id.as_deref());
        insert_opt(&mut body, "details_url", run.details_url.as_deref());
        if let Some(output) = &run.output {
            body.insert("output".into(), output_json(output));
        }
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let created: Created = self
            .repo_call(repo, Method::POST, &path, Some(Value::Object(body)))
            .await?;
        Ok(created.id)
    }

    /// Updates check run `id`; `None` fields are left as they are.
    pub async fn update_check_run(
        &self,
        repo: &str,
        id: u64,
        update: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        let path = format!("{}/check-runs/{id}", repo_path(repo)?);
        let status = match update.conclusion {
            Some(_) => Some(CheckRunStatus::Completed),
            None => update.status,
        };
        let mut body = serde_json::Map::new();
        insert_opt(&mut body, "status", status.map(|s| s.as_str()));
        insert_opt(
            &mut body,
            "conclusion",
            update.conclusion.map(|c| c.as_str()),
        );
        insert_time(&mut body, "completed_at", update.completed_at);
        if let Some(output) = &update.output {
            body.insert("output".into(), output_json(output));
        }
        let _: Value = self
            .repo_call(repo, Method::PATCH, &path, Some(Value::Object(body)))
            .await?;
        Ok(())
    }

    /// Sets the commit status `status.context` on `sha`.
    pub async fn create_commit_status(
        &self,
        repo: &str,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<(), GitHubError> {
        if !(sha.len() == 40 || sha.len() == 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitHubError::InvalidRequest(format!(
                "`{sha}` is not a full commit SHA"
            )));
        }
        let path = format!("{}/statuses/{sha}", repo_path(repo)?);
        let mut body = serde_json::Map::new();
        body.insert("state".into(), status.state.as_str().into());
        body.insert("context".into(), status.context.clone().into());
        if let Some(description) = &status.description {
            body.insert(
                "description".into(),
                truncate_description(description).into_owned().into(),
            );
        }
        insert_opt(&mut body, "target_url", status.target_url.as_deref());
        let _: Value = self
            .repo_call(repo, Method::POST, &path, Some(Value::Object(body)))
            .await?;
        Ok(())
    }

    /// A call on `repo`'s behalf: with the token, or with the installation
    /// token of the app's installation on `repo`.
    async fn repo_call<T: DeserializeOwned>(
        &self,
        repo: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, GitHubError> {
        let app = match &self.inner.auth {
            Credentials::Token(token) => {
                return self.call(method, path, body.as_ref(), token).await;
            }
            Credentials::App(app) => app,
        };
        let installation = self.installation_id(app, repo).await?;
        let token = self.installation_token(app, installation, None).await?;
        match self.call(method.clone(), path, body.as_ref(), &token).await {
            // Revoked or expired early (GitHub may revoke a token when the
            // installation's permissions change): mint a new one, once.
            Err(GitHubError::Http { status: 401, .. }) => {
                tracing::info!(
                    installation,
                    "installation token refused; minting a new one"
                );
                let token = self
                    .installation_token(app, installation, Some(&token))
                    .await?;
                self.call(method, path, body.as_ref(), &token).await
            }
            result => result,
        }
    }

    /// A token git can fetch `repo` with over HTTPS (as the password of
    /// user `x-access-token`): the configured token, or, as an app, the
    /// installation token of the app's installation on `repo` (cached per
    /// installation, minted again 5 minutes before it expires). `refused` is a token the git server just turned
    /// down: a new one is minted instead of returning it again.
    pub async fn git_token(
        &self,
        repo: &str,
        refused: Option<&str>,
    ) -> Result<String, GitHubError> {
        match &self.inner.auth {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::App(app) => {
                let installation = self.installation_id(app, repo).await?;
                self.installation_token(app, installation, refused).await
            }
        }
    }

    /// Whether this client authenticates as a GitHub App.
    pub fn is_app(&self) -> bool {
        matches!(self.inner.auth, Credentials::App(_))
    }

    async fn installation_id(&self, app: &AppAuth, repo: &str) -> Result<u64, GitHubError> {
        if let Some(id) = app.known_installation(repo) {
            return Ok(id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let path = format!("{}/installation", repo_path(repo)?);
        let jwt = app.jwt(SystemTime::now())?;
        let installation: Installation =
            self.call(Method::GET, &path, None, &jwt)
                .await
                .map_err(|e| {
                    as_auth_error(e, &format!("looking up the app's installation on {repo}"))
                })?;
        app.remember_installation(repo, installation.id);
        Ok(installation.id)
    }

    /// A fresh installation token, minted if the cached one is near expiry
    /// or is `refused` (the one GitHub just rejected).
    async fn installation_token(
        &self,
        app: &AppAuth,
        installation: u64,
        refused: Option<&str>,
    ) -> Result<String, GitHubError> {
        let slot = app.token_slot(installation);
        let mut cached = slot.lock().await;
        if let Some(token) = &*cached
            && token.is_fresh(SystemTime::now())
            && refused != Some(token.token.as_str())
        {
            return Ok(token.token.clone());
        }
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: String,
        }
        let path = format!("/app/installations/{installation}/access_tokens");
        let jwt = app.jwt(SystemTime::now())?;
        let minted: Minted = self
            .call(Method::POST, &path, None, &jwt)
            .await
            .map_err(|e| {
                as_auth_error(
                    e,
                    &format!("minting a token for installation {installation}"),
                )
            })?;
        let expires_at = humantime::parse_rfc3339(&minted.expires_at).map_err(|e| {
            GitHubError::InvalidResponse {
                url: self.url(&path),
                message: format!("expires_at `{}`: {e}", minted.expires_at),
            }
        })?;
        tracing::debug!(
            installation,
            expires_at = %humantime::format_rfc3339_seconds(expires_at),
            "minted installation token"
        );
        *cached = Some(InstallationToken {
            token: minted.token.clone(),
            expires_at,
        });
        Ok(minted.token)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.api_url)
    }

    /// One API call with retries. Every attempt re-sends the same request
    /// with the same credentials.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: &str,
    ) -> Result<T, GitHubError> {
        let url = self.url(path);
        let policy = self.inner.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let (mut error, asked) = match self.attempt(&method, &url, body, bearer).await {
                Attempt::Done(result) => return result,
                Attempt::Retryable { error, asked } => (error, asked),
            };
            let delay = retry::delay(&policy, attempt, asked);
            if let GitHubError::RateLimited { retry_after } = &mut error {
                *retry_after = delay;
            }
            let too_long = delay > policy.max_delay;
            if attempt >= max_attempts || too_long {
                if attempt > 1 || too_long {
                    tracing::warn!(%method, %url, attempt, error = %chain(&error), "github request failed; giving up");
                }
                return Err(error);
            }
            tracing::warn!(
                %method,
                %url,
                attempt,
                max_attempts,
                delay_ms = delay.as_millis() as u64,
                error = %chain(&error),
                "github request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        bearer: &str,
    ) -> Attempt<T> {
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .bearer_auth(bearer)
            .header(
                ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            )
            .header("x-github-api-version", API_VERSION);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => {
                let retryable = is_transient(&source);
                let error = GitHubError::Transport {
                    url: url.to_owned(),
                    source,
                };
                return if retryable {
                    Attempt::Retryable { error, asked: None }
                } else {
                    Attempt::Done(Err(error))
                };
            }
        };
        let status = response.status();
        tracing::debug!(%method, %url, status = status.as_u16(), "github request");
        if status.is_success() {
            return Attempt::Done(read_json(response, url).await);
        }
        let headers = response.headers().clone();
        let http = GitHubError::Http {
            status: status.as_u16(),
            message: error_message(response).await,
            url: url.to_owned(),
        };
        match retry::classify(status, &headers, SystemTime::now()) {
            Verdict::Fail => Attempt::Done(Err(http)),
            Verdict::Retry { wait } => Attempt::Retryable {
                error: http,
                asked: wait,
            },
            Verdict::RateLimited { wait } => Attempt::Retryable {
                // The wait is filled in by the caller, which knows it.
                error: GitHubError::RateLimited {
                    retry_after: Duration::ZERO,
                },
                asked: wait,
            },
        }
    }
}

/// How one attempt ended: for good, or worth another after at least `asked`.
enum Attempt<T> {
    Done(Result<T, GitHubError>),
    Retryable {
        error: GitHubError,
        asked: Option<Duration>,
    },
}

/// An error and its sources on one line, for logs.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Connection refused or reset, timeouts, a body cut off: the request may
/// never have reached GitHub, or its answer got lost; either may pass.
/// A request we could not build will not.
fn is_transient(error: &reqwest::Error) -> bool {
    !error.is_builder() && !error.is_redirect()
}

async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    url: &str,
) -> Result<T, GitHubError> {
    let no_content = response.status() == StatusCode::NO_CONTENT;
    let bytes = response
        .bytes()
        .await
        .map_err(|source| GitHubError::Transport {
            url: url.to_owned(),
            source,
        })?;
    let parsed = if no_content || bytes.is_empty() {
        serde_json::from_value(Value::Null)
    } else {
        serde_json::from_slice(&bytes)
    };
    parsed.map_err(|e| GitHubError::InvalidResponse {
        url: url.to_owned(),
        message: e.to_string(),
    })
}

/// GitHub's `message`, with a 422's validation `errors` spelled out (the
/// bare "Validation Failed" does not say which field).
async fn error_message(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        let mut start: String = text.chars().take(200).collect();
        if start.len() < text.len() {
            start.push('…');
        }
        return start;
    };
    let mut message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_owned();
    let details: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            e => match e.get("message").and_then(Value::as_str) {
                Some(m) => m.to_owned(),
                None => {
                    let get = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("?");
                    format!("{}.{}: {}", get("resource"), get("field"), get("code"))
                }
            },
        })
        .collect();
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    message
}

/// Failures of the app endpoints are authentication failures to the caller,
/// except those worth trying again later.
fn as_auth_error(error: GitHubError, doing: &str) -> GitHubError {
    match error {
        GitHubError::Http { .. } | GitHubError::InvalidResponse { .. } => GitHubError::Auth {
            message: format!("{doing}: {error}"),
        },
        other => other,
    }
}

/// `/repos/{owner}/{name}`, refusing anything that could escape that path.
fn repo_path(repo: &str) -> Result<String, GitHubError> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => {
            Ok(format!("/repos/{owner}/{name}"))
        }
        _ => Err(GitHubError::InvalidRequest(format!(
            "repository `{repo}` is not `owner/name`"
        ))),
    }
}

fn insert_opt(body: &mut serde_json::Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        body.insert(key.into(), value.into());
    }
}

fn insert_time(body: &mut serde_json::Map<String, Value>, key: &str, time: Option<SystemTime>) {
    if let Some(time) = time {
        body.insert(
            key.into(),
            humantime::format_rfc3339_seconds(time).to_string().into(),
        );
    }
}

fn output_json(output: &CheckOutput) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("title".into(), output.title.clone().into());
    out.insert(
        "summary".into(),
        truncate_output(&output.summary, MAX_OUTPUT_LEN)
            .into_owned()
            .into(),
    );
    if let Some(text) = &output.text {
        out.insert(
            "text".into(),
            truncate_output(text, MAX_OUTPUT_LEN).into_owned().into(),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths() {
        assert_eq!(
            repo_path("octo-org/my.repo_1").ok().as_deref(),
            Some("/repos/octo-org/my.repo_1")
        );
        for bad in [
            "", "octo", "/repo", "octo/", "a/b/c", "../x", "a/..", "a b/c", "a/b?x",
        ] {
            assert!(
                matches!(repo_path(bad), Err(GitHubError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn output_is_truncated() {
        let big = "x".repeat(70_000);
        let json = output_json(&CheckOutput {
            title: "t".into(),
            summary: big.clone(),
            text: Some(big),
        });
        for field in ["summary", "text"] {
            let s = json[field].as_str().expect("string");
            assert!(s.len() <= MAX_OUTPUT_LEN, "{field}: {}", s.len());
            assert!(s.contains("truncated by Kiln"), "{field}");
        }
    }

    #[test]
    fn config_is_checked_up_front() {
        let mut config = GitHubConfig::new(Auth::Token("t".into()));
        config.api_url = "ftp://example".into();
        assert!(matches!(
            GitHubClient::new(config),
            Err(GitHubError::InvalidRequest(_))
        ));
        let config = GitHubConfig::new(Auth::App {
            app_id: 1,
            private_key_pem: "nope".into(),
            installation_id: None,
        });
        assert!(matches!(
            GitHubClient::new(config),
            Err(GitHubError::Auth { .. })
        ));
    }
}
