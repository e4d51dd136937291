//! Partition migration: moving a partition's records to a new holder before
//! the table counts it (see `partition_table::plan` for when that happens).
//!
//! Steps of one transfer of partition `p` to `target`:
//! 1. the Raft leader commits a table listing `target` as a pending holder
//!    of `p`; from the moment the owner installs it, the owner replicates
//!    every write to `p` to `target` too (not counted toward QUORUM or
//!    STRONG acks; see `DefaultCluster::replicate`). A waiting write waits
//!    until `target` applied it, but never asks `target` to make it
//!    durable (`Shipment::counted`): the barrier before each chunk's
//!    answer, the last one included, covers it;
//! 2. the leader asks the owner ([`MigrationMessage::Start`]); the owner
//!    waits until it has installed that table (so every write it applies
//!    from then on reaches `target`), then reads `p`'s records of every
//!    map, page by page (`StorageAccessor::scan_partition`, which loads
//!    maps not in memory yet; the owner holds `p`, so its memory has every
//!    record of `p`), and sends them as chunks
//!    ([`MigrationMessage::Chunk`]), one at a time, paced by a byte budget
//!    (`MigrationConfig::max_bytes_per_sec`); then the OR tombstones of
//!    every OR map (`or_tombstones`), as removes keyed to the partition
//!    (a tombstone is map-wide: it removes its tag wherever it is), so a
//!    target with an older copy on disk does not bring removed tags back;
//! 3. `target` merges each chunk with the CRDT rules
//!    (`apply_replicated`: a chunk record never overwrites a newer write
//!    replicated meanwhile, and a replicated write never loses to an older
//!    chunk record), and makes everything durable before it answers each
//!    chunk, so a transfer has at most one chunk waiting for the target's
//!    group commit ([`Ingest`]). It commits each chunk in slices, one at a
//!    time for the whole node, sized so a slice's commit stays within
//!    `MigrationConfig::commit_budget_factor` times this node's client-write
//!    commit latency ([`pacing`]): a client write the target persists
//!    queues behind at most one such slice, whatever the byte rate;
//! 4. the owner answers the leader with what it sent; the leader records
//!    the transfer as done, and its next table makes `target` a backup.
//!
//! A write applied on the owner before step 2 is in the records read; a
//! write applied after it is replicated to `target` (its targets are taken
//! from the table when it is replicated, after it was applied). So no
//! acknowledged write is missing on `target` when the table counts it.
//!
//! If the owner or the target dies, or a chunk fails, the transfer fails:
//! the leader forgets it, and the next table (without the dead node, or
//! with the same pending holder) re-plans it; a new attempt starts from the
//! first page (CRDT merges make the repeat harmless).
//!
//! Metrics: `hangar_migration_partitions_migrating` (leader: transfers
//! running), `hangar_migration_eta_seconds` (leader: transfers left times
//! the mean duration, divided by the parallelism),
//! `hangar_migration_bytes_sent_total` and
//! `hangar_migration_records_sent_total` (source),
//! `hangar_migration_transfers_total{result}` (leader).

mod ingest;
mod leave;
pub mod pacing;
mod source;
#[cfg(test)]
mod tests;
mod throttle;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::settings::MigrationConfig;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::KeyedOp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::membership::{Membership, PeerHealth};
use crate::partition_table::{PartitionTable, Table, Transfer};
use crate::transport::{Channel, Transport};
use crate::wire;

pub use ingest::Ingest;
pub use leave::hand_off;
pub use source::{item_changes, key_in};
pub use throttle::Throttle;

/// Messages on the `Migration` channel (requests).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MigrationMessage {
    /// Leader → owner: stream `partition` to `target`, as table `version`
    /// (or a later one) asks. Answered with a [`TransferReport`].
    Start {
        /// The partition.
        partition: u32,
        /// The pending holder.
        target: String,
        /// The table that lists `target` as pending.
        version: u64,
    },
    /// Owner → target: records of `partition`. Answered with a
    /// [`ChunkReply`] once everything received is durable (the owner sends
    /// the next chunk after the answer: the target's disk paces the stream).
    /// Before this version, only the `last` chunk's answer waited for
    /// durability, which the owner still checks.
    Chunk {
        /// The partition.
        partition: u32,
        /// The table version the transfer runs for.
        version: u64,
        /// The records, as CRDT changes.
        changes: Vec<KeyedOp>,
        /// True on the final chunk.
        last: bool,
    },
}

/// The target's answer to a chunk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkReply {
    /// Changes applied.
    pub applied: u32,
    /// True when everything received so far is durable (every chunk's
    /// answer; the owner requires it of the `last` one).
    pub durable: bool,
}

/// What a transfer moved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TransferReport {
    /// Records (changes) sent.
    pub records: u64,
    /// Bytes of chunk bodies sent.
    pub bytes: u64,
    /// Time taken, in ms.
    pub millis: u64,
}

/// Runs transfers: as leader (which transfers, when they are done) and as
/// owner or target of one.
pub struct Migrator {
    node_id: String,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    table: Arc<PartitionTable>,
    storage: Arc<dyn StorageAccessor>,
    config: MigrationConfig,
    metrics: Arc<dyn MetricsSink>,
    throttle: Throttle,
    /// Leader: transfers known complete, (partition, target).
    done: Mutex<BTreeSet<(u32, String)>>,
    /// Leader: transfers running, with their start.
    running: Mutex<BTreeMap<(u32, String), Instant>>,
    /// Leader: failed transfers and when they may be retried.
    backoff: Mutex<BTreeMap<(u32, String), Instant>>,
    /// Leader: transfers finished and their total duration in seconds.
    finished: Mutex<(u64, f64)>,
    /// Source: transfers streaming from this node.
    streaming: AtomicI64,
    /// Target: merges the chunks this node receives.
    ingest: Ingest,
    /// Leader: the table last driven, to start the next transfer as soon
    /// as one ends rather than at the next table round.
    last: Mutex<Option<Arc<Table>>>,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Migrator {
    /// A migrator for this node.
    #[must_use]
    pub fn new(
        node_id: &str,
        transport: Arc<Transport>,
        membership: Arc<Membership>,
        table: Arc<PartitionTable>,
        storage: Arc<dyn StorageAccessor>,
        config: MigrationConfig,
        metrics: Arc<dyn MetricsSink>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id: node_id.to_string(),
            transport,
            membership,
            table,
            ingest: Ingest::new(storage.clone(), &config),
            storage,
            throttle: Throttle::new(config.max_bytes_per_sec),
            config,
            metrics,
            done: Mutex::new(BTreeSet::new()),
            running: Mutex::new(BTreeMap::new()),
            backoff: Mutex::new(BTreeMap::new()),
            finished: Mutex::new((0, 0.0)),
            streaming: AtomicI64::new(0),
            last: Mutex::new(None),
        })
    }

    /// Records that a client write's commit on this node (the durable
    /// barrier of a PERSISTED replication it served) took `took`: the
    /// latency a transfer's slices are paced against (see [`pacing`]).
    pub fn client_commit(&self, took: Duration) {
        self.ingest.client_commit(took);
    }

    /// Leader: the transfers known complete, for [`Table::plan`].
    #[must_use]
    pub fn done(&self) -> BTreeSet<(u32, String)> {
        self.done.lock().clone()
    }

    /// Forgets what this node knew as leader (it no longer leads): a later
    /// term starts from the committed table alone, so a transfer finished
    /// under an older table is never taken for one of a newer table.
    pub fn reset(&self) {
        self.done.lock().clear();
        self.backoff.lock().clear();
        *self.last.lock() = None;
    }

    /// Leader: starts the transfers `table` asks for that are neither
    /// done, running nor waiting to be retried, up to
    /// `parallel_transfers` at once; forgets what `table` no longer asks
    /// for; publishes the gauges.
    pub fn drive(self: &Arc<Self>, table: &Table) {
        {
            let mut last = self.last.lock();
            if last.as_ref().is_none_or(|t| t.version != table.version) {
                *last = Some(Arc::new(table.clone()));
            }
        }
        let wanted: Vec<Transfer> = table.transfers();
        let keys: BTreeSet<(u32, String)> = wanted
            .iter()
            .map(|t| (t.partition, t.target.clone()))
            .collect();
        self.done.lock().retain(|k| keys.contains(k));
        self.backoff
            .lock()
            .retain(|k, until| keys.contains(k) && *until > Instant::now());
        let parallel = self.config.parallel_transfers.max(1);
        let mut starts = Vec::new();
        {
            let done = self.done.lock();
            let backoff = self.backoff.lock();
            let mut running = self.running.lock();
            for t in wanted {
                if running.len() >= parallel {
                    break;
                }
                let k = (t.partition, t.target.clone());
                if done.contains(&k) || running.contains_key(&k) || backoff.contains_key(&k) {
                    continue;
                }
                running.insert(k, Instant::now());
                starts.push(t);
            }
        }
        for t in starts {
            tokio::spawn(self.clone().run(t, table.version));
        }
        let left = keys.len().saturating_sub(self.done.lock().len());
        let running = self.running.lock().len();
        let (n, total) = *self.finished.lock();
        {
            self.metrics
                .gauge("hangar_migration_partitions_migrating", &[], running as f64);
            let mean = if n == 0 { 0.0 } else { total / n as f64 };
            self.metrics.gauge(
                "hangar_migration_eta_seconds",
                &[],
                left as f64 * mean / parallel as f64,
            );
        }
    }

    /// Leader: one transfer, asked of its source.
    async fn run(self: Arc<Self>, t: Transfer, version: u64) {
        let k = (t.partition, t.target.clone());
        let started = Instant::now();
        let r = self.ask_source(&t, version).await;
        self.running.lock().remove(&k);
        match r {
            Ok(rep) => {
                tracing::info!(
                    partition = t.partition,
                    from = %t.source,
                    to = %t.target,
                    records = rep.records,
                    bytes = rep.bytes,
                    duration_ms = rep.millis,
                    "partition transferred"
                );
                let mut f = self.finished.lock();
                f.0 += 1;
                f.1 += started.elapsed().as_secs_f64();
                drop(f);
                // Only for a table that still asks for it.
                let last = self.last.lock().clone();
                if last.is_some_and(|t| t.pending_of(k.0 as usize).contains(&k.1)) {
                    self.done.lock().insert(k);
                }
                self.metrics
                    .counter("hangar_migration_transfers_total", &[("result", "ok")], 1.0);
                let last = self.last.lock().clone();
                if let Some(t) = last {
                    self.drive(&t);
                }
            }
            Err(e) => {
                tracing::warn!(partition = t.partition, from = %t.source, to = %t.target,
                    error = %e, "partition transfer failed; retried from the next table");
                self.backoff
                    .lock()
                    .insert(k, Instant::now() + Duration::from_secs(1));
                self.metrics.counter(
                    "hangar_migration_transfers_total",
                    &[("result", "failed")],
                    1.0,
                );
            }
        }
    }

    fn addr_of(&self, node: &str) -> Result<SocketAddr, String> {
        self.membership.with_peers(|peers| match peers.get(node) {
            Some(p) if p.health != PeerHealth::Failed => Ok(p.addr),
            Some(_) => Err(format!("{node} is confirmed failed")),
            None => Err(format!("{node} is not a known member")),
        })
    }

    async fn ask_source(&self, t: &Transfer, version: u64) -> Result<TransferReport, String> {
        let addr = self.addr_of(&t.source)?;
        let body = wire::encode(&MigrationMessage::Start {
            partition: t.partition,
            target: t.target.clone(),
            version,
        });
        let reply = self
            .transport
            .request(
                addr,
                Channel::Migration,
                body,
                Duration::from_millis(self.config.transfer_timeout_ms.max(1)),
            )
            .await
            .map_err(|e| e.to_string())?;
        wire::decode(&reply, "transfer report")
    }
}
