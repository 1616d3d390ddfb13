//! The repository cache: one bare clone per repository under
//! `<data_dir>/repos/<owner>/<name>.git`, fetched with the `git` command.
//!
//! - Commits are fetched by SHA into `refs/kiln/<sha>`, so they stay
//!   reachable (no gc loses them while a run waits) and the runner's
//!   checkout can fetch them from the cache.
//! - A commit already in the cache is not fetched again.
//! - With a token, git authenticates with an `http.extraHeader` passed
//!   through `GIT_CONFIG_*` variables (never on the command line, where
//!   other users could read it in the process list, nor in a URL or the
//!   cache's config). As a GitHub App, the token is the installation token
//!   of the repository's installation, fresh for each fetch (cached by the
//!   client, minted again before expiry, or once more when git is refused).
//! - One fetch per repository at a time (a per-repository async lock).
//! - Workflow files are read at the commit (`git ls-tree`, `git show`),
//!   never from a working tree; the files of recent commits are cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;

use crate::config::Secret;
use crate::payload::is_sha;

/// Fetches slower than this are abandoned.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Other git commands (local reads) end well within this.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Commits whose workflow files are kept in memory.
const WORKFLOW_CACHE: usize = 256;
/// Where workflows live in a repository.
pub const WORKFLOW_DIR: &str = ".github/workflows";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not a repository name of the form owner/name")]
    BadRepository(String),
    #[error("{0:?} is not a clone URL kiln fetches from")]
    BadUrl(String),
    #[error("{0:?} is not a full commit SHA")]
    BadSha(String),
    #[error("{0:?} is not a ref kiln fetches")]
    BadRef(String),
    #[error("cannot run git")]
    Spawn(#[source] std::io::Error),
    #[error("git {command} timed out")]
    Timeout { command: String },
    #[error("git {command} failed: {stderr}")]
    Git { command: String, stderr: String },
    #[error("no token to fetch {repo} with")]
    Token {
        repo: String,
        #[source]
        source: kiln_github::GitHubError,
    },
}

/// How fetches authenticate.
#[derive(Clone, Default)]
pub enum GitAuth {
    /// Anonymous (public repositories, local mirrors).
    #[default]
    None,
    /// A fixed token (a personal access token or a bot's).
    Token(Secret),
    /// A GitHub App: each fetch gets the installation token of the
    /// repository's installation from this client.
    App(Arc<kiln_github::GitHubClient>),
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GitAuth::None => "None",
            GitAuth::Token(_) => "Token(<redacted>)",
            GitAuth::App(_) => "App",
        })
    }
}

/// One workflow file at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowFile {
    /// Relative to the repository root: `.github/workflows/ci.yml`.
    pub path: String,
    pub source: String,
}

type Workflows = Arc<Vec<WorkflowFile>>;

pub struct GitCache {
    root: PathBuf,
    auth: GitAuth,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    workflows: Mutex<HashMap<(PathBuf, String), Workflows>>,
}

impl GitCache {
    /// Caches repositories below `root`; `auth` authenticates fetches.
    pub fn new(root: impl Into<PathBuf>, auth: GitAuth) -> GitCache {
        GitCache {
            root: root.into(),
            auth,
            locks: Mutex::default(),
            workflows: Mutex::default(),
        }
    }

    /// The cache directory of `repo` (`owner/name`), checked for shape.
    pub fn repo_dir(&self, repo: &str) -> Result<PathBuf, FetchError> {
        let bad = || FetchError::BadRepository(repo.to_owned());
        let (owner, name) = repo.split_once('/').ok_or_else(bad)?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !part_ok(owner) || !part_ok(name) {
            return Err(bad());
        }
        Ok(self
            .root
            .join(owner.to_ascii_lowercase())
            .join(format!("{}.git", name.to_ascii_lowercase())))
    }

    /// Makes sure every commit of `shas` is in the cache of `repo`, fetching
    /// the missing ones from `url`. Returns the cache directory.
    pub async fn ensure_commits(
        &self,
        repo: &str,
        url: &str,
        shas: &[&str],
    ) -> Result<PathBuf, FetchError> {
        check_url(url)?;
        if let Some(bad) = shas.iter().find(|s| !is_sha(s)) {
            return Err(FetchError::BadSha((*bad).to_owned()));
        }
        let dir = self.repo_dir(repo)?;
        let lock = self.lock(&dir);
        let _guard = lock.lock().await;
        self.init(&dir).await?;
        let mut missing = Vec::new();
        for sha in shas {
            if !has_commit(&dir, sha).await && !missing.contains(sha) {
                missing.push(*sha);
            }
        }
        if missing.is_empty() {
            return Ok(dir);
        }
        let refspecs: Vec<String> = missing
            .iter()
            .map(|sha| format!("{sha}:refs/kiln/{sha}"))
            .collect();
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            url,
        ];
        args.extend(refspecs.iter().map(String::as_str));
        self.remote_git(repo, &dir, &args).await?;
        Ok(dir)
    }

    /// Fetches `git_ref` (`refs/heads/main`, `refs/tags/v1`) of `repo` and
    /// returns the cache directory and the commit it points at.
    pub async fn resolve_ref(
        &self,
        repo: &str,
        url: &str,
        git_ref: &str,
    ) -> Result<(PathBuf, String), FetchError> {
        check_url(url)?;
        let ref_ok = git_ref.starts_with("refs/")
            && !git_ref.contains("..")
            && git_ref
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b));
        if !ref_ok {
            return Err(FetchError::BadRef(git_ref.to_owned()));
        }
        let dir = self.repo_dir(repo)?;
        let lock = self.lock(&dir);
        let _guard = lock.lock().await;
        self.init(&dir).await?;
        let local = format!("refs/kiln/ref/{}", git_ref.trim_start_matches("refs/"));
        let refspec = format!("+{git_ref}:{local}");
        self.remote_git(
            repo,
            &dir,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
                url,
                &refspec,
            ],
        )
        .await?;
        let sha = git(
            &dir,
            &["rev-parse", "--verify", &format!("{local}^{{commit}}")],
            LOCAL_TIMEOUT,
        )
        .await?;
        Ok((dir, sha))
    }

    /// The workflow files (`.github/workflows/*.yml|*.yaml`) at `sha`.
    pub async fn workflows(&self, dir: &Path, sha: &str) -> Result<Workflows, FetchError> {
        let key = (dir.to_owned(), sha.to_owned());
        if let Some(hit) = lock(&self.workflows).get(&key) {
            return Ok(hit.clone());
        }
        let listing = git(
            dir,
            &[
                "ls-tree",
                "--name-only",
                "-z",
                sha,
                &format!("{WORKFLOW_DIR}/"),
            ],
            LOCAL_TIMEOUT,
        )
        .await?;
        let mut files = Vec::new();
        for path in listing.split('\0').filter(|p| !p.is_empty()) {
            if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
                continue;
            }
            let source = git(dir, &["show", &format!("{sha}:{path}")], LOCAL_TIMEOUT).await?;
            files.push(WorkflowFile {
                path: path.to_owned(),
                source,
            });
        }
        let files = Arc::new(files);
        let mut cache = lock(&self.workflows);
        if cache.len() >= WORKFLOW_CACHE {
            cache.clear();
        }
        cache.insert(key, files.clone());
        Ok(files)
    }

    /// Files changed between two commits of the cache; `merge_base` compares
    /// `head` with its merge base with `base` (a pull request's diff).
    /// `None` if git cannot tell (a commit is missing).
    pub async fn changed_files(
        &self,
        dir: &Path,
        base: &str,
        head: &str,
        merge_base: bool,
    ) -> Option<Vec<String>> {
        if !is_sha(base) || !is_sha(head) {
            return None;
        }
        let range = if merge_base {
            format!("{base}...{head}")
        } else {
            format!("{base}..{head}")
        };
        let out = git(
            dir,
            &["diff", "--name-only", "-z", "--no-renames", &range],
            LOCAL_TIMEOUT,
        )
        .await
        .ok()?;
        Some(
            out.split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// A fresh bare repository at `dest` holding only commit `sha` of the
    /// cache (no history, no other commits): what a run gets when it must
    /// not reach anything else, such as a pull request's head.
    pub async fn isolated_copy(
        &self,
        dir: &Path,
        sha: &str,
        dest: &Path,
    ) -> Result<(), FetchError> {
        if !is_sha(sha) {
            return Err(FetchError::BadSha(sha.to_owned()));
        }
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(FetchError::Spawn)?;
        }
        let dest_str = dest.to_string_lossy().into_owned();
        git(
            Path::new("."),
            &["init", "--quiet", "--bare", &dest_str],
            LOCAL_TIMEOUT,
        )
        .await?;
        let source = format!("file://{}", dir.display());
        let refspec = format!("{sha}:refs/kiln/{sha}");
        git(
            dest,
            &[
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--",
                &source,
                &refspec,
            ],
            FETCH_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    fn lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(dir.to_owned()).or_default().clone()
    }

    async fn init(&self, dir: &Path) -> Result<(), FetchError> {
        if dir.join("HEAD").is_file() {
            return Ok(());
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(FetchError::Spawn)?;
        git(dir, &["init", "--quiet", "--bare"], LOCAL_TIMEOUT).await?;
        Ok(())
    }

    async fn remote_git(
        &self,
        repo: &str,
        dir: &Path,
        args: &[&str],
    ) -> Result<String, FetchError> {
        let token_error = |source| FetchError::Token {
            repo: repo.to_owned(),
            source,
        };
        let token = match &self.auth {
            GitAuth::None => None,
            GitAuth::Token(t) => Some(t.clone()),
            GitAuth::App(client) => Some(Secret::new(
                client.git_token(repo, None).await.map_err(token_error)?,
            )),
        };
        let first = output(
            with_token(command(dir, args), token.as_ref()),
            args,
            FETCH_TIMEOUT,
        )
        .await;
        match (&self.auth, first, token) {
            // An installation token revoked early (GitHub does that when the
            // installation's permissions change): mint a new one, once.
            (GitAuth::App(client), Err(e), Some(refused)) if is_auth_failure(&e) => {
                tracing::info!(
                    repository = repo,
                    "git refused the installation token; minting a new one"
                );
                let token = client
                    .git_token(repo, Some(refused.expose()))
                    .await
                    .map_err(token_error)?;
                let cmd = with_token(command(dir, args), Some(&Secret::new(token)));
                output(cmd, args, FETCH_TIMEOUT).await
            }
            (_, result, _) => result,
        }
    }
}

/// Gives git `token` as an `Authorization: Basic x-access-token:<token>`
/// header through `GIT_CONFIG_*` variables: not in argv (visible to every
/// user), not in a URL or config file that is stored, not in git's output.
fn with_token(mut cmd: tokio::process::Command, token: Option<&Secret>) -> tokio::process::Command {
    if let Some(token) = token {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.expose()));
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {basic}"),
            );
    }
    cmd
}

/// Whether git failed because the server refused the credentials.
fn is_auth_failure(e: &FetchError) -> bool {
    matches!(e, FetchError::Git { stderr, .. }
        if stderr.contains("Authentication failed")
            || stderr.contains(" 401")
            || stderr.contains(" 403")
            || stderr.contains("could not read Username"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// URLs git is asked to fetch from: http(s), ssh-style and `file://` (local
/// mirrors, tests). Never something git could read as an option.
fn check_url(url: &str) -> Result<(), FetchError> {
    let ok = ["https://", "http://", "ssh://", "git@", "file://"]
        .iter()
        .any(|p| url.starts_with(p))
        && !url.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(FetchError::BadUrl(url.to_owned()))
    }
}

async fn has_commit(dir: &Path, sha: &str) -> bool {
    git(
        dir,
        &["cat-file", "-e", &format!("{sha}^{{commit}}")],
        LOCAL_TIMEOUT,
    )
    .await
    .is_ok()
}

fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn git(dir: &Path, args: &[&str], timeout: Duration) -> Result<String, FetchError> {
    output(command(dir, args), args, timeout).await
}

async fn output(
    mut cmd: tokio::process::Command,
    args: &[&str],
    timeout: Duration,
) -> Result<String, FetchError> {
    let name = args.first().copied().unwrap_or_default().to_owned();
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(out) => out.map_err(FetchError::Spawn)?,
        Err(_) => return Err(FetchError::Timeout { command: name }),
    };
    if !out.status.success() {
        return Err(FetchError::Git {
            command: name,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked() {
        let cache = GitCache::new("/cache", GitAuth::None);
        assert_eq!(
            cache.repo_dir("Octo/Kiln").unwrap(),
            Path::new("/cache/octo/kiln.git")
        );
        for bad in [
            "octo",
            "../x",
            "octo/..",
            "octo/.git",
            "a/b/c",
            "a b/c",
            "/abs",
        ] {
            assert!(cache.repo_dir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://github.com/o/r.git").is_ok());
        assert!(check_url("file:///srv/r.git").is_ok());
        assert!(check_url("--upload-pack=evil").is_err());
        assert!(check_url("/plain/path").is_err());
        assert!(check_url("https://x/ y").is_err());
    }
}
