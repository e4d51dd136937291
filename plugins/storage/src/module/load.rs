//! Merging a map's persisted records into its live state: the load tasklet,
//! which does it in budgeted slices, and the merge of one stored entry that
//! the write path also uses for the keys it fetches during a load.
//!
//! Merges commute and are idempotent, so a stored entry may be merged while
//! writes go on, and more than once (once by a write that fetched its key
//! ahead of the load, once more by the load): the result is the same.
//!
//! # Stored timestamps and the clock
//!
//! Every stored record's timestamp passes through [`LoadClock::admit`] before
//! it is merged: the node's clock folds it in (so that new local writes order
//! after everything persisted), or refuses it: further ahead of the wall
//! clock than the drift bound, or a node id with `:`, which no write accepts
//! today but an older version may have stored. A refused record is NOT
//! loaded: it stays on disk untouched and is reported (log, and
//! [`LoadReport::refused`]). Loading it would hand it the very power the
//! refusal denies a client: a record stamped, say, `2^64-1` beats every
//! honest write of its key for as long as it stays ahead of the wall clock,
//! which is forever. Left on disk it is kept for the operator; an honest
//! write of its key replaces it, and once the wall clock has caught up with
//! a merely early timestamp (a node restarted with its clock set back) a
//! later load takes it normally.

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
    /// Records whose timestamp the clock refused (not loaded, logged).
    pub(crate) refused: usize,
    /// Slices the merge took.
    pub(crate) slices: usize,
}

/// Folds stored timestamps into the node's clock during a load, and says
/// which records may be loaded (see the module docs).
///
/// The clock is asked only about timestamps above the greatest one it has
/// taken during this load: one below cannot move it and lies within the
/// bound that greater one passed. In key order the timestamps of a map are
/// usually unordered, so that is a handful of calls per load.
pub(crate) struct LoadClock<'a> {
    clock: &'a dyn ClockService,
    map: &'a str,
    accepted: Option<Timestamp>,
    refused: usize,
}

impl<'a> LoadClock<'a> {
    /// Admission of records of `map` against `clock`.
    pub(crate) fn new(clock: &'a dyn ClockService, map: &'a str) -> Self {
        Self {
            clock,
            map,
            accepted: None,
            refused: 0,
        }
    }

    /// Records refused so far.
    pub(crate) fn refused(&self) -> usize {
        self.refused
    }

    /// True when the record of `key` stamped `ts` may be loaded; the clock
    /// then orders after `ts`. False (and an error in the log naming the
    /// map, key and timestamp) when the clock refuses it.
    pub(crate) fn admit(&mut self, key: &str, ts: &Timestamp) -> bool {
        let error = if ts.node_id.contains(':') {
            // Checked on every record: one below the greatest would not
            // reach the clock, which refuses such ids too.
            format!("node id {:?} contains ':'", ts.node_id.as_str())
        } else if self.accepted.as_ref().is_some_and(|a| ts <= a) {
            return true;
        } else {
            match self.clock.update(ts) {
                Ok(_) => {
                    self.accepted = Some(ts.clone());
                    return true;
                }
                Err(e) => e.message.to_string(),
            }
        };
        self.refused += 1;
        tracing::error!(
            map = %self.map,
            key = %key,
            timestamp = %ts,
            %error,
            "a stored record's timestamp is refused by the node's clock: the record is not \
             loaded (it stays on disk until a write of its key replaces it)"
        );
        false
    }
}

/// Merges one stored entry of `key` into `state`; returns whether the live
/// map changed. When it did and `fts` is set, the key's current value is
/// re-indexed (the winner, which may be a write made during the load).
/// Each record's timestamp goes through `clock` first; a refused record is
/// skipped.
pub(crate) fn merge_stored(
    state: &mut MapState,
    key: &str,
    entry: &StoredEntry,
    fts: Option<&IndexWriter>,
    clock: &mut LoadClock<'_>,
) -> Result<bool, MapKind> {
    state.data.settle_kind(entry.kind());
    match (&mut state.data, entry) {
        (MapData::Lww(m), StoredEntry::Lww(r)) => {
            if !clock.admit(key, &r.timestamp) {
                return Ok(false);
            }
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
                if !clock.admit(key, &r.timestamp) {
                    continue;
                }
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

/// Merges a map's persisted tombstones and entries into its live state, a
/// slice at a time: each slice holds the map's lock for about the budget,
/// so writes wait at most that long.
pub(crate) struct LoadTasklet {
    name: String,
    slot: Arc<MapSlot>,
    clock: Arc<dyn ClockService>,
    fts: Option<Arc<IndexWriter>>,
    tombstones: std::vec::IntoIter<String>,
    entries: std::vec::IntoIter<(String, StoredEntry)>,
    report: LoadReport,
    accepted: Option<Timestamp>,
}

impl LoadTasklet {
    /// A tasklet merging `tombstones` then `entries` into `slot`, folding
    /// their timestamps into `clock` (see [`LoadClock`]).
    pub(crate) fn new(
        slot: Arc<MapSlot>,
        clock: Arc<dyn ClockService>,
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
            clock,
            fts,
            tombstones: tombstones.into_iter(),
            entries: entries.into_iter(),
            accepted: None,
        }
    }
}

impl Tasklet for LoadTasklet {
    type Output = LoadReport;

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
        // The admission state lives in the tasklet between slices.
        let mut clock = LoadClock::new(&*self.clock, &self.slot.name);
        clock.accepted = self.accepted.take();
        let mut sliced = false;
        for (key, entry) in self.entries.by_ref() {
            match merge_stored(&mut st, &key, &entry, self.fts.as_deref(), &mut clock) {
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
                sliced = true;
                break;
            }
        }
        self.report.refused += clock.refused();
        self.accepted = clock.accepted;
        if sliced {
            return Progress::MadeProgress;
        }
        Progress::Done(self.report)
    }
}
