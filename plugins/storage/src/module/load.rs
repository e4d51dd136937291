//! Merging a map's persisted records into its live state: the load tasklet,
//! which does it in budgeted slices, and the merge of one stored entry that
//! the write path also uses for the keys it fetches during a load.
//!
//! Merges commute and are idempotent, so a stored entry may be merged while
//! writes go on, and more than once (once by a write that fetched its key
//! ahead of the load, once more by the load): the result is the same.

use std::sync::Arc;

use hangar_core::module::services::ClockService;
use hangar_core::{MapKind, Timestamp};

use super::map_slot::{MapData, MapSlot, MapState};
use crate::persistence::StoredEntry;
use crate::search::IndexWriter;
use crate::tasklet::{Deadline, Progress, Tasklet};

/// How many items a slice merges between two looks at its deadline.
const CHECK_EVERY: usize = 64;

/// What merging the backend's records did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadReport {
    /// Entries read (after the partition filter).
    pub(crate) entries: usize,
    /// Entries that changed the live map (the others were older than
    /// writes made during the load, or merged already).
    pub(crate) merged: usize,
    /// OR tombstones applied.
    pub(crate) tombstones: usize,
    /// Entries whose kind did not match the map's (skipped, logged).
    pub(crate) mismatched: usize,
    /// Slices the merge took.
    pub(crate) slices: usize,
}

/// Merges one stored entry of `key` into `state`; returns whether the live
/// map changed. When it did and `fts` is set, the key's current value is
/// re-indexed (the winner, which may be a write made during the load).
/// `max_ts` is raised to the greatest timestamp seen, for the HLC.
pub(crate) fn merge_stored(
    state: &mut MapState,
    key: &str,
    entry: &StoredEntry,
    fts: Option<&IndexWriter>,
    max_ts: &mut Option<Timestamp>,
) -> Result<bool, MapKind> {
    state.data.settle_kind(entry.kind());
    let raise = |ts: &Timestamp, max_ts: &mut Option<Timestamp>| {
        if max_ts.as_ref().is_none_or(|m| ts > m) {
            *max_ts = Some(ts.clone());
        }
    };
    match (&mut state.data, entry) {
        (MapData::Lww(m), StoredEntry::Lww(r)) => {
            raise(&r.timestamp, max_ts);
            let out = m.merge(key, r);
            if out.changed {
                state
                    .expiry
                    .push(key, r.timestamp.millis, r.ttl_ms.into_option());
            }
            if out.changed {
                if let Some(w) = fts {
                    match r.value.as_ref().into_option() {
                        Some(v) => w.upsert(key, v.clone()),
                        None => w.remove(key),
                    }
                }
            }
            Ok(out.changed)
        }
        (MapData::Or(m), StoredEntry::Or { records }) => {
            let mut changed = false;
            for r in records {
                raise(&r.timestamp, max_ts);
                if m.apply(key, r).changed() {
                    changed = true;
                    state
                        .expiry
                        .push(key, r.timestamp.millis, r.ttl_ms.into_option());
                }
            }
            Ok(changed)
        }
        (data, _) => Err(data.kind().unwrap_or(MapKind::Lww)),
    }
}

/// Folds the greatest loaded timestamp into the node's clock, so that new
/// local writes order after everything persisted.
pub(crate) fn advance_clock(clock: &dyn ClockService, max_ts: Option<&Timestamp>) {
    if let Some(ts) = max_ts {
        if let Err(e) = clock.update(ts) {
            tracing::warn!(error = %e, "a persisted timestamp is beyond the clock's drift bound");
        }
    }
}

/// Merges a map's persisted tombstones and entries into its live state, a
/// slice at a time: each slice holds the map's lock for about the budget,
/// so writes wait at most that long.
pub(crate) struct LoadTasklet {
    name: String,
    slot: Arc<MapSlot>,
    fts: Option<Arc<IndexWriter>>,
    tombstones: std::vec::IntoIter<String>,
    entries: std::vec::IntoIter<(String, StoredEntry)>,
    report: LoadReport,
    max_ts: Option<Timestamp>,
}

impl LoadTasklet {
    /// A tasklet merging `tombstones` then `entries` into `slot`.
    pub(crate) fn new(
        slot: Arc<MapSlot>,
        fts: Option<Arc<IndexWriter>>,
        tombstones: Vec<String>,
        entries: Vec<(String, StoredEntry)>,
    ) -> Self {
        Self {
            name: format!("load:{}", slot.name),
            report: LoadReport {
                entries: entries.len(),
                ..LoadReport::default()
            },
            slot,
            fts,
            tombstones: tombstones.into_iter(),
            entries: entries.into_iter(),
            max_ts: None,
        }
    }
}

impl Tasklet for LoadTasklet {
    type Output = (LoadReport, Option<Timestamp>);

    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self, deadline: Deadline<'_>) -> Progress<Self::Output> {
        self.report.slices += 1;
        let mut st = self.slot.state.lock();
        let mut n = 0usize;
        let over = |n: usize| n % CHECK_EVERY == 0 && deadline.expired();
        if self.tombstones.len() > 0 {
            st.data.settle_kind(MapKind::Or);
        }
        for tag in self.tombstones.by_ref() {
            if let MapData::Or(m) = &mut st.data {
                m.apply_tombstone(&tag);
                self.report.tombstones += 1;
            }
            n += 1;
            if over(n) {
                return Progress::MadeProgress;
            }
        }
        for (key, entry) in self.entries.by_ref() {
            match merge_stored(&mut st, &key, &entry, self.fts.as_deref(), &mut self.max_ts) {
                Ok(true) => self.report.merged += 1,
                Ok(false) => {}
                Err(kind) => {
                    self.report.mismatched += 1;
                    tracing::error!(map = %self.slot.name, key = %key, ?kind,
                        "a stored entry does not match the map's kind; skipped");
                }
            }
            n += 1;
            if over(n) {
                return Progress::MadeProgress;
            }
        }
        Progress::Done((self.report, self.max_ts.take()))
    }
}
