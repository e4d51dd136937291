//! What a persistence backend stores and returns: entries, write batches,
//! map listings and loaded maps.
//!
//! These are plain owned values with no backend type in them, so that every
//! backend (redb, memory, PostgreSQL) speaks the same language.
//!
//! The OR-map tombstone set is *not* an entry: it lives beside the entries as
//! one row per `(map, tag)` (see [`StoreOp::AddOrTombstone`]). Adding or
//! pruning one tombstone therefore costs one row, not a rewrite of the whole
//! set as the legacy `__tombstones__` row did, and loading a map's tombstones
//! never goes through the partition filter that applies to keys.

use std::sync::Arc;

use hangar_core::{LwwRecord, MapKind, OrRecord};

use super::journal::JournalRecord;

/// The persisted state of one key of one map.
///
/// The caller stores the *winning* CRDT state of the key (the merged LWW
/// record, or every live OR record of the key), never the incoming op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredEntry {
    /// A last-write-wins record; a `None` value is a tombstone and is stored
    /// like any other record. `ttl_ms` is persisted.
    Lww(LwwRecord),
    /// All tagged records of one key of an observed-remove map (one row per
    /// key). An empty list is allowed and round-trips as empty.
    Or {
        /// The key's records, in the order the caller gave them.
        records: Vec<OrRecord>,
    },
}

impl StoredEntry {
    /// The kind of map this entry belongs to.
    #[must_use]
    pub fn kind(&self) -> MapKind {
        match self {
            Self::Lww(_) => MapKind::Lww,
            Self::Or { .. } => MapKind::Or,
        }
    }
}

/// One change inside a [`WriteBatch`].
///
/// Entries are addressed by `(map, key)`, tombstones by `(map, tag)`; the two
/// address spaces are separate, so a key and a tag with the same text never
/// collide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace the entry at `(map, key)`. Records `map` with the
    /// entry's kind if the map is new.
    Put {
        /// Map name: non-empty, no NUL character.
        map: String,
        /// Key: any string without a NUL character (empty is allowed).
        key: String,
        /// The new state of the key.
        entry: StoredEntry,
    },
    /// Remove the entry at `(map, key)`; removing a missing key is not an
    /// error. Does not touch the map's tombstones or its listing.
    Delete {
        /// Map name.
        map: String,
        /// Key.
        key: String,
    },
    /// Add `tag` to the OR tombstone set of `map` (idempotent). Records `map`
    /// as an OR map if it is new.
    AddOrTombstone {
        /// Map name.
        map: String,
        /// The removed tag, `millis:counter:nodeId`.
        tag: String,
    },
    /// Remove `tag` from the OR tombstone set of `map` (GC pruning);
    /// removing a missing tag is not an error.
    RemoveOrTombstone {
        /// Map name.
        map: String,
        /// The pruned tag.
        tag: String,
    },
    /// Append an event-journal entry under its sequence number (numbered
    /// by the group committer at enqueue; see `super::journal`). Only for
    /// backends whose `keeps_journal` is true; others refuse it with
    /// `InvalidInput`.
    JournalAppend(Arc<JournalRecord>),
    /// Remove every journal entry with a sequence number below `below`
    /// (retention).
    JournalPrune {
        /// The first sequence number kept.
        below: u64,
    },
}

impl StoreOp {
    /// The map this op writes rows of; `None` for journal ops, which
    /// write no map's rows.
    #[must_use]
    pub fn map(&self) -> Option<&str> {
        match self {
            Self::Put { map, .. }
            | Self::Delete { map, .. }
            | Self::AddOrTombstone { map, .. }
            | Self::RemoveOrTombstone { map, .. } => Some(map),
            Self::JournalAppend(_) | Self::JournalPrune { .. } => None,
        }
    }

    /// The kind this op requires of its map, if any. Deletes work on maps of
    /// either kind; tombstones require an OR map.
    #[must_use]
    pub fn required_kind(&self) -> Option<MapKind> {
        match self {
            Self::Put { entry, .. } => Some(entry.kind()),
            Self::AddOrTombstone { .. } | Self::RemoveOrTombstone { .. } => Some(MapKind::Or),
            Self::Delete { .. } | Self::JournalAppend(_) | Self::JournalPrune { .. } => None,
        }
    }

    /// The slot this op overwrites: two ops with equal slots replace each
    /// other, and the later one decides the result.
    #[must_use]
    pub fn slot(&self) -> Slot<'_> {
        match self {
            Self::Put { map, key, .. } | Self::Delete { map, key } => Slot::Entry(map, key),
            Self::AddOrTombstone { map, tag } | Self::RemoveOrTombstone { map, tag } => {
                Slot::Tombstone(map, tag)
            }
            Self::JournalAppend(r) => Slot::Journal(r.seq),
            Self::JournalPrune { .. } => Slot::JournalPrune,
        }
    }
}

/// The address an op writes: an entry `(map, key)` or a tombstone `(map, tag)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot<'a> {
    /// The entry row of `(map, key)`.
    Entry(&'a str, &'a str),
    /// The tombstone row of `(map, tag)`.
    Tombstone(&'a str, &'a str),
    /// The journal row of one sequence number (never shared: appends are
    /// never coalesced).
    Journal(u64),
    /// The journal's retention bound: a later prune (with a bound at least
    /// as high, since bounds only grow) supersedes an earlier one.
    JournalPrune,
}

/// An ordered list of ops that a backend commits atomically and durably in
/// one call. Ops on the same slot apply in order, so the last one wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The ops, applied in order.
    pub ops: Vec<StoreOp>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a [`StoreOp::Put`].
    #[must_use]
    pub fn put(
        mut self,
        map: impl Into<String>,
        key: impl Into<String>,
        entry: StoredEntry,
    ) -> Self {
        self.ops.push(StoreOp::Put {
            map: map.into(),
            key: key.into(),
            entry,
        });
        self
    }

    /// Appends a [`StoreOp::Delete`].
    #[must_use]
    pub fn delete(mut self, map: impl Into<String>, key: impl Into<String>) -> Self {
        self.ops.push(StoreOp::Delete {
            map: map.into(),
            key: key.into(),
        });
        self
    }

    /// Appends a [`StoreOp::AddOrTombstone`].
    #[must_use]
    pub fn add_or_tombstone(mut self, map: impl Into<String>, tag: impl Into<String>) -> Self {
        self.ops.push(StoreOp::AddOrTombstone {
            map: map.into(),
            tag: tag.into(),
        });
        self
    }

    /// Appends a [`StoreOp::RemoveOrTombstone`].
    #[must_use]
    pub fn remove_or_tombstone(mut self, map: impl Into<String>, tag: impl Into<String>) -> Self {
        self.ops.push(StoreOp::RemoveOrTombstone {
            map: map.into(),
            tag: tag.into(),
        });
        self
    }

    /// Number of ops.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch has no op.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<StoreOp>> for WriteBatch {
    fn from(ops: Vec<StoreOp>) -> Self {
        Self { ops }
    }
}

/// A map the backend knows, with the kind recorded by its first write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMap {
    /// Map name.
    pub name: String,
    /// Its CRDT kind; it never changes once recorded.
    pub kind: MapKind,
}

/// Everything a backend holds for one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedMap {
    /// The map's recorded kind; `None` when the backend has never seen it.
    pub kind: Option<MapKind>,
    /// Every entry, in ascending byte order of key.
    pub entries: Vec<(String, StoredEntry)>,
    /// The OR tombstone set, in ascending byte order of tag (empty for LWW maps).
    pub or_tombstones: Vec<String>,
}
