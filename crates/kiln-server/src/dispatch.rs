//! From a delivery to workflow runs: fetch the event's commit, list the
//! workflows *at that commit*, keep those whose `on:` matches the event
//! (`kiln_workflow::trigger::evaluate`), one run each.
//!
//! - `push`: branches and tags; deleted refs are ignored. Changed files for
//!   `paths` filters come from the payload's commits, or from
//!   `git diff before..after` when the list is incomplete.
//! - `pull_request`: the head commit's workflows, matched as
//!   `pull_request` (changed files = the PR's diff from its merge base);
//!   and the base commit's workflows, matched as `pull_request_target`.
//!   Pull requests from forks get no secrets unless the repository opts in;
//!   `pull_request_target` runs the base commit and, unless the repository
//!   opts in, can reach nothing else (see [`RunSpec::isolate`]).
//! - `workflow_dispatch`: the named workflow at the ref, with its inputs.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use kiln_store::{Delivery, DeliveryState, NewRun};
use kiln_workflow::trigger::{self, Event};
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::fetch::{FetchError, GitCache, WorkflowFile};
use crate::payload::{self, EventKind, is_null_sha};

/// What a run needs besides its store row, kept as the row's `spec` JSON
/// so a queued run can be started after a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The workflow file as it was at the run's commit.
    pub workflow_source: String,
    pub clone_url: String,
    pub actor: String,
    /// `workflow_dispatch` inputs as strings.
    pub inputs: IndexMap<String, String>,
    /// Whether the run gets the repository's secrets.
    pub secrets: bool,
    /// The run's repository holds only its own commit, so a step cannot
    /// check out anything else (`pull_request_target` of untrusted PRs).
    pub isolate: bool,
}

/// The outcome of dispatching one delivery.
#[derive(Debug)]
pub struct Plan {
    pub state: DeliveryState,
    pub note: Option<String>,
    pub runs: Vec<NewRun>,
}

impl Plan {
    fn ignored(note: impl Into<String>) -> Plan {
        Plan {
            state: DeliveryState::Ignored,
            note: Some(note.into()),
            runs: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("invalid {event} payload: {source}")]
    Payload {
        event: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// One way a delivery can trigger workflows: which commit's workflows,
/// matched against which event.
struct Candidate {
    event: Event,
    git_ref: String,
    sha: String,
    dir: PathBuf,
    /// Only this workflow file (`workflow_dispatch`).
    only: Option<String>,
    spec: RunSpec,
}

pub struct Dispatcher {
    cache: Arc<GitCache>,
    config: Arc<ServerConfig>,
}

impl Dispatcher {
    pub fn new(cache: Arc<GitCache>, config: Arc<ServerConfig>) -> Dispatcher {
        Dispatcher { cache, config }
    }

    /// Decides what `delivery` runs. Errors (a bad payload, a failed fetch)
    /// are returned so the caller records the delivery as failed.
    pub async fn plan(&self, delivery: &Delivery) -> Result<Plan, DispatchError> {
        let payload_err = |source| DispatchError::Payload {
            event: delivery.event.clone(),
            source,
        };
        let candidates = match EventKind::of(&delivery.event) {
            EventKind::Push => {
                let push: payload::Push =
                    serde_json::from_str(&delivery.payload).map_err(payload_err)?;
                if push.deleted || is_null_sha(&push.after) {
                    return Ok(Plan::ignored("the push deleted the ref"));
                }
                vec![self.push(push).await?]
            }
            EventKind::PullRequest => {
                let pr: payload::PullRequest =
                    serde_json::from_str(&delivery.payload).map_err(payload_err)?;
                self.pull_request(pr).await?
            }
            EventKind::WorkflowDispatch => {
                let d: payload::WorkflowDispatch =
                    serde_json::from_str(&delivery.payload).map_err(payload_err)?;
                vec![self.workflow_dispatch(d).await?]
            }
            EventKind::Ping | EventKind::Other => {
                return Ok(Plan::ignored(format!(
                    "kiln does not run {} events",
                    delivery.event
                )));
            }
        };
        let repository = delivery.repository.clone().unwrap_or_default();
        let mut runs = Vec::new();
        for c in candidates {
            let files = self.cache.workflows(&c.dir, &c.sha).await?;
            for file in files.iter() {
                if c.only.as_deref().is_some_and(|only| only != file.path) {
                    continue;
                }
                if let Some(run) = match_workflow(file, &c, &repository, &delivery.id) {
                    runs.push(run);
                }
            }
        }
        let note = format!("{} run(s)", runs.len());
        Ok(Plan {
            state: DeliveryState::Dispatched,
            note: Some(note),
            runs,
        })
    }

    async fn push(&self, push: payload::Push) -> Result<Candidate, DispatchError> {
        let repo = &push.repository.full_name;
        let dir = self
            .cache
            .ensure_commits(repo, &push.repository.clone_url, &[&push.after])
            .await?;
        let is_tag = push.git_ref.starts_with("refs/tags/");
        let changed = match push.listed_changes() {
            Some(files) => Some(files),
            None if is_tag || is_null_sha(&push.before) => None,
            None => {
                // The payload lists at most 20 commits: ask git.
                let fetched = self
                    .cache
                    .ensure_commits(repo, &push.repository.clone_url, &[&push.before])
                    .await;
                match fetched {
                    Ok(_) => {
                        self.cache
                            .changed_files(&dir, &push.before, &push.after, false)
                            .await
                    }
                    Err(_) => None,
                }
            }
        };
        let mut event = Event::push(push.git_ref.clone());
        event.changed_files = changed;
        Ok(Candidate {
            event,
            git_ref: push.git_ref,
            sha: push.after,
            dir,
            only: None,
            spec: RunSpec {
                clone_url: push.repository.clone_url,
                actor: push.sender.login,
                secrets: true,
                ..RunSpec::default()
            },
        })
    }

    async fn pull_request(
        &self,
        pr: payload::PullRequest,
    ) -> Result<Vec<Candidate>, DispatchError> {
        let repo = &pr.repository.full_name;
        let url = &pr.repository.clone_url;
        let head = &pr.pull_request.head.sha;
        let base = &pr.pull_request.base.sha;
        let policy = self.config.policy(repo);
        let dir = self.cache.ensure_commits(repo, url, &[head, base]).await?;
        let changed = self.cache.changed_files(&dir, base, head, true).await;
        let base_ref = pr.pull_request.base.git_ref.clone();
        let fork = pr.is_from_fork();
        let spec = RunSpec {
            clone_url: url.clone(),
            actor: pr.sender.login.clone(),
            ..RunSpec::default()
        };
        let mut pull_request = Event::pull_request(pr.action.clone(), base_ref.clone());
        pull_request.changed_files = changed.clone();
        let mut target = Event::pull_request_target(pr.action.clone(), base_ref.clone());
        target.changed_files = changed;
        Ok(vec![
            Candidate {
                event: pull_request,
                git_ref: format!("refs/pull/{}/merge", pr.number),
                sha: head.clone(),
                dir: dir.clone(),
                only: None,
                spec: RunSpec {
                    secrets: !fork || policy.fork_secrets,
                    ..spec.clone()
                },
            },
            Candidate {
                event: target,
                git_ref: format!("refs/heads/{base_ref}"),
                sha: base.clone(),
                dir,
                only: None,
                spec: RunSpec {
                    // pull_request_target runs trusted code (the base) with
                    // secrets; the untrusted head stays out of reach.
                    secrets: true,
                    isolate: !policy.pull_request_target_checkout_head,
                    ..spec
                },
            },
        ])
    }

    async fn workflow_dispatch(
        &self,
        d: payload::WorkflowDispatch,
    ) -> Result<Candidate, DispatchError> {
        let git_ref = if d.git_ref.starts_with("refs/") {
            d.git_ref.clone()
        } else {
            format!("refs/heads/{}", d.git_ref)
        };
        let (dir, sha) = self
            .cache
            .resolve_ref(&d.repository.full_name, &d.repository.clone_url, &git_ref)
            .await?;
        Ok(Candidate {
            event: Event::new("workflow_dispatch"),
            git_ref,
            sha,
            dir,
            only: Some(d.workflow.clone()),
            spec: RunSpec {
                clone_url: d.repository.clone_url.clone(),
                actor: d.sender.login.clone(),
                inputs: d.input_strings(),
                secrets: true,
                ..RunSpec::default()
            },
        })
    }
}

/// The run `file` gets for candidate `c`, if its `on:` matches. A matching
/// workflow with errors becomes a failed run, as on GitHub, so the author
/// sees why nothing ran.
fn match_workflow(
    file: &WorkflowFile,
    c: &Candidate,
    repository: &str,
    delivery: &str,
) -> Option<NewRun> {
    let (workflow, diagnostics) = kiln_workflow::parse_workflow(&file.source);
    let decision = trigger::evaluate(&workflow.on, &c.event);
    tracing::debug!(delivery, workflow = %file.path, event = %c.event.name, %decision, "trigger");
    if !decision.runs {
        return None;
    }
    let name = workflow
        .name
        .as_ref()
        .map_or_else(|| file.path.clone(), |n| n.value.clone());
    let finished = diagnostics.iter().find(|d| d.is_error()).map(|d| {
        let rendered = d.render(&file.path, &file.source);
        let first = rendered.lines().next().unwrap_or("invalid workflow file");
        (
            "failure".to_owned(),
            format!("invalid workflow file: {first}"),
        )
    });
    let spec = RunSpec {
        workflow_source: file.source.clone(),
        ..c.spec.clone()
    };
    Some(NewRun {
        delivery_id: Some(delivery.to_owned()),
        repository: repository.to_owned(),
        workflow_path: file.path.clone(),
        workflow_name: name,
        event: c.event.name.clone(),
        git_ref: c.git_ref.clone(),
        sha: c.sha.clone(),
        concurrency_group: None,
        cancel_in_progress: false,
        spec: serde_json::to_string(&spec).unwrap_or_default(),
        finished,
    })
}
