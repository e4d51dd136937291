//! The target's side of a transfer: merging chunks and making them durable
//! before answering, paced by this node's client-write commit latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::settings::MigrationConfig;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::storage_types::{OpStatus, Origin, OriginKind};
use hangar_core::KeyedOp;

use super::pacing::{CommitLatency, Pacer};
use super::ChunkReply;

/// Merges the chunks this node receives as a transfer's target. One per
/// node: every transfer to it shares the ingest lock and the slice size.
pub struct Ingest {
    storage: Arc<dyn StorageAccessor>,
    /// `MigrationConfig::commit_budget_factor` (0: chunks committed whole).
    factor: u32,
    /// The largest slice: `MigrationConfig::chunk_records`.
    max_slice: usize,
    /// The node-wide ingest lock and slice size (see `super::pacing`).
    pacer: tokio::sync::Mutex<Pacer>,
    /// This node's recent client-write commit latencies.
    client_commits: CommitLatency,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("factor", &self.factor)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// The target side over `storage`, paced as `config` says.
    #[must_use]
    pub fn new(storage: Arc<dyn StorageAccessor>, config: &MigrationConfig) -> Self {
        Self {
            storage,
            factor: config.commit_budget_factor,
            max_slice: usize::try_from(config.chunk_records.max(1)).unwrap_or(usize::MAX),
            pacer: tokio::sync::Mutex::new(Pacer::default()),
            client_commits: CommitLatency::default(),
        }
    }

    /// Records that a client write's commit on this node (the durable
    /// barrier of a PERSISTED replication it served) took `took`: the
    /// latency chunk slices are paced against.
    pub fn client_commit(&self, took: Duration) {
        self.client_commits.record(took);
    }

    /// Merges a chunk's `changes` (sent by node `from`) and answers once
    /// they, and everything applied before, are durable. Every chunk is
    /// answered once durable, not only the last: the source sends its next
    /// chunk after this answer, so a transfer never has more than one
    /// chunk's records waiting for this node's group commit. With a
    /// `commit_budget_factor`, the chunk is committed in slices paced by
    /// this node's client-write commit latency (see `super::pacing`).
    ///
    /// # Errors
    /// When storage fails to apply or persist the chunk.
    pub async fn receive(
        &self,
        from: &str,
        partition: u32,
        changes: Vec<KeyedOp>,
    ) -> Result<ChunkReply, String> {
        let n = changes.len();
        let started = Instant::now();
        if self.factor == 0 {
            self.apply(from, partition, changes).await?;
            let applied = started.elapsed();
            self.barrier(partition).await?;
            tracing::debug!(
                partition,
                records = n,
                apply_us = micros(applied),
                commit_us = micros(started.elapsed() - applied),
                "chunk ingested whole"
            );
        } else {
            let mut pacer = self.pacer.lock().await;
            let waited = started.elapsed();
            let mut rest = changes;
            let mut slices = 0u32;
            loop {
                let take = pacer.next(rest.len());
                let tail = rest.split_off(take);
                self.apply(from, partition, rest).await?;
                let t = Instant::now();
                self.barrier(partition).await?;
                let took = t.elapsed();
                let baseline = self.client_commits.baseline();
                tracing::debug!(
                    partition,
                    slice = take,
                    commit_us = micros(took),
                    baseline_us = baseline.map_or(0, micros),
                    "chunk slice committed"
                );
                pacer.adapt(took, baseline, self.factor, self.max_slice);
                slices += 1;
                rest = tail;
                if rest.is_empty() {
                    break;
                }
            }
            tracing::debug!(
                partition,
                records = n,
                slices,
                lock_wait_us = micros(waited),
                total_us = micros(started.elapsed()),
                next_slice = pacer.slice(),
                "chunk ingested in slices"
            );
        }
        Ok(ChunkReply {
            applied: u32::try_from(n).unwrap_or(u32::MAX),
            durable: true,
        })
    }

    /// Merges `changes` (no durability).
    async fn apply(&self, from: &str, partition: u32, changes: Vec<KeyedOp>) -> Result<(), String> {
        if changes.is_empty() {
            return Ok(());
        }
        let origin = Origin {
            kind: OriginKind::Repair,
            connection: 0,
            node: from.into(),
        };
        let statuses = self
            .storage
            .apply_replicated(changes.into(), origin)
            .await
            .map_err(|e| format!("partition {partition}: applying a chunk: {e}"))?;
        let rejected = statuses
            .iter()
            .filter(|s| **s == OpStatus::Rejected)
            .count();
        if rejected > 0 {
            // Storage logged why; the clock check refuses the same records
            // on every attempt, so the transfer goes on without them rather
            // than retry forever.
            tracing::warn!(partition, from = %from, rejected,
                "records of a transfer were refused by storage");
        }
        Ok(())
    }

    /// Waits until everything applied so far is durable.
    async fn barrier(&self, partition: u32) -> Result<(), String> {
        self.storage
            .durable_barrier()
            .await
            .map_err(|e| format!("partition {partition}: making it durable: {e}"))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
