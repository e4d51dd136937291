//! Live queries on the coordinator (the node the client is connected to).
//!
//! A live query keeps, per node, the rows that node holds and sends updates
//! for (`NodeRows`), and the view the client has: key → projected value.
//! The view is always "the query over the rows each serving replica holds
//! of the partitions it serves in the round's read plan" (`replicas`: at
//! EVENTUAL any complete replica, this node first; at QUORUM and STRONG
//! the owner):
//!
//! - **Gathering.** Each round has a number (`gen`, increasing across
//!   restarts of this node) and a read plan made from this node's table.
//!   A round registers the query on every serving replica, for exactly the
//!   partitions it serves, and takes their snapshots; updates of the round
//!   that arrive before their node's snapshot wait for it, updates of older
//!   rounds are dropped. A node that serves nothing in the new plan is told
//!   to drop its registration. The first round gives the first page.
//! - **Updates.** A node's updates change its rows; the touched keys are
//!   recomputed. For a query with a `limit` (a top-N window) the whole
//!   window is recomputed from every node's rows with the storage module's
//!   merge, and the differences are sent: ENTER for keys that came in,
//!   LEAVE for keys pushed out, UPDATE for keys whose value changed.
//! - **Table changes.** When this node's partition table changes (a
//!   failover or a migration moves partitions), a new round is planned and
//!   gathered and only the differences reach the client: keys whose new
//!   server already had a copy do not leave and come back, none is
//!   doubled. A serving replica that does not answer a round is missing
//!   until the next table change (a dead node's partitions move then).
//!
//! Updates reach the host's sink under the query's lock, so they keep their
//! order, and none is sent after [`LiveQuery::close`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RVec;
use hangar_core::module::storage_types::{
    ChangeType, QueryRequest, QueryResponse, QueryRow, QuerySink, QueryUpdate, SubscriptionId,
};
use hangar_core::{ConsistencyLevel, ModuleError, ModuleResult, RawValue};
use parking_lot::Mutex;

use super::replicas::ReadPlan;
use super::{page, remote_error, without_paging, Scatter, Target};
use crate::transport::{Channel, TransportError};
use crate::wire::{self, QueryCall, QueryMessage, WireQuery, WireRow, WireUpdate};

/// Round numbers start at this process's start time in microseconds, so a
/// restarted coordinator's rounds are newer than any it registered before.
fn next_gen() -> u64 {
    static GEN: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    GEN.get_or_init(|| {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        AtomicU64::new(micros)
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// What one node holds for a live query.
struct NodeRows {
    addr: SocketAddr,
    gen: u64,
    ready: bool,
    rows: HashMap<String, RawValue>,
    pending: Vec<WireUpdate>,
}

struct LiveState {
    gen: u64,
    /// Who serves which partition in the current round.
    plan: Option<ReadPlan>,
    nodes: HashMap<String, NodeRows>,
    view: HashMap<String, RawValue>,
    /// The first page was computed; later changes are sent as updates.
    live: bool,
    closed: bool,
}

/// One live query this node coordinates.
pub struct LiveQuery {
    id: SubscriptionId,
    request: QueryRequest,
    /// The request without its cursor: what the view is computed with.
    window: QueryRequest,
    /// What each node runs: no limit, no cursor, no projection.
    remote: WireQuery,
    limited: bool,
    /// The read consistency: which replicas may serve.
    level: ConsistencyLevel,
    sink: Arc<dyn QuerySink>,
    state: Mutex<LiveState>,
}

impl std::fmt::Debug for LiveQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveQuery")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn has_member(q: &RawValue, name: &str) -> bool {
    matches!(q.decode(), Ok(rmpv::Value::Map(m))
        if m.iter().any(|(k, v)| k.as_str() == Some(name) && !v.is_nil()))
}

fn without_cursor(q: &RawValue) -> RawValue {
    let Ok(rmpv::Value::Map(m)) = q.decode() else {
        return q.clone();
    };
    let v = rmpv::Value::Map(
        m.into_iter()
            .filter(|(k, _)| k.as_str() != Some("cursor"))
            .collect(),
    );
    let mut out = Vec::new();
    match rmpv::encode::write_value(&mut out, &v) {
        Ok(()) => RawValue::from_msgpack(out),
        Err(_) => q.clone(),
    }
}

impl LiveQuery {
    /// Marks the query closed (no update is delivered after this returns)
    /// and returns the nodes that hold a registration for it.
    pub(crate) fn close(&self) -> Vec<SocketAddr> {
        let mut st = self.state.lock();
        st.closed = true;
        st.nodes.values().map(|n| n.addr).collect()
    }

    fn emit(&self, key: &str, value: Option<&RawValue>, change: ChangeType) {
        self.sink.deliver(&QueryUpdate {
            subscription: self.id,
            key: key.into(),
            value: value.cloned().into(),
            change,
        });
    }
}

/// Registers `request` on every live member and returns the merged first
/// page (see the module doc).
pub(super) async fn subscribe(
    s: &Arc<Scatter>,
    id: SubscriptionId,
    request: QueryRequest,
    sink: Arc<dyn QuerySink>,
) -> ModuleResult<QueryResponse> {
    let remote = WireQuery {
        map: request.map.to_string(),
        query: without_paging(&request.query)?,
        fields: None,
        partitions: None,
    };
    let level = s.level(&request.map, request.consistency);
    let window = QueryRequest {
        query: without_cursor(&request.query),
        ..request.clone()
    };
    let lq = Arc::new(LiveQuery {
        id,
        limited: has_member(&request.query, "limit"),
        level,
        request,
        window,
        remote,
        sink,
        state: Mutex::new(LiveState {
            gen: 0,
            plan: None,
            nodes: HashMap::new(),
            view: HashMap::new(),
            live: false,
            closed: false,
        }),
    });
    s.live.lock().insert(id, lq.clone());
    let version = table_version(s);
    match gather(s, &lq, true).await {
        Ok(Some(resp)) => {
            // A table that changed while the first round ran was not seen by
            // the watcher (it skips queries without a first page): gather
            // again now, sending the differences.
            if table_version(s) != version {
                let (s, lq) = (s.clone(), lq.clone());
                tokio::spawn(async move {
                    if let Err(e) = gather(&s, &lq, false).await {
                        tracing::warn!(sub = lq.id, error = %e, "live query not re-gathered");
                    }
                });
            }
            Ok(resp)
        }
        Ok(None) => Err(ModuleError::new(
            hangar_core::ErrorKind::UNAVAILABLE,
            "the live query was replaced or stopped while it was being registered",
        )),
        Err(e) => {
            s.unsubscribe(id);
            Err(e)
        }
    }
}

/// One gathering round for `lq`. The first round returns the first page;
/// later rounds send the differences to the sink and return `None`.
async fn gather(
    s: &Arc<Scatter>,
    lq: &Arc<LiveQuery>,
    first: bool,
) -> ModuleResult<Option<QueryResponse>> {
    let table = s.table.current();
    let plan = s.plan(&table, lq.level, &std::collections::BTreeSet::new());
    let targets: Vec<(Target, hangar_core::module::partition::PartitionSet)> = plan
        .sets
        .iter()
        .filter_map(|(n, set)| {
            let addr = s.addr_of(n)?;
            Some((
                Target {
                    node_id: n.clone(),
                    addr,
                },
                *set,
            ))
        })
        .collect();
    if plan.unserved() > 0 {
        tracing::warn!(sub = lq.id, partitions = plan.unserved(), level = ?lq.level, "no live replica may serve some partitions of a live query; they are missing until the table moves them");
    }
    let gen = next_gen();
    let dropped: Vec<SocketAddr> = {
        let mut st = lq.state.lock();
        if st.closed {
            return Ok(None);
        }
        st.gen = gen;
        st.plan = Some(plan);
        let dropped = st
            .nodes
            .iter()
            .filter(|(n, _)| !targets.iter().any(|(t, _)| &t.node_id == *n))
            .map(|(_, r)| r.addr)
            .collect();
        st.nodes
            .retain(|n, _| targets.iter().any(|(t, _)| &t.node_id == n));
        for (t, _) in &targets {
            let e = st
                .nodes
                .entry(t.node_id.clone())
                .or_insert_with(|| NodeRows {
                    addr: t.addr,
                    gen,
                    ready: false,
                    rows: HashMap::new(),
                    pending: Vec::new(),
                });
            e.addr = t.addr;
            e.gen = gen;
            e.ready = false;
            e.pending.clear();
        }
        dropped
    };
    for addr in dropped {
        let body = wire::encode(&QueryMessage::Unsubscribe { sub: lq.id });
        if let Err(e) = s.transport.try_send(addr, Channel::Query, body) {
            tracing::debug!(peer = %addr, error = %e, "unsubscribe not sent; the node expires it");
        }
    }
    let answers = futures::future::join_all(targets.iter().map(|(t, set)| {
        s.count_read(&table, &t.node_id, set);
        let mut request = lq.remote.clone();
        request.partitions = Some(set.words);
        let call = QueryCall::Subscribe {
            sub: lq.id,
            gen,
            request,
        };
        async move { s.call(t, &call).await }
    }))
    .await;
    let mut st = lq.state.lock();
    if st.closed || st.gen != gen {
        return Ok(None);
    }
    for ((t, _), a) in targets.iter().zip(answers) {
        let rows: Vec<WireRow> = match a {
            Ok(body) => {
                wire::decode(&body, "live query snapshot").map_err(ModuleError::internal)?
            }
            Err(e @ TransportError::Remote(_)) if first => {
                return Err(remote_error(&t.node_id, &e))
            }
            Err(e) => {
                tracing::warn!(node = %t.node_id, error = %e, "a node did not register a live query; its partitions are missing until the next table change");
                st.nodes.remove(&t.node_id);
                continue;
            }
        };
        let Some(n) = st.nodes.get_mut(&t.node_id) else {
            continue;
        };
        n.rows = rows.into_iter().map(|r| (r.key, r.value)).collect();
        for u in std::mem::take(&mut n.pending) {
            apply(&mut n.rows, u);
        }
        n.ready = true;
    }
    if first {
        let resp = s
            .storage
            .merge_pages(lq.request.clone(), RVec::from(vec![page(served_rows(&st))]))?;
        st.view = resp
            .rows
            .iter()
            .map(|r| (r.key.to_string(), r.value.clone()))
            .collect();
        st.live = true;
        return Ok(Some(resp));
    }
    recompute(s, lq, &mut st, None);
    Ok(None)
}

fn apply(rows: &mut HashMap<String, RawValue>, u: WireUpdate) {
    match (u.change, u.value) {
        (ChangeType::Leave, _) | (_, None) => {
            rows.remove(&u.key);
        }
        (_, Some(v)) => {
            rows.insert(u.key, v);
        }
    }
}

/// True when `node` serves the partition of `key` in the round's `plan`.
fn serves(plan: Option<&ReadPlan>, key: &str, node: &str) -> bool {
    plan.is_some_and(|p| p.serves(key, node))
}

/// Every ready node's rows of the partitions it serves in the round's plan.
fn served_rows(st: &LiveState) -> Vec<QueryRow> {
    let mut out = Vec::new();
    for (node, n) in &st.nodes {
        if !n.ready {
            continue;
        }
        for (k, v) in &n.rows {
            if serves(st.plan.as_ref(), k, node) {
                out.push(QueryRow {
                    key: k.as_str().into(),
                    value: v.clone(),
                });
            }
        }
    }
    out
}

/// The serving node's row of `key`, if the ready node that serves it holds it.
fn served_row(st: &LiveState, key: &str) -> Option<QueryRow> {
    st.nodes.iter().find_map(|(node, n)| {
        if !n.ready || !serves(st.plan.as_ref(), key, node) {
            return None;
        }
        n.rows.get(key).map(|v| QueryRow {
            key: key.into(),
            value: v.clone(),
        })
    })
}

/// Recomputes the view and sends the differences. `touched` keys changed
/// on a node (they get UPDATE even with the same bytes); `None` recomputes
/// everything (after a table change) and sends UPDATE only for new bytes.
fn recompute(s: &Scatter, lq: &LiveQuery, st: &mut LiveState, touched: Option<&HashSet<String>>) {
    if st.closed || !st.live {
        return;
    }
    let partial = match touched {
        Some(t) if !lq.limited => Some(t),
        _ => None,
    };
    let rows: Vec<QueryRow> = match partial {
        Some(t) => t.iter().filter_map(|k| served_row(st, k)).collect(),
        None => served_rows(st),
    };
    let merged = match s
        .storage
        .merge_pages(lq.window.clone(), RVec::from(vec![page(rows)]))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(sub = lq.id, error = %e, "live query window not recomputed");
            return;
        }
    };
    let new: HashMap<String, RawValue> = merged
        .rows
        .into_iter()
        .map(|r| (r.key.into_string(), r.value))
        .collect();
    let candidates: Vec<String> = match partial {
        Some(t) => t.iter().cloned().collect(),
        None => st
            .view
            .keys()
            .chain(new.keys())
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect(),
    };
    for k in candidates {
        let was = st.view.get(&k);
        let now = new.get(&k);
        match (was, now) {
            (Some(_), None) => {
                lq.emit(&k, None, ChangeType::Leave);
                st.view.remove(&k);
            }
            (None, Some(v)) => {
                lq.emit(&k, Some(v), ChangeType::Enter);
                st.view.insert(k, v.clone());
            }
            (Some(a), Some(b)) => {
                if a != b || touched.is_some_and(|t| t.contains(&k)) {
                    lq.emit(&k, Some(b), ChangeType::Update);
                    st.view.insert(k, b.clone());
                }
            }
            (None, None) => {}
        }
    }
}

/// Updates from `node` for live queries this node coordinates.
pub(super) fn on_updates(s: &Scatter, node: &str, updates: Vec<WireUpdate>) {
    let mut by_sub: HashMap<u64, Vec<WireUpdate>> = HashMap::new();
    for u in updates {
        by_sub.entry(u.sub).or_default().push(u);
    }
    for (sub, us) in by_sub {
        let Some(lq) = s.live.lock().get(&sub).cloned() else {
            continue;
        };
        let mut st = lq.state.lock();
        let LiveState { nodes, plan, .. } = &mut *st;
        let Some(n) = nodes.get_mut(node) else {
            continue;
        };
        let mut touched = HashSet::new();
        for u in us {
            if u.gen != n.gen {
                continue;
            }
            if n.ready {
                // A key this node does not serve is not news from it.
                if serves(plan.as_ref(), &u.key, node) {
                    touched.insert(u.key.clone());
                }
                apply(&mut n.rows, u);
            } else {
                n.pending.push(u);
            }
        }
        if !touched.is_empty() {
            recompute(s, &lq, &mut st, Some(&touched));
        }
    }
}

fn table_version(s: &Scatter) -> u64 {
    hangar_core::module::partition::PartitionView::version(&*s.table)
}

/// Re-gathers every live query that has its first page when this node's
/// table changes.
pub(super) fn watch_table(s: &Arc<Scatter>) {
    let weak = Arc::downgrade(s);
    tokio::spawn(async move {
        let mut seen = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let Some(s) = weak.upgrade() else { return };
            let v = table_version(&s);
            if seen.replace(v).is_none_or(|old| old == v) {
                continue;
            }
            let all: Vec<Arc<LiveQuery>> = s
                .live
                .lock()
                .values()
                .filter(|lq| lq.state.lock().live)
                .cloned()
                .collect();
            for lq in all {
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = gather(&s, &lq, false).await {
                        tracing::warn!(sub = lq.id, error = %e, "live query not re-gathered");
                    }
                });
            }
        }
    });
}

/// Registrations this node holds for coordinators (its own included).
#[must_use]
pub fn registrations(s: &Scatter) -> usize {
    s.remote.len()
}
