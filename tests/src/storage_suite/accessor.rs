//! The storage accessor the cluster module uses: replicated writes under
//! the same rules and fan-out as client writes, reads, partition scans,
//! map listing, OR tombstones.

use std::collections::BTreeSet;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::accessor::ScanRequest;
use hangar_core::module::storage_types::{ChangeType, OpStatus, Origin, OriginKind, RecordState};
use hangar_core::types::{KeyedOp, MapKind, WriteConcern};
use serde_json::json;

use super::helpers::{
    apply, lww, lww_value, or_add, qreq, read_one, seen, tag, ChangeRecorder, UpdateRecorder,
};
use super::Ctx;

case_list![
    t40_the_accessor_applies_replicated_changes_and_scans_partitions,
    t41_replicated_changes_follow_crdt_rules_and_reach_queries_and_the_sink,
    t42_scans_and_listings_cover_or_maps_with_their_kind,
];

fn peer() -> Origin {
    Origin {
        kind: OriginKind::Replication,
        connection: 0,
        node: "peer".into(),
    }
}

async fn t40_the_accessor_applies_replicated_changes_and_scans_partitions(cx: Ctx) {
    let m = cx.m();
    let acc = m.accessor();
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
    let changes: RVec<KeyedOp> = keys
        .iter()
        .map(|k| lww("rep", k, Some(json!(k)), 100, "peer"))
        .collect();
    let st = acc
        .apply_replicated(changes, peer())
        .await
        .expect("apply_replicated");
    assert!(st.iter().all(|s| *s == OpStatus::Applied));
    let p = hangar_core::partition_of("key-1");
    let expected: BTreeSet<&str> = keys
        .iter()
        .filter(|k| hangar_core::partition_of(k) == p)
        .map(String::as_str)
        .collect();
    let mut seen_keys = BTreeSet::new();
    let mut after = ROption::RNone;
    loop {
        let page = acc
            .scan_partition(ScanRequest {
                partition: p,
                after: after.clone(),
                limit: 1,
            })
            .await
            .expect("scan");
        for it in page.items.iter() {
            assert!(seen_keys.insert(it.record.key.to_string()), "each key once");
        }
        match page.next {
            ROption::RSome(c) => after = ROption::RSome(c),
            ROption::RNone => break,
        }
    }
    let seen_keys: BTreeSet<&str> = seen_keys.iter().map(String::as_str).collect();
    assert_eq!(seen_keys, expected);
    let maps = m.list_maps().await.expect("list");
    assert!(
        maps.iter()
            .any(|mi| mi.name.as_str() == "rep" && mi.entries == 50),
        "{maps:?}"
    );
    let r = acc
        .read("rep".into(), RVec::from(vec![RString::from("key-3")]))
        .await
        .expect("read");
    assert_eq!(lww_value(&r[0].state), Some(json!("key-3")));
}

async fn t41_replicated_changes_follow_crdt_rules_and_reach_queries_and_the_sink(cx: Ctx) {
    let m = cx.m();
    let acc = m.accessor();
    apply(
        &m,
        vec![lww("r", "a", Some(json!({"x": 5})), 200, "n")],
        WriteConcern::Applied,
    )
    .await;
    let updates = Arc::new(UpdateRecorder::default());
    m.subscribe(11, qreq("r", json!({}), None), updates.clone())
        .await
        .expect("subscribe");
    let sink = Arc::new(ChangeRecorder::default());
    m.set_change_sink(sink.clone());
    let st = acc
        .apply_replicated(
            vec![
                lww("r", "a", Some(json!({"x": 1})), 100, "peer"), // stale
                lww("r", "b", Some(json!({"x": 2})), 100, "peer"),
            ]
            .into(),
            peer(),
        )
        .await
        .expect("apply_replicated");
    assert_eq!(st.as_slice(), [OpStatus::Unchanged, OpStatus::Applied]);
    assert_eq!(
        lww_value(&read_one(&m, "r", "a").await),
        Some(json!({"x": 5}))
    );
    assert_eq!(
        updates.take(),
        [seen(11, ChangeType::Enter, "b", Some(json!({"x": 2})))]
    );
    let events = sink.0.lock().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].origin,
        peer(),
        "the sink sees the replication origin"
    );
}

async fn t42_scans_and_listings_cover_or_maps_with_their_kind(cx: Ctx) {
    let m = cx.m();
    let acc = m.accessor();
    apply(
        &m,
        vec![
            or_add("orm", "k", json!(1), 100, 0, "n"),
            or_add("orm", "k", json!(2), 100, 1, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let p = hangar_core::partition_of("k");
    let page = acc
        .scan_partition(ScanRequest {
            partition: p,
            after: ROption::RNone,
            limit: 100,
        })
        .await
        .expect("scan");
    let item = page
        .items
        .iter()
        .find(|i| i.map.as_str() == "orm")
        .expect("the OR key is scanned");
    assert_eq!(item.kind, MapKind::Or);
    match &item.record.state {
        RecordState::Or(recs) => assert_eq!(recs.len(), 2),
        other => panic!("{other:?}"),
    }
    let maps = acc.list_maps().await.expect("list");
    assert!(maps
        .iter()
        .any(|mi| mi.name.as_str() == "orm" && mi.kind == MapKind::Or));
    let tombs = acc.or_tombstones("orm".into()).await.expect("tombstones");
    assert!(tombs.is_empty());
    apply(
        &m,
        vec![super::helpers::or_remove("orm", "k", &tag(100, 0, "n"))],
        WriteConcern::Applied,
    )
    .await;
    let tombs = acc.or_tombstones("orm".into()).await.expect("tombstones");
    assert_eq!(tombs.len(), 1);
}
