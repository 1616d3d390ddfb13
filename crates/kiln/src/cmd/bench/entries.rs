//! The benchmark entries: one variant and one function each. To add one
//! (`restore_ready`, `pool_allocate`, ...): a variant in [`Entry`] and in
//! [`Entry::ALL`], its `name`, `outputs`, `shape` and `per_kernel`, and a
//! function called from [`Entry::measure`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_image::KernelKind;
use kiln_vm::qemu::{Accel, AccelMode};
use kiln_vm::{ExecRequest, QemuProvider, Vm, VmProvider, VmSpec};

use super::floor;

/// One benchmark entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Entry {
    /// QEMU spawn to the marker of a bare /init (same QEMU command line,
    /// kernel and devices as a kiln VM); also to QEMU's exit.
    #[value(name = "boot_floor")]
    BootFloor,
    /// `VmProvider::allocate` until the agent answered and the guest layout
    /// exists: what a run waits for before its first step.
    #[value(name = "cold_boot_ready")]
    ColdBootReady,
    /// An exec of `true` over the agent, in one warm VM.
    #[value(name = "exec_roundtrip")]
    ExecRoundtrip,
    /// 100 MiB of step output streamed to the host, every byte counted.
    #[value(name = "stream_100mib")]
    Stream100Mib,
    /// Host RSS of an idle, ready VM: QEMU plus passt (plus the vsock
    /// daemon on that transport).
    #[value(name = "idle_vm_rss_mib")]
    IdleVmRss,
    /// A VM restored from the image's snapshot until its agent answered
    /// with a fresh identity and the layout exists (the snapshot is built
    /// first, unmeasured).
    #[value(name = "restore_ready")]
    RestoreReady,
    /// `allocate()` on a full warm pool until the VM is handed out usable
    /// (alive and health-checked); the pool refills by restoring.
    #[value(name = "pool_allocate")]
    PoolAllocate,
}

/// How an entry takes its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each sample boots its own VM. These entries are measured in rounds,
    /// one sample of each per round, so that a change of host load hits
    /// them alike and their ratios stay fair.
    Fresh,
    /// All samples in one VM, booted once (not measured).
    Warm,
}

impl Entry {
    /// Every entry, in the order they are shown.
    pub const ALL: [Entry; 7] = [
        Entry::BootFloor,
        Entry::ColdBootReady,
        Entry::RestoreReady,
        Entry::PoolAllocate,
        Entry::ExecRoundtrip,
        Entry::Stream100Mib,
        Entry::IdleVmRss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entry::BootFloor => "boot_floor",
            Entry::ColdBootReady => "cold_boot_ready",
            Entry::ExecRoundtrip => "exec_roundtrip",
            Entry::Stream100Mib => "stream_100mib",
            Entry::IdleVmRss => "idle_vm_rss_mib",
            Entry::RestoreReady => "restore_ready",
            Entry::PoolAllocate => "pool_allocate",
        }
    }

    /// The names it reports (the first is its own), and their unit.
    pub fn outputs(self) -> &'static [(&'static str, Unit)] {
        match self {
            Entry::BootFloor => &[("boot_floor", Unit::Ms), ("boot_floor_exit", Unit::Ms)],
            Entry::ColdBootReady => &[("cold_boot_ready", Unit::Ms)],
            Entry::ExecRoundtrip => &[("exec_roundtrip", Unit::Ms)],
            Entry::Stream100Mib => &[("stream_100mib", Unit::Ms)],
            Entry::IdleVmRss => &[
                ("idle_vm_rss_mib", Unit::Mib),
                ("idle_passt_rss_mib", Unit::Mib),
            ],
            Entry::RestoreReady => &[("restore_ready", Unit::Ms)],
            Entry::PoolAllocate => &[("pool_allocate", Unit::Ms)],
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            Entry::BootFloor | Entry::ColdBootReady | Entry::IdleVmRss | Entry::RestoreReady => {
                Shape::Fresh
            }
            Entry::ExecRoundtrip | Entry::Stream100Mib | Entry::PoolAllocate => Shape::Warm,
        }
    }

    /// Restores snapshots (impossible on the vsock transport).
    pub fn needs_snapshot(self) -> bool {
        matches!(self, Entry::RestoreReady | Entry::PoolAllocate)
    }

    /// Measured for every kernel asked for; the others only for the first
    /// (the minimal kernel, when it is asked for).
    pub fn per_kernel(self) -> bool {
        match self {
            Entry::BootFloor | Entry::ColdBootReady | Entry::IdleVmRss => true,
            Entry::ExecRoundtrip
            | Entry::Stream100Mib
            | Entry::RestoreReady
            | Entry::PoolAllocate => false,
        }
    }

    /// Samples taken for `-n samples`.
    pub fn samples(self, samples: usize) -> usize {
        match self {
            // Seconds each under TCG: three say enough.
            Entry::Stream100Mib => samples.min(3),
            // Issue #5 asks for at least 20 of each: they are fast.
            Entry::RestoreReady | Entry::PoolAllocate => samples.max(MIN_FAST_SAMPLES),
            _ => samples,
        }
    }

    /// `n` samples on `target`: one list of values per [`output`](Self::outputs).
    pub async fn measure(
        self,
        ctx: &Ctx,
        target: &Target,
        n: usize,
    ) -> anyhow::Result<Vec<Vec<f64>>> {
        let result = match self {
            Entry::BootFloor => boot_floor(ctx, target, n).await,
            Entry::ColdBootReady => cold_boot_ready(ctx, target, n).await,
            Entry::ExecRoundtrip => exec_roundtrip(ctx, target, n).await,
            Entry::Stream100Mib => stream_100mib(ctx, target, n).await,
            Entry::IdleVmRss => idle_vm_rss(ctx, target, n).await,
            Entry::RestoreReady => restore_ready(ctx, target, n).await,
            Entry::PoolAllocate => pool_allocate(ctx, target, n).await,
        };
        let values =
            result.with_context(|| format!("{} failed", series_name(self.name(), target.kind)))?;
        debug_assert_eq!(values.len(), self.outputs().len());
        Ok(values)
    }
}

/// What every entry gets.
pub struct Ctx {
    /// The VM every entry boots: `kiln run`'s default.
    pub spec: VmSpec,
}

/// One kernel to measure: its provider and its boot-floor initramfs.
pub struct Target {
    pub kind: KernelKind,
    pub provider: QemuProvider,
    pub floor_initramfs: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Mib,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Mib => "MiB",
        }
    }
}

/// The samples of one reported name.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
}

/// `boot_floor` for the minimal kernel, `boot_floor[stock]` for the stock one.
pub fn series_name(base: &str, kind: KernelKind) -> String {
    match kind {
        KernelKind::Minimal => base.to_owned(),
        KernelKind::Stock => format!("{base}[stock]"),
    }
}

/// A boot floor run gets this long to print its marker and power off.
const FLOOR_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle VM's RSS is read this long after it became ready.
const RSS_SETTLE: Duration = Duration::from_millis(500);
/// The stream: exactly this many bytes of stdout.
const STREAM_BYTES: u64 = 100 * 1024 * 1024;
/// Samples of `restore_ready` and `pool_allocate`, at least.
const MIN_FAST_SAMPLES: usize = 20;
/// VMs kept idle by the `pool_allocate` pool.
const POOL_SIZE: usize = 2;
/// How long the pool may take to fill before a sample.
const POOL_FILL_LIMIT: Duration = Duration::from_secs(60);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn boot_floor(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let (mut marker, mut exit) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let boot = t
            .provider
            .boot_floor(&ctx.spec, &t.floor_initramfs, floor::MARKER, FLOOR_TIMEOUT)
            .await?;
        marker.push(ms(boot.to_marker));
        exit.push(ms(boot.to_exit));
    }
    Ok(vec![marker, exit])
}

async fn cold_boot_ready(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut ready = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let allocated = VmProvider::allocate(&t.provider, &ctx.spec).await?;
        ready.push(ms(started.elapsed()));
        allocated.vm.release().await?;
    }
    Ok(vec![ready])
}

async fn restore_ready(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let samples = kiln_vm::bench::restore_ready(&t.provider, &ctx.spec, n).await?;
    Ok(vec![samples.0.into_iter().map(ms).collect()])
}

async fn pool_allocate(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    // The pool refills by restoring, as `kiln serve`'s does; the decided
    // accelerator is reused, so no second probe.
    let mut config = t.provider.config().clone();
    config.snapshot_restore = true;
    config.accel = match t.provider.accel().accel {
        Accel::Kvm => AccelMode::Kvm,
        Accel::Tcg => AccelMode::Tcg,
    };
    let inner = QemuProvider::new(config).context("cannot set up the pool's qemu backend")?;
    inner.prepare_snapshot(&ctx.spec).await?;
    let (samples, stats) =
        kiln_vm::bench::pool_allocate(Arc::new(inner), &ctx.spec, POOL_SIZE, n, POOL_FILL_LIMIT)
            .await?;
    if stats.handed_out < n as u64 {
        bail!("the pool handed out {} of {n} VMs", stats.handed_out);
    }
    Ok(vec![samples.0.into_iter().map(ms).collect()])
}

async fn exec_roundtrip(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut series = Vec::new();
    let vm = Box::new(t.provider.allocate_vm(&ctx.spec).await?);
    let run = async {
        // One unmeasured exec: the first pays for cold caches in the guest.
        run_true(vm.as_ref()).await?;
        for _ in 0..n {
            let started = Instant::now();
            run_true(vm.as_ref()).await?;
            series.push(ms(started.elapsed()));
        }
        anyhow::Ok(())
    }
    .await;
    vm.release().await?;
    run?;
    Ok(vec![series])
}

async fn run_true(vm: &dyn Vm) -> anyhow::Result<()> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(ExecRequest::new(["true"]), tx).await?;
    if !result.success() {
        bail!("`true` failed in the guest: {result:?}");
    }
    Ok(())
}

async fn stream_100mib(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut series = Vec::new();
    let vm = Box::new(t.provider.allocate_vm(&ctx.spec).await?);
    let run = async {
        for _ in 0..n {
            let started = Instant::now();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<kiln_vm::OutputChunk>();
            let count = tokio::spawn(async move {
                let mut bytes = [0u64; 2];
                while let Some(chunk) = rx.recv().await {
                    let i = usize::from(chunk.stream == kiln_vm::OutputStream::Stderr);
                    bytes[i] += chunk.data.len() as u64;
                }
                bytes
            });
            let argv = ["head", "-c", &STREAM_BYTES.to_string(), "/dev/zero"].map(String::from);
            let result = vm.exec(ExecRequest::new(argv), tx).await?;
            let [stdout, stderr] = count.await.context("the byte counter failed")?;
            let took = started.elapsed();
            if !result.success() || stdout != STREAM_BYTES {
                bail!(
                    "expected exactly {STREAM_BYTES} bytes of stdout, got {stdout} \
                     (and {stderr} of stderr); {result:?}"
                );
            }
            series.push(ms(took));
        }
        anyhow::Ok(())
    }
    .await;
    vm.release().await?;
    run?;
    Ok(vec![series])
}

async fn idle_vm_rss(ctx: &Ctx, t: &Target, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let (mut total, mut passt) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let vm = Box::new(t.provider.allocate_vm(&ctx.spec).await?);
        tokio::time::sleep(RSS_SETTLE).await;
        let qemu_kib = vm.qemu_pid().map(rss_kib).transpose();
        let passt_kib = vm.passt_pid().map(rss_kib).transpose();
        // The vsock transport's daemon is part of the VM's cost too.
        let daemon_kib = vm.vsock_daemon_pid().map(rss_kib).transpose();
        vm.release().await?;
        let qemu_kib = qemu_kib?.context("the vm has no qemu process")?;
        let passt_kib = passt_kib?.unwrap_or(0);
        let daemon_kib = daemon_kib?.unwrap_or(0);
        total.push((qemu_kib + passt_kib + daemon_kib) as f64 / 1024.0);
        passt.push(passt_kib as f64 / 1024.0);
    }
    Ok(vec![total, passt])
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_registry_agree() {
        use clap::ValueEnum;
        for entry in Entry::ALL {
            let value = entry.to_possible_value().expect("a value");
            assert_eq!(value.get_name(), entry.name());
        }
        assert_eq!(Entry::value_variants().len(), Entry::ALL.len());
        for entry in Entry::ALL {
            assert_eq!(entry.outputs()[0].0, entry.name());
        }
        assert_eq!(
            series_name("boot_floor", KernelKind::Stock),
            "boot_floor[stock]"
        );
        assert_eq!(series_name("boot_floor", KernelKind::Minimal), "boot_floor");
        assert_eq!(Entry::Stream100Mib.samples(10), 3);
        assert_eq!(Entry::Stream100Mib.samples(1), 1);
        assert_eq!(Entry::ColdBootReady.samples(10), 10);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tqemu\nVmPeak:\t  999 kB\nVmRSS:\t  134512 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(134_512));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }
}
