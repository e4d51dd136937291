//! Partition migration: moving a partition's records to a new holder before
//! the table counts it (see `partition_table::plan` for when that happens).
//!
//! Steps of one transfer of partition `p` to `target`:
//! 1. the Raft leader commits a table listing `target` as a pending holder
//!    of `p`; from the moment the owner installs it, the owner replicates
//!    every write to `p` to `target` too (not counted toward QUORUM or
//!    STRONG acks; see `DefaultCluster::replicate`);
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
//!    chunk record), and makes everything durable before it answers the
//!    last chunk;
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use bytes::Bytes;
use hangar_core::config::MigrationConfig;
use hangar_core::module::accessor::{ScanItem, ScanRequest, StorageAccessor};
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::module::storage_types::{OpStatus, Origin, OriginKind, RecordState};
use hangar_core::{partition_of, KeyedOp, MapKind, MapOp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::membership::{Membership, PeerHealth};
use crate::partition_table::{PartitionTable, Table, Transfer};
use crate::transport::{Channel, PeerInfo, Transport};
use crate::wire;

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
    /// [`ChunkReply`]; the answer to the `last` chunk comes once everything
    /// received is durable.
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
    /// True when everything received so far is durable (asked by `last`).
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

/// Paces a byte stream to a rate: each `take` waits for its slot, so the
/// bytes sent by all transfers of a node together stay at the rate.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next: Mutex<Instant>,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (0: unthrottled).
    #[must_use]
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let start = {
            let mut next = self.next.lock();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// The changes that recreate `item` on a node that lacks it.
#[must_use]
pub fn item_changes(item: ScanItem) -> Vec<KeyedOp> {
    let ScanItem { map, record, .. } = item;
    match record.state {
        RecordState::Missing => Vec::new(),
        RecordState::Lww(r) => vec![KeyedOp {
            map,
            key: record.key,
            op: MapOp::Lww(r),
        }],
        RecordState::Or(rs) => rs
            .into_iter()
            .map(|r| KeyedOp {
                map: map.clone(),
                key: record.key.clone(),
                op: MapOp::OrAdd(r),
            })
            .collect(),
    }
}

/// A key of `partition` (the smallest `~migration-N` that hashes there),
/// for the map-wide OR removes a transfer ships.
#[must_use]
pub fn key_in(partition: u32) -> String {
    (0u64..)
        .map(|i| format!("~migration-{i}"))
        .find(|k| partition_of(k) == partition)
        .expect("every partition has keys")
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
        #[allow(clippy::cast_precision_loss)]
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

    /// Waits (at most 10 s) until this node has installed table `version`.
    async fn installed(&self, version: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.table.version() < version {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} has table v{} installed; the transfer needs v{version}",
                    self.node_id,
                    self.table.version()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Serves a `Migration` request.
    ///
    /// # Errors
    /// What went wrong, for the requester.
    pub async fn on_request(&self, from: &PeerInfo, body: Bytes) -> Result<Bytes, String> {
        match wire::decode(&body, "migration message")? {
            MigrationMessage::Start {
                partition,
                target,
                version,
            } => {
                self.streaming.fetch_add(1, Ordering::Relaxed);
                let r = self.stream(partition, &target, version).await;
                self.streaming.fetch_sub(1, Ordering::Relaxed);
                r.map(|rep| wire::encode(&rep))
            }
            MigrationMessage::Chunk {
                partition,
                version,
                changes,
                last,
            } => {
                self.installed(version).await?;
                let n = changes.len();
                if !changes.is_empty() {
                    let origin = Origin {
                        kind: OriginKind::Repair,
                        connection: 0,
                        node: from.node_id.as_str().into(),
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
                        // Storage logged why; the clock check refuses the
                        // same records on every attempt, so the transfer
                        // goes on without them rather than retry forever.
                        tracing::warn!(partition, from = %from.node_id, rejected,
                            "records of a transfer were refused by storage");
                    }
                }
                if last {
                    self.storage
                        .durable_barrier()
                        .await
                        .map_err(|e| format!("partition {partition}: making it durable: {e}"))?;
                }
                Ok(wire::encode(&ChunkReply {
                    applied: u32::try_from(n).unwrap_or(u32::MAX),
                    durable: last,
                }))
            }
        }
    }

    /// Source: sends one chunk, paced by the throttle, and counts it.
    #[allow(clippy::too_many_arguments)]
    async fn send_chunk(
        &self,
        addr: SocketAddr,
        target: &str,
        partition: u32,
        version: u64,
        changes: Vec<KeyedOp>,
        last: bool,
        rep: &mut TransferReport,
    ) -> Result<(), String> {
        let n = changes.len() as u64;
        let body = wire::encode(&MigrationMessage::Chunk {
            partition,
            version,
            changes,
            last,
        });
        let size = body.len() as u64;
        self.throttle.take(size).await;
        let timeout = Duration::from_millis(self.config.transfer_timeout_ms.max(1));
        let reply = self
            .transport
            .request(addr, Channel::Migration, body, timeout)
            .await
            .map_err(|e| format!("sending a chunk of partition {partition} to {target}: {e}"))?;
        let reply: ChunkReply = wire::decode(&reply, "chunk reply")?;
        if last && !reply.durable {
            return Err(format!(
                "{target} did not make partition {partition} durable"
            ));
        }
        rep.records += n;
        rep.bytes += size;
        #[allow(clippy::cast_precision_loss)]
        {
            self.metrics
                .counter("hangar_migration_records_sent_total", &[], n as f64);
            self.metrics
                .counter("hangar_migration_bytes_sent_total", &[], size as f64);
        }
        Ok(())
    }

    /// Source: streams `partition` to `target` once table `version` is
    /// installed here; see the module docs.
    async fn stream(
        &self,
        partition: u32,
        target: &str,
        version: u64,
    ) -> Result<TransferReport, String> {
        self.installed(version).await?;
        let t = self.table.current();
        let p = partition as usize;
        if t.owners.get(p).is_none_or(|o| *o != self.node_id) {
            return Err(format!(
                "{} does not own partition {partition} in table v{}",
                self.node_id, t.version
            ));
        }
        if !t.pending_of(p).iter().any(|n| n == target)
            && !t
                .backups
                .get(p)
                .is_some_and(|b| b.iter().any(|n| n == target))
        {
            return Err(format!(
                "{target} is not a pending holder of partition {partition} in table v{}",
                t.version
            ));
        }
        let addr = self.addr_of(target)?;
        let started = Instant::now();
        let mut rep = TransferReport::default();
        let limit = self.config.chunk_records.max(1);
        let mut after = None;
        loop {
            let page = self
                .storage
                .scan_partition(ScanRequest {
                    partition,
                    after: after.clone().into(),
                    limit,
                })
                .await
                .map_err(|e| format!("reading partition {partition}: {e}"))?;
            let changes: Vec<KeyedOp> = page.items.into_iter().flat_map(item_changes).collect();
            self.send_chunk(addr, target, partition, version, changes, false, &mut rep)
                .await?;
            match page.next {
                ROption::RSome(c) => after = Some(c),
                ROption::RNone => break,
            }
        }
        let maps = self
            .storage
            .list_maps()
            .await
            .map_err(|e| format!("listing maps for partition {partition}: {e}"))?;
        let key = key_in(partition);
        for m in maps.iter().filter(|m| m.kind == MapKind::Or) {
            let tags = self
                .storage
                .or_tombstones(m.name.clone())
                .await
                .map_err(|e| format!("reading the tombstones of map {:?}: {e}", m.name))?;
            for chunk in tags.chunks(limit as usize) {
                let changes = chunk
                    .iter()
                    .map(|t| KeyedOp {
                        map: m.name.clone(),
                        key: key.as_str().into(),
                        op: MapOp::OrRemove(t.clone()),
                    })
                    .collect();
                self.send_chunk(addr, target, partition, version, changes, false, &mut rep)
                    .await?;
            }
        }
        self.send_chunk(addr, target, partition, version, Vec::new(), true, &mut rep)
            .await?;
        rep.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            partition,
            from = %self.node_id,
            to = %target,
            records = rep.records,
            bytes = rep.bytes,
            duration_ms = rep.millis,
            "partition streamed"
        );
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RVec;
    use hangar_core::module::storage_types::KeyRecord;
    use hangar_core::{LwwRecord, OrRecord, Timestamp, PARTITION_COUNT};

    #[tokio::test]
    async fn t10_the_throttle_paces_bytes_to_its_rate() {
        let t = Throttle::new(10_000);
        let started = Instant::now();
        for _ in 0..4 {
            t.take(1_000).await;
        }
        // The first chunk goes at once, each next one 100 ms later.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(290), "took {took:?}");
        let free = Throttle::new(0);
        let started = Instant::now();
        free.take(u64::MAX).await;
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn t11_every_partition_has_a_key_for_its_tombstones() {
        for p in 0..PARTITION_COUNT {
            assert_eq!(partition_of(&key_in(p)), p);
        }
    }

    #[test]
    fn t12_scanned_records_become_the_changes_that_recreate_them() {
        let ts = Timestamp::new(5, 0, "n1");
        let lww = ScanItem {
            map: "m".into(),
            kind: MapKind::Lww,
            record: KeyRecord {
                key: "k".into(),
                state: RecordState::Lww(LwwRecord {
                    value: abi_stable::std_types::ROption::RNone,
                    timestamp: ts.clone(),
                    ttl_ms: abi_stable::std_types::ROption::RNone,
                }),
            },
        };
        let ch = item_changes(lww);
        assert_eq!(ch.len(), 1, "a tombstone travels too");
        assert!(matches!(ch[0].op, MapOp::Lww(_)));
        let or = |tag: &str| OrRecord {
            value: hangar_core::RawValue::default(),
            timestamp: ts.clone(),
            tag: tag.into(),
            ttl_ms: abi_stable::std_types::ROption::RNone,
        };
        let item = ScanItem {
            map: "o".into(),
            kind: MapKind::Or,
            record: KeyRecord {
                key: "k".into(),
                state: RecordState::Or(RVec::from(vec![or("a"), or("b")])),
            },
        };
        let ch = item_changes(item);
        assert_eq!(ch.len(), 2);
        assert!(ch
            .iter()
            .all(|c| matches!(c.op, MapOp::OrAdd(_)) && c.key == "k"));
        let missing = ScanItem {
            map: "m".into(),
            kind: MapKind::Lww,
            record: KeyRecord {
                key: "k".into(),
                state: RecordState::Missing,
            },
        };
        assert!(item_changes(missing).is_empty());
    }
}
