//! The storage module's metrics, reported through the host's
//! [`MetricsSink`] (exported at `/metrics`).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `hangar_map_size_items` | gauge | `map` | keys held (tombstones included), after each write batch and each load |
//! | `hangar_ops_applied_total` | counter | `kind` (lww/or), `status` (applied/unchanged/rejected) | ops through the write path |
//! | `hangar_map_load_seconds` | histogram | `map` | time to load a map (backend read + merge) |
//! | `hangar_map_loaded_records_total` | counter | `map` | entries read by loads |
//! | `hangar_map_load_failures_total` | counter | `map` | loads that failed |
//! | `hangar_ownership_records_total` | counter | `map`, `change` (loaded/released) | records loaded into or dropped from memory by partition table changes |
//! | `hangar_commit_seconds` | histogram | | one group commit (the backend's `commit` call) |
//! | `hangar_commit_ops_total` | counter | | ops committed (after coalescing; event-journal entries and prunes count) |
//! | `hangar_commit_failures_total` | counter | | failed group commits (each retry counts) |
//! | `hangar_storage_failed` | gauge | | 1 while the store is failed (damage met at run time: for good; a failed commit: until a commit succeeds again), else 0; the host's `/health` reports it |
//! | `hangar_tasklets_active`, `hangar_tasklets_queued` | gauge | | tasklets running / waiting |
//! | `hangar_tasklet_slices_total`, `hangar_tasklets_completed_total`, `hangar_tasklet_overruns_total` | counter | | slices run, tasklets finished, slices over twice the budget |
//! | `hangar_tasklet_max_slice_seconds` | gauge | | longest slice so far |
//! | `hangar_event_pool_available`, `hangar_event_pool_in_use` | gauge | | idle / lent event payloads |
//! | `hangar_event_pool_reuse_ratio` | gauge | | reused / (created + reused) |
//! | `hangar_event_pool_created_total`, `hangar_event_pool_reused_total` | counter | | payloads made / reused |
//! | `hangar_write_acks_total`, `hangar_write_acks_tracked` | | | reported by the write-ack manager (levels reached) |
//!
//! Hot-path calls are a few per write batch (one per map touched), never
//! one per op. Tasklet and pool figures are sampled by a background task
//! every [`REPORT_INTERVAL`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::MapKind;
use parking_lot::Mutex;

use super::durability::FailureSignal;
use super::journal::JournalHub;
use crate::event_pool::PoolStats;
use crate::persistence::{CommitObserver, JournalRecord, PersistenceError};
use crate::tasklet::TaskletStats;

/// The gauge that says the store failed (1) or not (0).
pub const STORE_FAILED: &str = "hangar_storage_failed";

/// How often tasklet and pool figures are sampled.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Counts of one write batch on one map.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OpCounts {
    pub(crate) applied: u64,
    pub(crate) unchanged: u64,
    pub(crate) rejected: u64,
}

#[derive(Default)]
struct Last {
    slices: u64,
    completed: u64,
    overruns: u64,
    created: u64,
    reused: u64,
}

/// The module's metrics front.
pub(crate) struct Metrics {
    sink: Arc<dyn MetricsSink>,
    last: Mutex<Last>,
}

fn kind_label(kind: Option<MapKind>) -> &'static str {
    match kind {
        Some(MapKind::Or) => "or",
        _ => "lww",
    }
}

impl Metrics {
    pub(crate) fn new(sink: Arc<dyn MetricsSink>) -> Self {
        Self {
            sink,
            last: Mutex::new(Last::default()),
        }
    }

    /// The outcome counts of one batch on one map.
    pub(crate) fn ops(&self, kind: Option<MapKind>, c: OpCounts) {
        let k = kind_label(kind);
        for (status, n) in [
            ("applied", c.applied),
            ("unchanged", c.unchanged),
            ("rejected", c.rejected),
        ] {
            if n > 0 {
                self.sink.counter(
                    "hangar_ops_applied_total",
                    &[("kind", k), ("status", status)],
                    n as f64,
                );
            }
        }
    }

    /// A map's size.
    pub(crate) fn map_size(&self, map: &str, entries: usize) {
        self.sink
            .gauge("hangar_map_size_items", &[("map", map)], entries as f64);
    }

    /// A finished load.
    pub(crate) fn loaded(&self, map: &str, seconds: f64, entries: usize) {
        self.sink
            .observe("hangar_map_load_seconds", &[("map", map)], seconds);
        self.sink.counter(
            "hangar_map_loaded_records_total",
            &[("map", map)],
            entries as f64,
        );
    }

    /// Records loaded into or released from a map's memory by a change of
    /// the partition table; `change` is `"loaded"` or `"released"`.
    pub(crate) fn ownership_records(&self, map: &str, change: &str, records: usize) {
        if records > 0 {
            self.sink.counter(
                "hangar_ownership_records_total",
                &[("map", map), ("change", change)],
                records as f64,
            );
        }
    }

    /// Whether the store has failed (see the table above).
    pub(crate) fn store_failed(&self, failed: bool) {
        self.sink
            .gauge(STORE_FAILED, &[], if failed { 1.0 } else { 0.0 });
    }

    /// A failed load.
    pub(crate) fn load_failed(&self, map: &str) {
        self.sink
            .counter("hangar_map_load_failures_total", &[("map", map)], 1.0);
    }

    /// Samples the tasklet scheduler and the event pool.
    pub(crate) fn sample(&self, t: &TaskletStats, p: &PoolStats) {
        let s = &*self.sink;
        s.gauge("hangar_tasklets_active", &[], t.active as f64);
        s.gauge("hangar_tasklets_queued", &[], t.queued as f64);
        s.gauge(
            "hangar_tasklet_max_slice_seconds",
            &[],
            t.max_slice.as_secs_f64(),
        );
        s.gauge("hangar_event_pool_available", &[], p.available as f64);
        s.gauge("hangar_event_pool_in_use", &[], p.in_use as f64);
        s.gauge("hangar_event_pool_reuse_ratio", &[], p.reuse_ratio);
        let mut last = self.last.lock();
        let delta = |name: &str, now: u64, before: &mut u64| {
            if now > *before {
                s.counter(name, &[], (now - *before) as f64);
                *before = now;
            }
        };
        delta(
            "hangar_tasklet_slices_total",
            t.iterations,
            &mut last.slices,
        );
        delta(
            "hangar_tasklets_completed_total",
            t.completed,
            &mut last.completed,
        );
        delta(
            "hangar_tasklet_overruns_total",
            t.overruns,
            &mut last.overruns,
        );
        delta(
            "hangar_event_pool_created_total",
            p.created,
            &mut last.created,
        );
        delta("hangar_event_pool_reused_total", p.reused, &mut last.reused);
    }
}

/// The committer's observer: commit latency and failures to metrics, and a
/// failure to the PERSISTED tracker.
pub(crate) struct CommitHooks {
    sink: Arc<dyn MetricsSink>,
    failure: Arc<FailureSignal>,
    journal: Arc<JournalHub>,
    /// A commit failed and none succeeded since.
    failing: AtomicBool,
}

impl CommitHooks {
    pub(crate) fn new(
        sink: Arc<dyn MetricsSink>,
        failure: Arc<FailureSignal>,
        journal: Arc<JournalHub>,
    ) -> Self {
        Self {
            sink,
            failure,
            journal,
            failing: AtomicBool::new(false),
        }
    }
}

impl CommitObserver for CommitHooks {
    fn committed(&self, _group: u64, ops: usize, _requests: usize, elapsed: Duration) {
        self.sink
            .observe("hangar_commit_seconds", &[], elapsed.as_secs_f64());
        self.sink
            .counter("hangar_commit_ops_total", &[], ops as f64);
        if self.failing.swap(false, Ordering::AcqRel) {
            // The failed ops are committed: the store is whole again.
            self.sink.gauge(STORE_FAILED, &[], 0.0);
        }
    }

    fn failed(&self, group: u64, last_seq: u64, cause: &PersistenceError, elapsed: Duration) {
        self.sink
            .observe("hangar_commit_seconds", &[], elapsed.as_secs_f64());
        self.sink.counter("hangar_commit_failures_total", &[], 1.0);
        self.failing.store(true, Ordering::Release);
        self.sink.gauge(STORE_FAILED, &[], 1.0);
        self.failure
            .raise(last_seq, format!("group commit #{group} failed: {cause}"));
    }

    fn journaled(&self, records: &[Arc<JournalRecord>]) {
        self.journal.publish(records);
    }
}
