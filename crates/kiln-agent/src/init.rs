//! Running as PID 1. The guest's `/init` execs the agent, which makes it the
//! reaper of every orphan. tokio reaps only its own children, and reaping
//! "any child" in the same process would steal their exit statuses from it;
//! so PID 1 splits in two, like tini: this process only spawns the real
//! agent and reaps, and powers the guest off when the agent is gone (PID 1
//! must never exit: the kernel would panic).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::power_off;

/// True when this process is the guest's init.
pub fn is_pid1() -> bool {
    nix::unistd::getpid() == Pid::from_raw(1)
}

/// Spawns this same binary with the same arguments and environment, reaps
/// until it exits, then powers off. Never returns.
pub fn run_as_init() -> ! {
    let agent = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .spawn()
    });
    match agent {
        Ok(agent) => {
            let pid = i32::try_from(agent.id()).map(Pid::from_raw).ok();
            let status = reap_until(pid);
            eprintln!("kiln-agent: agent exited ({status:?}); powering off");
        }
        Err(e) => eprintln!("kiln-agent: cannot start the agent process: {e}; powering off"),
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
