//! A map's Merkle trie together with per-partition digests, both kept
//! current by every change the map reports (merges, TTL pruning, GC,
//! releases, loads: all of them go through [`KeyedTrie::insert`],
//! [`KeyedTrie::remove`] or [`KeyedTrie::replace`]).
//!
//! Anti-entropy repair (the cluster module's `repair`) compares the copies
//! of one partition on its owner and its backups. Restricting the map-wide
//! trie to one partition costs O(keys under the path) (see
//! `module/merkle_share.rs`); these digests answer in O(1) per bucket:
//!
//! - per partition: the wrapping sum and count of its items (the
//!   partition's root);
//! - per (partition, mid bucket): 256 mid buckets, the top 8 bits of the
//!   key's Merkle leaf (the depth-2 trie node);
//! - per (partition, leaf): the 4096 Merkle leaves, kept sparse.
//!
//! Each item counts as [`mix`] of the hash the trie sums (LWW: the
//! record's item hash; OR: the key's entry hash), so two replicas that hold
//! the same records have equal digests at every level. The mix matters:
//! the item hashes are FNV-1a over strings that differ in few characters
//! (`key:millis:counter:node`), so the differences between two versions of
//! different keys take few values, and a bucket where one key is newer on
//! one replica and another key newer on the other would often sum to the
//! same raw total on both and hide the divergence (the repair benchmark
//! met this at 100,000 keys). Mixed, such a cancellation is a 2^-32 event.
//!
//! Memory: nothing for a partition without items; a partition with items
//! holds 256 mid sums (1 KiB) plus one entry per occupied leaf.

use std::ops::Deref;

use hangar_core::merkle::{LeafIndex, MerkleTrie};
use hangar_core::{partition_of, PARTITION_COUNT};
use rustc_hash::FxHashMap;

/// Number of mid buckets per partition: the depth-2 trie nodes.
pub const MID_BUCKETS: usize = 256;

/// The mid bucket of a Merkle leaf (its top 8 bits).
#[must_use]
pub fn mid_of_leaf(leaf: LeafIndex) -> u16 {
    (leaf & 0x0fff) >> 4
}

/// Sum and count of the items of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    /// Wrapping sum of the item hashes.
    pub hash: u32,
    /// Number of items.
    pub count: u32,
}

impl Sum {
    fn apply(&mut self, delta: u32, added: bool, removed: bool) {
        self.hash = self.hash.wrapping_add(delta);
        self.count = self.count + u32::from(added) - u32::from(removed);
    }
}

/// The digests of one partition of one map.
#[derive(Debug, Clone)]
pub struct PartDigest {
    /// The partition's root.
    pub root: Sum,
    mids: Box<[Sum; MID_BUCKETS]>,
    leaves: FxHashMap<LeafIndex, Sum>,
}

impl PartDigest {
    fn new() -> Self {
        Self {
            root: Sum::default(),
            mids: Box::new([Sum::default(); MID_BUCKETS]),
            leaves: FxHashMap::default(),
        }
    }

    /// The occupied mid buckets `(index, sum)`, by index.
    pub fn mids(&self) -> impl Iterator<Item = (u16, Sum)> + '_ {
        self.mids
            .iter()
            .enumerate()
            .filter(|(_, s)| s.count > 0)
            // i < 256
            .map(|(i, s)| (i as u16, *s))
    }

    /// The occupied depth-1 nodes `(index, sum)` (`leaf >> 8`, 0..16), by
    /// index: each the sum of its 16 mid buckets.
    pub fn tops(&self) -> impl Iterator<Item = (u16, Sum)> + '_ {
        (0..16u16).filter_map(|t| {
            let base = usize::from(t) << 4;
            let s = self.mids[base..base + 16]
                .iter()
                .fold(Sum::default(), |a, m| Sum {
                    hash: a.hash.wrapping_add(m.hash),
                    count: a.count + m.count,
                });
            (s.count > 0).then_some((t, s))
        })
    }

    /// The occupied mid buckets under depth-1 node `top`, by index.
    pub fn mids_under(&self, top: u16) -> impl Iterator<Item = (u16, Sum)> + '_ {
        let base = (top & 0x0f) << 4;
        (base..base + 16).filter_map(|m| {
            let s = self.mids[usize::from(m)];
            (s.count > 0).then_some((m, s))
        })
    }

    /// The occupied leaves under mid bucket `mid`, `(leaf, sum)`, by leaf.
    pub fn leaves_under(&self, mid: u16) -> impl Iterator<Item = (LeafIndex, Sum)> + '_ {
        let base = (mid & 0xff) << 4;
        (base..base + 16).filter_map(|l| self.leaves.get(&l).map(|s| (l, *s)))
    }

    /// The sum of one leaf (zero when it holds nothing of this partition).
    #[must_use]
    pub fn leaf(&self, leaf: LeafIndex) -> Sum {
        self.leaves.get(&leaf).copied().unwrap_or_default()
    }

    /// The leaves holding items of this partition, in no particular order
    /// (what lets a map list one partition's keys without visiting all of
    /// its keys).
    pub fn occupied_leaves(&self) -> impl Iterator<Item = LeafIndex> + '_ {
        self.leaves.keys().copied()
    }
}

/// A map's Merkle trie plus its per-partition digests (module docs).
/// Reads of the trie go through `Deref`.
#[derive(Debug, Clone, Default)]
pub struct KeyedTrie {
    trie: MerkleTrie,
    parts: FxHashMap<u32, PartDigest>,
}

impl Deref for KeyedTrie {
    type Target = MerkleTrie;
    fn deref(&self) -> &MerkleTrie {
        &self.trie
    }
}

/// The value an item hash adds to the per-partition digests: the murmur3
/// 32-bit finalizer, a bijection that spreads structured differences.
#[must_use]
pub fn mix(h: u32) -> u32 {
    let mut h = h;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

impl KeyedTrie {
    fn apply(&mut self, key: &str, leaf: LeafIndex, old: Option<u32>, new: Option<u32>) {
        let (old, new) = (old.map(mix), new.map(mix));
        let delta = new.unwrap_or(0).wrapping_sub(old.unwrap_or(0));
        let (added, removed) = (new.is_some(), old.is_some());
        let p = partition_of(key);
        let part = self.parts.entry(p).or_insert_with(PartDigest::new);
        part.root.apply(delta, added, removed);
        if part.root.count == 0 {
            self.parts.remove(&p);
            return;
        }
        part.mids[usize::from(mid_of_leaf(leaf))].apply(delta, added, removed);
        let l = part.leaves.entry(leaf & 0x0fff).or_default();
        l.apply(delta, added, removed);
        if l.count == 0 {
            part.leaves.remove(&(leaf & 0x0fff));
        }
    }

    /// `key`, in `leaf`, enters with item hash `item`.
    pub fn insert(&mut self, key: &str, leaf: LeafIndex, item: u32) {
        self.trie.insert(leaf, item);
        self.apply(key, leaf, None, Some(item));
    }

    /// `key`, inserted into `leaf` with item hash `item`, leaves.
    pub fn remove(&mut self, key: &str, leaf: LeafIndex, item: u32) {
        self.trie.remove(leaf, item);
        self.apply(key, leaf, Some(item), None);
    }

    /// The item hash of `key` in `leaf` changes from `old` to `new`.
    pub fn replace(&mut self, key: &str, leaf: LeafIndex, old: u32, new: u32) {
        self.trie.replace(leaf, old, new);
        self.apply(key, leaf, Some(old), Some(new));
    }

    /// The digests of `partition`; `None` when the map holds nothing of it.
    #[must_use]
    pub fn partition(&self, partition: u32) -> Option<&PartDigest> {
        self.parts.get(&partition)
    }

    /// Partitions holding items, in no particular order.
    pub fn partitions(&self) -> impl Iterator<Item = (u32, &PartDigest)> + '_ {
        self.parts.iter().map(|(p, d)| (*p, d))
    }

    /// Number of partitions with items (at most [`PARTITION_COUNT`]).
    #[must_use]
    pub fn partition_count(&self) -> usize {
        debug_assert!(self.parts.len() <= PARTITION_COUNT as usize);
        self.parts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::merkle::leaf_of_key;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The digests rebuilt from scratch over `items` (key -> item hash).
    fn rebuild(items: &HashMap<String, u32>) -> KeyedTrie {
        let mut t = KeyedTrie::default();
        for (k, h) in items {
            t.insert(k, leaf_of_key(k), *h);
        }
        t
    }

    fn assert_same(a: &KeyedTrie, b: &KeyedTrie) {
        assert_eq!(a.root(), b.root());
        assert_eq!(a.partition_count(), b.partition_count());
        for (p, da) in a.partitions() {
            let db = b.partition(p).expect("same partitions");
            assert_eq!(da.root, db.root, "partition {p}");
            assert_eq!(da.mids().collect::<Vec<_>>(), db.mids().collect::<Vec<_>>());
            assert_eq!(da.tops().collect::<Vec<_>>(), db.tops().collect::<Vec<_>>());
            let tops: u32 = da.tops().map(|(_, s)| s.count).sum();
            assert_eq!(
                tops, da.root.count,
                "partition {p}: tops add up to the root"
            );
            for (t, _) in da.tops() {
                assert_eq!(
                    da.mids_under(t).collect::<Vec<_>>(),
                    db.mids_under(t).collect::<Vec<_>>()
                );
            }
            for (m, _) in da.mids() {
                assert_eq!(
                    da.leaves_under(m).collect::<Vec<_>>(),
                    db.leaves_under(m).collect::<Vec<_>>()
                );
            }
        }
    }

    proptest! {
        /// After random inserts, replaces and removes, the incrementally
        /// kept digests equal a rebuild over the surviving items, and the
        /// partition roots add up to the mixed hashes of those items.
        #[test]
        fn t10_incremental_digests_equal_a_rebuild(
            ops in prop::collection::vec((0u8..3, 0u16..400, any::<u32>()), 1..400)
        ) {
            let mut t = KeyedTrie::default();
            let mut items: HashMap<String, u32> = HashMap::new();
            for (op, k, h) in ops {
                let key = format!("k{k}");
                let leaf = leaf_of_key(&key);
                match (op, items.get(&key).copied()) {
                    (0 | 1, None) => { t.insert(&key, leaf, h); items.insert(key, h); }
                    (0 | 1, Some(old)) => { t.replace(&key, leaf, old, h); items.insert(key, h); }
                    (_, Some(old)) => { t.remove(&key, leaf, old); items.remove(&key); }
                    (_, None) => {}
                }
            }
            assert_same(&t, &rebuild(&items));
            let sum = t.partitions().fold(0u32, |s, (_, d)| s.wrapping_add(d.root.hash));
            let direct = items.values().fold(0u32, |s, h| s.wrapping_add(mix(*h)));
            prop_assert_eq!(sum, direct);
        }
    }

    fn lww(v: i64, m: u64, tomb: bool) -> hangar_core::LwwRecord {
        hangar_core::LwwRecord {
            value: if tomb {
                abi_stable::std_types::ROption::RNone
            } else {
                abi_stable::std_types::ROption::RSome(hangar_core::RawValue::encode(&v).unwrap())
            },
            timestamp: hangar_core::Timestamp::new(m, 0, "n"),
            ttl_ms: abi_stable::std_types::ROption::RNone,
        }
    }

    fn or(tag: String, v: i64, m: u64) -> hangar_core::OrRecord {
        hangar_core::OrRecord {
            value: hangar_core::RawValue::encode(&v).unwrap(),
            timestamp: hangar_core::Timestamp::new(m, 0, "n"),
            tag: tag.into(),
            ttl_ms: abi_stable::std_types::ROption::RNone,
        }
    }

    proptest! {
        /// An LWW map's digests, after random merges (new keys, newer and
        /// stale versions, tombstones), tombstone pruning (GC) and releases
        /// of partitions, equal a rebuild from the records it holds.
        #[test]
        fn t20_lww_map_digests_equal_a_rebuild(
            ops in prop::collection::vec((0u8..8, 0u16..300, 1u64..50), 1..300)
        ) {
            let mut m = super::super::LwwMap::new();
            for (op, k, ms) in ops {
                let key = format!("k{k}");
                match op {
                    0..=4 => { m.merge(&key, &lww(i64::from(k), ms, false)); }
                    5 => { m.merge(&key, &lww(0, ms, true)); }
                    6 => { m.prune(&hangar_core::Timestamp::new(ms, 0, "n")); }
                    _ => {
                        let p = partition_of(&key);
                        m.release_in_leaf(leaf_of_key(&key), |x| partition_of(x) == p);
                    }
                }
            }
            let mut items = HashMap::new();
            for (k, r) in m.records() {
                let ts = &r.timestamp;
                items.insert(
                    k.to_string(),
                    hangar_core::merkle::lww_item_hash(k, ts.millis, ts.counter, ts.node_id.as_str()),
                );
            }
            assert_same(m.digests(), &rebuild(&items));
        }

        /// An OR map's digests, after random adds, removes (tombstones),
        /// pruning and releases, equal a rebuild from its entry hashes.
        #[test]
        fn t21_or_map_digests_equal_a_rebuild(
            ops in prop::collection::vec((0u8..8, 0u16..200, 0u16..400, 1u64..50), 1..300)
        ) {
            let mut m = super::super::OrMap::new();
            for (op, k, tag, ms) in ops {
                let key = format!("k{k}");
                match op {
                    0..=4 => { m.apply(&key, &or(format!("t{tag}"), i64::from(k), ms)); }
                    5 => { m.apply_tombstone(&format!("t{tag}")); }
                    6 => { m.prune_tags(&[format!("t{tag}").as_str()]); }
                    _ => {
                        let p = partition_of(&key);
                        m.release_in_leaf(leaf_of_key(&key), |x| partition_of(x) == p);
                    }
                }
            }
            let keys: Vec<String> = m.keys().map(str::to_string).collect();
            let items: HashMap<String, u32> = keys
                .into_iter()
                .map(|k| { let h = m.entry_hash(&k).unwrap(); (k, h) })
                .collect();
            assert_same(m.digests(), &rebuild(&items));
        }
    }

    /// Keys that diverged in opposite directions (one newer on each
    /// replica) in one partition: with raw FNV item hashes some pairs'
    /// sums cancel (the versions differ in one character, so the hash
    /// differences take few values); mixed, none do.
    #[test]
    fn t12_opposite_divergences_do_not_cancel() {
        use hangar_core::merkle::lww_item_hash;
        let mut by_partition: HashMap<u32, Vec<String>> = HashMap::new();
        for i in (0..100_000).step_by(100) {
            let k = format!("key-{i}");
            by_partition.entry(partition_of(&k)).or_default().push(k);
        }
        let h = |k: &str, ms: u64| lww_item_hash(k, ms, 0, "w");
        let (mut raw, mut mixed) = (0, 0);
        for keys in by_partition.values() {
            for a in keys {
                for b in keys {
                    if a >= b {
                        continue;
                    }
                    let (a1, a2, b1, b2) = (h(a, 1000), h(a, 2000), h(b, 1000), h(b, 2000));
                    raw += usize::from(a2.wrapping_add(b1) == a1.wrapping_add(b2));
                    mixed +=
                        usize::from(mix(a2).wrapping_add(mix(b1)) == mix(a1).wrapping_add(mix(b2)));
                }
            }
        }
        assert!(raw > 0, "raw sums were expected to cancel for some pairs");
        assert_eq!(mixed, 0, "mixed sums cancelled");
    }

    #[test]
    fn t11_an_emptied_partition_is_dropped() {
        let mut t = KeyedTrie::default();
        t.insert("a", leaf_of_key("a"), 5);
        assert_eq!(t.partition_count(), 1);
        t.remove("a", leaf_of_key("a"), 5);
        assert_eq!(t.partition_count(), 0);
        assert!(t.partition(partition_of("a")).is_none());
    }
}
