//! Live queries (`QUERY_SUB` → `QUERY_RESP`, then `QUERY_UPDATE`;
//! `QUERY_UNSUB`) and one-shot full-text search (`SEARCH` → `SEARCH_RESP`).
//!
//! Both run through the cluster module, so they cover every partition of
//! the cluster whichever node the client is connected to (a node alone goes
//! straight to its storage). Each live query gets a host-assigned
//! subscription id and a sink that turns the cluster module's updates into `QUERY_UPDATE` frames for this
//! connection. Updates that arrive between the storage module taking the
//! snapshot and the `QUERY_RESP` being queued are held back and sent right
//! after it, so a client never sees an update before its snapshot. While it
//! holds a live query on a map, the connection also receives that map's
//! `SERVER_EVENT`s (see [`crate::server::fanout`]).
//!
//! A query with `groupBy` / `aggregations` subscribes its ungrouped form
//! and is grouped here, on the host (see [`crate::server::grouped`]).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use axum::body::Bytes;
use hangar_core::module::storage_types::{
    QueryRequest, QuerySink, QueryUpdate, SearchHit, SearchRequest,
};
use hangar_core::ConsistencyLevel;
use hangar_core::RawValue;
use parking_lot::Mutex;

use super::status_of;
use crate::protocol::messages::{
    QueryResp, QuerySub, Search, SearchOptions, SearchResp, SearchResult,
};
use crate::protocol::{fast, parse_consistency, Message, RawMsgpack};
use crate::server::grouped::{self, GroupedSink, Groups};
use crate::server::outbound::Outbound;
use crate::server::session::{LiveQuery, Session};
use crate::server::state::FrontEnd;

/// Most live queries one connection may hold.
pub const MAX_QUERIES_PER_CONNECTION: usize = 1_024;

/// Turns a subscription's updates into `QUERY_UPDATE` frames.
///
/// Until [`UpdateSink::go_live`] it buffers (at most one outbound queue's
/// worth; past that the client is too slow anyway and is disconnected).
pub struct UpdateSink {
    out: Outbound,
    query_id: String,
    held: Mutex<Option<Vec<Bytes>>>,
    hold_max: usize,
}

impl UpdateSink {
    /// A sink for `query_id` on `out`, holding updates back until live.
    #[must_use]
    pub fn new(out: Outbound, query_id: String, hold_max: usize) -> Self {
        Self {
            out,
            query_id,
            held: Mutex::new(Some(Vec::new())),
            hold_max,
        }
    }

    /// Sends what was held back, in order, and delivers directly from now on.
    pub fn go_live(&self) {
        let mut held = self.held.lock();
        if let Some(frames) = held.take() {
            for f in frames {
                self.out.push(f);
            }
        }
    }
}

impl QuerySink for UpdateSink {
    fn deliver(&self, u: &QueryUpdate) {
        let nil;
        let value = match &u.value {
            ROption::RSome(v) => v,
            ROption::RNone => {
                nil = RawValue::from_msgpack(vec![0xc0]);
                &nil
            }
        };
        let mut buf = Vec::with_capacity(64 + self.query_id.len() + u.key.len() + value.0.len());
        fast::write_query_update(&mut buf, &self.query_id, &u.key, value, u.change);
        let frame = Bytes::from(buf);
        // The lock also orders direct deliveries after the held-back ones.
        let mut held = self.held.lock();
        match held.as_mut() {
            Some(frames) if frames.len() < self.hold_max => frames.push(frame),
            Some(_) => {
                tracing::warn!(
                    conn = self.out.conn(),
                    "too many updates before the snapshot was sent; disconnecting"
                );
                self.out.kill();
            }
            None => {
                self.out.push(frame);
            }
        }
    }
}

/// The sink of a live query: rows as they are, or grouped.
enum Sink {
    Rows(Arc<UpdateSink>),
    Groups(Arc<GroupedSink>),
}

fn drop_query(fe: &FrontEnd, s: &mut Session, query_id: &str) {
    if let Some(old) = s.queries.remove(query_id) {
        fe.node.cluster.unsubscribe(old.subscription);
        fe.fanout.remove(&old.map, s.id);
    }
}

fn failed_resp(query_id: String, error: String, code: u32) -> Message {
    Message::QueryResp {
        payload: QueryResp {
            query_id,
            results: Vec::new(),
            next_cursor: None,
            has_more: Some(false),
            cursor_status: None,
            merkle_root_hash: None,
            error: Some(error),
            code: Some(code),
        },
    }
}

/// `QUERY_SUB`: registers (or replaces) a live query and answers with its
/// first page.
pub async fn subscribe(fe: &FrontEnd, s: &mut Session, q: QuerySub) {
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    drop_query(fe, s, &q.query_id);
    if s.queries.len() >= MAX_QUERIES_PER_CONNECTION {
        s.reply(&failed_resp(
            q.query_id,
            format!("too many live queries: at most {MAX_QUERIES_PER_CONNECTION} per connection"),
            400,
        ))
        .await;
        return;
    }
    let split = match grouped::split(&q.query) {
        Ok(split) => split,
        Err(e) => {
            s.reply(&failed_resp(q.query_id, e, 400)).await;
            return;
        }
    };
    if split.group.is_some() && q.fields.is_some() {
        s.reply(&failed_resp(
            q.query_id,
            "fields: a projection does not apply to a grouped query (its rows are the group rows); leave it out".into(),
            400,
        ))
        .await;
        return;
    }
    let sub = fe.next_subscription_id();
    let sink = match split.group {
        None => Sink::Rows(Arc::new(UpdateSink::new(
            s.out.clone(),
            q.query_id.clone(),
            fe.net.outbound_queue,
        ))),
        Some(spec) => Sink::Groups(Arc::new(GroupedSink::new(
            s.out.clone(),
            q.query_id.clone(),
            Groups::new(spec),
            fe.net.outbound_queue,
        ))),
    };
    let consistency = match parse_consistency(q.consistency.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            s.reply(&failed_resp(q.query_id, e, 400)).await;
            return;
        }
    };
    let mut query = Vec::new();
    if let Err(e) = rmpv::encode::write_value(&mut query, &split.rows_query) {
        s.reply(&failed_resp(q.query_id, format!("query: {e}"), 400))
            .await;
        return;
    }
    let request = QueryRequest {
        map: q.map_name.as_str().into(),
        query: RawValue::from_msgpack(query),
        fields: q
            .fields
            .map(|f| f.into_iter().map(RString::from).collect())
            .into(),
        consistency: consistency.into(),
    };
    // Listen for SERVER_EVENTs from before the snapshot, as updates are.
    fe.fanout.add(&q.map_name, &s.out);
    let module_sink: Arc<dyn QuerySink> = match &sink {
        Sink::Rows(r) => r.clone(),
        Sink::Groups(g) => g.clone(),
    };
    match fe.node.cluster.subscribe(sub, request, module_sink).await {
        Ok(mut resp) => {
            s.queries.insert(
                q.query_id.clone(),
                LiveQuery {
                    subscription: sub,
                    map: q.map_name,
                },
            );
            if let Sink::Groups(g) = &sink {
                resp.rows = g.load(&resp.rows).into();
            }
            let mut buf = Vec::with_capacity(
                64 + resp
                    .rows
                    .iter()
                    .map(|r| r.key.len() + r.value.0.len() + 16)
                    .sum::<usize>(),
            );
            fast::write_query_resp(
                &mut buf,
                &q.query_id,
                &resp.rows,
                resp.next_cursor.as_ref().map(RString::as_str).into_option(),
                resp.has_more,
                resp.cursor_status,
            );
            s.out.send(Bytes::from(buf)).await;
            match &sink {
                Sink::Rows(r) => r.go_live(),
                Sink::Groups(g) => g.go_live(),
            }
        }
        Err(e) => {
            fe.fanout.remove(&q.map_name, s.id);
            fe.node.cluster.unsubscribe(sub);
            tracing::debug!(conn = s.id, map = %q.map_name, error = %e, "live query refused");
            s.reply(&failed_resp(
                q.query_id,
                e.message.to_string(),
                status_of(&e),
            ))
            .await;
        }
    }
}

/// `QUERY_UNSUB`: no answer.
pub fn unsubscribe(fe: &FrontEnd, s: &mut Session, query_id: &str) {
    drop_query(fe, s, query_id);
}

/// `SEARCH` → `SEARCH_RESP` (with `error` when the search failed).
pub async fn search(fe: &FrontEnd, s: &Session, q: Search) {
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    let consistency = match parse_consistency(q.consistency.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let resp = SearchResp {
                request_id: q.request_id,
                results: Vec::new(),
                total_count: 0,
                error: Some(e),
            };
            s.reply(&Message::SearchResp { payload: resp }).await;
            return;
        }
    };
    let request = search_request(&q.map_name, &q.query, q.options, consistency);
    let resp = match fe.node.cluster.search(request).await {
        Ok(hits) => SearchResp {
            request_id: q.request_id,
            total_count: u32::try_from(hits.len()).unwrap_or(u32::MAX),
            results: search_results(hits),
            error: None,
        },
        Err(e) => SearchResp {
            request_id: q.request_id,
            results: Vec::new(),
            total_count: 0,
            error: Some(e.message.to_string()),
        },
    };
    s.reply(&Message::SearchResp { payload: resp }).await;
}

/// The module request of a client search (`SEARCH` and the searches of
/// `POST /sync`): unset options take the module's defaults.
pub(crate) fn search_request(
    map: &str,
    query: &str,
    options: Option<SearchOptions>,
    consistency: Option<ConsistencyLevel>,
) -> SearchRequest {
    let opts = options.unwrap_or_default();
    SearchRequest {
        map: map.into(),
        query: query.into(),
        limit: opts.limit.unwrap_or(0),
        min_score: opts.min_score.unwrap_or(0.0),
        boost: opts
            .boost
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| Tuple2(RString::from(k), v))
            .collect(),
        consistency: consistency.into(),
    }
}

/// The module's hits as the client's search results, in order.
pub(crate) fn search_results(hits: RVec<SearchHit>) -> Vec<SearchResult> {
    hits.into_iter()
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
        .collect()
}
