//! Merkle tries over map keys: the digests that clients and peers compare to
//! find which keys differ (client Merkle sync, anti-entropy repair).
//!
//! # Shape (a wire contract shared with the TopGun client)
//!
//! A 16-ary trie of depth [`MERKLE_DEPTH`] = 3. A key's path is the first three
//! characters of the 8-digit, zero-padded, lowercase hex of
//! [`fnv1a_utf16`]`(key)`, i.e. the top 12 bits of the hash: at most 4096
//! leaves. A leaf's hash is the wrapping `u32` sum of its items' hashes; an
//! inner node's hash is the wrapping sum of its children's; the root of an
//! empty trie is 0, and a missing node counts as 0.
//!
//! # Layout
//!
//! - [`MerkleTrie`] (this file): the sums alone, for owners that keep the
//!   per-key data themselves (the CRDT maps keep their records bucketed by
//!   leaf, so storing the keys again here would double their memory).
//! - [`lww`]: [`LwwMerkleTree`], the keyed LWW tree; item hash
//!   `fnv1a_utf16("key:millis:counter:nodeId")`.
//! - [`or`]: [`OrMerkleTree`], the keyed OR tree; entry hash over all live
//!   tags of a key.
//! - [`value_string`]: the canonical string of a msgpack value used in OR
//!   entry hashes.
//!
//! Every update is incremental: it touches one node per level, O(depth).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::hash::fnv1a_utf16;

pub mod keyed;
pub mod lww;
pub mod or;
pub mod value_string;

pub use keyed::KeyedMerkleTree;
pub use lww::{lww_item_hash, LwwMerkleTree};
pub use or::{cmp_utf16, or_entry_hash, or_entry_hash_sorted, OrHashInput, OrMerkleTree};
pub use value_string::{write_value_string, write_value_string_bytes};

/// Depth of every Hangar/TopGun Merkle trie.
pub const MERKLE_DEPTH: usize = 3;

/// Number of leaves of a depth-3, 16-ary trie.
pub const LEAF_COUNT: usize = 4096;

/// Index of a leaf, `0..LEAF_COUNT`: the top 12 bits of the key's hash.
pub type LeafIndex = u16;

/// The children of a trie node that hold entries, by hex digit. Children
/// without entries are absent and count as hash 0.
pub type Buckets = BTreeMap<char, u32>;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The leaf a key hashes to.
#[must_use]
pub fn leaf_of_key(key: &str) -> LeafIndex {
    leaf_of_hash(fnv1a_utf16(key))
}

/// The leaf of a key whose [`fnv1a_utf16`] is `hash` (its top 12 bits).
#[must_use]
pub fn leaf_of_hash(hash: u32) -> LeafIndex {
    // Lossless: a u32 shifted right by 20 has at most 12 bits.
    (hash >> 20) as LeafIndex
}

/// The 3-character hex path of a leaf (`"00a"` for leaf 10).
#[must_use]
pub fn leaf_path(leaf: LeafIndex) -> String {
    let l = usize::from(leaf) & (LEAF_COUNT - 1);
    [HEX[l >> 8], HEX[(l >> 4) & 15], HEX[l & 15]]
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// The full 8-digit lowercase hex of a key's hash, as the TypeScript client
/// writes it (`hashString(key).toString(16).padStart(8, '0')`).
#[must_use]
pub fn key_hash_hex(key: &str) -> String {
    format!("{:08x}", fnv1a_utf16(key))
}

/// A parsed trie path: its depth (0 = root, 3 = leaf) and the number its hex
/// digits spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriePath {
    /// Number of hex digits, `0..=MERKLE_DEPTH`.
    pub depth: usize,
    /// The digits as a number (`"a3"` is `0xa3`).
    pub prefix: u16,
}

impl TriePath {
    /// Parses a path of at most three lowercase hex digits. Anything else
    /// (uppercase, other characters, too long) names no node: `None`.
    #[must_use]
    pub fn parse(path: &str) -> Option<Self> {
        if path.len() > MERKLE_DEPTH {
            return None;
        }
        let mut prefix = 0u16;
        for b in path.bytes() {
            let d = HEX.iter().position(|&h| h == b)?;
            // d < 16, so this fits.
            prefix = (prefix << 4) | d as u16;
        }
        Some(Self {
            depth: path.len(),
            prefix,
        })
    }

    /// The leaf this path names, when it is a full leaf path.
    #[must_use]
    pub fn leaf(self) -> Option<LeafIndex> {
        (self.depth == MERKLE_DEPTH).then_some(self.prefix)
    }

    /// True when `leaf` lies under this path (every leaf lies under the
    /// root).
    #[must_use]
    pub fn contains_leaf(self, leaf: LeafIndex) -> bool {
        let shift = 4 * (MERKLE_DEPTH - self.depth.min(MERKLE_DEPTH));
        u32::from(leaf) >> shift == u32::from(self.prefix)
    }
}

/// The buckets of the inner node at `path` over the given items alone:
/// each `(leaf, item hash)` under `path` adds its hash (wrapping) to the
/// child it lies under, and that child is listed even when its sum wraps
/// to 0, as [`MerkleTrie::buckets`] lists it. Items outside `path` are
/// ignored; a leaf path has no buckets.
///
/// Exists for a node's share of a tree restricted to some of its keys
/// (those of some partitions): the shares of disjoint key sets add up,
/// child by child, to the buckets over their union.
#[must_use]
pub fn buckets_of_items(
    path: TriePath,
    items: impl IntoIterator<Item = (LeafIndex, u32)>,
) -> Buckets {
    let mut out = Buckets::new();
    if path.depth >= MERKLE_DEPTH {
        return out;
    }
    let shift = 4 * (MERKLE_DEPTH - path.depth - 1);
    for (leaf, hash) in items {
        if !path.contains_leaf(leaf) {
            continue;
        }
        let digit = (usize::from(leaf) >> shift) & 15;
        let sum = out.entry(char::from(HEX[digit])).or_insert(0);
        *sum = sum.wrapping_add(hash);
    }
    out
}

/// A hasher for leaf indices: spreads a `u16` over 64 bits (Fibonacci
/// hashing). Leaf indices are not attacker-controlled in a useful way (4096 of
/// them at most), so no keyed hash is needed.
#[derive(Default, Clone, Copy)]
pub(crate) struct LeafHasher(u64);

impl Hasher for LeafHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u16(&mut self, i: u16) {
        self.0 = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` keyed by leaf index.
pub(crate) type LeafMap<V> = HashMap<LeafIndex, V, BuildHasherDefault<LeafHasher>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Node {
    hash: u32,
    count: u64,
}

impl Node {
    fn apply(&mut self, hash_delta: u32, added: bool, removed: bool) {
        self.hash = self.hash.wrapping_add(hash_delta);
        self.count = self.count + u64::from(added) - u64::from(removed);
    }
}

/// The sums of a Merkle trie, without the per-key data.
///
/// Contract: the owner reports every item that enters, leaves or changes in a
/// leaf (`insert` / `remove` / `replace` with the item's hash); the trie then
/// holds, for every node, the wrapping sum of the item hashes below it and how
/// many items there are. The owner MUST report removals with the same hash it
/// inserted, or the sums drift. Each call is O(depth).
///
/// Memory: the inner levels are dense (17 + 256 nodes, ~4.4 KB); leaves are
/// stored only while they hold items.
#[derive(Clone)]
pub struct MerkleTrie {
    root: Node,
    top: [Node; 16],
    mid: Box<[Node; 256]>,
    leaves: LeafMap<Node>,
}

impl Default for MerkleTrie {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MerkleTrie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTrie")
            .field("root", &self.root.hash)
            .field("items", &self.root.count)
            .field("occupied_leaves", &self.leaves.len())
            .finish()
    }
}

impl MerkleTrie {
    /// An empty trie: root 0.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            top: [Node::default(); 16],
            mid: Box::new([Node::default(); 256]),
            leaves: LeafMap::default(),
        }
    }

    fn apply(&mut self, leaf: LeafIndex, old: Option<u32>, new: Option<u32>) {
        let leaf = leaf & (LEAF_COUNT as u16 - 1);
        let delta = new.unwrap_or(0).wrapping_sub(old.unwrap_or(0));
        let (added, removed) = (new.is_some(), old.is_some());
        let node = self.leaves.entry(leaf).or_default();
        node.apply(delta, added, removed);
        if node.count == 0 {
            debug_assert_eq!(node.hash, 0, "an emptied leaf must sum to 0");
            self.leaves.remove(&leaf);
        }
        self.mid[usize::from(leaf >> 4)].apply(delta, added, removed);
        self.top[usize::from(leaf >> 8)].apply(delta, added, removed);
        self.root.apply(delta, added, removed);
    }

    /// Adds an item with hash `item` to `leaf`.
    pub fn insert(&mut self, leaf: LeafIndex, item: u32) {
        self.apply(leaf, None, Some(item));
    }

    /// Removes an item that was inserted into `leaf` with hash `item`.
    pub fn remove(&mut self, leaf: LeafIndex, item: u32) {
        self.apply(leaf, Some(item), None);
    }

    /// Replaces an item of `leaf` whose hash was `old` by one hashing to `new`.
    pub fn replace(&mut self, leaf: LeafIndex, old: u32, new: u32) {
        self.apply(leaf, Some(old), Some(new));
    }

    /// The root hash; 0 when empty.
    #[must_use]
    pub fn root(&self) -> u32 {
        self.root.hash
    }

    /// How many items the trie holds.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.root.count
    }

    /// True when the trie holds no items.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root.count == 0
    }

    /// Forgets every item.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    fn node(&self, path: TriePath) -> Node {
        let p = usize::from(path.prefix);
        match path.depth {
            0 => self.root,
            1 => self.top[p],
            2 => self.mid[p],
            _ => self.leaves.get(&path.prefix).copied().unwrap_or_default(),
        }
    }

    /// The hash of the node at `path` (0 for an empty node), or `None` when
    /// `path` is not a trie path (see [`TriePath::parse`]).
    #[must_use]
    pub fn node_hash(&self, path: &str) -> Option<u32> {
        TriePath::parse(path).map(|p| self.node(p).hash)
    }

    /// The children of the node at `path` that hold items, by hex digit.
    /// Empty for a leaf path, an empty node, or an invalid path.
    #[must_use]
    pub fn buckets(&self, path: &str) -> Buckets {
        let mut out = Buckets::new();
        let Some(p) = TriePath::parse(path) else {
            return out;
        };
        if p.depth >= MERKLE_DEPTH {
            return out;
        }
        for d in 0..16u16 {
            let child = self.node(TriePath {
                depth: p.depth + 1,
                prefix: (p.prefix << 4) | d,
            });
            if child.count > 0 {
                out.insert(char::from(HEX[usize::from(d)]), child.hash);
            }
        }
        out
    }

    /// True when `path` names a leaf that holds at least one item: the node
    /// whose keys a sync peer asks for instead of its children.
    #[must_use]
    pub fn is_leaf(&self, path: &str) -> bool {
        TriePath::parse(path)
            .and_then(TriePath::leaf)
            .is_some_and(|l| self.leaves.contains_key(&l))
    }

    /// The occupied leaves, in no particular order.
    pub fn occupied_leaves(&self) -> impl Iterator<Item = LeafIndex> + '_ {
        self.leaves.keys().copied()
    }
}

/// FNV-1a over UTF-16 code units, fed piecewise (`write!` into it), so that
/// item and entry hashes need no temporary string. Finishing it gives exactly
/// [`fnv1a_utf16`] of the concatenation.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1aUtf16(u32);

impl Default for Fnv1aUtf16 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1aUtf16 {
    /// A hasher in the FNV offset-basis state.
    #[must_use]
    pub fn new() -> Self {
        Self(0x811c_9dc5)
    }

    /// Feeds the UTF-16 code units of `s`.
    pub fn push_str(&mut self, s: &str) {
        let mut h = self.0;
        if s.is_ascii() {
            for &b in s.as_bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
        } else {
            for unit in s.encode_utf16() {
                h ^= u32::from(unit);
                h = h.wrapping_mul(0x0100_0193);
            }
        }
        self.0 = h;
    }

    /// The hash of everything fed so far.
    #[must_use]
    pub fn finish(self) -> u32 {
        self.0
    }
}

impl fmt::Write for Fnv1aUtf16 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn t10_paths_are_the_top_hex_digits_of_the_key_hash() {
        // fnv1a_utf16("hello") = 1335831723 = 0x4f9f2cab
        assert_eq!(key_hash_hex("hello"), "4f9f2cab");
        assert_eq!(leaf_path(leaf_of_key("hello")), "4f9");
        // leading zeros are kept: a hash below 0x1000_0000 pads to 8 digits
        assert_eq!(leaf_path(leaf_of_hash(0x00a1_2345)), "00a");
        assert_eq!(leaf_path(0xfff), "fff");
    }

    #[test]
    fn t11_paths_parse_only_lowercase_hex_up_to_depth_3() {
        assert_eq!(
            TriePath::parse(""),
            Some(TriePath {
                depth: 0,
                prefix: 0
            })
        );
        assert_eq!(TriePath::parse("a3").map(|p| p.prefix), Some(0xa3));
        assert_eq!(TriePath::parse("4f9").and_then(TriePath::leaf), Some(0x4f9));
        assert_eq!(TriePath::parse("A"), None);
        assert_eq!(TriePath::parse("g"), None);
        assert_eq!(TriePath::parse("0000"), None);
    }

    #[test]
    fn t20_sums_propagate_to_every_level() {
        let mut t = MerkleTrie::new();
        t.insert(0x4f9, 10);
        t.insert(0x4fa, 5);
        t.insert(0x100, u32::MAX);
        assert_eq!(t.root(), 14, "wrapping sum 10 + 5 + (2^32 - 1)");
        assert_eq!(t.node_hash("4"), Some(15));
        assert_eq!(t.node_hash("4f"), Some(15));
        assert_eq!(t.node_hash("4f9"), Some(10));
        assert_eq!(t.node_hash("1"), Some(u32::MAX));
        assert_eq!(t.node_hash("2"), Some(0));
        assert_eq!(t.node_hash("x"), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn t21_buckets_list_occupied_children_only() {
        let mut t = MerkleTrie::new();
        t.insert(0x4f9, 10);
        t.insert(0x4fa, 5);
        t.insert(0x100, 7);
        let root: Vec<_> = t.buckets("").into_iter().collect();
        assert_eq!(root, vec![('1', 7), ('4', 15)]);
        let mid: Vec<_> = t.buckets("4f").into_iter().collect();
        assert_eq!(mid, vec![('9', 10), ('a', 5)]);
        assert!(t.buckets("4f9").is_empty(), "a leaf has no children");
        assert!(t.buckets("zz").is_empty());
        assert!(t.is_leaf("4f9"));
        assert!(!t.is_leaf("4f8"));
        assert!(!t.is_leaf("4f"));
    }

    #[test]
    fn t22_removing_everything_returns_to_root_zero() {
        let mut t = MerkleTrie::new();
        t.insert(1, 10);
        t.insert(1, 20);
        t.replace(1, 20, 99);
        assert_eq!(t.root(), 109);
        t.remove(1, 10);
        t.remove(1, 99);
        assert_eq!(t.root(), 0);
        assert!(t.is_empty());
        assert!(t.buckets("").is_empty());
        assert!(!t.is_leaf("001"));
        assert_eq!(t.occupied_leaves().count(), 0);
    }

    #[test]
    fn t23_a_subtree_summing_to_zero_is_still_listed() {
        let mut t = MerkleTrie::new();
        t.insert(0x010, 1);
        t.insert(0x011, u32::MAX);
        assert_eq!(t.root(), 0);
        assert_eq!(t.buckets("").get(&'0'), Some(&0), "occupied, hash 0");
        assert!(!t.is_empty());
    }

    #[test]
    fn t24_buckets_of_items_equal_the_trie_buckets_and_add_up_over_disjoint_items() {
        let items = [(0x4f9u16, 10u32), (0x4fa, 5), (0x100, u32::MAX), (0x101, 1)];
        let mut t = MerkleTrie::new();
        for (l, h) in items {
            t.insert(l, h);
        }
        for path in ["", "4", "4f", "1", "10", "7"] {
            let p = TriePath::parse(path).unwrap();
            assert_eq!(buckets_of_items(p, items), t.buckets(path), "path {path:?}");
        }
        let (a, b) = items.split_at(2);
        let root = TriePath::parse("").unwrap();
        let (ba, bb) = (
            buckets_of_items(root, a.to_vec()),
            buckets_of_items(root, b.to_vec()),
        );
        let mut sum = ba.clone();
        for (c, h) in bb {
            let e = sum.entry(c).or_insert(0);
            *e = e.wrapping_add(h);
        }
        assert_eq!(sum, t.buckets(""));
        assert_eq!(
            buckets_of_items(root, b.to_vec()).get(&'1'),
            Some(&0),
            "wraps to 0, listed"
        );
        assert!(buckets_of_items(TriePath::parse("4f9").unwrap(), items).is_empty());
        assert!(TriePath::parse("4f").unwrap().contains_leaf(0x4f9));
        assert!(!TriePath::parse("4f").unwrap().contains_leaf(0x4e9));
    }

    #[test]
    fn t30_streaming_fnv_equals_the_one_shot_hash() {
        for s in ["", "hello", "key:1:0:n", "é\u{1F600}x"] {
            let mut h = Fnv1aUtf16::new();
            let (a, b) = s.split_at(s.char_indices().nth(1).map_or(s.len(), |(i, _)| i));
            h.push_str(a);
            write!(h, "{b}").unwrap();
            assert_eq!(h.finish(), fnv1a_utf16(s), "{s:?}");
        }
    }
}
