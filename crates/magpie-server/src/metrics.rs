//! Counters exposed at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters. Each happening increments one counter where it is logged.
#[derive(Default)]
pub struct Metrics {
    /// Events accepted by ingest.
    pub events_accepted: AtomicU64,
    /// Events refused by ingest.
    pub events_rejected: AtomicU64,
    /// Events routed.
    pub events_routed: AtomicU64,
    /// Jobs created by the router.
    pub jobs_created: AtomicU64,
    /// Flow runs that completed.
    pub runs_completed: AtomicU64,
    /// Flow runs that failed (dead-lettered).
    pub runs_failed: AtomicU64,
    /// Flow runs suspended for a retry.
    pub runs_retried: AtomicU64,
    /// Deliveries accepted by a platform.
    pub deliveries_ok: AtomicU64,
    /// Delivery attempts that failed.
    pub deliveries_failed: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        };
        counter("magpie_events_accepted_total", "Events accepted by ingest.", &self.events_accepted);
        counter("magpie_events_rejected_total", "Events refused by ingest.", &self.events_rejected);
        counter("magpie_events_routed_total", "Events processed by the router.", &self.events_routed);
        counter("magpie_jobs_created_total", "Flow jobs created by rules.", &self.jobs_created);
        counter("magpie_flow_runs_completed_total", "Flow runs that completed.", &self.runs_completed);
        counter("magpie_flow_runs_failed_total", "Flow runs that ended with an uncaught error.", &self.runs_failed);
        counter("magpie_flow_runs_retried_total", "Flow runs suspended to retry a send.", &self.runs_retried);
        counter("magpie_deliveries_total", "Messages accepted by a robot platform.", &self.deliveries_ok);
        counter("magpie_delivery_failures_total", "Delivery attempts that failed.", &self.deliveries_failed);
        out
    }
}
