//! The QEMU command line, built from a plan so it can be checked without
//! starting anything. It follows images/README.md: `-M microvm`, direct
//! kernel boot, no firmware, no default devices.

use std::ffi::OsString;
use std::path::Path;

use super::accel::Accel;
use super::config::KernelKind;
use super::net;

/// The virtio-serial port name the guest's /init waits for.
pub(crate) const AGENT_PORT: &str = "org.kiln.agent";

/// One QEMU invocation.
#[derive(Debug, Clone)]
pub(crate) struct LaunchPlan<'a> {
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: &'a Path,
    pub kernel_kind: KernelKind,
    pub initramfs: &'a Path,
    /// The host's TSC frequency, handed to TCG guests (see [`host_tsc_khz`]).
    pub tsc_khz: Option<u64>,
    /// Shown by `ps` and in QEMU's messages: the VM id.
    pub name: &'a str,
    pub pidfile: Option<&'a Path>,
    /// The chardev socket of the agent port; `None` for probe boots.
    pub agent_socket: Option<&'a Path>,
    /// The vhost-user socket of the VM's vsock daemon (the vsock
    /// transport; then `agent_socket` is `None`).
    pub vsock_socket: Option<&'a Path>,
    /// passt's socket for `Network::Nat`; `None`: no NIC at all.
    pub passt_socket: Option<&'a Path>,
    /// A qcow2 overlay attached as the first virtio disk.
    pub disk: Option<&'a Path>,
    /// `kiln.*` parameters for /init (token, marker, ...).
    pub init_args: Vec<String>,
    /// A QMP socket (snapshot templates and restores).
    pub qmp_socket: Option<&'a Path>,
    /// `-incoming defer`: wait for QMP `migrate-incoming` instead of
    /// booting (a restore).
    pub incoming: bool,
}

impl LaunchPlan<'_> {
    /// The guest kernel's command line.
    pub fn kernel_cmdline(&self) -> String {
        let mut args = vec!["console=ttyS0", "panic=-1", "quiet"];
        if self.kernel_kind == KernelKind::Minimal {
            // No ACPI to power off with: a triple-fault reset, which
            // `-no-reboot` turns into QEMU's exit.
            args.push("reboot=t");
        }
        let mut line = args.join(" ");
        if let (Accel::Tcg, Some(khz)) = (self.accel, self.tsc_khz) {
            // Under TCG, loaded hosts make TSC calibration fail and the
            // guest hang at t=0; the host's frequency avoids calibrating.
            line.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
        }
        if self.accel == Accel::Tcg {
            // The IO-APIC timer check busy-waits for ticks (~40 ms per
            // boot) and, on a loaded host, panics the guest ("IO-APIC +
            // timer doesn't work!"), seen with 5+ TCG guests on 2 cores.
            line.push_str(" no_timer_check");
        }
        if self.passt_socket.is_some() {
            line.push_str(&net::guest_cmdline());
        }
        if self.vsock_socket.is_some() {
            line.push_str(" kiln.transport=vsock");
        }
        for arg in &self.init_args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }

    /// Arguments after the QEMU binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a = Args::default();
        let machine = match self.kernel_kind {
            // QEMU's own acpi=off is what puts the virtio-mmio devices on
            // the kernel command line; the minimal kernel has no ACPI.
            KernelKind::Minimal => "microvm,acpi=off",
            // The RTC stays on: without it a guest power-off does not end
            // QEMU.
            KernelKind::Stock => "microvm",
        };
        if self.vsock_socket.is_some() {
            // vhost-user devices work on guest RAM the daemon maps: it must
            // be a shared memfd (without share=on vsock is silently dead).
            a.pair("-M", format!("{machine},memory-backend=mem"));
            a.pair(
                "-object",
                format!(
                    "memory-backend-memfd,id=mem,size={}M,share=on",
                    self.memory_mib
                ),
            );
        } else {
            a.pair("-M", machine);
        }
        a.pair("-accel", self.accel.as_str());
        a.pair(
            "-cpu",
            if self.accel == Accel::Kvm {
                "host"
            } else {
                "max"
            },
        );
        a.pair("-m", format!("{}M", self.memory_mib));
        a.pair("-smp", self.vcpus.to_string());
        a.pair("-name", self.name);
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            a.one(flag);
        }
        // The serial console goes to QEMU's stdout, a pipe that the host
        // copies into a size-capped console.log.
        a.pair("-serial", "stdio");
        if let Some(pidfile) = self.pidfile {
            a.pair("-pidfile", pidfile);
        }
        a.pair("-kernel", self.kernel);
        a.pair("-initrd", self.initramfs);
        a.pair("-append", self.kernel_cmdline());
        a.pair("-device", "virtio-rng-device");
        if let Some(socket) = self.agent_socket {
            a.pair("-device", "virtio-serial-device");
            // server=on,wait=off: QEMU listens and boots at once; the host
            // connects once and keeps that connection (the guest reads EOF
            // while no host is connected).
            a.pair(
                "-chardev",
                with_path("socket,id=agent,server=on,wait=off,path=", socket),
            );
            a.pair(
                "-device",
                format!("virtserialport,chardev=agent,name={AGENT_PORT}"),
            );
        }
        if let Some(socket) = self.vsock_socket {
            // A client of the daemon's socket, no `reconnect=`: a daemon
            // that is gone stays gone (see the `vsock` module).
            a.pair("-chardev", with_path("socket,id=vsock,path=", socket));
            a.pair("-device", "vhost-user-vsock-device,chardev=vsock");
        }
        if let Some(socket) = self.passt_socket {
            a.pair(
                "-netdev",
                with_path(
                    "stream,id=net0,server=off,addr.type=unix,addr.path=",
                    socket,
                ),
            );
            a.pair("-device", "virtio-net-device,netdev=net0");
        }
        if let Some(disk) = self.disk {
            a.pair(
                "-drive",
                with_path("if=none,id=disk0,format=qcow2,discard=unmap,file=", disk),
            );
            a.pair("-device", "virtio-blk-device,drive=disk0");
        }
        if let Some(socket) = self.qmp_socket {
            a.pair(
                "-chardev",
                with_path("socket,id=qmp,server=on,wait=off,path=", socket),
            );
            a.pair("-mon", "chardev=qmp,mode=control");
        }
        if self.incoming {
            a.pair("-incoming", "defer");
        }
        a.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn one(&mut self, flag: &str) {
        self.0.push(flag.into());
    }
    fn pair(&mut self, flag: &str, value: impl Into<OsString>) {
        self.0.push(flag.into());
        self.0.push(value.into());
    }
}

/// `prefix` followed by `path` as the last value of a QEMU option string,
/// where `,` separates options and is written `,,` inside a value.
fn with_path(prefix: &str, path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = prefix.as_bytes().to_vec();
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// The host's `cpu MHz` from /proc/cpuinfo in kHz, as `tsc_early_khz` wants.
pub(crate) fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_khz(&cpuinfo)
}

fn parse_cpu_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    let khz = (mhz * 1000.0).round();
    (1.0..1e9).contains(&khz).then_some(khz as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(accel: Accel, kind: KernelKind) -> LaunchPlan<'static> {
        LaunchPlan {
            accel,
            vcpus: 2,
            memory_mib: 1024,
            kernel: Path::new("/k/vmlinux"),
            kernel_kind: kind,
            initramfs: Path::new("/i/minimal.cpio"),
            tsc_khz: Some(2_596_142),
            name: "qemu-1-0-0000abcd",
            pidfile: Some(Path::new("/s/qemu.pid")),
            agent_socket: Some(Path::new("/s,x/agent.sock")),
            vsock_socket: None,
            passt_socket: None,
            disk: None,
            init_args: vec!["kiln.token=ab12".into()],
            qmp_socket: None,
            incoming: false,
        }
    }

    fn shown(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn minimal_kernel_under_tcg() {
        let p = plan(Accel::Tcg, KernelKind::Minimal);
        assert_eq!(
            shown(&p.args()),
            "-M microvm,acpi=off -accel tcg -cpu max -m 1024M -smp 2 -name qemu-1-0-0000abcd \
             -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
             -pidfile /s/qemu.pid -kernel /k/vmlinux -initrd /i/minimal.cpio \
             -append console=ttyS0 panic=-1 quiet reboot=t tsc_early_khz=2596142 tsc=reliable \
             no_timer_check kiln.token=ab12 -device virtio-rng-device -device virtio-serial-device \
             -chardev socket,id=agent,server=on,wait=off,path=/s,,x/agent.sock \
             -device virtserialport,chardev=agent,name=org.kiln.agent"
        );
    }

    #[test]
    fn stock_kernel_under_kvm_keeps_acpi_and_skips_the_tsc_hint() {
        let mut p = plan(Accel::Kvm, KernelKind::Stock);
        p.passt_socket = Some(Path::new("/s/passt.sock"));
        p.disk = Some(Path::new("/s/overlay.qcow2"));
        let args = shown(&p.args());
        assert!(
            args.starts_with("-M microvm -accel kvm -cpu host"),
            "{args}"
        );
        let cmdline = p.kernel_cmdline();
        assert!(!cmdline.contains("reboot=t"), "{cmdline}");
        assert!(!cmdline.contains("tsc_early_khz"), "{cmdline}");
        assert!(!cmdline.contains("no_timer_check"), "{cmdline}");
        assert!(cmdline.contains("kiln.ip=10.0.2.15/24"), "{cmdline}");
        assert!(
            args.contains(
                "-netdev stream,id=net0,server=off,addr.type=unix,addr.path=/s/passt.sock \
                 -device virtio-net-device,netdev=net0"
            ),
            "{args}"
        );
        assert!(
            args.contains("file=/s/overlay.qcow2 -device virtio-blk-device,drive=disk0"),
            "{args}"
        );
    }

    #[test]
    fn vsock_adds_a_shared_memory_backend_and_the_vhost_user_device() {
        let mut p = plan(Accel::Tcg, KernelKind::Minimal);
        p.agent_socket = None;
        p.vsock_socket = Some(Path::new("/s,x/vhost.sock"));
        let args = shown(&p.args());
        assert!(
            args.starts_with(
                "-M microvm,acpi=off,memory-backend=mem \
                 -object memory-backend-memfd,id=mem,size=1024M,share=on -accel tcg"
            ),
            "{args}"
        );
        assert!(
            args.ends_with(
                "-device virtio-rng-device -chardev socket,id=vsock,path=/s,,x/vhost.sock \
                 -device vhost-user-vsock-device,chardev=vsock"
            ),
            "{args}"
        );
        assert!(!args.contains("virtio-serial"), "{args}");
        assert!(
            p.kernel_cmdline()
                .ends_with(" kiln.transport=vsock kiln.token=ab12"),
            "{}",
            p.kernel_cmdline()
        );
        let mut stock = plan(Accel::Tcg, KernelKind::Stock);
        stock.vsock_socket = Some(Path::new("/s/vhost.sock"));
        assert!(shown(&stock.args()).starts_with("-M microvm,memory-backend=mem -object"));
        // The default transport has none of it.
        let plain = shown(&plan(Accel::Tcg, KernelKind::Minimal).args());
        assert!(
            !plain.contains("memory-backend") && !plain.contains("vsock"),
            "{plain}"
        );
    }

    #[test]
    fn cpu_khz_from_cpuinfo() {
        let info = "processor\t: 0\ncpu MHz\t\t: 2596.142\ncache size\t: 512 KB\n";
        assert_eq!(parse_cpu_khz(info), Some(2_596_142));
        assert_eq!(parse_cpu_khz("cpu MHz : fast"), None);
        assert_eq!(parse_cpu_khz(""), None);
    }
}
