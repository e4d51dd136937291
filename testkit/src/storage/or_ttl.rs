//! Change events, OR maps (add-wins, tag-based removes, tombstones) and TTL
//! expiry as reads and queries see it.

use std::sync::Arc;

use hangar_core::module::storage_types::{OpStatus, OriginKind, RecordState};
use hangar_core::types::{MapOp, WriteConcern};
use serde_json::json;

use super::helpers::{
    apply, lww, lww_ttl, now_ms, or_add, or_add_ttl, or_remove, or_values, qreq, read_one, tag,
    ChangeRecorder,
};
use super::Ctx;

pub(super) async fn t30_the_change_sink_sees_applied_changes_with_their_origin(cx: Ctx) {
    let m = cx.m();
    let rec = Arc::new(ChangeRecorder::default());
    m.set_change_sink(rec.clone());
    apply(
        &m,
        vec![
            lww("m", "k", Some(json!("v2")), 200, "n"),
            lww("m", "k", Some(json!("v1")), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let seen = rec.0.lock().clone();
    assert_eq!(
        seen.len(),
        1,
        "only the applied change, not the stale one: {seen:?}"
    );
    assert_eq!(seen[0].op.key.as_str(), "k");
    assert!(matches!(&seen[0].op.op, MapOp::Lww(r) if r.timestamp.millis == 200));
    assert_eq!(seen[0].origin.kind, OriginKind::Client);
    assert_eq!(seen[0].origin.connection, 7);
}

pub(super) async fn t31_or_adds_and_removes_reach_the_sink(cx: Ctx) {
    let m = cx.m();
    let rec = Arc::new(ChangeRecorder::default());
    m.set_change_sink(rec.clone());
    let t1 = tag(100, 0, "n");
    apply(
        &m,
        vec![
            or_add("todo", "list", json!("milk"), 100, 0, "n"),
            or_remove("todo", "list", &t1),
            or_remove("todo", "list", &t1),
        ],
        WriteConcern::Applied,
    )
    .await;
    let kinds: Vec<&str> = rec
        .0
        .lock()
        .iter()
        .map(|e| match &e.op.op {
            MapOp::OrAdd(_) => "add",
            MapOp::OrRemove(_) => "remove",
            MapOp::Lww(_) => "lww",
        })
        .collect();
    assert_eq!(
        kinds,
        ["add", "remove"],
        "the repeated remove changed nothing"
    );
}

pub(super) async fn t32_or_add_then_remove_by_tag(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![
            or_add("todo", "list", json!("milk"), 100, 0, "n"),
            or_add("todo", "list", json!("eggs"), 100, 1, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    assert!(out.iter().all(|o| o.status == OpStatus::Applied), "{out:?}");
    let s = read_one(&m, "todo", "list").await;
    assert_eq!(or_values(&s), [json!("eggs"), json!("milk")]);
    if let RecordState::Or(recs) = &s {
        let mut tags: Vec<String> = recs.iter().map(|r| r.tag.to_string()).collect();
        tags.sort();
        assert_eq!(
            tags,
            [tag(100, 0, "n"), tag(100, 1, "n")],
            "tags are millis:counter:node"
        );
    }
    let out = apply(
        &m,
        vec![or_remove("todo", "list", &tag(100, 0, "n"))],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Applied);
    assert_eq!(
        or_values(&read_one(&m, "todo", "list").await),
        [json!("eggs")]
    );
    apply(
        &m,
        vec![or_remove("todo", "list", &tag(100, 1, "n"))],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(read_one(&m, "todo", "list").await, RecordState::Missing);
}

pub(super) async fn t33_an_add_wins_over_a_remove_that_did_not_observe_it(cx: Ctx) {
    let m = cx.m();
    // Replica A added "x" (tag a); replica B, having seen it, removes tag a
    // while replica C concurrently adds "x" again (tag c): c survives.
    apply(
        &m,
        vec![or_add("s", "k", json!("x"), 100, 0, "a")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![
            or_add("s", "k", json!("x"), 101, 0, "c"),
            or_remove("s", "k", &tag(100, 0, "a")),
        ],
        WriteConcern::Applied,
    )
    .await;
    let s = read_one(&m, "s", "k").await;
    assert_eq!(or_values(&s), [json!("x")]);
    let RecordState::Or(recs) = s else {
        unreachable!()
    };
    assert_eq!(recs[0].tag.as_str(), tag(101, 0, "c"));
}

pub(super) async fn t34_a_tombstoned_tag_is_refused_forever(cx: Ctx) {
    let m = cx.m();
    let t = tag(100, 0, "n");
    apply(&m, vec![or_remove("s", "k", &t)], WriteConcern::Applied).await;
    let out = apply(
        &m,
        vec![or_add("s", "k", json!("late"), 100, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        out[0].status,
        OpStatus::Unchanged,
        "a tombstoned tag never comes back"
    );
    assert_eq!(read_one(&m, "s", "k").await, RecordState::Missing);
    let tombs = m
        .accessor()
        .or_tombstones("s".into())
        .await
        .expect("tombstones");
    assert_eq!(tombs.iter().map(|t| t.to_string()).collect::<Vec<_>>(), [t]);
}

pub(super) async fn t35_or_merges_converge_whatever_the_order(cx: Ctx) {
    let m = cx.m();
    let ops = vec![
        or_add("x", "k", json!(1), 100, 0, "a"),
        or_add("x", "k", json!(2), 100, 0, "b"),
        or_remove("x", "k", &tag(100, 0, "a")),
        or_add("x", "j", json!(3), 101, 0, "a"),
    ];
    let mut reversed = ops.clone();
    reversed.reverse();
    for op in &mut reversed {
        op.map = "y".into();
    }
    let mut fwd = ops;
    fwd.extend(fwd.clone()); // repetition changes nothing
    apply(&m, fwd, WriteConcern::Applied).await;
    apply(&m, reversed, WriteConcern::Applied).await;
    for key in ["k", "j"] {
        assert_eq!(
            or_values(&read_one(&m, "x", key).await),
            or_values(&read_one(&m, "y", key).await),
            "{key}"
        );
    }
    let root = |map: &'static str| m.merkle_root(map.into(), hangar_core::MapKind::Or);
    let (rx, ry) = (root("x").await.unwrap(), root("y").await.unwrap());
    assert_ne!(rx, 0);
    assert_eq!(rx, ry, "same records, same Merkle root");
}

pub(super) async fn t36_expired_lww_records_are_hidden_from_queries_but_read_as_stored(cx: Ctx) {
    let m = cx.m();
    let now = now_ms();
    apply(
        &m,
        vec![
            lww_ttl(
                "t",
                "gone",
                Some(json!({"v": 1})),
                now - 10_000,
                "n",
                Some(1_000),
            ),
            lww_ttl(
                "t",
                "alive",
                Some(json!({"v": 2})),
                now,
                "n",
                Some(3_600_000),
            ),
            lww("t", "forever", Some(json!({"v": 3})), now, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let page = m.query(qreq("t", json!({}), None)).await.expect("query");
    let mut keys: Vec<String> = page.rows.iter().map(|r| r.key.to_string()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["alive", "forever"],
        "an expired record never matches"
    );
    match read_one(&m, "t", "gone").await {
        RecordState::Lww(r) => assert!(
            r.is_expired(now_ms()) || (r.is_tombstone() && r.timestamp.millis == now - 9_000),
            "read gives the stored record: the expired one, or the tombstone at \
             millis + ttl that garbage collection turns it into: {r:?}"
        ),
        other => panic!("expected the stored record: {other:?}"),
    }
}

pub(super) async fn t37_expired_or_records_are_hidden_from_reads_and_queries(cx: Ctx) {
    let m = cx.m();
    let now = now_ms();
    apply(
        &m,
        vec![
            or_add_ttl("o", "k", json!("old"), now - 10_000, 0, "n", Some(1_000)),
            or_add_ttl("o", "k", json!("new"), now, 0, "n", Some(3_600_000)),
            or_add_ttl("o", "dead", json!("x"), now - 10_000, 1, "n", Some(1_000)),
        ],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(or_values(&read_one(&m, "o", "k").await), [json!("new")]);
    assert_eq!(read_one(&m, "o", "dead").await, RecordState::Missing);
    let page = m.query(qreq("o", json!({}), None)).await.expect("query");
    let keys: Vec<String> = page.rows.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(keys, ["k"]);
}
