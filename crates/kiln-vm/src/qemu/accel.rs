//! KVM or TCG, decided once per provider.
//!
//! `/dev/kvm` existing proves little: nested hosts may expose `kvm_pvm`,
//! which only runs PVM-enabled guest kernels — a stock kernel falls into
//! KVM's instruction emulator and takes minutes per boot before failing.
//! So `Auto` picks KVM only when the CPU has VT-x/AMD-V, no `kvm_pvm` is
//! loaded, `/dev/kvm` opens, and a probe boot of the real guest image under
//! KVM reaches /init within [`PROBE_LIMIT`]. Anything else means TCG, with
//! the reason kept for the CLI to print.

use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{AccelMode, QemuConfig};
use super::error::SetupError;
use super::launch::LaunchPlan;

/// A boot that takes longer than this under KVM is not "working KVM".
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Which accelerator, and why (for the CLI to print once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelDecision {
    pub accel: Accel,
    pub reason: String,
}

impl fmt::Display for AccelDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.accel.as_str(), self.reason)
    }
}

/// What the host says about virtualization, gathered once.
#[derive(Debug, Clone)]
pub(crate) struct HostFacts {
    pub cpu_virt_flag: bool,
    pub kvm_pvm_loaded: bool,
    /// `Err(why)` if `/dev/kvm` cannot be opened read-write.
    pub dev_kvm: Result<(), String>,
}

impl HostFacts {
    pub fn gather() -> HostFacts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        HostFacts {
            cpu_virt_flag: has_virt_flag(&cpuinfo),
            // /proc/modules is missing in some containers; /sys/module
            // lists built-in and loaded modules alike.
            kvm_pvm_loaded: modules.lines().any(|l| l.starts_with("kvm_pvm "))
                || Path::new("/sys/module/kvm_pvm").exists(),
            dev_kvm: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .map(drop)
                .map_err(|e| format!("cannot open /dev/kvm: {e}")),
        }
    }
}

fn has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// The decision for `mode`. `probe` boots the guest under KVM and is called
/// only when every static check passed.
pub(crate) fn decide(
    mode: AccelMode,
    facts: &HostFacts,
    probe: impl FnOnce() -> Result<Duration, String>,
) -> Result<AccelDecision, SetupError> {
    let tcg = |reason: String| {
        Ok(AccelDecision {
            accel: Accel::Tcg,
            reason,
        })
    };
    match mode {
        AccelMode::Tcg => tcg("forced by configuration".into()),
        AccelMode::Kvm => match &facts.dev_kvm {
            Ok(()) => Ok(AccelDecision {
                accel: Accel::Kvm,
                reason: "forced by configuration".into(),
            }),
            Err(why) => Err(SetupError::KvmUnusable(why.clone())),
        },
        AccelMode::Auto => {
            if !facts.cpu_virt_flag {
                return tcg("no VT-x/AMD-V flag in /proc/cpuinfo".into());
            }
            if facts.kvm_pvm_loaded {
                return tcg("kvm_pvm is loaded: /dev/kvm runs only PVM guest kernels".into());
            }
            if let Err(why) = &facts.dev_kvm {
                return tcg(why.clone());
            }
            match probe() {
                Ok(took) => Ok(AccelDecision {
                    accel: Accel::Kvm,
                    reason: format!("a probe boot under kvm reached /init in {took:.2?}"),
                }),
                Err(why) => tcg(format!("a probe boot under kvm failed: {why}")),
            }
        }
    }
}

/// Boots the `minimal` image's kernel and initramfs under `accel` with
/// `kiln.marker=1` (/init prints a marker and powers off at once) and
/// returns how long that took. Blocking: used once, at setup.
pub fn probe_boot(
    config: &QemuConfig,
    qemu: &Path,
    accel: Accel,
    limit: Duration,
) -> Result<Duration, String> {
    let plan = LaunchPlan {
        accel,
        vcpus: 1,
        memory_mib: 256,
        kernel: &config.minimal.kernel,
        kernel_kind: config.minimal.kernel_kind,
        initramfs: &config.minimal.initramfs,
        tsc_khz: super::launch::host_tsc_khz(),
        name: "kiln-accel-probe",
        pidfile: None,
        agent_socket: None,
        vsock_socket: None,
        passt_socket: None,
        disk: None,
        init_args: vec!["kiln.root=none".into(), "kiln.marker=1".into()],
        qmp_socket: None,
        incoming: false,
    };
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(plan.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    // Read the pipes on threads so a chatty guest cannot block QEMU.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no power-off within {limit:?}"));
            }
            Err(e) => return Err(format!("cannot wait for qemu: {e}")),
        }
    };
    let took = started.elapsed();
    let out = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() && out.contains("KILN-BOOT-MARKER") {
        Ok(took)
    } else {
        let last = |s: &str| s.lines().last().unwrap_or("").trim().to_owned();
        Err(format!(
            "qemu exited ({status}) without the boot marker: {} {}",
            last(&err),
            last(&out)
        ))
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cpu: bool, pvm: bool, dev: bool) -> HostFacts {
        HostFacts {
            cpu_virt_flag: cpu,
            kvm_pvm_loaded: pvm,
            dev_kvm: if dev {
                Ok(())
            } else {
                Err("no /dev/kvm".into())
            },
        }
    }

    fn no_probe() -> Result<Duration, String> {
        panic!("probe boot must not run")
    }

    #[test]
    fn auto_falls_back_to_tcg_and_says_why() {
        let d = decide(AccelMode::Auto, &facts(false, false, true), no_probe).expect("ok");
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("VT-x/AMD-V"), "{d}");
        let d = decide(AccelMode::Auto, &facts(true, true, true), no_probe).expect("ok");
        assert!(d.reason.contains("kvm_pvm"), "{d}");
        let d = decide(AccelMode::Auto, &facts(true, false, false), no_probe).expect("ok");
        assert_eq!(d.to_string(), "tcg (no /dev/kvm)");
        let d = decide(AccelMode::Auto, &facts(true, false, true), || {
            Err("no power-off within 10s".into())
        })
        .expect("ok");
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("no power-off"), "{d}");
    }

    #[test]
    fn auto_takes_kvm_only_after_a_good_probe() {
        let d = decide(AccelMode::Auto, &facts(true, false, true), || {
            Ok(Duration::from_millis(150))
        })
        .expect("ok");
        assert_eq!(d.accel, Accel::Kvm);
    }

    #[test]
    fn forcing_works_both_ways() {
        let d = decide(AccelMode::Tcg, &facts(true, false, true), no_probe).expect("ok");
        assert_eq!(d.accel, Accel::Tcg);
        let d = decide(AccelMode::Kvm, &facts(false, true, true), no_probe).expect("ok");
        assert_eq!(d.accel, Accel::Kvm);
        let err = decide(AccelMode::Kvm, &facts(true, false, false), no_probe).expect_err("no");
        assert!(err.to_string().contains("no /dev/kvm"), "{err}");
    }

    #[test]
    fn virt_flags_are_whole_words() {
        assert!(has_virt_flag("flags\t\t: fpu vme vmx sse\n"));
        assert!(has_virt_flag("flags\t\t: fpu svm\n"));
        assert!(!has_virt_flag("flags\t\t: fpu vmxx hypervisor\n"));
        assert!(!has_virt_flag("model name : svm vmx\n"));
    }
}
