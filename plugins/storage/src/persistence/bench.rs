//! The driver of the PERSISTED-write benchmarks (feature `bench`), so that
//! every backend is measured by the same loop: this crate's `persistence`
//! bench (redb) and `hangar-storage-postgres`'s `persisted` bench
//! (PostgreSQL beside redb) both call it.
//!
//! [`persisted_writers`] runs concurrent writers through a
//! [`GroupCommitter`] over a backend, each writing distinct keys (nothing is
//! coalesced away) and waiting for every write to be durable, and reports
//! committed records/s and the enqueue-to-durable latency of each write.
//! [`write_records`] fills one map with large commits, for load timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    GroupCommitConfig, GroupCommitter, PersistenceBackend, StoreOp, StoredEntry, WriteBatch,
};

/// The record a benchmark writes for sequence number `i`.
pub type RecordFn = Arc<dyn Fn(u64) -> StoredEntry + Send + Sync>;

/// What one [`persisted_writers`] run measured.
#[derive(Clone, Debug)]
pub struct WriterFigures {
    /// Writes acknowledged durable.
    pub records: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Enqueue-to-durable latency percentiles of one write.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest write.
    pub max: Duration,
    /// Group commits made.
    pub commits: u64,
}

impl WriterFigures {
    /// Durable records per second.
    #[must_use]
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// Records per group commit (the batching the committer achieved).
    #[must_use]
    pub fn records_per_commit(&self) -> f64 {
        self.records as f64 / self.commits.max(1) as f64
    }
}

/// `sorted[p]` (nearest rank); zero for no samples.
#[must_use]
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `d` in milliseconds with two decimals (`"4.19 ms"`).
#[must_use]
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `writers` tasks write one record per request to map `bench` (keys
/// `wNN-NNNNNNNNN`, records from `record`) through a group committer with
/// the default settings over `backend`, each waiting for its write to be
/// durable before the next, for `run_for`; then the committer shuts down
/// (closing the backend).
///
/// # Panics
/// When a write or the shutdown fails: a benchmark has no use for a
/// figure over failed writes.
pub async fn persisted_writers(
    backend: Arc<dyn PersistenceBackend>,
    writers: usize,
    run_for: Duration,
    record: RecordFn,
) -> WriterFigures {
    let gc = GroupCommitter::start(backend, GroupCommitConfig::default())
        .await
        .expect("the group committer starts");
    let start = Instant::now();
    let deadline = start + run_for;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (gc, record) = (gc.clone(), record.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    gc.enqueue(WriteBatch::new().put(
                        "bench",
                        format!("w{w:02}-{i:09}"),
                        record(i),
                    ))
                    .expect("the write is queued")
                    .await
                    .expect("the write is durable");
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("a writer task ends"));
    }
    let elapsed = start.elapsed();
    let commits = gc.stats().groups_committed;
    gc.shutdown().await.expect("the committer shuts down");
    lat.sort();
    WriterFigures {
        records: lat.len(),
        elapsed,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        commits,
    }
}

/// Writes `records` records of `map` (keys `key-NNNNNNNN`, records from
/// `record`) straight to `backend` in commits of `chunk`; returns the time
/// it took.
///
/// # Panics
/// When a commit fails.
pub async fn write_records(
    backend: &dyn PersistenceBackend,
    map: &str,
    records: u64,
    chunk: u64,
    record: &RecordFn,
) -> Duration {
    let t = Instant::now();
    for start in (0..records).step_by(chunk.max(1) as usize) {
        let ops = (start..(start + chunk).min(records))
            .map(|i| StoreOp::Put {
                map: map.into(),
                key: format!("key-{i:08}"),
                entry: record(i),
            })
            .collect::<Vec<_>>();
        backend
            .commit(WriteBatch::from(ops))
            .await
            .expect("the commit succeeds");
    }
    t.elapsed()
}
