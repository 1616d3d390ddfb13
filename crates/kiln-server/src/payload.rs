//! The parts of webhook payloads kiln reads, typed. Fields kiln does not use
//! are ignored (payloads carry hundreds); the whole payload is still passed
//! to runs as `github.event`.

use serde::Deserialize;
use serde_json::Value;

/// The events kiln acts on, by `X-GitHub-Event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Push,
    PullRequest,
    WorkflowDispatch,
    Ping,
    /// Acknowledged and ignored.
    Other,
}

impl EventKind {
    pub fn of(header: &str) -> EventKind {
        match header {
            "push" => EventKind::Push,
            "pull_request" => EventKind::PullRequest,
            "workflow_dispatch" => EventKind::WorkflowDispatch,
            "ping" => EventKind::Ping,
            _ => EventKind::Other,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
    pub clone_url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    #[serde(default)]
    pub login: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Commit {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// GitHub lists at most this many commits in a push payload.
pub const PUSH_COMMITS_LISTED: usize = 20;

#[derive(Debug, Clone, Deserialize)]
pub struct Push {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub commits: Vec<Commit>,
    pub repository: Repository,
    #[serde(default)]
    pub sender: User,
}

impl Push {
    /// Changed files from the listed commits, if the list is complete
    /// (GitHub lists at most 20 commits; a new branch lists none).
    pub fn listed_changes(&self) -> Option<Vec<String>> {
        if self.commits.is_empty() || self.commits.len() >= PUSH_COMMITS_LISTED {
            return None;
        }
        let mut files: Vec<String> = Vec::new();
        for c in &self.commits {
            for f in c.added.iter().chain(&c.modified).chain(&c.removed) {
                if !files.contains(f) {
                    files.push(f.clone());
                }
            }
        }
        Some(files)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrRepo {
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrBranch {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `None` when the fork was deleted.
    pub repo: Option<PrRepo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestInfo {
    pub head: PrBranch,
    pub base: PrBranch,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequestInfo,
    pub repository: Repository,
    #[serde(default)]
    pub sender: User,
}

impl PullRequest {
    /// A pull request whose head lives in another repository (or in a
    /// deleted one) comes from a fork.
    pub fn is_from_fork(&self) -> bool {
        match &self.pull_request.head.repo {
            Some(head) => !head
                .full_name
                .eq_ignore_ascii_case(&self.repository.full_name),
            None => true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowDispatch {
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The workflow file, e.g. `.github/workflows/deploy.yml`.
    pub workflow: String,
    #[serde(default)]
    pub inputs: Option<serde_json::Map<String, Value>>,
    pub repository: Repository,
    #[serde(default)]
    pub sender: User,
}

impl WorkflowDispatch {
    /// Inputs as the strings a run is given (`true`, `3`, `text`).
    pub fn input_strings(&self) -> indexmap::IndexMap<String, String> {
        self.inputs
            .iter()
            .flatten()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

/// `repository.full_name` of any payload, for the allow-list check at intake.
pub fn repository_name(payload: &Value) -> Option<&str> {
    payload.pointer("/repository/full_name")?.as_str()
}

/// A full hex commit SHA (SHA-1 or SHA-256).
pub fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The all-zero SHA GitHub sends as `before` of a new ref.
pub fn is_null_sha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn push_changes_come_from_listed_commits() {
        let push: Push = serde_json::from_value(json!({
            "ref": "refs/heads/main", "before": "0".repeat(40), "after": "a".repeat(40),
            "commits": [
                {"added": ["a.rs"], "modified": ["b.rs"], "removed": []},
                {"added": [], "modified": ["a.rs"], "removed": ["c.rs"]}
            ],
            "repository": {"full_name": "o/r", "clone_url": "file:///x"}
        }))
        .unwrap();
        assert_eq!(
            push.listed_changes(),
            Some(vec!["a.rs".into(), "b.rs".into(), "c.rs".into()])
        );
        assert!(!push.deleted);
    }

    #[test]
    fn fork_detection() {
        let pr = |head: Value| -> PullRequest {
            serde_json::from_value(json!({
                "action": "opened", "number": 1,
                "pull_request": {
                    "head": {"ref": "f", "sha": "a", "repo": head},
                    "base": {"ref": "main", "sha": "b", "repo": {"full_name": "o/r"}}
                },
                "repository": {"full_name": "o/r", "clone_url": "file:///x"}
            }))
            .unwrap()
        };
        assert!(!pr(json!({"full_name": "O/R"})).is_from_fork());
        assert!(pr(json!({"full_name": "fork/r"})).is_from_fork());
        assert!(pr(Value::Null).is_from_fork());
    }

    #[test]
    fn dispatch_inputs_become_strings() {
        let d: WorkflowDispatch = serde_json::from_value(json!({
            "ref": "refs/heads/main", "workflow": ".github/workflows/d.yml",
            "inputs": {"name": "x", "flag": true, "n": 3, "none": null},
            "repository": {"full_name": "o/r", "clone_url": "file:///x"}
        }))
        .unwrap();
        let got = d.input_strings();
        assert_eq!(got["name"], "x");
        assert_eq!(got["flag"], "true");
        assert_eq!(got["n"], "3");
        assert_eq!(got["none"], "");
    }
}
