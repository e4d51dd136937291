//! What a merge did: the outcomes the maps hand back, so that callers (live
//! queries, persistence, replication, metrics) know whether anything changed
//! and what the old state was.

use hangar_core::{LwwRecord, OrRecord};

/// What [`LwwMap::merge`](super::LwwMap::merge) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwwMergeOutcome {
    /// True when the incoming record won and is now stored.
    pub changed: bool,
    /// The record it replaced (tombstone or expired included); `None` when
    /// the key was new or nothing changed.
    pub previous: Option<LwwRecord>,
}

/// What [`OrMap::apply`](super::OrMap::apply) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrApplyOutcome {
    /// The tag is tombstoned: refused, nothing changed.
    Tombstoned,
    /// The same or a newer version of the tag is already stored.
    Stale,
    /// A new tag was added.
    Added,
    /// An older version of the tag was replaced (it may have been stored
    /// under another key, which then lost it).
    Replaced {
        /// The key the old version was under.
        previous_key: String,
        /// The old version.
        previous: OrRecord,
    },
}

impl OrApplyOutcome {
    /// True when the map changed.
    #[must_use]
    pub fn changed(&self) -> bool {
        matches!(self, Self::Added | Self::Replaced { .. })
    }
}

/// What [`OrMap::apply_tombstone`](super::OrMap::apply_tombstone) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneOutcome {
    /// False when the tag was already tombstoned.
    pub newly_tombstoned: bool,
    /// The record the tag named, with its key, if it was stored.
    pub removed: Option<(String, OrRecord)>,
}

/// What [`OrMap::merge_key`](super::OrMap::merge_key) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrMergeKeyOutcome {
    /// Records whose tag was new.
    pub added: usize,
    /// Records that replaced an older version of their tag.
    pub updated: usize,
    /// Stored records removed by the given tombstones (under any key).
    pub removed: usize,
}
