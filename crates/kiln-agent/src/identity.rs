//! `Reidentify`: a machine restored from a snapshot becomes itself.
//!
//! Every clone of a snapshot starts with the template's RAM: its agent
//! token, hostname, machine id, wall clock and, worst, the kernel's random
//! generator state, so two clones would hand out the same "random" bytes.
//! The host sends fresh values right after the restore; this applies them:
//!
//! 1. the token: later hellos must carry the new one;
//! 2. the random pool: host entropy is written to `/dev/urandom` (mixed in,
//!    not credited) and `RNDRESEEDCRNG` makes the kernel reseed its CRNG
//!    from the pool at once, instead of at its next periodic reseed (up to
//!    a minute later, in every clone at the same moment);
//! 3. the wall clock (`clock_settime`): it stopped when the snapshot was
//!    taken;
//! 4. hostname (`sethostname` and `/etc/hostname`) and `/etc/machine-id`.
//!
//! Only an agent serving a guest's virtio port changes the machine; one
//! tried out on a host (socket, stdio) only takes the token.

use std::io::Write;

use kiln_protocol::Identity;

use crate::AgentConfig;

/// Applies `identity`; `Err` says what failed (the token is replaced
/// first, whatever follows).
pub(crate) async fn apply(identity: Identity, config: &AgentConfig) -> Result<(), String> {
    if !valid_hostname(&identity.hostname) {
        return Err(format!("invalid hostname {:?}", identity.hostname));
    }
    if identity.machine_id.len() != 32
        || !identity.machine_id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err("a machine id is 32 hex digits".to_owned());
    }
    config.replace_token(identity.token.clone());
    if !config.manages_system() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || apply_to_system(&identity))
        .await
        .map_err(|e| format!("reidentify task failed: {e}"))?
}

fn apply_to_system(identity: &Identity) -> Result<(), String> {
    reseed(&identity.entropy)?;
    let secs = i64::try_from(identity.unix_time_ns / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = i64::try_from(identity.unix_time_ns % 1_000_000_000).unwrap_or(0);
    nix::time::clock_settime(
        nix::time::ClockId::CLOCK_REALTIME,
        nix::sys::time::TimeSpec::new(secs, nanos),
    )
    .map_err(|e| format!("cannot set the clock: {e}"))?;
    nix::unistd::sethostname(&identity.hostname)
        .map_err(|e| format!("cannot set the hostname: {e}"))?;
    write_file("/etc/hostname", &format!("{}\n", identity.hostname))?;
    write_file("/etc/machine-id", &format!("{}\n", identity.machine_id))?;
    Ok(())
}

fn write_file(path: &str, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {path}: {e}"))
}

/// Mixes `entropy` into the input pool and forces a CRNG reseed from it.
fn reseed(entropy: &[u8]) -> Result<(), String> {
    let mut urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("cannot open /dev/urandom: {e}"))?;
    urandom
        .write_all(entropy)
        .map_err(|e| format!("cannot write to /dev/urandom: {e}"))?;
    force_reseed(&urandom).map_err(|e| format!("RNDRESEEDCRNG failed: {e}"))
}

#[allow(unsafe_code)]
mod ioctl {
    // RNDRESEEDCRNG = _IO('R', 0x07), linux/random.h.
    nix::ioctl_none!(rnd_reseed_crng, b'R', 0x07);
}

fn force_reseed(urandom: &std::fs::File) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: RNDRESEEDCRNG takes no argument and the descriptor is an
    // open /dev/urandom that outlives the call.
    #[allow(unsafe_code)]
    let result = unsafe { ioctl::rnd_reseed_crng(urandom.as_raw_fd()) };
    result.map(drop)
}

/// RFC 1123 labels joined by dots, at most 64 bytes (the kernel's limit).
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_checked() {
        assert!(valid_hostname("kiln-0a1b2c3d"));
        assert!(valid_hostname("a.b"));
        for bad in ["", "-a", "a-", "a b", "a/b", "a..b", &"x".repeat(65)] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }
}
