//! Garbage collection: TTL expiry and tombstone pruning.
//!
//! - **Expiry** (every [`GC_INTERVAL`]): each map keeps a queue of its TTL
//!   records by expiry time (filled by the write path and the load), so a
//!   collection costs O(expired · log n), never a scan of the map. An
//!   expired LWW record becomes the tombstone
//!   `{millis + ttl, 0, <this node>}` (the legacy rule), an expired OR
//!   record's tag is removed. Both go through the normal write path with an
//!   internal origin, so they are persisted, reach live queries (a LEAVE),
//!   the full-text index and the change sink (to replicate them). Reads and
//!   queries already hide expired records before GC runs.
//! - **Pruning** (every [`PRUNE_INTERVAL`]): LWW tombstones older than
//!   [`TOMBSTONE_MAX_AGE_MS`] (30 days, the legacy `DEFAULT_GC_AGE_MS`) are
//!   dropped from memory and from the store. Tombstones are invisible to
//!   reads, so no event is sent; the Merkle trees change, as they did in the
//!   legacy server.
//! - **OR tombstones are never pruned by age.** A tag's timestamp is when
//!   it was added, not removed: a record added 31 days ago and removed now
//!   would lose its tombstone at once, and a client still holding the tag
//!   as live would bring it back by pushing its copy. Only the host prunes
//!   them, by name, once every device confirmed them
//!   (`StorageModule::prune_or_tombstones`, invariant I31).

use std::sync::{Arc, Weak};
use std::time::Duration;

use abi_stable::std_types::ROption;
use hangar_core::module::storage_types::{ApplyBatch, Origin, WriteOp as CoreWriteOp};
use hangar_core::{KeyedOp, LwwRecord, MapOp, ModuleResult, Timestamp, WriteConcern};

use super::core::Core;
use super::map_slot::MapData;
use crate::persistence::{StoreOp, WriteBatch};

/// How often expired records are collected.
pub const GC_INTERVAL: Duration = Duration::from_secs(1);
/// How often old tombstones are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Age after which an LWW tombstone is pruned (30 days).
pub const TOMBSTONE_MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;

/// What one garbage collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Expired records turned into tombstones (LWW) or removed tags (OR).
    pub expired: usize,
    /// LWW tombstones pruned.
    pub pruned: usize,
}

impl Core {
    /// Collects expired records now and, with `prune`, prunes old
    /// tombstones; only loaded maps are visited.
    ///
    /// # Errors
    /// As `apply` (the expiry writes go through it).
    pub(crate) async fn collect_garbage(self: &Arc<Self>, prune: bool) -> ModuleResult<GcReport> {
        let mut report = GcReport::default();
        let now = self.deps.clock.wall_millis();
        let node = self.config.node_id.clone();
        for slot in self.manager.slots() {
            if !slot.is_loaded() {
                continue;
            }
            let ops: Vec<KeyedOp> = {
                let mut st = slot.state.lock();
                let due = st.expiry.take_due(now);
                let mut ops = Vec::new();
                for key in due {
                    match &st.data {
                        MapData::Lww(m) => {
                            // Only if the key still holds an expired value:
                            // a later write may have replaced it.
                            if let Some(r) = m.get_record(&key) {
                                if !r.is_tombstone() && r.is_expired(now) {
                                    let at = r
                                        .timestamp
                                        .millis
                                        .saturating_add(r.ttl_ms.into_option().unwrap_or(0));
                                    ops.push(KeyedOp {
                                        map: (&*slot.name).into(),
                                        key: (&*key).into(),
                                        op: MapOp::Lww(LwwRecord {
                                            value: ROption::RNone,
                                            timestamp: Timestamp::new(at, 0, node.as_str()),
                                            ttl_ms: ROption::RNone,
                                        }),
                                    });
                                }
                            }
                        }
                        MapData::Or(m) => {
                            for r in m.records(&key) {
                                if r.is_expired(now) {
                                    ops.push(KeyedOp {
                                        map: (&*slot.name).into(),
                                        key: (&*key).into(),
                                        op: MapOp::OrRemove(r.tag),
                                    });
                                }
                            }
                        }
                        MapData::Empty => {}
                    }
                }
                ops
            };
            if !ops.is_empty() {
                let batch = ApplyBatch {
                    ops: ops
                        .into_iter()
                        .map(|op| CoreWriteOp {
                            op,
                            concern: WriteConcern::FireAndForget,
                            timeout_ms: ROption::RNone,
                        })
                        .collect(),
                    origin: Origin::internal(&node),
                    consistency: abi_stable::std_types::ROption::RNone,
                };
                let out = self.apply_batch(&batch, false).await?;
                report.expired += out
                    .iter()
                    .filter(|o| o.status == hangar_core::module::storage_types::OpStatus::Applied)
                    .count();
            }
            if prune {
                report.pruned += self.prune_slot(&slot, now)?;
            }
        }
        Ok(report)
    }

    /// Drops the named tombstones of OR map `map` (loading it first), in
    /// memory and in the store; how many were tombstoned. See
    /// `StorageModule::prune_or_tombstones`.
    ///
    /// # Errors
    /// As a map load, or the committer refusing the batch.
    pub(crate) async fn prune_or_tags(
        self: &Arc<Self>,
        map: &str,
        tags: &[abi_stable::std_types::RString],
    ) -> ModuleResult<u64> {
        let Some(slot) = self.loaded_slot(map).await? else {
            return Ok(0);
        };
        let persist = self.persist()?;
        let mut st = slot.state.lock();
        let MapData::Or(m) = &mut st.data else {
            return Ok(0);
        };
        let ops: Vec<StoreOp> = m
            .prune_tags(tags)
            .into_iter()
            .map(|tag| StoreOp::RemoveOrTombstone {
                map: map.to_string(),
                tag,
            })
            .collect();
        let n = ops.len();
        if n > 0 {
            persist.committer.enqueue(WriteBatch { ops })?;
        }
        Ok(n as u64)
    }

    fn prune_slot(&self, slot: &super::map_slot::MapSlot, now: u64) -> ModuleResult<usize> {
        let persist = self.persist()?;
        let cutoff = Timestamp::new(now.saturating_sub(TOMBSTONE_MAX_AGE_MS), 0, "");
        let mut st = slot.state.lock();
        let map = slot.name.to_string();
        let ops: Vec<StoreOp> = match &mut st.data {
            MapData::Lww(m) => m
                .prune(&cutoff)
                .into_iter()
                .map(|key| StoreOp::Delete {
                    map: map.clone(),
                    key,
                })
                .collect(),
            // Never by age (module docs): only `prune_or_tombstones`.
            MapData::Or(_) | MapData::Empty => Vec::new(),
        };
        let n = ops.len();
        if n > 0 {
            persist.committer.enqueue(WriteBatch { ops })?;
            self.metrics.map_size(&slot.name, st.data.entries());
        }
        Ok(n)
    }
}

/// The collector's loop: expiry every [`GC_INTERVAL`], pruning every
/// [`PRUNE_INTERVAL`], until the module is gone or stopping.
pub(crate) async fn run(core: Weak<Core>) {
    let mut tick = tokio::time::interval(GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_prune = (PRUNE_INTERVAL.as_secs() / GC_INTERVAL.as_secs().max(1)).max(1);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let Some(core) = core.upgrade() else {
            return;
        };
        let Ok(_guard) = core.enter("gc") else {
            return;
        };
        if let Err(e) = core.collect_garbage(n % per_prune == 0).await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
    }
}
