//! `Network::Nat` through passt, one per VM.
//!
//! Why passt and not QEMU's built-in slirp: slirp maps its gateway address
//! (10.0.2.2) to the host's loopback, so a step could reach every service
//! the host keeps on 127.0.0.1, and it has no switch to turn that off
//! (`restrict=on` cuts all egress instead). passt is user-mode NAT as well
//! (plain sockets, no root, no bridge), and `--no-map-gw` stops that mapping:
//! the guest reaches what the host reaches through its routes, but not the
//! host's loopback. QEMU talks to it over a unix socket (`-netdev stream`,
//! QEMU >= 7.2).
//!
//! The guest's address is static, given to /init on the kernel command line
//! (no DHCP client needed); DNS queries to [`GUEST_DNS`] go to the host's
//! first resolver (`--dns-forward`), the only host service deliberately
//! reachable. IPv6 is offered where the host has it: passt advertises the
//! host's prefix and the guest configures itself by SLAAC (build tools and
//! tests bind `::1` and expect dual stack). `--no-map-gw` covers IPv6 too:
//! the host's `::1` is not reachable through the guest's gateway.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::process::{self, Process};

pub(crate) const GUEST_ADDR: &str = "10.0.2.15";
pub(crate) const GUEST_PREFIX: u8 = 24;
pub(crate) const GUEST_GATEWAY: &str = "10.0.2.2";
pub(crate) const GUEST_DNS: &str = "10.0.2.3";

/// How long passt may take to create its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// The `kiln.ip= kiln.gw= kiln.dns=` parameters /init configures eth0 from.
pub(crate) fn guest_cmdline() -> String {
    format!(" kiln.ip={GUEST_ADDR}/{GUEST_PREFIX} kiln.gw={GUEST_GATEWAY} kiln.dns={GUEST_DNS}")
}

pub(crate) fn passt_args(socket: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--foreground",
        "--quiet",
        "--stderr",
        // Nothing from outside reaches the guest.
        "--tcp-ports",
        "none",
        "--udp-ports",
        "none",
        "--address",
        GUEST_ADDR,
        "--netmask",
        &GUEST_PREFIX.to_string(),
        "--gateway",
        GUEST_GATEWAY,
        "--dns-forward",
        GUEST_DNS,
        "--no-map-gw",
    ]
    .iter()
    .map(Into::into)
    .collect();
    // Run as ourselves. Started as root, passt would otherwise switch to
    // `nobody` *before* binding its socket, which then cannot be created in
    // the VM's 0700 directory. As root it still sandboxes itself (own user
    // and mount namespaces, seccomp), and QEMU runs as root then anyway.
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    args.push("--runas".into());
    args.push(format!("{uid}:{gid}").into());
    args.push("--socket".into());
    args.push(socket.into());
    args
}

/// Starts passt for one VM and waits until its socket exists (QEMU connects
/// to it at start-up). passt's output goes to `log`.
///
/// passt is not started with `--one-off` (exit when QEMU disconnects): the
/// Debian 2023-03 build exits at once with it. The VM kills it instead.
pub(crate) async fn start_passt(
    binary: &Path,
    socket: &Path,
    log: &Path,
) -> Result<Process, String> {
    let mut cmd = Command::new(binary);
    cmd.args(passt_args(socket));
    process::start_socket_daemon("passt", cmd, socket, log, SOCKET_WAIT).await
}
