//! The node's clock against hostile timestamps: a record stamped further
//! ahead of the wall clock than the drift bound is refused on every path
//! that merges timestamps (client writes, replicated changes, records
//! loaded from the store) and never moves the clock.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use hangar_core::hlc::Hlc;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{OpStatus, Origin, RecordState};
use hangar_core::{ErrorKind, KeyedOp, LwwRecord, MapOp, OrRecord, Timestamp, WriteConcern};
use hangar_storage::persistence::{
    MemoryBackend, MemoryStore, PersistenceBackend, StoredEntry, WriteBatch,
};
use hangar_storage::DefaultStorage;
use hangar_testkit::support::storage_deps_with;

use super::support::{apply, config, now, read, v, Metrics, NODE};

const HOUR_MS: u64 = 3_600_000;

/// A started module over `store` whose clock the test can read.
async fn with_clock(store: &MemoryStore) -> (DefaultStorage, Arc<Hlc>) {
    let clock = Arc::new(Hlc::new(NODE).unwrap());
    let deps = StorageDeps {
        clock: clock.clone(),
        ..storage_deps_with(NODE, Arc::new(Metrics::default()))
    };
    let backend = Arc::new(MemoryBackend::open(store));
    let m = DefaultStorage::with_backend(
        config(),
        deps,
        "memory",
        Arc::new(move |_| Ok(backend.clone() as Arc<dyn PersistenceBackend>)),
    )
    .expect("builds");
    m.start().await.unwrap();
    (m, clock)
}

fn lww(millis: u64, node: &str, n: i64) -> LwwRecord {
    LwwRecord {
        value: ROption::RSome(v(n)),
        timestamp: Timestamp::new(millis, 0, node),
        ttl_ms: ROption::RNone,
    }
}

fn put_at(map: &str, key: &str, millis: u64, node: &str, n: i64) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(lww(millis, node, n)),
    }
}

/// The clock has not moved past the wall clock (give or take a second).
fn assert_clock_honest(clock: &Hlc) {
    let t = clock.now();
    let wall = now();
    assert!(
        t.millis <= wall + 1_000,
        "the clock moved ahead of the wall clock: {t} (wall {wall})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_a_write_beyond_the_drift_bound_is_rejected_and_leaves_the_clock() {
    let store = MemoryStore::new();
    let (m, clock) = with_clock(&store).await;
    for millis in [u64::MAX, now() + HOUR_MS] {
        let out = apply(
            &m,
            vec![put_at("c", "k", millis, "evil", 1)],
            WriteConcern::Memory,
        )
        .await;
        assert_eq!(out[0].status, OpStatus::Rejected, "millis {millis}");
        let e = out[0].error.clone().unwrap();
        assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{e}");
        assert!(e.message.contains("ahead of this node's clock"), "{e}");
        assert_clock_honest(&clock);
    }
    assert!(matches!(read(&m, "c", "k").await, RecordState::Missing));
    // A later honest write of the key wins.
    let out = apply(
        &m,
        vec![put_at("c", "k", now(), "honest", 2)],
        WriteConcern::Memory,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Applied);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_a_record_whose_node_id_has_a_colon_is_rejected() {
    let store = MemoryStore::new();
    let (m, _clock) = with_clock(&store).await;
    let out = apply(
        &m,
        vec![put_at("c", "k", now(), "a:b", 1)],
        WriteConcern::Memory,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Rejected);
    let e = out[0].error.clone().unwrap();
    assert!(e.message.contains("\"a:b\""), "{e}");
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_a_replicated_change_beyond_the_drift_bound_is_rejected() {
    let store = MemoryStore::new();
    let (m, clock) = with_clock(&store).await;
    let statuses = m
        .accessor()
        .apply_replicated(
            RVec::from(vec![
                put_at("c", "evil", u64::MAX, "peer", 1),
                put_at("c", "fine", now(), "peer", 2),
            ]),
            Origin::internal("peer"),
        )
        .await
        .unwrap();
    assert_eq!(
        statuses.into_vec(),
        vec![OpStatus::Rejected, OpStatus::Applied]
    );
    assert_clock_honest(&clock);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t73_a_poisoned_record_on_disk_is_not_loaded_and_does_not_move_the_clock() {
    let store = MemoryStore::new();
    let honest_ms = now() - 1_000;
    let poisoned_or = OrRecord {
        value: v(9),
        tag: format!("{}:0:evil", u64::MAX).into(),
        timestamp: Timestamp::new(u64::MAX, 0, "evil"),
        ttl_ms: ROption::RNone,
    };
    let honest_or = OrRecord {
        value: v(8),
        tag: format!("{honest_ms}:0:w").into(),
        timestamp: Timestamp::new(honest_ms, 0, "w"),
        ttl_ms: ROption::RNone,
    };
    // As an older version would have stored them.
    MemoryBackend::open(&store)
        .commit(
            WriteBatch::new()
                .put("l", "poisoned", StoredEntry::Lww(lww(u64::MAX, "evil", 1)))
                .put(
                    "l",
                    "early",
                    StoredEntry::Lww(lww(now() + HOUR_MS, "evil", 2)),
                )
                .put("l", "colon", StoredEntry::Lww(lww(honest_ms, "a:b", 3)))
                .put("l", "honest", StoredEntry::Lww(lww(honest_ms, "w", 4)))
                .put(
                    "o",
                    "k",
                    StoredEntry::Or {
                        records: vec![poisoned_or, honest_or],
                    },
                ),
        )
        .await
        .unwrap();
    let (m, clock) = with_clock(&store).await;
    assert!(matches!(read(&m, "l", "honest").await, RecordState::Lww(_)));
    for key in ["poisoned", "early", "colon"] {
        assert!(
            matches!(read(&m, "l", key).await, RecordState::Missing),
            "{key} is not loaded"
        );
    }
    match read(&m, "o", "k").await {
        RecordState::Or(rs) => {
            assert_eq!(rs.len(), 1, "only the honest OR record is loaded");
            assert_eq!(rs[0].timestamp.millis, honest_ms);
        }
        other => panic!("expected the OR key, got {other:?}"),
    }
    assert_clock_honest(&clock);
    let t = clock.now();
    assert!(
        (t.millis, t.counter) > (honest_ms, 0),
        "the honest records were folded into the clock: {t}"
    );
    // An honest write of the poisoned key wins and replaces the stored row.
    let out = apply(
        &m,
        vec![put_at("l", "poisoned", now(), "w", 5)],
        WriteConcern::Memory,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Applied);
    m.shutdown().await.unwrap();
    let (m, clock) = with_clock(&store).await;
    match read(&m, "l", "poisoned").await {
        RecordState::Lww(r) => assert_eq!(r.timestamp.node_id.as_str(), "w"),
        other => panic!("expected the honest record, got {other:?}"),
    }
    assert_clock_honest(&clock);
    m.shutdown().await.unwrap();
}
