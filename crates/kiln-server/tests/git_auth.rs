//! Fetching private repositories: a git server on 127.0.0.1 (git's "dumb"
//! HTTP protocol over a bare repository) that demands
//! `Authorization: Basic base64(x-access-token:<token>)`, and the fake
//! GitHub minting installation tokens for the app.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kiln_github::fake::{FakeGitHub, TEST_APP_ID, TEST_APP_PRIVATE_KEY_PEM};
use kiln_server::config::{GitHubAuth, GitHubSettings, Secret};
use kiln_server::fetch::{FetchError, GitAuth, GitCache};
use support::*;

type Accepts = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
struct GitServer {
    /// The directory holding `octo/app.git`.
    root: PathBuf,
    accepts: Accepts,
    /// The `Authorization` header of every request (`None`: none sent).
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve_file(
    State(s): State<GitServer>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.lock().expect("lock").push(auth.clone());
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|cred| cred.strip_prefix("x-access-token:").map(str::to_owned));
    if !token.is_some_and(|t| (s.accepts)(&t)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "authentication required",
        )
            .into_response();
    }
    if path.split('/').any(|p| p == ".." || p.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(s.root.join(&path)) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

impl GitServer {
    /// Serves `repo`'s origin as `http://ADDR/octo/app.git`.
    async fn start(repo: &TestRepo, accepts: Accepts) -> (GitServer, String) {
        let root = repo.dir.path().join("served");
        std::fs::create_dir_all(root.join("octo")).expect("mkdir");
        let served = root.join("octo/app.git");
        if !served.exists() {
            std::os::unix::fs::symlink(repo.origin(), &served).expect("symlink");
        }
        update_server_info(&repo.origin());
        let server = GitServer {
            root,
            accepts,
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::get(serve_file))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, format!("http://{addr}/octo/app.git"))
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("lock").clone()
    }
}

/// What a dumb-protocol client needs: `info/refs` and `objects/info/packs`.
fn update_server_info(bare: &Path) {
    git(bare, &["update-server-info"]);
}

fn app_settings(github: &FakeGitHub) -> GitHubSettings {
    GitHubSettings {
        api_url: github.url(),
        auth: GitHubAuth::App {
            app_id: TEST_APP_ID,
            private_key_pem: Secret::new(TEST_APP_PRIVATE_KEY_PEM),
            installation_id: None,
        },
    }
}

fn app_client(github: &FakeGitHub) -> Arc<kiln_github::GitHubClient> {
    Arc::new(kiln_github::GitHubClient::new(github.app_config(None)).expect("client"))
}

/// Accepts the installation tokens the fake has minted and not revoked.
fn minted_by(github: &Arc<FakeGitHub>) -> Accepts {
    let github = github.clone();
    Arc::new(move |t| github.valid_tokens().iter().any(|(_, v)| v == t))
}

fn basic(token: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    Some(format!("Basic {b64}"))
}

fn token_requests(github: &FakeGitHub) -> usize {
    github
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/access_tokens"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_fetches_with_its_installation_token_and_nothing_without_one() {
    let repo = TestRepo::new();
    let first = repo.commit(&[("a.txt", "a")], "a");
    repo.push("refs/heads/main");
    let github = Arc::new(FakeGitHub::start().await);
    github.set_installation(REPO, 77);
    let (server, url) = GitServer::start(&repo, minted_by(&github)).await;
    let cache_root = tempfile::tempdir().expect("tempdir");

    // Without credentials: refused, and the error says so.
    let anonymous = GitCache::new(cache_root.path().join("anon"), GitAuth::None);
    let err = anonymous
        .ensure_commits(REPO, &url, &[&first])
        .await
        .expect_err("a private repository cannot be fetched anonymously");
    let text = kiln_server::execute::error_chain(&err);
    assert!(matches!(err, FetchError::Git { .. }), "{text}");
    assert!(
        text.starts_with("git fetch failed: ")
            && (text.contains("401")
                || text.contains("Authentication failed")
                || text.contains("could not read Username")),
        "{text}"
    );
    assert_eq!(
        server.seen().first(),
        Some(&None),
        "no credentials were sent"
    );

    // As the app: the token of the repository's installation (77).
    let cache = GitCache::new(
        cache_root.path().join("app"),
        GitAuth::App(app_client(&github)),
    );
    let dir = cache
        .ensure_commits(REPO, &url, &[&first])
        .await
        .expect("fetch with the installation token");
    assert_eq!(git(&dir, &["cat-file", "-t", &first]), "commit");
    let minted = github.valid_tokens();
    assert_eq!(minted.len(), 1, "{minted:?}");
    assert_eq!(minted[0].0, 77, "the repository's installation");
    let token = minted[0].1.clone();
    assert_eq!(
        server.seen().last(),
        Some(&basic(&token)),
        "sent as x-access-token"
    );
    assert_eq!(token_requests(&github), 1);
    let config = std::fs::read_to_string(dir.join("config")).expect("config");
    assert!(
        !config.contains(&token),
        "the token is stored nowhere: {config}"
    );

    // The next fetch reuses the cached token.
    let second = repo.commit(&[("b.txt", "b")], "b");
    repo.push("refs/heads/main");
    update_server_info(&repo.origin());
    cache
        .ensure_commits(REPO, &url, &[&second])
        .await
        .expect("second fetch");
    assert_eq!(token_requests(&github), 1, "cached per installation");

    // GitHub revokes it: git is refused once, a new token is minted and
    // the same fetch succeeds.
    github.revoke_tokens();
    let third = repo.commit(&[("c.txt", "c")], "c");
    repo.push("refs/heads/main");
    update_server_info(&repo.origin());
    cache
        .ensure_commits(REPO, &url, &[&third])
        .await
        .expect("fetch after the token was revoked");
    assert_eq!(token_requests(&github), 2, "minted again after the refusal");
    let fresh = github.valid_tokens();
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0].1, token);
    assert_eq!(server.seen().last(), Some(&basic(&fresh[0].1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_near_expiry_are_replaced_before_a_fetch() {
    let repo = TestRepo::new();
    let first = repo.commit(&[("a.txt", "a")], "a");
    repo.push("refs/heads/main");
    let github = Arc::new(FakeGitHub::start().await);
    // Valid for 4 minutes: inside the 5-minute refresh margin, so each
    // fetch gets a new one rather than one that may expire mid-fetch.
    github.set_token_lifetime(std::time::Duration::from_secs(240));
    let (server, url) = GitServer::start(&repo, minted_by(&github)).await;
    let root = tempfile::tempdir().expect("tempdir");
    let cache = GitCache::new(root.path().join("c"), GitAuth::App(app_client(&github)));
    cache
        .ensure_commits(REPO, &url, &[&first])
        .await
        .expect("first fetch");
    let second = repo.commit(&[("b.txt", "b")], "b");
    repo.push("refs/heads/main");
    update_server_info(&repo.origin());
    cache
        .ensure_commits(REPO, &url, &[&second])
        .await
        .expect("second fetch");
    assert_eq!(
        token_requests(&github),
        2,
        "a token near expiry is replaced"
    );
    let sent: Vec<_> = server.seen().into_iter().flatten().collect();
    assert!(
        sent.first() != sent.last(),
        "the second fetch used the new token: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_token_is_sent_to_git_and_a_wrong_one_fails() {
    let repo = TestRepo::new();
    let sha = repo.commit(&[("a.txt", "a")], "a");
    repo.push("refs/heads/main");
    let (server, url) = GitServer::start(&repo, Arc::new(|t| t == "ghp_right")).await;
    let root = tempfile::tempdir().expect("tempdir");
    let wrong = GitCache::new(
        root.path().join("wrong"),
        GitAuth::Token(Secret::new("ghp_wrong")),
    );
    let err = wrong
        .ensure_commits(REPO, &url, &[&sha])
        .await
        .expect_err("a wrong token is refused");
    let text = kiln_server::execute::error_chain(&err);
    assert!(!text.contains("ghp_wrong"), "no token in errors: {text}");
    let right = GitCache::new(
        root.path().join("right"),
        GitAuth::Token(Secret::new("ghp_right")),
    );
    let dir = right
        .ensure_commits(REPO, &url, &[&sha])
        .await
        .expect("the right token fetches");
    assert_eq!(git(&dir, &["cat-file", "-t", &sha]), "commit");
    assert!(
        server.seen().iter().all(Option::is_some),
        "{:?}",
        server.seen()
    );
}

/// The server end to end as a GitHub App: a push for a private
/// repository is fetched with an installation token and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_as_an_app_runs_a_push_of_a_private_repository() {
    let repo = TestRepo::new();
    let ci = workflow("CI", "push", "echo private-run-ok");
    let sha = repo.commit(&[(".github/workflows/ci.yml", &ci)], "ci");
    repo.push("refs/heads/main");
    let github = FakeGitHub::start().await;
    let github = Arc::new(github);
    let accepts: Accepts = {
        let github = github.clone();
        Arc::new(move |t| github.valid_tokens().iter().any(|(_, v)| v == t))
    };
    let (server, url) = GitServer::start(&repo, accepts).await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = config(data.path(), &github);
    c.github = Some(app_settings(&github));
    let provider = local_provider(data.path());
    let kiln = start_server(c, provider, &github).await;
    let mut payload = push_payload(
        &repo,
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
        &sha,
        &["x"],
    );
    payload["repository"]["clone_url"] = url.clone().into();
    let body = serde_json::to_vec(&payload).expect("json");
    let status = reqwest::Client::new()
        .post(format!("http://{}/webhook", kiln.addr()))
        .header("x-github-event", "push")
        .header("x-github-delivery", "private-1")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 202);
    let runs = wait_completed(kiln.state().db.store(), 1).await;
    assert_eq!(
        runs[0].conclusion.as_deref(),
        Some("success"),
        "{:?}",
        runs[0]
    );
    let tokens = github.valid_tokens();
    assert!(!tokens.is_empty(), "the app minted a token");
    assert!(
        server.seen().iter().any(|a| a.is_some()),
        "git authenticated: {:?}",
        server.seen()
    );
    for (_, token) in &tokens {
        assert!(
            !runs[0].spec.contains(token),
            "the stored run holds no token"
        );
        let config = std::fs::read_to_string(data.path().join("repos/octo/app.git/config"))
            .expect("cache config");
        assert!(!config.contains(token), "{config}");
    }
    kiln.shutdown().await;
}
