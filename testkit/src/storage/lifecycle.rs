//! Lifecycle and lazy loading: shutdown, restart over the same data
//! directory, concurrent first uses, writes during a load, the partition
//! filter, PERSISTED across a restart and across a crash.

use std::collections::BTreeSet;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::hlc::Hlc;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::NoMetrics;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::types::{MapKind, WriteConcern};
use hangar_core::{partition_of, ErrorKind};
use serde_json::json;

use super::helpers::{
    apply, apply_durable, batch, lww, lww_ttl, lww_value, or_add, or_remove, or_values, qreq, read,
    read_one, tag,
};
use super::{Ctx, NODE};

/// A partition view that relates this node to the partitions `keep` accepts.
pub(super) struct RelatedIf(pub fn(u32) -> bool);

impl PartitionView for RelatedIf {
    fn local_node(&self) -> RString {
        NODE.into()
    }
    fn version(&self) -> u64 {
        1
    }
    fn owner(&self, partition: u32) -> ROption<RString> {
        if (self.0)(partition) {
            ROption::RSome(NODE.into())
        } else {
            ROption::RSome("elsewhere".into())
        }
    }
    fn backups(&self, _partition: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, partition: u32) -> bool {
        (self.0)(partition)
    }
    fn is_related(&self, partition: u32) -> bool {
        (self.0)(partition)
    }
}

pub(super) fn deps_related_if(keep: fn(u32) -> bool) -> StorageDeps {
    StorageDeps {
        clock: Arc::new(Hlc::new(NODE).expect("node id")),
        metrics: Arc::new(NoMetrics),
        partitions: Arc::new(RelatedIf(keep)),
    }
}

async fn count(m: &Arc<dyn StorageModule>, map: &str) -> usize {
    m.query(qreq(map, json!({}), None))
        .await
        .expect("query")
        .rows
        .len()
}

pub(super) async fn t80_calls_after_shutdown_fail_with_shut_down(cx: Ctx) {
    let m = cx.m();
    m.shutdown().await.expect("shutdown");
    m.shutdown().await.expect("shutdown is idempotent");
    let e = m
        .apply(batch(
            vec![lww("m", "k", Some(json!(1)), 1, "n")],
            WriteConcern::Memory,
        ))
        .await
        .expect_err("apply after shutdown");
    assert_eq!(e.kind, ErrorKind::SHUT_DOWN, "{e}");
    let e = m
        .read("m".into(), RVec::new())
        .await
        .expect_err("read after shutdown");
    assert_eq!(e.kind, ErrorKind::SHUT_DOWN, "{e}");
}

pub(super) async fn t81_everything_survives_a_restart(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![
            lww("l", "a", Some(json!({"v": 1})), 100, "n"),
            lww_ttl(
                "l",
                "t",
                Some(json!({"v": 2})),
                100,
                "n",
                Some(9_999_999_999_999),
            ),
            lww("l", "dead", Some(json!(0)), 100, "n"),
            lww("l", "dead", None, 101, "n"),
            or_add("o", "k", json!("x"), 100, 0, "n"),
            or_add("o", "k", json!("y"), 100, 1, "n"),
            or_remove("o", "k", &tag(100, 0, "n")),
        ],
        WriteConcern::Applied,
    )
    .await;
    let roots = (
        m.merkle_root("l".into(), MapKind::Lww).await.unwrap(),
        m.merkle_root("o".into(), MapKind::Or).await.unwrap(),
    );
    let m = cx.restart().await;
    assert_eq!(
        lww_value(&read_one(&m, "l", "a").await),
        Some(json!({"v": 1}))
    );
    match read_one(&m, "l", "t").await {
        RecordState::Lww(r) => assert_eq!(r.ttl_ms, ROption::RSome(9_999_999_999_999), "TTL kept"),
        other => panic!("{other:?}"),
    }
    match read_one(&m, "l", "dead").await {
        RecordState::Lww(r) => assert!(r.is_tombstone() && r.timestamp.millis == 101),
        other => panic!("{other:?}"),
    }
    assert_eq!(or_values(&read_one(&m, "o", "k").await), [json!("y")]);
    let tombs = m.accessor().or_tombstones("o".into()).await.unwrap();
    assert_eq!(tombs.len(), 1);
    assert_eq!(
        (
            m.merkle_root("l".into(), MapKind::Lww).await.unwrap(),
            m.merkle_root("o".into(), MapKind::Or).await.unwrap()
        ),
        roots
    );
    let kinds: Vec<(String, MapKind)> = m
        .list_maps()
        .await
        .unwrap()
        .iter()
        .map(|i| (i.name.to_string(), i.kind))
        .collect();
    assert_eq!(
        kinds,
        [("l".into(), MapKind::Lww), ("o".into(), MapKind::Or)]
    );
    // The map kind comes from the store: an OR op on the LWW map is refused.
    let out = apply(
        &m,
        vec![or_add("l", "z", json!(1), 200, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Rejected);
}

pub(super) async fn t82_concurrent_first_uses_after_a_restart_all_see_the_whole_map(cx: Ctx) {
    let m = cx.m();
    let n = 5_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let ops = chunk
            .iter()
            .map(|i| lww("big", &format!("k{i}"), Some(json!({"i": i})), 100, "n"))
            .collect();
        apply(&m, ops, WriteConcern::Applied).await;
    }
    let root = m.merkle_root("big".into(), MapKind::Lww).await.unwrap();
    let m = cx.restart().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => count(&m, "big").await == n,
                1 => m.merkle_root("big".into(), MapKind::Lww).await.unwrap() == root,
                _ => read(&m, "big", &["k0", "k4999"])
                    .await
                    .iter()
                    .all(|r| r.state != RecordState::Missing),
            }
        }));
    }
    for t in tasks {
        assert!(
            t.await.expect("no panic"),
            "every first use sees the whole map"
        );
    }
}

pub(super) async fn t83_writes_during_a_load_are_not_lost(cx: Ctx) {
    let m = cx.m();
    let n = 20_000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let ops = chunk
            .iter()
            .map(|i| lww("load", &format!("k{i}"), Some(json!({"i": i})), 1_000, "n"))
            .collect();
        apply(&m, ops, WriteConcern::Applied).await;
    }
    let m = cx.restart().await;
    // Writes race the load that the first of them starts.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut ops = Vec::new();
            for j in 0..50u64 {
                let i = w * 50 + j;
                ops.push(lww(
                    "load",
                    &format!("new{i}"),
                    Some(json!({"new": i})),
                    2_000,
                    "n",
                ));
                ops.push(lww(
                    "load",
                    &format!("k{i}"),
                    Some(json!({"newer": i})),
                    2_000,
                    "n",
                ));
                ops.push(lww(
                    "load",
                    &format!("k{}", n - 1 - i),
                    Some(json!({"stale": i})),
                    500,
                    "n",
                ));
            }
            m.apply(batch(ops, WriteConcern::Applied))
                .await
                .expect("apply during load")
        }));
    }
    let during = tokio::spawn({
        let m = m.clone();
        async move { count(&m, "load").await }
    });
    for t in tasks {
        let out = t.await.expect("no panic");
        for (j, o) in out.iter().enumerate() {
            let want = if j % 3 == 2 {
                OpStatus::Unchanged
            } else {
                OpStatus::Applied
            };
            assert_eq!(
                o.status, want,
                "op {j}: a stale write loses even before the load reached its key"
            );
        }
    }
    let _ = during.await.expect("no panic");
    let check = |m: Arc<dyn StorageModule>| async move {
        assert_eq!(count(&m, "load").await, n as usize + 400, "nothing lost");
        for i in [0u64, 123, 399] {
            assert_eq!(
                lww_value(&read_one(&m, "load", &format!("k{i}")).await),
                Some(json!({"newer": i}))
            );
            assert_eq!(
                lww_value(&read_one(&m, "load", &format!("new{i}")).await),
                Some(json!({"new": i}))
            );
            let old = n - 1 - i;
            assert_eq!(
                lww_value(&read_one(&m, "load", &format!("k{old}")).await),
                Some(json!({"i": old}))
            );
        }
    };
    check(m).await;
    check(cx.restart().await).await;
}

pub(super) async fn t84_only_keys_related_to_this_node_are_loaded(cx: Ctx) {
    let m = cx.m();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let mut ops: Vec<_> = keys
        .iter()
        .map(|k| lww("part", k, Some(json!(k)), 100, "n"))
        .collect();
    ops.push(or_add("ors", "odd-or-even", json!(1), 100, 0, "n"));
    ops.push(or_remove("ors", "odd-or-even", &tag(100, 0, "n")));
    apply(&m, ops, WriteConcern::Applied).await;
    let m = cx.restart_with(deps_related_if(|p| p % 2 == 0)).await;
    let records = read(
        &m,
        "part",
        &keys.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let present: BTreeSet<String> = records
        .iter()
        .filter(|r| r.state != RecordState::Missing)
        .map(|r| r.key.to_string())
        .collect();
    let related: BTreeSet<String> = keys
        .iter()
        .filter(|k| partition_of(k) % 2 == 0)
        .cloned()
        .collect();
    assert!(!related.is_empty() && related.len() < keys.len());
    assert_eq!(present, related, "exactly the related keys are loaded");
    let m = cx.restart_with(deps_related_if(|_| false)).await;
    let tombs = m.accessor().or_tombstones("ors".into()).await.unwrap();
    assert_eq!(
        tombs.len(),
        1,
        "OR tombstones load whatever the partition filter says"
    );
}

pub(super) async fn t85_persisted_writes_are_there_after_a_restart_with_their_timestamp(cx: Ctx) {
    let m = cx.m();
    let out = apply_durable(
        &m,
        (0..100)
            .map(|i| lww("dur", &format!("k{i}"), Some(json!(i)), 1_000 + i, "n"))
            .collect(),
    )
    .await;
    let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
    m.notify_acks(ids.clone(), WriteConcern::Replicated);
    assert!(m.await_acks(ids).await.unwrap().iter().all(|a| a.success));
    let m = cx.restart().await;
    for i in [0u64, 42, 99] {
        match read_one(&m, "dur", &format!("k{i}")).await {
            RecordState::Lww(r) => assert_eq!(r.timestamp.millis, 1_000 + i),
            other => panic!("{other:?}"),
        }
    }
}

/// A PERSISTED acknowledgement means the write is on disk: a copy of the
/// data directory taken right after the ack (no shutdown, no flush: what a
/// crash then leaves) holds it, with its timestamp. A module that reports
/// the ack before its commit fails here.
pub(super) async fn t86_a_persisted_ack_means_the_write_survives_a_crash(cx: Ctx) {
    let m = cx.m();
    let out = apply_durable(
        &m,
        (0..20)
            .map(|i| lww("crash", &format!("k{i}"), Some(json!(i)), 2_000 + i, "n"))
            .collect(),
    )
    .await;
    let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
    m.notify_acks(ids.clone(), WriteConcern::Replicated);
    let acks = m.await_acks(ids).await.expect("await_acks works");
    assert!(
        acks.iter().all(|a| a.success),
        "every write reaches PERSISTED: {acks:?}"
    );
    let copy = cx.crash_copy().await;
    for i in [0u64, 7, 19] {
        match read_one(&copy, "crash", &format!("k{i}")).await {
            RecordState::Lww(r) => assert_eq!(
                r.timestamp.millis,
                2_000 + i,
                "k{i}: the acknowledged write with its timestamp"
            ),
            other => panic!(
                "k{i} was acknowledged PERSISTED but a crash right after the ack lost it: {other:?}"
            ),
        }
    }
}
