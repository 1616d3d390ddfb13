//! Destroying what a dead kiln process left behind.
//!
//! A VM's directory is named by its [`VmId`], which carries the owning
//! process's pid. If that process is gone, nobody will release the VM: its
//! QEMU, passt and the vsock daemon are killed and the directory deleted. A
//! pid is killed only if `/proc/<pid>/cmdline` shows one of them *and*
//! mentions that VM's directory, so a pid file pointing at a recycled pid
//! is harmless. Besides
//! the pid files, `/proc` is scanned for such processes: a crash between
//! starting QEMU and QEMU writing its pid file leaves no pid file.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::BACKEND;
use super::state::{PASST_PID, QEMU_PID, StateDir, VSOCK_PID};
use crate::VmId;
use crate::local::group::pid_alive;

/// How long a killed process may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Reaps every orphaned VM below `base`; returns how many.
pub(crate) fn reap(base: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(base) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let mut reaped = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| VmId::owner_pid(n, BACKEND)) else {
            continue;
        };
        let owner_alive =
            owner == std::process::id() || i32::try_from(owner).map_or(true, pid_alive);
        if owner_alive {
            continue;
        }
        let dir = StateDir::open(entry.path());
        let killed = kill_processes_of(dir.path());
        dir.remove()?;
        tracing::info!(
            dir = %dir.path().display(),
            owner,
            killed = ?killed,
            "reaped orphaned qemu vm"
        );
        reaped += 1;
    }
    Ok(reaped)
}

/// Kills the QEMU, passt and vsock daemon processes of the VM in `dir`;
/// returns their pids.
fn kill_processes_of(dir: &Path) -> Vec<u32> {
    let mut candidates: BTreeSet<u32> = [QEMU_PID, PASST_PID, VSOCK_PID]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    candidates.extend(scan_proc(dir));
    let ours: Vec<u32> = candidates
        .into_iter()
        .filter(|&pid| belongs_to(pid, dir))
        .collect();
    for &pid in &ours {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let until = Instant::now() + KILL_WAIT;
    while ours.iter().any(|&p| i32::try_from(p).is_ok_and(pid_alive)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    ours
}

/// Processes whose command line mentions `dir`.
fn scan_proc(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| belongs_to(pid, dir))
        .collect()
}

/// Whether `pid` is a QEMU, passt or vsock daemon started for the VM in
/// `dir`.
fn belongs_to(pid: u32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| is_vm_process(&cmdline, dir))
}

fn is_vm_process(cmdline: &[u8], dir: &Path) -> bool {
    let mut args = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let Some(program) = args.next() else {
        return false;
    };
    let base = program.rsplit('/').next().unwrap_or_default();
    let ours = base.starts_with("qemu-system")
        || base.starts_with("passt")
        || base == super::config::VSOCK_DAEMON;
    // QEMU escapes `,` in option values as `,,`; the directory is matched
    // in that form too.
    let dir = dir.to_string_lossy();
    let escaped = dir.replace(',', ",,");
    let mentions =
        |a: &String| a.contains(&format!("{dir}/")) || a.contains(&format!("{escaped}/"));
    ours && args.any(|a| mentions(&a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemu_or_passt_of_that_directory_counts() {
        let dir = Path::new("/state/qemu-1-0-0000abcd");
        let cmd = |args: &[&str]| args.join("\0").into_bytes();
        assert!(is_vm_process(
            &cmd(&[
                "/usr/bin/qemu-system-x86_64",
                "-pidfile",
                "/state/qemu-1-0-0000abcd/qemu.pid"
            ]),
            dir
        ));
        assert!(is_vm_process(
            &cmd(&[
                "passt.avx2",
                "--socket",
                "/state/qemu-1-0-0000abcd/passt.sock"
            ]),
            dir
        ));
        assert!(!is_vm_process(
            &cmd(&[
                "/usr/bin/qemu-system-x86_64",
                "-pidfile",
                "/state/qemu-1-0-0000abcd0/x"
            ]),
            dir
        ));
        assert!(is_vm_process(
            &cmd(&[
                "/kiln/bin/vhost-device-vsock",
                "--guest-cid=3",
                "--socket=/state/qemu-1-0-0000abcd/vhost.sock",
                "--uds-path=/state/qemu-1-0-0000abcd/vsock.sock"
            ]),
            dir
        ));
        assert!(!is_vm_process(
            &cmd(&[
                "/kiln/bin/vhost-device-vsock",
                "--socket=/state/qemu-1-0-0000abcd0/vhost.sock"
            ]),
            dir
        ));
        assert!(!is_vm_process(
            &cmd(&["sleep", "/state/qemu-1-0-0000abcd/qemu.pid"]),
            dir
        ));
        assert!(!is_vm_process(b"", dir));
    }

    #[test]
    fn directories_of_live_owners_and_strangers_are_left_alone() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let mine = VmId::generate(BACKEND);
        std::fs::create_dir(tmp.path().join(mine.as_str()))?;
        std::fs::create_dir(tmp.path().join("not-a-vm"))?;
        // pid 0 is never a live process owner.
        let dead = tmp.path().join("qemu-0-7-0000abcd");
        std::fs::create_dir(&dead)?;
        std::fs::write(dead.join(QEMU_PID), "1\n")?; // init: not QEMU, never killed
        assert_eq!(reap(tmp.path())?, 1);
        assert!(!dead.exists());
        assert!(tmp.path().join(mine.as_str()).exists());
        assert!(tmp.path().join("not-a-vm").exists());
        assert_eq!(reap(&tmp.path().join("absent"))?, 0);
        Ok(())
    }
}
