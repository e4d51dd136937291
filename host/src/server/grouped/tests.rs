//! The grouping parser and the incremental aggregator, checked against a
//! from-scratch recomputation written independently here.

use std::collections::{BTreeMap, HashMap};

use hangar_core::module::storage_types::ChangeType;
use proptest::prelude::*;
use rmpv::Value;
use serde_json::json;

use super::{bucket_id, split, Func, GroupSpec, Groups};

fn v(j: serde_json::Value) -> Value {
    rmpv::ext::to_value(j).unwrap()
}

/// The map with its entries sorted by key (`json!` maps are sorted).
fn sorted(v: Value) -> Value {
    let Value::Map(mut m) = v else { return v };
    m.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
    Value::Map(m)
}

fn spec(j: serde_json::Value) -> GroupSpec {
    split(&v(j)).unwrap().group.unwrap()
}

#[test]
fn t10_split_strips_grouping_and_keeps_the_filter() {
    let s = split(&v(json!({
        "where": {"status": "open"},
        "groupBy": ["category"],
        "aggregations": [{"func": "count"}, {"func": "sum", "field": "price"}, {"func": "sum", "field": "price"}]
    })))
    .unwrap();
    assert_eq!(s.rows_query, v(json!({"where": {"status": "open"}})));
    let g = s.group.unwrap();
    assert_eq!(g.group_by, vec!["category".to_string()]);
    // A plain count is the __count column; a repeated aggregation is one column.
    assert_eq!(g.aggregations.len(), 1);
    assert_eq!(g.aggregations[0].func, Func::Sum);
    assert_eq!(g.aggregations[0].column, "__sum_price");
}

#[test]
fn t11_split_leaves_ungrouped_queries_alone() {
    for q in [
        json!({"where": {"a": 1}, "sort": [{"field": "a"}], "limit": 3}),
        json!(null),
    ] {
        let s = split(&v(q.clone())).unwrap();
        assert!(s.group.is_none());
        assert_eq!(s.rows_query, v(q));
    }
    let s = split(&v(json!({"groupBy": null, "aggregations": null}))).unwrap();
    assert!(s.group.is_none());
}

#[test]
fn t12_split_errors_name_the_member_and_what_was_expected() {
    let cases = [
        (
            json!({"groupBy": "category"}),
            "query.groupBy: expected an array",
        ),
        (
            json!({"groupBy": [1]}),
            "query.groupBy[0]: expected a non-empty field name",
        ),
        (
            json!({"aggregations": [{"func": "median", "field": "x"}]}),
            "unknown aggregate function `median`; expected one of count, sum, avg, min, max",
        ),
        (
            json!({"aggregations": [{"func": "sum"}]}),
            "query.aggregations[0]: `sum` needs a field",
        ),
        (
            json!({"aggregations": [{"fn": "sum"}]}),
            "query.aggregations[0]: unknown member",
        ),
        (
            json!({"aggregations": [{"field": "x"}]}),
            "query.aggregations[0]: missing func",
        ),
        (
            json!({"aggregations": {"func": "sum"}}),
            "query.aggregations: expected an array",
        ),
        (
            json!({"groupBy": ["a"], "sort": [{"field": "a"}]}),
            "query.sort: not supported with groupBy",
        ),
        (
            json!({"groupBy": ["a"], "limit": 2}),
            "query.limit: not supported with groupBy",
        ),
        (
            json!({"groupBy": ["a"], "cursor": "abc"}),
            "query.cursor: not supported with groupBy",
        ),
    ];
    for (q, want) in cases {
        let e = split(&v(q.clone())).unwrap_err();
        assert!(e.contains(want), "{q}: got {e:?}, want {want:?}");
    }
}

#[test]
fn t13_bucket_ids_are_typed() {
    let id = |x: Option<Value>| {
        let mut s = String::new();
        bucket_id(&mut s, x.as_ref());
        s
    };
    assert_eq!(id(Some(Value::from("books"))), "S5:books");
    assert_eq!(id(Some(Value::from(1))), "I1;");
    assert_ne!(id(Some(Value::from("1"))), id(Some(Value::from(1))));
    assert_eq!(id(None), id(Some(Value::Nil)));
    assert_eq!(id(Some(Value::from(true))), "B1");
    assert_eq!(id(Some(Value::F64(1.5))), format!("F{};", 1.5f64.to_bits()));
    assert_ne!(id(Some(Value::F64(1.0))), id(Some(Value::from(1))));
}

#[test]
fn t14_rows_have_the_wire_shape() {
    let mut g = Groups::new(spec(json!({"groupBy": ["category"],
        "aggregations": [{"func": "sum", "field": "price"}, {"func": "avg", "field": "price"}]})));
    g.apply("a", Some(&v(json!({"category": "books", "price": 10}))));
    g.apply("b", Some(&v(json!({"category": "books", "price": 20}))));
    g.apply("c", Some(&v(json!({"category": "books", "price": "n/a"}))));
    let rows = g.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "S5:books");
    let Value::Map(m) = &rows[0].1 else {
        panic!("not a map")
    };
    let names: Vec<_> = m.iter().map(|(k, _)| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["__key", "__count", "__sum_price", "__avg_price", "category"]
    );
    assert_eq!(
        sorted(rows[0].1.clone()),
        v(
            json!({"__key": "S5:books", "__count": 3, "__sum_price": 30, "__avg_price": 15.0, "category": "books"})
        )
    );
}

#[test]
fn t15_changes_are_enter_update_leave_per_group() {
    let mut g = Groups::new(spec(
        json!({"groupBy": ["c"], "aggregations": [{"func": "min", "field": "x"}]}),
    ));
    assert_eq!(
        g.apply("k1", Some(&v(json!({"c": "a", "x": 1})))),
        vec![("S1:a".into(), ChangeType::Enter)]
    );
    assert_eq!(
        g.apply("k2", Some(&v(json!({"c": "a", "x": 5})))),
        vec![("S1:a".into(), ChangeType::Update)]
    );
    // An unchanged contribution (a field nobody reads) sends nothing.
    assert_eq!(
        g.apply("k2", Some(&v(json!({"c": "a", "x": 5, "other": 1})))),
        vec![]
    );
    // Deleting the current minimum falls back to the next one.
    assert_eq!(
        g.apply("k1", None),
        vec![("S1:a".into(), ChangeType::Update)]
    );
    assert_eq!(
        sorted(g.row("S1:a").unwrap()),
        v(json!({"__key": "S1:a", "__count": 1, "__min_x": 5, "c": "a"}))
    );
    // Moving the last record to another group: the old one leaves, the new one enters.
    assert_eq!(
        g.apply("k2", Some(&v(json!({"c": "b", "x": 5})))),
        vec![
            ("S1:a".into(), ChangeType::Leave),
            ("S1:b".into(), ChangeType::Enter)
        ]
    );
    assert_eq!(
        g.apply("k2", None),
        vec![("S1:b".into(), ChangeType::Leave)]
    );
    assert!(g.is_empty());
}

#[test]
fn t16_sums_of_ints_stay_ints_and_min_max_keep_the_stored_type() {
    let mut g = Groups::new(spec(json!({"aggregations": [
        {"func": "sum", "field": "x"}, {"func": "min", "field": "x"}, {"func": "max", "field": "x"}, {"func": "avg", "field": "y"}]})));
    g.apply("a", Some(&v(json!({"x": 2.5}))));
    g.apply("b", Some(&v(json!({"x": 1.5}))));
    g.apply("c", Some(&v(json!({"x": -3}))));
    let row = sorted(g.rows().remove(0).1);
    // 2.5 + 1.5 - 3 is whole: an int. avg of no numbers: nil.
    assert_eq!(
        row,
        v(
            json!({"__key": "", "__count": 3, "__sum_x": 1, "__min_x": -3, "__max_x": 2.5, "__avg_y": null})
        )
    );
}

// ---- property test: incremental == recomputation -------------------------

/// Group rows recomputed from scratch from the current records, with no
/// shared code beyond the bucket id encoding.
fn recompute(spec: &GroupSpec, records: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let field = |r: &Value, f: &str| -> Option<Value> {
        let mut cur = r;
        for seg in f.split('.') {
            let Value::Map(m) = cur else { return None };
            cur = &m.iter().find(|(k, _)| k.as_str() == Some(seg))?.1;
        }
        Some(cur.clone())
    };
    let mut buckets: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in records.values() {
        let mut id = String::new();
        for f in &spec.group_by {
            bucket_id(&mut id, field(r, f).as_ref());
        }
        buckets.entry(id).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for (id, rows) in buckets {
        let mut m = vec![
            (Value::from("__key"), Value::from(id.as_str())),
            (Value::from("__count"), Value::from(rows.len() as u64)),
        ];
        for a in &spec.aggregations {
            let f = a.field.as_deref().unwrap();
            let vals: Vec<Value> = rows.iter().filter_map(|r| field(r, f)).collect();
            let nums: Vec<Value> = vals
                .iter()
                .filter(|x| x.is_i64() || x.is_u64() || x.as_f64().is_some_and(f64::is_finite))
                .cloned()
                .collect();
            let as_f = |x: &Value| x.as_i64().map_or_else(|| x.as_f64().unwrap(), |i| i as f64);
            let total: f64 = nums.iter().map(as_f).sum();
            let all_ints = nums.iter().all(Value::is_i64);
            let result = match a.func {
                Func::Count => Value::from(vals.iter().filter(|x| !x.is_nil()).count() as u64),
                Func::Sum if all_ints => {
                    Value::from(nums.iter().map(|x| x.as_i64().unwrap()).sum::<i64>())
                }
                Func::Sum if total.fract() == 0.0 => Value::from(total as i64),
                Func::Sum => Value::F64(total),
                Func::Avg if nums.is_empty() => Value::Nil,
                Func::Avg => Value::F64(total / nums.len() as f64),
                Func::Min => nums
                    .iter()
                    .min_by(|x, y| as_f(x).total_cmp(&as_f(y)))
                    .cloned()
                    .unwrap_or(Value::Nil),
                Func::Max => nums
                    .iter()
                    .max_by(|x, y| as_f(x).total_cmp(&as_f(y)))
                    .cloned()
                    .unwrap_or(Value::Nil),
            };
            m.push((Value::from(a.column.as_str()), result));
        }
        let first = rows[0];
        for f in &spec.group_by {
            m.push((
                Value::from(f.as_str()),
                field(first, f).unwrap_or(Value::Nil),
            ));
        }
        out.insert(id, Value::Map(m));
    }
    out
}

fn encoded(rows: BTreeMap<String, Value>) -> BTreeMap<String, Vec<u8>> {
    rows.into_iter()
        .map(|(k, v)| {
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, &v).unwrap();
            (k, b)
        })
        .collect()
}

fn arb_scalar() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Nil)),
        (-3i64..3).prop_map(|i| Some(Value::from(i))),
        // Quarters: sums of these are exact in f64, so the float
        // arithmetic cannot hide a wrong incremental update.
        (-40i64..40).prop_map(|i| Some(Value::F64(i as f64 + 0.25))),
        (-50i64..50).prop_map(|i| Some(Value::from(i))),
        prop::sample::select(vec!["a", "b", "1"]).prop_map(|s| Some(Value::from(s))),
        any::<bool>().prop_map(|b| Some(Value::from(b))),
        Just(Some(Value::F64(f64::NAN))),
    ]
}

fn arb_record() -> impl Strategy<Value = Value> {
    (arb_scalar(), arb_scalar(), arb_scalar()).prop_map(|(g, x, y)| {
        let mut m = Vec::new();
        for (name, val) in [("g", g), ("x", x)] {
            if let Some(val) = val {
                m.push((Value::from(name), val));
            }
        }
        if let Some(y) = y {
            m.push((Value::from("n"), Value::Map(vec![(Value::from("y"), y)])));
        }
        Value::Map(m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After any sequence of upserts and deletes, the incremental rows equal
    /// a recomputation, and a client applying the emitted ENTER / UPDATE /
    /// LEAVE holds exactly those rows (ENTER only for a group it lacks,
    /// UPDATE / LEAVE only for one it has).
    #[test]
    fn t20_incremental_groups_equal_recomputation(
        ops in prop::collection::vec((0usize..12, prop::option::weighted(0.8, arb_record())), 1..120),
        by_two in any::<bool>(),
    ) {
        let group_by = if by_two { json!(["g", "n.y"]) } else { json!(["g"]) };
        let spec = spec(json!({"groupBy": group_by, "aggregations": [
            {"func": "count", "field": "x"}, {"func": "sum", "field": "x"}, {"func": "avg", "field": "x"},
            {"func": "min", "field": "x"}, {"func": "max", "field": "x"}, {"func": "sum", "field": "n.y"}]}));
        let mut groups = Groups::new(spec.clone());
        let mut records = BTreeMap::new();
        let mut client: HashMap<String, Value> = HashMap::new();
        for (k, rec) in ops {
            let key = format!("k{k}");
            let changes = groups.apply(&key, rec.as_ref());
            match rec {
                Some(r) => { records.insert(key, r); }
                None => { records.remove(&key); }
            }
            for (bucket, change) in changes {
                match change {
                    ChangeType::Enter => prop_assert!(client.insert(bucket.clone(), groups.row(&bucket).unwrap()).is_none(), "ENTER for a group the client has"),
                    ChangeType::Update => prop_assert!(client.insert(bucket.clone(), groups.row(&bucket).unwrap()).is_some(), "UPDATE for a group the client lacks"),
                    ChangeType::Leave => prop_assert!(client.remove(&bucket).is_some() && groups.row(&bucket).is_none(), "bad LEAVE"),
                }
            }
            // Compared as msgpack bytes: a NaN group column equals itself.
            let want = encoded(recompute(&spec, &records));
            prop_assert_eq!(&encoded(groups.rows().into_iter().collect()), &want);
            prop_assert_eq!(&encoded(client.clone().into_iter().collect()), &want);
        }
    }
}
