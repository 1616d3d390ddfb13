//! The `local` backend: commands run as host processes, without isolation.
//!
//! Each machine is a private directory `base_dir/<vm-id>/` holding the
//! [`GuestLayout`] directories; guest paths are host paths. Useful where no
//! VM can run and for fast tests of the real exec path. Released machines are
//! deleted along with every process group they started.

mod fs;
pub(crate) mod group;
mod process;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::sync::mpsc::UnboundedSender;

use crate::archive::{blocking, pack_dir, unpack_into};
use crate::path::normalize;
use crate::{
    Allocated, ExecRequest, ExecResult, GuestLayout, KillGrace, OutputChunk, Vm, VmError, VmId,
    VmProvider, VmSpec,
};
use process::{Groups, lock};

const BACKEND: &str = "local";
/// How long release waits for killed processes to go before deleting files.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Hands out private directories on this host as "machines".
#[derive(Debug, Clone)]
pub struct LocalProvider {
    base_dir: PathBuf,
    grace: KillGrace,
}

impl LocalProvider {
    /// For the CLI to print once when this backend is selected.
    pub const ISOLATION_WARNING: &'static str = "the local backend runs workflow steps directly \
         on this host, without a VM: steps can read and change anything your user can. \
        Use it only for workflows you trust.";

    /// Machines are created below `base_dir` (created if missing).
    pub fn new(base_dir: impl Into<PathBuf>) -> LocalProvider {
        LocalProvider {
            base_dir: base_dir.into(),
            grace: KillGrace::default(),
        }
    }

    /// Shortens or lengthens the SIGINT/SIGTERM grace periods.
    pub fn with_kill_grace(mut self, grace: KillGrace) -> LocalProvider {
        self.grace = grace;
        self
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    fn create(&self, id: &VmId) -> io::Result<(PathBuf, GuestLayout)> {
        std::fs::create_dir_all(&self.base_dir)?;
        let root = self.base_dir.canonicalize()?.join(id.as_str());
        // create_dir, not create_dir_all: an existing directory is never shared.
        std::fs::create_dir(&root)?;
        let made = root
            .to_str()
            .ok_or_else(|| io::Error::other("base directory is not valid UTF-8"))
            .map(GuestLayout::under)
            .and_then(|layout| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
                for dir in &layout.dirs()[1..] {
                    std::fs::create_dir(dir)?;
                }
                Ok(layout)
            });
        match made {
            Ok(layout) => Ok((root, layout)),
            Err(e) => {
                let _ = fs::remove_tree(&root);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl VmProvider for LocalProvider {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn allocate(&self, _spec: &VmSpec) -> Result<Allocated, VmError> {
        let start = Instant::now();
        let id = VmId::generate(BACKEND);
        let this = self.clone();
        let id2 = id.clone();
        let (root, layout) = blocking(move || this.create(&id2))
            .await
            .map_err(|source| VmError::Allocation {
                reason: format!(
                    "cannot create a directory below {}",
                    self.base_dir.display()
                ),
                source: Some(source),
            })?;
        tracing::debug!(vm = %id, root = %root.display(), "allocated local vm");
        let vm = LocalVm {
            id,
            layout,
            root,
            grace: self.grace,
            groups: Arc::new(Mutex::new(BTreeSet::new())),
            released: false,
        };
        Ok(Allocated {
            vm: Box::new(vm),
            elapsed: start.elapsed(),
        })
    }

    /// Deletes `local-<pid>-...` directories whose owning process is gone.
    async fn reap_orphans(&self) -> Result<usize, VmError> {
        let base = self.base_dir.clone();
        blocking(move || reap(&base))
            .await
            .map_err(|e| VmError::io("reap orphans in", &self.base_dir.to_string_lossy(), e))
    }
}

fn reap(base: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(base) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let mut reaped = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| VmId::owner_pid(n, BACKEND)) else {
            continue;
        };
        let owner_alive =
            pid == std::process::id() || i32::try_from(pid).map_or(true, group::pid_alive);
        if !owner_alive {
            tracing::info!(dir = %entry.path().display(), "removing orphaned local vm");
            fs::remove_tree(&entry.path())?;
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// One private directory and the process groups started in it.
pub struct LocalVm {
    id: VmId,
    layout: GuestLayout,
    root: PathBuf,
    grace: KillGrace,
    groups: Groups,
    released: bool,
}

impl LocalVm {
    fn kill_all(&self) -> Vec<i32> {
        let groups: Vec<i32> = lock(&self.groups).iter().copied().collect();
        for &pgid in &groups {
            group::signal(pgid, Signal::SIGKILL);
        }
        groups
    }
}

#[async_trait]
impl Vm for LocalVm {
    fn id(&self) -> &VmId {
        &self.id
    }

    fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        if req.argv.is_empty() {
            return Err(VmError::InvalidRequest("empty argv".to_owned()));
        }
        let cwd = normalize(req.cwd.as_deref().unwrap_or(&self.layout.workspace_root))?;
        process::run(&req, &cwd, self.grace, output, &self.groups).await
    }

    async fn put_file(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        let path = normalize(guest_path)?;
        let host = PathBuf::from(&path);
        blocking(move || fs::write_file(&host, &contents, mode))
            .await
            .map_err(|e| VmError::io("write", &path, e))
    }

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let path = normalize(guest_path)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| VmError::io("read", &path, e))
    }

    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        let path = normalize(guest_dir)?;
        let host = PathBuf::from(&path);
        blocking(move || unpack_into(&tar, &host))
            .await
            .map_err(|e| VmError::io("unpack archive into", &path, e))
    }

    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError> {
        let path = normalize(guest_dir)?;
        let host = PathBuf::from(&path);
        blocking(move || pack_dir(&host))
            .await
            .map_err(|e| VmError::io("archive", &path, e))
    }

    async fn release(mut self: Box<Self>) -> Result<(), VmError> {
        let groups = self.kill_all();
        let until = tokio::time::Instant::now() + RELEASE_WAIT;
        while groups.iter().any(|&g| group::alive(g)) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let root = self.root.clone();
        let removed = blocking(move || fs::remove_tree(&root)).await;
        // From here on Drop has nothing to do, even if deletion failed: the
        // error goes to the caller instead of being retried silently.
        self.released = true;
        tracing::debug!(vm = %self.id, "released local vm");
        removed.map_err(|e| VmError::io("delete vm directory", &self.root.to_string_lossy(), e))
    }
}

/// Safety net for a machine that was never released (panic, early return):
/// kill what it runs and delete its directory, synchronously.
impl Drop for LocalVm {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.kill_all();
        if let Err(e) = fs::remove_tree(&self.root) {
            tracing::warn!(vm = %self.id, error = %e, "could not delete unreleased vm directory");
        }
    }
}

#[cfg(test)]
mod tests;
