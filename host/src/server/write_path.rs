//! The write pipeline shared by client writes (`handlers::writes`) and
//! writes that peers forward to this node as the owner of their keys
//! (`link`). See docs in `handlers/writes.rs` for the whole path.
//!
//! [`prepare`] routes each op (here, forwarded, or refused), applies the
//! local ops and starts the forwards; it runs in the caller's order, so a
//! connection's writes merge in the order it sent them. [`Pending::finish`]
//! replicates the applied changes at the write's consistency, reports
//! REPLICATED, and gathers one acknowledgement per op, local and forwarded.
//!
//! # Ops that changed nothing
//!
//! An op the storage module reports `Unchanged` (a client resending a batch
//! after a reconnect, a stale op that lost the merge) is acknowledged like
//! any other: it reaches every level its write asked for, as soon as the
//! state it met does. PERSISTED is the storage module's part (it waits for
//! the durability barrier of the state the op saw). REPLICATED is this
//! module's: when the write waits for replication, the key's winning state
//! is shipped along with the write's changes (backups merge it; a copy they
//! hold already changes nothing there), and the unchanged op is reported
//! REPLICATED when the cluster module says that shipment met the write's
//! consistency. Without this, an all-unchanged write shipped nothing, was
//! never reported REPLICATED, and a REPLICATED or PERSISTED write timed out
//! at APPLIED.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster_types::ReplicationRequest;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::RecordState;
use hangar_core::module::storage_types::{AckId, AckResult, ApplyBatch, OpStatus, Origin, WriteOp};
use hangar_core::module::ModuleFuture;
use hangar_core::{partition_of, ConsistencyLevel, KeyedOp, MapOp, ModuleError, WriteConcern};

use super::handlers::status_of;
use crate::factory::Node;

/// One op as it enters the write path: ready to route, or already refused
/// (reason, status code).
pub(crate) type Incoming = Result<WriteOp, (String, u32)>;

/// Where one op went.
#[derive(Debug)]
pub(crate) enum Route {
    /// Refused before or by the storage module.
    Refused { reason: String, code: u32 },
    /// Applied here: index into the acknowledgement list.
    Local(usize),
    /// Forwarded: (group, index within the group).
    Forwarded(usize, usize),
}

type Forward = (RString, usize, ModuleFuture<RVec<AckResult>>);

/// A write after [`prepare`]: applied here, forwards under way.
pub(crate) struct Pending {
    /// One route per op, in order.
    pub routes: Vec<Route>,
    /// One flag per op, in order: true when the op was applied here and
    /// changed nothing (a repeated or stale op; still a success).
    pub unchanged: Vec<bool>,
    acks: Vec<AckId>,
    changes: Vec<KeyedOp>,
    /// Ops applied here that changed nothing, kept only when the write
    /// waits for replication: their winning state is shipped too.
    settled: Vec<KeyedOp>,
    forwards: Vec<Forward>,
    wait_replication: bool,
    durable: bool,
    consistency: Option<ConsistencyLevel>,
    /// How long the acknowledgements may take at most.
    pub safety: Duration,
}

/// A failed acknowledgement.
pub(crate) fn failed(ack: AckId, error: String) -> AckResult {
    AckResult {
        ack,
        success: false,
        achieved: WriteConcern::FireAndForget,
        error: ROption::RSome(error.into()),
    }
}

/// Routes, applies and starts forwarding `ops` written by `origin`.
pub(crate) async fn prepare(
    node: &Arc<Node>,
    ops: Vec<Incoming>,
    origin: &Origin,
    consistency: Option<ConsistencyLevel>,
) -> Pending {
    let view = node.cluster.partition_view();
    let mut routes = Vec::with_capacity(ops.len());
    let mut local: Vec<WriteOp> = Vec::new();
    let mut local_routes: Vec<usize> = Vec::new();
    let mut groups: Vec<(RString, Vec<WriteOp>)> = Vec::new();
    let mut max_local = WriteConcern::FireAndForget;
    let mut max_timeout = node.config.storage.write_ack_timeout_ms;
    for op in ops {
        let wop = match op {
            Ok(w) => w,
            Err((reason, code)) => {
                routes.push(Route::Refused { reason, code });
                continue;
            }
        };
        if let ROption::RSome(t) = wop.timeout_ms {
            max_timeout = max_timeout.max(t);
        }
        let partition = partition_of(&wop.op.key);
        if view.is_local_owner(partition) {
            max_local = max_local.max(wop.concern);
            routes.push(Route::Local(local.len()));
            local_routes.push(routes.len() - 1);
            local.push(wop);
        } else if let ROption::RSome(owner) = view.owner(partition) {
            let g = match groups.iter().position(|(n, _)| *n == owner) {
                Some(g) => g,
                None => {
                    groups.push((owner, Vec::new()));
                    groups.len() - 1
                }
            };
            routes.push(Route::Forwarded(g, groups[g].1.len()));
            groups[g].1.push(wop);
        } else {
            routes.push(Route::Refused {
                reason: format!(
                    "partition {partition} has no owner yet (the cluster is forming); retry later"
                ),
                code: 503,
            });
        }
    }

    // Forwarded sub-batches start now and are awaited with the acks.
    let forwards: Vec<Forward> = groups
        .into_iter()
        .map(|(owner, ops)| {
            let n = ops.len();
            let fut = node.cluster.forward(
                owner.clone(),
                ApplyBatch {
                    ops: ops.into(),
                    origin: origin.clone(),
                    consistency: consistency.into(),
                },
            );
            (owner, n, fut)
        })
        .collect();

    let wait_replication = max_local >= WriteConcern::Replicated;
    let mut acks: Vec<AckId> = Vec::new();
    let mut changes: Vec<KeyedOp> = Vec::new();
    let mut settled: Vec<KeyedOp> = Vec::new();
    let mut unchanged = vec![false; routes.len()];
    if !local.is_empty() {
        let n = local.len();
        // Only a write that waits for replication needs the ops back (for
        // those that change nothing); others skip the copy.
        let mut kept: Vec<Option<KeyedOp>> = if wait_replication {
            local.iter().map(|w| Some(w.op.clone())).collect()
        } else {
            Vec::new()
        };
        let applied = node
            .storage
            .apply(ApplyBatch {
                ops: local.into(),
                origin: origin.clone(),
                consistency: consistency.into(),
            })
            .await;
        match applied {
            Ok(outcomes) if outcomes.len() == n => {
                for (i, (o, &r)) in outcomes.into_iter().zip(&local_routes).enumerate() {
                    if o.status == OpStatus::Unchanged {
                        unchanged[r] = true;
                        if let Some(op) = kept.get_mut(i).and_then(Option::take) {
                            settled.push(op);
                        }
                    }
                    match o.status {
                        OpStatus::Rejected => {
                            let err = o.error.into_option().unwrap_or_else(|| {
                                ModuleError::internal("rejected without a reason")
                            });
                            routes[r] = Route::Refused {
                                reason: err.message.to_string(),
                                code: status_of(&err),
                            };
                        }
                        OpStatus::Applied | OpStatus::Unchanged => {
                            if let ROption::RSome(c) = o.change {
                                changes.push(c);
                            }
                            routes[r] = Route::Local(acks.len());
                            acks.push(o.ack);
                        }
                    }
                }
            }
            Ok(outcomes) => {
                let reason = format!(
                    "storage module returned {} outcomes for {n} ops",
                    outcomes.len()
                );
                tracing::error!("{reason}");
                for &r in &local_routes {
                    routes[r] = Route::Refused {
                        reason: reason.clone(),
                        code: 500,
                    };
                }
            }
            Err(err) => {
                for &r in &local_routes {
                    routes[r] = Route::Refused {
                        reason: err.message.to_string(),
                        code: status_of(&err),
                    };
                }
            }
        }
    }
    let refused = routes
        .iter()
        .filter(|r| matches!(r, Route::Refused { .. }))
        .count();
    if refused > 0 {
        node.metrics
            .counter("hangar_client_ops_rejected_total", &[], refused as f64);
    }
    Pending {
        routes,
        unchanged,
        acks,
        changes,
        settled,
        forwards,
        wait_replication,
        durable: max_local >= WriteConcern::Persisted,
        consistency,
        safety: Duration::from_millis(max_timeout.saturating_add(5_000)),
    }
}

/// The current winning state of the keys of `settled` (ops that changed
/// nothing), as ops a backup can merge: the stored LWW record of each LWW
/// key (the op itself when the key is gone, e.g. pruned), and OR ops as
/// they are. A repeated OR add or remove is itself the winning state of its
/// tag. An add that lost to a tombstone is shipped as is too: a backup that
/// has the tombstone ignores it, and one that lacks it gets the tombstone
/// from the remove's own replication (the OR merge keeps tombstones).
async fn winners(node: &Node, settled: Vec<KeyedOp>) -> Vec<KeyedOp> {
    let mut out = Vec::with_capacity(settled.len());
    let mut lww: Vec<(RString, Vec<KeyedOp>)> = Vec::new();
    for op in settled {
        if matches!(op.op, MapOp::Lww(_)) {
            match lww.iter_mut().find(|(m, _)| *m == op.map) {
                Some((_, ops)) => ops.push(op),
                None => lww.push((op.map.clone(), vec![op])),
            }
        } else {
            out.push(op);
        }
    }
    for (map, ops) in lww {
        let keys: RVec<RString> = ops.iter().map(|o| o.key.clone()).collect();
        let stored = match node.storage.read(map.clone(), keys).await {
            Ok(r) if r.len() == ops.len() => r.into_vec(),
            Ok(_) | Err(_) => Vec::new(),
        };
        for (i, op) in ops.into_iter().enumerate() {
            match stored.get(i).map(|k| &k.state) {
                Some(RecordState::Lww(rec)) => out.push(KeyedOp {
                    map: map.clone(),
                    key: op.key,
                    op: MapOp::Lww(rec.clone()),
                }),
                _ => out.push(op),
            }
        }
    }
    out
}

async fn replicate(
    node: Arc<Node>,
    mut changes: Vec<KeyedOp>,
    settled: Vec<KeyedOp>,
    acks: Vec<AckId>,
    consistency: Option<ConsistencyLevel>,
    durable: bool,
) {
    if !settled.is_empty() {
        changes.extend(winners(&node, settled).await);
    }
    if changes.is_empty() {
        return;
    }
    let out = node
        .cluster
        .replicate(ReplicationRequest {
            changes: changes.into(),
            consistency: consistency.into(),
            durable,
        })
        .await;
    match out {
        Ok(o) if o.success => {
            node.storage
                .notify_acks(acks.into(), WriteConcern::Replicated);
        }
        Ok(o) => tracing::warn!(
            error = %o.error.as_ref().map_or("", |e| e.as_str()),
            "replication did not reach its consistency level"
        ),
        Err(e) => tracing::warn!(error = %e, "replication failed"),
    }
}

impl Pending {
    /// Replicates, then gathers one acknowledgement per op, in order
    /// (refused ops fail with their reason).
    pub(crate) async fn finish(self, node: &Arc<Node>) -> Vec<AckResult> {
        let repl = replicate(
            node.clone(),
            self.changes,
            self.settled,
            self.acks.clone(),
            self.consistency,
            self.durable,
        );
        if self.wait_replication {
            repl.await;
        } else {
            tokio::spawn(repl);
        }
        let acks = self.acks;
        let safety = self.safety;
        let local = async {
            if acks.is_empty() {
                return Vec::new();
            }
            let ids: RVec<AckId> = acks.iter().copied().collect();
            match tokio::time::timeout(safety, node.storage.await_acks(ids)).await {
                Ok(Ok(r)) if r.len() == acks.len() => r.into_vec(),
                Ok(Ok(r)) => {
                    let msg = format!(
                        "storage module returned {} ack results for {} acks",
                        r.len(),
                        acks.len()
                    );
                    acks.iter().map(|&a| failed(a, msg.clone())).collect()
                }
                Ok(Err(e)) => acks.iter().map(|&a| failed(a, e.to_string())).collect(),
                Err(_) => acks
                    .iter()
                    .map(|&a| failed(a, "the storage module did not answer in time".into()))
                    .collect(),
            }
        };
        let remote = futures::future::join_all(self.forwards.into_iter().map(
            |(owner, n, fut)| async move {
                match fut.await {
                    Ok(r) if r.len() == n => r.into_vec(),
                    Ok(r) => (0..n)
                        .map(|_| {
                            failed(
                                0,
                                format!("node {owner} returned {} results for {n} ops", r.len()),
                            )
                        })
                        .collect(),
                    Err(e) => (0..n)
                        .map(|_| failed(0, format!("forwarding to node {owner} failed: {e}")))
                        .collect(),
                }
            },
        ));
        let (local, remote) = futures::join!(local, remote);
        self.routes
            .into_iter()
            .map(|r| match r {
                Route::Refused { reason, .. } => failed(0, reason),
                Route::Local(i) => local[i].clone(),
                Route::Forwarded(g, i) => remote[g][i].clone(),
            })
            .collect()
    }
}
