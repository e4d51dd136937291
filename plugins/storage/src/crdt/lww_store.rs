//! Storage of LWW records, shaped for memory: one table slot of 40 bytes
//! and one heap allocation per record.
//!
//! # Slot layout
//!
//! ```text
//! LwwSlot (40 bytes)                data: Box<[u8]>
//! +---------------------+           +-----------+-------------+---------------+
//! | data  (ptr, len) 16 | --------> | key bytes | value bytes | ttl (8, LE)?  |
//! | stamp            16 |           +-----------+-------------+---------------+
//! | key_len | TOMB     4 |            key_len     rest          iff has_ttl
//! +---------------------+
//! ```
//!
//! The key, the value and the rare TTL share one allocation; a tombstone has
//! no value bytes and the `TOMB` bit set. Slots live in per-leaf
//! `hashbrown::HashTable`s hashed by key bytes with a per-map random seed
//! (keys come from clients; a keyed hash keeps collision floods out).

use std::hash::BuildHasher;

use hangar_core::merkle::LeafIndex;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use super::stamp::Stamp;

const TOMB: u32 = 1 << 31;

/// One LWW record with its key.
#[derive(Debug, Clone)]
pub(crate) struct LwwSlot {
    data: Box<[u8]>,
    pub(crate) stamp: Stamp,
    key_len: u32,
}

impl LwwSlot {
    /// Packs a record. `stamp.has_ttl()` MUST agree with `ttl.is_some()`.
    ///
    /// # Panics
    /// When the key is 2 GiB or longer.
    pub(crate) fn new(key: &str, value: Option<&[u8]>, ttl: Option<u64>, stamp: Stamp) -> Self {
        debug_assert_eq!(stamp.has_ttl(), ttl.is_some());
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|l| l & TOMB == 0)
            .expect("keys are shorter than 2 GiB");
        let v = value.unwrap_or_default();
        let mut data = Vec::with_capacity(key.len() + v.len() + if ttl.is_some() { 8 } else { 0 });
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(v);
        if let Some(t) = ttl {
            data.extend_from_slice(&t.to_le_bytes());
        }
        Self {
            data: data.into_boxed_slice(),
            stamp,
            key_len: key_len | if value.is_none() { TOMB } else { 0 },
        }
    }

    fn klen(&self) -> usize {
        (self.key_len & !TOMB) as usize
    }

    pub(crate) fn key_bytes(&self) -> &[u8] {
        &self.data[..self.klen()]
    }

    /// The key. Slots are only built from `&str` keys, so this cannot fail.
    pub(crate) fn key(&self) -> &str {
        std::str::from_utf8(self.key_bytes()).expect("slot keys are built from str")
    }

    fn ttl_len(&self) -> usize {
        if self.stamp.has_ttl() {
            8
        } else {
            0
        }
    }

    /// The value, `None` for a tombstone.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        if self.key_len & TOMB != 0 {
            return None;
        }
        Some(&self.data[self.klen()..self.data.len() - self.ttl_len()])
    }

    pub(crate) fn is_tombstone(&self) -> bool {
        self.key_len & TOMB != 0
    }

    pub(crate) fn ttl(&self) -> Option<u64> {
        let n = self.data.len();
        self.stamp.has_ttl().then(|| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.data[n - 8..]);
            u64::from_le_bytes(b)
        })
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.stamp.is_expired(self.ttl(), now_ms)
    }
}

/// LWW slots bucketed by Merkle leaf; only occupied leaves are allocated.
#[derive(Debug, Clone, Default)]
pub(crate) struct LwwStore {
    buckets: HashMap<LeafIndex, HashTable<LwwSlot>>,
    hasher: DefaultHashBuilder,
    len: usize,
}

impl LwwStore {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, leaf: LeafIndex, key: &str) -> Option<&LwwSlot> {
        let k = key.as_bytes();
        self.buckets
            .get(&leaf)?
            .find(self.hash(k), |s| s.key_bytes() == k)
    }

    pub(crate) fn get_mut(&mut self, leaf: LeafIndex, key: &str) -> Option<&mut LwwSlot> {
        let k = key.as_bytes();
        let h = self.hash(k);
        self.buckets
            .get_mut(&leaf)?
            .find_mut(h, |s| s.key_bytes() == k)
    }

    /// Inserts a slot whose key is not present yet.
    pub(crate) fn insert_new(&mut self, leaf: LeafIndex, slot: LwwSlot) {
        let h = self.hash(slot.key_bytes());
        let hasher = &self.hasher;
        self.buckets
            .entry(leaf)
            .or_default()
            .insert_unique(h, slot, |s| hasher.hash_one(s.key_bytes()));
        self.len += 1;
    }

    /// The slots of one leaf, in no particular order.
    pub(crate) fn leaf(&self, leaf: LeafIndex) -> impl Iterator<Item = &LwwSlot> {
        self.buckets.get(&leaf).into_iter().flatten()
    }

    /// Every slot, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LwwSlot> {
        self.buckets.values().flatten()
    }

    /// Removes the slots of one leaf for which `pick` is true and returns
    /// them.
    pub(crate) fn extract_leaf(
        &mut self,
        leaf: LeafIndex,
        mut pick: impl FnMut(&LwwSlot) -> bool,
    ) -> Vec<LwwSlot> {
        let Some(table) = self.buckets.get_mut(&leaf) else {
            return Vec::new();
        };
        let out: Vec<LwwSlot> = table.extract_if(|s| pick(s)).collect();
        if table.is_empty() {
            self.buckets.remove(&leaf);
        }
        self.len -= out.len();
        out
    }

    /// Removes the slots for which `pick` is true and returns them with
    /// their leaf.
    pub(crate) fn extract(
        &mut self,
        mut pick: impl FnMut(&LwwSlot) -> bool,
    ) -> Vec<(LeafIndex, LwwSlot)> {
        let mut out = Vec::new();
        for (leaf, table) in &mut self.buckets {
            out.extend(table.extract_if(|s| pick(s)).map(|s| (*leaf, s)));
        }
        self.buckets.retain(|_, t| !t.is_empty());
        self.len -= out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::stamp::NodeInterner;
    use hangar_core::Timestamp;

    fn stamp(ttl: bool) -> Stamp {
        Stamp::pack(
            &Timestamp::new(7, 1, "n"),
            ttl,
            &mut NodeInterner::default(),
        )
    }

    #[test]
    fn t10_slot_packs_key_value_and_ttl_in_one_allocation() {
        let s = LwwSlot::new("ключ", Some(&[1, 2, 3]), Some(u64::MAX - 1), stamp(true));
        assert_eq!(s.key(), "ключ");
        assert_eq!(s.value(), Some(&[1u8, 2, 3][..]));
        assert_eq!(s.ttl(), Some(u64::MAX - 1));
        assert!(!s.is_tombstone());
        let t = LwwSlot::new("k", None, None, stamp(false));
        assert_eq!((t.value(), t.ttl(), t.key()), (None, None, "k"));
        assert!(t.is_tombstone());
        let e = LwwSlot::new("", Some(&[]), None, stamp(false));
        assert_eq!(
            e.value(),
            Some(&[][..]),
            "an empty value is not a tombstone"
        );
        assert_eq!(std::mem::size_of::<LwwSlot>(), 40);
    }

    #[test]
    fn t11_store_finds_by_leaf_and_key_and_extracts() {
        let mut st = LwwStore::default();
        for (leaf, k) in [(1, "a"), (1, "b"), (2, "c")] {
            st.insert_new(leaf, LwwSlot::new(k, Some(&[0]), None, stamp(false)));
        }
        assert_eq!(st.len(), 3);
        assert!(st.get(1, "a").is_some());
        assert!(st.get(2, "a").is_none(), "a key is only found in its leaf");
        assert_eq!(st.leaf(1).count(), 2);
        let out = st.extract(|s| s.key() != "b");
        let mut keys: Vec<_> = out.iter().map(|(l, s)| (*l, s.key())).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec![(1, "a"), (2, "c")]);
        assert_eq!(st.len(), 1);
        assert_eq!(st.iter().count(), 1);
        assert_eq!(st.buckets.len(), 1, "emptied leaves are freed");
    }
}
