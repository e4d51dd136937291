//! Scatter-gather reads: queries, live queries and full-text search that
//! cover every partition of the cluster, whichever node the client is on.
//!
//! The node the client is connected to coordinates. It asks every live
//! member, itself included (the transport delivers to itself without a
//! socket), to run the request on its own storage; each node answers with
//! every matching row it holds. The coordinator keeps a row only from the
//! node that OWNS the row's partition in the coordinator's table (storage
//! also holds backup copies, which must not count twice), then merges:
//! queries with the storage module's own sort, cursor and limit semantics
//! ([`StorageAccessor::merge_pages`]), search by score.
//!
//! Filtering on the coordinator, by one table, rather than on each node by
//! its own, keeps the result whole while tables move: during a failover
//! two nodes may each believe the other owns a partition, but the
//! coordinator's table names exactly one owner per partition, and the
//! backup that is promoted already sent its copy.
//!
//! Nodes run queries without `limit`, `cursor` or projection, so that the
//! merge can sort on every field and cut at the global limit.
//!
//! A node with no live peer goes straight to its storage (no extra hop).
//!
//! # Layout
//!
//! - `live`: live queries on the coordinator: per-node rows, the client's
//!   view, re-gathering after a table change, differences as updates.
//! - `merkle`: client Merkle sync over every partition: owners' shares of
//!   a tree node, summed.
//! - `remote`: the serving side: registrations for other coordinators,
//!   shipping their updates, expiring those of dead coordinators.

mod live;
mod merkle;
mod remote;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RVec};
use bytes::Bytes;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::storage_types::{
    CursorStatus, QueryRequest, QueryResponse, QueryRow, QuerySink, SearchHit, SearchRequest,
    SubscriptionId,
};
use hangar_core::{partition_of, ErrorKind, ModuleError, ModuleResult, RawValue};
use parking_lot::Mutex;

use crate::membership::{Membership, PeerHealth};
use crate::partition_table::PartitionTable;
use crate::transport::{Channel, PeerInfo, Transport, TransportError};
use crate::wire::{self, QueryCall, QueryMessage, WireHit, WireQuery, WireRow, WireSearch};

pub use live::{registrations, LiveQuery};
pub use merkle::MERKLE_DEADLINE;
use remote::Registrations;

/// How long a node may take to answer one scattered request.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);

/// Hits a search returns when it asks for 0; the storage module's default
/// (`DEFAULT_SEARCH_LIMIT` in `plugins/storage/src/module/read_path.rs`).
pub const DEFAULT_SEARCH_LIMIT: usize = 10;

/// Scatter-gather reads for one node (see the module doc).
pub struct Scatter {
    node_id: String,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    table: Arc<PartitionTable>,
    storage: Arc<dyn StorageAccessor>,
    /// Live queries this node coordinates, by the host's id.
    live: Mutex<HashMap<SubscriptionId, Arc<LiveQuery>>>,
    /// Host ids of live queries that went straight to local storage.
    direct: Mutex<std::collections::HashSet<SubscriptionId>>,
    /// Registrations for coordinators (this node's own included).
    remote: Arc<Registrations>,
}

impl std::fmt::Debug for Scatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scatter")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A node asked to take part in a gather.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    node_id: String,
    addr: SocketAddr,
}

fn remote_error(node: &str, e: &TransportError) -> ModuleError {
    match e {
        TransportError::Remote(text) => {
            ModuleError::new(ErrorKind::INVALID_INPUT, format!("node {node}: {text}"))
        }
        other => ModuleError::new(ErrorKind::UNAVAILABLE, format!("node {node}: {other}")),
    }
}

/// The query object of `q` without `limit` and `cursor`: what each node runs,
/// so that the merge sees every candidate row.
///
/// # Errors
/// When the query is not msgpack (the storage module would refuse it too).
pub fn without_paging(q: &RawValue) -> ModuleResult<RawValue> {
    if q.as_bytes().is_empty() {
        return Ok(q.clone());
    }
    let v = q
        .decode()
        .map_err(|e| ModuleError::invalid(format!("the query is not one msgpack value: {e}")))?;
    let v = match v {
        rmpv::Value::Map(entries) => rmpv::Value::Map(
            entries
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), Some("limit" | "cursor")))
                .collect(),
        ),
        other => other,
    };
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).map_err(|e| ModuleError::internal(e.to_string()))?;
    Ok(RawValue::from_msgpack(out))
}

impl Scatter {
    /// Scatter-gather for this node; starts the background tasks (shipping
    /// updates, expiring registrations, re-gathering after table changes),
    /// which stop when the returned value is dropped.
    #[must_use]
    pub fn new(
        node_id: &str,
        transport: Arc<Transport>,
        membership: Arc<Membership>,
        table: Arc<PartitionTable>,
        storage: Arc<dyn StorageAccessor>,
    ) -> Arc<Self> {
        let s = Arc::new(Self {
            node_id: node_id.to_string(),
            remote: Registrations::new(transport.clone(), membership.clone(), storage.clone()),
            transport,
            membership,
            table,
            storage,
            live: Mutex::new(HashMap::new()),
            direct: Mutex::new(std::collections::HashSet::new()),
        });
        live::watch_table(&s);
        s
    }

    /// The live members to gather from, this node included; empty when
    /// this node has no live peer (then it answers alone).
    pub(crate) fn targets(&self) -> Vec<Target> {
        let peers = self.membership.peers();
        let live: Vec<Target> = peers
            .values()
            .filter(|p| p.is_local || p.health != PeerHealth::Failed)
            .map(|p| Target {
                node_id: p.node_id.clone(),
                addr: if p.is_local {
                    self.transport.local_addr()
                } else {
                    p.addr
                },
            })
            .collect();
        if live.iter().all(|t| t.node_id == self.node_id) {
            Vec::new()
        } else {
            live
        }
    }

    /// True when `node` owns the partition of `key` in this node's table
    /// (or no table names an owner yet).
    pub(crate) fn owned_by(&self, key: &str, node: &str) -> bool {
        match self.table.owner(partition_of(key)) {
            ROption::RSome(o) => o.as_str() == node,
            ROption::RNone => true,
        }
    }

    async fn call(&self, t: &Target, call: &QueryCall) -> Result<Bytes, TransportError> {
        self.transport
            .request(t.addr, Channel::Query, wire::encode(call), GATHER_TIMEOUT)
            .await
    }

    /// Runs `request` once over every partition of the cluster.
    ///
    /// # Errors
    /// When the query is invalid, or a node refused it.
    pub async fn query(&self, request: QueryRequest) -> ModuleResult<QueryResponse> {
        let targets = self.targets();
        if targets.is_empty() {
            return self.storage.query(request).await;
        }
        let stripped = WireQuery {
            map: request.map.to_string(),
            query: without_paging(&request.query)?,
            fields: None,
        };
        let call = QueryCall::Query(stripped);
        let answers = futures::future::join_all(targets.iter().map(|t| self.call(t, &call))).await;
        let mut rows = Vec::new();
        for (t, a) in targets.iter().zip(answers) {
            match a {
                Ok(body) => {
                    let got: Vec<WireRow> =
                        wire::decode(&body, "query rows").map_err(ModuleError::internal)?;
                    rows.extend(
                        got.into_iter()
                            .filter(|r| self.owned_by(&r.key, &t.node_id))
                            .map(|r| QueryRow {
                                key: r.key.into(),
                                value: r.value,
                            }),
                    );
                }
                Err(e @ TransportError::Remote(_)) => return Err(remote_error(&t.node_id, &e)),
                Err(e) => {
                    tracing::warn!(node = %t.node_id, error = %e, "a node did not answer a query; its partitions are missing from the result");
                }
            }
        }
        self.storage
            .merge_pages(request, RVec::from(vec![page(rows)]))
    }

    /// Full-text search over every partition, merged by score (ties by key)
    /// and cut at the request's limit.
    ///
    /// # Errors
    /// When the map has no search configured, or a node refused the search.
    pub async fn search(&self, request: SearchRequest) -> ModuleResult<RVec<SearchHit>> {
        let targets = self.targets();
        if targets.is_empty() {
            return self.storage.search(request).await;
        }
        let limit = if request.limit == 0 {
            DEFAULT_SEARCH_LIMIT
        } else {
            request.limit as usize
        };
        let call = QueryCall::Search(WireSearch::from_request(&request));
        let answers = futures::future::join_all(targets.iter().map(|t| self.call(t, &call))).await;
        let mut hits: Vec<SearchHit> = Vec::new();
        for (t, a) in targets.iter().zip(answers) {
            match a {
                Ok(body) => {
                    let got: Vec<WireHit> =
                        wire::decode(&body, "search hits").map_err(ModuleError::internal)?;
                    hits.extend(
                        got.into_iter()
                            .filter(|h| self.owned_by(&h.key, &t.node_id))
                            .map(WireHit::into_hit),
                    );
                }
                Err(e @ TransportError::Remote(_)) => return Err(remote_error(&t.node_id, &e)),
                Err(e) => {
                    tracing::warn!(node = %t.node_id, error = %e, "a node did not answer a search; its partitions are missing from the result");
                }
            }
        }
        Ok(merge_hits(hits, limit).into())
    }

    /// Registers a live query over every partition (see the `live` module).
    ///
    /// # Errors
    /// When the query is invalid or a node refused it.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleResult<QueryResponse> {
        self.unsubscribe(id);
        if self.targets().is_empty() {
            self.direct.lock().insert(id);
            let r = self.storage.subscribe(id, request, sink).await;
            if r.is_err() {
                self.direct.lock().remove(&id);
            }
            return r;
        }
        live::subscribe(self, id, request, sink).await
    }

    /// Stops a live query everywhere; true if it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        if self.direct.lock().remove(&id) {
            return self.storage.unsubscribe(id);
        }
        let Some(lq) = self.live.lock().remove(&id) else {
            return false;
        };
        for t in lq.close() {
            let body = wire::encode(&QueryMessage::Unsubscribe { sub: id });
            if let Err(e) = self.transport.try_send(t, Channel::Query, body) {
                tracing::debug!(peer = %t, error = %e, "unsubscribe not sent; the node expires it");
            }
        }
        true
    }

    /// A one-way `Query` frame that is not a change event.
    pub fn on_message(&self, from: &PeerInfo, m: QueryMessage) {
        match m {
            QueryMessage::Updates(u) => live::on_updates(self, &from.node_id, u),
            QueryMessage::Unsubscribe { sub } => self.remote.drop_one(&from.node_id, sub),
            QueryMessage::Events(_) => {}
        }
    }

    /// A `Query` request from `from` (a coordinator, maybe this node).
    ///
    /// # Errors
    /// The text travels back to the coordinator.
    pub async fn on_request(&self, from: PeerInfo, call: QueryCall) -> Result<Bytes, String> {
        match call {
            QueryCall::Query(q) => {
                let resp = self
                    .storage
                    .query(q.into_request())
                    .await
                    .map_err(|e| e.message.to_string())?;
                Ok(wire::encode(&rows_of(resp)))
            }
            QueryCall::Search(s) => {
                let hits = self
                    .storage
                    .search(s.into_request())
                    .await
                    .map_err(|e| e.message.to_string())?;
                Ok(wire::encode(
                    &hits.iter().map(WireHit::from).collect::<Vec<_>>(),
                ))
            }
            QueryCall::Merkle(m) => Ok(wire::encode(&self.on_merkle(m).await?)),
            QueryCall::Subscribe { sub, gen, request } => {
                let resp = self.remote.register(&from, sub, gen, request).await?;
                Ok(wire::encode(&rows_of(resp)))
            }
        }
    }
}

/// One unsorted page of `rows`.
pub(crate) fn page(rows: Vec<QueryRow>) -> QueryResponse {
    QueryResponse {
        rows: rows.into(),
        next_cursor: ROption::RNone,
        has_more: false,
        cursor_status: CursorStatus::None,
    }
}

fn rows_of(resp: QueryResponse) -> Vec<WireRow> {
    resp.rows
        .into_iter()
        .map(|r| WireRow {
            key: r.key.into(),
            value: r.value,
        })
        .collect()
}

/// Hits ordered by score (highest first, ties by key), one per key, at most
/// `limit`.
#[must_use]
pub fn merge_hits(mut hits: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.key.as_str().cmp(b.key.as_str()))
    });
    let mut seen = std::collections::HashSet::new();
    hits.retain(|h| seen.insert(h.key.clone()));
    hits.truncate(limit);
    hits
}

#[cfg(test)]
mod tests;
