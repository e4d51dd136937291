//! The cases of the persistence-backend suite: every statement of the
//! `PersistenceBackend` contract that a test can check.

use std::sync::Arc;

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, MapKind, RawValue, Timestamp};
use hangar_storage::persistence::testing::{lww, or_record};
use hangar_storage::persistence::{
    LoadedMap, PersistenceBackend, PersistenceError, StoredEntry, StoredMap, WriteBatch,
};

use super::SuiteHarness;

async fn fresh<H: SuiteHarness>(h: &H) -> (H::Store, Arc<dyn PersistenceBackend>) {
    let store = h.new_store();
    let b = h.open(&store).await;
    (store, b)
}

async fn reopen<H: SuiteHarness>(
    h: &H,
    store: &H::Store,
    b: Arc<dyn PersistenceBackend>,
) -> Arc<dyn PersistenceBackend> {
    b.close().await.expect("close must succeed");
    drop(b);
    h.open(store).await
}

fn keys(v: &[(String, StoredEntry)]) -> Vec<&str> {
    v.iter().map(|(k, _)| k.as_str()).collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_string()).collect()
}

/// An unknown map reads as empty; a new backend lists no map.
pub(super) async fn t10_empty_backend_reads_as_empty<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    assert_eq!(b.list_maps().await.unwrap(), vec![]);
    assert_eq!(b.load_map("nope").await.unwrap(), LoadedMap::default());
    assert!(b.list_keys("nope").await.unwrap().is_empty());
    assert!(b.load_keys("nope", &s(&["a"])).await.unwrap().is_empty());
    assert!(b.load_or_tombstones("nope").await.unwrap().is_empty());
    b.commit(WriteBatch::new())
        .await
        .expect("an empty batch succeeds");
    assert_eq!(
        b.list_maps().await.unwrap(),
        vec![],
        "an empty batch records nothing"
    );
}

/// LWW records round-trip with value, timestamp and ttl; tombstones too.
pub(super) async fn t11_lww_records_round_trip_with_ttl_and_tombstones<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    let live = lww(Some(42), 1_700_000_000_123, Some(60_000));
    let tomb = lww(None, 1_700_000_000_456, None);
    let tomb_ttl = lww(None, 5, Some(7));
    b.store(
        "users",
        vec![
            ("alice".into(), live.clone()),
            ("bob".into(), tomb.clone()),
            ("carol".into(), tomb_ttl.clone()),
        ],
    )
    .await
    .unwrap();
    let m = b.load_map("users").await.unwrap();
    assert_eq!(m.kind, Some(MapKind::Lww));
    assert_eq!(
        m.entries,
        vec![
            ("alice".to_string(), live),
            ("bob".to_string(), tomb),
            ("carol".to_string(), tomb_ttl)
        ]
    );
    assert!(m.or_tombstones.is_empty());
}

/// OR rows keep every record, in order, with tags and ttl.
pub(super) async fn t12_or_rows_round_trip_with_all_records<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    let row = StoredEntry::Or {
        records: vec![
            or_record("x", 10, None),
            or_record("y", 11, Some(500)),
            or_record("z", 9, None),
        ],
    };
    let empty = StoredEntry::Or { records: vec![] };
    b.store(
        "tags",
        vec![("k1".into(), row.clone()), ("k2".into(), empty.clone())],
    )
    .await
    .unwrap();
    let m = b.load_map("tags").await.unwrap();
    assert_eq!(m.kind, Some(MapKind::Or));
    assert_eq!(
        m.entries,
        vec![("k1".to_string(), row), ("k2".to_string(), empty)]
    );
}

/// `load_keys` omits missing keys, answers each key once, in key order.
pub(super) async fn t13_load_keys_omits_missing_and_dedups<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.store(
        "m",
        vec![
            ("b".into(), lww(Some(2), 2, None)),
            ("a".into(), lww(Some(1), 1, None)),
        ],
    )
    .await
    .unwrap();
    let got = b
        .load_keys("m", &s(&["zz", "b", "a", "b", "missing"]))
        .await
        .unwrap();
    assert_eq!(keys(&got), vec!["a", "b"]);
    assert_eq!(got[1].1, lww(Some(2), 2, None));
    assert!(b.load_keys("m", &[]).await.unwrap().is_empty());
}

/// Keys and maps are listed in byte order; maps with their kinds.
pub(super) async fn t14_list_keys_and_maps_in_byte_order_with_kinds<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    let batch = WriteBatch::new()
        .put("zeta", "k", lww(Some(1), 1, None))
        .put(
            "alpha",
            "b",
            StoredEntry::Or {
                records: vec![or_record("v", 1, None)],
            },
        )
        .put("alpha", "B", StoredEntry::Or { records: vec![] })
        .put("alpha", "a", StoredEntry::Or { records: vec![] })
        .add_or_tombstone("only-tombs", "1:0:n");
    b.commit(batch).await.unwrap();
    assert_eq!(b.list_keys("alpha").await.unwrap(), s(&["B", "a", "b"]));
    assert_eq!(
        b.list_maps().await.unwrap(),
        vec![
            StoredMap {
                name: "alpha".into(),
                kind: MapKind::Or
            },
            StoredMap {
                name: "only-tombs".into(),
                kind: MapKind::Or
            },
            StoredMap {
                name: "zeta".into(),
                kind: MapKind::Lww
            },
        ]
    );
}

/// A later put replaces the entry; ops on one slot apply in batch order.
pub(super) async fn t15_later_put_replaces_and_batch_order_decides<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.store("m", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    b.store("m", vec![("k".into(), lww(Some(2), 2, None))])
        .await
        .unwrap();
    assert_eq!(
        b.load_map("m").await.unwrap().entries,
        vec![("k".into(), lww(Some(2), 2, None))]
    );
    // put then delete in one batch: gone; delete then put: present
    b.commit(
        WriteBatch::new()
            .put("m", "x", lww(Some(3), 3, None))
            .delete("m", "x"),
    )
    .await
    .unwrap();
    b.commit(
        WriteBatch::new()
            .delete("m", "y")
            .put("m", "y", lww(Some(4), 4, None)),
    )
    .await
    .unwrap();
    assert_eq!(b.list_keys("m").await.unwrap(), s(&["k", "y"]));
    // add then remove a tombstone in one batch: gone; remove then add: present
    b.commit(
        WriteBatch::new()
            .add_or_tombstone("o", "t1")
            .remove_or_tombstone("o", "t1")
            .remove_or_tombstone("o", "t2")
            .add_or_tombstone("o", "t2"),
    )
    .await
    .unwrap();
    assert_eq!(b.load_or_tombstones("o").await.unwrap(), s(&["t2"]));
}

/// Deletes remove entries, ignore missing keys and unknown maps, and keep
/// the map recorded.
pub(super) async fn t20_delete_removes_and_ignores_missing<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.store(
        "m",
        vec![
            ("a".into(), lww(Some(1), 1, None)),
            ("b".into(), lww(Some(2), 2, None)),
        ],
    )
    .await
    .unwrap();
    b.delete("m", &s(&["a", "never"])).await.unwrap();
    b.delete("unknown-map", &s(&["a"])).await.unwrap();
    assert_eq!(b.list_keys("m").await.unwrap(), s(&["b"]));
    b.delete("m", &s(&["b"])).await.unwrap();
    let m = b.load_map("m").await.unwrap();
    assert!(m.entries.is_empty());
    assert_eq!(
        m.kind,
        Some(MapKind::Lww),
        "a map stays recorded after its last delete"
    );
    assert_eq!(
        b.list_maps().await.unwrap(),
        vec![StoredMap {
            name: "m".into(),
            kind: MapKind::Lww
        }],
        "deleting in an unknown map does not record it"
    );
}

/// Tombstones are a set per map: idempotent adds, per-tag removes,
/// isolated between maps, separate from keys.
pub(super) async fn t21_or_tombstones_are_a_per_map_set<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.commit(
        WriteBatch::new()
            .put("o", "t1", StoredEntry::Or { records: vec![] })
            .add_or_tombstone("o", "t1")
            .add_or_tombstone("o", "t3")
            .add_or_tombstone("o", "t2")
            .add_or_tombstone("o", "t2")
            .add_or_tombstone("o2", "t9"),
    )
    .await
    .unwrap();
    let m = b.load_map("o").await.unwrap();
    assert_eq!(m.or_tombstones, s(&["t1", "t2", "t3"]));
    assert_eq!(
        keys(&m.entries),
        vec!["t1"],
        "a tag and a key with the same text are separate"
    );
    b.commit(
        WriteBatch::new()
            .remove_or_tombstone("o", "t2")
            .remove_or_tombstone("o", "never"),
    )
    .await
    .unwrap();
    assert_eq!(b.load_or_tombstones("o").await.unwrap(), s(&["t1", "t3"]));
    assert_eq!(b.load_or_tombstones("o2").await.unwrap(), s(&["t9"]));
    b.delete("o", &s(&["t1"])).await.unwrap();
    assert_eq!(
        b.load_or_tombstones("o").await.unwrap(),
        s(&["t1", "t3"]),
        "deleting a key does not touch tombstones"
    );
}

/// A batch with a kind conflict or a bad name writes nothing at all.
pub(super) async fn t22_rejected_batch_writes_nothing<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.store("l", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    let conflict = WriteBatch::new()
        .put("l", "k", lww(Some(2), 2, None))
        .put("new", "k", lww(Some(2), 2, None))
        .add_or_tombstone("l", "t");
    match b.commit(conflict).await {
        Err(PersistenceError::KindConflict {
            map,
            recorded,
            requested,
        }) => {
            assert_eq!(
                (map.as_str(), recorded, requested),
                ("l", MapKind::Lww, MapKind::Or)
            );
        }
        other => panic!("expected a kind conflict, got {other:?}"),
    }
    let within = WriteBatch::new()
        .put("fresh", "a", lww(Some(1), 1, None))
        .put("fresh", "b", StoredEntry::Or { records: vec![] });
    assert!(matches!(
        b.commit(within).await,
        Err(PersistenceError::KindConflict { .. })
    ));
    for bad in [
        WriteBatch::new()
            .put("l", "ok", lww(Some(9), 9, None))
            .put("", "k", lww(None, 1, None)),
        WriteBatch::new()
            .put("l", "ok", lww(Some(9), 9, None))
            .delete("l", "nul\0key"),
        WriteBatch::new()
            .put("l", "ok", lww(Some(9), 9, None))
            .put("m\0", "k", lww(None, 1, None)),
        WriteBatch::new()
            .put("l", "ok", lww(Some(9), 9, None))
            .add_or_tombstone("o", "t\0"),
    ] {
        assert!(
            matches!(b.commit(bad).await, Err(PersistenceError::InvalidInput(_))),
            "a NUL or empty map name must be refused"
        );
    }
    assert_eq!(
        b.load_map("l").await.unwrap().entries,
        vec![("k".into(), lww(Some(1), 1, None))]
    );
    assert_eq!(
        b.list_maps().await.unwrap(),
        vec![StoredMap {
            name: "l".into(),
            kind: MapKind::Lww
        }],
        "a rejected batch records no map"
    );
}

/// Maps are isolated, including a map whose name prefixes another's.
pub(super) async fn t23_maps_are_isolated_even_by_prefix<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.commit(
        WriteBatch::new()
            .put("a", "k", lww(Some(1), 1, None))
            .put("ab", "k", lww(Some(2), 2, None))
            .put("a b", "k", lww(Some(3), 3, None))
            .put("ab", "", lww(Some(4), 4, None))
            .add_or_tombstone("o", "t")
            .add_or_tombstone("oo", "t"),
    )
    .await
    .unwrap();
    assert_eq!(
        b.load_map("a").await.unwrap().entries,
        vec![("k".into(), lww(Some(1), 1, None))]
    );
    assert_eq!(
        b.list_keys("ab").await.unwrap(),
        s(&["", "k"]),
        "the empty key is a key"
    );
    assert_eq!(
        b.load_keys("a", &s(&["k"])).await.unwrap()[0].1,
        lww(Some(1), 1, None)
    );
    assert_eq!(b.load_or_tombstones("o").await.unwrap(), s(&["t"]));
    b.delete("a", &s(&["k"])).await.unwrap();
    assert_eq!(b.list_keys("ab").await.unwrap(), s(&["", "k"]));
}

/// Unicode keys and values, large values and many keys round-trip.
pub(super) async fn t24_unicode_large_values_and_many_keys<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    let big = StoredEntry::Lww(LwwRecord {
        value: ROption::RSome(RawValue::encode(&"x".repeat(1 << 20)).unwrap()),
        timestamp: Timestamp::new(u64::MAX, u32::MAX, "n"),
        ttl_ms: ROption::RSome(u64::MAX),
    });
    let mut entries: Vec<(String, StoredEntry)> = (0..2000)
        .map(|i| (format!("key-{i:05}"), lww(Some(i), i as u64, None)))
        .collect();
    entries.push(("ключ/🔑".into(), big.clone()));
    b.store("карта", entries).await.unwrap();
    let m = b.load_map("карта").await.unwrap();
    assert_eq!(m.entries.len(), 2001);
    assert_eq!(
        m.entries[1234],
        (format!("key-{:05}", 1234), lww(Some(1234), 1234, None))
    );
    assert_eq!(m.entries[2000], ("ключ/🔑".to_string(), big));
}

/// Concurrent commits all land.
pub(super) async fn t25_concurrent_commits_all_land<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                for i in 0..10 {
                    b.store("m", vec![(format!("{t:02}-{i:02}"), lww(Some(i), 1, None))])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.list_keys("m").await.unwrap().len(), 160);
}

/// Closing and opening the same store again shows every committed write.
pub(super) async fn t30_reopen_after_close_shows_committed_data<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (store, b) = fresh(h).await;
    b.commit(
        WriteBatch::new()
            .put("l", "k", lww(Some(1), 1, Some(30)))
            .put("l", "t", lww(None, 2, None))
            .put(
                "o",
                "k",
                StoredEntry::Or {
                    records: vec![or_record("v", 3, Some(9))],
                },
            )
            .add_or_tombstone("o", "1:1:x"),
    )
    .await
    .unwrap();
    b.commit(WriteBatch::new().delete("l", "t")).await.unwrap();
    let before_l = b.load_map("l").await.unwrap();
    let before_o = b.load_map("o").await.unwrap();
    let b = reopen(h, &store, b).await;
    assert_eq!(b.load_map("l").await.unwrap(), before_l);
    assert_eq!(b.load_map("o").await.unwrap(), before_o);
    assert_eq!(before_o.or_tombstones, s(&["1:1:x"]));
    assert_eq!(b.list_maps().await.unwrap().len(), 2);
    // the kind is still enforced after the reopen
    assert!(matches!(
        b.commit(WriteBatch::new().put("o", "x", lww(Some(1), 1, None)))
            .await,
        Err(PersistenceError::KindConflict { .. })
    ));
}

/// After close every call fails with `Closed`; a second close succeeds.
pub(super) async fn t31_calls_after_close_fail_with_closed<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (_s, b) = fresh(h).await;
    b.store("m", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    b.close().await.unwrap();
    assert_eq!(
        b.commit(WriteBatch::new().delete("m", "k")).await,
        Err(PersistenceError::Closed)
    );
    assert_eq!(b.load_map("m").await, Err(PersistenceError::Closed));
    assert_eq!(
        b.load_keys("m", &s(&["k"])).await,
        Err(PersistenceError::Closed)
    );
    assert_eq!(b.list_keys("m").await, Err(PersistenceError::Closed));
    assert_eq!(
        b.load_or_tombstones("m").await,
        Err(PersistenceError::Closed)
    );
    assert_eq!(b.list_maps().await, Err(PersistenceError::Closed));
    assert_eq!(b.flush().await, Err(PersistenceError::Closed));
    b.close().await.expect("a second close succeeds");
}

/// `flush` succeeds on an open backend and changes nothing.
pub(super) async fn t32_flush_is_a_barrier_that_keeps_data<H: SuiteHarness>(h: Arc<H>) {
    let h = &*h;
    let (store, b) = fresh(h).await;
    b.store("m", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    b.flush().await.unwrap();
    let b = reopen(h, &store, b).await;
    assert_eq!(b.list_keys("m").await.unwrap(), s(&["k"]));
}
