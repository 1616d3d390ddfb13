//! The records the store keeps, and their small state enums.

use serde::Serialize;

use crate::StoreError;

/// Declares a string-backed enum with `as_str` and a checked parse.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Corrupt {
                        what: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Where a webhook delivery is in its processing.
    DeliveryState {
        /// Recorded, waiting for the dispatcher.
        Queued = "queued",
        /// Turned into zero or more runs.
        Dispatched = "dispatched",
        /// Nothing to do (a deleted ref, an event kiln does not run).
        Ignored = "ignored",
        /// Could not be processed (the repository could not be fetched, …).
        Failed = "failed",
    }
}

text_enum! {
    /// Where a run is; its result is in `conclusion` once completed.
    RunState {
        /// Waiting for a session slot or its concurrency group.
        Queued = "queued",
        /// Holding a VM.
        InProgress = "in_progress",
        Completed = "completed",
    }
}

text_enum! {
    /// Where a job is.
    JobState {
        Queued = "queued",
        InProgress = "in_progress",
        Completed = "completed",
    }
}

text_enum! {
    /// Where a log line came from.
    LogStream {
        Stdout = "stdout",
        Stderr = "stderr",
        /// Lines kiln writes itself: step starts and ends, groups.
        Meta = "meta",
    }
}

/// A delivery as the intake records it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub event: String,
    pub repository: Option<String>,
    pub payload: String,
    /// `Queued` for deliveries to dispatch, `Ignored` for those recorded
    /// only so that a redelivery is recognised.
    pub state: DeliveryState,
    pub note: Option<String>,
    pub received_at: i64,
}

/// A stored delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub repository: Option<String>,
    #[serde(skip)]
    pub payload: String,
    pub state: DeliveryState,
    pub note: Option<String>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}

/// A run to create.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub delivery_id: Option<String>,
    pub repository: String,
    pub workflow_path: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    /// Opaque JSON the server needs to (re)start the run.
    pub spec: String,
    /// Set when the run is over before it started (its concurrency group
    /// could not be evaluated, …): it is created completed with this
    /// conclusion and reason.
    pub finished: Option<(String, String)>,
}

/// A stored run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub delivery_id: Option<String>,
    pub repository: String,
    pub workflow_path: String,
    pub workflow_name: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub state: RunState,
    pub conclusion: Option<String>,
    pub reason: Option<String>,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    #[serde(skip)]
    pub spec: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A stored job (one job instance of a run; matrix instances are separate).
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub run_id: i64,
    /// Unique within the run.
    pub key: String,
    pub job_id: String,
    pub name: String,
    pub state: JobState,
    pub conclusion: Option<String>,
    pub check_run_id: Option<u64>,
    /// The steps as JSON (an array), as the server wrote them.
    pub steps: serde_json::Value,
    pub summary: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A log line to append.
#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub job: Option<String>,
    pub stream: LogStream,
    /// Already masked.
    pub line: String,
    pub at: i64,
}

/// A stored log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub seq: i64,
    pub job: Option<String>,
    pub stream: LogStream,
    pub line: String,
    pub at: i64,
}
