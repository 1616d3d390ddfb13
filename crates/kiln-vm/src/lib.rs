//! The VM backend abstraction of Kiln.
//!
//! The runner core talks to a machine only through [`VmProvider`] (allocate one
//! fresh machine) and [`Vm`] (exec, file and archive transfer, release). Every
//! path handed to a [`Vm`] is a *guest* path: the runner never touches a VM's
//! host-side files, so a remote machine (the qemu microVM and its guest agent)
//! fits the same traits as the host-process backend.
//!
//! Backends are modules: [`local`] (host processes, no isolation), [`mock`]
//! (in-memory, for unit tests of the runner's logic). [`counting`] wraps any
//! backend and records what happened, which is how tests prove "one VM per
//! run" on the real path.

pub mod archive;
pub mod counting;
pub mod error;
pub mod exec;
pub mod id;
pub mod layout;
pub mod local;
pub mod mock;
mod path;
pub mod provider;
pub mod spec;
pub mod stats;

pub use archive::{download_dir, upload_dir};
pub use counting::CountingProvider;
pub use error::VmError;
pub use exec::{DEFAULT_PATH, ExecRequest, ExecResult, KillGrace, OutputChunk, OutputStream};
pub use id::VmId;
pub use layout::GuestLayout;
pub use local::LocalProvider;
pub use mock::{MockProvider, MockResponse};
pub use provider::{Allocated, Vm, VmProvider};
pub use spec::{Network, VmSpec};
pub use stats::{CountingStats, OpRecord, VmOp};
