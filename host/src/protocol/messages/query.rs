//! Live queries and full-text search: `QUERY_SUB`, `QUERY_RESP`,
//! `QUERY_UNSUB`, `SEARCH`, `SEARCH_RESP`.
//!
//! The query object stays an [`rmpv::Value`]: the query engine owns its
//! schema (`where`, `predicate`, `sort`, `limit`, `cursor`, `groupBy`,
//! `aggregations`, ...) and must look inside it anyway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::num;
use crate::protocol::raw::RawMsgpack;

/// `QUERY_SUB` payload (C→S): subscribe to a live query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySub {
    /// Client-chosen subscription id.
    pub query_id: String,
    /// The map queried.
    pub map_name: String,
    /// The query object, uninterpreted.
    pub query: rmpv::Value,
    /// Projection: only these fields of each value are wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Read consistency (`EVENTUAL`, `QUORUM`, `STRONG`); absent takes the
    /// map's configured one, else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `QUERY_UNSUB` payload (C→S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryUnsub {
    /// The subscription to drop.
    pub query_id: String,
}

/// `QUERY_SYNC_INIT` payload (C→S): the client's root hash of a projected
/// query's results, sent when it subscribes again. Accepted and ignored:
/// every `QUERY_SUB` is answered with its full first page anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySyncInit {
    /// The subscription.
    pub query_id: String,
    /// The client's root hash (0 for none; may arrive as float64).
    #[serde(default, deserialize_with = "crate::protocol::num::de_u32")]
    pub root_hash: u32,
}

/// One row of a query snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResultEntry {
    /// The key.
    pub key: String,
    /// Its value (or an aggregate row).
    pub value: RawMsgpack,
}

/// State of a pagination cursor: core's type, which serializes as the
/// wire's `none` / `valid` / `invalid` / `expired`.
pub use hangar_core::module::storage_types::CursorStatus;

/// `QUERY_RESP` payload (S→C): the initial snapshot of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResp {
    /// The subscription.
    pub query_id: String,
    /// Matching rows.
    pub results: Vec<QueryResultEntry>,
    /// Cursor for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Whether more rows exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
    /// What became of the request's cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_status: Option<CursorStatus>,
    /// Merkle root of the map, for follow-up sync.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub merkle_root_hash: Option<u32>,
    /// Why the query failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Status code of a failure.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<u32>,
}

/// Options of a full-text search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchOptions {
    /// Most hits to return.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<u32>,
    /// Lowest score to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    /// Per-field score multipliers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boost: Option<BTreeMap<String, f64>>,
}

/// `SEARCH` payload (C→S): a one-shot BM25 search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Search {
    /// Correlates the `SEARCH_RESP`.
    pub request_id: String,
    /// The map searched.
    pub map_name: String,
    /// The query text.
    pub query: String,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SearchOptions>,
    /// Read consistency (`EVENTUAL`, `QUORUM`, `STRONG`); absent takes the
    /// map's configured one, else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResult {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: RawMsgpack,
    /// Relevance.
    pub score: f64,
    /// Query terms found in the value.
    pub matched_terms: Vec<String>,
}

/// `SEARCH_RESP` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResp {
    /// The `SEARCH`'s request id.
    pub request_id: String,
    /// Hits, best first.
    pub results: Vec<SearchResult>,
    /// Total matches (may exceed `results.len()`).
    #[serde(deserialize_with = "num::de_u32")]
    pub total_count: u32,
    /// Why the search failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `SEARCH_SUB` payload (C→S): a live full-text search. Answered with a
/// `SEARCH_RESP` whose `requestId` is the `subscriptionId`, then
/// `SEARCH_UPDATE`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSub {
    /// Client-chosen id; the same id again replaces the older search.
    pub subscription_id: String,
    /// The map searched.
    pub map_name: String,
    /// The query text.
    pub query: String,
    /// Options (`limit` bounds the live top results too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SearchOptions>,
    /// Read consistency, as for `SEARCH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `SEARCH_UNSUB` payload (C→S): ends a live search. No answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchUnsub {
    /// The live search to end.
    pub subscription_id: String,
}

/// `SEARCH_UPDATE` payload (S→C): a document entered the top results
/// (`ENTER`), changed score or matched terms there (`UPDATE`), or left them
/// (`LEAVE`, score 0, nil value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchUpdatePayload {
    /// The `SEARCH_SUB`'s id.
    pub subscription_id: String,
    /// The document's key.
    pub key: String,
    /// Its value (nil on `LEAVE`).
    pub value: RawMsgpack,
    /// Its score (0 on `LEAVE`).
    pub score: f64,
    /// Query terms found in it.
    pub matched_terms: Vec<String>,
    /// `ENTER`, `UPDATE` or `LEAVE`.
    pub change_type: String,
}
