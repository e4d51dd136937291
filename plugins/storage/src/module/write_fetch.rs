//! The stored entries a write merges before it applies: the write path's
//! answer to keys the map's memory may lack.
//!
//! # Writes to keys held only on disk
//!
//! Once a map is loaded, its memory holds the persisted records of the
//! partitions in its held set (see `map_slot`, `ownership`). A write to a
//! key of another partition (one being loaded after an ownership change,
//! one released, one never related) fetches the key's stored entry and
//! merges it first, as during a load (below), so a stale write never
//! overwrites newer persisted data. Before the fetch it waits until the
//! persisted copy of what the map released is complete (the held set's
//! barrier); if a release ran between its check and the map's lock (the
//! held set's epoch moved), it checks again.
//!
//! # Writes during a load
//!
//! A write to a map whose load has not finished first fetches the stored
//! entries of its keys (`load_keys`) and merges them, then applies. So the
//! state it persists is the merge of everything stored for the key and the
//! write: a stale write cannot overwrite newer stored data even before the
//! load reached that key, and nothing is lost when the load later merges the
//! same entries again (merges are idempotent). Known limit: an OR add of a
//! tag that is tombstoned only on disk is accepted until the load applies
//! the tombstones, which then remove it (the tombstone row wins on every
//! later load too).
//!
//! Both cases read the map's release epoch before anything else; the write
//! path checks it again under the map's lock and starts over when it moved.

use std::sync::Arc;

use hangar_core::module::storage_types::{ApplyBatch, OpOutcome};
use hangar_core::{partition_of, MapOp, ModuleError};

use super::core::{Core, Persist};
use super::map_slot::MapSlot;
use super::partition_set::PartitionSet;
use super::write_path::reject_all;
use crate::persistence::StoredEntry;

impl Core {
    /// The stored entries the group's keys need merged before its ops
    /// apply (see the module docs): every key while the map loads; the keys
    /// of partitions the map does not hold once it is loaded, after the
    /// persisted copy of what was released is complete. Also returns the
    /// map's release epoch the check saw. `None` when reading failed:
    /// every op of the group is then rejected with
    /// [`hangar_core::ErrorKind::STORAGE`].
    pub(crate) async fn fetch_unheld(
        self: &Arc<Self>,
        persist: &Persist,
        slot: &Arc<MapSlot>,
        todo: &[usize],
        batch: &ApplyBatch,
        out: &mut [Option<OpOutcome>],
    ) -> Option<(Option<Vec<(String, StoredEntry)>>, u64)> {
        let fetching_key = |i: &usize| !matches!(batch.ops[*i].op.op, MapOp::OrRemove(_));
        // Read first: a release between here and the map's lock moves it.
        let epoch = slot.held.epoch();
        let (mut keys, why): (Vec<String>, _) = if slot.is_loaded() {
            let held = slot.held.get();
            if held == PartitionSet::ALL {
                return Some((None, epoch));
            }
            let keys: Vec<String> = todo
                .iter()
                .filter(|i| fetching_key(i))
                .map(|&i| batch.ops[i].op.key.as_str())
                .filter(|k| !held.contains(partition_of(k)))
                .map(str::to_string)
                .collect();
            if keys.is_empty() {
                return Some((None, epoch));
            }
            if let Err(e) = self.persisted_up_to(persist, slot.held.barrier()).await {
                reject_all(
                    todo,
                    out,
                    &ModuleError::storage(format!(
                        "map {:?}: waiting for released keys to be persisted failed: {e}",
                        slot.name
                    )),
                );
                return None;
            }
            (keys, "holds some of the keys only on disk")
        } else {
            let _ = self.start_load(slot);
            let keys = todo
                .iter()
                .filter(|i| fetching_key(i))
                .map(|&i| batch.ops[i].op.key.to_string())
                .collect();
            (keys, "is loading")
        };
        keys.sort_unstable();
        keys.dedup();
        match persist.backend.load_keys(&slot.name, &keys).await {
            Ok(v) => Some((Some(v), epoch)),
            Err(e) => {
                let e = ModuleError::storage(format!(
                    "map {:?} {why} and reading its stored keys failed: {e}",
                    slot.name
                ));
                reject_all(todo, out, &e);
                None
            }
        }
    }

    /// Resolves once every request up to `seq` is durable (at once when it
    /// already is).
    pub(crate) async fn persisted_up_to(
        &self,
        persist: &Persist,
        seq: u64,
    ) -> Result<(), crate::persistence::CommitError> {
        if *persist.committer.watermark().borrow() >= seq {
            return Ok(());
        }
        persist.committer.flush().await
    }
}
