//! Live queries: the ENTER / UPDATE / LEAVE stream.

use std::sync::Arc;

use rmpv::Value;
use serde_json::json;

use super::{keys, pq, q, records, rows, v, Recorder};
use crate::query::{ChangeType, CursorStatus, Projection, Query, QueryRegistry, RegistryId, Row};

use ChangeType::{Enter, Leave, Update};

/// A map held by the test, mirrored into the registry on every write.
struct Map {
    name: &'static str,
    recs: Vec<(String, Value)>,
}

impl Map {
    fn new(name: &'static str, pairs: &[(&str, serde_json::Value)]) -> Self {
        Self {
            name,
            recs: records(pairs),
        }
    }

    fn subscribe(
        &self,
        reg: &QueryRegistry,
        query: Query,
        proj: Projection,
    ) -> (RegistryId, Arc<Recorder>, crate::query::Page) {
        let rec = Recorder::new();
        let s = reg.subscribe(self.name, query, proj, rec.clone(), rows(&self.recs), 0);
        (s.id, rec, s.page)
    }

    fn put(&mut self, reg: &QueryRegistry, key: &str, j: serde_json::Value) {
        let new = v(j);
        let old = self.recs.iter().position(|(k, _)| k == key);
        let old_value = old.map(|i| self.recs[i].1.clone());
        match old {
            Some(i) => self.recs[i].1 = new.clone(),
            None => self.recs.push((key.to_string(), new.clone())),
        }
        reg.on_change(self.name, key, old_value.as_ref(), Some(&new));
    }

    fn remove(&mut self, reg: &QueryRegistry, key: &str) {
        let i = self.recs.iter().position(|(k, _)| k == key).unwrap();
        let (_, old) = self.recs.remove(i);
        reg.on_change(self.name, key, Some(&old), None);
    }
}

fn ev(
    change: ChangeType,
    key: &str,
    value: Option<serde_json::Value>,
) -> (ChangeType, String, Option<Value>) {
    (change, key.to_string(), value.map(v))
}

/// Scores A 100, B 90, C 80: the map the top-2 window tests slide over.
fn scores() -> Map {
    Map::new(
        "scores",
        &[
            ("A", json!({"score": 100})),
            ("B", json!({"score": 90})),
            ("C", json!({"score": 80})),
        ],
    )
}

/// The keys of subscription `id`'s window, in order.
fn window_keys(reg: &QueryRegistry, id: RegistryId) -> Vec<String> {
    let (window, _) = reg.window_of(id).unwrap();
    window.iter().map(|k| k.to_string()).collect()
}

fn score_desc_top2() -> Query {
    q(json!({"sort": {"score": "desc"}, "limit": 2}))
}

#[test]
fn t50_sliding_window_new_row_displaces_the_last_one() {
    let reg = QueryRegistry::default();
    let mut map = scores();
    let (id, rec, page) = map.subscribe(&reg, score_desc_top2(), Projection::all());
    assert_eq!(keys(&page), ["A", "B"]);
    assert!(page.has_more);
    assert!(page.next_cursor.is_some());

    map.put(&reg, "D", json!({"score": 95}));
    assert_eq!(
        rec.take(),
        [
            ev(Leave, "B", None),
            ev(Enter, "D", Some(json!({"score": 95})))
        ]
    );
    assert_eq!(window_keys(&reg, id), ["A", "D"]);
    assert_eq!(reg.window_of(id).unwrap().1, 4);
}

#[test]
fn t51_predicate_and_eq_gt_sends_enter_when_an_update_makes_a_record_match() {
    let reg = QueryRegistry::default();
    let mut map = Map::new(
        "users",
        &[
            ("u1", json!({"active": true, "age": 20})),
            ("u2", json!({"active": false, "age": 30})),
            ("u3", json!({"active": true, "age": 25})),
        ],
    );
    let query = pq(json!({"op": "and", "children": [
        {"op": "eq", "attribute": "active", "value": true},
        {"op": "gt", "attribute": "age", "value": 22}
    ]}));
    let (_, rec, page) = map.subscribe(&reg, query, Projection::all());
    assert_eq!(keys(&page), ["u3"]);
    map.put(&reg, "u1", json!({"active": true, "age": 23}));
    assert_eq!(
        rec.take(),
        [ev(Enter, "u1", Some(json!({"active": true, "age": 23})))]
    );
    map.put(&reg, "u2", json!({"active": true, "age": 30}));
    assert_eq!(
        rec.take(),
        [ev(Enter, "u2", Some(json!({"active": true, "age": 30})))]
    );
    map.put(&reg, "u3", json!({"active": true, "age": 21}));
    assert_eq!(rec.take(), [ev(Leave, "u3", None)]);
}

#[test]
fn t52_a_row_leaving_the_window_promotes_the_next_one() {
    let reg = QueryRegistry::default();
    let mut map = scores();
    let (id, rec, _) = map.subscribe(&reg, score_desc_top2(), Projection::all());
    map.put(&reg, "A", json!({"score": 10}));
    assert_eq!(
        rec.take(),
        [
            ev(Leave, "A", None),
            ev(Enter, "C", Some(json!({"score": 80})))
        ]
    );
    map.remove(&reg, "B");
    assert_eq!(
        rec.take(),
        [
            ev(Leave, "B", None),
            ev(Enter, "A", Some(json!({"score": 10})))
        ]
    );
    map.remove(&reg, "C");
    assert_eq!(
        rec.take(),
        [ev(Leave, "C", None)],
        "nothing left to promote"
    );
    assert_eq!(reg.window_of(id).unwrap().1, 1);
}

#[test]
fn t52_a_row_moving_inside_the_window_sends_only_update() {
    let reg = QueryRegistry::default();
    let mut map = scores();
    let (id, rec, _) = map.subscribe(&reg, score_desc_top2(), Projection::all());
    map.put(&reg, "B", json!({"score": 101}));
    assert_eq!(rec.take(), [ev(Update, "B", Some(json!({"score": 101})))]);
    assert_eq!(window_keys(&reg, id), ["B", "A"]);
    map.put(&reg, "C", json!({"score": 85}));
    assert_eq!(rec.take(), [], "a change outside the window is invisible");
}

#[test]
fn t53_change_to_an_unreferenced_field_of_an_in_window_record_sends_update() {
    let reg = QueryRegistry::default();
    let mut map = Map::new(
        "users",
        &[
            ("u1", json!({"active": true, "name": "Ann"})),
            ("u2", json!({"active": false, "name": "Bob"})),
        ],
    );
    let (_, rec, _) = map.subscribe(
        &reg,
        q(json!({"where": {"active": true}})),
        Projection::all(),
    );
    map.put(&reg, "u1", json!({"active": true, "name": "Anna"}));
    assert_eq!(
        rec.take(),
        [ev(
            Update,
            "u1",
            Some(json!({"active": true, "name": "Anna"}))
        )]
    );
    // Same for a top-N window.
    let (_, rec2, _) = map.subscribe(
        &reg,
        q(json!({"sort": {"name": "asc"}, "limit": 1, "where": {"active": true}})),
        Projection::all(),
    );
    map.put(
        &reg,
        "u1",
        json!({"active": true, "name": "Anna", "extra": 1}),
    );
    assert_eq!(
        rec2.take(),
        [ev(
            Update,
            "u1",
            Some(json!({"active": true, "name": "Anna", "extra": 1}))
        )]
    );
    assert_eq!(rec.take().len(), 1);
}

#[test]
fn t54_unrelated_maps_records_and_identical_writes_send_nothing() {
    let reg = QueryRegistry::default();
    let mut users = Map::new(
        "users",
        &[
            ("u1", json!({"active": true, "n": 1})),
            ("u2", json!({"active": false, "n": 1})),
        ],
    );
    let mut other = Map::new("other", &[("u1", json!({"active": true}))]);
    let (_, rec, _) = users.subscribe(
        &reg,
        q(json!({"where": {"active": true}})),
        Projection::all(),
    );
    other.put(&reg, "u1", json!({"active": true, "x": 2}));
    other.put(&reg, "u9", json!({"active": true}));
    users.put(&reg, "u2", json!({"active": false, "n": 2}));
    users.put(&reg, "u1", json!({"active": true, "n": 1}));
    users.put(&reg, "u3", json!({"active": false}));
    assert_eq!(rec.take(), []);
}

#[test]
fn t55_projection_shapes_values_and_hides_changes_to_other_fields() {
    let reg = QueryRegistry::default();
    let mut map = Map::new(
        "users",
        &[("u1", json!({"name": "Ann", "secret": 1, "age": 30}))],
    );
    let (_, rec, page) = map.subscribe(&reg, q(json!({})), Projection::of(vec!["name".into()]));
    assert_eq!(page.rows[0].value, v(json!({"name": "Ann"})));
    map.put(&reg, "u1", json!({"name": "Ann", "secret": 2, "age": 30}));
    assert_eq!(rec.take(), [], "projected value unchanged: no UPDATE");
    map.put(&reg, "u1", json!({"name": "Anna", "secret": 2, "age": 30}));
    assert_eq!(
        rec.take(),
        [ev(Update, "u1", Some(json!({"name": "Anna"})))]
    );
    map.put(&reg, "u2", json!({"name": "Bo", "secret": 9}));
    assert_eq!(rec.take(), [ev(Enter, "u2", Some(json!({"name": "Bo"})))]);
}

#[test]
fn t56_unsubscribe_stops_updates_and_forgets_the_map() {
    let reg = QueryRegistry::default();
    let mut map = Map::new("m", &[("a", json!({"x": 1}))]);
    let (id1, rec1, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    let (id2, rec2, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    assert_eq!(reg.subscription_count(), 2);
    assert!(reg.unsubscribe(id1));
    assert!(!reg.unsubscribe(id1), "second unsubscribe is a no-op");
    map.put(&reg, "a", json!({"x": 2}));
    assert_eq!(rec1.take(), []);
    assert_eq!(rec2.take().len(), 1);
    assert_eq!(reg.unsubscribe_all([id2, RegistryId(999)]), 1);
    assert!(!reg.has_subscriptions("m"));
    assert_eq!(reg.subscriptions_of("m"), []);
    map.put(&reg, "a", json!({"x": 3}));
    assert_eq!(rec2.take(), []);
}

#[test]
fn t56_subscription_ids_are_assigned_by_the_registry_and_distinct() {
    let reg = QueryRegistry::default();
    let map = Map::new("m", &[]);
    let (a, _, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    let (b, _, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    assert_ne!(a, b);
    assert_eq!(reg.subscriptions_of("m"), [a, b]);
}

#[test]
fn t57_refresh_sends_only_the_difference() {
    let reg = QueryRegistry::default();
    let map = Map::new(
        "m",
        &[
            ("a", json!({"x": 1})),
            ("b", json!({"x": 2})),
            ("c", json!({"x": 3})),
        ],
    );
    let (_, rec, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    let (_, top, _) = map.subscribe(
        &reg,
        q(json!({"sort": {"x": "desc"}, "limit": 2})),
        Projection::all(),
    );
    let loaded = records(&[
        ("a", json!({"x": 1})),
        ("c", json!({"x": 30})),
        ("d", json!({"x": 4})),
    ]);
    reg.refresh("m", rows(&loaded), 0);
    let mut got = rec.take();
    got.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        got,
        [
            ev(Leave, "b", None),
            ev(Update, "c", Some(json!({"x": 30}))),
            ev(Enter, "d", Some(json!({"x": 4})))
        ]
    );
    assert_eq!(
        top.take(),
        [
            ev(Leave, "b", None),
            ev(Update, "c", Some(json!({"x": 30}))),
            ev(Enter, "d", Some(json!({"x": 4})))
        ]
    );
    reg.refresh("m", rows(&loaded), 0);
    assert_eq!(
        rec.take(),
        [],
        "a second refresh with the same data sends nothing"
    );
    assert_eq!(top.take(), []);
}

#[test]
fn t58_a_resumed_window_holds_rows_after_the_cursor_only() {
    let reg = QueryRegistry::default();
    let mut map = Map::new(
        "m",
        &[
            ("a", json!({"n": 1})),
            ("b", json!({"n": 2})),
            ("c", json!({"n": 3})),
            ("d", json!({"n": 4})),
        ],
    );
    let query = q(json!({"sort": {"n": "asc"}, "limit": 2}));
    let first = crate::query::execute(&query, &Projection::all(), rows(&map.recs), 0);
    let (id, rec, page) = map.subscribe(
        &reg,
        query.with_cursor(first.next_cursor),
        Projection::all(),
    );
    assert_eq!(page.cursor_status, CursorStatus::Valid);
    assert_eq!(keys(&page), ["c", "d"]);
    map.put(&reg, "a", json!({"n": 3.5}));
    assert_eq!(
        rec.take(),
        [
            ev(Leave, "d", None),
            ev(Enter, "a", Some(json!({"n": 3.5})))
        ],
        "moved past the cursor"
    );
    map.put(&reg, "c", json!({"n": 0}));
    assert_eq!(
        rec.take(),
        [ev(Leave, "c", None), ev(Enter, "d", Some(json!({"n": 4})))],
        "moved before the cursor"
    );
    assert_eq!(window_keys(&reg, id), ["a", "d"]);
}

#[test]
fn t59_deletes_and_falsy_values_leave_and_creations_match_null_filters() {
    let reg = QueryRegistry::default();
    let mut map = Map::new("m", &[("a", json!({"x": 1}))]);
    let (_, all, _) = map.subscribe(&reg, q(json!({})), Projection::all());
    let (_, nulls, _) = map.subscribe(
        &reg,
        pq(json!({"op": "isNull", "attribute": "tag"})),
        Projection::all(),
    );
    let (_, not_red, _) = map.subscribe(
        &reg,
        pq(json!({"op": "not", "children": [{"op": "eq", "attribute": "color", "value": "red"}]})),
        Projection::all(),
    );
    assert_eq!(nulls.take(), []);
    map.put(&reg, "b", json!({"y": 1}));
    assert_eq!(all.take(), [ev(Enter, "b", Some(json!({"y": 1})))]);
    assert_eq!(nulls.take(), [ev(Enter, "b", Some(json!({"y": 1})))]);
    assert_eq!(not_red.take(), [ev(Enter, "b", Some(json!({"y": 1})))]);
    map.put(&reg, "b", json!({"y": 1, "color": "red", "tag": "t"}));
    assert_eq!(nulls.take(), [ev(Leave, "b", None)]);
    assert_eq!(not_red.take(), [ev(Leave, "b", None)]);
    assert_eq!(
        all.take(),
        [ev(
            Update,
            "b",
            Some(json!({"y": 1, "color": "red", "tag": "t"}))
        )]
    );
    map.put(&reg, "b", json!({"y": 1, "color": "blue", "tag": "t"}));
    assert_eq!(
        not_red.take(),
        [ev(
            Enter,
            "b",
            Some(json!({"y": 1, "color": "blue", "tag": "t"}))
        )]
    );
    assert_eq!(all.take().len(), 1);
    map.put(&reg, "a", json!(0));
    assert_eq!(
        all.take(),
        [ev(Leave, "a", None)],
        "a falsy value never matches"
    );
    assert_eq!(not_red.take(), [ev(Leave, "a", None)]);
    map.remove(&reg, "b");
    assert_eq!(not_red.take(), [ev(Leave, "b", None)]);
}

/// Subscribes `rec` to everything in map `m`, whose snapshot holds key `a`
/// with `value`.
fn subscribe_all_with_a(reg: &QueryRegistry, rec: &Arc<Recorder>, value: &Value) {
    reg.subscribe(
        "m",
        q(json!({})),
        Projection::all(),
        rec.clone(),
        vec![Row::live("a", value)],
        0,
    );
}

#[test]
fn t59a_a_change_already_in_the_snapshot_is_not_sent_twice() {
    // The writer applied the change, the subscriber's snapshot saw it, and
    // the writer's on_change arrives after registration.
    let reg = QueryRegistry::default();
    let old = v(json!({"x": 1}));
    let new = v(json!({"x": 2}));
    let rec = Recorder::new();
    subscribe_all_with_a(&reg, &rec, &new);
    reg.on_change("m", "a", Some(&old), Some(&new));
    assert_eq!(rec.take(), []);
    // Another subscriber that registered before the change still gets it.
    let reg = QueryRegistry::default();
    let rec1 = Recorder::new();
    let rec2 = Recorder::new();
    subscribe_all_with_a(&reg, &rec1, &old);
    subscribe_all_with_a(&reg, &rec2, &new);
    reg.on_change("m", "a", Some(&old), Some(&new));
    assert_eq!(rec1.take(), [ev(Update, "a", Some(json!({"x": 2})))]);
    assert!(
        rec2.take().iter().all(|e| e.2 == Some(v(json!({"x": 2})))),
        "at most a redundant UPDATE with the same value"
    );
}

#[test]
fn t59b_a_record_created_before_subscribe_and_changed_after_is_tracked() {
    let reg = QueryRegistry::default();
    let mut map = Map::new("m", &[("a", json!({"k": "x", "v": 1}))]);
    let (_, rec, _) = map.subscribe(&reg, q(json!({"where": {"k": "y"}})), Projection::all());
    map.put(&reg, "a", json!({"k": "y", "v": 1}));
    assert_eq!(
        rec.take(),
        [ev(Enter, "a", Some(json!({"k": "y", "v": 1})))]
    );
    map.put(&reg, "a", json!({"k": "y", "v": 2}));
    assert_eq!(
        rec.take(),
        [ev(Update, "a", Some(json!({"k": "y", "v": 2})))]
    );
    map.put(&reg, "a", json!({"k": "z", "v": 2}));
    assert_eq!(rec.take(), [ev(Leave, "a", None)]);
}

#[test]
fn t59c_scalar_record_values_reach_every_subscription() {
    let reg = QueryRegistry::default();
    let mut map = Map::new("m", &[]);
    let (_, rec, _) = map.subscribe(
        &reg,
        pq(json!({"op": "eq", "attribute": "0", "value": "x"})),
        Projection::all(),
    );
    map.put(&reg, "a", json!(["x", 1]));
    assert_eq!(rec.take(), [ev(Enter, "a", Some(json!(["x", 1])))]);
}

#[test]
fn t59d_a_caller_chosen_id_subscribed_twice_replaces_the_first() {
    let reg = QueryRegistry::default();
    let mut map = Map::new("m", &[("a", json!({"x": 1}))]);
    let first = Recorder::new();
    let id = RegistryId(42);
    let s = reg.subscribe_as(
        id,
        "m",
        q(json!({})),
        Projection::all(),
        first.clone(),
        rows(&map.recs),
        0,
    );
    assert_eq!(s.id, id);
    let second = Recorder::new();
    reg.subscribe_as(
        id,
        "m",
        q(json!({"where": {"x": 2}})),
        Projection::all(),
        second.clone(),
        rows(&map.recs),
        0,
    );
    assert_eq!(reg.subscription_count(), 1, "replaced, not added");
    map.put(&reg, "a", json!({"x": 2}));
    assert_eq!(first.take(), [], "the replaced subscription hears nothing");
    assert_eq!(second.take(), [ev(Enter, "a", Some(json!({"x": 2})))]);
    assert!(reg.unsubscribe(id));
    assert!(!reg.has_subscriptions("m"));
}

#[test]
fn t59e_forgotten_keys_send_no_leave_a_promoted_row_enters_and_a_return_enters() {
    let reg = QueryRegistry::default();
    let mut map = scores();
    let (id, rec, page) = map.subscribe(&reg, score_desc_top2(), Projection::all());
    assert_eq!(keys(&page), ["A", "B"]);
    let (all_id, all_rec, _) =
        map.subscribe(&reg, Query::parse(&Value::Nil).unwrap(), Projection::all());

    // The node releases A: nobody hears a LEAVE for it; the top-2 window
    // promotes C, which enters.
    map.recs.retain(|(k, _)| k != "A");
    reg.forget("scores", ["A"]);
    assert_eq!(rec.take(), [ev(Enter, "C", Some(json!({"score": 80})))]);
    assert_eq!(window_keys(&reg, id), ["B", "C"]);
    assert!(all_rec.take().is_empty(), "no LEAVE for a forgotten key");
    assert_eq!(reg.window_of(all_id).unwrap().1, 2);

    // A forgotten key that comes back (the node holds it again) enters.
    map.put(&reg, "A", json!({"score": 100}));
    assert_eq!(
        rec.take(),
        [
            ev(Leave, "C", None),
            ev(Enter, "A", Some(json!({"score": 100})))
        ]
    );
    assert_eq!(
        all_rec.take(),
        [ev(Enter, "A", Some(json!({"score": 100})))]
    );
    // Unknown keys and maps are ignored.
    reg.forget("scores", ["nobody"]);
    reg.forget("no-such-map", ["A"]);
    assert!(rec.take().is_empty() && all_rec.take().is_empty());
}
