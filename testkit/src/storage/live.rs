//! Live queries: the first page, then ENTER / UPDATE / LEAVE for every
//! change that affects the result, the sliding top-N window, projection,
//! unsubscribe and replacement.

use std::sync::Arc;

use hangar_core::module::storage_types::ChangeType::{Enter, Leave, Update};
use hangar_core::types::WriteConcern;
use serde_json::json;

use super::helpers::{apply, json_of, lww, or_add, or_remove, qreq, seen, tag, UpdateRecorder};
use super::Ctx;

pub(super) async fn t60_changes_send_enter_update_and_leave(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("l", "a", Some(json!({"x": 1})), 100, "n")],
        WriteConcern::Applied,
    )
    .await;
    let rec = Arc::new(UpdateRecorder::default());
    let first = m
        .subscribe(
            1,
            qreq("l", json!({"where": {"x": {"$gte": 1}}}), None),
            rec.clone(),
        )
        .await
        .expect("subscribe");
    assert_eq!(first.rows.len(), 1);
    assert_eq!(json_of(&first.rows[0].value), json!({"x": 1}));
    apply(
        &m,
        vec![lww("l", "b", Some(json!({"x": 2})), 101, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![lww("l", "a", Some(json!({"x": 3})), 102, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![lww("l", "b", Some(json!({"x": 0})), 103, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![lww("l", "a", None, 104, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![lww("other", "a", Some(json!({"x": 5})), 105, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [
            seen(1, Enter, "b", Some(json!({"x": 2}))),
            seen(1, Update, "a", Some(json!({"x": 3}))),
            seen(1, Leave, "b", None),
            seen(1, Leave, "a", None),
        ]
    );
}

pub(super) async fn t61_a_sliding_window_sends_leave_for_the_displaced_and_enter_for_the_new(
    cx: Ctx,
) {
    let m = cx.m();
    apply(
        &m,
        vec![
            lww("scores", "A", Some(json!({"score": 100})), 100, "n"),
            lww("scores", "B", Some(json!({"score": 90})), 100, "n"),
            lww("scores", "C", Some(json!({"score": 80})), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let rec = Arc::new(UpdateRecorder::default());
    let first = m
        .subscribe(
            2,
            qreq(
                "scores",
                json!({"sort": {"score": "desc"}, "limit": 2}),
                None,
            ),
            rec.clone(),
        )
        .await
        .expect("subscribe");
    let keys: Vec<String> = first.rows.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(keys, ["A", "B"]);
    assert!(first.has_more);
    apply(
        &m,
        vec![lww("scores", "D", Some(json!({"score": 95})), 101, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [
            seen(2, Leave, "B", None),
            seen(2, Enter, "D", Some(json!({"score": 95})))
        ]
    );
    // A leaves the window: the next one (B) is promoted.
    apply(
        &m,
        vec![lww("scores", "A", None, 102, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [
            seen(2, Leave, "A", None),
            seen(2, Enter, "B", Some(json!({"score": 90})))
        ]
    );
}

pub(super) async fn t62_an_update_that_makes_a_record_match_sends_enter(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![
            lww(
                "u",
                "u1",
                Some(json!({"active": true, "age": 20})),
                100,
                "n",
            ),
            lww(
                "u",
                "u2",
                Some(json!({"active": false, "age": 30})),
                100,
                "n",
            ),
            lww(
                "u",
                "u3",
                Some(json!({"active": true, "age": 30})),
                100,
                "n",
            ),
        ],
        WriteConcern::Applied,
    )
    .await;
    let pred = json!({"op": "and", "children": [
        {"op": "eq", "attribute": "active", "value": true},
        {"op": "gt", "attribute": "age", "value": 22}
    ]});
    let rec = Arc::new(UpdateRecorder::default());
    let first = m
        .subscribe(
            3,
            qreq("u", json!({ "predicate": pred }), None),
            rec.clone(),
        )
        .await
        .expect("subscribe");
    let keys: Vec<String> = first.rows.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(keys, ["u3"]);
    apply(
        &m,
        vec![lww(
            "u",
            "u1",
            Some(json!({"active": true, "age": 23})),
            101,
            "n",
        )],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [seen(
            3,
            Enter,
            "u1",
            Some(json!({"active": true, "age": 23}))
        )]
    );
}

pub(super) async fn t63_unsubscribe_stops_updates_before_it_returns(cx: Ctx) {
    let m = cx.m();
    let rec = Arc::new(UpdateRecorder::default());
    m.subscribe(4, qreq("s", json!({}), None), rec.clone())
        .await
        .expect("subscribe");
    apply(
        &m,
        vec![lww("s", "a", Some(json!(1)), 100, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(rec.take().len(), 1);
    assert!(m.unsubscribe(4), "it existed");
    assert!(!m.unsubscribe(4), "only once");
    apply(
        &m,
        vec![lww("s", "b", Some(json!(2)), 101, "n")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(rec.take(), [], "nothing after unsubscribe");
}

pub(super) async fn t64_subscribing_an_id_twice_replaces_the_first(cx: Ctx) {
    let m = cx.m();
    let first = Arc::new(UpdateRecorder::default());
    let second = Arc::new(UpdateRecorder::default());
    m.subscribe(5, qreq("r", json!({}), None), first.clone())
        .await
        .expect("subscribe");
    m.subscribe(
        5,
        qreq("r", json!({"where": {"x": 2}}), None),
        second.clone(),
    )
    .await
    .expect("subscribe again");
    apply(
        &m,
        vec![
            lww("r", "a", Some(json!({"x": 1})), 100, "n"),
            lww("r", "b", Some(json!({"x": 2})), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(first.take(), [], "the replaced subscription hears nothing");
    assert_eq!(second.take(), [seen(5, Enter, "b", Some(json!({"x": 2})))]);
}

pub(super) async fn t65_updates_carry_projected_values_only_when_they_change(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww(
            "p",
            "a",
            Some(json!({"name": "Ann", "secret": 1})),
            100,
            "n",
        )],
        WriteConcern::Applied,
    )
    .await;
    let rec = Arc::new(UpdateRecorder::default());
    let first = m
        .subscribe(6, qreq("p", json!({}), Some(&["name"])), rec.clone())
        .await
        .expect("subscribe");
    assert_eq!(json_of(&first.rows[0].value), json!({"name": "Ann"}));
    apply(
        &m,
        vec![lww(
            "p",
            "a",
            Some(json!({"name": "Ann", "secret": 2})),
            101,
            "n",
        )],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(rec.take(), [], "the projected value did not change");
    apply(
        &m,
        vec![lww(
            "p",
            "a",
            Some(json!({"name": "Anna", "secret": 2})),
            102,
            "n",
        )],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [seen(6, Update, "a", Some(json!({"name": "Anna"})))]
    );
}

pub(super) async fn t66_or_map_keys_enter_and_leave_with_their_live_values(cx: Ctx) {
    let m = cx.m();
    let rec = Arc::new(UpdateRecorder::default());
    m.subscribe(7, qreq("sets", json!({}), None), rec.clone())
        .await
        .expect("subscribe");
    apply(
        &m,
        vec![or_add("sets", "k", json!("a"), 100, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![or_add("sets", "k", json!("b"), 100, 1, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![or_remove("sets", "k", &tag(100, 0, "n"))],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![or_remove("sets", "k", &tag(100, 1, "n"))],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        rec.take(),
        [
            seen(7, Enter, "k", Some(json!(["a"]))),
            seen(7, Update, "k", Some(json!(["a", "b"]))),
            seen(7, Update, "k", Some(json!(["b"]))),
            seen(7, Leave, "k", None),
        ]
    );
}
