//! A hash table split by Merkle leaf (used by the OR map): entries live in
//! the bucket of the leaf their key hashes to, so a leaf's keys can be listed (Merkle sync) without
//! keeping a second copy of every key. Only occupied leaves are allocated.

use std::borrow::Borrow;
use std::hash::Hash;

use hangar_core::merkle::LeafIndex;
use hashbrown::HashMap;

/// Records bucketed by leaf index.
#[derive(Debug, Clone)]
pub(crate) struct Leaves<K, V> {
    buckets: HashMap<LeafIndex, HashMap<K, V>>,
    len: usize,
}

impl<K, V> Default for Leaves<K, V> {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Borrow<str>, V> Leaves<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, leaf: LeafIndex, key: &str) -> Option<&V> {
        self.buckets.get(&leaf)?.get(key)
    }

    pub(crate) fn get_key_value(&self, leaf: LeafIndex, key: &str) -> Option<(&K, &V)> {
        self.buckets.get(&leaf)?.get_key_value(key)
    }

    pub(crate) fn get_mut(&mut self, leaf: LeafIndex, key: &str) -> Option<&mut V> {
        self.buckets.get_mut(&leaf)?.get_mut(key)
    }

    /// Inserts a key that is not present yet.
    pub(crate) fn insert_new(&mut self, leaf: LeafIndex, key: K, value: V) {
        let prev = self.buckets.entry(leaf).or_default().insert(key, value);
        debug_assert!(prev.is_none(), "insert_new on a present key");
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, leaf: LeafIndex, key: &str) -> Option<(K, V)> {
        let bucket = self.buckets.get_mut(&leaf)?;
        let out = bucket.remove_entry(key)?;
        if bucket.is_empty() {
            self.buckets.remove(&leaf);
        }
        self.len -= 1;
        Some(out)
    }

    /// The entries of one leaf, in no particular order.
    pub(crate) fn leaf(&self, leaf: LeafIndex) -> impl Iterator<Item = (&K, &V)> {
        self.buckets.get(&leaf).into_iter().flatten()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.buckets.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_buckets_are_freed_when_emptied() {
        let mut l: Leaves<Box<str>, u8> = Leaves::default();
        l.insert_new(3, "a".into(), 1);
        l.insert_new(3, "b".into(), 2);
        l.insert_new(7, "c".into(), 3);
        assert_eq!(l.len(), 3);
        assert_eq!(l.get(3, "b"), Some(&2));
        assert_eq!(l.get(7, "b"), None, "a key is only found in its leaf");
        assert_eq!(l.leaf(3).count(), 2);
        assert_eq!(l.remove(7, "c").map(|(_, v)| v), Some(3));
        assert_eq!(l.buckets.len(), 1);
        assert_eq!(l.len(), 2);
        assert_eq!(l.iter().count(), 2);
    }
}
