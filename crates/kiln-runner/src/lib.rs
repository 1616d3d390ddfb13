//! The runner core: sessions (one VM per workflow run), GitHub's job and
//! step semantics, and the executor that runs a workflow in a VM.
//!
//! Pure, synchronous building blocks:
//! - [`envfile`]: `GITHUB_ENV` / `GITHUB_OUTPUT` / `GITHUB_STATE` / `GITHUB_PATH`
//! - [`commands`]: `::workflow-command::` lines in step output
//! - [`mask`]: secret masking of everything printed or stored
//! - [`shell`]: `shell:` templates for `run:` steps
//! - [`matrix`]: `strategy.matrix` expansion and matrix job names
//! - [`graph`]: the `needs:` graph, scheduling order, `--job` selection
//! - [`status`]: outcomes and conclusions of steps, jobs and runs
//! - [`concurrency`]: `concurrency:` groups (the bookkeeping, and job-level
//!   groups that may span runs)
//!
//! The executor (async, talks to a VM only through `kiln_vm::Vm`):
//! - [`session`]: `SessionManager`, the only place a VM is allocated
//! - [`run`]: a whole workflow run: jobs in order, matrix, job `if`
//! - `job`, `step`, `uses`, `checkout`: one job instance, its steps
//! - [`event`] and [`result`]: what a run reports while and after it runs

mod checkout;
pub mod commands;
pub mod concurrency;
pub mod config;
mod contexts;
pub mod envfile;
mod eval;
pub mod event;
pub mod graph;
mod hashfiles;
mod job;
pub mod mask;
pub mod matrix;
mod output;
pub mod result;
pub mod run;
pub mod session;
pub mod shell;
pub mod status;
mod step;
mod uses;

pub use config::{GitInfo, RunConfig, VmScope};
pub use event::{JobKey, RunEvent};
pub use result::{JobResult, RunResult, StepResult};
pub use run::{RunError, run_workflow};
pub use session::{Session, SessionError, SessionManager, SessionStats};
pub use status::Conclusion;
