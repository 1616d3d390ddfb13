//! Measurements of allocation paths, for `kiln bench` and the
//! `qemu_bench` example. They print nothing and assert nothing: they
//! return samples.
//!
//! - [`cold_boot_ready`]: QEMU start to agent ready (layout made).
//! - [`restore_ready`]: snapshot restore to agent ready with a fresh
//!   identity (the snapshot is built first, not measured).
//! - [`pool_allocate`]: `allocate()` on a warm pool until the VM is handed
//!   out usable (alive, health-checked). Each sample waits for the pool to
//!   be full first, so it measures the warm path, not refills.
//!
//! Releasing each VM is outside every measurement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::{PoolConfig, WarmPool};
use crate::{QemuProvider, Vm, VmError, VmProvider, VmSpec};

/// Timings of one measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    fn sorted(&self) -> Vec<Duration> {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted
    }

    /// The `p`-th percentile (nearest rank), `p` clamped to 1..=100; zero
    /// without samples.
    pub fn percentile(&self, p: u32) -> Duration {
        nearest_rank(&self.sorted(), p.clamp(1, 100)).unwrap_or_default()
    }

    pub fn median(&self) -> Duration {
        self.percentile(50)
    }

    pub fn p90(&self) -> Duration {
        self.percentile(90)
    }

    pub fn min(&self) -> Duration {
        self.0.iter().min().copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The nearest-rank `percent` percentile of `sorted` (ascending): the sample
/// at rank `ceil(percent/100 * n)` (1-based), always one of the samples,
/// never an interpolation; with an even `n` the median is the lower middle
/// one. `None` without samples or when `percent` is not in 1..=100.
pub fn nearest_rank<T: Copy>(sorted: &[T], percent: u32) -> Option<T> {
    if sorted.is_empty() || !(1..=100).contains(&percent) {
        return None;
    }
    // ceil(percent * n / 100), in integers: no rounding surprises.
    let rank = (percent as usize * sorted.len()).div_ceil(100);
    sorted.get(rank.max(1) - 1).copied()
}

/// `samples` cold boots of `spec` until the agent is ready.
pub async fn cold_boot_ready(
    provider: &QemuProvider,
    spec: &VmSpec,
    samples: usize,
) -> Result<Samples, VmError> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let vm = provider.cold_boot_vm(spec).await?;
        out.push(started.elapsed());
        Box::new(vm).release().await?;
    }
    Ok(Samples(out))
}

/// `samples` restores of `spec`'s snapshot until the agent is ready with
/// a fresh identity. Builds the snapshot first if there is none.
pub async fn restore_ready(
    provider: &QemuProvider,
    spec: &VmSpec,
    samples: usize,
) -> Result<Samples, VmError> {
    provider.prepare_snapshot(spec).await?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let vm = provider.restore_vm(spec).await?;
        out.push(started.elapsed());
        Box::new(vm).release().await?;
    }
    Ok(Samples(out))
}

/// `samples` allocations from a warm pool of `size` VMs of `spec` over
/// `inner` (at most `size + 1` VMs at once). Waits up to `fill_limit` for
/// the pool to be full before each sample; the pool is shut down at the
/// end. Returns the samples and the pool's counters.
pub async fn pool_allocate(
    inner: Arc<dyn VmProvider>,
    spec: &VmSpec,
    size: usize,
    samples: usize,
    fill_limit: Duration,
) -> Result<(Samples, crate::PoolStats), VmError> {
    let config = PoolConfig {
        specs: vec![spec.clone()],
        ..PoolConfig::new(size.max(1), size.max(1) + 1)
    };
    let pool = WarmPool::new(inner, config);
    let measured = async {
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            if !pool.wait_full(fill_limit).await {
                return Err(VmError::Allocation {
                    reason: format!("the warm pool did not fill within {fill_limit:?}"),
                    source: None,
                });
            }
            let started = Instant::now();
            let vm: Box<dyn Vm> = pool.allocate(spec).await?.vm;
            out.push(started.elapsed());
            vm.release().await?;
        }
        Ok(Samples(out))
    }
    .await;
    let stats = pool.stats();
    pool.shutdown().await?;
    Ok((measured?, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockProvider;

    #[test]
    fn nearest_rank_picks_real_samples() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5.0));
        assert_eq!(nearest_rank(&ten, 90), Some(9.0));
        assert_eq!(nearest_rank(&ten, 91), Some(10.0));
        assert_eq!(nearest_rank(&ten, 100), Some(10.0));
        assert_eq!(nearest_rank(&ten, 1), Some(1.0));
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(nearest_rank(&five, 50), Some(3.0));
        // ceil(0.9 * 5) = 5: the p90 of five samples is the largest.
        assert_eq!(nearest_rank(&five, 90), Some(5.0));
        assert_eq!(nearest_rank(&[7.0], 90), Some(7.0));
        assert_eq!(nearest_rank::<f64>(&[], 50), None);
        assert_eq!(nearest_rank(&five, 0), None);
        assert_eq!(nearest_rank(&five, 101), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Samples((1..=20).map(Duration::from_millis).collect());
        assert_eq!(s.median(), Duration::from_millis(10));
        assert_eq!(s.p90(), Duration::from_millis(18));
        assert_eq!(s.max(), Duration::from_millis(20));
        assert_eq!(s.min(), Duration::from_millis(1));
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_allocate_measures_warm_hand_outs() -> Result<(), VmError> {
        let mock = MockProvider::default();
        let (samples, stats) = pool_allocate(
            Arc::new(mock.clone()),
            &VmSpec::default(),
            2,
            20,
            Duration::from_secs(5),
        )
        .await?;
        assert_eq!(samples.len(), 20);
        assert_eq!((stats.handed_out, stats.misses), (20, 0));
        assert!(mock.live().is_empty());
        Ok(())
    }
}
