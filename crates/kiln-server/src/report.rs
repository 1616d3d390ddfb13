//! Reporting jobs back to GitHub: a check run per job (queued →
//! in_progress → completed, with the step table, step summaries and the
//! failed step's log tail), or a commit status per job.
//!
//! Reporting never fails or delays a run: each run has a [`RunReporter`], a
//! task that sends its updates in order (a check run must exist before it
//! is updated), logs errors and carries on. The GitHub client retries
//! transient failures with backoff. Texts are masked by the runner before
//! they get here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use kiln_github::report::{check_conclusion, commit_state};
use kiln_github::{
    CheckOutput, CheckRunCreate, CheckRunStatus, CheckRunUpdate, CommitStatus, GitHubClient,
    GitHubError,
};
use tokio::sync::mpsc;

use crate::config::ReportMode;
use crate::db::Db;

/// Where reports go: GitHub's REST API, or anything else in tests.
#[async_trait]
pub trait Reporter: Send + Sync {
    async fn create_check_run(&self, repo: &str, c: &CheckRunCreate) -> Result<u64, GitHubError>;
    async fn update_check_run(
        &self,
        repo: &str,
        id: u64,
        u: &CheckRunUpdate,
    ) -> Result<(), GitHubError>;
    async fn create_commit_status(
        &self,
        repo: &str,
        sha: &str,
        s: &CommitStatus,
    ) -> Result<(), GitHubError>;
}

#[async_trait]
impl Reporter for GitHubClient {
    async fn create_check_run(&self, repo: &str, c: &CheckRunCreate) -> Result<u64, GitHubError> {
        GitHubClient::create_check_run(self, repo, c).await
    }
    async fn update_check_run(
        &self,
        repo: &str,
        id: u64,
        u: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        GitHubClient::update_check_run(self, repo, id, u).await
    }
    async fn create_commit_status(
        &self,
        repo: &str,
        sha: &str,
        s: &CommitStatus,
    ) -> Result<(), GitHubError> {
        GitHubClient::create_commit_status(self, repo, sha, s).await
    }
}

/// One change of one job's report.
#[derive(Debug, Clone)]
pub enum Update {
    Queued {
        key: String,
        name: String,
    },
    InProgress {
        key: String,
        name: String,
    },
    Completed {
        key: String,
        name: String,
        /// `success`, `failure`, `cancelled`, `skipped`.
        conclusion: String,
        output: CheckOutput,
    },
    /// New output for a completed job (its step summaries arrived).
    Output {
        key: String,
        output: CheckOutput,
    },
}

/// What every report of a run shares.
#[derive(Debug, Clone)]
pub struct RunTarget {
    pub run_id: i64,
    pub repository: String,
    pub sha: String,
    pub workflow_name: String,
    pub event: String,
    pub details_url: Option<String>,
}

/// The sending side of a run's report task. Dropping every clone ends the
/// task once it has sent what was queued.
#[derive(Clone)]
pub struct RunReporter {
    tx: Option<mpsc::UnboundedSender<Update>>,
}

impl RunReporter {
    /// A reporter that reports nothing (`report = "none"`).
    pub fn disabled() -> RunReporter {
        RunReporter { tx: None }
    }

    /// Starts the report task of one run. `known` are check runs created
    /// before (by job key), e.g. by a process that was restarted since.
    pub fn start(
        mode: ReportMode,
        reporter: Option<Arc<dyn Reporter>>,
        db: Db,
        target: RunTarget,
        known: HashMap<String, u64>,
    ) -> (RunReporter, tokio::task::JoinHandle<()>) {
        let Some(reporter) = reporter.filter(|_| mode != ReportMode::None) else {
            return (RunReporter::disabled(), tokio::spawn(async {}));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task {
            mode,
            reporter,
            db,
            target,
            checks: known,
        };
        (RunReporter { tx: Some(tx) }, tokio::spawn(task.run(rx)))
    }

    pub fn send(&self, update: Update) {
        if let Some(tx) = &self.tx {
            // The task only ends when every sender is gone.
            let _ = tx.send(update);
        }
    }
}

struct Task {
    mode: ReportMode,
    reporter: Arc<dyn Reporter>,
    db: Db,
    target: RunTarget,
    /// Job key → check run id.
    checks: HashMap<String, u64>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>) {
        while let Some(update) = rx.recv().await {
            let result = match self.mode {
                ReportMode::Checks => self.check(update).await,
                ReportMode::Statuses => self.status(update).await,
                ReportMode::None => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(run = self.target.run_id, repository = %self.target.repository,
                    error = %e, "reporting to GitHub failed; the run is not affected");
            }
        }
    }

    async fn check(&mut self, update: Update) -> Result<(), GitHubError> {
        let repo = self.target.repository.clone();
        let now = Some(SystemTime::now());
        match update {
            Update::Queued { key, name } => {
                if !self.checks.contains_key(&key) {
                    self.create(&key, name, CheckRunStatus::Queued, None, None)
                        .await?;
                }
            }
            Update::InProgress { key, name } => match self.checks.get(&key) {
                Some(&id) => {
                    let u = CheckRunUpdate {
                        status: Some(CheckRunStatus::InProgress),
                        ..CheckRunUpdate::default()
                    };
                    self.reporter.update_check_run(&repo, id, &u).await?;
                }
                None => {
                    self.create(&key, name, CheckRunStatus::InProgress, None, None)
                        .await?;
                }
            },
            Update::Completed {
                key,
                name,
                conclusion,
                output,
            } => {
                let conclusion = check_conclusion(&conclusion);
                match self.checks.get(&key) {
                    Some(&id) => {
                        let u = CheckRunUpdate {
                            status: Some(CheckRunStatus::Completed),
                            conclusion: Some(conclusion),
                            completed_at: now,
                            output: Some(output),
                        };
                        self.reporter.update_check_run(&repo, id, &u).await?;
                    }
                    None => {
                        self.create(
                            &key,
                            name,
                            CheckRunStatus::Completed,
                            Some(conclusion),
                            Some(output),
                        )
                        .await?;
                    }
                }
            }
            Update::Output { key, output } => {
                if let Some(&id) = self.checks.get(&key) {
                    let u = CheckRunUpdate {
                        output: Some(output),
                        ..CheckRunUpdate::default()
                    };
                    self.reporter.update_check_run(&repo, id, &u).await?;
                }
            }
        }
        Ok(())
    }

    async fn create(
        &mut self,
        key: &str,
        name: String,
        status: CheckRunStatus,
        conclusion: Option<kiln_github::CheckConclusion>,
        output: Option<CheckOutput>,
    ) -> Result<(), GitHubError> {
        let c = CheckRunCreate {
            name,
            head_sha: self.target.sha.clone(),
            status,
            started_at: (status != CheckRunStatus::Queued).then(SystemTime::now),
            conclusion,
            output,
            external_id: Some(format!("{}/{key}", self.target.run_id)),
            details_url: self.target.details_url.clone(),
        };
        let id = self
            .reporter
            .create_check_run(&self.target.repository, &c)
            .await?;
        self.checks.insert(key.to_owned(), id);
        let run_id = self.target.run_id;
        let key = key.to_owned();
        if let Err(e) = self
            .db
            .call(move |s| s.set_job_check_run(run_id, &key, id))
            .await
        {
            tracing::warn!(run = run_id, error = %e, "cannot record the check run id");
        }
        Ok(())
    }

    async fn status(&mut self, update: Update) -> Result<(), GitHubError> {
        let (name, state, description) = match update {
            Update::Queued { name, .. } => (name, "queued".to_owned(), "Queued".to_owned()),
            Update::InProgress { name, .. } => {
                (name, "in_progress".to_owned(), "Running".to_owned())
            }
            Update::Completed {
                name,
                conclusion,
                output,
                ..
            } => (name, conclusion, output.title),
            Update::Output { .. } => return Ok(()),
        };
        let status = CommitStatus {
            state: commit_state(&state),
            context: format!(
                "{} / {} ({})",
                self.target.workflow_name, name, self.target.event
            ),
            description: Some(description),
            target_url: self.target.details_url.clone(),
        };
        self.reporter
            .create_commit_status(&self.target.repository, &self.target.sha, &status)
            .await
    }
}
