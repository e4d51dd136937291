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

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::TryStreamExt;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::Origin;
use serde_json::json;

use super::handlers::{convert, status_of, Converted};
use super::state::FrontEnd;
use super::write_path;
use crate::protocol::messages::{
    decode_http_sync, ClientOp, HttpAck, HttpSyncError, HttpSyncRequest, HttpSyncResponse, OpResult,
};
use crate::protocol::{FrameError, MAX_FRAME_BYTES};

mod deltas;
mod reads;

use deltas::delta;
pub use deltas::{DELTA_OVERLAP_MS, MAX_DELTA_RECORDS, TOMBSTONE_RETENTION_MS};
use reads::{query, search};

/// Longest a `POST /sync` may take to serve (answered 408 past it).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

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

/// How much of a body over the limit is still read, and thrown away,
/// before the 413 goes out. A server that closes a connection with unread
/// bytes in its receive buffer makes the kernel reset it, and a client still
/// sending its body then sees a broken connection instead of the answer.
/// Bodies larger than this are not read: answered, and the connection
/// closed.
const DRAIN_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// Reads the body, refusing (413) once it passes `MAX_FRAME_BYTES`; a body
/// over the limit is read to its end, up to [`DRAIN_BYTES`], before the
/// refusal (a declared `Content-Length` over that is refused unread).
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
    if let Some(n) = declared.filter(|n| *n > DRAIN_BYTES as u64) {
        return Err(too_large(n.to_string()));
    }
    let mut out =
        Vec::with_capacity(declared.map_or(0, |n| n.min(MAX_FRAME_BYTES as u64) as usize));
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )
    })? {
        seen += chunk.len();
        if seen > DRAIN_BYTES {
            break;
        }
        if seen <= MAX_FRAME_BYTES {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_FRAME_BYTES {
        let len = match declared {
            Some(n) => n.to_string(),
            None if seen > DRAIN_BYTES => format!("more than {DRAIN_BYTES}"),
            None => seen.to_string(),
        };
        return Err(too_large(len));
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
    ops: Vec<ClientOp>,
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
