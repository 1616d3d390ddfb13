//! Measures the qemu backend: cold `allocate()` until the agent answers
//! (median of N), an exec round trip of `true` (median of M), and release;
//! then `cold_boot_ready`, `restore_ready` (snapshot restore to agent
//! ready) and `pool_allocate` (allocate() from a warm pool of 2 until the
//! VM is handed out) with S samples each (see `kiln_vm::bench`).
//!
//! ```text
//! cargo run --release -p kiln-vm --example qemu_bench -- [BOOTS] [EXECS] [nat|none] [S] [IMAGE]
//! ```
//!
//! Uses the images of `$KILN_HOME` (`kiln image build`); state goes to a
//! temporary directory. Prints numbers, asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_vm::bench::{self, Samples};
use kiln_vm::{ExecRequest, Network, QemuConfig, QemuProvider, Vm, VmProvider, VmSpec};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn summary(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
        return;
    };
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    println!(
        "{name:<32} n={:<4} median {:>9.2?}  min {:>9.2?}  p90 {:>9.2?}  max {:>9.2?}",
        sorted.len(),
        median(sorted.clone()),
        min,
        p90,
        max
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let boots: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let execs: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let network = match args.next().as_deref() {
        Some("nat") => Network::Nat,
        _ => Network::None,
    };
    let samples: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let image = args.next().unwrap_or_else(|| "minimal".to_owned());
    let data = QemuConfig::default_data_dir().ok_or("neither KILN_HOME nor HOME is set")?;
    let state = tempfile::Builder::new().prefix("kqb").tempdir()?;
    let mut config = QemuConfig::from_data_dir(&data)?;
    config.state_dir = state.path().to_owned();
    config.snapshot_dir = state.path().join("snapshots");
    let provider = QemuProvider::new(config)?;
    let spec = VmSpec {
        vcpus: 1,
        memory_mib: 512,
        network,
        image,
        ..VmSpec::default()
    };
    println!(
        "accelerator: {}; image {}; network {network:?}; load average {}",
        provider.accel(),
        spec.image,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut boot = Vec::new();
    let mut release = Vec::new();
    for _ in 0..boots {
        let started = Instant::now();
        let vm = provider.allocate_vm(&spec).await?;
        boot.push(started.elapsed());
        let started = Instant::now();
        Box::new(vm).release().await?;
        release.push(started.elapsed());
    }
    summary("cold allocate -> agent ready", &boot);
    summary("release (shutdown + cleanup)", &release);

    let vm = provider.allocate_vm(&spec).await?;
    let mut round_trips = Vec::new();
    let mut pings = Vec::new();
    for _ in 0..execs {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        let result = vm.exec(ExecRequest::new(["true"]), tx).await?;
        round_trips.push(started.elapsed());
        if !result.success() {
            return Err(format!("`true` failed: {result:?}").into());
        }
        pings.push(vm.ping().await?);
    }
    summary("exec `true` round trip", &round_trips);
    summary("agent ping round trip", &pings);
    Box::new(vm).release().await?;

    let show = |name: &str, s: &Samples| summary(name, &s.0);
    let cold = bench::cold_boot_ready(&provider, &spec, samples).await?;
    show("cold_boot_ready", &cold);
    let started = Instant::now();
    let snapshot = provider.prepare_snapshot(&spec).await?;
    println!(
        "snapshot: {} MiB of state, built in {:.2?}",
        snapshot.state_bytes / (1024 * 1024),
        started.elapsed()
    );
    let restore = bench::restore_ready(&provider, &spec, samples).await?;
    show("restore_ready", &restore);
    // The pool refills by restoring, as `kiln serve` does.
    let mut restoring = provider.config().clone();
    restoring.snapshot_restore = true;
    let restoring: Arc<dyn VmProvider> = Arc::new(QemuProvider::new(restoring)?);
    let (pool, stats) =
        bench::pool_allocate(restoring, &spec, 2, samples, Duration::from_secs(120)).await?;
    show("pool_allocate", &pool);
    println!(
        "pool: handed out {}, misses {}, refills {}, health checks {}",
        stats.handed_out, stats.misses, stats.refills, stats.health_checks
    );
    println!(
        "restore_ready / cold_boot_ready (medians): {:.2}",
        restore.median().as_secs_f64() / cold.median().as_secs_f64()
    );
    Ok(())
}
