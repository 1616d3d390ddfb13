//! What [`CountingProvider`](crate::CountingProvider) observed.

use std::collections::BTreeSet;

use crate::VmId;

/// One operation on a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmOp {
    Exec { argv: Vec<String> },
    PutFile { path: String },
    GetFile { path: String },
    PutArchive { dir: String },
    GetArchive { dir: String },
}

/// Which machine received an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub vm: VmId,
    pub op: VmOp,
}

/// A snapshot of the counters. `allocations - releases - dropped_unreleased`
/// is always `live.len()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountingStats {
    /// Successful allocations, in order.
    pub allocated: Vec<VmId>,
    pub allocation_failures: usize,
    /// `release` calls (each machine at most once), whether or not they failed.
    pub releases: usize,
    pub release_failures: usize,
    /// Machines dropped without `release` (the backend's Drop cleaned up).
    pub dropped_unreleased: usize,
    /// Allocated and neither released nor dropped.
    pub live: BTreeSet<VmId>,
    /// Most machines live at the same time.
    pub max_live: usize,
    /// Every operation, in the order started.
    pub ops: Vec<OpRecord>,
}

impl CountingStats {
    pub fn allocations(&self) -> usize {
        self.allocated.len()
    }

    /// `(vm, argv)` of every exec, in order.
    pub fn execs(&self) -> impl Iterator<Item = (&VmId, &[String])> {
        self.ops.iter().filter_map(|r| match &r.op {
            VmOp::Exec { argv } => Some((&r.vm, argv.as_slice())),
            _ => None,
        })
    }

    /// Machines that received at least one operation.
    pub fn vms_used(&self) -> BTreeSet<&VmId> {
        self.ops.iter().map(|r| &r.vm).collect()
    }
}
