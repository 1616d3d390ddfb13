//! Running as PID 1. The guest's `/init` execs the agent, which makes it the
//! reaper of every orphan. tokio reaps only its own children, and reaping
//! "any child" in the same process would steal their exit statuses from it;
//! so PID 1 splits in two, like tini: this process only forks the real
//! agent and reaps, and powers the guest off when the agent is gone (PID 1
//! must never exit: the kernel would panic).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::power_off;

/// True when this process is the guest's init.
pub fn is_pid1() -> bool {
    nix::unistd::getpid() == Pid::from_raw(1)
}

/// Forks: the child returns and becomes the agent; this process (PID 1)
/// reaps until the agent exits, then powers off and never returns.
///
/// A fork, not a spawn of this binary again: under TCG a second exec of the
/// agent costs tens of milliseconds of every boot. It must run before any
/// thread exists (first thing in `main`), the one case where fork is safe.
pub fn split_as_init() {
    // SAFETY: called first thing in `main`, while the process has a single
    // thread, so the child inherits no lock held by another thread.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(ForkResult::Child) => return,
        Ok(ForkResult::Parent { child }) => {
            let status = reap_until(Some(child));
            eprintln!("kiln-agent: agent exited ({status:?}); powering off");
        }
        Err(e) => eprintln!("kiln-agent: cannot fork the agent process: {e}; powering off"),
    }
    let err = power_off();
    eprintln!("kiln-agent: cannot power off: {err}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Reaps every child (orphans included) until `agent` has exited; returns
/// its status (`None` if it cannot be waited for).
pub fn reap_until(agent: Option<Pid>) -> Option<WaitStatus> {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == agent => return Some(status),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}
