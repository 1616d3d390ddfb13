//! Does a workflow run for this event? [`evaluate`] applies a workflow's
//! `on:` filters to an [`Event`] the way GitHub documents them
//! (*Workflow syntax for GitHub Actions*, `on.<event>.*`; *Events that
//! trigger workflows*):
//!
//! - The event must be listed under `on:`.
//! - `types`: the event's activity type must be listed. Without `types`,
//!   `pull_request` and `pull_request_target` run only for `opened`,
//!   `synchronize` and `reopened`; every other event runs for all types.
//! - `push`: `branches`/`branches-ignore` apply to `refs/heads/*`,
//!   `tags`/`tags-ignore` to `refs/tags/*`. If only branch filters are
//!   defined, tag pushes don't run, and vice versa; with neither, every ref
//!   runs.
//! - `pull_request`/`pull_request_target`: branch filters apply to the base
//!   branch the pull request targets.
//! - `paths`/`paths-ignore` (`push` and the pull request events): run if at
//!   least one changed file is included by `paths`, or if not every changed
//!   file is ignored by `paths-ignore`. Not evaluated for tag pushes. No
//!   changed files means no run. Only the first [`MAX_DIFF_FILES`] files
//!   count, as on GitHub. Unknown changed files (`None`: GitHub "always
//!   runs" when it could not compute the diff) satisfy path filters.
//! - Branch and path filters must both be satisfied.
//! - `workflow_run`: the triggering workflow's name must be in `workflows`;
//!   branch filters apply to the branch that workflow ran on.
//! - Lists are ordered: the last matching pattern decides, so `!` patterns
//!   exclude and later positive patterns re-include (see [`PatternList`]).
//!   The same holds inside `*-ignore` lists, where a later `!` pattern
//!   un-ignores.

use std::fmt;

use crate::filter::PatternList;
use crate::model::{EventConfig, Triggers};
use crate::span::Spanned;

/// GitHub compares at most this many changed files against path filters:
/// "Diffs are limited to 300 files. If there are files changed that aren't
/// matched in the first 300 files returned by the filter, the workflow will
/// not run."
pub const MAX_DIFF_FILES: usize = 300;

/// The activity types `pull_request` and `pull_request_target` run for when
/// the workflow gives no `types`.
pub const DEFAULT_PULL_REQUEST_TYPES: &[&str] = &["opened", "synchronize", "reopened"];

/// The facts about a webhook event (or a simulated one) that `on:` filters
/// look at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The event name: `push`, `pull_request`, `workflow_dispatch`, …
    pub name: String,
    /// The activity type (`opened`, `labeled`, `completed`, …); `None` for
    /// events without one, such as `push`. `None` skips the `types` check.
    pub action: Option<String>,
    /// The full ref: `refs/heads/main`, `refs/tags/v1`. For `workflow_run`,
    /// the branch the triggering workflow ran on (`refs/` prefix optional).
    pub git_ref: Option<String>,
    /// The base branch a pull request targets (`main` or `refs/heads/main`).
    pub base_ref: Option<String>,
    /// Paths changed by the push or pull request; `None` when unknown.
    pub changed_files: Option<Vec<String>>,
    /// For `workflow_run`: the name of the triggering workflow.
    pub workflow_name: Option<String>,
}

impl Event {
    /// An event with only a name, e.g. `Event::new("workflow_dispatch")`.
    pub fn new(name: impl Into<String>) -> Event {
        Event {
            name: name.into(),
            ..Event::default()
        }
    }

    /// A push of a full ref: `Event::push("refs/heads/main")`.
    pub fn push(git_ref: impl Into<String>) -> Event {
        Event {
            git_ref: Some(git_ref.into()),
            ..Event::new("push")
        }
    }

    /// A push to a branch, by name.
    pub fn push_branch(branch: &str) -> Event {
        Event::push(format!("refs/heads/{branch}"))
    }

    /// A push of a tag, by name.
    pub fn push_tag(tag: &str) -> Event {
        Event::push(format!("refs/tags/{tag}"))
    }

    /// A `pull_request` activity on a pull request targeting `base`.
    pub fn pull_request(action: impl Into<String>, base: impl Into<String>) -> Event {
        Event {
            action: Some(action.into()),
            base_ref: Some(base.into()),
            ..Event::new("pull_request")
        }
    }

    /// A `pull_request_target` activity on a pull request targeting `base`.
    pub fn pull_request_target(action: impl Into<String>, base: impl Into<String>) -> Event {
        Event {
            name: "pull_request_target".to_owned(),
            ..Event::pull_request(action, base)
        }
    }

    /// A `workflow_run` activity of the workflow named `workflow`, which ran
    /// on `branch`.
    pub fn workflow_run(
        workflow: impl Into<String>,
        action: impl Into<String>,
        branch: &str,
    ) -> Event {
        Event {
            action: Some(action.into()),
            git_ref: Some(format!("refs/heads/{branch}")),
            workflow_name: Some(workflow.into()),
            ..Event::new("workflow_run")
        }
    }

    /// Sets the activity type.
    pub fn with_action(mut self, action: impl Into<String>) -> Event {
        self.action = Some(action.into());
        self
    }

    /// Sets the changed files.
    pub fn with_changed_files<I, S>(mut self, files: I) -> Event
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.changed_files = Some(files.into_iter().map(Into::into).collect());
        self
    }
}

/// Whether a workflow runs, and why (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub runs: bool,
    /// One line, e.g. `branch "dev" does not match on.push.branches`.
    pub reason: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.runs { "runs" } else { "does not run" };
        write!(f, "{verdict}: {}", self.reason)
    }
}

/// Why a workflow does not run (the `Err` of the checks below).
struct Skip(String);

type Check = Result<(), Skip>;

fn skip<T>(reason: String) -> Result<T, Skip> {
    Err(Skip(reason))
}

/// Decides whether a workflow with these triggers runs for `event`.
pub fn evaluate(triggers: &Triggers, event: &Event) -> Decision {
    let Some(config) = triggers.events.get(&event.name) else {
        return Decision {
            runs: false,
            reason: format!("event {:?} is not listed under on", event.name),
        };
    };
    let mut notes = Vec::new();
    match check_event(config, event, &mut notes) {
        Ok(()) => {
            let mut reason = format!("on.{} matches", event.name);
            for note in notes {
                reason.push_str("; ");
                reason.push_str(&note);
            }
            Decision { runs: true, reason }
        }
        Err(Skip(reason)) => Decision {
            runs: false,
            reason,
        },
    }
}

fn check_event(config: &EventConfig, event: &Event, notes: &mut Vec<String>) -> Check {
    let on = Key(&event.name);
    check_types(config, event, on)?;
    match event.name.as_str() {
        "push" => check_push(config, event, on, notes),
        "pull_request" | "pull_request_target" => {
            let base = event.base_ref.as_deref().map(branch_name);
            check_branches(config, base, "base branch", on)?;
            check_paths(config, event, on, notes)
        }
        "workflow_run" => {
            check_workflows(config, event, on)?;
            let branch = event.git_ref.as_deref().map(branch_name);
            check_branches(config, branch, "branch", on)
        }
        _ => Ok(()),
    }
}

/// Formats `on.<event>.<key>` for messages.
#[derive(Clone, Copy)]
struct Key<'a>(&'a str);

impl Key<'_> {
    fn of(self, key: &str) -> String {
        format!("on.{}.{key}", self.0)
    }
}

fn check_types(config: &EventConfig, event: &Event, on: Key) -> Check {
    let Some(action) = event.action.as_deref() else {
        return Ok(());
    };
    if let Some(types) = &config.types {
        if types.iter().any(|t| t.value == action) {
            return Ok(());
        }
        return skip(format!(
            "activity type {action:?} is not in {}",
            on.of("types")
        ));
    }
    let is_pull_request = matches!(event.name.as_str(), "pull_request" | "pull_request_target");
    if is_pull_request && !DEFAULT_PULL_REQUEST_TYPES.contains(&action) {
        return skip(format!(
            "activity type {action:?} is not one of {}'s default types ({}); list it in {}",
            event.name,
            DEFAULT_PULL_REQUEST_TYPES.join(", "),
            on.of("types")
        ));
    }
    Ok(())
}

fn check_push(config: &EventConfig, event: &Event, on: Key, notes: &mut Vec<String>) -> Check {
    let branch_filters = config.branches.is_some() || config.branches_ignore.is_some();
    let tag_filters = config.tags.is_some() || config.tags_ignore.is_some();
    let Some(git_ref) = event.git_ref.as_deref() else {
        if branch_filters || tag_filters {
            return skip("the push has no ref to match against branch or tag filters".to_owned());
        }
        return check_paths(config, event, on, notes);
    };
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        if !branch_filters && tag_filters {
            return skip(format!(
                "on.push filters only tags, so the push to branch {branch:?} does not run it"
            ));
        }
        check_ref_filters(
            &config.branches,
            &config.branches_ignore,
            branch,
            "branch",
            on,
        )?;
        check_paths(config, event, on, notes)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        if branch_filters && !tag_filters {
            return skip(format!(
                "on.push filters only branches, so the push of tag {tag:?} does not run it"
            ));
        }
        check_ref_filters(&config.tags, &config.tags_ignore, tag, "tag", on)?;
        if config.paths.is_some() || config.paths_ignore.is_some() {
            notes.push("path filters are not evaluated for tag pushes".to_owned());
        }
        Ok(())
    } else {
        if branch_filters || tag_filters {
            return skip(format!(
                "ref {git_ref:?} is neither a branch nor a tag, and on.push filters refs"
            ));
        }
        check_paths(config, event, on, notes)
    }
}

/// Branch filters of the pull request events and `workflow_run`; `branch`
/// is `None` when the event does not say.
fn check_branches(config: &EventConfig, branch: Option<&str>, what: &str, on: Key) -> Check {
    if config.branches.is_none() && config.branches_ignore.is_none() {
        return Ok(());
    }
    let Some(branch) = branch else {
        return skip(format!(
            "the event has no {what} to match against {}",
            on.of("branches")
        ));
    };
    check_ref_filters(&config.branches, &config.branches_ignore, branch, what, on)
}

/// Applies an include list (`branches`/`tags`) and an ignore list
/// (`branches-ignore`/`tags-ignore`) to one name. `what` is "branch", "tag"
/// or "base branch"; the keys are derived from it.
fn check_ref_filters(
    include: &Option<Vec<Spanned<String>>>,
    ignore: &Option<Vec<Spanned<String>>>,
    name: &str,
    what: &str,
    on: Key,
) -> Check {
    let plural = if what == "tag" { "tags" } else { "branches" };
    if let Some(patterns) = include {
        let key = on.of(plural);
        let list = compile(patterns, &key)?;
        match list.deciding_pattern(name) {
            None => return skip(format!("{what} {name:?} does not match {key}")),
            Some(p) if p.is_negated() => {
                return skip(format!(
                    "{what} {name:?} is excluded by {:?} in {key}",
                    p.as_str()
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(patterns) = ignore {
        let key = on.of(&format!("{plural}-ignore"));
        let list = compile(patterns, &key)?;
        if let Some(p) = list.deciding_pattern(name).filter(|p| !p.is_negated()) {
            return skip(format!(
                "{what} {name:?} is ignored by {:?} in {key}",
                p.as_str()
            ));
        }
    }
    Ok(())
}

fn check_paths(config: &EventConfig, event: &Event, on: Key, notes: &mut Vec<String>) -> Check {
    if config.paths.is_none() && config.paths_ignore.is_none() {
        return Ok(());
    }
    let Some(files) = event.changed_files.as_deref() else {
        notes.push("changed files unknown, so path filters are satisfied".to_owned());
        return Ok(());
    };
    if files.is_empty() {
        return skip("no files changed, and the workflow filters paths".to_owned());
    }
    let files = &files[..files.len().min(MAX_DIFF_FILES)];
    if let Some(patterns) = &config.paths {
        let key = on.of("paths");
        let list = compile(patterns, &key)?;
        if !files.iter().any(|f| list.is_match(f)) {
            return skip(format!(
                "none of the {} changed file(s) matches {key}",
                files.len()
            ));
        }
    }
    if let Some(patterns) = &config.paths_ignore {
        let key = on.of("paths-ignore");
        let list = compile(patterns, &key)?;
        if files.iter().all(|f| list.is_match(f)) {
            return skip(format!("all {} changed file(s) match {key}", files.len()));
        }
    }
    Ok(())
}

fn check_workflows(config: &EventConfig, event: &Event, on: Key) -> Check {
    let Some(workflows) = &config.workflows else {
        return Ok(());
    };
    let key = on.of("workflows");
    match event.workflow_name.as_deref() {
        None => skip(format!("the event names no triggering workflow for {key}")),
        Some(name) if !workflows.iter().any(|w| w.value == name) => {
            skip(format!("workflow {name:?} is not in {key}"))
        }
        Some(_) => Ok(()),
    }
}

fn compile(patterns: &[Spanned<String>], key: &str) -> Result<PatternList, Skip> {
    PatternList::new(patterns.iter().map(|p| p.value.as_str()))
        .map_err(|e| Skip(format!("{key}: {e}")))
}

/// `refs/heads/main` → `main`; a bare name stays as it is.
fn branch_name(git_ref: &str) -> &str {
    git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref)
}
