//! `POST /sync`: the request and response bodies of HTTP sync, for clients
//! that cannot hold a WebSocket (TopGun's `HttpSyncProvider`).
//!
//! The body is one msgpack map (not a tagged message: it has no `type`).
//! [`decode_http_sync`] applies the same pre-decode limits as a WebSocket
//! frame (size, nesting, lying lengths; see `crate::protocol::scan`), then
//! decodes the typed request. How the node answers each part is
//! `crate::server::http_sync`.

use hangar_core::Timestamp;
use serde::{Deserialize, Serialize};

use super::query::{QueryResultEntry, SearchOptions, SearchResult};
use super::records::WireLwwRecord;
use super::write::{ClientOp, OpResult};
use crate::protocol::error::FrameError;
use crate::protocol::{de, num, scan};

/// The request body of `POST /sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSyncRequest {
    /// The client's id (informational).
    pub client_id: String,
    /// The client's clock (informational; the node's clock is not moved).
    #[serde(with = "num::timestamp")]
    pub client_hlc: Timestamp,
    /// Writes, applied like one `OP_BATCH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<ClientOp>>,
    /// Maps whose changes since a timestamp the client wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_maps: Option<Vec<SyncMapRequest>>,
    /// One-shot queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<Vec<HttpQuery>>,
    /// One-shot full-text searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searches: Option<Vec<HttpSearch>>,
}

/// One entry of `syncMaps`: the map, and the last timestamp the client has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncMapRequest {
    /// The map.
    pub map_name: String,
    /// Records stamped strictly after this are returned.
    #[serde(with = "num::timestamp")]
    pub last_sync_timestamp: Timestamp,
}

/// One entry of `queries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpQuery {
    /// Echoed in the answer.
    pub query_id: String,
    /// The map queried.
    pub map_name: String,
    /// A map is an equality filter on top-level fields (the query's
    /// `where`); nil or absent matches every record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<rmpv::Value>,
    /// Most rows returned.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<u32>,
    /// Rows skipped first (ignored when `cursor` is given).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub offset: Option<u32>,
    /// A previous answer's `nextCursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Group the matching records by these fields (as `QUERY_SUB`'s
    /// `query.groupBy`): the results are then the group rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<rmpv::Value>,
    /// Aggregations per group (as `QUERY_SUB`'s `query.aggregations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregations: Option<rmpv::Value>,
}

/// One entry of `searches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSearch {
    /// Echoed in the answer.
    pub search_id: String,
    /// The map searched (it must have full-text search configured).
    pub map_name: String,
    /// The query text.
    pub query: String,
    /// `{limit?, minScore?, boost?}`, as `SEARCH` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SearchOptions>,
}

/// The response body of `POST /sync` (HTTP 200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSyncResponse {
    /// The node's clock when it answered.
    #[serde(with = "num::timestamp")]
    pub server_hlc: Timestamp,
    /// The writes' acknowledgement (see `crate::server::http_sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<HttpAck>,
    /// One entry per `syncMaps` entry that could be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deltas: Option<Vec<MapDelta>>,
    /// One entry per query that could be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_results: Option<Vec<HttpQueryResult>>,
    /// One entry per search that could be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_results: Option<Vec<HttpSearchResult>>,
    /// What failed, one entry per failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<HttpSyncError>>,
}

/// `ack`: like `OP_ACK`, cumulative up to `lastId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAck {
    /// Id of the last op acknowledged.
    pub last_id: String,
    /// One outcome per op, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<OpResult>>,
}

/// The changes of one map since the asked timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapDelta {
    /// The map.
    pub map_name: String,
    /// Changed records, oldest first.
    pub records: Vec<DeltaRecord>,
    /// What the client sends as `lastSyncTimestamp` next time.
    #[serde(with = "num::timestamp")]
    pub server_sync_timestamp: Timestamp,
}

/// One changed record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaRecord {
    /// The key.
    pub key: String,
    /// Its record (`value: null` for a removal).
    pub record: WireLwwRecord,
    /// `PUT` or `REMOVE`.
    pub event_type: String,
}

/// One query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpQueryResult {
    /// The query's id.
    pub query_id: String,
    /// `{key, value}` rows, ordered by key.
    pub results: Vec<QueryResultEntry>,
    /// True when rows follow this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
    /// Where the next page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One search's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSearchResult {
    /// The search's id.
    pub search_id: String,
    /// Hits, best first.
    pub results: Vec<SearchResult>,
    /// Number of hits returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u32>,
}

/// One failure: a status code, what was wrong, and which part of the
/// request it concerns (an op, query or search id, or a map name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSyncError {
    /// HTTP-style status code.
    pub code: u32,
    /// What was wrong.
    pub message: String,
    /// The op id, query id, search id or map name concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Decodes a `POST /sync` body under the frame limits. An empty body is
/// `Ok(None)` (an empty request).
///
/// # Errors
/// [`FrameError::TooLarge`] over 2 MiB, [`FrameError::TooDeep`] past the
/// nesting limit, any other scan error, or [`FrameError::Invalid`] naming
/// the field that did not fit (`msg_type` is `HTTP_SYNC_REQUEST`).
pub fn decode_http_sync(body: &[u8]) -> Result<Option<HttpSyncRequest>, FrameError> {
    if body.is_empty() {
        return Ok(None);
    }
    scan::check_frame(body)?;
    de::from_slice(body)
        .map(Some)
        .map_err(|e| FrameError::Invalid {
            msg_type: "HTTP_SYNC_REQUEST",
            reason: e.0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = include_bytes!("../../../tests/fixtures/wire/HTTP_SYNC_REQUEST.msgpack");
    const RESPONSE: &[u8] =
        include_bytes!("../../../tests/fixtures/wire/HTTP_SYNC_RESPONSE.msgpack");

    fn keys(v: &rmpv::Value) -> Vec<String> {
        let mut k: Vec<String> = v
            .as_map()
            .expect("a map")
            .iter()
            .map(|(k, _)| k.as_str().expect("string key").to_owned())
            .collect();
        k.sort();
        k
    }

    fn value(bytes: &[u8]) -> rmpv::Value {
        rmpv::decode::read_value(&mut &bytes[..]).expect("msgpack")
    }

    #[test]
    fn t10_the_client_request_fixture_decodes_and_round_trips() {
        let req = decode_http_sync(REQUEST).unwrap().expect("a request");
        assert_eq!(req.client_id, "client-1");
        assert_eq!(
            req.client_hlc,
            Timestamp::new(1_700_000_000_000, 1, "node-1")
        );
        let ops = req.operations.as_ref().expect("operations");
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].id.as_deref(), Some("op-1"));
        assert_eq!(
            (ops[0].map_name.as_str(), ops[0].key.as_str()),
            ("users", "user-1")
        );
        let sync = req.sync_maps.as_ref().expect("syncMaps");
        assert_eq!(sync[0].map_name, "users");
        assert_eq!(sync[0].last_sync_timestamp.millis, 1_700_000_000_000);
        assert!(req.queries.is_none() && req.searches.is_none());
        let again = rmp_serde::to_vec_named(&req).unwrap();
        assert_eq!(decode_http_sync(&again).unwrap(), Some(req));
        assert_eq!(keys(&value(&again)), keys(&value(REQUEST)));
    }

    #[test]
    fn t11_the_response_fixture_decodes_and_our_encoding_has_its_shape() {
        let resp: HttpSyncResponse = de::from_slice(RESPONSE).unwrap();
        assert_eq!(resp.ack.as_ref().unwrap().last_id, "op-1");
        let d = &resp.deltas.as_ref().unwrap()[0];
        assert_eq!(d.map_name, "users");
        assert_eq!(d.records[0].event_type, "PUT");
        assert_eq!(d.records[0].key, "user-1");
        let ours = value(&rmp_serde::to_vec_named(&resp).unwrap());
        let theirs = value(RESPONSE);
        assert_eq!(keys(&ours), keys(&theirs));
        let delta = |v: &rmpv::Value| {
            let deltas = v
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_str() == Some("deltas"))
                .unwrap()
                .1
                .clone();
            deltas.as_array().unwrap()[0].clone()
        };
        assert_eq!(keys(&delta(&ours)), keys(&delta(&theirs)));
        let again: HttpSyncResponse =
            de::from_slice(&rmp_serde::to_vec_named(&resp).unwrap()).unwrap();
        assert_eq!(again, resp);
    }

    #[test]
    fn t12_limits_and_bad_bodies_are_refused_with_what_was_wrong() {
        assert_eq!(
            decode_http_sync(b"").unwrap(),
            None,
            "empty body: empty request"
        );
        let mut deep = vec![0x81, 0xa1, b'x'];
        deep.extend(std::iter::repeat_n(0x91, 300));
        deep.push(0xc0);
        assert!(matches!(
            decode_http_sync(&deep),
            Err(FrameError::TooDeep { .. })
        ));
        let big = vec![0u8; scan::MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode_http_sync(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(decode_http_sync(&[0xc1]).is_err(), "reserved marker");
        assert!(decode_http_sync(b"\x93\x01").is_err(), "truncated array");
        let wrong = rmp_serde::to_vec_named(&serde_json::json!({
            "clientId": 5,
            "clientHlc": {"millis": 1, "counter": 0, "nodeId": "n"}
        }))
        .unwrap();
        let e = decode_http_sync(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("HTTP_SYNC_REQUEST") && e.contains("string"),
            "{e}"
        );
        let missing = rmp_serde::to_vec_named(&serde_json::json!({"clientId": "c"})).unwrap();
        let e = decode_http_sync(&missing).unwrap_err().to_string();
        assert!(e.contains("clientHlc"), "{e}");
    }
}
