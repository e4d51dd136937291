//! What a search asks for and what it returns.
//!
//! [`SearchOptions`] deserializes from the `options` object of the client's
//! `SEARCH` / `SEARCH_SUB` frames (`{limit, minScore, boost}`); unknown keys
//! (the legacy client also sends `fields`, which the legacy server ignored)
//! are ignored. [`SearchMatch`] carries what a `SEARCH_RESP` result needs
//! besides the value, which the caller reads from the map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Options of one search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SearchOptions {
    /// Return at most this many hits; `None` or `0` means no limit (the
    /// legacy rule: a limit applies only when it is positive).
    pub limit: Option<usize>,
    /// Drop hits scoring below this (inclusive: a hit scoring exactly
    /// `min_score` is kept). MUST NOT be NaN.
    pub min_score: Option<f64>,
    /// Per-field weights. When present, each configured field is scored on
    /// its own statistics and weighted by its entry (1 when absent), and the
    /// weighted scores are summed; when absent, all fields are scored as one
    /// text. Keys MUST be configured fields; weights MUST be finite and >= 0.
    pub boost: Option<BTreeMap<String, f64>>,
}

impl SearchOptions {
    /// Options with only a limit.
    #[must_use]
    pub fn limit(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }
}

/// One matching document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMatch {
    /// The record's key in the map.
    pub key: String,
    /// BM25 score, always `> 0`.
    pub score: f64,
    /// The distinct query terms (after tokenizing and stemming) that occur
    /// in the document's indexed fields, in query order.
    pub matched_terms: Vec<String>,
}

/// The answer to one search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    /// Hits by score descending, then key ascending (byte order); at most
    /// `limit` of them.
    pub hits: Vec<SearchMatch>,
    /// Number of hits that passed `min_score`, before `limit` was applied
    /// (the `totalCount` of `SEARCH_RESP`).
    pub total_count: usize,
}

/// Why a search was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// `boost` named a field the index does not cover.
    #[error("search boost names field {field:?}, which is not indexed; indexed fields: {known:?}")]
    UnknownBoostField {
        /// The field named in `boost`.
        field: String,
        /// The configured fields.
        known: Vec<String>,
    },
    /// A boost weight was negative or not finite.
    #[error("search boost for field {field:?} is {weight}; expected a finite number >= 0")]
    InvalidBoost {
        /// The field.
        field: String,
        /// The rejected weight.
        weight: f64,
    },
    /// `min_score` was NaN.
    #[error("search minScore is NaN; expected a number")]
    InvalidMinScore,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_options_parse_from_the_wire_shape() {
        let o: SearchOptions =
            serde_json::from_str(r#"{"limit":10,"minScore":0.5,"fields":["x"]}"#).unwrap();
        assert_eq!(o.limit, Some(10));
        assert_eq!(o.min_score, Some(0.5));
        assert_eq!(o.boost, None);
        let b: SearchOptions = serde_json::from_str(r#"{"boost":{"title":2}}"#).unwrap();
        assert_eq!(b.boost.unwrap()["title"], 2.0);
    }

    #[test]
    fn t11_hit_serializes_with_wire_names() {
        let h = SearchMatch {
            key: "article-1".into(),
            score: 0.95,
            matched_terms: vec!["rust".into()],
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["matchedTerms"][0], "rust");
        let r = SearchResults {
            hits: vec![h],
            total_count: 42,
        };
        assert_eq!(serde_json::to_value(&r).unwrap()["totalCount"], 42);
    }
}
