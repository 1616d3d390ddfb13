//! Hooks for `kiln bench`: the boot floor (the same QEMU command line as
//! [`QemuProvider::allocate_vm`], with another initramfs) and host-side
//! facts of a running VM. Nothing here is used by allocation itself.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::time::Instant;

use super::launch::LaunchPlan;
use super::process::Process;
use super::vm::Machine;
use super::{QemuProvider, QemuVm, agent, allocation, image_for};
use crate::{Network, VmError, VmSpec};

/// How long a floor boot took, from QEMU's spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorBoot {
    /// Until the marker line was read from the serial console.
    pub to_marker: Duration,
    /// Until QEMU exited (the guest powered off).
    pub to_exit: Duration,
}

/// Console bytes kept for an error message.
const CONSOLE_KEEP: usize = 4096;

impl QemuProvider {
    /// Boots the kernel of `spec`'s image with `initramfs` instead of the
    /// image's, on exactly the command line [`allocate_vm`] would use for
    /// `spec` (same machine, devices, kernel arguments; passt is started
    /// first for `Network::Nat`, outside the timing), and times QEMU's spawn
    /// to the first console line containing `marker`, and to QEMU's exit.
    /// Everything is cleaned up before it returns.
    ///
    /// [`allocate_vm`]: QemuProvider::allocate_vm
    pub async fn boot_floor(
        &self,
        spec: &VmSpec,
        initramfs: &Path,
        marker: &str,
        timeout: Duration,
    ) -> Result<FloorBoot, VmError> {
        let image = image_for(&self.core.config, spec)?;
        let mut machine = self.core.new_machine().await?;
        let result = self
            .floor_in(&mut machine, spec, image, initramfs, marker, timeout)
            .await;
        let destroyed = machine.destroy().await;
        let timing = result?;
        destroyed?;
        Ok(timing)
    }

    async fn floor_in(
        &self,
        machine: &mut Machine,
        spec: &VmSpec,
        image: &super::GuestImage,
        initramfs: &Path,
        marker: &str,
        timeout: Duration,
    ) -> Result<FloorBoot, VmError> {
        let id = machine.id.clone();
        if image.rootfs.is_some() {
            return Err(allocation(
                &id,
                "the boot floor is measured for initramfs-only images",
                None,
            ));
        }
        let passt_socket = match spec.network {
            Network::None => None,
            Network::Nat => Some(self.core.start_passt(machine).await?),
        };
        let token = agent::new_token()
            .map_err(|e| allocation(&id, "cannot read /dev/urandom for its token", Some(e)))?;
        // With vsock, its daemon too (untimed, like passt): QEMU needs it.
        let channel = self.core.agent_channel(machine).await?;
        let pidfile = machine.dir.qemu_pid();
        let plan = LaunchPlan {
            initramfs,
            pidfile: Some(&pidfile),
            agent_socket: channel.virtio_socket(),
            vsock_socket: channel.vhost_socket(),
            passt_socket: passt_socket.as_deref(),
            init_args: self.core.init_args(&token, false),
            ..self.core.base_plan(spec, image, id.as_str())
        };
        let qemu_log = std::fs::File::create(machine.dir.qemu_log())
            .map_err(|e| allocation(&id, "cannot create qemu.log", Some(e)))?;
        let mut cmd = Command::new(&self.core.tools.qemu);
        cmd.args(plan.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(qemu_log);
        let started = Instant::now();
        let (qemu, stdout) = Process::spawn("qemu", cmd).map_err(|e| {
            let what = format!("cannot start {}", self.core.tools.qemu.display());
            allocation(&id, &what, Some(e))
        })?;
        machine.qemu = Some(qemu);
        let mut stdout =
            stdout.ok_or_else(|| allocation(&id, "qemu's console pipe is missing", None))?;
        let deadline = started + timeout;
        let mut seen: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let to_marker = loop {
            let read = tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                Ok(_) => {
                    let why = format!(
                        "qemu exited before the marker ({}); console:\n{}",
                        machine.qemu_log_tail(),
                        lossy(&seen)
                    );
                    return Err(allocation(&id, &why, None));
                }
                Err(_) => {
                    let why = format!("no marker within {timeout:?}; console:\n{}", lossy(&seen));
                    return Err(allocation(&id, &why, None));
                }
            };
            let from = seen.len().saturating_sub(marker.len());
            seen.extend_from_slice(&buf[..n]);
            if find(&seen[from..], marker.as_bytes()) {
                break started.elapsed();
            }
            if seen.len() > 2 * CONSOLE_KEEP {
                seen.drain(..seen.len() - CONSOLE_KEEP);
            }
        };
        // Drain the console so that QEMU never blocks on a full pipe.
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while matches!(stdout.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let left = deadline.saturating_duration_since(Instant::now());
        let exited = match machine.qemu.as_ref() {
            Some(qemu) => qemu.wait(left).await,
            None => None,
        };
        drain.abort();
        match exited {
            Some(_) => Ok(FloorBoot {
                to_marker,
                to_exit: started.elapsed(),
            }),
            None => Err(allocation(
                &id,
                &format!("the guest printed the marker but did not power off within {timeout:?}"),
                None,
            )),
        }
    }
}

impl QemuVm {
    /// passt's pid (`Network::Nat`).
    pub fn passt_pid(&self) -> Option<u32> {
        self.machine.passt.as_ref().map(|p| p.pid)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn markers_are_found_anywhere_but_not_empty() {
        assert!(find(b"abc KILN-FLOOR\r\n", b"KILN-FLOOR"));
        assert!(!find(b"KILN-FLO", b"KILN-FLOOR"));
        assert!(!find(b"abc", b""));
    }
}
