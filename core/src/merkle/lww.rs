//! The keyed Merkle tree of a last-write-wins map, as the TopGun client and
//! the cluster's anti-entropy compute it.
//!
//! Item hash: `fnv1a_utf16("{key}:{millis}:{counter}:{nodeId}")`. The value
//! and the TTL are deliberately not hashed: one timestamp names one write, so
//! equal timestamps mean equal records. Tombstones count until pruned.

use std::fmt::Write as _;

use super::{Fnv1aUtf16, KeyedMerkleTree};
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
/// and `remove` need only the key and its new timestamp. The read side
/// (`root`, `buckets`, `keys_in_leaf`, ...) is [`KeyedMerkleTree`]'s.
///
/// Contract: after any sequence of `update`/`remove`, `root()` equals the
/// wrapping sum of `lww_item_hash` over the keys present with their latest
/// timestamps, whatever the order of the calls. O(depth) per call.
#[derive(Debug, Clone, Default)]
pub struct LwwMerkleTree(KeyedMerkleTree);

impl LwwMerkleTree {
    /// An empty tree (root 0).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s item to the record written at `ts` (insert or replace).
    pub fn update(&mut self, key: &str, ts: &Timestamp) {
        self.0.set(
            key,
            lww_item_hash(key, ts.millis, ts.counter, ts.node_id.as_str()),
        );
    }

    /// The item hash stored for `key`, if present.
    #[must_use]
    pub fn item_hash(&self, key: &str) -> Option<u32> {
        self.0.hash_of(key)
    }
}

impl std::ops::Deref for LwwMerkleTree {
    type Target = KeyedMerkleTree;
    fn deref(&self) -> &KeyedMerkleTree {
        &self.0
    }
}

impl std::ops::DerefMut for LwwMerkleTree {
    fn deref_mut(&mut self) -> &mut KeyedMerkleTree {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fnv1a_utf16;
    use crate::merkle::{key_hash_hex, leaf_of_key, leaf_path};

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
