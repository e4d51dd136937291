use super::*;
use abi_stable::std_types::RVec;
use hangar_core::module::accessor::ScanItem;
use hangar_core::module::storage_types::{KeyRecord, RecordState};
use hangar_core::{partition_of, LwwRecord, MapKind, MapOp, OrRecord, Timestamp, PARTITION_COUNT};

#[tokio::test]
async fn t10_the_throttle_paces_bytes_to_its_rate() {
    let t = Throttle::new(10_000);
    let started = Instant::now();
    for _ in 0..4 {
        t.take(1_000).await;
    }
    // The first chunk goes at once, each next one 100 ms later.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "took {took:?}");
    let free = Throttle::new(0);
    let started = Instant::now();
    free.take(u64::MAX).await;
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn t11_every_partition_has_a_key_for_its_tombstones() {
    for p in 0..PARTITION_COUNT {
        assert_eq!(partition_of(&key_in(p)), p);
    }
}

#[test]
fn t12_scanned_records_become_the_changes_that_recreate_them() {
    let ts = Timestamp::new(5, 0, "n1");
    let lww = ScanItem {
        map: "m".into(),
        kind: MapKind::Lww,
        record: KeyRecord {
            key: "k".into(),
            state: RecordState::Lww(LwwRecord {
                value: abi_stable::std_types::ROption::RNone,
                timestamp: ts.clone(),
                ttl_ms: abi_stable::std_types::ROption::RNone,
            }),
        },
    };
    let ch = item_changes(lww);
    assert_eq!(ch.len(), 1, "a tombstone travels too");
    assert!(matches!(ch[0].op, MapOp::Lww(_)));
    let or = |tag: &str| OrRecord {
        value: hangar_core::RawValue::default(),
        timestamp: ts.clone(),
        tag: tag.into(),
        ttl_ms: abi_stable::std_types::ROption::RNone,
    };
    let item = ScanItem {
        map: "o".into(),
        kind: MapKind::Or,
        record: KeyRecord {
            key: "k".into(),
            state: RecordState::Or(RVec::from(vec![or("a"), or("b")])),
        },
    };
    let ch = item_changes(item);
    assert_eq!(ch.len(), 2);
    assert!(ch
        .iter()
        .all(|c| matches!(c.op, MapOp::OrAdd(_)) && c.key == "k"));
    let missing = ScanItem {
        map: "m".into(),
        kind: MapKind::Lww,
        record: KeyRecord {
            key: "k".into(),
            state: RecordState::Missing,
        },
    };
    assert!(item_changes(missing).is_empty());
}
