//! The cases of the lone-node cluster suite.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use hangar_core::module::cluster_types::{LockRelease, LockRequest, ReplicationRequest};
use hangar_core::{ConsistencyLevel, PARTITION_COUNT};

use super::Ctx;
use crate::storage::lww;

pub(super) async fn t10_a_lone_node_owns_every_partition(cx: Ctx) {
    let Ctx { m, .. } = cx;
    let v = m.partition_view();
    let me = v.local_node();
    assert!(!me.is_empty());
    assert!(v.version() >= 1);
    for p in 0..PARTITION_COUNT {
        assert_eq!(v.owner(p).into_option().as_ref(), Some(&me), "owner of {p}");
        assert!(v.is_local_owner(p) && v.is_related(p));
        assert!(!v.backups(p).contains(&me), "never its own backup");
    }
    let map = m.partition_map();
    assert_eq!(map.partition_count, 271);
    assert_eq!(map.partitions.len(), 271);
    assert_eq!(map.version, v.version());
    assert!(map.nodes.iter().any(|n| n.node_id == me));
    let members = m.members();
    assert_eq!(members.iter().filter(|x| x.is_local).count(), 1);
}

pub(super) async fn t11_attaching_storage_twice_is_refused(cx: Ctx) {
    let Ctx { m, storage } = cx;
    assert!(
        m.attach_storage(storage.accessor()).is_err(),
        "already attached (and started)"
    );
}

pub(super) async fn t20_replication_without_backups_succeeds_at_every_level(cx: Ctx) {
    let Ctx { m, .. } = cx;
    for c in [
        ConsistencyLevel::Eventual,
        ConsistencyLevel::Quorum,
        ConsistencyLevel::Strong,
    ] {
        let out = m
            .replicate(ReplicationRequest {
                changes: RVec::from(vec![lww("m", "k", Some(serde_json::json!(1)), 5, "n")]),
                consistency: ROption::RSome(c),
                durable: false,
            })
            .await
            .expect("replicate");
        assert!(out.success, "{c:?}: {out:?}");
    }
}

fn req(name: &str, holder: &str) -> LockRequest {
    LockRequest {
        name: name.into(),
        holder: holder.into(),
        ttl_ms: 10_000,
    }
}

pub(super) async fn t30_locks_grant_refuse_and_release(cx: Ctx) {
    let Ctx { m, .. } = cx;
    let g = m.lock(req("L", "h1")).await.expect("lock");
    assert!(g.granted && g.fencing_token > 0);
    let busy = m.lock(req("L", "h2")).await.expect("lock");
    assert!(!busy.granted, "held by h1");
    let wrong = LockRelease {
        name: "L".into(),
        holder: "h2".into(),
        fencing_token: g.fencing_token,
    };
    assert!(!m.unlock(wrong).await.expect("unlock"));
    let right = LockRelease {
        name: "L".into(),
        holder: "h1".into(),
        fencing_token: g.fencing_token,
    };
    assert!(m.unlock(right).await.expect("unlock"));
    let g2 = m.lock(req("L", "h2")).await.expect("lock");
    assert!(
        g2.granted && g2.fencing_token > g.fencing_token,
        "tokens never go backwards"
    );
}

pub(super) async fn t31_a_holder_that_disconnects_loses_its_locks(cx: Ctx) {
    let Ctx { m, .. } = cx;
    assert!(m.lock(req("A", "gone")).await.expect("lock").granted);
    assert!(m.lock(req("B", "gone")).await.expect("lock").granted);
    assert_eq!(m.release_holder("gone".into()).await.expect("release"), 2);
    assert!(m.lock(req("A", "other")).await.expect("lock").granted);
}

pub(super) async fn t35_a_lone_nodes_reads_are_its_storages(cx: Ctx) {
    let Ctx { m, storage } = cx;
    use crate::storage::helpers::{apply, qreq, UpdateRecorder};
    use hangar_core::module::storage_types::ChangeType;
    use hangar_core::WriteConcern;
    storage.start().await.expect("storage start");
    apply(
        &storage,
        (0..5)
            .map(|i| {
                lww(
                    "r",
                    &format!("k{i}"),
                    Some(serde_json::json!({ "v": i })),
                    5,
                    "n",
                )
            })
            .collect(),
        WriteConcern::Applied,
    )
    .await;
    let q = qreq(
        "r",
        serde_json::json!({"sort": {"v": "desc"}, "limit": 3}),
        None,
    );
    let from_cluster = m.query(q.clone()).await.expect("cluster query");
    let from_storage = storage.query(q.clone()).await.expect("storage query");
    assert_eq!(from_cluster.rows, from_storage.rows);
    let rec = Arc::new(UpdateRecorder::default());
    let first = m.subscribe(41, q, rec.clone()).await.expect("subscribe");
    assert_eq!(first.rows.len(), 3);
    apply(
        &storage,
        vec![lww("r", "top", Some(serde_json::json!({"v": 99})), 6, "n")],
        WriteConcern::Applied,
    )
    .await;
    let got = rec.take();
    assert!(
        got.iter()
            .any(|u| u.key == "top" && u.change == ChangeType::Enter),
        "the live query sees the write: {got:?}"
    );
    assert!(m.unsubscribe(41));
    assert!(!m.unsubscribe(41), "already gone");
    assert!(
        m.search(hangar_core::module::storage_types::SearchRequest {
            map: "r".into(),
            query: "x".into(),
            limit: 0,
            min_score: 0.0,
            boost: RVec::new(),
            consistency: ROption::RNone,
        })
        .await
        .is_err(),
        "no search configured on map r: the storage module's error"
    );
    let _ = storage.shutdown().await;
}

pub(super) async fn t36_a_lone_nodes_merkle_tree_is_its_storages(cx: Ctx) {
    let Ctx { m, storage } = cx;
    use crate::storage::helpers::{apply, or_add};
    use hangar_core::module::storage_types::{MerkleNode, MerkleRequest};
    use hangar_core::{ErrorKind, MapKind, WriteConcern};
    storage.start().await.expect("storage start");
    let mut ops: Vec<_> = (0..60)
        .map(|i| {
            lww(
                "ml",
                &format!("k{i}"),
                Some(serde_json::json!(i)),
                5 + i,
                "n",
            )
        })
        .collect();
    ops.extend((0..30).map(|i| or_add("mo", &format!("o{i}"), serde_json::json!(i), 7, 0, "n")));
    apply(&storage, ops, WriteConcern::Applied).await;
    for (map, kind) in [("ml", MapKind::Lww), ("mo", MapKind::Or)] {
        let mut todo = vec![String::new()];
        let mut leaves = 0;
        while let Some(path) = todo.pop() {
            let r = MerkleRequest {
                map: map.into(),
                kind,
                path: path.as_str().into(),
                consistency: ROption::RNone,
            };
            let from_storage = storage.merkle_node(r.clone()).await.expect("storage node");
            let from_cluster = m.merkle_node(r).await.expect("cluster node");
            assert_eq!(from_cluster, from_storage, "{map} {path:?}");
            match from_storage.node {
                MerkleNode::Buckets(b) => {
                    todo.extend(b.iter().map(|c| format!("{path}{}", char::from(c.0))));
                }
                MerkleNode::Leaf(_) => leaves += 1,
            }
        }
        assert!(leaves > 0, "{map}: the walk reached leaves");
    }
    let bad = m
        .merkle_node(MerkleRequest {
            map: "ml".into(),
            kind: MapKind::Lww,
            path: "zz".into(),
            consistency: ROption::RNone,
        })
        .await
        .expect_err("not a trie path");
    assert_eq!(bad.kind, ErrorKind::INVALID_INPUT, "{}", bad.message);
    let _ = storage.shutdown().await;
}

pub(super) async fn t40_shutdown_is_idempotent(cx: Ctx) {
    let Ctx { m, .. } = cx;
    m.shutdown().await.expect("shutdown");
    m.shutdown().await.expect("again");
}
