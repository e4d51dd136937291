//! Unit tests of the merge helpers; the scatter-gather itself is tested
//! with real processes in `tests/tests/t41_cluster_reads.rs`.

use abi_stable::std_types::RVec;
use hangar_core::module::storage_types::SearchHit;
use hangar_core::RawValue;

use super::{merge_hits, without_paging};

fn hit(key: &str, score: f64) -> SearchHit {
    SearchHit {
        key: key.into(),
        score,
        matched_terms: RVec::new(),
        value: RawValue::from_msgpack(vec![0xc0]),
    }
}

fn keys(h: &[SearchHit]) -> Vec<&str> {
    h.iter().map(|h| h.key.as_str()).collect()
}

#[test]
fn t10_hits_from_several_nodes_are_ordered_by_score_then_key_and_cut_at_the_limit() {
    let hits = vec![
        hit("b", 1.0),
        hit("a", 3.0),
        hit("d", 2.0),
        hit("c", 2.0),
        hit("e", 0.5),
    ];
    assert_eq!(keys(&merge_hits(hits, 4)), ["a", "c", "d", "b"]);
}

#[test]
fn t11_a_key_found_on_two_nodes_is_returned_once_with_its_best_score() {
    let hits = vec![hit("k", 1.0), hit("k", 2.0), hit("j", 1.5)];
    let out = merge_hits(hits, 10);
    assert_eq!(keys(&out), ["k", "j"]);
    assert!((out[0].score - 2.0).abs() < f64::EPSILON);
}

fn enc(v: &rmpv::Value) -> RawValue {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    RawValue::from_msgpack(out)
}

#[test]
fn t12_nodes_run_the_query_without_its_limit_and_cursor_but_with_its_filter_and_sort() {
    let q = rmpv::Value::Map(vec![
        (
            "where".into(),
            rmpv::Value::Map(vec![("v".into(), 1.into())]),
        ),
        (
            "sort".into(),
            rmpv::Value::Map(vec![("v".into(), "desc".into())]),
        ),
        ("limit".into(), 10.into()),
        ("cursor".into(), "abc".into()),
    ]);
    let out = without_paging(&enc(&q)).unwrap().decode().unwrap();
    let names: Vec<&str> = out
        .as_map()
        .unwrap()
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, ["where", "sort"]);
}

#[test]
fn t13_an_undecodable_query_is_refused_with_what_was_expected() {
    let err = without_paging(&RawValue::from_msgpack(vec![0x92, 0x01])).unwrap_err();
    assert!(err.message.contains("msgpack"), "{err}");
}
