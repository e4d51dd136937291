//! The storage accessor the cluster module uses: replicated writes under
//! the same rules and fan-out as client writes, reads, partition scans,
//! map listing, OR tombstones; this node's queries, live queries and the
//! merge of pages gathered from several nodes.

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

fn peer() -> Origin {
    Origin {
        kind: OriginKind::Replication,
        connection: 0,
        node: "peer".into(),
    }
}

pub(super) async fn t40_the_accessor_applies_replicated_changes_and_scans_partitions(cx: Ctx) {
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

pub(super) async fn t41_replicated_changes_follow_crdt_rules_and_reach_queries_and_the_sink(
    cx: Ctx,
) {
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

pub(super) async fn t42_scans_and_listings_cover_or_maps_with_their_kind(cx: Ctx) {
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

pub(super) async fn t43_the_accessor_queries_subscribes_and_merges_pages_like_the_module(cx: Ctx) {
    let m = cx.m();
    let acc = m.accessor();
    apply(
        &m,
        (0..6)
            .map(|i| lww("acc", &format!("k{i}"), Some(json!({ "v": i })), 10, "n"))
            .collect(),
        WriteConcern::Applied,
    )
    .await;
    let q = qreq("acc", json!({"sort": {"v": "desc"}, "limit": 2}), None);
    let via_module = m.query(q.clone()).await.expect("module query");
    let via_accessor = acc.query(q.clone()).await.expect("accessor query");
    assert_eq!(
        via_module.rows, via_accessor.rows,
        "the same page either way"
    );
    assert!(via_module.has_more && via_accessor.has_more);

    // Pages from several nodes merge into the page one node would give.
    let all = acc
        .query(qreq("acc", json!({}), None))
        .await
        .expect("all rows");
    let (a, b): (Vec<_>, Vec<_>) = all
        .rows
        .iter()
        .cloned()
        .partition(|r| r.key.as_str() < "k3");
    let page = |rows: Vec<hangar_core::module::storage_types::QueryRow>| {
        hangar_core::module::storage_types::QueryResponse {
            rows: rows.into(),
            next_cursor: ROption::RNone,
            has_more: false,
            cursor_status: hangar_core::module::storage_types::CursorStatus::None,
        }
    };
    let merged = acc
        .merge_pages(q.clone(), RVec::from(vec![page(b), page(a)]))
        .expect("merge");
    assert_eq!(merged.rows, via_module.rows);
    assert_eq!(merged.has_more, via_module.has_more);
    assert!(
        acc.merge_pages(qreq("acc", json!({"nope": 1}), None), RVec::new())
            .is_err(),
        "an invalid query is refused"
    );

    // A live query through the accessor sees later changes; unsubscribe stops it.
    let rec = Arc::new(UpdateRecorder::default());
    let id = (1u64 << 63) | 7;
    let first = acc
        .subscribe(id, qreq("acc", json!({}), None), rec.clone())
        .await
        .expect("subscribe");
    assert_eq!(first.rows.len(), 6);
    apply(
        &m,
        vec![lww("acc", "k9", Some(json!({"v": 9})), 20, "n")],
        WriteConcern::Applied,
    )
    .await;
    let got = rec.take();
    assert_eq!(
        got,
        vec![seen(id, ChangeType::Enter, "k9", Some(json!({"v": 9})))]
    );
    assert!(acc.unsubscribe(id));
    assert!(!acc.unsubscribe(id), "already gone");
}
