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

#[test]
fn t13_slices_shrink_past_the_budget_and_grow_within_it_between_bounds() {
    use pacing::{Pacer, GROWTH, MIN_SLICE};
    let ms = Duration::from_millis;
    let mut p = Pacer::default();
    assert_eq!(p.slice(), MIN_SLICE, "a node starts small");
    // No client commit to protect: doubles up to the chunk.
    for _ in 0..10 {
        p.adapt(ms(50), None, 2, 100);
    }
    assert_eq!(p.slice(), 100);
    assert_eq!(p.next(30), 30, "never more than what is left");
    // Past 2 × 1 ms: halved, down to the floor and no lower.
    p.adapt(ms(3), Some(ms(1)), 2, 100);
    assert_eq!(p.slice(), 50);
    for _ in 0..10 {
        p.adapt(ms(3), Some(ms(1)), 2, 100);
    }
    assert_eq!(p.slice(), MIN_SLICE);
    // Within budget: grows additively.
    p.adapt(ms(2), Some(ms(1)), 2, 100);
    assert_eq!(p.slice(), MIN_SLICE + GROWTH);
}

#[test]
fn t14_the_client_commit_baseline_is_the_smallest_recent_one() {
    let c = pacing::CommitLatency::default();
    assert_eq!(c.baseline(), None);
    for us in [900, 400, 5_000, 700] {
        c.record(Duration::from_micros(us));
    }
    assert_eq!(c.baseline(), Some(Duration::from_micros(400)));
    for _ in 0..64 {
        c.record(Duration::from_millis(3));
    }
    assert_eq!(
        c.baseline(),
        Some(Duration::from_millis(3)),
        "only the last samples count"
    );
}
