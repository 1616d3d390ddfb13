//! Measures the qemu backend: cold `allocate()` until the agent answers
//! (median of N), an exec round trip of `true` (median of M), and release.
//!
//! ```text
//! cargo run --release -p kiln-vm --example qemu_bench -- [BOOTS] [EXECS] [nat]
//! ```
//!
//! Uses the images of `$KILN_HOME` (`kiln image build`); state goes to a
//! temporary directory. Prints numbers, asserts nothing.

use std::time::{Duration, Instant};

use kiln_vm::{ExecRequest, Network, QemuConfig, QemuProvider, Vm, VmSpec};

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
    let data = QemuConfig::default_data_dir().ok_or("neither KILN_HOME nor HOME is set")?;
    let state = tempfile::Builder::new().prefix("kqb").tempdir()?;
    let mut config = QemuConfig::from_data_dir(&data)?;
    config.state_dir = state.path().to_owned();
    let provider = QemuProvider::new(config)?;
    let spec = VmSpec {
        vcpus: 1,
        memory_mib: 512,
        network,
        ..VmSpec::default()
    };
    println!(
        "accelerator: {}; kernel {}; network {network:?}; load average {}",
        provider.accel(),
        provider.config().minimal.kernel.display(),
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
    Ok(())
}
