//! Progress events a run emits while it executes, for live displays, logs and
//! the server. Output lines are already masked.

use std::time::Duration;

use serde::Serialize;

pub use crate::commands::Annotation;
use crate::status::Conclusion;

/// Which job instance an event belongs to: the job id plus, for matrix jobs,
/// the instance's display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct JobKey {
    pub id: String,
    /// `test (ubuntu, 18)` for a matrix instance, else the job's name.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        workflow: String,
    },
    VmAllocated {
        vm: String,
        elapsed: Duration,
    },
    JobStarted {
        job: JobKey,
    },
    JobSkipped {
        job: JobKey,
        reason: String,
    },
    StepStarted {
        job: JobKey,
        index: usize,
        name: String,
    },
    Output {
        job: JobKey,
        stream: Stream,
        line: String,
    },
    GroupStarted {
        job: JobKey,
        title: String,
    },
    GroupEnded {
        job: JobKey,
    },
    Debug {
        job: JobKey,
        message: String,
    },
    Annotation {
        job: JobKey,
        annotation: Annotation,
    },
    StepFinished {
        job: JobKey,
        index: usize,
        name: String,
        conclusion: Conclusion,
        duration: Duration,
    },
    JobFinished {
        job: JobKey,
        conclusion: Conclusion,
        duration: Duration,
    },
    RunFinished {
        conclusion: Conclusion,
        duration: Duration,
    },
}
