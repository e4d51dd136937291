//! The one comparator, paging with cursors, cursor statuses, projection.

use std::sync::Arc;

use rmpv::Value;
use serde_json::json;

use super::{keys, q, records, rows, v};
use crate::query::{execute, execute_with, CursorStatus, Projection, Query, Row};

fn sorted_keys(query: &Query, recs: &[(String, Value)]) -> Vec<String> {
    keys(&execute(query, &Projection::all(), rows(recs), 0))
}

/// Pages through `query` (which must carry a limit), returning every page's keys.
fn pages(query: &Query, recs: &[(String, Value)]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = execute(
            &query.clone().with_cursor(cursor.clone()),
            &Projection::all(),
            rows(recs),
            1_000,
        );
        let expected = if cursor.is_some() {
            CursorStatus::Valid
        } else {
            CursorStatus::None
        };
        assert_eq!(page.cursor_status, expected);
        assert_eq!(page.has_more, page.next_cursor.is_some());
        out.push(keys(&page));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 100, "paging does not terminate");
    }
}

#[test]
fn t30_values_order_across_types_nil_bool_number_string() {
    let recs = records(&[
        ("s", json!({"x": "a"})),
        ("n", json!({"x": 3})),
        ("f", json!({"x": 2.5})),
        ("b", json!({"x": true})),
        ("z", json!({"x": null})),
        ("m", json!({"y": 1})),
        ("neg", json!({"x": -1})),
    ]);
    let asc = sorted_keys(&q(json!({"sort": [{"field": "x"}]})), &recs);
    assert_eq!(asc, ["m", "z", "b", "neg", "f", "n", "s"]);
    let desc = sorted_keys(
        &q(json!({"sort": [{"field": "x", "direction": "desc"}]})),
        &recs,
    );
    assert_eq!(
        desc,
        ["s", "n", "f", "neg", "b", "m", "z"],
        "desc reverses values; key stays ascending"
    );
}

#[test]
fn t31_numbers_sort_exactly_across_integer_and_float() {
    let big = (1u64 << 53) + 1;
    let recs = vec![
        (
            "a".to_string(),
            Value::Map(vec![("x".into(), Value::from(big))]),
        ),
        (
            "b".to_string(),
            Value::Map(vec![("x".into(), Value::F64((1u64 << 53) as f64))]),
        ),
        (
            "c".to_string(),
            Value::Map(vec![("x".into(), Value::F64(-0.0))]),
        ),
        (
            "d".to_string(),
            Value::Map(vec![("x".into(), Value::from(0))]),
        ),
        (
            "e".to_string(),
            Value::Map(vec![("x".into(), Value::F64(f64::NAN))]),
        ),
        (
            "f".to_string(),
            Value::Map(vec![("x".into(), Value::F64(f64::INFINITY))]),
        ),
        (
            "g".to_string(),
            Value::Map(vec![("x".into(), Value::from(u64::MAX))]),
        ),
    ];
    let asc = sorted_keys(&q(json!({"sort": [{"field": "x"}]})), &recs);
    assert_eq!(asc, ["c", "d", "b", "a", "g", "f", "e"]);
}

#[test]
fn t32_multi_field_sort_then_key_tie_break() {
    let recs = records(&[
        ("k3", json!({"g": 1, "s": 5})),
        ("k1", json!({"g": 1, "s": 5})),
        ("k2", json!({"g": 2, "s": 1})),
        ("k0", json!({"g": 1, "s": 9})),
    ]);
    let query = q(
        json!({"sort": [{"field": "g", "direction": "asc"}, {"field": "s", "direction": "desc"}]}),
    );
    assert_eq!(sorted_keys(&query, &recs), ["k0", "k1", "k3", "k2"]);
    assert_eq!(
        sorted_keys(&q(json!({})), &recs),
        ["k0", "k1", "k2", "k3"],
        "no sort: key order"
    );
}

#[test]
fn t33_cursor_paging_ascending_visits_every_row_once() {
    let recs: Vec<(String, Value)> = (0..23)
        .map(|i| (format!("k{i:02}"), v(json!({"n": i % 7}))))
        .collect();
    let query = q(json!({"sort": [{"field": "n"}], "limit": 5}));
    let all: Vec<String> = pages(&query, &recs).concat();
    assert_eq!(all, sorted_keys(&query.clone().with_limit(None), &recs));
    assert_eq!(all.len(), 23);
}

#[test]
fn t33_cursor_paging_descending_and_filtered() {
    let recs: Vec<(String, Value)> = (0..40)
        .map(|i| {
            (
                format!("k{i:02}"),
                v(json!({"n": i % 9, "even": i % 2 == 0})),
            )
        })
        .collect();
    let query = q(
        json!({"where": {"even": true}, "sort": [{"field": "n", "direction": "desc"}], "limit": 3}),
    );
    let got = pages(&query, &recs);
    let all: Vec<String> = got.concat();
    assert_eq!(all, sorted_keys(&query.clone().with_limit(None), &recs));
    assert_eq!(all.len(), 20);
    assert!(got.iter().all(|p| p.len() <= 3));
}

#[test]
fn t33_cursor_resumes_with_every_sort_field_not_just_the_first() {
    // Ties on the first field are broken by the second; the legacy cursor
    // kept only the first field and would skip or repeat rows here.
    let recs: Vec<(String, Value)> = (0..12)
        .map(|i| (format!("k{i:02}"), v(json!({"a": i / 6, "b": 11 - i}))))
        .collect();
    let query = q(json!({"sort": [{"field": "a"}, {"field": "b"}], "limit": 4}));
    let all: Vec<String> = pages(&query, &recs).concat();
    assert_eq!(all, sorted_keys(&query.clone().with_limit(None), &recs));
}

#[test]
fn t34_limit_without_sort_pages_by_key() {
    let recs: Vec<(String, Value)> = (0..10)
        .map(|i| (format!("k{i}"), v(json!({"n": i}))))
        .collect();
    let query = q(json!({"limit": 4}));
    assert_eq!(
        pages(&query, &recs),
        [
            vec!["k0", "k1", "k2", "k3"],
            vec!["k4", "k5", "k6", "k7"],
            vec!["k8", "k9"]
        ]
    );
}

#[test]
fn t35_exact_limit_page_has_no_more_and_no_cursor() {
    let recs = records(&[("a", json!({"n": 1})), ("b", json!({"n": 2}))]);
    let page = execute(
        &q(json!({"sort": {"n": "asc"}, "limit": 2})),
        &Projection::all(),
        rows(&recs),
        0,
    );
    assert_eq!(keys(&page), ["a", "b"]);
    assert!(!page.has_more);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.cursor_status, CursorStatus::None);
}

#[test]
fn t36_invalid_cursors_restart_from_the_beginning() {
    let recs: Vec<(String, Value)> = (0..6)
        .map(|i| (format!("k{i}"), v(json!({"n": i}))))
        .collect();
    let query = q(json!({"sort": [{"field": "n"}], "limit": 2}));
    let first = execute(&query, &Projection::all(), rows(&recs), 0);
    let cursor = first.next_cursor.clone().unwrap();

    let other_filter =
        q(json!({"where": {"n": {"$gte": 0}}, "sort": [{"field": "n"}], "limit": 2}));
    let other_sort = q(json!({"sort": [{"field": "n", "direction": "desc"}], "limit": 2}));
    for (query, cursor) in [
        (query.clone(), "not a cursor!".to_string()),
        (query.clone(), "AAAA".to_string()),
        (query.clone(), String::new()),
        (other_filter, cursor.clone()),
        (other_sort.clone(), cursor.clone()),
    ] {
        let page = execute(
            &query.clone().with_cursor(Some(cursor)),
            &Projection::all(),
            rows(&recs),
            0,
        );
        assert_eq!(page.cursor_status, CursorStatus::Invalid);
        let fresh = execute(&query.with_cursor(None), &Projection::all(), rows(&recs), 0);
        assert_eq!(keys(&page), keys(&fresh), "restarts from the beginning");
    }
    // The cursor is still good for its own query.
    let second = execute(
        &query.clone().with_cursor(Some(cursor)),
        &Projection::all(),
        rows(&recs),
        0,
    );
    assert_eq!(second.cursor_status, CursorStatus::Valid);
    assert_eq!(keys(&second), ["k2", "k3"]);
}

#[test]
fn t37_expired_cursor_restarts_and_reports_expired() {
    let recs: Vec<(String, Value)> = (0..6)
        .map(|i| (format!("k{i}"), v(json!({"n": i}))))
        .collect();
    let query = q(json!({"sort": [{"field": "n"}], "limit": 2}));
    let cursor = execute(&query, &Projection::all(), rows(&recs), 1_000)
        .next_cursor
        .unwrap();
    let q2 = query.with_cursor(Some(cursor));
    let at_limit = execute(&q2, &Projection::all(), rows(&recs), 1_000 + 600_000);
    assert_eq!(at_limit.cursor_status, CursorStatus::Valid);
    let late = execute(&q2, &Projection::all(), rows(&recs), 1_000 + 600_001);
    assert_eq!(late.cursor_status, CursorStatus::Expired);
    assert_eq!(keys(&late), ["k0", "k1"]);
    let short = execute_with(&q2, &Projection::all(), rows(&recs), 1_100, 50);
    assert_eq!(short.cursor_status, CursorStatus::Expired);
}

#[test]
fn t38_projection_keeps_only_listed_top_level_fields() {
    let recs = records(&[
        ("a", json!({"name": "x", "secret": 1, "age": 3})),
        ("b", json!("scalar")),
    ]);
    let proj = Projection::of(vec!["name".into(), "age".into(), "absent".into()]);
    let page = execute(&q(json!({})), &proj, rows(&recs), 0);
    assert_eq!(page.rows[0].value, v(json!({"age": 3, "name": "x"})));
    assert_eq!(
        page.rows[1].value,
        v(json!("scalar")),
        "non-map values pass through"
    );
}

#[test]
fn t39_execute_skips_tombstones_and_expired_rows() {
    let live = v(json!({"n": 1}));
    let page = execute(
        &q(json!({})),
        &Projection::all(),
        vec![
            Row::live("a", &live),
            Row {
                key: "b",
                value: None,
                expires_at_ms: None,
            },
            Row {
                key: "c",
                value: Some(&live),
                expires_at_ms: Some(10),
            },
            Row {
                key: "d",
                value: Some(&live),
                expires_at_ms: Some(100),
            },
        ],
        50,
    );
    assert_eq!(keys(&page), ["a", "d"]);
    assert_eq!(page.rows[0].key, Arc::<str>::from("a"));
}
