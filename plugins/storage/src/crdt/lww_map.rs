//! The last-write-wins map: one record per key, the strictly greatest
//! timestamp wins, a record with no value is a tombstone.
//!
//! Differences from the legacy `LWWMap`, on purpose: the map does not call
//! the HLC (the caller updates it before merging), and `merge` hands back the
//! record it replaced so that live queries can diff old against new.

use abi_stable::std_types::ROption;
use hangar_core::merkle::{leaf_of_key, leaf_path, lww_item_hash, Buckets, LeafIndex, TriePath};
use hangar_core::{LwwRecord, RawValue, Timestamp};

use super::lww_store::{LwwSlot, LwwStore};
use super::outcome::LwwMergeOutcome;
use super::partition_digest::KeyedTrie;
use super::stamp::{NodeInterner, Stamp};

/// A last-write-wins map with its Merkle trie.
///
/// Invariants:
/// - a key's stored record is the one with the strictly greatest timestamp
///   ever merged for it (ties keep the first: equal timestamps name the same
///   write), until `prune` drops it;
/// - the Merkle root is the wrapping sum of `lww_item_hash(key, ts)` over all
///   stored records, tombstones included.
///
/// Memory: one 40-byte table slot and one allocation (key, value and TTL
/// together) per record; see `lww_store`.
#[derive(Debug, Clone, Default)]
pub struct LwwMap {
    store: LwwStore,
    nodes: NodeInterner,
    trie: KeyedTrie,
}

impl LwwMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn item_hash(&self, slot: &LwwSlot) -> u32 {
        let st = slot.stamp;
        lww_item_hash(
            slot.key(),
            st.millis,
            st.counter,
            self.nodes.name(st.node()),
        )
    }

    fn to_record(&self, slot: &LwwSlot) -> LwwRecord {
        LwwRecord {
            value: slot.value().map(RawValue::from_msgpack).into(),
            timestamp: slot.stamp.timestamp(&self.nodes),
            ttl_ms: slot.ttl().into(),
        }
    }

    fn pack(&mut self, key: &str, record: &LwwRecord) -> LwwSlot {
        let ttl = record.ttl_ms.into_option();
        let stamp = Stamp::pack(&record.timestamp, ttl.is_some(), &mut self.nodes);
        let value = match &record.value {
            ROption::RSome(v) => Some(v.as_bytes()),
            ROption::RNone => None,
        };
        LwwSlot::new(key, value, ttl, stamp)
    }

    /// Merges `record` into `key`: it is stored only when there is no record
    /// yet or its timestamp is strictly greater than the stored one's.
    ///
    /// The caller MUST have folded `record.timestamp` into the node's HLC.
    pub fn merge(&mut self, key: &str, record: &LwwRecord) -> LwwMergeOutcome {
        let leaf = leaf_of_key(key);
        let ts = &record.timestamp;
        let new_hash = lww_item_hash(key, ts.millis, ts.counter, ts.node_id.as_str());
        let (previous, old_hash) = match self.store.get(leaf, key) {
            Some(slot) if slot.stamp.cmp_ts(ts, &self.nodes).is_ge() => {
                return LwwMergeOutcome {
                    changed: false,
                    previous: None,
                };
            }
            Some(slot) => (Some(self.to_record(slot)), Some(self.item_hash(slot))),
            None => (None, None),
        };
        let slot = self.pack(key, record);
        match (old_hash, self.store.get_mut(leaf, key)) {
            (Some(old), Some(stored)) => {
                *stored = slot;
                self.trie.replace(key, leaf, old, new_hash);
            }
            _ => {
                self.store.insert_new(leaf, slot);
                self.trie.insert(key, leaf, new_hash);
            }
        }
        LwwMergeOutcome {
            changed: true,
            previous,
        }
    }

    fn slot(&self, key: &str) -> Option<&LwwSlot> {
        self.store.get(leaf_of_key(key), key)
    }

    /// The live value of `key` as msgpack bytes: `None` when the key is
    /// missing, a tombstone, or expired at `now_ms` (alive at exactly
    /// `millis + ttl`).
    #[must_use]
    pub fn get(&self, key: &str, now_ms: u64) -> Option<&[u8]> {
        let slot = self.slot(key)?;
        if slot.is_expired(now_ms) {
            return None;
        }
        slot.value()
    }

    /// The stored record of `key` as it is, tombstone or expired included
    /// (what sync and persistence send).
    #[must_use]
    pub fn get_record(&self, key: &str) -> Option<LwwRecord> {
        self.slot(key).map(|s| self.to_record(s))
    }

    /// True when `key` has a stored record (tombstones included).
    #[must_use]
    pub fn contains_key(&self, key: &str) -> bool {
        self.slot(key).is_some()
    }

    /// Number of stored records, tombstones and expired records included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when no record is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// The live entries at `now_ms` (no tombstones, nothing expired) as
    /// `(key, msgpack value)`, in no particular order.
    pub fn entries(&self, now_ms: u64) -> impl Iterator<Item = (&str, &[u8])> {
        self.store.iter().filter_map(move |s| {
            if s.is_expired(now_ms) {
                return None;
            }
            Some((s.key(), s.value()?))
        })
    }

    /// Every stored key, tombstones included, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.store.iter().map(LwwSlot::key)
    }

    /// The stored keys (tombstones included) of `partition`, in no
    /// particular order. Visits only the Merkle leaves the partition's
    /// digests list as occupied, so it costs O(keys in those leaves), not
    /// O(keys of the map): a partition transfer pages through one
    /// partition under the map's lock while writers wait for it.
    #[must_use]
    pub fn partition_keys(&self, partition: u32) -> Vec<&str> {
        let Some(d) = self.trie.partition(partition) else {
            return Vec::new();
        };
        d.occupied_leaves()
            .flat_map(|l| {
                self.store
                    .leaf(l)
                    .map(LwwSlot::key)
                    .filter(move |k| hangar_core::partition_of(k) == partition)
            })
            .collect()
    }

    /// Every stored record, tombstones and expired included, in no
    /// particular order (snapshots, persistence, anti-entropy).
    pub fn records(&self) -> impl Iterator<Item = (&str, LwwRecord)> {
        self.store.iter().map(|s| (s.key(), self.to_record(s)))
    }

    /// Keys whose record has a value and a TTL that ran out before `now_ms`,
    /// with the moment it expired (`millis + ttl`). Garbage collection turns
    /// each into the tombstone `{millis + ttl, 0, <this node>}` via `merge`.
    #[must_use]
    pub fn expired(&self, now_ms: u64) -> Vec<(&str, u64)> {
        self.store
            .iter()
            .filter(|s| !s.is_tombstone() && s.is_expired(now_ms))
            .map(|s| {
                let ttl = s.ttl().unwrap_or(0);
                (s.key(), s.stamp.millis.saturating_add(ttl))
            })
            .collect()
    }

    /// Drops tombstones whose timestamp is below `older_than` (they leave
    /// the Merkle trie too) and returns their keys. Live and expired records
    /// stay.
    pub fn prune(&mut self, older_than: &Timestamp) -> Vec<String> {
        let nodes = &self.nodes;
        let dropped = self
            .store
            .extract(|s| s.is_tombstone() && s.stamp.cmp_ts(older_than, nodes).is_lt());
        dropped
            .into_iter()
            .map(|(leaf, slot)| {
                let h = self.item_hash(&slot);
                self.trie.remove(slot.key(), leaf, h);
                slot.key().to_string()
            })
            .collect()
    }

    /// Drops from memory the records of Merkle leaf `leaf` whose key
    /// `pick` selects (tombstones included; they leave the Merkle trie too)
    /// and returns their keys. Not a CRDT operation: the records are not
    /// deleted, only no longer held here (the storage module releases the
    /// keys of partitions its node stopped holding, leaf by leaf so that the
    /// work can be cut into slices).
    pub fn release_in_leaf(&mut self, leaf: LeafIndex, pick: impl Fn(&str) -> bool) -> Vec<String> {
        let dropped = self.store.extract_leaf(leaf, |s| pick(s.key()));
        dropped
            .into_iter()
            .map(|slot| {
                let h = self.item_hash(&slot);
                self.trie.remove(slot.key(), leaf, h);
                slot.key().to_string()
            })
            .collect()
    }

    // ---- Merkle -------------------------------------------------------------

    /// The Merkle root; 0 when the map is empty.
    #[must_use]
    pub fn merkle_root(&self) -> u32 {
        self.trie.root()
    }

    /// The occupied children of the trie node at `path` (see
    /// [`MerkleTrie::buckets`]).
    #[must_use]
    pub fn merkle_buckets(&self, path: &str) -> Buckets {
        self.trie.buckets(path)
    }

    /// The trie with its per-partition digests (see
    /// [`super::partition_digest`]).
    #[must_use]
    pub fn digests(&self) -> &KeyedTrie {
        &self.trie
    }

    /// `(key, item hash, stamp)` of the stored records (tombstones
    /// included) of `partition` in Merkle leaf `leaf`, sorted by key: the
    /// finest level repair compares. The stamp is `millis << 16 |
    /// min(counter, 0xffff)` of the record's timestamp.
    #[must_use]
    pub fn partition_items_in_leaf(
        &self,
        partition: u32,
        leaf: LeafIndex,
    ) -> Vec<(&str, u32, u64)> {
        let mut out: Vec<(&str, u32, u64)> = self
            .store
            .leaf(leaf)
            .filter(|s| hangar_core::partition_of(s.key()) == partition)
            .map(|s| {
                let stamp = (s.stamp.millis << 16) | u64::from(s.stamp.counter.min(0xffff));
                (s.key(), self.item_hash(s), stamp)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// `(leaf, item hash)` of every stored record (tombstones included)
    /// under `path` whose key `pick` selects: the items whose sums make a
    /// restricted share of the trie (see
    /// [`hangar_core::merkle::buckets_of_items`]). Visits every key under
    /// `path`: O(keys under the path).
    pub fn item_hashes_under<'a>(
        &'a self,
        path: TriePath,
        pick: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (LeafIndex, u32)> + 'a {
        self.trie
            .occupied_leaves()
            .filter(move |l| path.contains_leaf(*l))
            .flat_map(move |l| {
                self.store
                    .leaf(l)
                    .filter(|s| pick(s.key()))
                    .map(move |s| (l, self.item_hash(s)))
                    .collect::<Vec<_>>()
            })
    }

    /// The hash of the trie node at `path`, `None` for an invalid path.
    #[must_use]
    pub fn merkle_node_hash(&self, path: &str) -> Option<u32> {
        self.trie.node_hash(path)
    }

    /// True when `path` names a leaf holding keys.
    #[must_use]
    pub fn is_leaf(&self, path: &str) -> bool {
        self.trie.is_leaf(path)
    }

    /// The keys of the leaf at `path`, sorted; empty for other paths.
    #[must_use]
    pub fn keys_in_leaf(&self, path: &str) -> Vec<&str> {
        let mut keys: Vec<&str> = parse_leaf(path)
            .map(|l| self.store.leaf(l).map(LwwSlot::key).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    /// The stored records of the leaf at `path`, sorted by key (the answer to
    /// a leaf request in Merkle sync).
    #[must_use]
    pub fn records_in_leaf(&self, path: &str) -> Vec<(&str, LwwRecord)> {
        let mut out: Vec<(&str, LwwRecord)> = parse_leaf(path)
            .map(|l| {
                self.store
                    .leaf(l)
                    .map(|s| (s.key(), self.to_record(s)))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The leaf path `key` belongs to.
    #[must_use]
    pub fn leaf_path_of(key: &str) -> String {
        leaf_path(leaf_of_key(key))
    }
}

fn parse_leaf(path: &str) -> Option<LeafIndex> {
    TriePath::parse(path).and_then(TriePath::leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::merkle::LwwMerkleTree;

    fn ts(m: u64, c: u32, n: &str) -> Timestamp {
        Timestamp::new(m, c, n)
    }

    fn put(v: i64, t: Timestamp, ttl: Option<u64>) -> LwwRecord {
        LwwRecord {
            value: ROption::RSome(RawValue::encode(&v).unwrap()),
            timestamp: t,
            ttl_ms: ttl.into(),
        }
    }

    fn del(t: Timestamp) -> LwwRecord {
        LwwRecord {
            value: ROption::RNone,
            timestamp: t,
            ttl_ms: ROption::RNone,
        }
    }

    fn val(m: &LwwMap, k: &str, now: u64) -> Option<i64> {
        m.get(k, now).map(|b| rmp_serde::from_slice(b).unwrap())
    }

    #[test]
    fn t10_merge_keeps_the_strictly_greatest_timestamp() {
        let mut m = LwwMap::new();
        let r1 = put(1, ts(10, 0, "a"), None);
        let out = m.merge("k", &r1);
        assert_eq!(
            out,
            LwwMergeOutcome {
                changed: true,
                previous: None
            }
        );
        // older loses
        assert!(!m.merge("k", &put(0, ts(9, 5, "z"), None)).changed);
        // equal timestamp is a no-op even with another value
        assert!(!m.merge("k", &put(7, ts(10, 0, "a"), None)).changed);
        assert_eq!(val(&m, "k", 0), Some(1));
        // node id breaks the tie on millis and counter
        let out = m.merge("k", &put(2, ts(10, 0, "b"), None));
        assert!(out.changed);
        assert_eq!(out.previous, Some(r1), "the replaced record is handed back");
        assert_eq!(val(&m, "k", 0), Some(2));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn t11_tombstones_hide_the_key_but_stay_stored() {
        let mut m = LwwMap::new();
        m.merge("k", &put(1, ts(1, 0, "a"), None));
        let out = m.merge("k", &del(ts(2, 0, "a")));
        assert!(out.changed);
        assert!(out.previous.is_some_and(|p| !p.is_tombstone()));
        assert_eq!(m.get("k", 0), None);
        assert_eq!(m.entries(0).count(), 0);
        assert!(m.contains_key("k"));
        assert_eq!(m.len(), 1);
        assert!(m.get_record("k").unwrap().is_tombstone());
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["k"]);
    }

    #[test]
    fn t12_ttl_expiry_is_strict_and_hides_records() {
        let mut m = LwwMap::new();
        m.merge("k", &put(1, ts(1000, 0, "a"), Some(100)));
        m.merge("forever", &put(2, ts(1000, 0, "a"), None));
        assert_eq!(val(&m, "k", 1100), Some(1), "alive at exactly millis + ttl");
        assert_eq!(val(&m, "k", 1101), None);
        assert_eq!(
            m.entries(1101).map(|(k, _)| k).collect::<Vec<_>>(),
            vec!["forever"]
        );
        assert_eq!(m.expired(1101), vec![("k", 1100)]);
        assert!(m.expired(1100).is_empty());
        assert_eq!(
            m.get_record("k").unwrap().ttl_ms,
            ROption::RSome(100),
            "ttl is kept"
        );
    }

    #[test]
    fn t13_records_round_trip_through_the_compact_form() {
        let mut m = LwwMap::new();
        let r = put(42, ts(1_700_000_000_000, 3, "node-x"), Some(5));
        m.merge("ключ", &r);
        assert_eq!(m.get_record("ключ"), Some(r.clone()));
        assert_eq!(m.records().collect::<Vec<_>>(), vec![("ключ", r)]);
    }

    #[test]
    fn t20_merkle_root_matches_the_core_tree() {
        let mut m = LwwMap::new();
        let mut t = LwwMerkleTree::new();
        for (i, k) in ["a", "b", "c", "a", "d"].iter().enumerate() {
            let stamp = ts(10 + i as u64, 0, "n");
            m.merge(k, &put(i as i64, stamp.clone(), None));
            t.update(k, &stamp);
        }
        m.merge("b", &del(ts(99, 0, "n")));
        t.update("b", &ts(99, 0, "n"));
        assert_eq!(m.merkle_root(), t.root());
        assert_eq!(m.merkle_buckets(""), t.buckets(""));
        let path = LwwMap::leaf_path_of("a");
        assert!(m.is_leaf(&path));
        assert_eq!(m.keys_in_leaf(&path), t.keys_in_leaf(&path));
        assert_eq!(m.merkle_node_hash(&path), t.node_hash(&path));
        assert_eq!(m.records_in_leaf(&path)[0].0, "a");
        // a losing merge leaves the root alone
        let root = m.merkle_root();
        m.merge("a", &put(0, ts(1, 0, "n"), None));
        assert_eq!(m.merkle_root(), root);
    }

    #[test]
    fn t30_prune_drops_only_old_tombstones() {
        let mut m = LwwMap::new();
        m.merge("old-del", &del(ts(5, 0, "n")));
        m.merge("new-del", &del(ts(50, 0, "n")));
        m.merge("old-put", &put(1, ts(5, 0, "n"), None));
        m.merge("old-expired", &put(1, ts(5, 0, "n"), Some(1)));
        let pruned = m.prune(&ts(10, 0, "n"));
        assert_eq!(pruned, vec!["old-del".to_string()]);
        assert_eq!(m.len(), 3);
        assert!(!m.contains_key("old-del"));
        let mut t = LwwMerkleTree::new();
        t.update("new-del", &ts(50, 0, "n"));
        t.update("old-put", &ts(5, 0, "n"));
        t.update("old-expired", &ts(5, 0, "n"));
        assert_eq!(m.merkle_root(), t.root(), "pruned keys leave the trie");
        m.prune(&ts(1000, 0, "n"));
        m.merge("old-put", &del(ts(6, 0, "n")));
        m.merge("old-expired", &del(ts(6, 0, "n")));
        m.prune(&ts(1000, 0, "n"));
        assert!(m.is_empty());
        assert_eq!(m.merkle_root(), 0, "emptied map has root 0");
    }

    #[test]
    fn t31_a_pruned_key_accepts_any_later_write() {
        let mut m = LwwMap::new();
        m.merge("k", &del(ts(5, 0, "n")));
        m.prune(&ts(10, 0, "n"));
        assert!(m.merge("k", &put(1, ts(1, 0, "n"), None)).changed);
    }

    /// The keys of `p` by brute force: the reference `partition_keys` must
    /// agree with.
    fn brute(m: &LwwMap, p: u32) -> Vec<String> {
        let mut v: Vec<String> = m
            .keys()
            .filter(|k| hangar_core::partition_of(k) == p)
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn t40_partition_keys_are_the_keys_of_the_partition_tombstones_included() {
        let mut m = LwwMap::new();
        for i in 0..3_000u64 {
            m.merge(&format!("k{i}"), &put(1, ts(i + 1, 0, "a"), None));
        }
        for i in (0..3_000u64).step_by(7) {
            m.merge(&format!("k{i}"), &del(ts(10_000 + i, 0, "a")));
        }
        // A released leaf leaves the digests too.
        let leaf = leaf_of_key("k1");
        let released = m.release_in_leaf(leaf, |_| true);
        assert!(!released.is_empty());
        let mut seen = 0;
        for p in 0..hangar_core::PARTITION_COUNT {
            let mut got: Vec<String> = m
                .partition_keys(p)
                .into_iter()
                .map(str::to_string)
                .collect();
            got.sort();
            assert_eq!(got, brute(&m, p), "partition {p}");
            seen += got.len();
        }
        assert_eq!(seen, m.len(), "every key is in exactly one partition");
    }
}
