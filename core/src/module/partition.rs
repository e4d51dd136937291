//! The partition view: the cluster module's answer to "who owns this key?",
//! handed to the storage module so that it loads only related keys.

use abi_stable::std_types::{ROption, RString, RVec};

use crate::hash::partition_of;

/// Read-only view of the partition table.
///
/// # Contract
/// - Calls MUST be cheap and non-blocking: storage calls `is_related` once
///   per key while loading a map.
/// - `owner` and `backups` of a partition MUST NOT overlap (a node is never
///   its own backup).
/// - `version` MUST increase whenever ownership changes.
pub trait PartitionView: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// This node's id.
    fn local_node(&self) -> RString;
    /// Version of the partition table.
    fn version(&self) -> u64;
    /// Owner of `partition`, or `None` if unassigned or out of range.
    fn owner(&self, partition: u32) -> ROption<RString>;
    /// Backups of `partition`, in promotion order.
    fn backups(&self, partition: u32) -> RVec<RString>;
    /// True when this node owns `partition`.
    fn is_local_owner(&self, partition: u32) -> bool;
    /// True when this node owns or backs up `partition`.
    fn is_related(&self, partition: u32) -> bool;
}

/// Key-based helpers over any [`PartitionView`].
pub trait PartitionViewExt {
    /// `is_related(partition_of(key))`.
    fn is_related_key(&self, key: &str) -> bool;
    /// `is_local_owner(partition_of(key))`.
    fn owns_key(&self, key: &str) -> bool;
}

impl<P: PartitionView + ?Sized> PartitionViewExt for P {
    fn is_related_key(&self, key: &str) -> bool {
        self.is_related(partition_of(key))
    }

    fn owns_key(&self, key: &str) -> bool {
        self.is_local_owner(partition_of(key))
    }
}

/// 64-bit words in a [`PartitionSet`]: 271 partitions need 5.
pub const PARTITION_SET_WORDS: usize = (crate::hash::PARTITION_COUNT as usize).div_ceil(64);

/// A set of partitions, one bit each, as it crosses the plugin boundary and
/// the cluster wire: the cluster module names with it the partitions whose
/// share of a map's Merkle tree it asks a node's storage for (see
/// [`super::accessor::StorageAccessor::merkle_node_in`]).
///
/// Partition `p` is bit `p % 64` of word `p / 64`. Partition numbers at or
/// above [`crate::PARTITION_COUNT`] are never members: [`Self::insert`]
/// ignores them and the constructors clear their bits.
#[repr(C)]
#[derive(
    abi_stable::StableAbi,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PartitionSet {
    /// The bits; see the type docs.
    pub words: [u64; PARTITION_SET_WORDS],
}

impl PartitionSet {
    /// No partition.
    pub const EMPTY: Self = Self {
        words: [0; PARTITION_SET_WORDS],
    };

    /// Every partition `0..PARTITION_COUNT`.
    pub const ALL: Self = {
        let mut words = [u64::MAX; PARTITION_SET_WORDS];
        let tail = crate::hash::PARTITION_COUNT as usize % 64;
        if tail != 0 {
            words[PARTITION_SET_WORDS - 1] = (1u64 << tail) - 1;
        }
        Self { words }
    };

    /// The set of the given partitions (numbers out of range are ignored).
    #[must_use]
    pub fn of(partitions: impl IntoIterator<Item = u32>) -> Self {
        let mut s = Self::EMPTY;
        for p in partitions {
            s.insert(p);
        }
        s
    }

    /// The set whose bits are `words`, bits past the last partition cleared
    /// (a set read from the wire).
    #[must_use]
    pub fn from_words(words: [u64; PARTITION_SET_WORDS]) -> Self {
        let mut s = Self { words };
        for (w, all) in s.words.iter_mut().zip(Self::ALL.words) {
            *w &= all;
        }
        s
    }

    /// Adds `p` (ignored when out of range).
    pub fn insert(&mut self, p: u32) {
        if p < crate::hash::PARTITION_COUNT {
            self.words[p as usize / 64] |= 1 << (p % 64);
        }
    }

    /// True when `p` is a member.
    #[must_use]
    pub fn contains(&self, p: u32) -> bool {
        p < crate::hash::PARTITION_COUNT && self.words[p as usize / 64] & (1 << (p % 64)) != 0
    }

    /// True when every member of `self` is in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.words.iter().zip(other.words).all(|(a, b)| a & !b == 0)
    }

    /// True when there is no member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..crate::hash::PARTITION_COUNT).filter(|p| self.contains(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_partition_sets_hold_exactly_the_partitions_in_range() {
        assert_eq!(PartitionSet::ALL.len(), crate::PARTITION_COUNT);
        assert!(PartitionSet::EMPTY.is_empty());
        let s = PartitionSet::of([0, 64, 270, 271, 5_000]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 270]);
        assert!(s.is_subset(&PartitionSet::ALL));
        assert!(!PartitionSet::ALL.is_subset(&s));
        let wire = PartitionSet::from_words([u64::MAX; PARTITION_SET_WORDS]);
        assert_eq!(
            wire,
            PartitionSet::ALL,
            "bits past partition 270 are cleared"
        );
    }
}
