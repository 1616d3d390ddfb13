//! What an evaluation can see: named contexts, and a host for the functions
//! that depend on the run (`success()` & co., `hashFiles`).

use crate::error::HostError;
use crate::value::{Object, Value};

/// Named contexts (`github`, `env`, `matrix`, …), looked up ignoring case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contexts {
    values: Object,
}

impl Contexts {
    /// No contexts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a context.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.values.insert(name, value.into());
    }

    /// Looks a context up, ignoring case.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Context names, for [`ParseOptions::contexts`](crate::ParseOptions::contexts).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys()
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Contexts {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Self {
            values: iter.into_iter().collect(),
        }
    }
}

impl From<Object> for Contexts {
    fn from(values: Object) -> Self {
        Self { values }
    }
}

/// The status the job-status functions test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Nothing has failed and the run is not cancelled.
    #[default]
    Success,
    /// A previous step (or needed job) failed.
    Failure,
    /// The run was cancelled.
    Cancelled,
}

/// Run-dependent services the runner provides to expressions.
pub trait Host {
    /// The current job (or composite action) status: `success()` is
    /// `Status::Success`, `failure()` is `Status::Failure`, `cancelled()` is
    /// `Status::Cancelled`; `always()` is always true.
    fn status(&self) -> Status {
        Status::Success
    }

    /// Computes `hashFiles(patterns…)`: the hex SHA-256 over the matching
    /// files, or an empty string when nothing matches.
    fn hash_files(&self, patterns: &[String]) -> Result<String, HostError> {
        let _ = patterns;
        Err("hashFiles is not supported by this host".into())
    }
}

/// Everything [`evaluate`](crate::evaluate) needs besides the expression.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    pub(crate) contexts: &'a Contexts,
    pub(crate) host: Option<&'a dyn Host>,
}

impl<'a> EvalContext<'a> {
    /// Evaluation over `contexts`, without a host: status functions behave as
    /// if everything succeeded and `hashFiles` fails.
    pub fn new(contexts: &'a Contexts) -> Self {
        Self {
            contexts,
            host: None,
        }
    }

    /// Adds the host answering status functions and `hashFiles`.
    pub fn with_host(mut self, host: &'a dyn Host) -> Self {
        self.host = Some(host);
        self
    }

    pub(crate) fn status(&self) -> Status {
        self.host.map_or(Status::Success, |h| h.status())
    }
}

impl std::fmt::Debug for EvalContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalContext")
            .field("contexts", self.contexts)
            .field("host", &self.host.is_some())
            .finish()
    }
}
