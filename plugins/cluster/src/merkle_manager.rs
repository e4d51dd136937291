//! Per-partition Merkle roots, kept current on every change this node
//! applies as owner, for anti-entropy between replicas.
//!
//! An item is one (map, key). Its hash is FNV-1a (UTF-16) of
//! `map/key:millis:counter:nodeId` for an LWW record, and the wrapping sum of
//! `map/key:tag` hashes of its live tags for an OR entry. A partition's root is
//! the wrapping sum of its items' hashes, which equals the root of the
//! depth-3 sum tree over the same items (every inner node is the sum of its
//! children), so replicas can compare roots first and descend only on a
//! mismatch.

use std::collections::HashMap;

use hangar_core::hash::fnv1a_utf16;
use hangar_core::types::{KeyedOp, MapOp};
use hangar_core::{partition_of, PARTITION_COUNT};
use parking_lot::Mutex;

#[derive(Default)]
struct PartitionTree {
    /// (map, key) -> item hash.
    items: HashMap<(String, String), u32>,
    /// OR tags live per (map, key): tag -> tag hash.
    or_tags: HashMap<(String, String), HashMap<String, u32>>,
    root: u32,
}

impl PartitionTree {
    fn set_item(&mut self, id: (String, String), hash: Option<u32>) {
        let old = match hash {
            Some(h) => self.items.insert(id, h),
            None => self.items.remove(&id),
        };
        self.root = self
            .root
            .wrapping_sub(old.unwrap_or(0))
            .wrapping_add(hash.unwrap_or(0));
    }
}

/// The Merkle roots of all partitions.
pub struct MerkleTreeManager {
    partitions: Vec<Mutex<PartitionTree>>,
    /// OR tag -> (partition, map, key), so a remove by tag finds its entry.
    tag_index: Mutex<HashMap<String, (u32, String, String)>>,
}

impl Default for MerkleTreeManager {
    fn default() -> Self {
        Self {
            partitions: (0..PARTITION_COUNT)
                .map(|_| Mutex::new(PartitionTree::default()))
                .collect(),
            tag_index: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for MerkleTreeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTreeManager").finish_non_exhaustive()
    }
}

impl MerkleTreeManager {
    /// Folds applied changes (winning records) into the trees.
    pub fn apply(&self, changes: &[KeyedOp]) {
        for c in changes {
            let p = partition_of(&c.key);
            let id = (c.map.to_string(), c.key.to_string());
            match &c.op {
                MapOp::Lww(r) => {
                    let t = &r.timestamp;
                    let h = fnv1a_utf16(&format!(
                        "{}/{}:{}:{}:{}",
                        c.map, c.key, t.millis, t.counter, t.node_id
                    ));
                    self.partitions[p as usize].lock().set_item(id, Some(h));
                }
                MapOp::OrAdd(r) => {
                    let h = fnv1a_utf16(&format!("{}/{}:{}", c.map, c.key, r.tag));
                    self.tag_index
                        .lock()
                        .insert(r.tag.to_string(), (p, id.0.clone(), id.1.clone()));
                    let mut tree = self.partitions[p as usize].lock();
                    let tags = tree.or_tags.entry(id.clone()).or_default();
                    tags.insert(r.tag.to_string(), h);
                    let sum = tags.values().fold(0u32, |a, b| a.wrapping_add(*b));
                    tree.set_item(id, Some(sum));
                }
                MapOp::OrRemove(tag) => {
                    let Some((p, map, key)) = self.tag_index.lock().remove(tag.as_str()) else {
                        continue;
                    };
                    let id = (map, key);
                    let mut tree = self.partitions[p as usize].lock();
                    let sum = tree.or_tags.get_mut(&id).map(|tags| {
                        tags.remove(tag.as_str());
                        (
                            tags.is_empty(),
                            tags.values().fold(0u32, |a, b| a.wrapping_add(*b)),
                        )
                    });
                    match sum {
                        Some((true, _)) => {
                            tree.or_tags.remove(&id);
                            tree.set_item(id, None);
                        }
                        Some((false, s)) => tree.set_item(id, Some(s)),
                        None => {}
                    }
                }
            }
        }
    }

    /// Root of `partition` (0 when empty or out of range).
    #[must_use]
    pub fn root(&self, partition: u32) -> u32 {
        self.partitions
            .get(partition as usize)
            .map_or(0, |t| t.lock().root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::ROption;
    use hangar_core::types::{LwwRecord, OrRecord, RawValue, Timestamp};

    fn lww(map: &str, key: &str, millis: u64) -> KeyedOp {
        KeyedOp {
            map: map.into(),
            key: key.into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(RawValue::encode(&1).unwrap()),
                timestamp: Timestamp::new(millis, 0, "n"),
                ttl_ms: ROption::RNone,
            }),
        }
    }

    #[test]
    fn t10_roots_track_changes_and_do_not_depend_on_order() {
        let a = MerkleTreeManager::default();
        let b = MerkleTreeManager::default();
        let ops = [lww("m", "k1", 1), lww("m", "k2", 2), lww("m", "k1", 3)];
        a.apply(&ops);
        b.apply(&[ops[1].clone(), ops[2].clone()]);
        for p in 0..PARTITION_COUNT {
            assert_eq!(a.root(p), b.root(p), "partition {p}");
        }
        assert_ne!(a.root(partition_of("k1")), 0);
        assert_eq!(a.root(PARTITION_COUNT), 0);
    }

    #[test]
    fn t11_or_removes_bring_an_entry_back_to_empty() {
        let m = MerkleTreeManager::default();
        let add = KeyedOp {
            map: "o".into(),
            key: "k".into(),
            op: MapOp::OrAdd(OrRecord {
                value: RawValue::encode(&"x").unwrap(),
                timestamp: Timestamp::new(1, 0, "n"),
                tag: "1:0:n".into(),
                ttl_ms: ROption::RNone,
            }),
        };
        m.apply(&[add]);
        let p = partition_of("k");
        assert_ne!(m.root(p), 0);
        m.apply(&[KeyedOp {
            map: "o".into(),
            key: "k".into(),
            op: MapOp::OrRemove("1:0:n".into()),
        }]);
        assert_eq!(m.root(p), 0);
    }
}
