//! The write pipeline shared by client writes (`handlers::writes`) and
//! writes that peers forward to this node as the owner of their keys
//! (`link`). See docs in `handlers/writes.rs` for the whole path.
//!
//! [`prepare`] routes each op (here, forwarded, or refused), applies the
//! local ops and starts the forwards; it runs in the caller's order, so a
//! connection's writes merge in the order it sent them. [`Pending::finish`]
//! replicates the applied changes at the write's consistency, reports
//! REPLICATED, and gathers one acknowledgement per op, local and forwarded.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster_types::ReplicationRequest;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::{AckId, AckResult, ApplyBatch, OpStatus, Origin, WriteOp};
use hangar_core::module::ModuleFuture;
use hangar_core::{partition_of, ConsistencyLevel, KeyedOp, ModuleError, WriteConcern};

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
    acks: Vec<AckId>,
    changes: Vec<KeyedOp>,
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

    let mut acks: Vec<AckId> = Vec::new();
    let mut changes: Vec<KeyedOp> = Vec::new();
    if !local.is_empty() {
        let n = local.len();
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
                for (o, &r) in outcomes.into_iter().zip(&local_routes) {
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
        #[allow(clippy::cast_precision_loss)]
        node.metrics
            .counter("hangar_client_ops_rejected_total", &[], refused as f64);
    }
    Pending {
        routes,
        acks,
        changes,
        forwards,
        wait_replication: max_local >= WriteConcern::Replicated,
        durable: max_local >= WriteConcern::Persisted,
        consistency,
        safety: Duration::from_millis(max_timeout.saturating_add(5_000)),
    }
}

async fn replicate(
    node: Arc<Node>,
    changes: Vec<KeyedOp>,
    acks: Vec<AckId>,
    consistency: Option<ConsistencyLevel>,
    durable: bool,
) {
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
