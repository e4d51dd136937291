//! Outcome counters of the write-ack manager.
//!
//! Resolving an ack bumps a relaxed atomic in its shard's table (no call into
//! the host's sink on the hot path); the sweeper, `flush_metrics` and
//! shutdown sum the tables and report the growth since the last flush as
//! `hangar_write_acks_total{requested, achieved, outcome}` counters, plus the
//! gauge `hangar_write_acks_tracked` (entries held).

use std::sync::atomic::{AtomicU64, Ordering};

use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::types::WriteConcern;
use parking_lot::Mutex;

/// How an ack ended, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    /// The requested level was reached in time.
    Success = 0,
    /// The deadline passed first.
    Timeout = 1,
    /// `fail` was called.
    Failed = 2,
    /// The manager shut down first.
    Shutdown = 3,
}

impl Label {
    const ALL: [Self; 4] = [Self::Success, Self::Timeout, Self::Failed, Self::Shutdown];

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
            Self::Shutdown => "shutdown",
        }
    }
}

const LEVELS: usize = WriteConcern::ALL.len();
const CELLS: usize = LEVELS * LEVELS * Label::ALL.len();

fn cell(requested: WriteConcern, achieved: WriteConcern, label: Label) -> usize {
    ((requested as usize) * LEVELS + achieved as usize) * Label::ALL.len() + label as usize
}

/// One shard's counts by (requested, achieved, outcome).
#[derive(Debug)]
pub(crate) struct OutcomeCounters([AtomicU64; CELLS]);

impl OutcomeCounters {
    pub(crate) fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Counts one resolved ack.
    pub(crate) fn count(&self, requested: WriteConcern, achieved: WriteConcern, label: Label) {
        self.0[cell(requested, achieved, label)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Reports counter growth to the host's sink.
pub(crate) struct Reporter {
    sink: std::sync::Arc<dyn MetricsSink>,
    reported: Mutex<[u64; CELLS]>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").finish_non_exhaustive()
    }
}

impl Reporter {
    pub(crate) fn new(sink: std::sync::Arc<dyn MetricsSink>) -> Self {
        Self {
            sink,
            reported: Mutex::new([0; CELLS]),
        }
    }

    /// Sums `tables` and reports every cell that grew since the last call,
    /// then the number of tracked entries.
    pub(crate) fn flush<'a>(
        &self,
        tables: impl Iterator<Item = &'a OutcomeCounters>,
        tracked: usize,
    ) {
        let mut totals = [0u64; CELLS];
        for t in tables {
            for (sum, c) in totals.iter_mut().zip(t.0.iter()) {
                *sum += c.load(Ordering::Relaxed);
            }
        }
        let mut reported = self.reported.lock();
        for requested in WriteConcern::ALL {
            for achieved in WriteConcern::ALL {
                for label in Label::ALL {
                    let i = cell(requested, achieved, label);
                    let delta = totals[i].saturating_sub(reported[i]);
                    if delta > 0 {
                        self.sink.counter(
                            "hangar_write_acks_total",
                            &[
                                ("requested", requested.as_str()),
                                ("achieved", achieved.as_str()),
                                ("outcome", label.as_str()),
                            ],
                            delta as f64,
                        );
                        reported[i] = totals[i];
                    }
                }
            }
        }
        drop(reported);
        self.sink
            .gauge("hangar_write_acks_tracked", &[], tracked as f64);
    }
}
