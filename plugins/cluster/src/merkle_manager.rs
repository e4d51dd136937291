//! Per-partition Merkle roots, kept current on every change this node
//! applies as owner, for anti-entropy between replicas.
//!
//! An item is one (map, key), named `<len(map)>:<map><key>` (unambiguous
//! whatever the names contain). Its hash is FNV-1a (UTF-16) of
//! `<item>:millis:counter:nodeId` for an LWW record, and the wrapping sum of
//! `<item>:tag` hashes of its live tags for an OR entry. Each partition keeps
//! a depth-3 [`KeyedMerkleTree`] of its items, so replicas compare roots
//! first and descend through buckets only where they differ.

use std::collections::HashMap;

use hangar_core::hash::fnv1a_utf16;
use hangar_core::merkle::KeyedMerkleTree;
use hangar_core::types::{KeyedOp, MapOp};
use hangar_core::{partition_of, PARTITION_COUNT};
use parking_lot::Mutex;

#[derive(Default)]
struct PartitionTree {
    items: KeyedMerkleTree,
    /// OR tags live per item: tag -> tag hash.
    or_tags: HashMap<String, HashMap<String, u32>>,
}

fn item_name(map: &str, key: &str) -> String {
    format!("{}:{map}{key}", map.len())
}

/// The Merkle trees of all partitions.
pub struct MerkleTreeManager {
    partitions: Vec<Mutex<PartitionTree>>,
    /// OR tag -> (partition, item), so a remove by tag finds its entry.
    tag_index: Mutex<HashMap<String, (u32, String)>>,
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
            let item = item_name(&c.map, &c.key);
            match &c.op {
                MapOp::Lww(r) => {
                    let t = &r.timestamp;
                    let h =
                        fnv1a_utf16(&format!("{item}:{}:{}:{}", t.millis, t.counter, t.node_id));
                    self.partitions[p as usize].lock().items.set(&item, h);
                }
                MapOp::OrAdd(r) => {
                    let h = fnv1a_utf16(&format!("{item}:{}", r.tag));
                    self.tag_index
                        .lock()
                        .insert(r.tag.to_string(), (p, item.clone()));
                    let mut tree = self.partitions[p as usize].lock();
                    let tags = tree.or_tags.entry(item.clone()).or_default();
                    tags.insert(r.tag.to_string(), h);
                    let sum = tags.values().fold(0u32, |a, b| a.wrapping_add(*b));
                    tree.items.set(&item, sum);
                }
                MapOp::OrRemove(tag) => {
                    let Some((p, item)) = self.tag_index.lock().remove(tag.as_str()) else {
                        continue;
                    };
                    let mut tree = self.partitions[p as usize].lock();
                    let Some(tags) = tree.or_tags.get_mut(&item) else {
                        continue;
                    };
                    tags.remove(tag.as_str());
                    if tags.is_empty() {
                        tree.or_tags.remove(&item);
                        tree.items.remove(&item);
                    } else {
                        let sum = tags.values().fold(0u32, |a, b| a.wrapping_add(*b));
                        tree.items.set(&item, sum);
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
            .map_or(0, |t| t.lock().items.root())
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
