//! The VM backend abstraction of Kiln.
//!
//! The runner core talks to a machine only through [`VmProvider`] (allocate one
//! fresh machine) and [`Vm`] (exec, file and archive transfer, release). Every
//! path handed to a [`Vm`] is a *guest* path: the runner never touches a VM's
//! host-side files, so a remote machine (the qemu microVM and its guest agent)
//! fits the same traits as the host-process backend.
//!
//! Backends are modules: [`qemu`] (a fresh QEMU microVM per machine, KVM or
//! TCG), [`local`] (host processes, no isolation), [`mock`] (in-memory, for
//! unit tests of the runner's logic). [`pool`] keeps pre-allocated machines
//! of any backend ready to hand out. [`counting`] wraps any
//! backend and records what happened, which is how tests prove "one VM per
//! run" on the real path.
//!
//! # Exec semantics (every backend, so a run behaves the same everywhere)
//!
//! - The environment is exactly [`ExecRequest::env`], plus `PATH` =
//!   [`DEFAULT_PATH`] if absent; `cwd` defaults to the layout's
//!   `workspace_root`; stdin is empty unless given.
//! - Each command leads its own process group. On timeout or cancellation the
//!   group gets GitHub's ladder: SIGINT, [`KillGrace::interrupt`], SIGTERM,
//!   [`KillGrace::terminate`], SIGKILL; the ladder stops early once nothing
//!   in the group runs. Dropping the exec future kills the group at once.
//! - A command that exits normally may leave background processes (`server
//!   &`): they keep running, their later output is discarded, and they die
//!   with the machine on release. Output is never delivered after the result.
//! - A machine is destroyed by [`Vm::release`], or by its `Drop` if release
//!   was never reached (panic, early return).

pub mod archive;
pub mod bench;
pub mod counting;
pub mod error;
pub mod exec;
pub mod id;
pub mod layout;
pub mod local;
pub mod mock;
mod path;
pub mod pool;
pub mod provider;
pub mod qemu;
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
pub use pool::{PoolConfig, PoolStats, WarmPool};
pub use provider::{Allocated, Vm, VmProvider};
pub use qemu::{QemuConfig, QemuProvider, QemuStats, QemuVm};
pub use spec::{Network, VmSpec};
pub use stats::{CountingStats, OpRecord, VmOp};
