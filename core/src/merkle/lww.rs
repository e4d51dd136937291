//! The keyed Merkle tree of a last-write-wins map, as the TopGun client and
//! the cluster's anti-entropy compute it.
//!
//! Item hash: `fnv1a_utf16("{key}:{millis}:{counter}:{nodeId}")`. The value
//! and the TTL are deliberately not hashed: one timestamp names one write, so
//! equal timestamps mean equal records. Tombstones count until pruned.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{leaf_of_key, Buckets, Fnv1aUtf16, LeafMap, MerkleTrie, TriePath};
use crate::types::Timestamp;

/// The hash of one LWW item: `fnv1a_utf16("{key}:{millis}:{counter}:{nodeId}")`.
#[must_use]
pub fn lww_item_hash(key: &str, millis: u64, counter: u32, node_id: &str) -> u32 {
    let mut h = Fnv1aUtf16::new();
    // Writing into the hasher cannot fail.
    let _ = write!(h, "{key}:{millis}:{counter}:{node_id}");
    h.finish()
}

/// A keyed LWW Merkle tree: it remembers each key's item hash, so `update`
/// and `remove` need only the key and its new timestamp.
///
/// Contract: after any sequence of `update`/`remove`, `root()` equals the
/// wrapping sum of `lww_item_hash` over the keys present with their latest
/// timestamps, whatever the order of the calls. O(depth) per call.
#[derive(Debug, Clone, Default)]
pub struct LwwMerkleTree {
    trie: MerkleTrie,
    leaves: LeafMap<HashMap<Box<str>, u32>>,
}

impl LwwMerkleTree {
    /// An empty tree (root 0).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s item to the record written at `ts` (insert or replace).
    pub fn update(&mut self, key: &str, ts: &Timestamp) {
        let item = lww_item_hash(key, ts.millis, ts.counter, ts.node_id.as_str());
        let leaf = leaf_of_key(key);
        let entries = self.leaves.entry(leaf).or_default();
        match entries.get_mut(key) {
            Some(old) => {
                let prev = std::mem::replace(old, item);
                self.trie.replace(leaf, prev, item);
            }
            None => {
                entries.insert(key.into(), item);
                self.trie.insert(leaf, item);
            }
        }
    }

    /// Drops `key` (a pruned tombstone); returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let leaf = leaf_of_key(key);
        let Some(entries) = self.leaves.get_mut(&leaf) else {
            return false;
        };
        let Some(item) = entries.remove(key) else {
            return false;
        };
        if entries.is_empty() {
            self.leaves.remove(&leaf);
        }
        self.trie.remove(leaf, item);
        true
    }

    /// The root hash; 0 when empty.
    #[must_use]
    pub fn root(&self) -> u32 {
        self.trie.root()
    }

    /// Number of keys in the tree.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.trie.len()
    }

    /// True when no key is in the tree.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// The occupied children of the node at `path`; see [`MerkleTrie::buckets`].
    #[must_use]
    pub fn buckets(&self, path: &str) -> Buckets {
        self.trie.buckets(path)
    }

    /// The hash of the node at `path`; see [`MerkleTrie::node_hash`].
    #[must_use]
    pub fn node_hash(&self, path: &str) -> Option<u32> {
        self.trie.node_hash(path)
    }

    /// True when `path` is a leaf holding keys.
    #[must_use]
    pub fn is_leaf(&self, path: &str) -> bool {
        self.trie.is_leaf(path)
    }

    /// The keys in the leaf at `path`, sorted; empty for any other path.
    #[must_use]
    pub fn keys_in_leaf(&self, path: &str) -> Vec<&str> {
        let mut keys: Vec<&str> = TriePath::parse(path)
            .and_then(TriePath::leaf)
            .and_then(|l| self.leaves.get(&l))
            .map(|e| e.keys().map(AsRef::as_ref).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    /// The item hash stored for `key`, if present.
    #[must_use]
    pub fn item_hash(&self, key: &str) -> Option<u32> {
        self.leaves.get(&leaf_of_key(key))?.get(key).copied()
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fnv1a_utf16;
    use crate::merkle::{key_hash_hex, leaf_path};

    fn ts(m: u64, c: u32, n: &str) -> Timestamp {
        Timestamp::new(m, c, n)
    }

    #[test]
    fn t10_known_vectors() {
        // Computed independently (Python, FNV-1a over UTF-16 units):
        // fnv("key1:1000:0:node-1") = 0x0af32fe8, fnv("key1") = 0x374a6a67.
        assert_eq!(lww_item_hash("key1", 1000, 0, "node-1"), 0x0af3_2fe8);
        assert_eq!(key_hash_hex("key1"), "374a6a67");
        let mut t = LwwMerkleTree::new();
        t.update("key1", &ts(1000, 0, "node-1"));
        assert_eq!(t.root(), 0x0af3_2fe8);
        assert!(t.is_leaf("374"));
        assert_eq!(t.keys_in_leaf("374"), vec!["key1"]);
        assert_eq!(
            t.buckets("").into_iter().collect::<Vec<_>>(),
            vec![('3', 0x0af3_2fe8)]
        );
        assert_eq!(
            t.buckets("37").into_iter().collect::<Vec<_>>(),
            vec![('4', 0x0af3_2fe8)]
        );
    }

    #[test]
    fn t11_two_items_sum_with_wrapping() {
        // fnv("hello:1:2:n") = 0x50b44852, fnv("key1:1000:0:node-1") = 0x0af32fe8
        let mut t = LwwMerkleTree::new();
        t.update("hello", &ts(1, 2, "n"));
        t.update("key1", &ts(1000, 0, "node-1"));
        assert_eq!(lww_item_hash("hello", 1, 2, "n"), 0x50b4_4852);
        assert_eq!(t.root(), 0x50b4_4852u32.wrapping_add(0x0af3_2fe8));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn t12_item_hash_is_the_hash_of_the_joined_string() {
        assert_eq!(
            lww_item_hash("ü:k", 17, 3, "n-2"),
            fnv1a_utf16("ü:k:17:3:n-2")
        );
    }

    #[test]
    fn t20_root_is_independent_of_insertion_order() {
        let items = [
            ("a", ts(1, 0, "x")),
            ("b", ts(2, 0, "x")),
            ("c", ts(3, 5, "y")),
            ("a", ts(4, 0, "y")),
        ];
        let mut fwd = LwwMerkleTree::new();
        for (k, t) in &items {
            fwd.update(k, t);
        }
        let mut rev = LwwMerkleTree::new();
        // last-timestamp-per-key state, reached in another order
        rev.update("c", &ts(3, 5, "y"));
        rev.update("a", &ts(4, 0, "y"));
        rev.update("b", &ts(2, 0, "x"));
        assert_eq!(fwd.root(), rev.root());
        assert_ne!(fwd.root(), 0);
    }

    #[test]
    fn t21_root_changes_with_each_timestamp_field() {
        let root = |t: Timestamp| {
            let mut m = LwwMerkleTree::new();
            m.update("k", &t);
            m.root()
        };
        let base = root(ts(10, 1, "n"));
        assert_ne!(base, root(ts(11, 1, "n")));
        assert_ne!(base, root(ts(10, 2, "n")));
        assert_ne!(base, root(ts(10, 1, "m")));
    }

    #[test]
    fn t22_removing_back_to_empty_gives_zero() {
        let mut t = LwwMerkleTree::new();
        assert_eq!(t.root(), 0);
        t.update("a", &ts(1, 0, "n"));
        t.update("b", &ts(1, 1, "n"));
        t.update("a", &ts(2, 0, "n"));
        assert!(t.remove("a"));
        assert!(!t.remove("a"));
        assert!(t.remove("b"));
        assert_eq!(t.root(), 0);
        assert!(t.is_empty());
        assert!(t.keys_in_leaf(&leaf_path(leaf_of_key("a"))).is_empty());
        assert_eq!(t.item_hash("a"), None);
    }
}
