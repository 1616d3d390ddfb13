//! What Kiln sends: check runs and commit statuses.
//!
//! These are the caller's view: whole texts and `SystemTime`s. The client
//! turns them into GitHub's JSON (RFC 3339 times, length limits applied) in
//! [`crate::client`], so nothing here can be sent half-valid.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A check run's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckRunStatus {
    #[default]
    Queued,
    InProgress,
    Completed,
}

impl CheckRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckRunStatus::Queued => "queued",
            CheckRunStatus::InProgress => "in_progress",
            CheckRunStatus::Completed => "completed",
        }
    }
}

/// A completed check run's `conclusion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
    TimedOut,
    Neutral,
}

impl CheckConclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConclusion::Success => "success",
            CheckConclusion::Failure => "failure",
            CheckConclusion::Cancelled => "cancelled",
            CheckConclusion::Skipped => "skipped",
            CheckConclusion::TimedOut => "timed_out",
            CheckConclusion::Neutral => "neutral",
        }
    }
}

/// The check run's page on GitHub: a title, a markdown summary and details.
/// Over-long `summary` and `text` are cut (with a marker) when sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
}

/// `POST /repos/{owner}/{repo}/check-runs`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckRunCreate {
    /// What the check is called in the PR's checks list (e.g. `kiln / build`).
    pub name: String,
    pub head_sha: String,
    pub status: CheckRunStatus,
    pub started_at: Option<SystemTime>,
    /// Setting a conclusion makes GitHub mark the run completed.
    pub conclusion: Option<CheckConclusion>,
    pub output: Option<CheckOutput>,
    /// Kiln's own id for the run, so a check run can be traced back (and a
    /// duplicate created by a retried POST recognised).
    pub external_id: Option<String>,
    /// Link from GitHub to the run's page on the Kiln server.
    pub details_url: Option<String>,
}

/// `PATCH /repos/{owner}/{repo}/check-runs/{id}`: `None` fields are left as
/// they are on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckRunUpdate {
    pub status: Option<CheckRunStatus>,
    pub conclusion: Option<CheckConclusion>,
    pub completed_at: Option<SystemTime>,
    pub output: Option<CheckOutput>,
}

/// A commit status's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }
}

/// `POST /repos/{owner}/{repo}/statuses/{sha}`: for tokens that cannot write
/// checks (checks need a GitHub App).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: CommitState,
    /// Which status this is; a later one with the same context replaces it.
    pub context: String,
    /// Cut to 140 characters when sent.
    pub description: Option<String>,
    pub target_url: Option<String>,
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(CheckRunStatus, CheckConclusion, CommitState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_as_str() {
        for s in [
            CheckRunStatus::Queued,
            CheckRunStatus::InProgress,
            CheckRunStatus::Completed,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
        for c in [
            CheckConclusion::Success,
            CheckConclusion::Failure,
            CheckConclusion::Cancelled,
            CheckConclusion::Skipped,
            CheckConclusion::TimedOut,
            CheckConclusion::Neutral,
        ] {
            assert_eq!(serde_json::to_value(c).ok(), Some(c.as_str().into()));
        }
        for s in [
            CommitState::Pending,
            CommitState::Success,
            CommitState::Failure,
            CommitState::Error,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
    }
}
