//! One error type for everything the client does.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GitHubError {
    /// GitHub answered with an error status (after any retries).
    #[error("github returned {status} for {url}: {message}")]
    Http {
        status: u16,
        /// GitHub's `message` field (plus validation details for a 422), or
        /// the start of the body when it is not GitHub's JSON.
        message: String,
        url: String,
    },
    /// Rate limited, and either the retries ran out or GitHub asked for a
    /// longer wait than [`RetryPolicy::max_delay`](crate::RetryPolicy).
    #[error("github rate limit exceeded; retry after {}", humantime::format_duration(*retry_after))]
    RateLimited { retry_after: Duration },
    /// No HTTP answer: connection refused or reset, timeout, TLS failure.
    #[error("request to {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// GitHub App authentication failed: a bad private key, or GitHub refused
    /// the installation lookup or token exchange.
    #[error("github app authentication failed: {message}")]
    Auth { message: String },
    /// GitHub answered 2xx with a body that is not what its API documents.
    #[error("unexpected response from {url}: {message}")]
    InvalidResponse { url: String, message: String },
    /// An argument that cannot go into a GitHub URL (a repository that is not
    /// `owner/name`, a commit SHA that is not hex). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl GitHubError {
    /// The HTTP status GitHub answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the same call later may succeed: worth requeueing.
    /// (The client has already retried within its policy.)
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Http { status, .. } => *status >= 500 || *status == 429,
            GitHubError::RateLimited { .. } | GitHubError::Transport { .. } => true,
            GitHubError::Auth { .. }
            | GitHubError::InvalidResponse { .. }
            | GitHubError::InvalidRequest(_) => false,
        }
    }
}
