//! The target's pacing of what it ingests: chunk records are committed in
//! slices whose commit time stays within a budget set by this node's
//! client-write commit latency, one slice at a time for the whole node.
//!
//! Why: a client write this node persists (as an owner or a backup) waits
//! for the group commit in progress, then for its own. When that commit in
//! progress carries a whole chunk (hundreds of records, hundreds of KB), the
//! client write waits for all of it; the source's byte throttle cannot see
//! that, it only spaces chunks out. So the target:
//! - ingests one slice at a time for the whole node (every transfer to it
//!   shares [`Pacer`]), so never more than one slice's records sit in front
//!   of a client write in the commit queue;
//! - measures each slice's commit (the durable barrier after applying it)
//!   and sizes the next slice by AIMD: halved when the commit took more than
//!   `commit_budget_factor` times the client-write commit latency, grown by
//!   [`GROWTH`] records otherwise (doubled while no client commit was
//!   measured);
//! - takes the client-write commit latency from the durable barriers this
//!   node runs for PERSISTED replication ([`CommitLatency`]): the smallest of
//!   the recent ones, so that the commits a slice delays do not loosen the
//!   budget. With no recent client commit there is nothing to protect and
//!   slices grow up to the chunk.
//!
//! A slice never has fewer than [`MIN_SLICE`] records, so a transfer always
//! progresses (at worst one such slice per commit).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Fewest records in a slice, whatever the commit latency.
pub const MIN_SLICE: usize = 8;
/// Records a slice grows by after a commit within budget.
pub const GROWTH: usize = 16;
/// Client-write commits kept.
const SAMPLES: usize = 64;
/// How long a client-write commit counts toward the baseline.
const WINDOW: Duration = Duration::from_secs(5);

/// Recent client-write commit latencies on this node (the durable barriers
/// of PERSISTED replication it served).
#[derive(Debug, Default)]
pub struct CommitLatency {
    samples: Mutex<VecDeque<(Instant, Duration)>>,
}

impl CommitLatency {
    /// Records one client-write commit that took `took`.
    pub fn record(&self, took: Duration) {
        let mut s = self.samples.lock();
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back((Instant::now(), took));
    }

    /// The smallest client-write commit latency of the last [`WINDOW`], if
    /// any commit was recorded in it.
    #[must_use]
    pub fn baseline(&self) -> Option<Duration> {
        let now = Instant::now();
        self.samples
            .lock()
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= WINDOW)
            .map(|(_, d)| *d)
            .min()
    }
}

/// The node-wide slice size (held under the ingest lock).
#[derive(Debug)]
pub struct Pacer {
    slice: usize,
}

impl Default for Pacer {
    fn default() -> Self {
        Self { slice: MIN_SLICE }
    }
}

impl Pacer {
    /// Records in the next slice, at most `left`.
    #[must_use]
    pub fn next(&self, left: usize) -> usize {
        self.slice.min(left)
    }

    /// Adapts the slice to the commit that took `took`, against the client
    /// commit latency `baseline` (none: no client writes to protect) times
    /// `factor`, within `MIN_SLICE..=max`.
    pub fn adapt(&mut self, took: Duration, baseline: Option<Duration>, factor: u32, max: usize) {
        let max = max.max(MIN_SLICE);
        self.slice = match baseline {
            Some(b) if took > b.saturating_mul(factor) => self.slice / 2,
            Some(_) => self.slice + GROWTH,
            None => self.slice * 2,
        }
        .clamp(MIN_SLICE, max);
    }

    /// The current slice size.
    #[must_use]
    pub fn slice(&self) -> usize {
        self.slice
    }
}
