//! The result of a run: what `--json` prints and the server stores. Every
//! string in it has been masked.

use indexmap::IndexMap;
use serde::Serialize;

use crate::event::Annotation;
use crate::output::{SharedMasker, mask};
use crate::status::Conclusion;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    pub workflow: String,
    pub conclusion: Conclusion,
    pub duration_ms: u64,
    /// VM ids the run used: one, or one per job with `vm-scope = job`.
    pub vms: Vec<String>,
    pub jobs: Vec<JobResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    pub id: String,
    pub name: String,
    /// The matrix combination for matrix jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<serde_json::Value>,
    pub conclusion: Conclusion,
    /// Why the job was skipped or failed before its steps ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub outputs: IndexMap<String, String>,
    pub steps: Vec<StepResult>,
    pub annotations: Vec<Annotation>,
    /// Contents written to `GITHUB_STEP_SUMMARY` by the job's steps.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub outcome: Conclusion,
    pub conclusion: Conclusion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub outputs: IndexMap<String, String>,
    /// Why the step failed without running, or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last lines of the step's output (masked), for failure reports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl JobResult {
    /// Every string a step or command could have put here, masked with the
    /// run's final set of secrets.
    pub(crate) fn masked(mut self, masker: &SharedMasker) -> JobResult {
        let m = |text: &mut String| *text = mask(masker, text);
        m(&mut self.name);
        self.reason.iter_mut().for_each(m);
        self.outputs.values_mut().for_each(m);
        m(&mut self.summary);
        for a in &mut self.annotations {
            m(&mut a.message);
            a.title.iter_mut().chain(a.file.iter_mut()).for_each(m);
        }
        for step in &mut self.steps {
            m(&mut step.name);
            step.outputs.values_mut().for_each(m);
            step.error.iter_mut().for_each(m);
            step.log_tail.iter_mut().for_each(m);
        }
        self
    }
}
