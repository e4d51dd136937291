//! The owner's and the target's side of a transfer: streaming a
//! partition's records (and the OR tombstones) as chunks, and merging them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use bytes::Bytes;
use hangar_core::module::accessor::{ScanItem, ScanRequest};
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::RecordState;
use hangar_core::{partition_of, KeyedOp, MapKind, MapOp};

use super::{ChunkReply, MigrationMessage, Migrator, TransferReport};
use crate::transport::{Channel, PeerInfo};
use crate::wire;

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

impl Migrator {
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
                last: _,
            } => {
                self.installed(version).await?;
                let reply = self
                    .ingest
                    .receive(&from.node_id, partition, changes)
                    .await?;
                Ok(wire::encode(&reply))
            }
        }
    }

    /// Source: sends one chunk, paced by the throttle, and counts it.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one independent input; a struct would only be built to be taken apart"
    )]
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
        let t = Instant::now();
        self.throttle.take(size).await;
        let throttled = t.elapsed();
        let timeout = Duration::from_millis(self.config.transfer_timeout_ms.max(1));
        let reply = self
            .transport
            .request(addr, Channel::Migration, body, timeout)
            .await
            .map_err(|e| format!("sending a chunk of partition {partition} to {target}: {e}"))?;
        tracing::debug!(
            partition,
            records = n,
            bytes = size,
            throttle_us = throttled.as_micros() as u64,
            reply_us = (t.elapsed() - throttled).as_micros() as u64,
            "chunk sent"
        );
        let reply: ChunkReply = wire::decode(&reply, "chunk reply")?;
        if last && !reply.durable {
            return Err(format!(
                "{target} did not make partition {partition} durable"
            ));
        }
        rep.records += n;
        rep.bytes += size;
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
            let t = Instant::now();
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
            tracing::debug!(
                partition,
                records = changes.len(),
                scan_us = t.elapsed().as_micros() as u64,
                "page read"
            );
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
