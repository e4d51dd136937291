//! Ownership changes: when the cluster installs a new partition table, the
//! storage module loads what it now holds and releases what it no longer
//! holds, in the maps it has loaded.
//!
//! # Contract
//!
//! - [`Core::partitions_changed`] returns at once: the work runs on the
//!   module's runtime, one pass at a time (one worker per module). A call
//!   while a pass runs makes the worker run another pass after it; calls
//!   that arrive meanwhile fold into that one pass. Each map is evaluated
//!   against the partition view as it is when the worker reaches the map
//!   (and the records to load are filtered again against it after the
//!   backend read), so a later table supersedes an earlier one still being
//!   applied: no partition is loaded twice, none is released on the word
//!   of a table that is no longer current.
//! - Per loaded map, what its memory reflects is its held set
//!   (`MapSlot::held`). A pass computes `related` (owner or backup, now),
//!   then, for the map:
//!   1. **releases** `held − related`: held becomes `held ∩ related`, then
//!      the keys of every unrelated partition are dropped from memory leaf
//!      by leaf in tasklet slices (CRDT data with its Merkle trie, TTL
//!      records lazily, full-text index, live-query membership). The
//!      persisted copy stays untouched. No LEAVE is sent for them: the keys
//!      still exist in the cluster, and cluster-wide queries are the
//!      cluster module's business (see `QueryRegistry::forget`);
//!   2. **loads** `related − held`: once the persisted copy of what the
//!      map released is complete (its held set's barrier), reads the map
//!      from the backend, keeps the entries of those partitions (and every
//!      OR tombstone, as a lazy load does), merges them in tasklet slices
//!      with the CRDT rules (a stale stored record never overwrites newer
//!      data in memory), then, under the map's lock, adds the partitions to
//!      the held set and refreshes the map's live queries, which send ENTER
//!      for the keys that now match, as after a lazy load.
//! - Writes never wait for a pass: a write to a key outside the held set
//!   merges the key's stored entry first (see `write_fetch`), so writes made
//!   during a load are kept and stale ones never reach the disk.
//! - Maps not loaded yet are left alone: they load with the view current
//!   then. A map whose lazy load runs is waited for, then evaluated.
//! - A read answers from memory: a key of a partition this node no longer
//!   holds reads as `Missing` (its record lives on disk and on its owner;
//!   the cluster routes reads there).
//! - A failure on a map (a backend read error, a tasklet refused or
//!   cancelled at shutdown) is logged; the map's held set stays exact for
//!   writes (partitions are added only once loaded, removed before their
//!   keys are dropped), partitions not loaded are retried at the next table
//!   change, and keys of a release cut short may stay in memory until the
//!   map's next release. [`Core::partitions_applied`] then stays below the
//!   version.
//! - Cost: a load reads the whole map from the backend (`load_map`; the
//!   backend has no read by partition) and filters it, once per map and
//!   pass; a release visits every Merkle leaf of the map once. Both run in
//!   tasklet slices, so a write waits at most one slice.
//! - Metrics: `hangar_ownership_records_total{map, change}` counts the
//!   records loaded (`change="loaded"`, entries read for the new
//!   partitions) and released (`change="released"`, keys dropped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use hangar_core::merkle::{LeafIndex, LEAF_COUNT};
use hangar_core::{partition_of, ModuleError, ModuleResult};
use parking_lot::Mutex;

use super::core::Core;
use super::load::LoadTasklet;
use super::map_slot::{LoadPhase, MapData, MapSlot};
use super::partition_set::PartitionSet;
use super::read_path::decoded_rows;
use crate::persistence::GroupCommitter;
use crate::query::Row;
use crate::tasklet::{Deadline, Progress, Tasklet};

/// Leaves a release slice handles between two looks at its deadline.
const LEAVES_PER_CHECK: usize = 16;

/// The module's ownership state: the latest table version asked for, the
/// latest fully applied, and whether a worker runs.
#[derive(Debug, Default)]
pub(crate) struct Ownership {
    wanted: AtomicU64,
    applied: AtomicU64,
    running: Mutex<bool>,
}

impl Core {
    /// The partition table changed to `version` (see
    /// `StorageAccessor::partitions_changed` and the module docs): starts
    /// the worker, or asks the running one for another pass. Never blocks.
    pub(crate) fn partitions_changed(self: &Arc<Self>, version: u64) {
        tracing::debug!(version, "partition table changed");
        self.ownership.wanted.fetch_max(version, Ordering::AcqRel);
        let mut running = self.ownership.running.lock();
        if *running || self.is_stopping() {
            return;
        }
        *running = true;
        drop(running);
        self.runtime
            .handle()
            .spawn(ownership_worker(Arc::downgrade(self)));
    }

    /// The latest table version whose changes are applied to every loaded
    /// map (0 before any). For tests and diagnostics.
    pub(crate) fn partitions_applied(&self) -> u64 {
        self.ownership.applied.load(Ordering::Acquire)
    }

    /// One pass over the maps that exist now; true when every map was
    /// brought in line with the view.
    async fn ownership_pass(self: &Arc<Self>) -> bool {
        if self.persist_opt().is_none() {
            // Nothing is loaded before start.
            return true;
        }
        let mut ok = true;
        for slot in self.manager.slots() {
            if self.is_stopping() {
                return false;
            }
            let loading = matches!(*slot.load.lock(), LoadPhase::Running(_));
            if loading && self.ensure_loaded(&slot).await.is_err() {
                // Its next load uses the view current then.
                continue;
            }
            if !slot.is_loaded() {
                continue;
            }
            if let Err(e) = self.sync_slot(&slot).await {
                ok = false;
                tracing::warn!(map = %slot.name, error = %e,
                    "applying a partition table change to a map failed; the next change retries");
            }
        }
        ok
    }

    /// Brings one loaded map in line with the view: releases, then loads.
    async fn sync_slot(self: &Arc<Self>, slot: &Arc<MapSlot>) -> ModuleResult<()> {
        let related = PartitionSet::related(&*self.deps.partitions);
        if !slot.held.get().minus(&related).is_empty() {
            self.release(slot, related).await?;
        }
        let newly = related.minus(&slot.held.get());
        if newly.is_empty() {
            return Ok(());
        }
        self.load_partitions(slot, newly).await
    }

    /// Drops from `slot`'s memory every key whose partition is not in
    /// `related`; see the module docs.
    async fn release(
        self: &Arc<Self>,
        slot: &Arc<MapSlot>,
        related: PartitionSet,
    ) -> ModuleResult<()> {
        let persist = self.persist()?;
        {
            let _st = slot.state.lock();
            slot.held.set(slot.held.get().and(&related));
        }
        let tasklet = ReleaseTasklet {
            name: format!("release:{}", slot.name),
            core: Arc::downgrade(self),
            slot: slot.clone(),
            committer: persist.committer.clone(),
            related,
            next_leaf: 0,
            released: 0,
        };
        let released = self
            .tasklets
            .schedule(tasklet)
            .map_err(ModuleError::from)?
            .await
            .map_err(ModuleError::from)?;
        let size = slot.state.lock().data.entries();
        self.metrics
            .ownership_records(&slot.name, "released", released);
        self.metrics.map_size(&slot.name, size);
        tracing::debug!(map = %slot.name, released, "released partitions from memory");
        Ok(())
    }

    /// Loads the persisted records of `partitions` into `slot`; see the
    /// module docs.
    async fn load_partitions(
        self: &Arc<Self>,
        slot: &Arc<MapSlot>,
        partitions: PartitionSet,
    ) -> ModuleResult<()> {
        let persist = self.persist()?;
        self.persisted_up_to(persist, slot.held.barrier())
            .await
            .map_err(|e| {
                ModuleError::storage(format!(
                    "map {:?}: waiting for released keys to be persisted failed: {e}",
                    slot.name
                ))
            })?;
        let loaded = persist.backend.load_map(&slot.name).await.map_err(|e| {
            ModuleError::storage(format!(
                "loading map {:?} from the backend for newly held partitions failed: {e}",
                slot.name
            ))
        })?;
        // A table installed while the backend was read supersedes the one
        // this load started from.
        let partitions = partitions.and(&PartitionSet::related(&*self.deps.partitions));
        if partitions.is_empty() {
            return Ok(());
        }
        let entries: Vec<_> = loaded
            .entries
            .into_iter()
            .filter(|(k, _)| partitions.contains(partition_of(k)))
            .collect();
        let tasklet = LoadTasklet::new(
            slot.clone(),
            self.deps.clock.clone(),
            self.fts_of(&slot.name).cloned(),
            loaded.or_tombstones,
            entries,
        );
        let report = self
            .tasklets
            .schedule(tasklet)
            .map_err(ModuleError::from)?
            .await
            .map_err(ModuleError::from)?;
        if report.refused > 0 {
            tracing::error!(
                map = %slot.name,
                refused = report.refused,
                "records with timestamps the node's clock refuses were not loaded (see the errors above)"
            );
        }
        let now = self.deps.clock.wall_millis();
        let size = {
            let st = slot.state.lock();
            slot.held.set(slot.held.get().or(&partitions));
            if self.registry.has_subscriptions(&slot.name) {
                let rows = decoded_rows(&st.data, now);
                self.registry
                    .refresh(&slot.name, rows.iter().map(|(k, v)| Row::live(k, v)), now);
            }
            st.data.entries()
        };
        self.metrics
            .ownership_records(&slot.name, "loaded", report.entries);
        self.metrics.map_size(&slot.name, size);
        tracing::debug!(map = %slot.name, partitions = partitions.len(), ?report,
            "loaded newly held partitions");
        Ok(())
    }
}

/// Runs passes until no newer version was asked for, then stops.
async fn ownership_worker(core: Weak<Core>) {
    loop {
        let Some(c) = core.upgrade() else {
            return;
        };
        let target = c.ownership.wanted.load(Ordering::Acquire);
        let ok = c.ownership_pass().await;
        if ok {
            c.ownership.applied.fetch_max(target, Ordering::AcqRel);
        }
        let mut running = c.ownership.running.lock();
        if c.ownership.wanted.load(Ordering::Acquire) == target || c.is_stopping() {
            *running = false;
            return;
        }
    }
}

/// Drops the keys of unrelated partitions from a map, a few Merkle leaves
/// at a time under the map's lock. Output: keys dropped.
struct ReleaseTasklet {
    name: String,
    core: Weak<Core>,
    slot: Arc<MapSlot>,
    committer: GroupCommitter,
    related: PartitionSet,
    next_leaf: usize,
    released: usize,
}

impl Tasklet for ReleaseTasklet {
    type Output = usize;

    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self, deadline: Deadline<'_>) -> Progress<usize> {
        let Some(core) = self.core.upgrade() else {
            return Progress::Done(self.released);
        };
        let mut guard = self.slot.state.lock();
        let st = &mut *guard;
        let fts = core.fts_of(&self.slot.name);
        let subs = core.registry.has_subscriptions(&self.slot.name);
        let related = self.related;
        let unrelated = |k: &str| !related.contains(partition_of(k));
        let mut dropped_any = false;
        while self.next_leaf < LEAF_COUNT {
            let end = (self.next_leaf + LEAVES_PER_CHECK).min(LEAF_COUNT);
            for leaf in self.next_leaf..end {
                let leaf = LeafIndex::try_from(leaf).unwrap_or(LeafIndex::MAX);
                let dropped = match &mut st.data {
                    MapData::Lww(m) => m.release_in_leaf(leaf, unrelated),
                    MapData::Or(m) => m.release_in_leaf(leaf, unrelated),
                    MapData::Empty => Vec::new(),
                };
                if dropped.is_empty() {
                    continue;
                }
                dropped_any = true;
                self.released += dropped.len();
                for c in &st.captures {
                    c.lock().extend(dropped.iter().cloned());
                }
                if let Some(w) = fts {
                    for k in &dropped {
                        w.remove(k);
                    }
                }
                if subs {
                    core.registry
                        .forget(&self.slot.name, dropped.iter().map(String::as_str));
                }
            }
            self.next_leaf = end;
            if deadline.expired() {
                break;
            }
        }
        if dropped_any {
            // Under the lock: every write to the dropped keys was enqueued
            // at or before this sequence number.
            self.slot.held.dropped(self.committer.last_seq());
        }
        if self.next_leaf < LEAF_COUNT {
            Progress::MadeProgress
        } else {
            Progress::Done(self.released)
        }
    }
}
