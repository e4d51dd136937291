//! One-shot queries: `where`, every predicate operator, multi-field sort
//! with the key as tie-break, limit with cursors, field projection, and
//! refusals.

use std::collections::BTreeSet;
use std::sync::Arc;

use abi_stable::std_types::ROption;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::CursorStatus;
use hangar_core::types::WriteConcern;
use hangar_core::ErrorKind;
use serde_json::{json, Value as Json};

use super::helpers::{apply, json_of, lww, qreq};
use super::Ctx;

fn people() -> Vec<(&'static str, Json)> {
    vec![
        (
            "u1",
            json!({"name": "Ann", "age": 30, "city": "Oslo", "tags": ["a", "b"], "nick": "annie"}),
        ),
        (
            "u2",
            json!({"name": "Bob", "age": 25, "city": "Bergen", "tags": ["b"]}),
        ),
        (
            "u3",
            json!({"name": "Cid", "age": 35, "city": "Oslo", "tags": ["c", "a"], "nick": null}),
        ),
        (
            "u4",
            json!({"name": "Dee", "age": 25, "city": "Rome", "tags": [], "nick": "dd"}),
        ),
        (
            "u5",
            json!({"name": "Eve", "age": 40, "city": "Oslo", "tags": ["a", "b", "c"]}),
        ),
    ]
}

async fn seed(m: &Arc<dyn StorageModule>) {
    let ops = people()
        .into_iter()
        .map(|(k, v)| lww("people", k, Some(v), 100, "n"))
        .collect();
    apply(m, ops, WriteConcern::Applied).await;
}

async fn keys_of(m: &Arc<dyn StorageModule>, query: Json) -> BTreeSet<String> {
    let page = m
        .query(qreq("people", query.clone(), None))
        .await
        .unwrap_or_else(|e| panic!("query {query}: {e}"));
    page.rows.iter().map(|r| r.key.to_string()).collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_string()).collect()
}

fn leaf(op: &str, attr: &str, value: Json) -> Json {
    json!({"op": op, "attribute": attr, "value": value})
}

pub(super) async fn t50_where_matches_equality_and_operator_conditions(cx: Ctx) {
    let m = cx.m();
    seed(&m).await;
    assert_eq!(
        keys_of(&m, json!({"where": {"city": "Oslo"}})).await,
        set(&["u1", "u3", "u5"])
    );
    assert_eq!(
        keys_of(&m, json!({"where": {"city": "Oslo", "age": {"$gte": 35}}})).await,
        set(&["u3", "u5"])
    );
    assert_eq!(
        keys_of(&m, json!({"where": {"age": {"$in": [25, 40]}}})).await,
        set(&["u2", "u4", "u5"])
    );
    assert_eq!(
        keys_of(&m, json!({})).await.len(),
        5,
        "no filter matches everything"
    );
}

pub(super) async fn t51_every_predicate_operator_filters_as_specified(cx: Ctx) {
    let m = cx.m();
    seed(&m).await;
    let cases: Vec<(Json, &[&str])> = vec![
        (leaf("eq", "age", json!(25)), &["u2", "u4"]),
        (leaf("neq", "city", json!("Oslo")), &["u2", "u4"]),
        (leaf("gt", "age", json!(30)), &["u3", "u5"]),
        (leaf("gte", "age", json!(30)), &["u1", "u3", "u5"]),
        (leaf("lt", "age", json!(30)), &["u2", "u4"]),
        (leaf("lte", "age", json!(30)), &["u1", "u2", "u4"]),
        (leaf("like", "name", json!("%e%")), &["u4", "u5"]),
        (leaf("regex", "name", json!("^[AB]")), &["u1", "u2"]),
        (leaf("in", "city", json!(["Rome", "Bergen"])), &["u2", "u4"]),
        (leaf("between", "age", json!([26, 35])), &["u1", "u3"]),
        (
            json!({"op": "isNull", "attribute": "nick"}),
            &["u2", "u3", "u5"],
        ),
        (
            json!({"op": "isNotNull", "attribute": "nick"}),
            &["u1", "u4"],
        ),
        (leaf("startsWith", "city", json!("Be")), &["u2"]),
        (leaf("endsWith", "name", json!("e")), &["u4", "u5"]),
        (
            leaf("containsAll", "tags", json!(["a", "b"])),
            &["u1", "u5"],
        ),
        (
            leaf("containsAny", "tags", json!(["c", "z"])),
            &["u3", "u5"],
        ),
        (
            json!({"op": "and", "children": [leaf("eq", "city", json!("Oslo")), leaf("lt", "age", json!(40))]}),
            &["u1", "u3"],
        ),
        (
            json!({"op": "or", "children": [leaf("eq", "name", json!("Ann")), leaf("eq", "name", json!("Dee"))]}),
            &["u1", "u4"],
        ),
        (
            json!({"op": "not", "children": [leaf("eq", "city", json!("Oslo"))]}),
            &["u2", "u4"],
        ),
    ];
    for (predicate, want) in cases {
        let got = keys_of(&m, json!({ "predicate": predicate.clone() })).await;
        assert_eq!(got, set(want), "predicate {predicate}");
    }
    // `predicate` overrides `where`.
    let both = json!({"where": {"city": "Rome"}, "predicate": leaf("eq", "city", json!("Bergen"))});
    assert_eq!(keys_of(&m, both).await, set(&["u2"]));
}

pub(super) async fn t52_multi_field_sort_breaks_ties_by_key(cx: Ctx) {
    let m = cx.m();
    seed(&m).await;
    let page = m
        .query(qreq(
            "people",
            json!({"sort": [{"field": "age", "direction": "asc"}, {"field": "city", "direction": "desc"}]}),
            None,
        ))
        .await
        .expect("query");
    let keys: Vec<String> = page.rows.iter().map(|r| r.key.to_string()).collect();
    // age 25: Rome (u4) before Bergen (u2) by city desc; then 30, 35, 40.
    assert_eq!(keys, ["u4", "u2", "u1", "u3", "u5"]);
    let by_age_only = m
        .query(qreq("people", json!({"sort": {"age": "asc"}}), None))
        .await
        .expect("query");
    let keys: Vec<String> = by_age_only.rows.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(
        keys,
        ["u2", "u4", "u1", "u3", "u5"],
        "equal ages order by key"
    );
}

pub(super) async fn t53_limit_and_cursor_page_through_every_row_once(cx: Ctx) {
    let m = cx.m();
    let ops = (0..23)
        .map(|i| {
            lww(
                "pages",
                &format!("k{i:02}"),
                Some(json!({"n": i % 7})),
                100,
                "n",
            )
        })
        .collect();
    apply(&m, ops, WriteConcern::Applied).await;
    let mut cursor: Option<String> = None;
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let mut q = json!({"sort": [{"field": "n", "direction": "desc"}], "limit": 5});
        if let Some(c) = &cursor {
            q["cursor"] = json!(c);
        }
        let page = m.query(qreq("pages", q, None)).await.expect("query");
        pages += 1;
        assert_eq!(
            page.cursor_status,
            if cursor.is_some() {
                CursorStatus::Valid
            } else {
                CursorStatus::None
            }
        );
        keys.extend(page.rows.iter().map(|r| r.key.to_string()));
        match (&page.next_cursor, page.has_more) {
            (ROption::RSome(c), true) => cursor = Some(c.to_string()),
            (ROption::RNone, false) => break,
            other => panic!("next_cursor present exactly when has_more: {other:?}"),
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(keys.len(), 23);
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), 23, "every row once");
    let bad = m
        .query(qreq(
            "pages",
            json!({"sort": {"n": "asc"}, "limit": 5, "cursor": "garbage"}),
            None,
        ))
        .await
        .expect("an invalid cursor restarts, it is not an error");
    assert_eq!(bad.cursor_status, CursorStatus::Invalid);
    assert_eq!(bad.rows.len(), 5);
}

pub(super) async fn t54_fields_project_values(cx: Ctx) {
    let m = cx.m();
    seed(&m).await;
    let page = m
        .query(qreq(
            "people",
            json!({"where": {"name": "Ann"}}),
            Some(&["name", "age"]),
        ))
        .await
        .expect("query");
    assert_eq!(page.rows.len(), 1);
    assert_eq!(
        json_of(&page.rows[0].value),
        json!({"name": "Ann", "age": 30})
    );
}

pub(super) async fn t55_an_invalid_query_is_invalid_input_with_the_parsers_message(cx: Ctx) {
    let m = cx.m();
    seed(&m).await;
    for (q, mentions) in [
        (
            json!({"predicate": {"op": "near", "attribute": "x", "value": 1}}),
            "near",
        ),
        (json!({"where": {"age": {"$regex": "x"}}}), "$regex"),
        (json!({"limt": 3}), "limt"),
    ] {
        let e = m
            .query(qreq("people", q.clone(), None))
            .await
            .expect_err("refused");
        assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{q}: {e}");
        assert!(e.message.contains(mentions), "{q}: {e}");
    }
}

pub(super) async fn t56_a_query_on_an_unknown_map_is_empty(cx: Ctx) {
    let m = cx.m();
    let page = m
        .query(qreq("nothing-here", json!({}), None))
        .await
        .expect("query");
    assert!(page.rows.is_empty());
    assert!(!page.has_more);
}
