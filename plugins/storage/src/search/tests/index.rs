//! Claims about [`FullTextIndex`].

use std::collections::BTreeMap;

use hangar_core::RawValue;
use rmpv::Value;

use super::{doc, rec};
use crate::search::{
    idf, term_score, Bm25Config, FullTextIndex, FullTextIndexConfig, SearchError, SearchOptions,
    SearchResults, StopwordList, Stopwords, TokenizerConfig,
};

fn body_index() -> FullTextIndex {
    FullTextIndex::new(FullTextIndexConfig::new(["body"])).unwrap()
}

fn two_field_index() -> FullTextIndex {
    FullTextIndex::new(FullTextIndexConfig::new(["title", "body"])).unwrap()
}

fn search(ix: &FullTextIndex, q: &str) -> SearchResults {
    ix.search(q, &SearchOptions::default()).unwrap()
}

fn keys(r: &SearchResults) -> Vec<&str> {
    r.hits.iter().map(|h| h.key.as_str()).collect()
}

fn boost(pairs: &[(&str, f64)]) -> SearchOptions {
    SearchOptions {
        boost: Some(
            pairs
                .iter()
                .map(|&(f, w)| (f.to_owned(), w))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..SearchOptions::default()
    }
}

#[test]
fn t10_upserted_document_is_found_by_its_terms() {
    let mut ix = body_index();
    ix.upsert("a", &rec("body", "Async Rust programming"));
    ix.upsert("b", &rec("body", "Gardening for beginners"));
    let r = search(&ix, "rust");
    assert_eq!(keys(&r), ["a"]);
    assert_eq!(r.total_count, 1);
    assert_eq!(r.hits[0].matched_terms, ["rust"]);
    assert!(r.hits[0].score > 0.0);
    assert_eq!(ix.len(), 2);
    assert!(ix.contains("b"));
}

#[test]
fn t11_more_occurrences_of_a_rare_term_rank_first() {
    let mut ix = body_index();
    // Same length (4 terms each) so only tf differs between a and b.
    ix.upsert("a", &rec("body", "quantum garden quantum soil"));
    ix.upsert("b", &rec("body", "quantum garden water soil"));
    ix.upsert("c", &rec("body", "garden water soil light"));
    ix.upsert("d", &rec("body", "garden water soil light"));
    let r = search(&ix, "quantum garden");
    assert_eq!(keys(&r), ["a", "b", "c", "d"]);
    assert!(r.hits[0].score > r.hits[1].score);
    assert!(r.hits[1].score > r.hits[2].score);
    // c and d tie exactly and are ordered by key.
    assert_eq!(r.hits[2].score, r.hits[3].score);
}

#[test]
fn t12_scores_equal_a_hand_computed_bm25_example() {
    let mut ix = body_index();
    // Terms after tokenizing: d1 = [cat, cat, dog] (3), d2 = [dog, bird] (2),
    // d3 = [fish] (1). N = 3, avgdl = 2.
    ix.upsert("d1", &rec("body", "cat cat dog"));
    ix.upsert("d2", &rec("body", "dog bird"));
    ix.upsert("d3", &rec("body", "fish"));
    let r = search(&ix, "cat dog");
    let (k1, b, avgdl) = (1.2, 0.75, 2.0);
    let idf_cat = (2.5f64 / 1.5 + 1.0).ln(); // N=3, df=1
    let idf_dog = (1.5f64 / 2.5 + 1.0).ln(); // N=3, df=2
    let part = |idf: f64, tf: f64, len: f64| {
        idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / avgdl))
    };
    let d1 = part(idf_cat, 2.0, 3.0) + part(idf_dog, 1.0, 3.0);
    let d2 = part(idf_dog, 1.0, 2.0);
    assert_eq!(keys(&r), ["d1", "d2"]);
    assert!(
        (r.hits[0].score - d1).abs() < 1e-12,
        "{} vs {d1}",
        r.hits[0].score
    );
    assert!(
        (r.hits[1].score - d2).abs() < 1e-12,
        "{} vs {d2}",
        r.hits[1].score
    );
    // And the public formula helpers agree with the same numbers.
    assert!((idf(3, 1) - idf_cat).abs() < 1e-15);
    let p = Bm25Config::default();
    assert!((term_score(p, idf_dog, 1, 2, avgdl) - d2).abs() < 1e-15);
}

#[test]
fn t13_custom_bm25_parameters_are_used() {
    let mut cfg = FullTextIndexConfig::new(["body"]);
    cfg.bm25 = Bm25Config { k1: 0.0, b: 0.0 };
    let mut ix = FullTextIndex::new(cfg).unwrap();
    ix.upsert("x", &rec("body", "cat cat cat dog"));
    ix.upsert("y", &rec("body", "dog"));
    // k1 = 0: the score of a term is its idf, whatever tf.
    let r = search(&ix, "cat");
    assert!((r.hits[0].score - idf(2, 1)).abs() < 1e-15);
}

#[test]
fn t14_invalid_config_is_refused_by_new() {
    let mut cfg = FullTextIndexConfig::new(["body"]);
    cfg.bm25.b = 2.0;
    let err = FullTextIndex::new(cfg).unwrap_err();
    assert!(err.to_string().contains("bm25.b"), "{err}");
}

#[test]
fn t20_update_replaces_the_old_terms() {
    let mut ix = body_index();
    ix.upsert("k", &rec("body", "alpha words here"));
    ix.upsert("other", &rec("body", "alpha"));
    ix.upsert("k", &rec("body", "beta words"));
    assert_eq!(keys(&search(&ix, "alpha")), ["other"]);
    assert_eq!(keys(&search(&ix, "beta")), ["k"]);
    assert_eq!(ix.len(), 2);
    // Statistics reflect the new version only: "words" is in 1 doc of 2 and
    // the doc has length 2, exactly as in a fresh index.
    let mut fresh = body_index();
    fresh.upsert("other", &rec("body", "alpha"));
    fresh.upsert("k", &rec("body", "beta words"));
    assert_eq!(search(&ix, "words beta"), search(&fresh, "words beta"));
}

#[test]
fn t21_remove_takes_the_document_out() {
    let mut ix = body_index();
    ix.upsert("k", &rec("body", "alpha"));
    ix.upsert("j", &rec("body", "alpha beta"));
    assert!(ix.remove("k"));
    assert!(!ix.remove("k"), "second remove finds nothing");
    assert_eq!(keys(&search(&ix, "alpha")), ["j"]);
    assert_eq!(ix.len(), 1);
    ix.upsert("k", &rec("body", "alpha"));
    assert_eq!(keys(&search(&ix, "alpha")), ["k", "j"]);
}

#[test]
fn t22_documents_without_terms_are_not_indexed_and_do_not_count() {
    let mut ix = body_index();
    ix.upsert("a", &rec("body", "alpha beta"));
    let before = search(&ix, "alpha");
    ix.upsert("n", &rec("body", "the of and")); // stopwords only
    ix.upsert(
        "m",
        &Value::Map(vec![(Value::from("body"), Value::from(42))]),
    );
    ix.upsert("s", &Value::from("alpha")); // not a map
    ix.upsert("o", &rec("title", "alpha")); // field not configured
    assert_eq!(ix.len(), 1);
    assert_eq!(search(&ix, "alpha"), before, "N and avgdl unchanged");
    // An update to a term-less version removes the document.
    ix.upsert("a", &rec("body", "the"));
    assert!(ix.is_empty());
    assert!(search(&ix, "alpha").hits.is_empty());
}

#[test]
fn t30_boost_weights_each_field() {
    let mut ix = two_field_index();
    ix.upsert("t", &doc("rust guide", "cooking pasta"));
    ix.upsert("b", &doc("cooking pasta", "rust guide"));
    ix.upsert("z", &doc("other words", "more words"));
    // Unboosted the combined texts are alike: a tie, broken by key.
    let plain = search(&ix, "rust");
    assert_eq!(keys(&plain), ["b", "t"]);
    assert_eq!(plain.hits[0].score, plain.hits[1].score);
    let title_up = ix.search("rust", &boost(&[("title", 3.0)])).unwrap();
    assert_eq!(keys(&title_up), ["t", "b"]);
    let body_up = ix.search("rust", &boost(&[("body", 3.0)])).unwrap();
    assert_eq!(keys(&body_up), ["b", "t"]);
    // The boosted score is the weight times the field's own score.
    let unit = ix.search("rust", &boost(&[("title", 1.0)])).unwrap();
    let score = |r: &SearchResults, k: &str| r.hits.iter().find(|h| h.key == k).unwrap().score;
    assert!((score(&title_up, "t") - 3.0 * score(&unit, "t")).abs() < 1e-12);
    assert_eq!(score(&title_up, "b"), score(&unit, "b"));
}

#[test]
fn t31_boost_zero_drops_a_field_and_single_field_boost_scales() {
    let mut ix = two_field_index();
    ix.upsert("t", &doc("rust", "x"));
    ix.upsert("b", &doc("x", "rust"));
    let r = ix.search("rust", &boost(&[("body", 0.0)])).unwrap();
    assert_eq!(keys(&r), ["t"], "a hit needs a positive score");

    let mut one = body_index();
    one.upsert("a", &rec("body", "rust lang"));
    one.upsert("c", &rec("body", "go lang"));
    let base = search(&one, "rust").hits[0].score;
    let boosted = one.search("rust", &boost(&[("body", 2.5)])).unwrap();
    assert_eq!(boosted.hits[0].score, 2.5 * base);
}

#[test]
fn t32_bad_boosts_and_min_score_are_errors() {
    let ix = two_field_index();
    let e = ix.search("x", &boost(&[("nope", 1.0)])).unwrap_err();
    assert!(matches!(e, SearchError::UnknownBoostField { ref field, .. } if field == "nope"));
    assert!(e.to_string().contains("\"title\""), "{e}");
    for w in [-1.0, f64::NAN, f64::INFINITY] {
        let e = ix.search("x", &boost(&[("title", w)])).unwrap_err();
        assert!(matches!(e, SearchError::InvalidBoost { .. }), "{w}");
    }
    let nan = SearchOptions {
        min_score: Some(f64::NAN),
        ..SearchOptions::default()
    };
    assert_eq!(
        ix.search("x", &nan).unwrap_err(),
        SearchError::InvalidMinScore
    );
}

fn five_hits() -> FullTextIndex {
    let mut ix = body_index();
    for (k, text) in [
        ("a", "rust"),
        ("b", "rust rust web"),
        ("c", "rust web server"),
        ("d", "rust rust rust"),
        ("e", "rust web server async"),
        ("f", "python"),
    ] {
        ix.upsert(k, &rec("body", text));
    }
    ix
}

#[test]
fn t40_min_score_is_inclusive() {
    let ix = five_hits();
    let all = search(&ix, "rust");
    assert_eq!(all.total_count, 5);
    let second = all.hits[1].score;
    let at = SearchOptions {
        min_score: Some(second),
        ..SearchOptions::default()
    };
    let r = ix.search("rust", &at).unwrap();
    assert_eq!(keys(&r), keys(&all)[..2]);
    assert_eq!(r.total_count, 2);
    let above = SearchOptions {
        min_score: Some(second + 1e-9),
        ..SearchOptions::default()
    };
    assert_eq!(ix.search("rust", &above).unwrap().hits.len(), 1);
}

#[test]
fn t41_limit_keeps_the_best_and_counts_all() {
    let ix = five_hits();
    let all = search(&ix, "rust");
    let r = ix.search("rust", &SearchOptions::limit(2)).unwrap();
    assert_eq!(r.hits, all.hits[..2]);
    assert_eq!(r.total_count, 5);
    assert_eq!(ix.search("rust", &SearchOptions::limit(0)).unwrap(), all);
    assert_eq!(ix.search("rust", &SearchOptions::limit(99)).unwrap(), all);
    for n in 1..=5 {
        let r = ix.search("rust", &SearchOptions::limit(n)).unwrap();
        assert_eq!(r.hits, all.hits[..n], "limit {n}");
    }
}

#[test]
fn t42_results_are_sorted_by_score_then_key_and_deterministic() {
    let mut ix = body_index();
    for k in ["m", "c", "x", "a"] {
        ix.upsert(k, &rec("body", "same text here"));
    }
    ix.upsert("top", &rec("body", "text text"));
    let r = search(&ix, "text");
    assert_eq!(keys(&r), ["top", "a", "c", "m", "x"]);
    for _ in 0..3 {
        assert_eq!(search(&ix, "text"), r);
    }
    let r2 = ix.search("text", &SearchOptions::limit(3)).unwrap();
    assert_eq!(keys(&r2), ["top", "a", "c"]);
}

#[test]
fn t43_empty_stopword_and_unknown_queries_have_no_hits() {
    let ix = five_hits();
    for q in ["", "   ", "the and of", "unknownword", "!!!"] {
        let r = search(&ix, q);
        assert!(r.hits.is_empty() && r.total_count == 0, "{q:?}");
    }
}

#[test]
fn t44_repeated_query_terms_count_again() {
    let ix = five_hits();
    let once = search(&ix, "web");
    let twice = search(&ix, "web web");
    for (a, b) in once.hits.iter().zip(&twice.hits) {
        assert_eq!(b.score, 2.0 * a.score);
        assert_eq!(b.matched_terms, ["web"]);
    }
}

#[test]
fn t45_matched_terms_are_stemmed_distinct_and_in_query_order() {
    let mut ix = body_index();
    ix.upsert("a", &rec("body", "Running async servers in rust"));
    let r = search(&ix, "rust runs cooking async rust");
    assert_eq!(r.hits[0].matched_terms, ["rust", "run", "async"]);
}

#[test]
fn t50_unicode_text_is_searchable_case_insensitively() {
    let mut cfg = FullTextIndexConfig::new(["body"]);
    cfg.tokenizer = TokenizerConfig {
        stopwords: Stopwords::Named(StopwordList::None),
        ..TokenizerConfig::default()
    };
    let mut ix = FullTextIndex::new(cfg).unwrap();
    ix.upsert("ru", &rec("body", "Привет, мир! Добро пожаловать"));
    ix.upsert("jp", &rec("body", "東京タワー・スカイツリー"));
    ix.upsert("de", &rec("body", "Straße und Größe"));
    assert_eq!(keys(&search(&ix, "ПРИВЕТ")), ["ru"]);
    assert_eq!(keys(&search(&ix, "スカイツリー")), ["jp"]);
    assert_eq!(keys(&search(&ix, "GRÖSSE größe")), ["de"]);
}

#[test]
fn t51_dotted_paths_reach_nested_fields_and_exact_keys_win() {
    let cfg = FullTextIndexConfig::new(["author.name", "a.b"]);
    let mut ix = FullTextIndex::new(cfg).unwrap();
    let nested = Value::Map(vec![(
        Value::from("author"),
        Value::Map(vec![(Value::from("name"), Value::from("Ada Lovelace"))]),
    )]);
    ix.upsert("n", &nested);
    let both = Value::Map(vec![
        (Value::from("a.b"), Value::from("literal")),
        (
            Value::from("a"),
            Value::Map(vec![(Value::from("b"), Value::from("nested"))]),
        ),
    ]);
    ix.upsert("x", &both);
    assert_eq!(keys(&search(&ix, "lovelace")), ["n"]);
    assert_eq!(keys(&search(&ix, "literal")), ["x"]);
    assert!(search(&ix, "nested").hits.is_empty());
}

#[test]
fn t60_score_document_matches_search_exactly() {
    let mut ix = two_field_index();
    ix.upsert("a", &doc("rust web", "servers in rust"));
    ix.upsert("b", &doc("cooking", "rust pans"));
    ix.upsert("c", &doc("cooking", "pasta"));
    for opts in [SearchOptions::default(), boost(&[("title", 2.0)])] {
        let r = ix.search("rust server", &opts).unwrap();
        for h in &r.hits {
            let one = ix.score_document(&h.key, "rust server", &opts).unwrap();
            assert_eq!(one.as_ref(), Some(h));
        }
        assert_eq!(ix.score_document("c", "rust server", &opts).unwrap(), None);
        assert_eq!(ix.score_document("zz", "rust", &opts).unwrap(), None);
    }
    let high = SearchOptions {
        min_score: Some(1e9),
        ..SearchOptions::default()
    };
    assert_eq!(ix.score_document("a", "rust", &high).unwrap(), None);
}

#[test]
fn t61_raw_values_are_decoded_and_bad_bytes_remove_the_old_version() {
    let mut ix = body_index();
    let raw = RawValue::encode(&serde_json::json!({"body": "alpha beta"})).unwrap();
    ix.upsert_raw("k", &raw).unwrap();
    assert_eq!(keys(&search(&ix, "alpha")), ["k"]);
    let bad = RawValue::from_msgpack(vec![0x92, 0x01]); // array of 2, one item: truncated
    assert!(ix.upsert_raw("k", &bad).is_err());
    assert!(!ix.contains("k"));
}

#[test]
fn t70_term_dictionary_and_stats_shrink_back_to_empty() {
    let mut ix = two_field_index();
    for i in 0..50 {
        ix.upsert(
            &format!("k{i}"),
            &doc(&format!("title{i} shared"), "body words"),
        );
    }
    assert_eq!(ix.stats().documents, 50);
    assert_eq!(ix.stats().terms, 50 + 3);
    for i in 0..50 {
        ix.upsert(&format!("k{i}"), &doc("replaced", "text"));
    }
    assert_eq!(ix.stats().terms, 2);
    for i in 0..50 {
        ix.remove(&format!("k{i}"));
    }
    let s = ix.stats();
    assert_eq!((s.documents, s.terms, s.avg_doc_len), (0, 0, 0.0));
    ix.upsert("again", &doc("fresh", "start"));
    assert_eq!(keys(&search(&ix, "fresh")), ["again"]);
    ix.clear();
    assert!(ix.is_empty() && search(&ix, "fresh").hits.is_empty());
}

#[test]
fn t90_tombstone_removes_the_document() {
    // Legacy quirk: `onSet(id, null)` cleared the token cache but left the
    // document in the index, so deleted records kept turning up.
    let mut ix = body_index();
    ix.upsert("k", &rec("body", "alpha"));
    ix.upsert("k", &Value::Nil);
    assert!(search(&ix, "alpha").hits.is_empty());
    assert!(!ix.contains("k"));
    assert!(ix.is_empty());
}
