//! Results of steps, jobs and runs, with GitHub's semantics.
//!
//! - A step has an *outcome* (what happened) and a *conclusion* (what counts):
//!   a failed step with `continue-on-error` has outcome `failure` and
//!   conclusion `success` (`steps.<id>.outcome` / `.conclusion`).
//! - A job's result folds its steps' conclusions: cancelled beats failure
//!   beats success; skipped steps count for nothing (as the runner merges
//!   task results). The same fold gives the job status that `success()` and
//!   `failure()` see before each step.
//! - A failed job with `continue-on-error` shows as failed, but other jobs see
//!   `needs.<id>.result == 'success'` and the run does not fail because of it.
//! - A run (and a matrix job as a whole) folds its jobs: failure beats
//!   cancelled beats success; if every job was skipped, it is skipped. A run
//!   cancelled by the user is cancelled whatever its jobs did.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `success`, `failure`, `cancelled` or `skipped`: the values of
/// `steps.*.outcome`, `steps.*.conclusion`, `needs.*.result` and `job.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

/// What happened, before `continue-on-error` is applied. Same values.
pub type Outcome = Conclusion;

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }

    /// The outcome of a process: exit code 0 succeeds, anything else fails.
    pub fn from_exit_code(code: i32) -> Outcome {
        if code == 0 {
            Conclusion::Success
        } else {
            Conclusion::Failure
        }
    }
}

impl fmt::Display for Conclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown result `{0}`: expected success, failure, cancelled or skipped")]
pub struct ParseConclusionError(String);

impl FromStr for Conclusion {
    type Err = ParseConclusionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Conclusion::Success),
            "failure" => Ok(Conclusion::Failure),
            "cancelled" => Ok(Conclusion::Cancelled),
            "skipped" => Ok(Conclusion::Skipped),
            other => Err(ParseConclusionError(other.to_owned())),
        }
    }
}

/// A step's `outcome` and `conclusion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub outcome: Outcome,
    pub conclusion: Conclusion,
}

impl StepResult {
    /// Applies `continue-on-error`: only a failure is turned into success;
    /// a cancelled step stays cancelled.
    pub fn new(outcome: Outcome, continue_on_error: bool) -> Self {
        let conclusion = match outcome {
            Conclusion::Failure if continue_on_error => Conclusion::Success,
            other => other,
        };
        StepResult {
            outcome,
            conclusion,
        }
    }

    /// A step whose `if:` was false (or that never ran).
    pub fn skipped() -> Self {
        StepResult::new(Conclusion::Skipped, false)
    }
}

/// A job's result from its steps' conclusions (the job status so far, while
/// it runs). No steps, or only skipped ones, is success.
pub fn job_conclusion(step_conclusions: impl IntoIterator<Item = Conclusion>) -> Conclusion {
    let mut result = Conclusion::Success;
    for conclusion in step_conclusions {
        result = match (result, conclusion) {
            (Conclusion::Cancelled, _) | (_, Conclusion::Cancelled) => Conclusion::Cancelled,
            (Conclusion::Failure, _) | (_, Conclusion::Failure) => Conclusion::Failure,
            (current, _) => current,
        };
    }
    result
}

/// A finished job (one matrix configuration counts as one job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// What the job did: shown in the UI and reported as its check status.
    pub conclusion: Conclusion,
    /// The job's evaluated `continue-on-error`.
    pub continue_on_error: bool,
}

impl JobResult {
    pub fn new(conclusion: Conclusion, continue_on_error: bool) -> Self {
        JobResult {
            conclusion,
            continue_on_error,
        }
    }

    /// The value dependent jobs see as `needs.<id>.result`: a failure allowed
    /// by `continue-on-error` reads as success.
    pub fn needs_result(&self) -> Conclusion {
        match self.conclusion {
            Conclusion::Failure if self.continue_on_error => Conclusion::Success,
            other => other,
        }
    }

    /// Whether this job's failure should cancel the rest of its matrix under
    /// `strategy.fail-fast` (a failure allowed by `continue-on-error` does
    /// not).
    pub fn triggers_fail_fast(&self, fail_fast: bool) -> bool {
        fail_fast && self.needs_result() == Conclusion::Failure
    }
}

/// Failure beats cancelled beats success; all skipped is skipped; nothing is
/// success.
fn fold_jobs(results: impl IntoIterator<Item = Conclusion>) -> Conclusion {
    let (mut any, mut failed, mut cancelled, mut all_skipped) = (false, false, false, true);
    for result in results {
        any = true;
        failed |= result == Conclusion::Failure;
        cancelled |= result == Conclusion::Cancelled;
        all_skipped &= result == Conclusion::Skipped;
    }
    if failed {
        Conclusion::Failure
    } else if cancelled {
        Conclusion::Cancelled
    } else if any && all_skipped {
        Conclusion::Skipped
    } else {
        Conclusion::Success
    }
}

/// `needs.<id>.result` of a matrix job: its configurations folded, each as
/// dependents see it.
pub fn matrix_needs_result<'a>(
    configurations: impl IntoIterator<Item = &'a JobResult>,
) -> Conclusion {
    fold_jobs(configurations.into_iter().map(JobResult::needs_result))
}

/// The conclusion of a whole run. Green only if every job that had to
/// succeed did.
pub fn run_conclusion<'a>(
    jobs: impl IntoIterator<Item = &'a JobResult>,
    run_cancelled: bool,
) -> Conclusion {
    if run_cancelled {
        return Conclusion::Cancelled;
    }
    fold_jobs(jobs.into_iter().map(JobResult::needs_result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Conclusion::{Cancelled, Failure, Skipped, Success};

    #[test]
    fn serde_and_display_are_lowercase() {
        for (c, s) in [
            (Success, "success"),
            (Failure, "failure"),
            (Cancelled, "cancelled"),
            (Skipped, "skipped"),
        ] {
            assert_eq!(c.to_string(), s);
            assert_eq!(
                serde_json::to_value(c).expect("serialize"),
                serde_json::Value::String(s.into())
            );
            assert_eq!(s.parse::<Conclusion>(), Ok(c));
            let back: Conclusion = serde_json::from_str(&format!("\"{s}\"")).expect("deserialize");
            assert_eq!(back, c);
        }
        assert!("Success".parse::<Conclusion>().is_err());
        assert!("canceled".parse::<Conclusion>().is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Conclusion::from_exit_code(0), Success);
        assert_eq!(Conclusion::from_exit_code(1), Failure);
        assert_eq!(Conclusion::from_exit_code(-9), Failure);
    }

    #[test]
    fn step_continue_on_error_only_forgives_failure() {
        assert_eq!(
            StepResult::new(Failure, true),
            StepResult {
                outcome: Failure,
                conclusion: Success
            }
        );
        assert_eq!(StepResult::new(Failure, false).conclusion, Failure);
        assert_eq!(StepResult::new(Cancelled, true).conclusion, Cancelled);
        assert_eq!(StepResult::new(Success, true).conclusion, Success);
        assert_eq!(
            StepResult::skipped(),
            StepResult {
                outcome: Skipped,
                conclusion: Skipped
            }
        );
    }

    #[test]
    fn job_conclusion_from_steps() {
        assert_eq!(job_conclusion([]), Success);
        assert_eq!(job_conclusion([Success, Skipped, Success]), Success);
        assert_eq!(job_conclusion([Skipped, Skipped]), Success);
        assert_eq!(job_conclusion([Success, Failure, Success]), Failure);
        assert_eq!(job_conclusion([Failure, Cancelled]), Cancelled);
        assert_eq!(job_conclusion([Cancelled, Failure]), Cancelled);
        // A step forgiven by continue-on-error does not fail the job.
        let forgiven = StepResult::new(Failure, true);
        assert_eq!(job_conclusion([Success, forgiven.conclusion]), Success);
    }

    #[test]
    fn job_continue_on_error_affects_needs_and_run_not_the_job_itself() {
        let failed_allowed = JobResult::new(Failure, true);
        assert_eq!(failed_allowed.conclusion, Failure);
        assert_eq!(failed_allowed.needs_result(), Success);
        assert_eq!(
            run_conclusion([&JobResult::new(Success, false), &failed_allowed], false),
            Success
        );

        let failed = JobResult::new(Failure, false);
        assert_eq!(failed.needs_result(), Failure);
        assert_eq!(run_conclusion([&failed_allowed, &failed], false), Failure);
        assert_eq!(JobResult::new(Cancelled, true).needs_result(), Cancelled);
    }

    #[test]
    fn run_conclusion_precedence() {
        let r = |c: Conclusion| JobResult::new(c, false);
        assert_eq!(run_conclusion([], false), Success);
        assert_eq!(run_conclusion([&r(Success), &r(Skipped)], false), Success);
        assert_eq!(run_conclusion([&r(Skipped), &r(Skipped)], false), Skipped);
        assert_eq!(
            run_conclusion([&r(Cancelled), &r(Success)], false),
            Cancelled
        );
        assert_eq!(run_conclusion([&r(Cancelled), &r(Failure)], false), Failure);
        assert_eq!(run_conclusion([&r(Success)], true), Cancelled);
    }

    #[test]
    fn matrix_result_and_fail_fast() {
        let ok = JobResult::new(Success, false);
        let experimental_failed = JobResult::new(Failure, true);
        let failed = JobResult::new(Failure, false);
        assert_eq!(matrix_needs_result([&ok, &experimental_failed]), Success);
        assert_eq!(matrix_needs_result([&ok, &failed]), Failure);
        assert_eq!(
            matrix_needs_result([
                &JobResult::new(Skipped, false),
                &JobResult::new(Skipped, false)
            ]),
            Skipped
        );
        assert!(failed.triggers_fail_fast(true));
        assert!(!failed.triggers_fail_fast(false));
        assert!(!experimental_failed.triggers_fail_fast(true));
        assert!(!ok.triggers_fail_fast(true));
    }
}
