//! `concurrency:` groups with GitHub's rules, for whole runs (`kiln serve`'s
//! scheduler) and for jobs (`jobs.<id>.concurrency`, here):
//!
//! - At most one holder of a group is in progress at a time.
//! - A newcomer waits (pending) while the group is held. Only one may be
//!   pending: a newer one cancels the older pending one (unless
//!   `queue: max`, which keeps them all in order).
//! - With `cancel-in-progress: true`, a newcomer cancels the holder in
//!   progress (and any pending ones); it starts once the cancelled holder
//!   has finished, so two holders of a group never overlap.
//!
//! [`Groups`] is the bookkeeping (pure, ids are the caller's);
//! [`JobGroups`] applies it to jobs: [`JobGroups::acquire`] waits for the
//! group and returns a [`GroupPermit`] that frees it when dropped. One
//! `JobGroups` shared by every run (`kiln serve`) makes groups span runs;
//! `kiln run` has one per run.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kiln_expr::EvalContext;
use kiln_workflow::BoolOrExpr;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A group's settings, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    pub group: String,
    pub cancel_in_progress: bool,
    /// `queue: max`: pending holders are kept, not cancelled by newer ones.
    pub queue_all: bool,
}

/// Evaluates a `concurrency:` block in `ctx`. `None` if the group evaluates
/// to an empty string (GitHub treats that as no group). `field` names the
/// block in errors (`concurrency`, `jobs.deploy.concurrency`).
pub fn evaluate(
    c: &kiln_workflow::Concurrency,
    ctx: &EvalContext<'_>,
    field: &str,
) -> Result<Option<Concurrency>, String> {
    let group =
        kiln_expr::interpolate(&c.group.value, ctx).map_err(|e| format!("{field}.group: {e}"))?;
    if group.is_empty() {
        return Ok(None);
    }
    let cancel_in_progress = match &c.cancel_in_progress {
        None => false,
        Some(BoolOrExpr::Bool(b)) => *b,
        Some(BoolOrExpr::Expr(text)) => kiln_expr::evaluate_template(&text.value, ctx)
            .map_err(|e| format!("{field}.cancel-in-progress: {e}"))?
            .is_truthy(),
    };
    let queue_all = c.queue.as_ref().is_some_and(|q| q.value == "max");
    Ok(Some(Concurrency {
        group,
        cancel_in_progress,
        queue_all,
    }))
}

/// What the caller must do after [`Groups::admit`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Start the newcomer now.
    pub start: bool,
    /// Cancel this holder in progress.
    pub cancel_running: Option<i64>,
    /// Cancel these pending ones (they never start).
    pub cancel_pending: Vec<i64>,
}

#[derive(Debug, Default)]
struct Group {
    running: Option<i64>,
    pending: VecDeque<i64>,
}

/// Holders per group: the one in progress and those waiting.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
}

impl Groups {
    /// Newcomer `id` of group `c.group` arrives.
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
            // Only pending ones were there, and they were just cancelled.
            group.running = Some(id);
            out.start = true;
        } else {
            group.pending.push_back(id);
        }
        out
    }

    /// `id` of `group` finished (or a pending one was cancelled).
    /// Returns the pending one to start now, if any.
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

    /// How many wait in some group.
    pub fn pending_count(&self) -> usize {
        self.groups.values().map(|g| g.pending.len()).sum()
    }

    /// The holder in progress of `group`.
    pub fn running(&self, group: &str) -> Option<i64> {
        self.groups.get(group).and_then(|g| g.running)
    }
}

/// Why a job did not get its group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A newer job of the group replaced this pending one (GitHub's wording).
    #[error("canceling since a higher priority waiting request for '{group}' exists")]
    Superseded { group: String },
    /// The job itself was cancelled while it waited.
    #[error("cancelled while waiting for concurrency group '{group}'")]
    Cancelled { group: String },
}

#[derive(Default)]
struct JobInner {
    groups: Groups,
    /// The holder in progress of each id: cancelled by `cancel-in-progress`.
    tokens: HashMap<i64, CancellationToken>,
    /// Pending jobs, woken with `true` to start or `false` when superseded.
    waiters: HashMap<i64, oneshot::Sender<bool>>,
}

/// Job-level concurrency groups (see the module docs).
#[derive(Default)]
pub struct JobGroups {
    next: AtomicI64,
    inner: Mutex<JobInner>,
}

impl std::fmt::Debug for JobGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobGroups")
            .field("pending", &self.lock().groups.pending_count())
            .finish()
    }
}

impl JobGroups {
    pub fn new() -> Arc<JobGroups> {
        Arc::new(JobGroups::default())
    }

    fn lock(&self) -> MutexGuard<'_, JobInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the job may run in `c.group`. `job` is the job's
    /// cancellation token: a newer job with `cancel-in-progress` cancels it
    /// while it holds the group, and cancelling it while it waits gives up.
    pub async fn acquire(
        self: &Arc<Self>,
        c: &Concurrency,
        job: &CancellationToken,
    ) -> Result<GroupPermit, Refused> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let permit = GroupPermit {
            groups: self.clone(),
            group: c.group.clone(),
            id,
        };
        let rx = {
            let mut inner = self.lock();
            let admission = inner.groups.admit(id, c);
            if let Some(running) = admission.cancel_running
                && let Some(token) = inner.tokens.get(&running)
            {
                tracing::info!(group = %c.group, "cancel-in-progress: cancelling the job in progress");
                token.cancel();
            }
            for pending in admission.cancel_pending {
                if let Some(waiter) = inner.waiters.remove(&pending) {
                    let _ = waiter.send(false);
                }
            }
            inner.tokens.insert(id, job.clone());
            if admission.start {
                return Ok(permit);
            }
            let (tx, rx) = oneshot::channel();
            inner.waiters.insert(id, tx);
            rx
        };
        // From here on, dropping `permit` (cancelled, superseded or this
        // future dropped) takes the job out of the group.
        tokio::select! {
            woken = rx => match woken {
                Ok(true) => Ok(permit),
                _ => Err(Refused::Superseded { group: c.group.clone() }),
            },
            _ = job.cancelled() => Err(Refused::Cancelled { group: c.group.clone() }),
        }
    }

    /// Jobs waiting in some group.
    pub fn pending_count(&self) -> usize {
        self.lock().groups.pending_count()
    }

    fn release(&self, group: &str, id: i64) {
        let mut inner = self.lock();
        inner.tokens.remove(&id);
        inner.waiters.remove(&id);
        let mut next = inner.groups.finished(group, id);
        // Wake the next pending job; one that has gone away frees its turn.
        while let Some(n) = next {
            let woken = inner
                .waiters
                .remove(&n)
                .is_some_and(|tx| tx.send(true).is_ok());
            if woken {
                return;
            }
            inner.tokens.remove(&n);
            next = inner.groups.finished(group, n);
        }
    }
}

/// A job's place in its group (in progress or pending): dropping it frees
/// the group for the next pending job.
pub struct GroupPermit {
    groups: Arc<JobGroups>,
    group: String,
    id: i64,
}

impl std::fmt::Debug for GroupPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupPermit")
            .field("group", &self.group)
            .finish()
    }
}

impl Drop for GroupPermit {
    fn drop(&mut self) {
        self.groups.release(&self.group, self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
    fn cancel_in_progress_cancels_the_running_one_then_starts() {
        let mut g = Groups::default();
        assert!(g.admit(1, &conc(false)).start);
        let a = g.admit(2, &conc(true));
        assert_eq!(a.cancel_running, Some(1));
        assert!(!a.start, "waits until the cancelled one has finished");
        assert_eq!(g.finished("g", 1), Some(2));
    }

    #[test]
    fn queue_max_keeps_every_pending_one() {
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
    fn a_group_is_evaluated_in_the_given_contexts() {
        let src = "on: push\njobs:\n  a:\n    runs-on: x\n    concurrency:\n      group: deploy-${{ matrix.env }}\n      cancel-in-progress: ${{ matrix.env != 'prod' }}\n    steps:\n      - run: true\n";
        let (wf, diags) = kiln_workflow::parse_workflow(src);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let block = wf.jobs["a"].concurrency.as_ref().expect("job concurrency");
        let mut contexts = kiln_expr::Contexts::new();
        contexts.insert(
            "matrix",
            kiln_expr::Value::from(serde_json::json!({"env": "dev"})),
        );
        let ctx = EvalContext::new(&contexts);
        let c = evaluate(block, &ctx, "jobs.a.concurrency")
            .expect("evaluates")
            .expect("a group");
        assert_eq!(c.group, "deploy-dev");
        assert!(c.cancel_in_progress);
        let bad = kiln_workflow::Concurrency {
            group: kiln_workflow::Spanned::new("${{ matrix. }}".to_owned(), Default::default()),
            cancel_in_progress: None,
            queue: None,
        };
        let err = evaluate(&bad, &ctx, "jobs.a.concurrency").unwrap_err();
        assert!(err.starts_with("jobs.a.concurrency.group: "), "{err}");
    }

    async fn pending(groups: &JobGroups, n: usize) {
        for _ in 0..200 {
            if groups.pending_count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} pending, have {}", groups.pending_count());
    }

    #[tokio::test]
    async fn a_job_waits_for_the_holder_and_a_newer_pending_job_supersedes_it() {
        let groups = JobGroups::new();
        let first = groups
            .acquire(&conc(false), &CancellationToken::new())
            .await
            .expect("free group");
        let second = tokio::spawn({
            let groups = groups.clone();
            async move {
                groups
                    .acquire(&conc(false), &CancellationToken::new())
                    .await
            }
        });
        pending(&groups, 1).await;
        let third = tokio::spawn({
            let groups = groups.clone();
            async move {
                groups
                    .acquire(&conc(false), &CancellationToken::new())
                    .await
            }
        });
        let second = second.await.expect("task");
        assert_eq!(
            second.err(),
            Some(Refused::Superseded { group: "g".into() })
        );
        pending(&groups, 1).await;
        assert!(!third.is_finished(), "the third waits for the holder");
        drop(first);
        let third = third.await.expect("task").expect("starts after the holder");
        assert_eq!(groups.pending_count(), 0);
        drop(third);
        let again = groups
            .acquire(&conc(false), &CancellationToken::new())
            .await;
        assert!(again.is_ok(), "the group is free again");
    }

    #[tokio::test]
    async fn cancel_in_progress_cancels_the_holder_and_starts_after_it() {
        let groups = JobGroups::new();
        let holder_token = CancellationToken::new();
        let holder = groups
            .acquire(&conc(false), &holder_token)
            .await
            .expect("free group");
        let newer = tokio::spawn({
            let groups = groups.clone();
            async move { groups.acquire(&conc(true), &CancellationToken::new()).await }
        });
        tokio::time::timeout(Duration::from_secs(5), holder_token.cancelled())
            .await
            .expect("the holder is cancelled");
        pending(&groups, 1).await;
        assert!(
            !newer.is_finished(),
            "no overlap: waits for the holder to end"
        );
        drop(holder);
        assert!(newer.await.expect("task").is_ok());
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_group() {
        let groups = JobGroups::new();
        let holder = groups
            .acquire(&conc(false), &CancellationToken::new())
            .await
            .expect("free group");
        let token = CancellationToken::new();
        let waiter = tokio::spawn({
            let groups = groups.clone();
            let token = token.clone();
            async move { groups.acquire(&conc(false), &token).await }
        });
        pending(&groups, 1).await;
        token.cancel();
        assert_eq!(
            waiter.await.expect("task").err(),
            Some(Refused::Cancelled { group: "g".into() })
        );
        assert_eq!(groups.pending_count(), 0);
        drop(holder);
        assert!(
            groups
                .acquire(&conc(false), &CancellationToken::new())
                .await
                .is_ok()
        );
    }
}
