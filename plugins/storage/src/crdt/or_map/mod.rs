//! The observed-remove map: each key holds a set of tagged records; a remove
//! names tags, and tombstoned tags never come back (add-wins for adds the
//! remover had not observed).
//!
//! Fixes over the legacy `ORMap`, on purpose:
//! - a tag is one element, wherever it is: a tag -> key index makes
//!   `apply_tombstone` O(1) and lets `merge_key` purge tombstoned tags under
//!   every key (the legacy sync path purged only the key being merged, leaving
//!   hidden records that still counted in other keys' Merkle hashes);
//! - a record with a tag already present replaces it only when it is a newer
//!   version (timestamp first; for malformed duplicates with equal
//!   timestamps, then key, value bytes and TTL), so merges converge in any
//!   order (the legacy `apply` overwrote unconditionally);
//! - the map never calls the HLC: the caller updates it before applying.

use std::cmp::Ordering;
use std::sync::Arc;

use hangar_core::merkle::{
    cmp_utf16, leaf_of_key, leaf_path, or_entry_hash_sorted, Buckets, LeafIndex, OrHashInput,
    TriePath,
};
use hangar_core::{OrRecord, RawValue};
use hashbrown::{HashMap, HashSet};

use super::leaves::Leaves;
use super::outcome::{OrApplyOutcome, OrMergeKeyOutcome, TombstoneOutcome};
use super::partition_digest::KeyedTrie;
use super::stamp::{NodeInterner, Stamp};

#[derive(Debug, Clone)]
struct OrSlot {
    tag: Arc<str>,
    value: Box<[u8]>,
    stamp: Stamp,
    /// Meaningful only when `stamp.has_ttl()`.
    ttl: u64,
}

impl OrSlot {
    fn ttl(&self) -> Option<u64> {
        self.stamp.has_ttl().then_some(self.ttl)
    }

    fn is_expired(&self, now_ms: u64) -> bool {
        self.stamp.is_expired(self.ttl(), now_ms)
    }
}

/// The records of one key, sorted by tag in UTF-16 order, and their entry
/// hash as last reported to the trie.
#[derive(Debug, Clone)]
struct OrEntry {
    records: Vec<OrSlot>,
    hash: u32,
}

impl OrEntry {
    fn position(&self, tag: &str) -> Result<usize, usize> {
        self.records.binary_search_by(|s| cmp_utf16(&s.tag, tag))
    }
}

/// An observed-remove map with its Merkle trie.
///
/// Invariants:
/// - a tag is stored under at most one key, and never while tombstoned;
/// - a stored tag holds the greatest version applied for it;
/// - the Merkle root is the wrapping sum of the OR entry hashes of the keys
///   holding records (see [`hangar_core::merkle::or`]).
#[derive(Debug, Clone, Default)]
pub struct OrMap {
    leaves: Leaves<Arc<str>, OrEntry>,
    tag_index: HashMap<Arc<str>, Arc<str>>,
    tombstones: HashSet<Box<str>>,
    nodes: NodeInterner,
    trie: KeyedTrie,
}

impl OrMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn to_record(&self, s: &OrSlot) -> OrRecord {
        OrRecord {
            value: RawValue::from_msgpack(&*s.value),
            timestamp: s.stamp.timestamp(&self.nodes),
            tag: s.tag.as_ref().into(),
            ttl_ms: s.ttl().into(),
        }
    }

    fn compute_entry_hash(&self, key: &str, records: &[OrSlot]) -> u32 {
        let inputs: Vec<OrHashInput<'_>> = records
            .iter()
            .map(|s| OrHashInput {
                tag: &s.tag,
                value: &s.value,
                millis: s.stamp.millis,
                counter: s.stamp.counter,
                node_id: self.nodes.name(s.stamp.node()),
                ttl_ms: s.ttl(),
            })
            .collect();
        or_entry_hash_sorted(key, &inputs)
    }

    /// Recomputes the entry hash of `key` after its records changed; drops
    /// the key when it has none left.
    fn rehash(&mut self, leaf: LeafIndex, key: &str) {
        let Some(entry) = self.leaves.get(leaf, key) else {
            return;
        };
        let old = entry.hash;
        if entry.records.is_empty() {
            self.leaves.remove(leaf, key);
            self.trie.remove(key, leaf, old);
            return;
        }
        let new = self.compute_entry_hash(key, &entry.records);
        if let Some(e) = self.leaves.get_mut(leaf, key) {
            e.hash = new;
        }
        self.trie.replace(key, leaf, old, new);
    }

    /// Takes a stored tag out of the map (not tombstoning it).
    fn take_tag(&mut self, tag: &str) -> Option<(Arc<str>, OrSlot)> {
        let key = self.tag_index.remove(tag)?;
        let leaf = leaf_of_key(&key);
        let entry = self.leaves.get_mut(leaf, &key)?;
        let slot = entry.records.remove(entry.position(tag).ok()?);
        self.rehash(leaf, &key);
        Some((key, slot))
    }

    /// Stores a slot whose tag is not in the map.
    fn put_slot(&mut self, key: &str, slot: OrSlot) {
        let leaf = leaf_of_key(key);
        let tag = slot.tag.clone();
        let stored_key = self.leaves.get_key_value(leaf, key).map(|(k, _)| k.clone());
        let key_arc = if let Some(key_arc) = stored_key {
            if let Some(entry) = self.leaves.get_mut(leaf, key) {
                let pos = entry.position(&slot.tag).unwrap_or_else(|p| p);
                entry.records.insert(pos, slot);
            }
            key_arc
        } else {
            let key_arc: Arc<str> = key.into();
            // Hash 0 is a placeholder, replaced by `rehash` just below.
            let entry = OrEntry {
                records: vec![slot],
                hash: 0,
            };
            self.leaves.insert_new(leaf, key_arc.clone(), entry);
            self.trie.insert(key, leaf, 0);
            key_arc
        };
        self.tag_index.insert(tag, key_arc);
        self.rehash(leaf, key);
    }

    /// Orders an incoming version of a tag against the stored one: timestamp,
    /// then key, value bytes and TTL (the latter only matter for malformed
    /// duplicates, but make the order total so that merges converge).
    fn cmp_version(&self, key: &str, rec: &OrRecord, stored_key: &str, s: &OrSlot) -> Ordering {
        s.stamp
            .cmp_ts(&rec.timestamp, &self.nodes)
            .reverse()
            .then_with(|| key.as_bytes().cmp(stored_key.as_bytes()))
            .then_with(|| rec.value.as_bytes().cmp(&s.value))
            .then_with(|| rec.ttl_ms.into_option().cmp(&s.ttl()))
    }

    /// Applies one add (`OR_ADD`): refused when the tag is tombstoned; when
    /// the tag is stored, replaces it only with a newer version.
    ///
    /// The caller MUST have folded `record.timestamp` into the node's HLC.
    pub fn apply(&mut self, key: &str, record: &OrRecord) -> OrApplyOutcome {
        let tag = record.tag.as_str();
        if self.tombstones.contains(tag) {
            return OrApplyOutcome::Tombstoned;
        }
        if let Some(stored_key) = self.tag_index.get(tag) {
            let leaf = leaf_of_key(stored_key);
            let newer = self
                .leaves
                .get(leaf, stored_key)
                .and_then(|e| e.position(tag).ok().map(|i| &e.records[i]))
                .is_none_or(|s| self.cmp_version(key, record, stored_key, s).is_gt());
            if !newer {
                return OrApplyOutcome::Stale;
            }
        }
        let previous = self.take_tag(tag);
        let ttl = record.ttl_ms.into_option();
        let stamp = Stamp::pack(&record.timestamp, ttl.is_some(), &mut self.nodes);
        let slot = OrSlot {
            tag: tag.into(),
            value: record.value.as_bytes().into(),
            stamp,
            ttl: ttl.unwrap_or(0),
        };
        self.put_slot(key, slot);
        match previous {
            Some((k, s)) => OrApplyOutcome::Replaced {
                previous_key: k.to_string(),
                previous: self.to_record(&s),
            },
            None => OrApplyOutcome::Added,
        }
    }

    /// Applies one remove (`OR_REMOVE`): tombstones `tag` and removes it from
    /// whichever key holds it.
    pub fn apply_tombstone(&mut self, tag: &str) -> TombstoneOutcome {
        let newly_tombstoned = self.tombstones.insert(tag.into());
        let removed = self
            .take_tag(tag)
            .map(|(k, s)| (k.to_string(), self.to_record(&s)));
        TombstoneOutcome {
            newly_tombstoned,
            removed,
        }
    }

    /// The sync path (`ORMAP_PUSH_DIFF`): applies `tombstones` (purging those
    /// tags under every key), then each of `records` under `key`.
    pub fn merge_key<T: AsRef<str>>(
        &mut self,
        key: &str,
        records: &[OrRecord],
        tombstones: &[T],
    ) -> OrMergeKeyOutcome {
        let mut out = OrMergeKeyOutcome::default();
        for t in tombstones {
            if self.apply_tombstone(t.as_ref()).removed.is_some() {
                out.removed += 1;
            }
        }
        for r in records {
            match self.apply(key, r) {
                OrApplyOutcome::Added => out.added += 1,
                OrApplyOutcome::Replaced { .. } => out.updated += 1,
                OrApplyOutcome::Tombstoned | OrApplyOutcome::Stale => {}
            }
        }
        out
    }

    /// Drops the named tombstones (the host prunes by tombstone epoch) and
    /// returns those that were tombstoned; other names are ignored.
    pub fn prune_tags<T: AsRef<str>>(&mut self, tags: &[T]) -> Vec<String> {
        tags.iter()
            .filter(|t| self.tombstones.remove(t.as_ref()))
            .map(|t| t.as_ref().to_string())
            .collect()
    }

    /// Drops from memory the keys of Merkle leaf `leaf` that `pick`
    /// selects, with all their records (their tags leave the tag index and
    /// their entry hashes the Merkle trie), and returns them. Tombstones
    /// stay: they name tags, not keys. Not a CRDT operation (see
    /// [`LwwMap::release_in_leaf`](super::LwwMap::release_in_leaf)).
    pub fn release_in_leaf(&mut self, leaf: LeafIndex, pick: impl Fn(&str) -> bool) -> Vec<String> {
        let keys: Vec<Arc<str>> = self
            .leaves
            .leaf(leaf)
            .filter(|(k, _)| pick(k))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some((_, entry)) = self.leaves.remove(leaf, &key) else {
                continue;
            };
            for s in &entry.records {
                self.tag_index.remove(&s.tag);
            }
            self.trie.remove(&key, leaf, entry.hash);
            out.push(key.to_string());
        }
        out
    }

    // ---- reads ----------------------------------------------------------------

    fn entry(&self, key: &str) -> Option<&OrEntry> {
        self.leaves.get(leaf_of_key(key), key)
    }

    /// The live values of `key` (not expired at `now_ms`), in tag order.
    #[must_use]
    pub fn get(&self, key: &str, now_ms: u64) -> Vec<&[u8]> {
        self.entry(key)
            .map(|e| {
                e.records
                    .iter()
                    .filter(|s| !s.is_expired(now_ms))
                    .map(|s| &*s.value)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The live records of `key` (not expired at `now_ms`), in tag order.
    #[must_use]
    pub fn get_records(&self, key: &str, now_ms: u64) -> Vec<OrRecord> {
        self.entry(key)
            .map(|e| {
                e.records
                    .iter()
                    .filter(|s| !s.is_expired(now_ms))
                    .map(|s| self.to_record(s))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every stored record of `key`, expired included, in tag order (what
    /// sync and persistence send).
    #[must_use]
    pub fn records(&self, key: &str) -> Vec<OrRecord> {
        self.entry(key)
            .map(|e| e.records.iter().map(|s| self.to_record(s)).collect())
            .unwrap_or_default()
    }

    /// The keys holding at least one record, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().map(|(k, _)| k.as_ref())
    }

    /// The keys of `partition` holding at least one record, in no
    /// particular order. Visits only the Merkle leaves the partition's
    /// digests list as occupied: O(keys in those leaves), not O(keys of
    /// the map) (see `LwwMap::partition_keys`).
    #[must_use]
    pub fn partition_keys(&self, partition: u32) -> Vec<&str> {
        let Some(d) = self.trie.partition(partition) else {
            return Vec::new();
        };
        d.occupied_leaves()
            .flat_map(|l| {
                self.leaves
                    .leaf(l)
                    .map(|(k, _)| k.as_ref())
                    .filter(move |k| hangar_core::partition_of(k) == partition)
            })
            .collect()
    }

    /// The key a stored tag is under.
    #[must_use]
    pub fn key_of_tag(&self, tag: &str) -> Option<&str> {
        self.tag_index.get(tag).map(AsRef::as_ref)
    }

    /// True when `tag` is tombstoned.
    #[must_use]
    pub fn is_tombstoned(&self, tag: &str) -> bool {
        self.tombstones.contains(tag)
    }

    /// All tombstoned tags, in no particular order.
    pub fn tombstones(&self) -> impl Iterator<Item = &str> {
        self.tombstones.iter().map(AsRef::as_ref)
    }

    /// Number of keys holding records (the legacy `size`).
    #[must_use]
    pub fn size(&self) -> usize {
        self.leaves.len()
    }

    /// Number of stored tags across all keys (the legacy `totalRecords`).
    #[must_use]
    pub fn total_records(&self) -> usize {
        self.tag_index.len()
    }

    /// True when no record and no tombstone is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leaves.len() == 0 && self.tombstones.is_empty()
    }

    // ---- Merkle -------------------------------------------------------------

    /// The Merkle root; 0 when no key holds records.
    #[must_use]
    pub fn merkle_root(&self) -> u32 {
        self.trie.root()
    }

    /// The occupied children of the trie node at `path`.
    #[must_use]
    pub fn merkle_buckets(&self, path: &str) -> Buckets {
        self.trie.buckets(path)
    }

    /// True when `path` names a leaf holding keys.
    #[must_use]
    pub fn is_leaf(&self, path: &str) -> bool {
        self.trie.is_leaf(path)
    }

    /// The trie with its per-partition digests (see
    /// [`super::partition_digest`]).
    #[must_use]
    pub fn digests(&self) -> &KeyedTrie {
        &self.trie
    }

    /// `(key, entry hash)` of the keys of `partition` in Merkle leaf `leaf`,
    /// sorted by key: the finest level repair compares.
    #[must_use]
    pub fn partition_items_in_leaf(&self, partition: u32, leaf: LeafIndex) -> Vec<(&str, u32)> {
        let mut out: Vec<(&str, u32)> = self
            .leaves
            .leaf(leaf)
            .filter(|(k, _)| hangar_core::partition_of(k) == partition)
            .map(|(k, e)| (k.as_ref(), e.hash))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// `(leaf, entry hash)` of every key holding records under `path` that
    /// `pick` selects: the items whose sums make a restricted share of the
    /// trie (see [`hangar_core::merkle::buckets_of_items`]). Visits every
    /// key under `path`: O(keys under the path).
    pub fn entry_hashes_under<'a>(
        &'a self,
        path: TriePath,
        pick: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (LeafIndex, u32)> + 'a {
        self.trie
            .occupied_leaves()
            .filter(move |l| path.contains_leaf(*l))
            .flat_map(move |l| {
                self.leaves
                    .leaf(l)
                    .filter(|(k, _)| pick(k.as_ref()))
                    .map(move |(_, e)| (l, e.hash))
                    .collect::<Vec<_>>()
            })
    }

    /// The keys of the leaf at `path` with their entry hashes, sorted by key.
    #[must_use]
    pub fn entry_hashes(&self, path: &str) -> Vec<(&str, u32)> {
        let mut out: Vec<(&str, u32)> = TriePath::parse(path)
            .and_then(TriePath::leaf)
            .map(|l| {
                self.leaves
                    .leaf(l)
                    .map(|(k, e)| (k.as_ref(), e.hash))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The keys of the leaf at `path`, sorted; empty for other paths.
    #[must_use]
    pub fn keys_in_leaf(&self, path: &str) -> Vec<&str> {
        self.entry_hashes(path)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The entry hash of `key`, if it holds records.
    #[must_use]
    pub fn entry_hash(&self, key: &str) -> Option<u32> {
        self.entry(key).map(|e| e.hash)
    }

    /// The leaf path `key` belongs to.
    #[must_use]
    pub fn leaf_path_of(key: &str) -> String {
        leaf_path(leaf_of_key(key))
    }
}

#[cfg(test)]
mod tests;
