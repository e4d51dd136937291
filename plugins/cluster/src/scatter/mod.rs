//! Scatter-gather reads: queries, live queries and full-text search that
//! cover every partition of the cluster, whichever node the client is on.
//!
//! The node the client is connected to coordinates. For each read it makes
//! a [`ReadPlan`] from its partition table (`replicas`): one serving
//! replica per partition, chosen by the read's consistency (at EVENTUAL any
//! complete replica, this node first, then the one with the lowest
//! measured round trip; at QUORUM and STRONG the owner). It asks each
//! chosen node (itself included: the transport delivers to itself without
//! a socket) for exactly the partitions it serves, as a `PartitionSet`;
//! the node answers with its matching rows of those partitions, and the
//! coordinator keeps a row only from the node that serves the row's
//! partition in its plan, so no row counts twice. Then it merges: queries
//! with the storage module's own sort, cursor and limit semantics
//! ([`StorageAccessor::merge_pages`]), search by score.
//!
//! Planning on the coordinator, by one table, keeps the result whole while
//! tables move: during a failover two nodes may each believe the other
//! owns a partition, but the coordinator's plan names exactly one server
//! per partition. A node that does not answer a one-shot read (it died
//! and is not yet confirmed failed) is left out and its partitions are
//! asked again of their next replica, when the consistency allows one.
//!
//! Nodes run queries without `limit`, `cursor` or projection, so that the
//! merge can sort on every field and cut at the global limit. A search
//! keeps its limit on each node: a hit in the global top N is in the top N
//! of the partitions its node serves.
//!
//! A node with no live peer goes straight to its storage (no extra hop).
//!
//! # Layout
//!
//! - `replicas`: the read consistency and the choice of replicas.
//! - `live`: live queries on the coordinator: per-node rows, the client's
//!   view, re-planning and re-gathering after a table change, differences
//!   as updates.
//! - `merkle`: client Merkle sync over every partition: the serving
//!   replicas' shares of a tree node, summed.
//! - `remote`: the serving side: registrations for other coordinators,
//!   shipping their updates, expiring those of dead coordinators.

mod live;
mod merkle;
mod remote;
pub mod replicas;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RVec};
use bytes::Bytes;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::module::storage_types::{
    CursorStatus, QueryRequest, QueryResponse, QueryRow, QuerySink, SearchHit, SearchRequest,
    SubscriptionId,
};
use hangar_core::{partition_of, ConsistencyLevel, ErrorKind, ModuleError, ModuleResult, RawValue};
use parking_lot::Mutex;

use crate::membership::{Membership, Peer, PeerHealth};
use crate::partition_table::{PartitionTable, Table};
use crate::transport::{Channel, PeerInfo, Transport, TransportError};
use crate::wire::{self, QueryCall, QueryMessage, WireHit, WireQuery, WireRow, WireSearch};

pub use live::{registrations, LiveQuery};
pub use merkle::MERKLE_DEADLINE;
use remote::Registrations;
use replicas::{backups_may_serve, NodeFacts, ReadPlan, ReadPolicy, READS_TOTAL};

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
    /// The configured read consistency.
    policy: ReadPolicy,
    metrics: Arc<dyn MetricsSink>,
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

/// What a plan is made from: the live members and the measured round
/// trips, as this node sees them now.
pub(crate) struct Facts<'a> {
    local: &'a str,
    peers: BTreeMap<String, Peer>,
    transport: &'a Transport,
}

impl NodeFacts for Facts<'_> {
    fn local(&self) -> &str {
        self.local
    }

    fn is_live(&self, node: &str) -> bool {
        node == self.local
            || self
                .peers
                .get(node)
                .is_some_and(|p| p.is_local || p.health != PeerHealth::Failed)
    }

    fn rtt(&self, node: &str) -> Option<Duration> {
        self.peers
            .get(node)
            .and_then(|p| self.transport.rtt(p.addr))
    }
}

/// The partitions of `a` that are also in `b`.
fn intersect(a: &PartitionSet, b: &PartitionSet) -> PartitionSet {
    PartitionSet::of(a.iter().filter(|p| b.contains(*p)))
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
        policy: ReadPolicy,
        metrics: Arc<dyn MetricsSink>,
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
            policy,
            metrics,
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

    /// The consistency of a read of `map` that asked for `asked` (see
    /// `replicas`).
    pub(crate) fn level(&self, map: &str, asked: ROption<ConsistencyLevel>) -> ConsistencyLevel {
        self.policy.level(map, asked.into_option())
    }

    /// The live members and round trips as this node sees them now.
    pub(crate) fn facts(&self) -> Facts<'_> {
        Facts {
            local: &self.node_id,
            peers: self.membership.peers(),
            transport: &self.transport,
        }
    }

    /// The serving replicas of a read at `level` over `table`, without the
    /// nodes in `excluded`.
    pub(crate) fn plan(
        &self,
        table: &Table,
        level: ConsistencyLevel,
        excluded: &BTreeSet<String>,
    ) -> ReadPlan {
        ReadPlan::new(table, level, &self.facts(), excluded)
    }

    /// The replica that serves `partition` for a read at `level` now (see
    /// `replicas`); `None` when no allowed replica is live or the partition
    /// does not exist.
    #[must_use]
    pub fn read_replica(&self, partition: u32, level: ConsistencyLevel) -> Option<String> {
        let table = self.table.current();
        replicas::choose(
            &table,
            partition as usize,
            level,
            &self.facts(),
            &BTreeSet::new(),
        )
        .map(str::to_string)
    }

    /// Where `node` is reached: this node's own address, or its gossip
    /// address.
    pub(crate) fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        if node == self.node_id {
            return Some(self.transport.local_addr());
        }
        self.membership.peers().get(node).map(|p| p.addr)
    }

    /// Counts one read served by `node` for `partitions` of `table`
    /// ([`READS_TOTAL`], per role it serves them in).
    pub(crate) fn count_read(&self, table: &Table, node: &str, partitions: &PartitionSet) {
        let mut owner = false;
        let mut backup = false;
        for p in partitions.iter() {
            if table.owners.get(p as usize).is_some_and(|o| o == node) {
                owner = true;
            } else {
                backup = true;
            }
        }
        for (yes, role) in [(owner, "owner"), (backup, "backup")] {
            if yes {
                self.metrics
                    .counter(READS_TOTAL, &[("replica", node), ("role", role)], 1.0);
            }
        }
    }

    async fn call(&self, t: &Target, call: &QueryCall) -> Result<Bytes, TransportError> {
        self.transport
            .request(t.addr, Channel::Query, wire::encode(call), GATHER_TIMEOUT)
            .await
    }

    /// One one-shot read at `level`: asks each serving replica of the plan
    /// for its partitions with the call `make` builds for them, and returns
    /// each answer with the partitions it covers. A replica that does not
    /// answer is left out and its partitions are asked of their next
    /// replica (at EVENTUAL; at QUORUM and STRONG only the owner serves, so
    /// they are missing until the table moves them), with a warning.
    async fn gather_once(
        &self,
        level: ConsistencyLevel,
        what: &str,
        make: impl Fn(PartitionSet) -> QueryCall,
    ) -> ModuleResult<Vec<(PartitionSet, Bytes)>> {
        let table = self.table.current();
        let mut excluded = BTreeSet::new();
        let mut todo = PartitionSet::ALL;
        let mut out = Vec::new();
        loop {
            let plan = self.plan(&table, level, &excluded);
            let asks: Vec<(Target, PartitionSet)> = plan
                .sets
                .iter()
                .filter_map(|(n, set)| {
                    let set = intersect(set, &todo);
                    let addr = self.addr_of(n)?;
                    (!set.is_empty()).then(|| {
                        (
                            Target {
                                node_id: n.clone(),
                                addr,
                            },
                            set,
                        )
                    })
                })
                .collect();
            if asks.is_empty() {
                break;
            }
            let answers = futures::future::join_all(asks.iter().map(|(t, set)| {
                self.count_read(&table, &t.node_id, set);
                let call = make(*set);
                async move { self.call(t, &call).await }
            }))
            .await;
            let mut failed = false;
            for ((t, set), a) in asks.into_iter().zip(answers) {
                match a {
                    Ok(body) => {
                        todo = PartitionSet::of(todo.iter().filter(|p| !set.contains(*p)));
                        out.push((set, body));
                    }
                    Err(e @ TransportError::Remote(_)) => return Err(remote_error(&t.node_id, &e)),
                    Err(e) => {
                        tracing::warn!(node = %t.node_id, error = %e, partitions = set.len(), "a node did not answer a {what}; asking the next replica of its partitions if {level:?} allows one");
                        excluded.insert(t.node_id);
                        failed = true;
                    }
                }
            }
            if !failed || !backups_may_serve(level) {
                break;
            }
        }
        if !todo.is_empty() {
            tracing::warn!(
                partitions = todo.len(),
                ?level,
                "no replica answered a {what} for some partitions; they are missing from the result"
            );
        }
        Ok(out)
    }

    /// Runs `request` once over every partition of the cluster.
    ///
    /// # Errors
    /// When the query is invalid, or a node refused it.
    pub async fn query(&self, request: QueryRequest) -> ModuleResult<QueryResponse> {
        if self.targets().is_empty() {
            return self.storage.query(request).await;
        }
        let level = self.level(&request.map, request.consistency);
        let stripped = without_paging(&request.query)?;
        let answers = self
            .gather_once(level, "query", |set| {
                QueryCall::Query(WireQuery {
                    map: request.map.to_string(),
                    query: stripped.clone(),
                    fields: None,
                    partitions: Some(set.words),
                })
            })
            .await?;
        let mut rows = Vec::new();
        for (set, body) in answers {
            let got: Vec<WireRow> =
                wire::decode(&body, "query rows").map_err(ModuleError::internal)?;
            rows.extend(
                got.into_iter()
                    .filter(|r| set.contains(partition_of(&r.key)))
                    .map(|r| QueryRow {
                        key: r.key.into(),
                        value: r.value,
                    }),
            );
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
        if self.targets().is_empty() {
            return self.storage.search(request).await;
        }
        let limit = if request.limit == 0 {
            DEFAULT_SEARCH_LIMIT
        } else {
            request.limit as usize
        };
        let level = self.level(&request.map, request.consistency);
        let answers = self
            .gather_once(level, "search", |set| {
                let mut w = WireSearch::from_request(&request);
                w.partitions = Some(set.words);
                QueryCall::Search(w)
            })
            .await?;
        let mut hits: Vec<SearchHit> = Vec::new();
        for (set, body) in answers {
            let got: Vec<WireHit> =
                wire::decode(&body, "search hits").map_err(ModuleError::internal)?;
            hits.extend(
                got.into_iter()
                    .filter(|h| set.contains(partition_of(&h.key)))
                    .map(WireHit::into_hit),
            );
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
                let only = q.partitions.map(PartitionSet::from_words);
                let resp = self
                    .storage
                    .query(q.into_request())
                    .await
                    .map_err(|e| e.message.to_string())?;
                Ok(wire::encode(&rows_of(resp, only.as_ref())))
            }
            QueryCall::Search(s) => {
                let only = s.partitions.map(PartitionSet::from_words);
                let hits = self
                    .storage
                    .search(s.into_request())
                    .await
                    .map_err(|e| e.message.to_string())?;
                Ok(wire::encode(
                    &hits
                        .iter()
                        .filter(|h| only.is_none_or(|o| o.contains(partition_of(&h.key))))
                        .map(WireHit::from)
                        .collect::<Vec<_>>(),
                ))
            }
            QueryCall::Merkle(m) => Ok(wire::encode(&self.on_merkle(m).await?)),
            QueryCall::Subscribe { sub, gen, request } => {
                let only = request.partitions.map(PartitionSet::from_words);
                let resp = self.remote.register(&from, sub, gen, request).await?;
                Ok(wire::encode(&rows_of(resp, only.as_ref())))
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

/// The rows of `resp` (of the partitions in `only`, when given).
fn rows_of(resp: QueryResponse, only: Option<&PartitionSet>) -> Vec<WireRow> {
    resp.rows
        .into_iter()
        .filter(|r| only.is_none_or(|o| o.contains(partition_of(&r.key))))
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
