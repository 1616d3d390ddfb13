//! A fake GitHub REST API on 127.0.0.1 for tests (feature `fake`).
//!
//! It is a real HTTP server, so tests exercise the client's real requests,
//! headers, JSON and retries. It implements what Kiln uses — check runs,
//! commit statuses, app installation lookup and installation tokens — and
//! checks requests the way GitHub does where a wrong request would otherwise
//! pass unnoticed: credentials (JWT signatures verified against the test
//! app's public key), enum values, required fields, length limits.
//!
//! Every request is recorded; failures can be queued with
//! [`FakeGitHub::fail_next`]. Test-only: the key pair is public.

mod handler;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::{Auth, GitHubConfig, RetryPolicy};

/// The token the fake accepts for [`Auth::Token`].
pub const TEST_TOKEN: &str = "kiln-fake-token";
/// The GitHub App the fake knows.
pub const TEST_APP_ID: u64 = 4242;
/// TEST-ONLY private key of the fake's app (PKCS#1 PEM, as GitHub issues).
pub const TEST_APP_PRIVATE_KEY_PEM: &str =
    include_str!("../../tests/data/test-app-private-key.pem");
/// Its public key, which the fake verifies app JWTs with.
pub const TEST_APP_PUBLIC_KEY_PEM: &str = include_str!("../../tests/data/test-app-public-key.pem");
/// The installation every repository belongs to unless
/// [`FakeGitHub::set_installation`] says otherwise.
pub const DEFAULT_INSTALLATION_ID: u64 = 1;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Without the query string; with the `/api/v3` prefix if one was used.
    pub path: String,
    /// Lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body; a body that is not JSON as a JSON string; `None` if
    /// empty.
    pub body: Option<Value>,
    /// The status the fake answered with.
    pub status: u16,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A check run as it stands, with every status/conclusion it went through.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRunState {
    pub id: u64,
    pub repo: String,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub output: Option<Value>,
    pub external_id: Option<String>,
    pub details_url: Option<String>,
    /// From creation on, one entry per change of status or conclusion.
    pub history: Vec<Transition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: String,
    pub conclusion: Option<String>,
}

/// A commit status as posted, in posting order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    requests: Vec<RecordedRequest>,
    failures: VecDeque<Failure>,
    check_runs: Vec<CheckRunState>,
    statuses: Vec<StatusRecord>,
    /// Lowercased `owner/name` → installation; others get the default.
    installations: HashMap<String, u64>,
    tokens: Vec<IssuedToken>,
    token_lifetime: Option<Duration>,
}

struct Failure {
    remaining: usize,
    status: u16,
    headers: Vec<(String, String)>,
}

struct IssuedToken {
    token: String,
    installation: u64,
    expires_at: std::time::SystemTime,
    revoked: bool,
}

impl FakeGitHub {
    /// Starts the fake on an ephemeral loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound: test infrastructure, not code under
    /// test.
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake github: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake github: local address");
        let state = Arc::new(Mutex::new(State::default()));
        let app = handler::router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake github server stopped");
            }
        });
        FakeGitHub {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`: the API root (append `/api/v3` to play
    /// GitHub Enterprise; both are served).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `n` requests, whatever they are, with `status`, these
    /// headers and a GitHub-style `{"message": …}` body. Queued calls apply in
    /// order.
    pub fn fail_next(&self, n: usize, status: u16, headers: &[(&str, &str)]) {
        self.lock().failures.push_back(Failure {
            remaining: n,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
    }

    /// Check runs by id, current state with history.
    pub fn check_runs(&self) -> Vec<CheckRunState> {
        self.lock().check_runs.clone()
    }

    pub fn statuses(&self) -> Vec<StatusRecord> {
        self.lock().statuses.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Puts `repo` in its own installation (for app auth tests).
    pub fn set_installation(&self, repo: &str, installation_id: u64) {
        self.lock()
            .installations
            .insert(repo.to_ascii_lowercase(), installation_id);
    }

    /// How long installation tokens minted from now on are valid (GitHub: an
    /// hour, the default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = Some(lifetime);
    }

    /// The installation tokens minted so far that are still good (neither
    /// revoked nor expired), with their installation: what a test's git
    /// server accepts.
    pub fn valid_tokens(&self) -> Vec<(u64, String)> {
        let now = std::time::SystemTime::now();
        self.lock()
            .tokens
            .iter()
            .filter(|t| !t.revoked && t.expires_at > now)
            .map(|t| (t.installation, t.token.clone()))
            .collect()
    }

    /// Makes every installation token minted so far invalid (401), as when
    /// GitHub revokes them.
    pub fn revoke_tokens(&self) {
        for token in &mut self.lock().tokens {
            token.revoked = true;
        }
    }

    /// A client configuration for this fake with [`TEST_TOKEN`] and fast
    /// retries.
    pub fn token_config(&self) -> GitHubConfig {
        self.config(Auth::Token(TEST_TOKEN.to_owned()))
    }

    /// A client configuration for this fake as the test app, with fast
    /// retries.
    pub fn app_config(&self, installation_id: Option<u64>) -> GitHubConfig {
        self.config(Auth::App {
            app_id: TEST_APP_ID,
            private_key_pem: TEST_APP_PRIVATE_KEY_PEM.to_owned(),
            installation_id,
        })
    }

    fn config(&self, auth: Auth) -> GitHubConfig {
        GitHubConfig {
            api_url: self.url(),
            auth,
            user_agent: "kiln-test".to_owned(),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_secs(5),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A test that panicked while holding the lock leaves plain data behind;
/// later assertions may still read it.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
