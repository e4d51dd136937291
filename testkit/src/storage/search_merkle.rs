//! Full-text search (BM25 on the configured fields, read-your-writes) and
//! Merkle sync (root, buckets, leaves).

use std::collections::BTreeMap;
use std::sync::Arc;

use abi_stable::std_types::{RVec, Tuple2};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{MerkleNode, MerkleRequest, RecordState, SearchRequest};
use hangar_core::types::{MapKind, WriteConcern};
use hangar_core::ErrorKind;
use serde_json::json;

use super::helpers::{apply, json_of, lww, or_add, or_remove, tag};
use super::{Ctx, FTS_MAP};

fn search(query: &str, limit: u32, min_score: f64) -> SearchRequest {
    SearchRequest {
        map: FTS_MAP.into(),
        query: query.into(),
        limit,
        min_score,
        boost: RVec::new(),
        consistency: abi_stable::std_types::ROption::RNone,
    }
}

async fn hits(m: &Arc<dyn StorageModule>, req: SearchRequest) -> Vec<(String, f64)> {
    m.search(req)
        .await
        .expect("search")
        .iter()
        .map(|h| (h.key.to_string(), h.score))
        .collect()
}

pub(super) async fn t70_search_ranks_matches_on_the_configured_fields(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![
            lww(FTS_MAP, "a1", Some(json!({"title": "Rust storage engines", "body": "redb is an embedded store written in Rust"})), 100, "n"),
            lww(FTS_MAP, "a2", Some(json!({"title": "Cooking", "body": "pasta with tomatoes"})), 100, "n"),
            lww(FTS_MAP, "a3", Some(json!({"title": "Databases", "body": "storage and indexes"})), 100, "n"),
            lww(FTS_MAP, "a4", Some(json!({"title": "Other", "body": "nothing here", "tag": "rust"})), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let all = hits(&m, search("rust storage", 0, 0.0)).await;
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["a1", "a3"],
        "a1 holds both terms; unindexed fields do not count"
    );
    assert!(all[0].1 > all[1].1, "by score descending: {all:?}");
    let one = hits(&m, search("rust storage", 1, 0.0)).await;
    assert_eq!(one.len(), 1);
    let strict = hits(&m, search("rust storage", 10, all[0].1 + 1e-9)).await;
    assert!(strict.is_empty(), "min_score drops lower hits");
    let got = m.search(search("Pasta", 10, 0.0)).await.expect("search");
    assert_eq!(got.len(), 1);
    assert_eq!(
        json_of(&got[0].value)["title"],
        json!("Cooking"),
        "hits carry the current value"
    );
    assert!(
        got[0].matched_terms.iter().any(|t| t.as_str() == "pasta"),
        "lowercased terms"
    );
}

pub(super) async fn t71_search_on_a_map_without_full_text_config_is_invalid_input(cx: Ctx) {
    let m = cx.m();
    let mut req = search("x", 10, 0.0);
    req.map = "plain".into();
    let e = m.search(req).await.expect_err("no search on this map");
    assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{e}");
    assert!(e.message.contains("plain"), "names the map: {e}");
}

pub(super) async fn t72_search_sees_every_write_made_before_it(cx: Ctx) {
    let m = cx.m();
    for i in 0..50u64 {
        apply(
            &m,
            vec![lww(
                FTS_MAP,
                &format!("d{i}"),
                Some(json!({"title": format!("zebra number {i}")})),
                100 + i,
                "n",
            )],
            WriteConcern::Applied,
        )
        .await;
        assert_eq!(
            hits(&m, search("zebra", 0, 0.0)).await.len() as u64,
            (i + 1).min(10)
        );
    }
    apply(
        &m,
        vec![
            lww(FTS_MAP, "d0", None, 1000, "n"),
            lww(FTS_MAP, "d1", Some(json!({"title": "giraffe"})), 1000, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let z = hits(&m, search("zebra", 100, 0.0)).await;
    assert_eq!(z.len(), 48, "a removed and a rewritten document are gone");
    assert_eq!(hits(&m, search("giraffe", 0, 0.0)).await.len(), 1);
}

pub(super) async fn t73_merkle_roots_are_zero_when_empty_and_follow_the_data(cx: Ctx) {
    let m = cx.m();
    assert_eq!(m.merkle_root("none".into(), MapKind::Lww).await.unwrap(), 0);
    apply(
        &m,
        vec![lww("mk", "a", Some(json!(1)), 100, "n")],
        WriteConcern::Applied,
    )
    .await;
    let r1 = m.merkle_root("mk".into(), MapKind::Lww).await.unwrap();
    assert_ne!(r1, 0);
    assert_eq!(
        m.merkle_root("mk".into(), MapKind::Or).await.unwrap(),
        0,
        "no OR tree"
    );
    apply(
        &m,
        vec![lww("mk", "a", Some(json!(1)), 101, "n")],
        WriteConcern::Applied,
    )
    .await;
    let r2 = m.merkle_root("mk".into(), MapKind::Lww).await.unwrap();
    assert_ne!(r1, r2, "the root covers timestamps");
    // Same records in another order: same root.
    apply(
        &m,
        vec![
            lww("mk2", "a", Some(json!(1)), 101, "n"),
            lww("mk2", "a", Some(json!(1)), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(m.merkle_root("mk2".into(), MapKind::Lww).await.unwrap(), r2);
}

async fn walk(
    m: &Arc<dyn StorageModule>,
    map: &str,
    kind: MapKind,
) -> (BTreeMap<String, RecordState>, Vec<String>) {
    let mut records = BTreeMap::new();
    let mut tombstones = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(path) = todo.pop() {
        let node = m
            .merkle_node(MerkleRequest {
                map: map.into(),
                kind,
                path: path.as_str().into(),
                consistency: abi_stable::std_types::ROption::RNone,
            })
            .await
            .expect("merkle_node");
        match node.node {
            MerkleNode::Buckets(b) => {
                assert!(path.len() < 3, "buckets above the leaves only");
                for Tuple2(c, h) in b.iter() {
                    assert_ne!(*h, 0, "only occupied buckets are listed");
                    todo.push(format!("{path}{}", char::from(*c)));
                }
            }
            MerkleNode::Leaf(recs) => {
                assert_eq!(path.len(), 3, "leaves at depth 3");
                for r in recs.iter() {
                    assert!(records.insert(r.key.to_string(), r.state.clone()).is_none());
                }
                tombstones = node.tombstones.iter().map(|t| t.to_string()).collect();
            }
        }
    }
    (records, tombstones)
}

pub(super) async fn t74_walking_buckets_down_to_leaves_yields_every_lww_record(cx: Ctx) {
    let m = cx.m();
    let ops = (0..300)
        .map(|i| lww("walk", &format!("key-{i}"), Some(json!(i)), 100 + i, "n"))
        .chain(std::iter::once(lww("walk", "key-0", None, 10_000, "n")))
        .collect();
    apply(&m, ops, WriteConcern::Applied).await;
    let (records, _) = walk(&m, "walk", MapKind::Lww).await;
    assert_eq!(
        records.len(),
        300,
        "every record once, the tombstone included"
    );
    match &records["key-0"] {
        RecordState::Lww(r) => assert!(r.is_tombstone() && r.timestamp.millis == 10_000),
        other => panic!("{other:?}"),
    }
    match &records["key-7"] {
        RecordState::Lww(r) => assert_eq!(r.timestamp.millis, 107),
        other => panic!("{other:?}"),
    }
}

pub(super) async fn t75_or_leaves_carry_records_and_the_maps_tombstones(cx: Ctx) {
    let m = cx.m();
    let mut ops: Vec<_> = (0..40)
        .map(|i| or_add("orwalk", &format!("k{i}"), json!(i), 100, i, "n"))
        .collect();
    ops.push(or_remove("orwalk", "k0", &tag(100, 0, "n")));
    apply(&m, ops, WriteConcern::Applied).await;
    let (records, tombstones) = walk(&m, "orwalk", MapKind::Or).await;
    assert_eq!(records.len(), 39, "k0 lost its only record");
    assert!(records
        .values()
        .all(|s| matches!(s, RecordState::Or(r) if r.len() == 1)));
    assert_eq!(tombstones, [tag(100, 0, "n")]);
    assert_ne!(
        m.merkle_root("orwalk".into(), MapKind::Or).await.unwrap(),
        0
    );
}

pub(super) async fn t76_a_malformed_merkle_path_is_invalid_input(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("mk", "a", Some(json!(1)), 100, "n")],
        WriteConcern::Applied,
    )
    .await;
    for path in ["xyz", "0000", "A"] {
        let e = m
            .merkle_node(MerkleRequest {
                map: "mk".into(),
                kind: MapKind::Lww,
                path: path.into(),
                consistency: abi_stable::std_types::ROption::RNone,
            })
            .await
            .expect_err("refused");
        assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{path}: {e}");
    }
}
