//! Every predicate op, `where`, and the record-visibility rules.

use rmpv::Value;
use serde_json::json;

use super::{pq, q, v};
use crate::query::{Query, Row};

/// Does `pred` match the record `rec`?
fn m(pred: serde_json::Value, rec: serde_json::Value) -> bool {
    pq(pred).matcher().matches(&v(rec))
}

fn leaf(op: &str, attr: &str, value: serde_json::Value) -> serde_json::Value {
    json!({"op": op, "attribute": attr, "value": value})
}

#[test]
fn t20_eq_compares_numbers_across_int_and_float() {
    assert!(m(leaf("eq", "a", json!(1)), json!({"a": 1.0})));
    assert!(m(leaf("eq", "a", json!(2.5)), json!({"a": 2.5})));
    assert!(!m(leaf("eq", "a", json!(1)), json!({"a": 1.5})));
    // u64 beyond i64 and a float that rounds onto it are not equal.
    let big = Query::parse(&Value::Map(vec![(
        "predicate".into(),
        Value::Map(vec![
            ("op".into(), "eq".into()),
            ("attribute".into(), "a".into()),
            ("value".into(), Value::from(u64::MAX)),
        ]),
    )]))
    .unwrap();
    assert!(big
        .matcher()
        .matches(&Value::Map(vec![("a".into(), Value::from(u64::MAX))])));
    assert!(!big
        .matcher()
        .matches(&Value::Map(vec![("a".into(), Value::F64(u64::MAX as f64))])));
}

#[test]
fn t20_eq_has_no_cross_type_coercion() {
    assert!(!m(leaf("eq", "a", json!("1")), json!({"a": 1})));
    assert!(!m(leaf("eq", "a", json!(true)), json!({"a": 1})));
    assert!(!m(leaf("eq", "a", json!(0)), json!({"a": false})));
}

#[test]
fn t20_eq_null_matches_stored_null_not_missing() {
    assert!(m(leaf("eq", "a", json!(null)), json!({"a": null})));
    assert!(!m(leaf("eq", "a", json!(null)), json!({"b": 1})));
}

#[test]
fn t20_eq_is_deep_and_map_order_insensitive() {
    let rec = Value::Map(vec![(
        "a".into(),
        Value::Map(vec![("y".into(), 2.into()), ("x".into(), 1.into())]),
    )]);
    assert!(pq(leaf("eq", "a", json!({"x": 1, "y": 2.0})))
        .matcher()
        .matches(&rec));
    assert!(!pq(leaf("eq", "a", json!({"x": 1}))).matcher().matches(&rec));
    assert!(m(
        leaf("eq", "a", json!([1, "b"])),
        json!({"a": [1.0, "b"]})
    ));
}

#[test]
fn t21_neq_is_true_for_missing_fields() {
    assert!(m(leaf("neq", "a", json!(1)), json!({"b": 1})));
    assert!(m(leaf("neq", "a", json!(1)), json!({"a": 2})));
    assert!(!m(leaf("neq", "a", json!(1)), json!({"a": 1.0})));
}

#[test]
fn t22_ordering_ops_on_numbers() {
    let r = json!({"a": 5});
    assert!(m(leaf("gt", "a", json!(4.5)), r.clone()));
    assert!(!m(leaf("gt", "a", json!(5)), r.clone()));
    assert!(m(leaf("gte", "a", json!(5.0)), r.clone()));
    assert!(m(leaf("lt", "a", json!(5.1)), r.clone()));
    assert!(!m(leaf("lt", "a", json!(5)), r.clone()));
    assert!(m(leaf("lte", "a", json!(5)), r.clone()));
    assert!(m(leaf("lt", "a", json!(-1)), json!({"a": -2.5})));
}

#[test]
fn t22_ordering_ops_on_strings_use_byte_order() {
    assert!(m(leaf("gt", "s", json!("B")), json!({"s": "a"})));
    assert!(m(leaf("lt", "s", json!("é")), json!({"s": "z"})));
    assert!(m(leaf("gte", "s", json!("abc")), json!({"s": "abc"})));
    assert!(m(leaf("lt", "s", json!("abc")), json!({"s": "ab"})));
}

#[test]
fn t22_ordering_ops_across_types_are_false_both_ways() {
    for op in ["gt", "gte", "lt", "lte"] {
        assert!(!m(leaf(op, "a", json!(5)), json!({"a": "5"})), "{op}");
        assert!(!m(leaf(op, "a", json!("5")), json!({"a": 5})), "{op}");
        assert!(!m(leaf(op, "a", json!(5)), json!({"a": null})), "{op}");
        assert!(!m(leaf(op, "a", json!(5)), json!({"b": 5})), "{op}");
    }
}

#[test]
fn t22_nan_is_unordered() {
    let rec = Value::Map(vec![("a".into(), Value::F64(f64::NAN))]);
    for op in ["gt", "gte", "lt", "lte"] {
        assert!(!pq(leaf(op, "a", json!(0))).matcher().matches(&rec), "{op}");
    }
}

#[test]
fn t23_like_is_anchored_case_insensitive_with_percent_and_underscore() {
    let p = leaf("like", "n", json!("Jo%n_"));
    assert!(m(p.clone(), json!({"n": "john1"})));
    assert!(m(p.clone(), json!({"n": "JOHANNx"})));
    assert!(!m(p.clone(), json!({"n": "john"})));
    assert!(!m(p.clone(), json!({"n": "xjohn1"})));
    assert!(!m(p, json!({"n": "john12"})));
    assert!(m(leaf("like", "n", json!("a%z")), json!({"n": "a\nb\nz"})));
    assert!(m(leaf("like", "n", json!("_")), json!({"n": "é"})));
    assert!(!m(
        leaf("like", "n", json!("straße")),
        json!({"n": "STRASSE"})
    ));
    assert!(m(leaf("like", "n", json!("ÉTÉ")), json!({"n": "été"})));
}

#[test]
fn t23_like_escapes_every_regex_metacharacter() {
    for lit in [
        "a.c", "a*", "a+", "a?", "(a)", "[a]", "{1}", "a|b", "^a$", "a\\d", "$",
    ] {
        assert!(
            m(leaf("like", "n", json!(lit)), json!({ "n": lit })),
            "{lit} vs itself"
        );
    }
    assert!(!m(leaf("like", "n", json!("a.c")), json!({"n": "abc"})));
    assert!(!m(leaf("like", "n", json!("a*")), json!({"n": "aaa"})));
    assert!(!m(leaf("like", "n", json!("a?")), json!({"n": "a"})));
    assert!(!m(leaf("like", "n", json!("a|b")), json!({"n": "a"})));
    assert!(!m(leaf("like", "n", json!("a\\d")), json!({"n": "a1"})));
}

#[test]
fn t23_like_and_regex_only_match_strings() {
    assert!(!m(leaf("like", "n", json!("%")), json!({"n": 5})));
    assert!(!m(leaf("regex", "n", json!(".*")), json!({"n": 5})));
    assert!(!m(leaf("like", "n", json!("%")), json!({"x": "y"})));
}

#[test]
fn t24_regex_is_unanchored_and_case_sensitive() {
    assert!(m(leaf("regex", "n", json!("oh")), json!({"n": "john"})));
    assert!(!m(leaf("regex", "n", json!("OH")), json!({"n": "john"})));
    assert!(m(leaf("regex", "n", json!("(?i)OH")), json!({"n": "john"})));
    assert!(m(leaf("regex", "n", json!("^j.*n$")), json!({"n": "john"})));
}

#[test]
fn t25_in_tests_membership_with_numeric_normalization() {
    let p = leaf("in", "a", json!([1, "x", 2.5, null, [1, 2]]));
    assert!(m(p.clone(), json!({"a": 1.0})));
    assert!(m(p.clone(), json!({"a": "x"})));
    assert!(m(p.clone(), json!({"a": 2.5})));
    assert!(m(p.clone(), json!({"a": null})));
    assert!(m(p.clone(), json!({"a": [1, 2.0]})));
    assert!(!m(p.clone(), json!({"a": "1"})));
    assert!(!m(p, json!({"b": 1})));
    assert!(!m(leaf("in", "a", json!([])), json!({"a": 1})));
}

#[test]
fn t26_between_accepts_both_shapes_inclusive() {
    for val in [json!([10, 20]), json!({"from": 10, "to": 20})] {
        let p = leaf("between", "a", val);
        assert!(m(p.clone(), json!({"a": 10})));
        assert!(m(p.clone(), json!({"a": 20.0})));
        assert!(m(p.clone(), json!({"a": 15.5})));
        assert!(!m(p.clone(), json!({"a": 9.99})));
        assert!(!m(p.clone(), json!({"a": 21})));
        assert!(!m(p, json!({"a": "15"})));
    }
    assert!(m(
        leaf("between", "s", json!(["b", "d"])),
        json!({"s": "c"})
    ));
    assert!(!m(leaf("between", "a", json!([20, 10])), json!({"a": 15})));
}

#[test]
fn t27_is_null_and_is_not_null_treat_missing_as_null() {
    let null = json!({"op": "isNull", "attribute": "a"});
    let not_null = json!({"op": "isNotNull", "attribute": "a"});
    assert!(m(null.clone(), json!({"b": 1})));
    assert!(m(null.clone(), json!({"a": null})));
    assert!(!m(null.clone(), json!({"a": 0})));
    assert!(!m(not_null.clone(), json!({"b": 1})));
    assert!(!m(not_null.clone(), json!({"a": null})));
    assert!(m(not_null, json!({"a": false})));
    assert!(m(
        json!({"op": "isNull", "attribute": "a.b"}),
        json!({"a": 5})
    ));
}

#[test]
fn t28_starts_with_and_ends_with_are_case_sensitive_strings() {
    assert!(m(
        leaf("startsWith", "n", json!("Jo")),
        json!({"n": "John"})
    ));
    assert!(!m(
        leaf("startsWith", "n", json!("jo")),
        json!({"n": "John"})
    ));
    assert!(m(leaf("endsWith", "n", json!("hn")), json!({"n": "John"})));
    assert!(!m(leaf("endsWith", "n", json!("1")), json!({"n": 11})));
    assert!(m(leaf("startsWith", "n", json!("")), json!({"n": "x"})));
}

#[test]
fn t29_contains_ops_on_strings_are_case_insensitive_substrings() {
    let rec = json!({"t": "The Quick Brown Fox"});
    assert!(m(leaf("contains", "t", json!("quick")), rec.clone()));
    assert!(m(
        leaf("containsAll", "t", json!(["QUICK", "fox"])),
        rec.clone()
    ));
    assert!(!m(
        leaf("containsAll", "t", json!(["quick", "dog"])),
        rec.clone()
    ));
    assert!(m(
        leaf("containsAny", "t", json!(["dog", "FOX"])),
        rec.clone()
    ));
    assert!(!m(
        leaf("containsAny", "t", json!(["dog", "cat"])),
        rec.clone()
    ));
    assert!(!m(leaf("containsAny", "t", json!([5])), rec.clone()));
    assert!(m(leaf("containsAll", "t", json!([])), rec.clone()));
    assert!(!m(leaf("containsAny", "t", json!([])), rec));
}

#[test]
fn t29_contains_ops_on_arrays_test_membership() {
    let rec = json!({"tags": ["a", "b", 3]});
    assert!(m(leaf("contains", "tags", json!("a")), rec.clone()));
    assert!(!m(leaf("contains", "tags", json!("A")), rec.clone()));
    assert!(m(
        leaf("containsAll", "tags", json!(["a", 3.0])),
        rec.clone()
    ));
    assert!(!m(
        leaf("containsAll", "tags", json!(["a", "z"])),
        rec.clone()
    ));
    assert!(m(
        leaf("containsAny", "tags", json!(["z", "b"])),
        rec.clone()
    ));
    assert!(!m(leaf("containsAny", "missing", json!(["a"])), rec));
}

#[test]
fn t29a_and_or_not_combine_and_empty_combinators_are_identities() {
    let a1 = leaf("eq", "a", json!(1));
    let b2 = leaf("eq", "b", json!(2));
    let rec = json!({"a": 1, "b": 3});
    assert!(!m(json!({"op": "and", "children": [a1, b2]}), rec.clone()));
    assert!(m(json!({"op": "or", "children": [a1, b2]}), rec.clone()));
    assert!(m(json!({"op": "not", "children": [b2]}), rec.clone()));
    assert!(m(json!({"op": "and", "children": []}), rec.clone()));
    assert!(!m(json!({"op": "or", "children": []}), rec.clone()));
    assert!(m(json!({"op": "and"}), rec));
}

#[test]
fn t29b_dotted_paths_read_nested_maps_and_array_indexes() {
    let rec = json!({"address": {"city": "Oslo", "geo": {"lat": 59.9}}, "tags": ["x", "y"]});
    assert!(m(leaf("eq", "address.city", json!("Oslo")), rec.clone()));
    assert!(m(leaf("gt", "address.geo.lat", json!(59)), rec.clone()));
    assert!(m(leaf("eq", "tags.1", json!("y")), rec.clone()));
    assert!(!m(
        leaf("eq", "address.city.name", json!("Oslo")),
        rec.clone()
    ));
    assert!(!m(leaf("eq", "tags.9", json!("y")), rec));
}

#[test]
fn t29c_where_scalars_and_operator_objects_all_must_hold() {
    let query = q(
        json!({"where": {"status": "active", "age": {"$gte": 18, "$lt": 65}, "role": {"$ne": "bot"}}}),
    );
    let mk = |j| query.matcher().matches(&v(j));
    assert!(mk(json!({"status": "active", "age": 30})));
    assert!(!mk(json!({"status": "active", "age": 30, "role": "bot"})));
    assert!(!mk(json!({"status": "active", "age": 65})));
    assert!(!mk(json!({"status": "idle", "age": 30})));
    // A map value without `$` keys is a deep-equality test.
    let nested = q(json!({"where": {"geo": {"x": 1}}}));
    assert!(nested.matcher().matches(&v(json!({"geo": {"x": 1.0}}))));
}

#[test]
fn t29d_predicate_overrides_where() {
    let query =
        q(json!({"where": {"a": 1}, "predicate": {"op": "eq", "attribute": "b", "value": 2}}));
    assert!(query.matcher().matches(&v(json!({"a": 0, "b": 2}))));
    assert!(!query.matcher().matches(&v(json!({"a": 1, "b": 0}))));
}

#[test]
fn t29e_falsy_record_values_never_match() {
    let all = q(json!({}));
    for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
        assert!(!all.matcher().matches(&v(falsy.clone())), "{falsy}");
    }
    assert!(!all.matcher().matches(&Value::F64(f64::NAN)));
    for truthy in [json!(1), json!("0"), json!([]), json!({}), json!(true)] {
        assert!(all.matcher().matches(&v(truthy.clone())), "{truthy}");
    }
}

#[test]
fn t29f_tombstones_and_expired_records_never_match() {
    let all = q(json!({}));
    let val = v(json!({"a": 1}));
    assert!(!all.matcher().matches_row(
        &Row {
            key: "k",
            value: None,
            expires_at_ms: None
        },
        0
    ));
    let ttl = Row {
        key: "k",
        value: Some(&val),
        expires_at_ms: Some(1_000),
    };
    assert!(all.matcher().matches_row(&ttl, 999));
    assert!(
        all.matcher().matches_row(&ttl, 1_000),
        "expired only once millis + ttl < now"
    );
    assert!(!all.matcher().matches_row(&ttl, 1_001));
}
