//! Garbage collection: TTL expiry into tombstones, pruning of old
//! tombstones, and the expiry queue across replacements and restarts.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::ROption;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{
    ChangeType, QueryRequest, QuerySink, QueryUpdate, RecordState,
};
use hangar_core::{KeyedOp, RawValue, Timestamp, WriteConcern};
use hangar_storage::persistence::MemoryStore;
use hangar_storage::DefaultStorage;
use parking_lot::Mutex;

use super::support::{apply, now, or_add, put, put_ttl, read, restarted, started, tombstone, NODE};

/// A started module on a fresh store holding the records `ops(t)` makes
/// for `t` = now (MEMORY concern); returns the store, the module and `t`.
async fn started_with(ops: impl FnOnce(u64) -> Vec<KeyedOp>) -> (MemoryStore, DefaultStorage, u64) {
    let store = MemoryStore::new();
    let m = started(&store).await;
    let t = now();
    apply(&m, ops(t), WriteConcern::Memory).await;
    (store, m, t)
}

struct Updates(Mutex<Vec<(ChangeType, String)>>);

impl QuerySink for Updates {
    fn deliver(&self, u: &QueryUpdate) {
        self.0.lock().push((u.change, u.key.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_gc_turns_expired_records_into_tombstones_that_live_queries_see() {
    let (store, m, t) = started_with(|t| {
        vec![
            put_ttl("ttl", "short", 1, t, Some(150)),
            put_ttl("ttl", "long", 2, t, Some(3_600_000)),
            or_add("ttlor", "k", 3, t, Some(150)),
        ]
    })
    .await;
    let updates = Arc::new(Updates(Mutex::new(Vec::new())));
    let empty = RawValue::encode(&serde_json::json!({})).unwrap();
    m.subscribe(
        1,
        QueryRequest {
            map: "ttl".into(),
            query: empty,
            fields: ROption::RNone,
            consistency: ROption::RNone,
        },
        updates.clone(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = m.collect_garbage(false).await.unwrap();
    assert_eq!(report.expired, 2, "{report:?}");
    match read(&m, "ttl", "short").await {
        RecordState::Lww(r) => {
            assert!(r.is_tombstone());
            assert_eq!(
                r.timestamp,
                Timestamp::new(t + 150, 0, NODE),
                "{{millis+ttl, 0, node}}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(read(&m, "ttl", "long").await, RecordState::Lww(r) if !r.is_tombstone()));
    assert_eq!(read(&m, "ttlor", "k").await, RecordState::Missing);
    assert_eq!(
        *updates.0.lock(),
        [(ChangeType::Leave, "short".to_string())]
    );
    assert_eq!(
        m.collect_garbage(false).await.unwrap().expired,
        0,
        "once only"
    );
    let m = restarted(m, &store).await;
    assert!(matches!(read(&m, "ttl", "short").await, RecordState::Lww(r) if r.is_tombstone()));
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_gc_prunes_tombstones_older_than_30_days_from_memory_and_store() {
    let store = MemoryStore::new();
    let m = started(&store).await;
    let old = now() - hangar_storage::module::TOMBSTONE_MAX_AGE_MS - 60_000;
    apply(
        &m,
        vec![
            tombstone("p", "ancient", old),
            tombstone("p", "recent", now()),
            put("p", "live", 1, old),
        ],
        WriteConcern::Memory,
    )
    .await;
    let report = m.collect_garbage(true).await.unwrap();
    assert_eq!(report.pruned, 1, "{report:?}");
    assert_eq!(read(&m, "p", "ancient").await, RecordState::Missing);
    assert!(matches!(read(&m, "p", "recent").await, RecordState::Lww(_)));
    assert!(
        matches!(read(&m, "p", "live").await, RecordState::Lww(_)),
        "values are never pruned"
    );
    let m = restarted(m, &store).await;
    assert_eq!(
        read(&m, "p", "ancient").await,
        RecordState::Missing,
        "gone from the store"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t43_gc_never_prunes_an_or_tombstone_by_age() {
    // The tag was added 31 days ago and removed now: its age says nothing
    // about when the remove happened, so age must not prune it (gc.rs).
    let store = MemoryStore::new();
    let m = started(&store).await;
    let old = now() - hangar_storage::module::TOMBSTONE_MAX_AGE_MS - 24 * 3600 * 1000;
    let add = or_add("o", "k", 1, old, None);
    let hangar_core::MapOp::OrAdd(r) = &add.op else {
        unreachable!()
    };
    let tag = r.tag.clone();
    apply(&m, vec![add.clone()], WriteConcern::Memory).await;
    let remove = KeyedOp {
        map: "o".into(),
        key: "k".into(),
        op: hangar_core::MapOp::OrRemove(tag.clone()),
    };
    apply(&m, vec![remove], WriteConcern::Memory).await;
    let report = m.collect_garbage(true).await.unwrap();
    assert_eq!(report.pruned, 0, "{report:?}");
    let out = apply(&m, vec![add], WriteConcern::Memory).await;
    assert!(
        matches!(read(&m, "o", "k").await, RecordState::Missing),
        "the old copy pushed back stays removed: {out:?}"
    );
    assert_eq!(
        m.prune_or_tombstones("o".into(), vec![tag].into())
            .await
            .unwrap(),
        1,
        "the tombstone was still there for the host to prune"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_gc_skips_replaced_records_and_finds_ttl_records_after_a_restart() {
    let (store, m, t) = started_with(|t| {
        vec![
            put_ttl("ttl", "replaced", 1, t, Some(100)),
            put_ttl("ttl", "loaded", 2, t, Some(400)),
        ]
    })
    .await;
    // A newer write without TTL replaces the first record before it expires.
    apply(
        &m,
        vec![put("ttl", "replaced", 3, t + 1)],
        WriteConcern::Memory,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        m.collect_garbage(false).await.unwrap().expired,
        0,
        "nothing expired any more"
    );
    assert!(matches!(read(&m, "ttl", "replaced").await, RecordState::Lww(r) if !r.is_tombstone()));
    let m = restarted(m, &store).await;
    let _ = read(&m, "ttl", "loaded").await; // loads the map and its expiry queue
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(m.collect_garbage(false).await.unwrap().expired, 1);
    assert!(matches!(read(&m, "ttl", "loaded").await, RecordState::Lww(r) if r.is_tombstone()));
    m.shutdown().await.unwrap();
}
