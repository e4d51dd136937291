//! Comparing the replicas of every partition after a run: each node's
//! store is read directly (`read_store`, the node stopped), and for every
//! partition the owner and backups of the final table must hold every
//! acknowledged key and the same records of them (equal Merkle roots over
//! their LWW item hashes). Used by `kill_checker`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hangar_core::merkle::{lww_item_hash, KeyedMerkleTree};
use hangar_core::partition_of;
use hangar_host::protocol::messages::PartitionMap;
use hangar_storage::persistence::{PersistenceBackend, RedbBackend, StoredEntry};

/// One replica's records of one partition: item hash by key.
pub type Items = BTreeMap<String, u32>;

/// The Merkle root over `items`, or over those `keep` accepts.
fn root_of(items: &Items, keep: impl Fn(&str) -> bool) -> u32 {
    let mut t = KeyedMerkleTree::new();
    for (k, h) in items.iter().filter(|(k, _)| keep(k)) {
        t.set(k, *h);
    }
    t.root()
}

/// What comparing the replicas found.
#[derive(Debug, Default)]
pub struct ReplicaReport {
    /// A replica missing acknowledged keys of its partition, holding a key
    /// no writer sent, or replicas whose records of acknowledged keys
    /// differ.
    pub faults: Vec<String>,
    /// Partitions whose replicas agree on every acknowledged key but whose
    /// full roots differ by writes that were never acknowledged.
    pub diverged: Vec<String>,
    /// Partitions compared.
    pub compared: usize,
}

/// Compares the replicas (owner and backups in `table`) of every
/// partition: each must hold every acknowledged key of it, nothing never
/// sent, and the same records of the acknowledged keys (equal roots over
/// them). Replicas whose full roots differ only by unacknowledged writes
/// (a write refused or timed out after reaching one replica) are counted
/// in [`ReplicaReport::diverged`]: bringing those in line is anti-entropy's
/// job.
#[must_use]
pub fn compare_replicas(
    table: &PartitionMap,
    stores: &BTreeMap<String, BTreeMap<u32, Items>>,
    acked: &BTreeSet<String>,
    sent: &BTreeSet<String>,
) -> ReplicaReport {
    let mut out = ReplicaReport::default();
    let mut by_part: BTreeMap<u32, Vec<&String>> = BTreeMap::new();
    for k in acked {
        by_part.entry(partition_of(k)).or_default().push(k);
    }
    let empty = Items::new();
    for p in &table.partitions {
        let mut holders = vec![p.owner_node_id.clone()];
        holders.extend(p.backup_node_ids.iter().cloned());
        let mut roots = Vec::new();
        for h in &holders {
            let Some(store) = stores.get(h) else {
                out.faults.push(format!(
                    "partition {}: holder {h} is not a live node",
                    p.partition_id
                ));
                continue;
            };
            let items = store.get(&p.partition_id).unwrap_or(&empty);
            let missing: Vec<&&String> = by_part
                .get(&p.partition_id)
                .map(|ks| ks.iter().filter(|k| !items.contains_key(**k)).collect())
                .unwrap_or_default();
            if !missing.is_empty() {
                out.faults.push(format!(
                    "partition {}: {h} lacks {} acknowledged keys of it, e.g. {:?}",
                    p.partition_id,
                    missing.len(),
                    &missing[..missing.len().min(3)]
                ));
            }
            if let Some(k) = items.keys().find(|k| !sent.contains(*k)) {
                out.faults.push(format!(
                    "partition {}: {h} holds {k:?}, which no writer sent",
                    p.partition_id
                ));
            }
            roots.push((
                h.clone(),
                root_of(items, |k| acked.contains(k)),
                root_of(items, |_| true),
                items.len(),
            ));
        }
        if roots.windows(2).any(|w| w[0].1 != w[1].1) {
            out.faults.push(format!(
                "partition {}: replica roots over acknowledged keys differ (node, root, full root, keys): {roots:?}",
                p.partition_id
            ));
        } else if roots.windows(2).any(|w| w[0].2 != w[1].2) {
            out.diverged.push(format!(
                "partition {}: full roots differ by unacknowledged writes (node, root over acknowledged, full root, keys): {roots:?}",
                p.partition_id
            ));
        }
        out.compared += 1;
    }
    out
}

/// The records of LWW map `map` in the store of node `id` (the `hangar`
/// process must be stopped: redb locks its file) under the data directory
/// `data_dir` (`<data_dir>/<id>/storage`), per partition: the LWW item
/// hash (`hangar_core::merkle`) of every key.
///
/// # Errors
/// When the store cannot be opened or read, or `map` holds OR entries.
pub async fn read_store(
    data_dir: &Path,
    id: &str,
    map: &str,
) -> Result<BTreeMap<u32, Items>, String> {
    let dir = data_dir.join(id).join("storage");
    let db = RedbBackend::open(&dir).map_err(|e| format!("{id}: open {}: {e}", dir.display()))?;
    let loaded = db
        .load_map(map)
        .await
        .map_err(|e| format!("{id}: load {map}: {e}"))?;
    let mut out: BTreeMap<u32, Items> = BTreeMap::new();
    for (key, entry) in loaded.entries {
        let StoredEntry::Lww(r) = entry else {
            return Err(format!("{id}: {map}/{key} is not an LWW entry"));
        };
        let h = lww_item_hash(
            &key,
            r.timestamp.millis,
            r.timestamp.counter,
            r.timestamp.node_id.as_str(),
        );
        out.entry(partition_of(&key)).or_default().insert(key, h);
    }
    let _ = db.close().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::PARTITION_COUNT;
    use hangar_host::protocol::messages::PartitionInfo;

    /// A table where every partition is owned by n1 and backed up by n2.
    fn table() -> PartitionMap {
        PartitionMap {
            version: 1,
            partition_count: PARTITION_COUNT,
            nodes: Vec::new(),
            partitions: (0..PARTITION_COUNT)
                .map(|p| PartitionInfo {
                    partition_id: p,
                    owner_node_id: "n1".into(),
                    backup_node_ids: vec!["n2".into()],
                })
                .collect(),
            generated_at: 0,
        }
    }

    fn store(keys: &[&str]) -> BTreeMap<u32, Items> {
        let mut out: BTreeMap<u32, Items> = BTreeMap::new();
        for k in keys {
            out.entry(partition_of(k))
                .or_default()
                .insert((*k).to_string(), lww_item_hash(k, 1, 0, "w"));
        }
        out
    }

    fn compare(n1: &[&str], n2: &[&str], acked: &[&str], sent: &[&str]) -> ReplicaReport {
        let stores = BTreeMap::from([("n1".to_string(), store(n1)), ("n2".to_string(), store(n2))]);
        let set = |v: &[&str]| v.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
        compare_replicas(&table(), &stores, &set(acked), &set(sent))
    }

    fn faults(r: &ReplicaReport) -> Result<(), String> {
        if r.faults.is_empty() {
            Ok(())
        } else {
            Err(r.faults.join("\n"))
        }
    }

    #[test]
    fn t10_equal_replicas_pass() {
        let out = compare(&["a", "b"], &["a", "b"], &["a", "b"], &["a", "b"]);
        assert_eq!(out.compared, 271);
        faults(&out).unwrap();
        assert!(out.diverged.is_empty());
    }

    #[test]
    fn t11_a_replica_missing_an_acknowledged_key_is_caught() {
        let out = compare(&["a", "b"], &["a"], &["a", "b"], &["a", "b"]);
        let e = faults(&out).unwrap_err();
        assert!(e.contains("n2 lacks 1 acknowledged keys"), "{e}");
    }

    #[test]
    fn t12_replicas_differing_only_by_an_unacknowledged_write_are_counted_apart() {
        let out = compare(&["a", "b"], &["a"], &["a"], &["a", "b"]);
        faults(&out).unwrap();
        assert_eq!(out.diverged.len(), 1, "{:?}", out.diverged);
    }

    #[test]
    fn t13_a_key_no_writer_sent_is_caught() {
        let out = compare(&["a", "zz"], &["a"], &["a"], &["a"]);
        let e = faults(&out).unwrap_err();
        assert!(e.contains("which no writer sent"), "{e}");
    }

    #[test]
    fn t14_the_same_key_with_different_records_is_caught() {
        let mut stores = BTreeMap::from([
            ("n1".to_string(), store(&["a"])),
            ("n2".to_string(), store(&["a"])),
        ]);
        let p = partition_of("a");
        stores
            .get_mut("n2")
            .and_then(|s| s.get_mut(&p))
            .expect("a on n2")
            .insert("a".into(), lww_item_hash("a", 2, 0, "w"));
        let a = BTreeSet::from(["a".to_string()]);
        let out = compare_replicas(&table(), &stores, &a, &a);
        let e = faults(&out).unwrap_err();
        assert!(e.contains("roots over acknowledged keys differ"), "{e}");
    }
}
