//! `kiln bench`: boot floor, cold boot, exec round trip, streaming and
//! memory of the qemu backend, measured side by side in one run, for the
//! minimal and/or the stock kernel. Progress on stderr; a table (or with
//! `--json` one object `{name: {median_ms, p90_ms, max_ms, n}}`) on stdout.
//! Numbers only: nothing here passes or fails on a threshold.
//!
//! - `entries`: the registry of entries, one function each.
//! - `floor`: the boot floor's bare initramfs.
//! - `images`: which image each kernel boots (the stock variant).
//! - `stats`: nearest-rank percentiles.

mod entries;
mod floor;
mod images;
mod stats;

use std::path::Path;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kiln_image::KernelKind;
use kiln_vm::qemu::{AgentTransport, GuestImage, QemuConfig, QemuProvider};
use kiln_vm::{Network, VmSpec};
use serde_json::{Map, Value, json};

use self::entries::{Ctx, Entry, Series, Shape, Target, Unit, series_name};
use self::stats::Summary;
use crate::cli::TransportArg;
use crate::exit::Code;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Samples per entry (`stream_100mib` takes at most 3).
    #[arg(short = 'n', long = "samples", value_name = "SAMPLES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub samples: u32,
    /// Which guest kernel: `stock` (and `both`) use a stock-kernel variant
    /// of the minimal image, built on first use and never made current.
    #[arg(long, value_enum, default_value = "minimal")]
    pub kernel: KernelChoice,
    /// Print one JSON object `{name: {median_ms, p90_ms, max_ms, n}}` instead
    /// of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure only these entries.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAME,...")]
    pub only: Vec<Entry>,
    /// Unmeasured rounds first (one boot per entry and kernel each): they
    /// fill the page cache with QEMU, kernels and initramfs.
    #[arg(long, value_name = "ROUNDS", default_value_t = 1)]
    pub warmup: u32,
    /// Guest networking; `nat` (passt) is what `kiln run` uses.
    #[arg(long, value_enum, default_value = "nat")]
    pub network: NetworkArg,
    /// The agent channel of every VM measured (`vsock` skips the snapshot
    /// entries: such VMs always cold-boot).
    #[arg(long, value_enum, default_value = "virtio")]
    pub transport: TransportArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    /// Kiln's tinyconfig kernel (the current minimal image).
    Minimal,
    /// Debian's stock kernel with its module-bearing initramfs.
    Stock,
    /// Both, side by side (stock entries are named `NAME[stock]`).
    Both,
}

impl KernelChoice {
    fn kinds(self) -> &'static [KernelKind] {
        match self {
            KernelChoice::Minimal => &[KernelKind::Minimal],
            KernelChoice::Stock => &[KernelKind::Stock],
            KernelChoice::Both => &[KernelKind::Minimal, KernelKind::Stock],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// NAT through passt, as `kiln run` and `kiln serve` boot VMs.
    Nat,
    /// No network device.
    None,
}

/// A failed sample (a guest that did not boot, a lost agent) is shown and
/// taken again, up to this many times per run; one more ends the run.
const MAX_FAILURES: usize = 3;

/// `cold_boot_ready` should stay within this factor of `boot_floor`.
const FLOOR_TARGET: f64 = 1.15;
/// The minimal kernel's `cold_boot_ready` should be at most this share of
/// the stock kernel's.
const STOCK_TARGET: f64 = 0.60;
/// `restore_ready` should be at most this share of `cold_boot_ready`.
const RESTORE_TARGET: f64 = 0.5;
/// `pool_allocate` median and p90 should be under these (ms).
const POOL_TARGET_MS: (f64, f64) = (5.0, 20.0);

pub fn run(args: &BenchArgs) -> anyhow::Result<Code> {
    // `RUST_LOG=kiln_vm=debug` shows the steps of each allocation.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let data_dir = crate::data_dir()?;
    let transport = AgentTransport::from(args.transport);
    let selected: Vec<Entry> = Entry::ALL
        .into_iter()
        .filter(|e| args.only.is_empty() || args.only.contains(e))
        .filter(|e| {
            let skip = transport == AgentTransport::Vsock && e.needs_snapshot();
            if skip {
                eprintln!(
                    "kiln bench: {} skipped: vsock VMs cannot be snapshotted",
                    e.name()
                );
            }
            !skip
        })
        .collect();
    let spec = VmSpec {
        network: match args.network {
            NetworkArg::Nat => Network::Nat,
            NetworkArg::None => Network::None,
        },
        ..VmSpec::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let targets = targets(&data_dir, args.kernel.kinds(), &selected, transport)?;
    let Some(first) = targets.first() else {
        bail!("no kernel to measure");
    };
    let load_at_start = load_average();
    eprintln!(
        "kiln bench: accelerator {}; transport {transport}; vm {} vcpus, {} MiB, network {}; \
         {} samples; load average {}",
        first.provider.accel(),
        spec.vcpus,
        spec.memory_mib,
        match spec.network {
            Network::Nat => "nat (passt)",
            Network::None => "none",
        },
        args.samples,
        load_at_start
    );
    let ctx = Ctx { spec };
    let mut failures = Vec::new();
    let measured = runtime.block_on(async {
        tokio::select! {
            result = measure(
                &ctx,
                &targets,
                &selected,
                (args.samples as usize, args.warmup as usize),
                &mut failures,
            ) => result,
            // Dropping the measurement destroys its VMs (their Drop).
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })?;
    let rows: Vec<(Series, Summary)> = measured
        .into_iter()
        .filter_map(|s| stats::summarize(&s.samples).map(|sum| (s, sum)))
        .collect();
    report(args.json, &rows, &failures, &load_at_start)?;
    Ok(Code::Success)
}

/// The table or the JSON on stdout; the targets, failures and host load
/// after the table (on stderr with `--json`, so stdout stays one object).
fn report(
    json: bool,
    rows: &[(Series, Summary)],
    failures: &[String],
    load_at_start: &str,
) -> anyhow::Result<()> {
    let mut notes = verdicts(rows);
    if !failures.is_empty() {
        notes.push(format!(
            "{} failed sample(s) were taken again: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    notes.push(format!(
        "host load average: {load_at_start} at the start, {} at the end",
        load_average()
    ));
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(rows))?);
        for line in &notes {
            eprintln!("kiln bench: {line}");
        }
    } else {
        print!("{}", table(rows));
        for line in &notes {
            println!("{line}");
        }
    }
    Ok(())
}

/// A provider and a floor initramfs per kernel. The floor initramfs is
/// only written when `boot_floor` runs.
fn targets(
    data_dir: &Path,
    kinds: &[KernelKind],
    selected: &[Entry],
    transport: AgentTransport,
) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for (kind, image) in images::resolve(data_dir, kinds)? {
        let floor_initramfs = if selected.contains(&Entry::BootFloor) {
            floor::initramfs(data_dir, kind, &image.initramfs)?
        } else {
            image.initramfs.clone()
        };
        // The state directory `kiln run` uses.
        let mut config = QemuConfig::new(GuestImage::from(image), data_dir.join("qemu-vms"));
        // Snapshots where `kiln run` keeps them: built once, shared.
        config.snapshot_dir = data_dir.join("qemu-snapshots");
        config.transport = transport;
        let provider = QemuProvider::new(config).with_context(|| {
            format!(
                "cannot set up the qemu backend for the {} kernel \
                 (./scripts/build-images.sh installs and builds everything)",
                kind.as_str()
            )
        })?;
        targets.push(Target {
            kind,
            provider,
            floor_initramfs,
        });
    }
    Ok(targets)
}

/// Every selected entry, per kernel where it applies (see
/// [`Entry::per_kernel`]). [`Shape::Fresh`] entries first, in rounds of one
/// sample each (after `warmup` rounds whose samples are dropped); then the
/// [`Shape::Warm`] ones. The result is in registry order. Failed attempts
/// are retried (see [`MAX_FAILURES`]) and described in `failures`.
async fn measure(
    ctx: &Ctx,
    targets: &[Target],
    selected: &[Entry],
    (samples, warmup): (usize, usize),
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<Series>> {
    let jobs: Vec<(Entry, &Target)> = selected
        .iter()
        .flat_map(|&entry| {
            let on = if entry.per_kernel() {
                targets
            } else {
                &targets[..1.min(targets.len())]
            };
            on.iter().map(move |target| (entry, target))
        })
        .collect();
    let mut series: Vec<Vec<Series>> = jobs
        .iter()
        .map(|(entry, target)| {
            entry
                .outputs()
                .iter()
                .map(|&(name, unit)| Series {
                    name: series_name(name, target.kind),
                    unit,
                    samples: Vec::new(),
                })
                .collect()
        })
        .collect();
    // Entries may take more samples than `samples` (see `Entry::samples`).
    let rounds = jobs
        .iter()
        .filter(|(entry, _)| entry.shape() == Shape::Fresh)
        .map(|(entry, _)| entry.samples(samples))
        .max()
        .unwrap_or(0);
    for round in 0..warmup + rounds {
        for (i, &(entry, target)) in jobs.iter().enumerate() {
            let n = entry.samples(samples);
            if entry.shape() != Shape::Fresh || round >= warmup + n {
                continue;
            }
            let values = attempt(ctx, entry, target, 1, failures).await?;
            if round < warmup {
                let name = series_name(entry.name(), target.kind);
                eprintln!("kiln bench: [warm-up] {name} done");
            } else {
                let what = format!("{}/{n}", round - warmup + 1);
                record(&mut series[i], values, &what);
            }
        }
    }
    for (i, &(entry, target)) in jobs.iter().enumerate() {
        if entry.shape() == Shape::Warm {
            let n = entry.samples(samples);
            let values = attempt(ctx, entry, target, n, failures).await?;
            record(&mut series[i], values, &format!("{n} samples"));
        }
    }
    Ok(series.into_iter().flatten().collect())
}

/// [`Entry::measure`], again after a failure while `failures` has room.
async fn attempt(
    ctx: &Ctx,
    entry: Entry,
    target: &Target,
    n: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    loop {
        match entry.measure(ctx, target, n).await {
            Ok(values) => return Ok(values),
            Err(e) if failures.len() < MAX_FAILURES => {
                eprintln!("kiln bench: {e:#}\nkiln bench: taking that sample again");
                let first_line = format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                failures.push(first_line);
            }
            Err(e) => return Err(e.context(format!("more than {MAX_FAILURES} failed samples"))),
        }
    }
}

/// Adds an entry's values to its series and shows them on stderr.
fn record(series: &mut [Series], values: Vec<Vec<f64>>, what: &str) {
    let mut shown = Vec::new();
    for (series, values) in series.iter_mut().zip(values) {
        if let Some(summary) = stats::summarize(&values) {
            shown.push(format!(
                "{} {:.2} {}",
                series.name,
                summary.median,
                series.unit.as_str()
            ));
        }
        series.samples.extend(values);
    }
    eprintln!("kiln bench: [{what}] {}", shown.join(", "));
}

fn to_json(rows: &[(Series, Summary)]) -> Value {
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let mut map = Map::new();
    for (series, s) in rows {
        map.insert(
            series.name.clone(),
            json!({
                "median_ms": round(s.median),
                "p90_ms": round(s.p90),
                "max_ms": round(s.max),
                "n": s.n,
            }),
        );
    }
    Value::Object(map)
}

fn table(rows: &[(Series, Summary)]) -> String {
    let cell = |v: f64, unit: Unit| {
        let digits = if v < 10.0 { 2 } else { 1 };
        format!("{v:.digits$} {}", unit.as_str())
    };
    let lines: Vec<[String; 5]> = rows
        .iter()
        .map(|(series, s)| {
            [
                series.name.clone(),
                cell(s.median, series.unit),
                cell(s.p90, series.unit),
                cell(s.max, series.unit),
                s.n.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "MEDIAN", "P90", "MAX", "N"].map(String::from);
    let mut widths = [0usize; 5];
    for line in std::iter::once(&header).chain(&lines) {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&lines) {
        let mut text = format!("{:<w$}", line[0], w = widths[0]);
        for (c, w) in line[1..].iter().zip(&widths[1..]) {
            text.push_str(&format!("  {c:>w$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The targets of issues #4 and #7, for the entries that were measured:
/// ratios of medians, and the median of the per-round ratios (samples of
/// `Fresh` entries with the same index were taken in the same round, so
/// that one is less sensitive to load changing during the run).
fn verdicts(rows: &[(Series, Summary)]) -> Vec<String> {
    let find = |name: &str| rows.iter().find(|(s, _)| s.name == name);
    let median = |name: &str| find(name).map(|(_, s)| s.median);
    let per_round = |a: &str, b: &str| {
        let (a, b) = (&find(a)?.0.samples, &find(b)?.0.samples);
        if a.len() != b.len() {
            return None;
        }
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        stats::summarize(&ratios).map(|s| s.median)
    };
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut lines = Vec::new();
    for kind in [KernelKind::Minimal, KernelKind::Stock] {
        let (ready, floor) = (
            series_name("cold_boot_ready", kind),
            series_name("boot_floor", kind),
        );
        if let (Some(r), Some(f)) = (median(&ready), median(&floor)) {
            let ratio = r / f;
            let mut line = format!("{ready} / {floor} = {ratio:.2}");
            if kind == KernelKind::Minimal {
                line.push_str(&format!(
                    " (target <= {FLOOR_TARGET:.2}: {})",
                    met(ratio <= FLOOR_TARGET)
                ));
            }
            if let Some(paired) = per_round(&ready, &floor) {
                line.push_str(&format!("; per round: median {paired:.2}"));
            }
            lines.push(line);
        }
    }
    let stock = series_name("cold_boot_ready", KernelKind::Stock);
    if let (Some(m), Some(s)) = (median("cold_boot_ready"), median(&stock)) {
        let share = m / s;
        let mut line = format!(
            "cold_boot_ready / {stock} = {:.0} % (target <= {:.0} %: {})",
            share * 100.0,
            STOCK_TARGET * 100.0,
            met(share <= STOCK_TARGET)
        );
        if let Some(paired) = per_round("cold_boot_ready", &stock) {
            line.push_str(&format!("; per round: median {:.0} %", paired * 100.0));
        }
        lines.push(line);
    }
    if let (Some(r), Some(c)) = (median("restore_ready"), median("cold_boot_ready")) {
        let share = r / c;
        lines.push(format!(
            "restore_ready / cold_boot_ready = {share:.2} (target <= {RESTORE_TARGET:.2}: {})",
            met(share <= RESTORE_TARGET)
        ));
    }
    if let Some((_, s)) = find("pool_allocate") {
        let (median_target, p90_target) = POOL_TARGET_MS;
        lines.push(format!(
            "pool_allocate median {:.2} ms, p90 {:.2} ms (target < {median_target} ms, < {p90_target} ms: {})",
            s.median,
            s.p90,
            met(s.median < median_target && s.p90 < p90_target)
        ));
    }
    lines
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, unit: Unit, samples: &[f64]) -> (Series, Summary) {
        let series = Series {
            name: name.into(),
            unit,
            samples: samples.to_vec(),
        };
        let summary = stats::summarize(samples).expect("samples");
        (series, summary)
    }

    #[test]
    fn json_has_the_documented_shape() {
        let rows = [
            row("boot_floor", Unit::Ms, &[900.0, 1000.0, 950.0]),
            row("idle_vm_rss_mib", Unit::Mib, &[130.5]),
        ];
        assert_eq!(
            to_json(&rows),
            json!({
                "boot_floor": {"median_ms": 950.0, "p90_ms": 1000.0, "max_ms": 1000.0, "n": 3},
                "idle_vm_rss_mib": {"median_ms": 130.5, "p90_ms": 130.5, "max_ms": 130.5, "n": 1},
            })
        );
    }

    #[test]
    fn table_and_verdicts() {
        let rows = [
            row("boot_floor", Unit::Ms, &[1000.0, 2000.0, 900.0]),
            row("cold_boot_ready", Unit::Ms, &[1100.0, 2400.0, 1000.0]),
            row(
                "cold_boot_ready[stock]",
                Unit::Ms,
                &[2000.0, 4000.0, 2500.0],
            ),
            row("exec_roundtrip", Unit::Ms, &[2.5]),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("NAME "), "{text}");
        assert!(lines[4].starts_with("exec_roundtrip "), "{text}");
        assert!(lines[4].contains("2.50 ms"), "{text}");
        assert!(lines[1].contains("1000.0 ms"), "{text}");
        // Medians 1000 and 1100; per round 1.10, 1.20, 1.11.
        // Against stock: medians 1100 / 2500; per round 55, 60, 40 %.
        assert_eq!(
            verdicts(&rows),
            [
                "cold_boot_ready / boot_floor = 1.10 (target <= 1.15: met); \
                 per round: median 1.11",
                "cold_boot_ready / cold_boot_ready[stock] = 44 % (target <= 60 %: met); \
                 per round: median 55 %",
            ]
        );
        assert!(verdicts(&rows[..1]).is_empty());
    }
}
