//! `POST /sync`: HTTP sync for clients that cannot hold a WebSocket
//! (TopGun's `HttpSyncProvider`). One msgpack request body in, one msgpack
//! response body out (`Content-Type: application/msgpack`); the types are
//! `crate::protocol::messages::http_sync`.
//!
//! # Limits and refusals (before anything is served)
//!
//! | Status | When | Body |
//! |---|---|---|
//! | 401 | auth is on and the `Authorization: Bearer <JWT>` header is missing or its token is refused | JSON `{code, message}` |
//! | 413 | the body is over 2 MiB (`MAX_FRAME_BYTES`, the WebSocket frame cap) | JSON |
//! | 400 | nesting deeper than `MAX_DEPTH`, malformed msgpack, a missing field or a wrong type | JSON, the message says what and where |
//! | 429 | the client's address is over its rate limit (`FrontEnd::http_buckets`: charged the number of `operations`, at least 1), or the node is at its in-flight cap (`network.max_in_flight`) | JSON |
//! | 503 | the node is shutting down | JSON |
//! | 408 | serving took longer than [`SYNC_TIMEOUT`] | JSON |
//!
//! An empty body is an empty request (answered with `serverHlc` alone).
//!
//! # What each part of the request gets
//!
//! - `operations`: converted and applied exactly like an `OP_BATCH`
//!   (`handlers::writes::convert`, then `write_path::prepare` /
//!   `Pending::finish`: routed to the owner of each key's partition, applied
//!   or forwarded, replicated), then acknowledged as `ack {lastId, results}`
//!   with one result per op. When every op succeeded `lastId` is the last
//!   op's id; otherwise it is the id of the last op before the first
//!   failure (the client marks ops synced cumulatively up to `lastId`), and
//!   `ack` is left out when the first op failed. Each failed op also adds
//!   `errors {code, message, context: opId}`.
//! - `queries`: each runs once through `ClusterModule::query` (every
//!   partition of the cluster), with `filter` as the query's `where`
//!   (equality on top-level fields), rows ordered by key. `cursor` resumes
//!   after a previous page; otherwise `offset` rows are skipped. Rows are
//!   `{key, value}`, as in `QUERY_RESP`. A cursor the node cannot use is an
//!   `errors` entry (400, context: the query id), not a silent restart.
//! - `searches`: each runs once through `ClusterModule::search`.
//! - `syncMaps`: `deltas`, the LWW records of the map stamped strictly
//!   after `lastSyncTimestamp` (see [`map_changes`] for how they are found
//!   and what the bounds are).
//!
//! Failures of a query, search or delta are `errors` entries naming it in
//! `context`; the other parts are still answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, Tuple2};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{StreamExt, TryStreamExt};
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::{
    CursorStatus, MerkleNode, MerkleRequest, Origin, QueryRequest, RecordState, SearchRequest,
};
use hangar_core::{LwwRecord, MapKind, ModuleError, RawValue, Timestamp};
use serde_json::json;

use super::handlers::{convert, status_of, Converted};
use super::state::FrontEnd;
use super::write_path;
use crate::protocol::messages::{
    decode_http_sync, DeltaRecord, HttpAck, HttpQuery, HttpQueryResult, HttpSearch,
    HttpSearchResult, HttpSyncError, HttpSyncRequest, HttpSyncResponse, MapDelta, OpResult,
    QueryResultEntry, SearchResult, SyncMapRequest, WireLwwRecord,
};
use crate::protocol::{FrameError, RawMsgpack, MAX_FRAME_BYTES};

/// Longest a `POST /sync` may take to serve (answered 408 past it).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Most records one delta carries. Past it the delta is cut between two
/// timestamps and `serverSyncTimestamp` is the last one returned, so the
/// client's next request continues from there.
pub const MAX_DELTA_RECORDS: usize = 10_000;

/// How far before the node's clock an uncut delta's `serverSyncTimestamp`
/// is set: writes stamped just before the read that were still in flight
/// while the tree was walked are sent again next time (merging a record the
/// client has changes nothing) rather than missed.
pub const DELTA_OVERLAP_MS: u64 = 5_000;

/// How long the default storage module keeps LWW tombstones
/// (`TOMBSTONE_MAX_AGE_MS` in `plugins/storage/src/module/gc.rs`). A client
/// whose `lastSyncTimestamp` is older may miss removals and is told so.
pub const TOMBSTONE_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Merkle nodes read at once while walking a map's tree.
const WALK_CONCURRENCY: usize = 8;

/// The depth of the Merkle trees (`hangar_core::merkle::MERKLE_DEPTH`):
/// a path this long names a leaf.
const LEAF_DEPTH: usize = hangar_core::merkle::MERKLE_DEPTH;

fn refusal(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(json!({"code": code.as_u16(), "message": message.into()})),
    )
        .into_response()
}

/// `POST /sync`.
pub async fn sync(
    State(fe): State<Arc<FrontEnd>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &fe.node.metrics;
    metrics.counter("hangar_http_sync_requests_total", &[], 1.0);
    if fe.is_shutting_down() {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down");
    }
    if let Some(v) = &fe.verifier {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "undefined");
        let Some(token) = token else {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "authentication required: send the header `Authorization: Bearer <JWT>`",
            );
        };
        if let Err(e) = v.verify(token) {
            return refusal(
                StatusCode::UNAUTHORIZED,
                format!("authentication failed: {e}"),
            );
        }
    }
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = match decode_http_sync(&bytes) {
        Ok(r) => r,
        Err(e @ FrameError::TooLarge { .. }) => {
            return refusal(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                format!("invalid MsgPack body: {e}"),
            )
        }
    };
    let cost = req
        .as_ref()
        .and_then(|r| r.operations.as_ref())
        .map_or(1, |o| o.len().max(1));
    if let Some(Extension(ConnectInfo(peer))) = peer {
        let (rate, burst) = (fe.net.rate_limit_per_sec, fe.net.rate_limit_burst);
        if !fe.http_buckets.charge(peer.ip(), cost, rate, burst) {
            metrics.counter("hangar_http_sync_rate_limited_total", &[], 1.0);
            return refusal(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit exceeded: a request of {cost} operations refused (limit {rate} per second, burst {burst}, per client address)"
                ),
            );
        }
    }
    let Some(_permit) = fe.in_flight.try_acquire() else {
        metrics.counter("hangar_ws_overload_shed_total", &[], 1.0);
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "server overloaded: {} requests in flight; retry later",
                fe.net.max_in_flight
            ),
        );
    };
    let resp = match tokio::time::timeout(SYNC_TIMEOUT, serve(&fe, req)).await {
        Ok(r) => r,
        Err(_) => {
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} s to serve",
                    SYNC_TIMEOUT.as_secs()
                ),
            )
        }
    };
    match rmp_serde::to_vec_named(&resp) {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/msgpack")],
            b,
        )
            .into_response(),
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        ),
    }
}

/// Reads the body, refusing (413) as soon as it passes `MAX_FRAME_BYTES`
/// (a declared `Content-Length` over it is refused before reading).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let too_large = |len: String| {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > MAX_FRAME_BYTES as u64 {
            return Err(too_large(n.to_string()));
        }
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )
    })? {
        if out.len() + chunk.len() > MAX_FRAME_BYTES {
            return Err(too_large(format!("more than {}", out.len() + chunk.len())));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Serves a decoded request (`None`: an empty body).
async fn serve(fe: &Arc<FrontEnd>, req: Option<HttpSyncRequest>) -> HttpSyncResponse {
    let mut resp = HttpSyncResponse {
        server_hlc: fe.node.clock.now(),
        ack: None,
        deltas: None,
        query_results: None,
        search_results: None,
        errors: None,
    };
    let Some(req) = req else { return resp };
    let mut errors = Vec::new();
    if let Some(ops) = req.operations.filter(|o| !o.is_empty()) {
        resp.ack = write(fe, ops, &mut errors).await;
    }
    if let Some(maps) = req.sync_maps {
        let mut deltas = Vec::with_capacity(maps.len());
        for m in maps {
            match delta(fe, &m, &mut errors).await {
                Ok(d) => deltas.push(d),
                Err(e) => errors.push(HttpSyncError {
                    code: status_of(&e),
                    message: format!(
                        "changes of map {:?} cannot be read: {}",
                        m.map_name, e.message
                    ),
                    context: Some(m.map_name),
                }),
            }
        }
        resp.deltas = Some(deltas);
    }
    if let Some(queries) = req.queries {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let id = q.query_id.clone();
            match query(fe, q).await {
                Ok(r) => out.push(r),
                Err((code, message)) => errors.push(HttpSyncError {
                    code,
                    message,
                    context: Some(id),
                }),
            }
        }
        resp.query_results = Some(out);
    }
    if let Some(searches) = req.searches {
        let mut out = Vec::with_capacity(searches.len());
        for s in searches {
            let id = s.search_id.clone();
            match search(fe, s).await {
                Ok(r) => out.push(r),
                Err(e) => errors.push(HttpSyncError {
                    code: status_of(&e),
                    message: format!("search failed: {}", e.message),
                    context: Some(id),
                }),
            }
        }
        resp.search_results = Some(out);
    }
    if !errors.is_empty() {
        fe.node
            .metrics
            .counter("hangar_http_sync_errors_total", &[], errors.len() as f64);
        resp.errors = Some(errors);
    }
    resp.server_hlc = fe.node.clock.now();
    resp
}

/// Applies `ops` through the write pipeline and builds the `ack` (see the
/// module docs); failed ops go to `errors`.
async fn write(
    fe: &Arc<FrontEnd>,
    ops: Vec<crate::protocol::messages::ClientOp>,
    errors: &mut Vec<HttpSyncError>,
) -> Option<HttpAck> {
    let node = &fe.node;
    let Converted {
        ids,
        incoming,
        consistency,
        last_id,
    } = convert(node, ops, None, None, None);
    let origin = Origin::client(fe.next_connection_id(), &node.config.node_id);
    let pending = write_path::prepare(node, incoming, &origin, consistency).await;
    let unchanged = pending.unchanged.clone();
    let codes: Vec<Option<u32>> = pending
        .routes
        .iter()
        .map(|r| match r {
            write_path::Route::Refused { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    let acks = pending.finish(node).await;
    let results: Vec<OpResult> = ids
        .into_iter()
        .zip(acks)
        .zip(unchanged)
        .map(|((id, a), unchanged)| OpResult {
            op_id: id,
            success: a.success,
            achieved_level: a.achieved,
            error: a.error.map(|e| e.into_string()).into_option(),
            unchanged: unchanged && a.success,
        })
        .collect();
    let first_failure = results.iter().position(|r| !r.success);
    for (i, r) in results.iter().enumerate().filter(|(_, r)| !r.success) {
        errors.push(HttpSyncError {
            code: codes[i].unwrap_or(500),
            message: r
                .error
                .clone()
                .unwrap_or_else(|| "the write failed".to_string()),
            context: Some(if r.op_id.is_empty() {
                format!("operations[{i}]")
            } else {
                r.op_id.clone()
            }),
        });
    }
    let last_id = match first_failure {
        None => last_id,
        Some(0) => return None,
        Some(i) => {
            let id = results[i - 1].op_id.clone();
            if id.is_empty() {
                return None;
            }
            id
        }
    };
    Some(HttpAck {
        last_id,
        results: Some(results),
    })
}

/// One `syncMaps` entry: the map's changes after its timestamp.
async fn delta(
    fe: &FrontEnd,
    m: &SyncMapRequest,
    errors: &mut Vec<HttpSyncError>,
) -> Result<MapDelta, ModuleError> {
    let start = fe.node.clock.now();
    let since = &m.last_sync_timestamp;
    let now_ms = fe.node.clock.wall_millis();
    if since.millis > 0 && since.millis < now_ms.saturating_sub(TOMBSTONE_RETENTION_MS) {
        errors.push(HttpSyncError {
            code: 410,
            message: format!(
                "lastSyncTimestamp of map {:?} is older than the {}-day tombstone retention: removals made since may be missing; sync the whole map again (lastSyncTimestamp 0)",
                m.map_name,
                TOMBSTONE_RETENTION_MS / 86_400_000
            ),
            context: Some(m.map_name.clone()),
        });
    }
    let mut changed = map_changes(fe, &m.map_name, since).await?;
    changed.sort_by(|a, b| a.1.timestamp.cmp(&b.1.timestamp).then(a.0.cmp(&b.0)));
    let cut = cut_point(&changed, MAX_DELTA_RECORDS);
    let server_sync_timestamp = if cut < changed.len() {
        changed[cut - 1].1.timestamp.clone()
    } else {
        let overlap = Timestamp::new(
            start.millis.saturating_sub(DELTA_OVERLAP_MS),
            0,
            start.node_id.clone(),
        );
        // Never behind what the client already has.
        if overlap > *since {
            overlap
        } else {
            since.clone()
        }
    };
    changed.truncate(cut);
    Ok(MapDelta {
        map_name: m.map_name.clone(),
        records: changed
            .into_iter()
            .map(|(key, rec)| DeltaRecord {
                event_type: if rec.is_tombstone() { "REMOVE" } else { "PUT" }.to_string(),
                key,
                record: WireLwwRecord::from(rec),
            })
            .collect(),
        server_sync_timestamp,
    })
}

/// Where to cut records sorted by timestamp so that at most `max` are kept
/// and no two records with the same timestamp are split (the next request
/// resumes strictly after the last kept one). Keeps everything when the
/// records up to `max` all share one timestamp, rather than none.
fn cut_point(sorted: &[(String, LwwRecord)], max: usize) -> usize {
    if sorted.len() <= max {
        return sorted.len();
    }
    let mut cut = max;
    while cut > 0 && sorted[cut].1.timestamp == sorted[cut - 1].1.timestamp {
        cut -= 1;
    }
    if cut == 0 {
        sorted.len()
    } else {
        cut
    }
}

/// The LWW records (tombstones included) of `map` stamped strictly after
/// `since`, over every partition of the cluster.
///
/// # How
///
/// The node keeps no per-map change log, and the only reads the host has
/// over every partition are `ClusterModule::query` (live values only: no
/// tombstones, so no REMOVE events) and `ClusterModule::merkle_node`, whose
/// leaves carry every LWW record, tombstones included (the same reads a
/// WebSocket client's Merkle sync makes, `handlers/sync.rs`). So the tree
/// is walked from the root through non-empty buckets only, down to its
/// leaves, and each record is filtered by timestamp. The cost is one
/// cluster read per non-empty node (at most 1 + 16 + 256 + 4096) and every
/// record of the map read once: O(map size) per request, whatever the
/// delta's size. In a cluster each read covers every partition or fails
/// (`UNAVAILABLE` while a partition has no complete replica), and a failure
/// fails the whole delta: the caller answers an `errors` entry, never a
/// partial delta.
///
/// Records are selected by their stored timestamp (the one the LWW merge
/// keeps, which the writer stamped). A write stamped at or before `since`
/// that reaches the node after the client's previous request (a writer
/// whose clock lags by more than [`DELTA_OVERLAP_MS`]) is not reported.
async fn map_changes(
    fe: &FrontEnd,
    map: &str,
    since: &Timestamp,
) -> Result<Vec<(String, LwwRecord)>, ModuleError> {
    let mut out = Vec::new();
    let mut level: Vec<String> = vec![String::new()];
    while !level.is_empty() {
        let nodes: Vec<(String, MerkleNode)> = futures::stream::iter(level)
            .map(|path| async move {
                fe.node
                    .cluster
                    .merkle_node(MerkleRequest {
                        map: map.into(),
                        kind: MapKind::Lww,
                        path: path.as_str().into(),
                        consistency: ROption::RNone,
                    })
                    .await
                    .map(|r| (path, r.node))
            })
            .buffer_unordered(WALK_CONCURRENCY)
            .try_collect()
            .await?;
        let mut next = Vec::new();
        for (path, node) in nodes {
            match node {
                MerkleNode::Buckets(children) if path.len() < LEAF_DEPTH => {
                    for Tuple2(hex, hash) in children {
                        if hash != 0 {
                            let mut p = path.clone();
                            p.push(char::from(hex));
                            next.push(p);
                        }
                    }
                }
                MerkleNode::Buckets(_) => {
                    return Err(ModuleError::internal(format!(
                        "the Merkle tree of map {map:?} has an inner node at leaf depth (path {path:?})"
                    )))
                }
                MerkleNode::Leaf(records) => {
                    out.extend(records.into_iter().filter_map(|kr| match kr.state {
                        RecordState::Lww(r) if r.timestamp > *since => {
                            Some((kr.key.into_string(), r))
                        }
                        _ => None,
                    }));
                }
            }
        }
        level = next;
    }
    Ok(out)
}

/// One query, once, over every partition.
async fn query(fe: &FrontEnd, q: HttpQuery) -> Result<HttpQueryResult, (u32, String)> {
    let mut members: Vec<(rmpv::Value, rmpv::Value)> = Vec::new();
    match q.filter {
        None | Some(rmpv::Value::Nil) => {}
        Some(f @ rmpv::Value::Map(_)) => members.push(("where".into(), f)),
        Some(other) => {
            return Err((
                400,
                format!(
                    "query filter must be a map of field → value (equality) or null, found {}",
                    kind_of(&other)
                ),
            ))
        }
    }
    let skip = if q.cursor.is_some() {
        0
    } else {
        q.offset.unwrap_or(0)
    };
    if let Some(limit) = q.limit.filter(|l| *l > 0) {
        members.push(("limit".into(), limit.saturating_add(skip).into()));
    }
    if let Some(c) = &q.cursor {
        members.push(("cursor".into(), c.as_str().into()));
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(members))
        .map_err(|e| (500, format!("cannot encode the query: {e}")))?;
    let resp = fe
        .node
        .cluster
        .query(QueryRequest {
            map: q.map_name.as_str().into(),
            query: RawValue::from_msgpack(bytes),
            fields: ROption::RNone,
            consistency: ROption::RNone,
        })
        .await
        .map_err(|e| (status_of(&e), format!("query failed: {}", e.message)))?;
    if matches!(
        resp.cursor_status,
        CursorStatus::Invalid | CursorStatus::Expired
    ) {
        return Err((
            400,
            format!(
                "invalid or expired cursor ({}): query again without it",
                resp.cursor_status.as_str()
            ),
        ));
    }
    Ok(HttpQueryResult {
        query_id: q.query_id,
        results: resp
            .rows
            .into_iter()
            .skip(skip as usize)
            .map(|r| QueryResultEntry {
                key: r.key.into_string(),
                value: RawMsgpack::from_raw_value(r.value),
            })
            .collect(),
        has_more: resp.has_more.then_some(true),
        next_cursor: resp.next_cursor.map(RString::into_string).into_option(),
    })
}

fn kind_of(v: &rmpv::Value) -> &'static str {
    match v {
        rmpv::Value::Nil => "nil",
        rmpv::Value::Boolean(_) => "a boolean",
        rmpv::Value::Integer(_) | rmpv::Value::F32(_) | rmpv::Value::F64(_) => "a number",
        rmpv::Value::String(_) => "a string",
        rmpv::Value::Binary(_) => "binary",
        rmpv::Value::Array(_) => "an array",
        rmpv::Value::Map(_) => "a map",
        rmpv::Value::Ext(..) => "an extension value",
    }
}

/// One full-text search, once, over every partition.
async fn search(fe: &FrontEnd, s: HttpSearch) -> Result<HttpSearchResult, ModuleError> {
    let opts = s.options.unwrap_or_default();
    let hits = fe
        .node
        .cluster
        .search(SearchRequest {
            map: s.map_name.as_str().into(),
            query: s.query.as_str().into(),
            limit: opts.limit.unwrap_or(0),
            min_score: opts.min_score.unwrap_or(0.0),
            boost: opts
                .boost
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), v))
                .collect(),
            consistency: ROption::RNone,
        })
        .await?;
    Ok(HttpSearchResult {
        search_id: s.search_id,
        total_count: Some(u32::try_from(hits.len()).unwrap_or(u32::MAX)),
        results: hits
            .into_iter()
            .map(|h| SearchResult {
                key: h.key.into_string(),
                value: RawMsgpack::from_raw_value(h.value),
                score: h.score,
                matched_terms: h
                    .matched_terms
                    .into_iter()
                    .map(RString::into_string)
                    .collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: u64) -> (String, LwwRecord) {
        (
            format!("k{ms}"),
            LwwRecord {
                value: ROption::RNone,
                timestamp: Timestamp::new(ms, 0, "n"),
                ttl_ms: ROption::RNone,
            },
        )
    }

    #[test]
    fn t10_cut_point_never_splits_one_timestamp() {
        let rs: Vec<_> = [1, 2, 2, 3].into_iter().map(rec).collect();
        assert_eq!(cut_point(&rs, 10), 4, "under the cap: everything");
        assert_eq!(cut_point(&rs, 2), 1, "the two records at 2 stay together");
        assert_eq!(cut_point(&rs, 3), 3);
        let same: Vec<_> = [5, 5, 5].into_iter().map(rec).collect();
        assert_eq!(
            cut_point(&same, 2),
            3,
            "one timestamp past the cap: all of it"
        );
    }
}
