//! The keyed Merkle tree of an observed-remove map, as the TopGun client
//! computes it (`ORMapMerkleTree`).
//!
//! Entry hash of a key: `fnv1a_utf16` of
//! `["key:" + key, ...records sorted by tag].join("|")`, each record written
//! `tag:valueStr:millis:counter:nodeId`, plus `:ttl=<ttl>` when it has one.
//! Tags sort by UTF-16 code units (JavaScript's default sort). `valueStr` is
//! described in [`super::value_string`]. Only live tags count: a tombstoned
//! tag has left the map and so the hash. Expired records still count (the
//! hash covers the stored tags, not what a read would show).

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::value_string::write_value_string_bytes;
use super::{Fnv1aUtf16, KeyedMerkleTree};
use crate::types::OrRecord;

/// Compares strings by their UTF-16 code units, as JavaScript's default
/// `sort` does. It agrees with byte order except between characters above
/// U+FFFF and those in U+E000..=U+FFFF.
#[must_use]
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// One record as the entry hash sees it; borrowed, so that maps storing
/// records compactly can hash without building [`OrRecord`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrHashInput<'a> {
    /// The record's tag.
    pub tag: &'a str,
    /// The record's value as msgpack bytes.
    pub value: &'a [u8],
    /// Timestamp milliseconds.
    pub millis: u64,
    /// Timestamp counter.
    pub counter: u32,
    /// Timestamp node id.
    pub node_id: &'a str,
    /// TTL in ms, if any.
    pub ttl_ms: Option<u64>,
}

impl<'a> From<&'a OrRecord> for OrHashInput<'a> {
    fn from(r: &'a OrRecord) -> Self {
        Self {
            tag: r.tag.as_str(),
            value: r.value.as_bytes(),
            millis: r.timestamp.millis,
            counter: r.timestamp.counter,
            node_id: r.timestamp.node_id.as_str(),
            ttl_ms: r.ttl_ms.into_option(),
        }
    }
}

/// The entry hash of `key` holding `records` (any order; sorted here by tag).
/// Callers pass only live (not tombstoned) records.
#[must_use]
pub fn or_entry_hash(key: &str, records: &mut [OrHashInput<'_>]) -> u32 {
    records.sort_by(|a, b| cmp_utf16(a.tag, b.tag));
    or_entry_hash_sorted(key, records)
}

/// [`or_entry_hash`] for records already sorted by [`cmp_utf16`] on the tag.
#[must_use]
pub fn or_entry_hash_sorted(key: &str, records: &[OrHashInput<'_>]) -> u32 {
    debug_assert!(records
        .windows(2)
        .all(|w| cmp_utf16(w[0].tag, w[1].tag) != Ordering::Greater));
    let mut h = Fnv1aUtf16::new();
    // Writing into the hasher cannot fail.
    let _ = write!(h, "key:{key}");
    for r in records {
        let _ = write!(h, "|{}:", r.tag);
        let _ = write_value_string_bytes(r.value, &mut h);
        let _ = write!(h, ":{}:{}:{}", r.millis, r.counter, r.node_id);
        if let Some(ttl) = r.ttl_ms {
            let _ = write!(h, ":ttl={ttl}");
        }
    }
    h.finish()
}

/// A keyed OR-map Merkle tree: it remembers each key's entry hash. The read
/// side (`root`, `buckets`, `entry_hashes`, ...) is [`KeyedMerkleTree`]'s.
///
/// Contract: after any sequence of `update`/`remove`, `root()` equals the
/// wrapping sum of [`or_entry_hash`] over the keys with at least one record,
/// whatever the order of the calls. `update` costs the entry hash of that
/// key (linear in its records) plus O(depth).
#[derive(Debug, Clone, Default)]
pub struct OrMerkleTree(KeyedMerkleTree);

impl OrMerkleTree {
    /// An empty tree (root 0).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s entry to its current live records; no records removes
    /// the key, as in the TypeScript tree.
    pub fn update(&mut self, key: &str, records: &[OrRecord]) {
        if records.is_empty() {
            self.0.remove(key);
            return;
        }
        let mut inputs: Vec<OrHashInput<'_>> = records.iter().map(Into::into).collect();
        self.0.set(key, or_entry_hash(key, &mut inputs));
    }

    /// Sets `key`'s entry hash directly (for owners that compute it).
    pub fn set_entry_hash(&mut self, key: &str, entry: u32) {
        self.0.set(key, entry);
    }

    /// The entry hash stored for `key`, if present.
    #[must_use]
    pub fn entry_hash(&self, key: &str) -> Option<u32> {
        self.0.hash_of(key)
    }
}

impl std::ops::Deref for OrMerkleTree {
    type Target = KeyedMerkleTree;
    fn deref(&self) -> &KeyedMerkleTree {
        &self.0
    }
}

impl std::ops::DerefMut for OrMerkleTree {
    fn deref_mut(&mut self) -> &mut KeyedMerkleTree {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fnv1a_utf16;
    use crate::types::{RawValue, Timestamp};

    fn rec(
        tag: &str,
        v: &serde_json::Value,
        m: u64,
        c: u32,
        n: &str,
        ttl: Option<u64>,
    ) -> OrRecord {
        OrRecord {
            value: RawValue::encode(v).unwrap(),
            timestamp: Timestamp::new(m, c, n),
            tag: tag.into(),
            ttl_ms: ttl.into(),
        }
    }

    #[test]
    fn t10_entry_hash_known_vector() {
        // Computed independently (Python, FNV-1a over UTF-16 units) for
        // "key:k|1:0:n:{\"a\":1}:1:0:n|2:0:n:x:2:0:n:ttl=50" = 0xf51c_dbc3.
        let recs = [
            rec("2:0:n", &serde_json::json!("x"), 2, 0, "n", Some(50)),
            rec("1:0:n", &serde_json::json!({"a": 1}), 1, 0, "n", None),
        ];
        let s = "key:k|1:0:n:{\"a\":1}:1:0:n|2:0:n:x:2:0:n:ttl=50";
        let mut inputs: Vec<OrHashInput<'_>> = recs.iter().map(Into::into).collect();
        assert_eq!(or_entry_hash("k", &mut inputs), fnv1a_utf16(s));
        assert_eq!(fnv1a_utf16(s), 0xf51c_dbc3);
        let mut t = OrMerkleTree::new();
        t.update("k", &recs);
        assert_eq!(t.root(), 0xf51c_dbc3);
        assert_eq!(t.entry_hash("k"), Some(0xf51c_dbc3));
    }

    #[test]
    fn t11_tags_sort_by_utf16_units_not_bytes() {
        // U+FF5E is one unit 0xFF5E; U+1F600 starts with surrogate 0xD83D.
        assert_eq!(cmp_utf16("\u{1F600}", "\u{FF5E}"), Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FF5E}"), Ordering::Greater);
        assert_eq!(cmp_utf16("a", "b"), Ordering::Less);
        assert_eq!(cmp_utf16("ab", "a"), Ordering::Greater);
    }

    #[test]
    fn t20_root_is_independent_of_record_and_key_order() {
        let a = rec("1:0:n", &serde_json::json!(1), 1, 0, "n", None);
        let b = rec("2:0:m", &serde_json::json!(2), 2, 0, "m", None);
        let mut t1 = OrMerkleTree::new();
        t1.update("x", &[a.clone(), b.clone()]);
        t1.update("y", std::slice::from_ref(&a));
        let mut t2 = OrMerkleTree::new();
        t2.update("y", std::slice::from_ref(&a));
        t2.update("x", &[b.clone(), a.clone()]);
        assert_eq!(t1.root(), t2.root());
        assert_ne!(t1.root(), 0);
    }

    #[test]
    fn t21_entry_hash_sees_values_timestamps_and_ttl() {
        let h = |r: OrRecord| {
            let mut t = OrMerkleTree::new();
            t.update("k", &[r]);
            t.root()
        };
        let base = h(rec("t", &serde_json::json!(1), 5, 0, "n", None));
        assert_ne!(base, h(rec("t", &serde_json::json!(2), 5, 0, "n", None)));
        assert_ne!(base, h(rec("t", &serde_json::json!(1), 6, 0, "n", None)));
        assert_ne!(base, h(rec("t", &serde_json::json!(1), 5, 0, "n", Some(9))));
        assert_ne!(base, h(rec("u", &serde_json::json!(1), 5, 0, "n", None)));
    }

    #[test]
    fn t22_no_records_removes_the_key_and_empty_is_zero() {
        let mut t = OrMerkleTree::new();
        t.update("k", &[rec("t", &serde_json::json!(1), 5, 0, "n", None)]);
        let path = crate::merkle::leaf_path(crate::merkle::leaf_of_key("k"));
        assert!(t.is_leaf(&path));
        assert_eq!(t.keys_in_leaf(&path), vec!["k"]);
        t.update("k", &[]);
        assert_eq!(t.root(), 0);
        assert!(!t.is_leaf(&path));
        assert!(t.entry_hashes(&path).is_empty());
        assert!(!t.remove("k"));
    }
}
