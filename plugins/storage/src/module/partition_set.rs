//! [`PartitionSet`]: a set of partition numbers (one bit each of the
//! [`PARTITION_COUNT`] partitions), and [`HeldPartitions`], the set of a
//! map's partitions whose persisted records its memory reflects.

use std::sync::atomic::{AtomicU64, Ordering};

use hangar_core::hash::PARTITION_COUNT;
use hangar_core::module::partition::PartitionView;

const WORDS: usize = (PARTITION_COUNT as usize).div_ceil(64);

/// A set of partitions. Partition numbers at or above [`PARTITION_COUNT`]
/// are never members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PartitionSet([u64; WORDS]);

impl PartitionSet {
    /// No partition.
    pub(crate) const EMPTY: Self = Self([0; WORDS]);

    /// Every partition.
    pub(crate) const ALL: Self = {
        let mut words = [u64::MAX; WORDS];
        let tail = PARTITION_COUNT as usize % 64;
        if tail != 0 {
            words[WORDS - 1] = (1u64 << tail) - 1;
        }
        Self(words)
    };

    /// The partitions `view` says are related to this node (owner or
    /// backup) now.
    pub(crate) fn related(view: &dyn PartitionView) -> Self {
        let mut s = Self::EMPTY;
        for p in 0..PARTITION_COUNT {
            if view.is_related(p) {
                s.insert(p);
            }
        }
        s
    }

    /// Adds `p` (ignored when out of range).
    pub(crate) fn insert(&mut self, p: u32) {
        if p < PARTITION_COUNT {
            self.0[p as usize / 64] |= 1 << (p % 64);
        }
    }

    /// True when `p` is a member.
    pub(crate) fn contains(&self, p: u32) -> bool {
        p < PARTITION_COUNT && self.0[p as usize / 64] & (1 << (p % 64)) != 0
    }

    /// The members of `self` that are not in `other`.
    #[must_use]
    pub(crate) fn minus(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] & !other.0[i]))
    }

    /// The members of both.
    #[must_use]
    pub(crate) fn and(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// The members of either.
    #[must_use]
    pub(crate) fn or(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// True when there is no member.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Number of members.
    pub(crate) fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The members, ascending.
    pub(crate) fn iter(self) -> impl Iterator<Item = u32> {
        (0..PARTITION_COUNT).filter(move |p| self.contains(*p))
    }
}

impl From<hangar_core::module::partition::PartitionSet> for PartitionSet {
    fn from(s: hangar_core::module::partition::PartitionSet) -> Self {
        // `from_words` already cleared bits past the last partition.
        Self(hangar_core::module::partition::PartitionSet::from_words(s.words).words)
    }
}

/// The partitions whose persisted records a map's memory reflects (merged,
/// and not released since), readable without the map's lock.
///
/// # Contract
///
/// - Only a holder of the map's state lock changes it ([`Self::set`]), and
///   every change bumps the release epoch when it removes partitions, so a
///   writer that checked it before taking the lock can tell, under the
///   lock, whether a release ran in between ([`Self::epoch`]).
/// - `barrier` is the group committer's last sequence number when keys
///   were last dropped from memory: the persisted copy of what was dropped
///   is complete once the committer's watermark reaches it.
#[derive(Debug, Default)]
pub(crate) struct HeldPartitions {
    words: [AtomicU64; WORDS],
    epoch: AtomicU64,
    barrier: AtomicU64,
}

impl HeldPartitions {
    /// A map holding `set`.
    pub(crate) fn new(set: PartitionSet) -> Self {
        let h = Self::default();
        for (w, v) in h.words.iter().zip(set.0) {
            w.store(v, Ordering::Relaxed);
        }
        h
    }

    /// The set now.
    pub(crate) fn get(&self) -> PartitionSet {
        PartitionSet(std::array::from_fn(|i| {
            self.words[i].load(Ordering::Acquire)
        }))
    }

    /// Replaces the set; the caller MUST hold the map's state lock. When
    /// partitions are removed, the epoch moves on.
    pub(crate) fn set(&self, set: PartitionSet) {
        let removed = !self.get().minus(&set).is_empty();
        for (w, v) in self.words.iter().zip(set.0) {
            w.store(v, Ordering::Release);
        }
        if removed {
            self.bump();
        }
    }

    /// Records that keys were dropped from memory while the committer's
    /// last sequence number was `last_seq`; the caller MUST hold the map's
    /// state lock.
    pub(crate) fn dropped(&self, last_seq: u64) {
        self.barrier.fetch_max(last_seq, Ordering::AcqRel);
        self.bump();
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves on with every removal and every drop of keys.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// See the type's contract.
    pub(crate) fn barrier(&self) -> u64 {
        self.barrier.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_set_algebra_over_all_271_partitions() {
        let all = PartitionSet::ALL;
        assert_eq!(all.len(), PARTITION_COUNT);
        assert!(all.contains(0) && all.contains(PARTITION_COUNT - 1));
        assert!(
            !all.contains(PARTITION_COUNT),
            "out of range is never a member"
        );
        let mut a = PartitionSet::EMPTY;
        a.insert(3);
        a.insert(270);
        a.insert(271);
        assert_eq!(a.len(), 2);
        let mut b = PartitionSet::EMPTY;
        b.insert(3);
        b.insert(64);
        assert_eq!(a.minus(&b).len(), 1);
        assert!(a.minus(&b).contains(270));
        assert_eq!(a.and(&b).len(), 1);
        assert_eq!(a.or(&b).len(), 3);
        assert!(all.minus(&all).is_empty());
    }

    #[test]
    fn t11_held_set_bumps_its_epoch_only_on_removal_or_drop() {
        let h = HeldPartitions::new(PartitionSet::EMPTY);
        let mut s = PartitionSet::EMPTY;
        s.insert(5);
        h.set(s);
        assert_eq!((h.epoch(), h.get()), (0, s), "adding is no release");
        h.set(PartitionSet::EMPTY);
        assert_eq!(h.epoch(), 1);
        h.dropped(7);
        h.dropped(3);
        assert_eq!((h.epoch(), h.barrier()), (3, 7), "the barrier only grows");
    }
}
