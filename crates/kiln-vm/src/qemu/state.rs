//! One directory per VM, `<state_dir>/<vm-id>/`, holding everything of it
//! on the host: QEMU's pid file, the agent, passt and vsock daemon sockets, the console
//! log, the disk overlay. Deleting the directory is deleting the VM's
//! storage; orphan reaping finds VMs by these directories.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::VmId;

pub(crate) const QEMU_PID: &str = "qemu.pid";
pub(crate) const PASST_PID: &str = "passt.pid";
pub(crate) const VSOCK_PID: &str = "vsock.pid";
const AGENT_SOCKET: &str = "agent.sock";
/// vhost-device-vsock's vhost-user socket (QEMU connects to it).
const VHOST_SOCKET: &str = "vhost.sock";
/// vhost-device-vsock's socket for the host's connections into the guest
/// (`CONNECT <port>`).
const VSOCK_SOCKET: &str = "vsock.sock";
const VSOCK_LOG: &str = "vsock.log";
const PASST_SOCKET: &str = "passt.sock";
const CONSOLE_LOG: &str = "console.log";
const QEMU_LOG: &str = "qemu.log";
const PASST_LOG: &str = "passt.log";
const OVERLAY: &str = "overlay.qcow2";
const QMP_SOCKET: &str = "qmp.sock";

/// `sun_path` holds 108 bytes including the terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;
/// The longest VM id: `qemu-` + a 7-digit pid + a 20-digit counter + 8 hex
/// digits and the dashes; plus `/agent.sock` (as long as every socket
/// name here) and its separator.
pub(crate) const LONGEST_SUFFIX: usize = 1 + (5 + 7 + 1 + 20 + 1 + 8) + 1 + AGENT_SOCKET.len();
const _: () =
    assert!(VHOST_SOCKET.len() <= AGENT_SOCKET.len() && VSOCK_SOCKET.len() <= AGENT_SOCKET.len());

#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Creates `<base>/<id>/`, private to this user. `create_dir`, not
    /// `create_dir_all`: an existing directory is never shared.
    pub fn create(base: &Path, id: &VmId) -> io::Result<StateDir> {
        let path = base.join(id.as_str());
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(StateDir { path })
    }

    /// An existing directory (for reaping).
    pub fn open(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn qemu_pid(&self) -> PathBuf {
        self.path.join(QEMU_PID)
    }
    pub fn passt_pid(&self) -> PathBuf {
        self.path.join(PASST_PID)
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.path.join(AGENT_SOCKET)
    }
    pub fn vsock_pid(&self) -> PathBuf {
        self.path.join(VSOCK_PID)
    }
    pub fn vhost_socket(&self) -> PathBuf {
        self.path.join(VHOST_SOCKET)
    }
    pub fn vsock_socket(&self) -> PathBuf {
        self.path.join(VSOCK_SOCKET)
    }
    pub fn vsock_log(&self) -> PathBuf {
        self.path.join(VSOCK_LOG)
    }
    pub fn passt_socket(&self) -> PathBuf {
        self.path.join(PASST_SOCKET)
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join(CONSOLE_LOG)
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.path.join(QEMU_LOG)
    }
    pub fn passt_log(&self) -> PathBuf {
        self.path.join(PASST_LOG)
    }
    pub fn overlay(&self) -> PathBuf {
        self.path.join(OVERLAY)
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.path.join(QMP_SOCKET)
    }

    /// Deletes the directory; already gone is fine.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Creates the base directory and checks that socket paths below it fit.
pub(crate) fn prepare_base(base: &Path) -> Result<(), super::SetupError> {
    std::fs::create_dir_all(base).map_err(|source| super::SetupError::StateDir {
        path: base.to_owned(),
        source,
    })?;
    let len = base.as_os_str().len() + LONGEST_SUFFIX;
    if len > MAX_SOCKET_PATH {
        return Err(super::SetupError::StateDirTooLong {
            path: base.to_owned(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_private_and_never_shared() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let id = VmId::generate("qemu");
        let dir = StateDir::create(tmp.path(), &id)?;
        let mode = std::fs::metadata(dir.path())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(StateDir::create(tmp.path(), &id).is_err());
        std::fs::write(dir.console_log(), b"x")?;
        dir.remove()?;
        assert!(!dir.path().exists());
        dir.remove()?;
        Ok(())
    }

    #[test]
    fn long_state_dirs_are_refused_up_front() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(prepare_base(tmp.path()).is_ok());
        let long = tmp.path().join("x".repeat(80));
        let err = prepare_base(&long).expect_err("too long");
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
