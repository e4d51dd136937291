//! Query snapshots of large maps, read in tasklet slices.
//!
//! Decoding every value of a map for a query costs O(n) under the map's
//! lock. For maps above [`INLINE_ROWS`] entries the snapshot is instead
//! read leaf by leaf (the maps keep their records bucketed by Merkle leaf,
//! 4096 leaves) in tasklet slices: each slice holds the lock for about the
//! tasklet budget, and writes go on between slices.
//!
//! A key never moves between leaves, so each key is read once, in the
//! version it had when its leaf was read. That is enough for a one-shot
//! query (a concurrent write may or may not be seen). A subscription also
//! needs the changes made *during* the snapshot: it registers a capture on
//! the map first, the write path notes every key it changes while a capture
//! is registered, and the final step, under the lock, re-reads those keys
//! before registering the subscription with the snapshot. So no change is
//! missed or sent twice, as with a snapshot taken under one lock.

use std::collections::HashSet;
use std::sync::Arc;

use hangar_core::merkle::{leaf_path, LEAF_COUNT};
use hangar_core::ModuleResult;
use parking_lot::Mutex;
use rmpv::Value;

use super::convert::decode;
use super::core::Core;
use super::map_slot::{MapData, MapSlot};
use super::write_path::or_value;
use crate::tasklet::{Deadline, Progress, Tasklet};

/// Maps with at most this many entries are read in one go under the lock.
pub(crate) const INLINE_ROWS: usize = 20_000;

/// Keys changed while a subscription's snapshot was being read.
pub(crate) type Capture = Arc<Mutex<HashSet<String>>>;

/// The visible value of one key (decoded), `None` when it has none.
pub(crate) fn current_value(data: &MapData, key: &str, now_ms: u64) -> Option<Value> {
    match data {
        MapData::Lww(m) => m.get(key, now_ms).and_then(decode),
        MapData::Or(m) => or_value(m, key, now_ms),
        MapData::Empty => None,
    }
}

struct SnapshotTasklet {
    name: String,
    slot: Arc<MapSlot>,
    next_leaf: usize,
    now_ms: u64,
    rows: Vec<(String, Value)>,
}

impl Tasklet for SnapshotTasklet {
    type Output = Vec<(String, Value)>;

    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self, deadline: Deadline<'_>) -> Progress<Self::Output> {
        let st = self.slot.state.lock();
        while self.next_leaf < LEAF_COUNT {
            // LEAF_COUNT is 4096, so the index fits a u16.
            let path = leaf_path(self.next_leaf as u16);
            self.next_leaf += 1;
            let keys = match &st.data {
                MapData::Lww(m) => m.keys_in_leaf(&path),
                MapData::Or(m) => m.keys_in_leaf(&path),
                MapData::Empty => Vec::new(),
            };
            for k in keys {
                if let Some(v) = current_value(&st.data, k, self.now_ms) {
                    self.rows.push((k.to_string(), v));
                }
            }
            if deadline.expired() {
                return Progress::MadeProgress;
            }
        }
        Progress::Done(std::mem::take(&mut self.rows))
    }
}

impl Core {
    /// Reads the visible records of `slot` in tasklet slices.
    ///
    /// # Errors
    /// The scheduler's refusal or cancellation (shutdown).
    pub(crate) async fn sliced_snapshot(
        &self,
        slot: &Arc<MapSlot>,
        now_ms: u64,
    ) -> ModuleResult<Vec<(String, Value)>> {
        let tasklet = SnapshotTasklet {
            name: format!("snapshot:{}", slot.name),
            slot: slot.clone(),
            next_leaf: 0,
            now_ms,
            rows: Vec::new(),
        };
        Ok(self.tasklets.schedule(tasklet)?.await?)
    }
}

/// Replaces, in `rows`, the keys of `changed` by their current values.
pub(crate) fn apply_captured(
    rows: &mut Vec<(String, Value)>,
    changed: HashSet<String>,
    data: &MapData,
    now_ms: u64,
) {
    if changed.is_empty() {
        return;
    }
    rows.retain(|(k, _)| !changed.contains(k));
    for k in changed {
        if let Some(v) = current_value(data, &k, now_ms) {
            rows.push((k, v));
        }
    }
}
