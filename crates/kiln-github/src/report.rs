//! A finished job as a check run's page: a one-line title, a markdown table
//! of steps with the job's step summaries under it, and the failed step's
//! last log lines as the details.
//!
//! Pure functions over [`JobReport`], a plain mirror of what the runner
//! produces, so this crate does not depend on the runner.
//!
//! Secrets: the text goes to GitHub verbatim. Pass strings that are already
//! masked, or use [`render_masked`] with the run's masker: it masks every
//! input string (each log line separately) before anything is laid out or
//! cut, so a cut can never leave half a secret unmasked.

use crate::truncate::{MAX_OUTPUT_LEN, truncate_output, truncate_output_start};
use crate::{CheckConclusion, CheckOutput, CommitState};

/// A job's result, as far as the report needs it. Conclusions are GitHub's
/// strings: `success`, `failure`, `cancelled`, `skipped` (and `timed_out`,
/// `neutral`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobReport {
    pub job_name: String,
    pub conclusion: String,
    /// Why the job failed or was skipped before any step ran.
    pub reason: Option<String>,
    pub steps: Vec<StepReport>,
    /// What the steps wrote to `GITHUB_STEP_SUMMARY` (markdown).
    pub step_summary: String,
    /// The last lines of the first failed step's output.
    pub failed_log_tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepReport {
    pub name: String,
    pub conclusion: String,
    pub duration_ms: u64,
}

/// The check run output for `job`, its strings taken as already masked.
pub fn render(job: &JobReport) -> CheckOutput {
    let title = title(job);
    let summary = truncate_output(&summary(job), MAX_OUTPUT_LEN).into_owned();
    CheckOutput {
        title,
        summary,
        text: log_text(job),
    }
}

/// [`render`] after passing every string of `job` through `mask`.
pub fn render_masked(job: &JobReport, mask: &dyn Fn(&str) -> String) -> CheckOutput {
    let masked = JobReport {
        job_name: mask(&job.job_name),
        conclusion: job.conclusion.clone(),
        reason: job.reason.as_deref().map(mask),
        steps: job
            .steps
            .iter()
            .map(|s| StepReport {
                name: mask(&s.name),
                conclusion: s.conclusion.clone(),
                duration_ms: s.duration_ms,
            })
            .collect(),
        step_summary: mask(&job.step_summary),
        failed_log_tail: job.failed_log_tail.iter().map(|l| mask(l)).collect(),
    };
    render(&masked)
}

/// The check run conclusion for a job or run conclusion. Anything unknown
/// counts as a failure: a result we cannot read must not show green.
pub fn check_conclusion(conclusion: &str) -> CheckConclusion {
    match conclusion {
        "success" => CheckConclusion::Success,
        "cancelled" => CheckConclusion::Cancelled,
        "skipped" => CheckConclusion::Skipped,
        "timed_out" => CheckConclusion::TimedOut,
        "neutral" => CheckConclusion::Neutral,
        _ => CheckConclusion::Failure,
    }
}

/// The commit status state for a conclusion (or `queued` / `in_progress`).
/// Statuses have no "skipped" or "cancelled": skipped and neutral pass (as
/// skipped checks do in branch protection); cancelled is `error`, "did not
/// finish", not a verdict on the code; unknown values are `error` too.
pub fn commit_state(conclusion: &str) -> CommitState {
    match conclusion {
        "success" | "skipped" | "neutral" => CommitState::Success,
        "failure" | "timed_out" => CommitState::Failure,
        "queued" | "in_progress" | "pending" | "waiting" => CommitState::Pending,
        _ => CommitState::Error,
    }
}

/// One line for the checks list: what passed, or what broke.
pub fn title(job: &JobReport) -> String {
    let count = |c: &str| job.steps.iter().filter(|s| s.conclusion == c).count();
    let first = |c: &str| job.steps.iter().find(|s| s.conclusion == c);
    match job.conclusion.as_str() {
        "success" => {
            let passed = count("success");
            let mut title = match passed {
                0 => "no steps ran".to_owned(),
                1 => "1 step passed".to_owned(),
                n => format!("{n} steps passed"),
            };
            let skipped = count("skipped");
            if skipped > 0 && passed > 0 {
                title.push_str(&format!(", {skipped} skipped"));
            }
            title
        }
        "failure" => match first("failure") {
            Some(step) => {
                let mut title = format!("step \"{}\" failed", one_line(&step.name));
                let more = count("failure") - 1;
                if more > 0 {
                    title.push_str(&format!(" (and {more} more)"));
                }
                title
            }
            None => match &job.reason {
                Some(reason) => format!("job failed: {}", one_line(reason)),
                None => "job failed".to_owned(),
            },
        },
        "cancelled" => match first("cancelled") {
            Some(step) => format!("cancelled during step \"{}\"", one_line(&step.name)),
            None => "job cancelled".to_owned(),
        },
        "skipped" => "job skipped".to_owned(),
        "timed_out" => "job timed out".to_owned(),
        other => format!("job {}", one_line(other)),
    }
}

fn summary(job: &JobReport) -> String {
    let mut out = String::new();
    if let Some(reason) = &job.reason {
        out.push_str(reason);
        out.push_str("\n\n");
    }
    if !job.steps.is_empty() {
        out.push_str("| | Step | Duration |\n| :-: | --- | --: |\n");
        for step in &job.steps {
            let duration = if step.conclusion == "skipped" {
                "–".to_owned()
            } else {
                format_duration(step.duration_ms)
            };
            out.push_str(&format!(
                "| {} | {} | {duration} |\n",
                emoji(&step.conclusion),
                table_cell(&step.name)
            ));
        }
    }
    let step_summary = job.step_summary.trim_end();
    if !step_summary.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(step_summary);
        out.push('\n');
    }
    out
}

/// The failed step's last lines in a code block, cut from the front when too
/// long (the end is what explains a failure).
fn log_text(job: &JobReport) -> Option<String> {
    if job.failed_log_tail.is_empty() {
        return None;
    }
    let step = job
        .steps
        .iter()
        .find(|s| s.conclusion == "failure")
        .map(|s| format!(" of step \"{}\"", one_line(&s.name)))
        .unwrap_or_default();
    let n = job.failed_log_tail.len();
    let lines = if n == 1 { "line" } else { "lines" };
    let heading = format!(
        "Last {n} {lines}{step} (job \"{}\"):\n\n",
        one_line(&job.job_name)
    );
    let log = job.failed_log_tail.join("\n");
    let fence = fence_for(&log);
    // Heading, "{fence}text\n", "\n{fence}\n".
    let frame = heading.len() + 2 * fence.len() + "text\n".len() + 2;
    let log = truncate_output_start(&log, MAX_OUTPUT_LEN.saturating_sub(frame));
    Some(format!("{heading}{fence}text\n{log}\n{fence}\n"))
}

/// A backtick fence longer than any backtick run in `text`, so the log
/// cannot close the block early (CommonMark).
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn emoji(conclusion: &str) -> &'static str {
    match conclusion {
        "success" => "✅",
        "failure" => "❌",
        "cancelled" => "🚫",
        "skipped" => "⏭️",
        "timed_out" => "⏱️",
        _ => "❔",
    }
}

/// `450 ms`, `1.2 s`, `2m 05s`, `1h 02m`.
pub fn format_duration(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", secs, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// A markdown table cell: `|` would end the cell and a newline the row.
fn table_cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, conclusion: &str, duration_ms: u64) -> StepReport {
        StepReport {
            name: name.into(),
            conclusion: conclusion.into(),
            duration_ms,
        }
    }

    fn failed_job() -> JobReport {
        JobReport {
            job_name: "build".into(),
            conclusion: "failure".into(),
            reason: None,
            steps: vec![
                step("Checkout", "success", 1234),
                step("test", "failure", 450),
                step("deploy", "skipped", 0),
            ],
            step_summary: "## Coverage\n\n81%\n".into(),
            failed_log_tail: vec!["running 2 tests".into(), "test a ... FAILED".into()],
        }
    }

    #[test]
    fn failed_job_renders_exactly() {
        let out = render(&failed_job());
        assert_eq!(out.title, "step \"test\" failed");
        assert_eq!(
            out.summary,
            "| | Step | Duration |\n\
             | :-: | --- | --: |\n\
             | ✅ | Checkout | 1.2 s |\n\
             | ❌ | test | 450 ms |\n\
             | ⏭️ | deploy | – |\n\
             \n\
             ## Coverage\n\
             \n\
             81%\n"
        );
        assert_eq!(
            out.text.as_deref(),
            Some(
                "Last 2 lines of step \"test\" (job \"build\"):\n\
                 \n\
                 ```text\n\
                 running 2 tests\n\
                 test a ... FAILED\n\
                 ```\n"
            )
        );
    }

    #[test]
    fn titles() {
        let mut job = JobReport {
            conclusion: "success".into(),
            steps: vec![
                step("a", "success", 1),
                step("b", "success", 1),
                step("c", "success", 1),
            ],
            ..JobReport::default()
        };
        assert_eq!(title(&job), "3 steps passed");
        job.steps.truncate(1);
        assert_eq!(title(&job), "1 step passed");
        job.steps.push(step("d", "skipped", 0));
        assert_eq!(title(&job), "1 step passed, 1 skipped");
        job.steps.clear();
        assert_eq!(title(&job), "no steps ran");

        let mut failed = failed_job();
        failed.steps.push(step("lint", "failure", 5));
        assert_eq!(title(&failed), "step \"test\" failed (and 1 more)");
        let early = JobReport {
            conclusion: "failure".into(),
            reason: Some("no VM available".into()),
            ..JobReport::default()
        };
        assert_eq!(title(&early), "job failed: no VM available");
        let cancelled = JobReport {
            conclusion: "cancelled".into(),
            steps: vec![step("a", "success", 1), step("long", "cancelled", 9)],
            ..JobReport::default()
        };
        assert_eq!(title(&cancelled), "cancelled during step \"long\"");
        let skipped = JobReport {
            conclusion: "skipped".into(),
            ..JobReport::default()
        };
        assert_eq!(title(&skipped), "job skipped");
    }

    #[test]
    fn passing_job_has_no_text() {
        let job = JobReport {
            job_name: "lint".into(),
            conclusion: "success".into(),
            steps: vec![step("fmt", "success", 61_000)],
            ..JobReport::default()
        };
        let out = render(&job);
        assert_eq!(out.text, None);
        assert_eq!(
            out.summary,
            "| | Step | Duration |\n| :-: | --- | --: |\n| ✅ | fmt | 1m 01s |\n"
        );
    }

    #[test]
    fn step_names_cannot_break_the_table() {
        let job = JobReport {
            conclusion: "success".into(),
            steps: vec![step("a | b\nc", "success", 0)],
            ..JobReport::default()
        };
        assert!(render(&job).summary.contains("| ✅ | a \\| b c | 0 ms |\n"));
    }

    #[test]
    fn log_cannot_close_the_fence() {
        let mut job = failed_job();
        job.failed_log_tail = vec!["```".into(), "rm -rf /".into()];
        let text = render(&job).text.expect("text");
        assert!(text.contains("\n````text\n```\nrm -rf /\n````\n"), "{text}");
    }

    #[test]
    fn long_log_keeps_its_end_and_its_fence() {
        let mut job = failed_job();
        job.failed_log_tail = (0..20_000).map(|i| format!("line {i}")).collect();
        let text = render(&job).text.expect("text");
        assert!(text.len() <= MAX_OUTPUT_LEN, "{}", text.len());
        assert!(
            text.ends_with("line 19999\n```\n"),
            "{}",
            &text[text.len() - 40..]
        );
        assert!(text.contains("```text\n… (truncated by Kiln: "));
    }

    #[test]
    fn masking_covers_every_string() {
        let mut job = failed_job();
        job.steps[1].name = "test s3cret".into();
        job.step_summary = "token s3cret".into();
        job.failed_log_tail = vec!["echo s3cret".into()];
        job.reason = Some("s3cret".into());
        let out = render_masked(&job, &|s: &str| s.replace("s3cret", "***"));
        let all = format!("{}{}{:?}", out.title, out.summary, out.text);
        assert!(!all.contains("s3cret"), "{all}");
        assert!(all.contains("echo ***"), "{all}");
    }

    #[test]
    fn conclusions_map() {
        assert_eq!(check_conclusion("success"), CheckConclusion::Success);
        assert_eq!(check_conclusion("failure"), CheckConclusion::Failure);
        assert_eq!(check_conclusion("cancelled"), CheckConclusion::Cancelled);
        assert_eq!(check_conclusion("skipped"), CheckConclusion::Skipped);
        assert_eq!(check_conclusion("timed_out"), CheckConclusion::TimedOut);
        assert_eq!(check_conclusion("garbage"), CheckConclusion::Failure);
        assert_eq!(commit_state("success"), CommitState::Success);
        assert_eq!(commit_state("skipped"), CommitState::Success);
        assert_eq!(commit_state("failure"), CommitState::Failure);
        assert_eq!(commit_state("cancelled"), CommitState::Error);
        assert_eq!(commit_state("in_progress"), CommitState::Pending);
        assert_eq!(commit_state("garbage"), CommitState::Error);
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0 ms");
        assert_eq!(format_duration(999), "999 ms");
        assert_eq!(format_duration(1_000), "1.0 s");
        assert_eq!(format_duration(59_999), "59.9 s");
        assert_eq!(format_duration(125_000), "2m 05s");
        assert_eq!(format_duration(3_720_000), "1h 02m");
    }
}
