//! Property tests: the sort encoding against a reference comparator, and
//! incrementally maintained live windows against re-execution from scratch.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use rmpv::Value;
use serde_json::json;

use super::{q, Recorder};
use crate::query::index::RangeIndex;
use crate::query::value::Num;
use crate::query::{execute, ChangeType, Projection, Query, QueryRegistry, RegistryId, Row};

// ---------------------------------------------------------------------------
// Sort encoding
// ---------------------------------------------------------------------------

fn rank(v: &Value) -> u8 {
    match v {
        Value::Nil => 1,
        Value::Boolean(_) => 2,
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => 3,
        Value::String(_) => 4,
        Value::Binary(_) => 5,
        Value::Array(_) => 6,
        Value::Map(_) => 7,
        Value::Ext(..) => 8,
    }
}

fn is_nan(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_nan) && !v.is_i64() && !v.is_u64()
}

/// The documented total order, written directly.
fn ref_cmp(a: &Value, b: &Value) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Binary(x), Value::Binary(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = ref_cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Map(x), Value::Map(y)) => {
            for ((k1, v1), (k2, v2)) in x.iter().zip(y) {
                let o = ref_cmp(k1, k2).then_with(|| ref_cmp(v1, v2));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Ext(t1, d1), Value::Ext(t2, d2)) => t1.cmp(t2).then_with(|| d1.cmp(d2)),
        _ if rank(a) == 3 => match (is_nan(a), is_nan(b)) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => Num::of(a).unwrap().cmp(Num::of(b).unwrap()).unwrap(),
        },
        _ => Ordering::Equal,
    })
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        (-3i64..3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(9_007_199_254_740_992.0),
            Just(18_446_744_073_709_551_616.0),
            -3.0f64..3.0,
            any::<f64>(),
        ]
        .prop_map(Value::F64),
        "[a\\x00b]{0,3}".prop_map(Value::from),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..3)
            .prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(0u8..3, 0..2)).prop_map(|(t, d)| Value::Ext(t, d)),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[ab]", inner), 0..3).prop_map(|es| Value::Map(
                es.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
            )),
        ]
    })
}

fn rec(x: &Value, y: &Value) -> Value {
    Value::Map(vec![("x".into(), x.clone()), ("y".into(), y.clone())])
}

proptest! {
    #[test]
    fn t70_sort_encoding_agrees_with_the_reference_order(a in any_value(), b in any_value(), c in any_value(), d in any_value()) {
        for (dx, dy) in [("asc", "asc"), ("desc", "asc"), ("asc", "desc"), ("desc", "desc")] {
            let query = q(json!({"sort": [{"field": "x", "direction": dx}, {"field": "y", "direction": dy}]}));
            let ka = query.sort().key_of(Arc::from("k"), &rec(&a, &c));
            let kb = query.sort().key_of(Arc::from("k"), &rec(&b, &d));
            let fx = if dx == "asc" { ref_cmp(&a, &b) } else { ref_cmp(&b, &a) };
            let fy = if dy == "asc" { ref_cmp(&c, &d) } else { ref_cmp(&d, &c) };
            prop_assert_eq!(ka.cmp(&kb), fx.then(fy), "{:?} {:?} / {:?} {:?} ({} {})", a, b, c, d, dx, dy);
        }
    }
}

// ---------------------------------------------------------------------------
// Range index
// ---------------------------------------------------------------------------

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..4, 0..4)
}

proptest! {
    #[test]
    fn t72_range_index_stabs_exactly_the_spans_containing_the_point(
        spans in proptest::collection::vec((bytes(), bytes()), 0..40),
        removed in proptest::collection::vec(0u64..40, 0..10),
        points in proptest::collection::vec(bytes(), 1..20),
    ) {
        let mut idx = RangeIndex::default();
        for (i, (lo, hi)) in spans.iter().enumerate() {
            idx.insert(lo.clone(), hi.clone(), RegistryId(i as u64));
        }
        for r in &removed {
            idx.remove(RegistryId(*r));
        }
        for x in points {
            let mut got = Vec::new();
            idx.stab(&x, &mut got);
            got.sort();
            let want: Vec<RegistryId> = spans
                .iter()
                .enumerate()
                .filter(|(i, (lo, hi))| !removed.contains(&(*i as u64)) && *lo <= x && x < *hi)
                .map(|(i, _)| RegistryId(i as u64))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}

// ---------------------------------------------------------------------------
// Live windows against re-execution
// ---------------------------------------------------------------------------

const FILTERS: &[&str] = &[
    "null",
    r#"{"where": {"grp": "a"}}"#,
    r#"{"predicate": {"op": "in", "attribute": "grp", "value": ["a", "b"]}}"#,
    r#"{"predicate": {"op": "gt", "attribute": "score", "value": 2}}"#,
    r#"{"predicate": {"op": "not", "children": [{"op": "eq", "attribute": "grp", "value": "a"}]}}"#,
    r#"{"predicate": {"op": "isNull", "attribute": "grp"}}"#,
    r#"{"predicate": {"op": "or", "children": [{"op": "eq", "attribute": "grp", "value": "b"}, {"op": "lt", "attribute": "score", "value": 2}]}}"#,
    r#"{"predicate": {"op": "and", "children": [{"op": "eq", "attribute": "flag", "value": true}, {"op": "gte", "attribute": "score", "value": 1}]}}"#,
    r#"{"where": {"note": {"$ne": 1}}}"#,
    r#"{"predicate": {"op": "eq", "attribute": "nested.v", "value": 1}}"#,
    r#"{"predicate": {"op": "between", "attribute": "score", "value": [1, 3.5]}}"#,
    r#"{"where": {"score": {"$gte": 2, "$lt": 4}}}"#,
    r#"{"predicate": {"op": "and", "children": [{"op": "gt", "attribute": "score", "value": 1}, {"op": "lte", "attribute": "score", "value": 4}, {"op": "neq", "attribute": "grp", "value": "c"}]}}"#,
    r#"{"predicate": {"op": "gt", "attribute": "grp", "value": "a"}}"#,
    r#"{"predicate": {"op": "or", "children": [{"op": "lt", "attribute": "score", "value": 1}, {"op": "gte", "attribute": "score", "value": 5}]}}"#,
    r#"{"predicate": {"op": "not", "children": [{"op": "lt", "attribute": "score", "value": 3}]}}"#,
];

const SORTS: &[&str] = &[
    "null",
    r#"[{"field": "score"}]"#,
    r#"[{"field": "score", "direction": "desc"}]"#,
    r#"[{"field": "grp"}, {"field": "score", "direction": "desc"}]"#,
];

#[derive(Debug, Clone)]
struct QuerySpec {
    filter: usize,
    sort: usize,
    limit: Option<usize>,
    projection: usize,
    resume: bool,
}

impl QuerySpec {
    fn query(&self) -> Query {
        let mut j: serde_json::Value = serde_json::from_str(FILTERS[self.filter]).unwrap();
        if j.is_null() {
            j = json!({});
        }
        j["sort"] = serde_json::from_str(SORTS[self.sort]).unwrap();
        if let Some(l) = self.limit {
            j["limit"] = json!(l);
        }
        q(j)
    }

    fn projection(&self) -> Projection {
        match self.projection {
            0 => Projection::all(),
            1 => Projection::of(vec!["score".into()]),
            _ => Projection::of(vec!["note".into(), "grp".into()]),
        }
    }
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        0..FILTERS.len(),
        0..SORTS.len(),
        prop_oneof![Just(None), (1usize..4).prop_map(Some)],
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(filter, sort, limit, projection, resume)| QuerySpec {
            filter,
            sort,
            limit,
            projection,
            resume,
        })
}

fn record_value() -> impl Strategy<Value = Value> {
    let map = (
        prop::option::of(prop_oneof![
            (0i64..6).prop_map(Value::from),
            (0.0f64..6.0).prop_map(Value::F64)
        ]),
        prop::option::of(prop_oneof![Just("a"), Just("b"), Just("c")]),
        any::<bool>(),
        0i64..3,
        prop::option::of(0i64..3),
    )
        .prop_map(|(score, grp, flag, note, nested)| {
            let mut m = Vec::new();
            if let Some(s) = score {
                m.push(("score".into(), s));
            }
            if let Some(g) = grp {
                m.push(("grp".into(), Value::from(g)));
            }
            m.push(("flag".into(), Value::Boolean(flag)));
            m.push(("note".into(), Value::from(note)));
            if let Some(n) = nested {
                m.push((
                    "nested".into(),
                    Value::Map(vec![("v".into(), Value::from(n))]),
                ));
            }
            Value::Map(m)
        });
    prop_oneof![8 => map, 1 => Just(Value::from(0)), 1 => Just(Value::from("text"))]
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, Value),
    Remove(usize),
    OtherMap(usize, Value),
    /// Several changes applied without `on_change`, then a `refresh`.
    Reload(Vec<(usize, Option<Value>)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..8, record_value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0usize..8).prop_map(Op::Remove),
        1 => (0usize..8, record_value()).prop_map(|(k, v)| Op::OtherMap(k, v)),
        1 => proptest::collection::vec((0usize..8, prop::option::of(record_value())), 0..4).prop_map(Op::Reload),
    ]
}

fn key(i: usize) -> String {
    format!("k{i}")
}

fn live_rows(data: &HashMap<String, Value>) -> Vec<Row<'_>> {
    data.iter().map(|(k, v)| Row::live(k, v)).collect()
}

struct Client {
    id: RegistryId,
    query: Query,
    projection: Projection,
    rec: Arc<Recorder>,
    held: HashMap<String, Value>,
}

impl Client {
    /// Applies the received updates to the client's copy, strictly.
    fn apply(&mut self) -> Result<(), TestCaseError> {
        for (change, key, value) in self.rec.take() {
            match change {
                ChangeType::Enter => {
                    prop_assert!(!self.held.contains_key(&key), "ENTER for held key {}", key);
                    self.held.insert(key, value.unwrap());
                }
                ChangeType::Update => {
                    let old = self.held.get(&key);
                    prop_assert!(old.is_some(), "UPDATE for unknown key {}", key);
                    prop_assert_ne!(old, value.as_ref(), "UPDATE without a change for {}", key);
                    self.held.insert(key, value.unwrap());
                }
                ChangeType::Leave => {
                    prop_assert!(value.is_none());
                    prop_assert!(
                        self.held.remove(&key).is_some(),
                        "LEAVE for unknown key {}",
                        key
                    );
                }
            }
        }
        Ok(())
    }

    fn check(
        &self,
        reg: &QueryRegistry,
        data: &HashMap<String, Value>,
    ) -> Result<(), TestCaseError> {
        let page = execute(&self.query, &self.projection, live_rows(data), 0);
        let expected: HashMap<String, Value> = page
            .rows
            .iter()
            .map(|r| (r.key.to_string(), r.value.clone()))
            .collect();
        prop_assert_eq!(&self.held, &expected);
        let (window, _) = reg.window_of(self.id).unwrap();
        let mut window: Vec<String> = window.iter().map(|k| k.to_string()).collect();
        let mut order: Vec<String> = page.rows.iter().map(|r| r.key.to_string()).collect();
        if self.query.limit().is_none() {
            window.sort();
            order.sort();
        }
        prop_assert_eq!(window, order);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn t71_incremental_windows_equal_re_execution(
        initial in proptest::collection::vec((0usize..8, record_value()), 0..8),
        specs in proptest::collection::vec(query_spec(), 1..4),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let reg = QueryRegistry::default();
        let mut data: HashMap<String, Value> = initial.into_iter().map(|(k, v)| (key(k), v)).collect();
        let mut clients = Vec::new();
        for spec in &specs {
            let mut query = spec.query();
            if spec.resume {
                // Resume after the first page of the initial data.
                let first = execute(&query, &Projection::all(), live_rows(&data), 0);
                query = query.with_cursor(first.next_cursor);
            }
            let rec = Recorder::new();
            let sub = reg.subscribe("m", query.clone(), spec.projection(), rec.clone(), live_rows(&data), 0);
            let held = sub.page.rows.iter().map(|r| (r.key.to_string(), r.value.clone())).collect();
            let client = Client { id: sub.id, query, projection: spec.projection(), rec, held };
            client.check(&reg, &data)?;
            clients.push(client);
        }
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let old = data.insert(key(k), v.clone());
                    reg.on_change("m", &key(k), old.as_ref(), Some(&v));
                }
                Op::Remove(k) => {
                    let old = data.remove(&key(k));
                    reg.on_change("m", &key(k), old.as_ref(), None);
                }
                Op::OtherMap(k, v) => reg.on_change("other", &key(k), None, Some(&v)),
                Op::Reload(changes) => {
                    for (k, v) in changes {
                        match v {
                            Some(v) => data.insert(key(k), v),
                            None => data.remove(&key(k)),
                        };
                    }
                    reg.refresh("m", live_rows(&data), 0);
                }
            }
            for c in &mut clients {
                c.apply()?;
                c.check(&reg, &data)?;
            }
        }
    }
}
