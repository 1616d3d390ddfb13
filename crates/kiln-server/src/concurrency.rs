//! Workflow-level `concurrency:` groups, with GitHub's rules:
//!
//! - At most one run of a group is in progress at a time.
//! - A new run waits (pending) while another run of its group is in
//!   progress. Only one run may be pending: a newer one cancels the older
//!   pending run (unless `queue: max`, which keeps them all in order).
//! - With `cancel-in-progress: true`, a new run cancels the run in progress
//!   (and any pending ones); it starts once the cancelled run has finished,
//!   so two runs of a group never overlap.
//!
//! [`Groups`] is the bookkeeping (pure); [`evaluate`] computes a run's group
//! from the workflow with the `github` and `inputs` contexts.

use std::collections::{HashMap, VecDeque};

use kiln_expr::{Contexts, EvalContext, Value};
use kiln_workflow::{BoolOrExpr, Workflow};

/// A run's concurrency settings, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    pub group: String,
    pub cancel_in_progress: bool,
    /// `queue: max`: pending runs are kept, not cancelled by newer ones.
    pub queue_all: bool,
}

/// Evaluates `workflow`'s `concurrency:` for a run. `None` if it has none
/// (or the group evaluates to an empty string, which GitHub treats as none).
pub fn evaluate(
    workflow: &Workflow,
    github: &serde_json::Value,
    inputs: &serde_json::Value,
) -> Result<Option<Concurrency>, String> {
    let Some(c) = &workflow.concurrency else {
        return Ok(None);
    };
    let mut contexts = Contexts::new();
    contexts.insert("github", Value::from(github.clone()));
    contexts.insert("inputs", Value::from(inputs.clone()));
    let ctx = EvalContext::new(&contexts);
    let group = kiln_expr::interpolate(&c.group.value, &ctx)
        .map_err(|e| format!("concurrency.group: {e}"))?;
    if group.is_empty() {
        return Ok(None);
    }
    let cancel_in_progress = match &c.cancel_in_progress {
        None => false,
        Some(BoolOrExpr::Bool(b)) => *b,
        Some(BoolOrExpr::Expr(text)) => kiln_expr::evaluate_template(&text.value, &ctx)
            .map_err(|e| format!("concurrency.cancel-in-progress: {e}"))?
            .is_truthy(),
    };
    let queue_all = c.queue.as_ref().is_some_and(|q| q.value == "max");
    Ok(Some(Concurrency {
        group,
        cancel_in_progress,
        queue_all,
    }))
}

/// What the scheduler must do after [`Groups::admit`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Start the new run now.
    pub start: bool,
    /// Cancel this run in progress (its cancellation token).
    pub cancel_running: Option<i64>,
    /// Cancel these pending runs (they never start).
    pub cancel_pending: Vec<i64>,
}

#[derive(Debug, Default)]
struct Group {
    running: Option<i64>,
    pending: VecDeque<i64>,
}

/// Runs per group: the one in progress and those waiting.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
}

impl Groups {
    /// A new run `id` of group `c.group` arrives.
    pub fn admit(&mut self, id: i64, c: &Concurrency) -> Admission {
        let group = self.groups.entry(c.group.clone()).or_default();
        let mut out = Admission::default();
        if group.running.is_none() && group.pending.is_empty() {
            group.running = Some(id);
            out.start = true;
            return out;
        }
        if c.cancel_in_progress {
            out.cancel_running = group.running;
            out.cancel_pending = group.pending.drain(..).collect();
        } else if !c.queue_all {
            out.cancel_pending = group.pending.drain(..).collect();
        }
        if group.running.is_none() {
            // Only pending runs were there, and they were just cancelled.
            group.running = Some(id);
            out.start = true;
        } else {
            group.pending.push_back(id);
        }
        out
    }

    /// Run `id` of `group` finished (or a pending one was cancelled).
    /// Returns the pending run to start now, if any.
    pub fn finished(&mut self, group: &str, id: i64) -> Option<i64> {
        let g = self.groups.get_mut(group)?;
        let mut next = None;
        if g.running == Some(id) {
            g.running = g.pending.pop_front();
            next = g.running;
        } else {
            g.pending.retain(|p| *p != id);
        }
        if g.running.is_none() && g.pending.is_empty() {
            self.groups.remove(group);
        }
        next
    }

    /// Runs waiting in some group.
    pub fn pending_count(&self) -> usize {
        self.groups.values().map(|g| g.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conc(cancel: bool) -> Concurrency {
        Concurrency {
            group: "g".into(),
            cancel_in_progress: cancel,
            queue_all: false,
        }
    }

    #[test]
    fn one_runs_newest_waits_older_pending_is_cancelled() {
        let mut g = Groups::default();
        assert!(g.admit(1, &conc(false)).start);
        let a = g.admit(2, &conc(false));
        assert_eq!(a, Admission::default());
        let a = g.admit(3, &conc(false));
        assert_eq!(a.cancel_pending, vec![2]);
        assert!(!a.start && a.cancel_running.is_none());
        assert_eq!(g.finished("g", 2), None);
        assert_eq!(g.finished("g", 1), Some(3));
        assert_eq!(g.finished("g", 3), None);
        assert_eq!(g.pending_count(), 0);
        assert!(g.admit(4, &conc(false)).start, "the group is free again");
    }

    #[test]
    fn cancel_in_progress_cancels_the_running_run_then_starts() {
        let mut g = Groups::default();
        assert!(g.admit(1, &conc(false)).start);
        let a = g.admit(2, &conc(true));
        assert_eq!(a.cancel_running, Some(1));
        assert!(!a.start, "waits until the cancelled run has finished");
        assert_eq!(g.finished("g", 1), Some(2));
    }

    #[test]
    fn queue_max_keeps_every_pending_run() {
        let mut g = Groups::default();
        let q = Concurrency {
            queue_all: true,
            ..conc(false)
        };
        assert!(g.admit(1, &q).start);
        assert_eq!(g.admit(2, &q), Admission::default());
        assert_eq!(g.admit(3, &q), Admission::default());
        assert_eq!(g.finished("g", 1), Some(2));
        assert_eq!(g.finished("g", 2), Some(3));
    }

    #[test]
    fn groups_are_independent() {
        let mut g = Groups::default();
        assert!(g.admit(1, &conc(false)).start);
        let other = Concurrency {
            group: "h".into(),
            ..conc(false)
        };
        assert!(g.admit(2, &other).start);
    }

    #[test]
    fn group_is_evaluated_with_github_and_inputs() {
        let src = "on: push\nconcurrency:\n  group: ${{ github.workflow }}-${{ github.ref }}-${{ inputs.env }}\n  cancel-in-progress: ${{ github.ref != 'refs/heads/main' }}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n";
        let (wf, diags) = kiln_workflow::parse_workflow(src);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let github = json!({"workflow": "CI", "ref": "refs/heads/dev"});
        let c = evaluate(&wf, &github, &json!({"env": "prod"}))
            .unwrap()
            .unwrap();
        assert_eq!(c.group, "CI-refs/heads/dev-prod");
        assert!(c.cancel_in_progress);
        let main = json!({"workflow": "CI", "ref": "refs/heads/main"});
        let c = evaluate(&wf, &main, &json!({})).unwrap().unwrap();
        assert!(!c.cancel_in_progress);
    }
}
