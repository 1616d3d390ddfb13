//! Signalling and watching a command's process group.
//!
//! Every command runs as the leader of its own group, so one signal reaches
//! everything it started (unless a process left with `setsid`).

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `signal` to the group. Errors are ignored: the only expected one is
/// "no such group", which means the work is already done.
pub(crate) fn signal(pgid: i32, signal: Signal) {
    // pgid 0 or 1 would mean our own group or init's: never ours to kill.
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Whether any process of the group still runs. Zombies do not count: an
/// init that never reaps (common in containers) would otherwise make every
/// group look alive forever.
pub(crate) fn alive(pgid: i32) -> bool {
    if pgid <= 1 || killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true; // no /proc: trust kill(2)
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
            .is_some_and(|(state, group)| group == pgid && !matches!(state, 'Z' | 'X'))
    })
}

/// Whether one process runs (exists and is not a zombie).
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || nix::sys::signal::kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X')),
        Err(_) => true,
    }
}

/// State and process group from `/proc/<pid>/stat`. The command name may
/// contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_bogus_group_is_not() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
        assert!(!alive(1), "init's group is never treated as ours");
    }
}
