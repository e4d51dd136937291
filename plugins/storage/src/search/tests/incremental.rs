//! Incremental maintenance equals building from scratch.
//!
//! Random upserts, removals and searches (searches fill the IDF caches, so
//! a cache that is not invalidated shows up as a different score) against
//! one index, then a fresh index built from the final documents only: every
//! query, with and without boost and limit, must give identical results,
//! scores compared bit for bit.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rmpv::Value;

use super::doc;
use crate::search::{FullTextIndex, FullTextIndexConfig, SearchOptions};

const WORDS: &[&str] = &[
    "apple", "banana", "cherry", "dates", "elder", "figs", "grape", "the", "running", "runs",
];

#[derive(Debug, Clone)]
enum Step {
    Upsert(u8, Value),
    Remove(u8),
    Search(String),
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..6).prop_map(|w| w.join(" "))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (text(), text()).prop_map(|(t, b)| doc(&t, &b)),
        1 => Just(Value::Nil),
        1 => text().prop_map(|t| Value::Map(vec![(Value::from("title"), Value::from(t))])),
        1 => Just(Value::Map(vec![(Value::from("body"), Value::from(7))])),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..8, value()).prop_map(|(k, v)| Step::Upsert(k, v)),
        2 => (0u8..8).prop_map(Step::Remove),
        2 => text().prop_map(Step::Search),
    ]
}

/// Options to try: plain, limited, and boosts over the configured fields.
fn options(fields: &[&str]) -> Vec<SearchOptions> {
    let boosted = |weights: &[f64]| SearchOptions {
        boost: Some(
            fields
                .iter()
                .zip(weights)
                .map(|(f, &w)| ((*f).to_owned(), w))
                .collect(),
        ),
        ..SearchOptions::default()
    };
    vec![
        SearchOptions::default(),
        SearchOptions::limit(2),
        boosted(&[2.0, 1.0]),
        boosted(&[0.5, 3.0]),
    ]
}

fn queries() -> Vec<String> {
    let mut q: Vec<String> = WORDS.iter().map(|w| (*w).to_owned()).collect();
    q.push("apple banana cherry".into());
    q.push("grape grape figs run".into());
    q.push(WORDS.join(" "));
    q
}

fn new_index(fields: &[&str]) -> FullTextIndex {
    FullTextIndex::new(FullTextIndexConfig::new(fields.iter().copied())).unwrap()
}

fn check(fields: &[&str], steps: &[Step]) -> Result<(), TestCaseError> {
    let mut ix = new_index(fields);
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    for s in steps {
        match s {
            Step::Upsert(k, v) => {
                let key = format!("k{k}");
                ix.upsert(&key, v);
                if v.is_nil() {
                    model.remove(&key);
                } else {
                    model.insert(key, v.clone());
                }
            }
            Step::Remove(k) => {
                let key = format!("k{k}");
                ix.remove(&key);
                model.remove(&key);
            }
            Step::Search(q) => {
                for o in options(fields) {
                    ix.search(q, &o).unwrap();
                }
            }
        }
    }
    // Build from scratch in a different order (reverse key order).
    let mut fresh = new_index(fields);
    for (k, v) in model.iter().rev() {
        fresh.upsert(k, v);
    }
    prop_assert_eq!(ix.len(), fresh.len());
    prop_assert_eq!(ix.stats(), fresh.stats());
    for q in queries() {
        for o in options(fields) {
            let a = ix.search(&q, &o).unwrap();
            let b = fresh.search(&q, &o).unwrap();
            prop_assert_eq!(&a, &b, "query {:?} options {:?}", q, o);
            for h in &a.hits {
                let one = ix.score_document(&h.key, &q, &o).unwrap();
                prop_assert_eq!(one.as_ref(), Some(h));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn t20_incremental_two_field_index_equals_rebuild(
        steps in prop::collection::vec(step(), 0..60)
    ) {
        check(&["title", "body"], &steps)?;
    }

    #[test]
    fn t21_incremental_single_field_index_equals_rebuild(
        steps in prop::collection::vec(step(), 0..60)
    ) {
        check(&["body"], &steps)?;
    }
}
