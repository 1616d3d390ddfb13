//! The guest's `/init`, done by the agent itself. In the `minimal` image
//! `/init` is a link to the agent: the kernel starts it as PID 1, it sets up
//! the machine with system calls (file systems, device links, hostname,
//! modules, network), finds its virtio port (or, with
//! `kiln.transport=vsock`, checks that vsock is up) and goes on as the
//! agent. Under TCG every fork costs milliseconds; the shell /init
//! (`images/initramfs/init`, installed as [`SHELL_INIT`]) forked about a
//! dozen times per boot.
//!
//! What only the shell /init does (the boot-floor markers, a console shell,
//! tracing, switching to a root disk) is handed to it: the agent execs it
//! with the machine untouched but for `/proc`, which the script accepts.

mod modules;
mod net;
pub mod params;
mod system;

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use params::{BootParams, Transport};
use tokio::sync::watch;

use crate::transport::{VIRTIO_PORTS_DIR, VSOCK_DEVICE, find_virtio_port};

/// The shell /init, for what the native one hands over.
pub const SHELL_INIT: &CStr = c"/lib/kiln/init.sh";

/// What every line of /init on the console starts with; the host watches
/// for it to know the boot is progressing.
const PREFIX: &str = "kiln-init:";

/// True when the kernel started this binary as the guest's `/init`.
pub fn started_by_kernel() -> bool {
    crate::init::is_pid1()
        && std::env::args_os()
            .next()
            .is_some_and(|arg0| arg0 == "/init")
        && std::env::var_os("KILN_AGENT_PORT").is_none()
}

/// Where the booted agent meets the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// The agent's virtio port device (`/dev/vportNpM`).
    Virtio(PathBuf),
    /// The vsock port to listen on (`kiln.transport=vsock`).
    Vsock(u32),
}

/// A booted machine, up to its network.
#[derive(Debug)]
pub struct Booted {
    /// The channel to serve.
    pub channel: Channel,
    /// The host's per-VM token (`kiln.token=`).
    pub token: Option<String>,
    params: BootParams,
}

impl Booted {
    /// Configures `lo` and eth0 on a thread of their own: the interface
    /// ioctls take ~25 ms under TCG (first runs of the kernel's network
    /// code), which overlap the agent's start this way. The returned
    /// receiver turns true when they are done, whatever the outcome
    /// (failures go to the console, as the shell /init's would); commands
    /// wait for it, file transfers need not.
    pub fn configure_network(&self) -> watch::Receiver<bool> {
        let (done, ready) = watch::channel(false);
        let params = self.params.clone();
        let spawned = std::thread::Builder::new()
            .name("kiln-boot-net".to_owned())
            .spawn(move || {
                configure_network(&params);
                done.send_replace(true);
            });
        if let Err(e) = spawned {
            say(&format!("cannot start the network set-up thread: {e}"));
        }
        ready
    }
}

/// Boots the machine up to the agent's channel (its virtio port, or with
/// `kiln.transport=vsock` the vsock device), and sets `PATH`,
/// `HOME` and `TERM` as a login would. Execs the shell /init when it must
/// do the boot; powers off when the boot cannot go on. Must run while the
/// process has one thread (it sets environment variables).
pub fn boot_as_init() -> Booted {
    match boot() {
        Ok(booted) => booted,
        Err(reason) => {
            say(&format!("{reason}; powering off"));
            let err = crate::power_off();
            say(&format!("cannot power off: {err}"));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn boot() -> Result<Booted, String> {
    // First: powering off on a failure runs `poweroff` through PATH.
    set_login_env();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    system::mount_proc().map_err(|e| format!("cannot mount /proc: {e}"))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("cannot read /proc/cmdline: {e}"))?;
    let (params, warnings) = BootParams::parse(&cmdline);
    let root_disk = std::fs::read_to_string("/etc/kiln-root")
        .is_ok_and(|dev| !dev.trim().is_empty())
        .then(|| "/etc/kiln-root".to_owned());
    if let Some(why) = params.needs_shell.clone().or(root_disk) {
        return Err(exec_shell_init(&why));
    }
    let mut report = |line: String| say(&line);
    system::mount_all(&mut report);
    if let Err(e) = system::console_stdio() {
        report(format!("cannot open /dev/console: {e}"));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    report(format!(
        "start uptime={}s kernel={release} (native)",
        uptime()
    ));
    for warning in warnings {
        report(warning);
    }
    let steps: [(&str, &dyn Fn() -> std::io::Result<()>); 3] = [
        ("poweroff wrappers", &system::poweroff_means_reset),
        ("/dev links", &system::dev_links),
        ("hostname", &|| system::set_hostname(&params.hostname)),
    ];
    for (what, step) in steps {
        if let Err(e) = step() {
            report(format!("{what}: {e}"));
        }
    }
    modules::load(Path::new("/lib/modules"), &release, &mut report);
    let channel = match params.transport {
        Transport::Virtio => Channel::Virtio(virtio_port(&params, &mut report)?),
        Transport::Vsock => {
            if !wait_for_vsock(params.port_timeout) {
                return Err(format!(
                    "{VSOCK_DEVICE} did not appear within {:?} (no vsock device or driver)",
                    params.port_timeout
                ));
            }
            report(format!(
                "vsock port {} (uptime={}s)",
                params.vsock_port,
                uptime()
            ));
            Channel::Vsock(params.vsock_port)
        }
    };
    Ok(Booted {
        channel,
        token: params.token.clone(),
        params,
    })
}

/// Waits for the agent's virtio port and links it under its name.
fn virtio_port(params: &BootParams, report: &mut dyn FnMut(String)) -> Result<PathBuf, String> {
    let device = wait_for_port(&params.port, params.port_timeout).ok_or_else(|| {
        format!(
            "virtio port {} did not appear within {:?}",
            params.port, params.port_timeout
        )
    })?;
    let link = Path::new("/dev/virtio-ports").join(&params.port);
    let target = Path::new("..").join(device.file_name().unwrap_or_default());
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
        report(format!("cannot link {}: {e}", link.display()));
    }
    report(format!(
        "port {} is {} (uptime={}s)",
        params.port,
        device.display(),
        uptime()
    ));
    Ok(device)
}

/// `lo` up, and eth0 if the command line configures it.
fn configure_network(params: &BootParams) {
    if let Err(e) = net::NetConfig::new().and_then(|net| net.up("lo")) {
        say(&format!("lo: {e}"));
    }
    if let Some(ip) = params.ip
        && let Err(e) = configure_eth0(params, ip)
    {
        say(&format!("eth0: {e}"));
    }
}

/// eth0's address, default route and resolver. IPv6 needs nothing: see
/// [`net`].
fn configure_eth0(params: &BootParams, ip: params::Ipv4Net) -> std::io::Result<()> {
    // One peer on the link (passt): duplicate address detection would only
    // delay the SLAAC address by a second.
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/eth0/accept_dad", "0");
    let net = net::NetConfig::new()?;
    net.up("eth0")?;
    net.set_address("eth0", ip)?;
    if let Some(gateway) = params.gateway {
        net.add_default_route(gateway)?;
    }
    if let Some(dns) = params.dns {
        std::fs::write("/etc/resolv.conf", format!("nameserver {dns}\n"))?;
    }
    Ok(())
}

/// Polls for the port's device; it can appear well after init starts on a
/// loaded host.
fn wait_for_port(name: &str, limit: Duration) -> Option<std::path::PathBuf> {
    let started = Instant::now();
    loop {
        if let Ok(Some(device)) = find_virtio_port(Path::new(VIRTIO_PORTS_DIR), name)
            && device.exists()
        {
            return Some(device);
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls for the vsock core's device: with the vsock transport the agent
/// listens on `AF_VSOCK`, which needs the kernel's vsock support up.
fn wait_for_vsock(limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        if Path::new(VSOCK_DEVICE).exists() {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the agent runs (`poweroff`) is found through `PATH`.
#[allow(unsafe_code)]
fn set_login_env() {
    // SAFETY: called before any thread exists (see `boot_as_init`).
    unsafe {
        std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        std::env::set_var("HOME", "/root");
        if std::env::var_os("TERM").is_none() {
            std::env::set_var("TERM", "linux");
        }
    }
}

/// Replaces this process with the shell /init; returns only the reason it
/// could not.
fn exec_shell_init(why: &str) -> String {
    let path = SHELL_INIT.to_string_lossy();
    say(&format!("{why}: handing the boot to {path}"));
    let Err(e) = nix::unistd::execv(SHELL_INIT, &[SHELL_INIT]);
    format!("cannot exec {path}: {e}")
}

/// Seconds since boot, as /proc/uptime says (for the console lines).
fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn say(line: &str) {
    eprintln!("{PREFIX} {line}");
}
