//! The event journal's values: what the storage module records for every
//! change it applies, and the requests that read or follow it.
//!
//! The journal is a per-node, ordered change log. Each entry has a sequence
//! number (from 1, dense, in the order the changes were committed), the
//! kind of change (PUT: the key had no value; UPDATE: it had one and still
//! has; DELETE: it had one and has none), the value before and after, the
//! write's timestamp and the node that journaled it. A change that leaves
//! the key's visible value as it was (a stale op, a removal of a missing
//! key) is not an entry.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use crate::types::{RawValue, Timestamp};

/// What a journal entry records about its key.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JournalEventType {
    /// The key had no visible value and now has one.
    Put,
    /// The key had a visible value and now has another (or the same one,
    /// written again).
    Update,
    /// The key had a visible value and now has none.
    Delete,
}

impl JournalEventType {
    /// The wire name: `PUT`, `UPDATE`, `DELETE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// Parses a wire name (exact, upper case).
    ///
    /// # Errors
    /// The unknown name, with the names expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "PUT" => Ok(Self::Put),
            "UPDATE" => Ok(Self::Update),
            "DELETE" => Ok(Self::Delete),
            other => Err(format!(
                "unknown journal event type {other:?}; expected PUT, UPDATE or DELETE"
            )),
        }
    }
}

/// One journal entry.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct JournalEvent {
    /// Position in the node's journal (from 1, dense).
    pub sequence: u64,
    /// What happened to the key.
    pub kind: JournalEventType,
    /// The map.
    pub map: RString,
    /// The key.
    pub key: RString,
    /// The visible value after the change (absent for DELETE). For an OR
    /// map, the array of the key's live values.
    pub value: ROption<RawValue>,
    /// The visible value before the change (absent for PUT).
    pub previous: ROption<RawValue>,
    /// The timestamp of the write that made the change.
    pub timestamp: Timestamp,
    /// The node whose journal holds the entry.
    pub node_id: RString,
}

/// Which entries a read or a subscription wants.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Default)]
pub struct JournalFilter {
    /// Only this map's entries (all maps when absent).
    pub map: ROption<RString>,
    /// Only these kinds (all kinds when empty).
    pub types: RVec<JournalEventType>,
}

impl JournalFilter {
    /// True when `event` passes the filter.
    #[must_use]
    pub fn matches(&self, map: &str, kind: JournalEventType) -> bool {
        if let ROption::RSome(m) = &self.map {
            if m.as_str() != map {
                return false;
            }
        }
        self.types.is_empty() || self.types.contains(&kind)
    }
}

/// A range read of the journal.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct JournalReadRequest {
    /// The first sequence wanted. 0 means "from the oldest entry kept". A
    /// sequence that retention already pruned is refused (see
    /// [`crate::module::storage::StorageModule::journal_read`]).
    pub from_sequence: u64,
    /// Most entries returned (the module may cap it).
    pub limit: u32,
    /// Which entries.
    pub filter: JournalFilter,
}

/// The answer to a [`JournalReadRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct JournalPage {
    /// Matching entries with `sequence >= from_sequence`, in order.
    pub events: RVec<JournalEvent>,
    /// True when more matching entries follow the last one returned.
    pub has_more: bool,
    /// The oldest sequence the journal still holds (0 when it is empty).
    pub oldest: u64,
    /// The newest durable sequence (0 before the first entry).
    pub latest: u64,
}

/// Receives the journal entries of one subscription, in sequence order,
/// each once: first the replayed ones, then the live ones as their commits
/// become durable.
///
/// # Contract
/// Called on the storage module's threads, possibly while it holds internal
/// locks: implementations MUST return quickly (queue the entry) and MUST
/// NOT call back into the storage module.
pub trait JournalSink: Send + Sync + 'static {
    /// Plugin-boundary detail; see `StorageModule::as_foreign_object`.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// One entry.
    fn deliver(&self, event: &JournalEvent);
}
