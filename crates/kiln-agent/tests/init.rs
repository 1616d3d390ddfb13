//! The PID 1 reaper, exercised as a child subreaper (orphans are reparented
//! to this test process as they would be to PID 1). Its own test binary:
//! reaping any child would disturb tests running beside it.

use std::process::{Command, Stdio};

use kiln_agent::init::reap_until;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

fn is_gone(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn reaps_orphans_and_returns_the_agents_status() {
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    // A shell that leaves an orphan behind, reparented to us.
    let out = Command::new("sh")
        .args(["-c", "sleep 0.2 & echo $!"])
        .stdout(Stdio::piped())
        .output()
        .expect("spawn");
    let orphan: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("orphan pid");
    // Reaped by `reap_until`, not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let agent = Command::new("sh")
        .args(["-c", "sleep 0.5; exit 4"])
        .spawn()
        .expect("spawn agent");
    let agent = Pid::from_raw(i32::try_from(agent.id()).expect("pid"));

    let status = reap_until(Some(agent));

    assert_eq!(status, Some(WaitStatus::Exited(agent, 4)));
    // The orphan exited first and was reaped, not left a zombie.
    assert!(is_gone(orphan), "orphan {orphan} not reaped");
}
