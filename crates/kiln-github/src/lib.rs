//! Kiln's GitHub REST client: how `kiln serve` reports runs back to GitHub as
//! check runs (GitHub App) or commit statuses (any token).
//!
//! - [`GitHubClient`]: authenticated calls with retries. GitHub is often
//!   briefly unavailable or rate limiting; a lost "completed" update would
//!   leave a PR's check spinning forever, so transient failures are retried
//!   per [`RetryPolicy`], and only what will not change on a retry fails at
//!   once.
//! - [`report`]: a finished job as check run output (pure, no I/O).
//! - `fake` (feature `fake`): a fake GitHub on loopback for tests.
//!
//! Secrets: tokens and keys never appear in `Debug` output or logs. Texts
//! sent to GitHub are sent as given; mask them first (see [`report`]).

mod app;
mod client;
mod config;
mod error;
pub mod report;
mod retry;
mod truncate;
mod types;

#[cfg(feature = "fake")]
pub mod fake;

pub use app::REFRESH_MARGIN as TOKEN_REFRESH_MARGIN;
pub use client::GitHubClient;
pub use config::{Auth, GitHubConfig, RetryPolicy};
pub use error::GitHubError;
pub use truncate::{MAX_DESCRIPTION_CHARS, MAX_OUTPUT_LEN, truncate_description, truncate_output};
pub use types::{
    CheckConclusion, CheckOutput, CheckRunCreate, CheckRunStatus, CheckRunUpdate, CommitState,
    CommitStatus,
};
