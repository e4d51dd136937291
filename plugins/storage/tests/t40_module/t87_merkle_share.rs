//! A map's Merkle tree restricted to some partitions
//! (`StorageAccessor::merkle_node_in`): the share every partition makes is
//! the unrestricted tree, the shares of disjoint sets add up to the whole,
//! and a partition the map does not hold in memory is refused as
//! `UNAVAILABLE` rather than answered short.

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_core::hlc::Hlc;
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{MerkleNode, MerkleRequest, MerkleResponse};
use hangar_core::{partition_of, ErrorKind, MapKind, WriteConcern, PARTITION_COUNT};
use hangar_storage::module::testing::ControlledView;
use hangar_storage::persistence::{MemoryBackend, MemoryStore, PersistenceBackend};
use hangar_storage::DefaultStorage;

use super::support::{apply, config, or_add, put, tombstone, Metrics, NODE};

fn req(map: &str, kind: MapKind, path: &str) -> MerkleRequest {
    MerkleRequest {
        map: map.into(),
        kind,
        path: path.into(),
        consistency: abi_stable::std_types::ROption::RNone,
    }
}

fn set_where(f: impl Fn(u32) -> bool) -> PartitionSet {
    PartitionSet::of((0..PARTITION_COUNT).filter(|p| f(*p)))
}

async fn module_with(store: &MemoryStore, view: Arc<ControlledView>) -> DefaultStorage {
    let backend = Arc::new(MemoryBackend::open(store));
    let deps = StorageDeps {
        clock: Arc::new(Hlc::new(NODE).unwrap()),
        metrics: Arc::new(Metrics::default()),
        partitions: view,
    };
    let m = DefaultStorage::with_backend(
        config(),
        deps,
        "memory",
        Arc::new(move |_| Ok(backend.clone() as Arc<dyn PersistenceBackend>)),
    )
    .unwrap();
    m.start().await.unwrap();
    m
}

/// 300 LWW keys (every tenth a tombstone) in `lww`, 120 OR keys (some
/// with two records) in `or`.
async fn seed(m: &DefaultStorage) {
    let mut ops = Vec::new();
    for i in 0..300 {
        let k = format!("key-{i}");
        ops.push(if i % 10 == 0 {
            tombstone("lww", &k, 20)
        } else {
            put("lww", &k, i, 10 + i as u64)
        });
    }
    for i in 0..120 {
        let k = format!("ork-{i}");
        ops.push(or_add("or", &k, i, 10 + i as u64, None));
        if i % 3 == 0 {
            ops.push(or_add("or", &k, i + 1000, 500 + i as u64, None));
        }
    }
    apply(m, ops, WriteConcern::Persisted).await;
}

/// The buckets of an inner node as a map (panics on a leaf).
fn buckets(r: &MerkleResponse) -> BTreeMap<u8, u32> {
    match &r.node {
        MerkleNode::Buckets(b) => b.iter().map(|t| (t.0, t.1)).collect(),
        MerkleNode::Leaf(_) => panic!("expected buckets, got a leaf"),
    }
}

fn add(a: &BTreeMap<u8, u32>, b: &BTreeMap<u8, u32>) -> BTreeMap<u8, u32> {
    let mut out = a.clone();
    for (c, h) in b {
        let e = out.entry(*c).or_insert(0);
        *e = e.wrapping_add(*h);
    }
    out
}

/// Every path from the root down to the occupied leaves of `m`'s tree.
async fn paths(m: &DefaultStorage, map: &str, kind: MapKind) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(p) = todo.pop() {
        out.push(p.clone());
        if p.len() == 3 {
            continue;
        }
        let r = m.merkle_node(req(map, kind, &p)).await.unwrap();
        for c in buckets(&r).keys() {
            todo.push(format!("{p}{}", char::from(*c)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t87_shares_of_disjoint_partition_sets_add_up_to_the_whole_tree() {
    let store = MemoryStore::new();
    let m = module_with(&store, ControlledView::new(NODE, |_| true)).await;
    seed(&m).await;
    let acc = m.accessor();
    let even = set_where(|p| p % 2 == 0);
    let odd = set_where(|p| p % 2 == 1);
    for (map, kind) in [("lww", MapKind::Lww), ("or", MapKind::Or)] {
        let walked = paths(&m, map, kind).await;
        assert!(walked.iter().any(|p| p.len() == 3), "{map}: reached leaves");
        for p in walked {
            let whole = m.merkle_node(req(map, kind, &p)).await.unwrap();
            let all = acc
                .merkle_node_in(req(map, kind, &p), PartitionSet::ALL)
                .await
                .unwrap();
            assert_eq!(all, whole, "{map} {p:?}: every partition is the whole node");
            let e = acc.merkle_node_in(req(map, kind, &p), even).await.unwrap();
            let o = acc.merkle_node_in(req(map, kind, &p), odd).await.unwrap();
            match (&whole.node, &e.node, &o.node) {
                (MerkleNode::Buckets(_), _, _) => {
                    assert_eq!(
                        add(&buckets(&e), &buckets(&o)),
                        buckets(&whole),
                        "{map} {p:?}"
                    );
                }
                (MerkleNode::Leaf(w), MerkleNode::Leaf(a), MerkleNode::Leaf(b)) => {
                    assert!(a.iter().all(|r| partition_of(&r.key) % 2 == 0));
                    assert!(b.iter().all(|r| partition_of(&r.key) % 2 == 1));
                    let mut union: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
                    union.sort_by(|x, y| x.key.cmp(&y.key));
                    assert_eq!(&union, &w.to_vec(), "{map} {p:?}: leaves are the union");
                    assert_eq!(e.tombstones, whole.tombstones);
                }
                other => panic!("{map} {p:?}: node kinds differ: {other:?}"),
            }
        }
        // A restricted root differs from the whole one: the restriction is real.
        let e = acc.merkle_node_in(req(map, kind, ""), even).await.unwrap();
        let whole = m.merkle_node(req(map, kind, "")).await.unwrap();
        assert_ne!(buckets(&e), buckets(&whole), "{map}");
        let none = acc
            .merkle_node_in(req(map, kind, ""), PartitionSet::EMPTY)
            .await
            .unwrap();
        assert!(buckets(&none).is_empty(), "{map}: no partition, no bucket");
    }
    let bad = acc
        .merkle_node_in(req("lww", MapKind::Lww, "xyz"), even)
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::INVALID_INPUT);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_a_partition_not_held_in_memory_is_refused_as_unavailable() {
    let store = MemoryStore::new();
    let m = module_with(&store, ControlledView::new(NODE, |_| true)).await;
    seed(&m).await;
    m.shutdown().await.unwrap();

    // Restarted holding the even partitions only.
    let view = ControlledView::new(NODE, |p| p % 2 == 0);
    let m = module_with(&store, view).await;
    let acc = m.accessor();
    let even = set_where(|p| p % 2 == 0);
    for (map, kind) in [("lww", MapKind::Lww), ("or", MapKind::Or)] {
        let ok = acc.merkle_node_in(req(map, kind, ""), even).await.unwrap();
        assert!(!buckets(&ok).is_empty(), "{map}: the held share answers");
        for asked in [set_where(|p| p == 1), PartitionSet::ALL] {
            let e = acc
                .merkle_node_in(req(map, kind, ""), asked)
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::UNAVAILABLE, "{map}: {}", e.message);
            assert!(e.message.contains("not held"), "{}", e.message);
        }
        let leaf = acc
            .merkle_node_in(req(map, kind, "000"), set_where(|p| p == 3))
            .await
            .unwrap_err();
        assert_eq!(leaf.kind, ErrorKind::UNAVAILABLE, "{map}: leaves too");
    }
    // A map this node never saw has nothing in any partition.
    let unknown = acc
        .merkle_node_in(req("nope", MapKind::Lww, ""), PartitionSet::ALL)
        .await
        .unwrap();
    assert!(buckets(&unknown).is_empty());
    m.shutdown().await.unwrap();
}
