//! A keyed Merkle tree: the shared part of the LWW and OR trees, and what
//! the cluster module keeps per partition. It remembers each key's hash, so
//! setting or removing a key needs only the key and its new hash.

use std::collections::HashMap;

use super::{leaf_of_key, Buckets, LeafMap, MerkleTrie, TriePath};

/// Keys with their hashes, summed into a depth-3 trie by the hex path of the
/// key's FNV-1a hash.
///
/// Contract: after any sequence of `set`/`remove`, `root()` equals the
/// wrapping sum of the hashes of the keys present, whatever the order of the
/// calls. O(depth) per call.
#[derive(Debug, Clone, Default)]
pub struct KeyedMerkleTree {
    trie: MerkleTrie,
    leaves: LeafMap<HashMap<Box<str>, u32>>,
}

impl KeyedMerkleTree {
    /// An empty tree (root 0).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s hash (insert or replace).
    pub fn set(&mut self, key: &str, hash: u32) {
        let leaf = leaf_of_key(key);
        let entries = self.leaves.entry(leaf).or_default();
        match entries.get_mut(key) {
            Some(old) => {
                let prev = std::mem::replace(old, hash);
                self.trie.replace(leaf, prev, hash);
            }
            None => {
                entries.insert(key.into(), hash);
                self.trie.insert(leaf, hash);
            }
        }
    }

    /// Drops `key`; returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let leaf = leaf_of_key(key);
        let Some(entries) = self.leaves.get_mut(&leaf) else {
            return false;
        };
        let Some(hash) = entries.remove(key) else {
            return false;
        };
        if entries.is_empty() {
            self.leaves.remove(&leaf);
        }
        self.trie.remove(leaf, hash);
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

    /// The keys of the leaf at `path` with their hashes, sorted by key (what
    /// a peer compares to find differing keys); empty for any other path.
    #[must_use]
    pub fn entry_hashes(&self, path: &str) -> Vec<(&str, u32)> {
        let mut out: Vec<(&str, u32)> = TriePath::parse(path)
            .and_then(TriePath::leaf)
            .and_then(|l| self.leaves.get(&l))
            .map(|e| e.iter().map(|(k, h)| (k.as_ref(), *h)).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The keys in the leaf at `path`, sorted; empty for any other path.
    #[must_use]
    pub fn keys_in_leaf(&self, path: &str) -> Vec<&str> {
        self.entry_hashes(path)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The hash stored for `key`, if present.
    #[must_use]
    pub fn hash_of(&self, key: &str) -> Option<u32> {
        self.leaves.get(&leaf_of_key(key))?.get(key).copied()
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}
