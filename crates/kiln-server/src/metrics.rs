//! Prometheus metrics (`GET /metrics`, text format):
//!
//! - `kiln_webhooks_total{result}`: deliveries by what the intake answered
//!   (`accepted`, `duplicate`, `ping`, `ignored`, `bad_signature`,
//!   `too_large`, `malformed`, `forbidden`, `unavailable`, `error`).
//! - `kiln_runs_total{conclusion}`: finished runs.
//! - `kiln_queue_depth`: runs waiting to start; `kiln_deliveries_pending`:
//!   deliveries waiting for the dispatcher.
//! - `kiln_active_sessions`, `kiln_live_vms`: sessions (each holding one VM).
//! - `kiln_vm_allocation_seconds`, `kiln_run_duration_seconds`: histograms.
//!
//! Gauges that mirror other state are refreshed when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConclusionLabel {
    pub conclusion: String,
}

pub struct Metrics {
    registry: Registry,
    webhooks: Family<ResultLabel, Counter>,
    runs: Family<ConclusionLabel, Counter>,
    pub queue_depth: Gauge,
    pub deliveries_pending: Gauge,
    pub active_sessions: Gauge,
    pub live_vms: Gauge,
    pub allocation_seconds: Histogram,
    pub run_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kiln");
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhooks",
            "Webhook deliveries by intake result",
            webhooks.clone(),
        );
        let runs = Family::<ConclusionLabel, Counter>::default();
        registry.register("runs", "Finished workflow runs by conclusion", runs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Workflow runs waiting to start",
            queue_depth.clone(),
        );
        let deliveries_pending = Gauge::default();
        registry.register(
            "deliveries_pending",
            "Webhook deliveries waiting to be dispatched",
            deliveries_pending.clone(),
        );
        let active_sessions = Gauge::default();
        registry.register(
            "active_sessions",
            "Sessions holding a VM",
            active_sessions.clone(),
        );
        let live_vms = Gauge::default();
        registry.register(
            "live_vms",
            "VMs allocated and not released",
            live_vms.clone(),
        );
        let allocation_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            "vm_allocation_seconds",
            "Time to allocate a run's VM",
            allocation_seconds.clone(),
        );
        let run_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 16));
        registry.register(
            "run_duration_seconds",
            "Duration of workflow runs, VM included",
            run_seconds.clone(),
        );
        Metrics {
            registry,
            webhooks,
            runs,
            queue_depth,
            deliveries_pending,
            active_sessions,
            live_vms,
            allocation_seconds,
            run_seconds,
        }
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn run_finished(&self, conclusion: &str, seconds: f64) {
        self.runs
            .get_or_create(&ConclusionLabel {
                conclusion: conclusion.to_owned(),
            })
            .inc();
        self.run_seconds.observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_gauges_and_histograms() {
        let m = Metrics::new();
        m.webhook("accepted");
        m.webhook("accepted");
        m.webhook("bad_signature");
        m.queue_depth.set(3);
        m.allocation_seconds.observe(0.02);
        m.run_finished("success", 1.5);
        let text = m.encode();
        assert!(
            text.contains("kiln_webhooks_total{result=\"accepted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kiln_webhooks_total{result=\"bad_signature\"} 1"),
            "{text}"
        );
        assert!(text.contains("kiln_queue_depth 3"), "{text}");
        assert!(
            text.contains("kiln_vm_allocation_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("kiln_runs_total{conclusion=\"success\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
