//! Parsing the wire `query` object, and refusing bad ones with clear errors.

use serde_json::json;

use super::{q, v};
use crate::query::{Direction, Projection, Query, QueryError, QueryLimits};

fn err(j: serde_json::Value) -> QueryError {
    match Query::parse(&v(j)) {
        Ok(_) => panic!("query was accepted"),
        Err(e) => e,
    }
}

fn payload_query(bytes: &[u8]) -> rmpv::Value {
    let frame = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let payload = frame
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some("payload"))
        .unwrap()
        .1
        .clone();
    payload
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some("query"))
        .unwrap()
        .1
        .clone()
}

#[test]
fn t10_fixture_query_sub_parses_where_operator_sort_array_and_limit() {
    let query = Query::parse(&payload_query(include_bytes!("fixtures/QUERY_SUB.msgpack"))).unwrap();
    assert_eq!(query.limit(), Some(50));
    let f = &query.sort().fields()[0];
    assert_eq!(f.path.as_str(), "createdAt");
    assert_eq!(f.direction, Direction::Desc);
    assert!(query.matcher().matches(&v(json!({"age": 19}))));
    assert!(!query.matcher().matches(&v(json!({"age": 18}))));
}

#[test]
fn t10_fixture_group_by_query_is_refused_as_unsupported() {
    let e = Query::parse(&payload_query(include_bytes!(
        "fixtures/QUERY_SUB_GROUPBY_AGG.msgpack"
    )))
    .unwrap_err();
    assert!(matches!(e, QueryError::Unsupported { .. }), "{e}");
}

#[test]
fn t11_nil_and_empty_queries_match_every_truthy_record() {
    for query in [Query::parse(&rmpv::Value::Nil).unwrap(), q(json!({}))] {
        assert!(query.matcher().matches(&v(json!({"x": 1}))));
        assert!(query.matcher().matches(&v(json!("text"))));
        assert_eq!(query.limit(), None);
        assert!(query.sort().fields().is_empty());
    }
}

#[test]
fn t12_unknown_predicate_op_names_the_op_and_place() {
    let e = err(json!({"predicate": {"op": "and", "children": [
        {"op": "eq", "attribute": "a", "value": 1},
        {"op": "approx", "attribute": "b", "value": 2}
    ]}}));
    let msg = e.to_string();
    assert!(matches!(e, QueryError::UnknownOperator { .. }));
    assert!(
        msg.contains("approx") && msg.contains("query.predicate.children[1].op"),
        "{msg}"
    );
}

#[test]
fn t12_search_ops_are_refused_with_a_pointer_to_search() {
    let e = err(json!({"predicate": {"op": "match", "attribute": "body", "value": "x"}}));
    assert!(e.to_string().contains("SEARCH"), "{e}");
}

#[test]
fn t13_bad_regex_is_refused_with_the_pattern() {
    let e = err(json!({"predicate": {"op": "regex", "attribute": "a", "value": "(unclosed"}}));
    assert!(matches!(e, QueryError::BadPattern { .. }));
    assert!(e.to_string().contains("(unclosed"), "{e}");
}

#[test]
fn t13_regex_over_the_compiled_size_bound_is_refused() {
    let limits = QueryLimits {
        max_regex_size: 10_000,
        ..QueryLimits::default()
    };
    let e = Query::parse_with(
        &v(json!({"predicate": {"op": "regex", "attribute": "a", "value": "\\w{100}\\w{100}"}})),
        &limits,
    )
    .unwrap_err();
    assert!(matches!(e, QueryError::BadPattern { .. }), "{e}");
}

#[test]
fn t14_wrong_argument_types_are_refused() {
    for (pred, place) in [
        (
            json!({"op": "gt", "attribute": "a", "value": [1]}),
            "query.predicate.value",
        ),
        (
            json!({"op": "gt", "attribute": "a", "value": true}),
            "query.predicate.value",
        ),
        (
            json!({"op": "like", "attribute": "a", "value": 5}),
            "query.predicate.value",
        ),
        (
            json!({"op": "in", "attribute": "a", "value": 5}),
            "query.predicate.value",
        ),
        (
            json!({"op": "containsAll", "attribute": "a", "value": "x"}),
            "query.predicate.value",
        ),
        (
            json!({"op": "startsWith", "attribute": "a", "value": null}),
            "query.predicate.value",
        ),
        (
            json!({"op": "between", "attribute": "a", "value": [1]}),
            "query.predicate.value",
        ),
        (
            json!({"op": "eq", "attribute": 3, "value": 1}),
            "query.predicate.attribute",
        ),
        (
            json!({"op": "and", "children": {"op": "eq"}}),
            "query.predicate.children",
        ),
    ] {
        let e = err(json!({ "predicate": pred }));
        assert!(matches!(e, QueryError::WrongType { .. }), "{e}");
        assert!(e.to_string().contains(place), "{e}");
    }
}

#[test]
fn t14_missing_members_are_named() {
    for (pred, member) in [
        (json!({"attribute": "a", "value": 1}), "op"),
        (json!({"op": "eq", "value": 1}), "attribute"),
        (json!({"op": "eq", "attribute": "a"}), "value"),
        (
            json!({"op": "between", "attribute": "a", "value": {"from": 1}}),
            "to",
        ),
    ] {
        let e = err(json!({ "predicate": pred }));
        assert!(e.to_string().contains(member), "{e}");
        assert!(matches!(e, QueryError::Missing { .. }), "{e}");
    }
}

#[test]
fn t14_between_with_mixed_bound_types_is_refused() {
    let e = err(json!({"predicate": {"op": "between", "attribute": "a", "value": [1, "z"]}}));
    assert!(matches!(e, QueryError::Invalid { .. }), "{e}");
}

#[test]
fn t14_not_needs_exactly_one_child() {
    let e = err(json!({"predicate": {"op": "not", "children": []}}));
    assert!(e.to_string().contains("exactly one child"), "{e}");
}

#[test]
fn t14_empty_path_segments_are_refused() {
    let e = err(json!({"predicate": {"op": "eq", "attribute": "a..b", "value": 1}}));
    assert!(matches!(e, QueryError::Invalid { .. }), "{e}");
}

#[test]
fn t15_unknown_where_operator_is_refused_not_a_silent_non_match() {
    let e = err(json!({"where": {"age": {"$regex": "x"}}}));
    let msg = e.to_string();
    assert!(
        msg.contains("$regex") && msg.contains("query.where.age"),
        "{msg}"
    );
}

#[test]
fn t15_where_eq_and_in_operators_are_supported() {
    let query = q(json!({"where": {"age": {"$in": [1, 2]}, "name": {"$eq": "x"}}}));
    assert!(query.matcher().matches(&v(json!({"age": 2, "name": "x"}))));
    assert!(!query.matcher().matches(&v(json!({"age": 3, "name": "x"}))));
}

#[test]
fn t16_unknown_members_are_refused() {
    let e = err(json!({"filter": {"a": 1}}));
    assert!(e.to_string().contains("unknown member `filter`"), "{e}");
}

#[test]
fn t17_sort_array_and_legacy_object_forms_are_the_same_sort() {
    let a = q(json!({"sort": [{"field": "score", "direction": "desc"}, {"field": "name"}]}));
    // Built by hand: serde_json objects sort their keys, and map order is priority here.
    let legacy = rmpv::Value::Map(vec![(
        "sort".into(),
        rmpv::Value::Map(vec![
            ("score".into(), "desc".into()),
            ("name".into(), "asc".into()),
        ]),
    )]);
    let b = Query::parse(&legacy).unwrap();
    assert_eq!(a.sort(), b.sort());
    assert_eq!(a.sort_hash(), b.sort_hash());
    assert_eq!(a.sort().fields()[1].direction, Direction::Asc);
    let c = q(json!({"sort": {"score": "asc"}}));
    assert_ne!(a.sort_hash(), c.sort_hash());
}

#[test]
fn t17_bad_sort_direction_is_refused() {
    let e = err(json!({"sort": [{"field": "a", "direction": "up"}]}));
    assert!(e.to_string().contains("\"asc\" or \"desc\""), "{e}");
}

#[test]
fn t18_limit_forms() {
    assert_eq!(q(json!({"limit": 5})).limit(), Some(5));
    assert_eq!(q(json!({"limit": 5.0})).limit(), Some(5));
    assert_eq!(q(json!({"limit": 0})).limit(), None);
    assert_eq!(q(json!({"limit": null})).limit(), None);
    for bad in [json!(-1), json!(1.5), json!("5")] {
        let e = err(json!({ "limit": bad }));
        assert!(e.to_string().contains("query.limit"), "{e}");
    }
}

#[test]
fn t19_nesting_depth_and_node_count_are_bounded() {
    let mut pred = json!({"op": "eq", "attribute": "a", "value": 1});
    for _ in 0..40 {
        pred = json!({"op": "not", "children": [pred]});
    }
    let e = err(json!({ "predicate": pred }));
    assert!(matches!(e, QueryError::TooLarge { .. }), "{e}");

    let children: Vec<_> = (0..2000)
        .map(|i| json!({"op": "eq", "attribute": "a", "value": i}))
        .collect();
    let e = err(json!({"predicate": {"op": "or", "children": children}}));
    assert!(matches!(e, QueryError::TooLarge { .. }), "{e}");
}

#[test]
fn t19_projection_parses_field_lists_refuses_other_shapes_and_intersects_for_fls() {
    assert!(Projection::parse(None).unwrap().is_all());
    assert!(Projection::parse(Some(&v(json!([])))).unwrap().is_all());
    let p = Projection::parse(Some(&v(json!(["name", "age"])))).unwrap();
    assert_eq!(
        p.apply(&v(json!({"age": 3, "secret": 1, "name": "x"})))
            .into_owned(),
        v(json!({"age": 3, "name": "x"}))
    );
    assert!(Projection::parse(Some(&v(json!("name")))).is_err());
    let rec = v(json!({"a": 1, "b": 2, "c": 3}));
    let fls = Projection::of(vec!["a".into(), "b".into()]);
    let asked = Projection::of(vec!["b".into(), "c".into()]);
    assert_eq!(
        asked.intersect(&fls).apply(&rec).into_owned(),
        v(json!({"b": 2}))
    );
    assert_eq!(
        Projection::all().intersect(&fls).apply(&rec).into_owned(),
        v(json!({"a": 1, "b": 2}))
    );
    let nothing = Projection::of(vec!["c".into()]).intersect(&fls);
    assert_eq!(
        nothing.apply(&rec).into_owned(),
        v(json!({})),
        "an empty intersection shows nothing"
    );
    assert!(Projection::parse(Some(&v(json!(["a", 1])))).is_err());
}
