//! The client against the fake GitHub over real HTTP on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_github::fake::{FakeGitHub, TEST_TOKEN, Transition};
use kiln_github::report::{self, JobReport, StepReport};
use kiln_github::{
    Auth, CheckConclusion, CheckOutput, CheckRunCreate, CheckRunStatus, CheckRunUpdate,
    CommitState, CommitStatus, GitHubClient, GitHubConfig, GitHubError, RetryPolicy,
};

const REPO: &str = "octo/hello";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn client(config: GitHubConfig) -> GitHubClient {
    GitHubClient::new(config).expect("client")
}

fn check_run(name: &str) -> CheckRunCreate {
    CheckRunCreate {
        name: name.into(),
        head_sha: SHA.into(),
        status: CheckRunStatus::Queued,
        external_id: Some("run-1".into()),
        details_url: Some("https://kiln.example/runs/1".into()),
        ..CheckRunCreate::default()
    }
}

fn status(description: &str) -> CommitStatus {
    CommitStatus {
        state: CommitState::Pending,
        context: "kiln/build".into(),
        description: Some(description.into()),
        target_url: Some("https://kiln.example/runs/1".into()),
    }
}

/// Requests to paths ending in `suffix`.
fn count(fake: &FakeGitHub, suffix: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .count()
}

#[tokio::test]
async fn token_auth_sends_github_headers() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let id = gh
        .create_check_run(REPO, &check_run("kiln / build"))
        .await
        .expect("create");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/repos/octo/hello/check-runs");
    assert_eq!(r.status, 201);
    let bearer = format!("Bearer {TEST_TOKEN}");
    assert_eq!(r.header("authorization"), Some(bearer.as_str()));
    assert_eq!(r.header("user-agent"), Some("kiln-test"));
    assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
    let body = r.body.as_ref().expect("json body");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["head_sha"], SHA);

    let runs = fake.check_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].name, "kiln / build");
    assert_eq!(runs[0].external_id.as_deref(), Some("run-1"));
    assert_eq!(
        runs[0].details_url.as_deref(),
        Some("https://kiln.example/runs/1")
    );
}

#[tokio::test]
async fn wrong_token_is_an_http_401_not_retried() {
    let fake = FakeGitHub::start().await;
    let mut config = fake.token_config();
    config.auth = Auth::Token("wrong".into());
    let err = client(config)
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect_err("401");
    assert!(
        matches!(&err, GitHubError::Http { status: 401, message, .. } if message == "Bad credentials"),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn enterprise_api_url_prefix_is_kept() {
    let fake = FakeGitHub::start().await;
    let mut config = fake.token_config();
    config.api_url = format!("{}/api/v3/", fake.url());
    let gh = client(config);
    assert_eq!(gh.api_url(), format!("{}/api/v3", fake.url()));
    gh.create_commit_status(REPO, SHA, &status("queued"))
        .await
        .expect("status");
    assert_eq!(
        fake.requests()[0].path,
        format!("/api/v3/repos/octo/hello/statuses/{SHA}")
    );
}

#[tokio::test]
async fn check_run_goes_queued_in_progress_completed() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let id = gh
        .create_check_run(REPO, &check_run("build"))
        .await
        .expect("create");
    let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    gh.update_check_run(
        REPO,
        id,
        &CheckRunUpdate {
            status: Some(CheckRunStatus::InProgress),
            ..CheckRunUpdate::default()
        },
    )
    .await
    .expect("in progress");
    gh.update_check_run(
        REPO,
        id,
        &CheckRunUpdate {
            status: Some(CheckRunStatus::Completed),
            conclusion: Some(CheckConclusion::Failure),
            completed_at: Some(started + Duration::from_secs(90)),
            output: Some(CheckOutput {
                title: "step \"test\" failed".into(),
                summary: "| a | b |".into(),
                text: Some("log".into()),
            }),
        },
    )
    .await
    .expect("completed");

    let runs = fake.check_runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let t = |status: &str, conclusion: Option<&str>| Transition {
        status: status.into(),
        conclusion: conclusion.map(Into::into),
    };
    assert_eq!(
        run.history,
        [
            t("queued", None),
            t("in_progress", None),
            t("completed", Some("failure"))
        ]
    );
    assert_eq!(run.completed_at.as_deref(), Some("2023-11-14T22:14:50Z"));
    let output = run.output.as_ref().expect("output");
    assert_eq!(output["title"], "step \"test\" failed");
    assert_eq!(output["text"], "log");
    let methods: Vec<_> = fake.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "PATCH", "PATCH"]);
}

#[tokio::test]
async fn create_with_conclusion_is_sent_completed() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let mut run = check_run("skipped job");
    run.status = CheckRunStatus::InProgress;
    run.conclusion = Some(CheckConclusion::Skipped);
    run.started_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    gh.create_check_run(REPO, &run).await.expect("create");
    let stored = &fake.check_runs()[0];
    assert_eq!(stored.status, "completed");
    assert_eq!(stored.conclusion.as_deref(), Some("skipped"));
    assert_eq!(stored.started_at.as_deref(), Some("2023-11-14T22:13:20Z"));
}

#[tokio::test]
async fn commit_status_is_posted_and_description_truncated() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    gh.create_commit_status(REPO, SHA, &status("queued"))
        .await
        .expect("short");
    let long = "é".repeat(300);
    let mut done = status(&long);
    done.state = CommitState::Success;
    gh.create_commit_status(REPO, SHA, &done)
        .await
        .expect("long description is cut, not refused");

    let statuses = fake.statuses();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].state, "pending");
    assert_eq!(statuses[0].context, "kiln/build");
    assert_eq!(statuses[0].description.as_deref(), Some("queued"));
    assert_eq!(
        statuses[0].target_url.as_deref(),
        Some("https://kiln.example/runs/1")
    );
    assert_eq!(statuses[1].state, "success");
    let description = statuses[1].description.as_deref().expect("description");
    assert_eq!(description.chars().count(), 140);
    assert!(description.ends_with("é…"), "{description}");
}

#[tokio::test]
async fn long_summary_and_text_are_truncated_to_fit() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let mut run = check_run("big");
    run.output = Some(CheckOutput {
        title: "big".into(),
        summary: "s".repeat(100_000),
        text: Some("t".repeat(100_000)),
    });
    gh.create_check_run(REPO, &run)
        .await
        .expect("accepted after truncation");
    let output = fake.check_runs()[0].output.clone().expect("output");
    for field in ["summary", "text"] {
        let s = output[field].as_str().expect("string");
        assert!(s.len() <= 65535, "{field}: {}", s.len());
        assert!(
            s.ends_with("bytes omitted)") && s.contains("truncated by Kiln"),
            "{field}"
        );
    }
}

#[tokio::test]
async fn fake_enforces_limits_the_client_respects() {
    // The truncation test above only means something if GitHub (the fake)
    // would refuse the uncut text: a raw request shows it does.
    let fake = FakeGitHub::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/repos/{REPO}/statuses/{SHA}", fake.url()))
        .bearer_auth(TEST_TOKEN)
        .json(&serde_json::json!({ "state": "success", "description": "x".repeat(141) }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 422);
    assert!(fake.statuses().is_empty());
}

#[tokio::test]
async fn invalid_arguments_send_nothing() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let err = gh
        .create_check_run("not-a-repo", &check_run("x"))
        .await
        .expect_err("bad repo");
    assert!(matches!(err, GitHubError::InvalidRequest(_)), "{err:?}");
    let err = gh
        .create_commit_status(REPO, "main/../x", &status("x"))
        .await
        .expect_err("bad sha");
    assert!(matches!(err, GitHubError::InvalidRequest(_)), "{err:?}");
    assert!(fake.requests().is_empty());
}

// --- GitHub App authentication ---------------------------------------------

#[tokio::test]
async fn app_auth_mints_one_token_and_reuses_it() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.app_config(None));
    let id = gh
        .create_check_run(REPO, &check_run("build"))
        .await
        .expect("create");
    gh.update_check_run(
        REPO,
        id,
        &CheckRunUpdate {
            status: Some(CheckRunStatus::InProgress),
            ..CheckRunUpdate::default()
        },
    )
    .await
    .expect("update");
    gh.create_commit_status(REPO, SHA, &status("running"))
        .await
        .expect("status");

    let requests = fake.requests();
    let summary: Vec<(String, String, u16)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.status))
        .collect();
    assert_eq!(
        summary[..2],
        [
            ("GET".into(), "/repos/octo/hello/installation".into(), 200),
            (
                "POST".into(),
                "/app/installations/1/access_tokens".into(),
                201
            ),
        ],
        "the fake verified the JWT on both app calls"
    );
    assert_eq!(requests.len(), 5, "{summary:?}");
    // App calls carry a JWT (three dot-separated parts), repo calls the
    // installation token.
    for r in &requests[..2] {
        let auth = r.header("authorization").expect("auth");
        let jwt = auth.strip_prefix("Bearer ").expect("bearer");
        assert_eq!(jwt.split('.').count(), 3, "{auth}");
    }
    for r in &requests[2..] {
        assert_eq!(r.header("authorization"), Some("Bearer ghs_fake_1_1"));
    }
}

#[tokio::test]
async fn app_jwt_signed_with_another_key_is_refused() {
    let fake = FakeGitHub::start().await;
    let mut config = fake.app_config(None);
    config.auth = Auth::App {
        app_id: kiln_github::fake::TEST_APP_ID,
        private_key_pem: include_str!("data/test-other-private-key.pem").into(),
        installation_id: None,
    };
    let err = client(config)
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, GitHubError::Auth { message } if message.contains("401") && message.contains("octo/hello")),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1, "no retry, no check run call");
    assert!(fake.check_runs().is_empty());
}

#[tokio::test]
async fn app_token_is_refreshed_when_near_expiry() {
    let fake = FakeGitHub::start().await;
    // Shorter than the client's refresh margin: stale as soon as minted.
    fake.set_token_lifetime(Duration::from_secs(120));
    let gh = client(fake.app_config(None));
    gh.create_commit_status(REPO, SHA, &status("one"))
        .await
        .expect("first");
    gh.create_commit_status(REPO, SHA, &status("two"))
        .await
        .expect("second");
    assert_eq!(count(&fake, "/installation"), 1, "lookup is cached");
    assert_eq!(count(&fake, "/access_tokens"), 2, "token minted again");
    let tokens: Vec<_> = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/statuses/"))
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(tokens, ["Bearer ghs_fake_1_1", "Bearer ghs_fake_1_2"]);
}

#[tokio::test]
async fn app_fixed_installation_skips_lookup() {
    let fake = FakeGitHub::start().await;
    fake.set_installation(REPO, 77);
    let gh = client(fake.app_config(Some(77)));
    gh.create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect("status");
    assert_eq!(count(&fake, "/installation"), 0);
    assert_eq!(
        fake.requests()[0].path,
        "/app/installations/77/access_tokens"
    );
}

#[tokio::test]
async fn app_tokens_are_per_installation() {
    let fake = FakeGitHub::start().await;
    fake.set_installation("other/repo", 2);
    let gh = client(fake.app_config(None));
    for _ in 0..2 {
        gh.create_commit_status(REPO, SHA, &status("a"))
            .await
            .expect("installation 1");
        gh.create_commit_status("other/repo", SHA, &status("b"))
            .await
            .expect("installation 2 (the fake refuses a token of another installation)");
    }
    assert_eq!(count(&fake, "/app/installations/1/access_tokens"), 1);
    assert_eq!(count(&fake, "/app/installations/2/access_tokens"), 1);
    assert_eq!(fake.statuses().len(), 4);
}

#[tokio::test]
async fn revoked_app_token_is_replaced_once() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.app_config(None));
    gh.create_commit_status(REPO, SHA, &status("a"))
        .await
        .expect("first");
    fake.revoke_tokens();
    gh.create_commit_status(REPO, SHA, &status("b"))
        .await
        .expect("second, after minting again");
    assert_eq!(count(&fake, "/access_tokens"), 2);
    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/statuses/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [201, 401, 201]);
}

// --- Retries ------------------------------------------------------------------

#[tokio::test]
async fn retries_429_after_retry_after() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(1, 429, &[("retry-after", "1")]);
    let gh = client(fake.token_config());
    let start = Instant::now();
    gh.create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect("succeeds on retry");
    // The policy's own backoff is 5 ms; only honouring retry-after waits 1 s.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let codes: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [429, 201]);
    assert_eq!(fake.statuses().len(), 1);
}

#[tokio::test]
async fn retries_403_primary_rate_limit_until_reset() {
    let fake = FakeGitHub::start().await;
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    fake.fail_next(
        1,
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ],
    );
    let gh = client(fake.token_config());
    gh.create_check_run(REPO, &check_run("x"))
        .await
        .expect("succeeds after reset");
    let codes: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [403, 201]);
    assert!(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            >= reset,
        "retried before the reset"
    );
}

#[tokio::test]
async fn retries_403_secondary_rate_limit() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(2, 403, &[("retry-after", "0")]);
    let gh = client(fake.token_config());
    gh.create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect("succeeds on third try");
    let codes: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [403, 403, 201]);
}

#[tokio::test]
async fn retries_500_and_502_then_succeeds() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(1, 500, &[]);
    fake.fail_next(1, 502, &[]);
    let gh = client(fake.token_config());
    let id = gh
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect("third try succeeds");
    let codes: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [500, 502, 201]);
    assert_eq!(fake.check_runs()[0].id, id);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_last_error() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(3, 500, &[]);
    fake.fail_next(10, 503, &[]);
    let gh = client(fake.token_config()); // max_attempts: 4
    let err = gh
        .create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect_err("gives up");
    assert!(
        matches!(&err, GitHubError::Http { status: 503, message, url }
            if message == "fake failure 503" && url.ends_with(SHA)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn gives_up_on_persistent_rate_limit() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(10, 429, &[("retry-after", "0")]);
    let mut config = fake.token_config();
    config.retry.max_attempts = 2;
    let err = client(config)
        .create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect_err("gives up");
    assert!(matches!(err, GitHubError::RateLimited { .. }), "{err:?}");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_wait_beyond_max_delay_fails_at_once() {
    let fake = FakeGitHub::start().await;
    fake.fail_next(1, 429, &[("retry-after", "3600")]);
    let err = client(fake.token_config())
        .create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect_err("not worth waiting an hour");
    match err {
        GitHubError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Duration::from_secs(3600));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    fake.fail_next(1, 422, &[]);
    let err = gh
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect_err("422");
    assert_eq!(err.status(), Some(422));
    assert!(!err.is_transient());
    assert_eq!(fake.requests().len(), 1);

    // A plain 403 (no rate-limit headers) is a permission problem.
    fake.fail_next(1, 403, &[("x-ratelimit-remaining", "4000")]);
    let err = gh
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect_err("403");
    assert_eq!(err.status(), Some(403));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn validation_errors_say_which_field() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let id = gh
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect("create");
    // Completed without a conclusion: GitHub refuses.
    let err = gh
        .update_check_run(
            REPO,
            id,
            &CheckRunUpdate {
                status: Some(CheckRunStatus::Completed),
                ..CheckRunUpdate::default()
            },
        )
        .await
        .expect_err("422");
    match &err {
        GitHubError::Http {
            status: 422,
            message,
            ..
        } => assert_eq!(
            message,
            "Validation Failed (CheckRun.conclusion: missing_field)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_then_transport_error() {
    // A port that was just free: connecting is refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let config = GitHubConfig {
        api_url: format!("http://127.0.0.1:{port}"),
        auth: Auth::Token("t".into()),
        user_agent: "kiln-test".into(),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
        },
    };
    let err = client(config)
        .create_commit_status(REPO, SHA, &status("x"))
        .await
        .expect_err("refused");
    assert!(matches!(err, GitHubError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn dropped_connection_is_retried() {
    // A server that hangs up on the first connection and answers the second.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(socket);
                continue;
            }
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the JSON body (small: one read usually).
            while !String::from_utf8_lossy(&request).contains("}") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"{"id":7}"#;
            let response = format!(
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    let config = GitHubConfig {
        api_url: format!("http://{addr}"),
        auth: Auth::Token("t".into()),
        user_agent: "kiln-test".into(),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
        },
    };
    let id = client(config)
        .create_check_run(REPO, &check_run("x"))
        .await
        .expect("second connection answers");
    assert_eq!(id, 7);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    server.abort();
}

// --- Report end to end ----------------------------------------------------------

#[tokio::test]
async fn rendered_report_is_accepted_as_check_output() {
    let fake = FakeGitHub::start().await;
    let gh = client(fake.token_config());
    let job = JobReport {
        job_name: "build".into(),
        conclusion: "failure".into(),
        reason: None,
        steps: vec![
            StepReport {
                name: "checkout".into(),
                conclusion: "success".into(),
                duration_ms: 20,
            },
            StepReport {
                name: "test".into(),
                conclusion: "failure".into(),
                duration_ms: 3_000,
            },
        ],
        step_summary: String::new(),
        failed_log_tail: vec!["error: hunter2 rejected".into()],
    };
    let output = report::render_masked(&job, &|s: &str| s.replace("hunter2", "***"));
    let mut run = check_run("build");
    run.conclusion = Some(report::check_conclusion(&job.conclusion));
    run.output = Some(output);
    gh.create_check_run(REPO, &run).await.expect("create");
    let stored = &fake.check_runs()[0];
    assert_eq!(stored.conclusion.as_deref(), Some("failure"));
    let output = stored.output.as_ref().expect("output");
    assert_eq!(output["title"], "step \"test\" failed");
    let text = output["text"].as_str().expect("text");
    assert!(text.contains("error: *** rejected"), "{text}");
    assert!(!text.contains("hunter2"));
}
