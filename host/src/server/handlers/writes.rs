//! The write path: `CLIENT_OP` and `OP_BATCH` (ARCHITECTURE.md, "Data flow
//! of a write").
//!
//! ```text
//! ops ─convert─▶ owner of partition(key)?
//!        ├─ this node ──▶ storage.apply ──▶ outcomes (MEMORY, APPLIED reached)
//!        │                    └─ applied changes ─▶ cluster.replicate ─▶ notify_acks(REPLICATED)
//!        └─ another node ─▶ cluster.forward(owner) ─▶ that node's ack results
//! storage.await_acks(ids) ─▶ OP_ACK {lastId, achievedLevel, results[]}
//! ```
//!
//! Conversion and apply run in the reader, in frame order, so a
//! connection's writes are merged in the order it sent them. Waiting for
//! the acknowledgements is spawned (bounded by the connection's in-flight
//! slots), so a slow PERSISTED write does not hold up the frames behind it.
//!
//! Replication is started for every applied change (the cluster module
//! keeps its Merkle trees current from it). When some op asks for
//! REPLICATED or more, the acknowledgements are awaited only after the
//! replication outcome was reported to the storage module; otherwise
//! replication runs beside the acknowledgement.
//!
//! Answers: a `CLIENT_OP` that cannot be applied gets `OP_REJECTED {opId,
//! reason, code}`; otherwise `OP_ACK` with one result. An `OP_BATCH` gets one
//! `OP_ACK` whose `results` hold every op in order, refused ones with
//! `success: false` and their reason. `achievedLevel` is the lowest level
//! any op of the write reached (FIRE_AND_FORGET for a refused op).
//! Client timestamps and OR tags are kept as sent: the client is a CRDT
//! replica and the merge is by timestamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString, RVec};
use axum::body::Bytes;
use hangar_core::module::cluster_types::ReplicationRequest;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::{AckId, AckResult, ApplyBatch, OpStatus, Origin, WriteOp};
use hangar_core::{partition_of, KeyedOp, MapOp, ModuleError, WriteConcern};

use super::{admit, status_of};
use crate::protocol::messages::{ClientOp, OpBatch, OpRejected, OpResult};
use crate::protocol::{fast, parse_write_concern, Message};
use crate::server::outbound::Outbound;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// How the write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `CLIENT_OP`: `OP_REJECTED` or an `OP_ACK` with one result.
    Single,
    /// `OP_BATCH`: one `OP_ACK` with every result.
    Batch,
    /// No answer (`ORMAP_PUSH_DIFF`).
    Silent,
}

/// Where one op of the write went.
#[derive(Debug)]
enum Route {
    /// Refused before reaching a module, or by the storage module.
    Refused { reason: String, code: u32 },
    /// Applied here: index into the acknowledgement list.
    Local(usize),
    /// Forwarded: (group, index within the group).
    Forwarded(usize, usize),
}

#[derive(Debug)]
struct Entry {
    id: String,
    route: Route,
}

/// A write as the client sent it, ready to convert.
pub(super) struct Write {
    pub ops: Vec<ClientOp>,
    pub concern: Option<String>,
    pub timeout: Option<u64>,
    pub shape: Shape,
}

/// `CLIENT_OP`.
pub async fn client_op(fe: &Arc<FrontEnd>, s: &mut Session, op: ClientOp) {
    write(
        fe,
        s,
        Write {
            ops: vec![op],
            concern: None,
            timeout: None,
            shape: Shape::Single,
        },
    )
    .await;
}

/// `OP_BATCH`.
pub async fn op_batch(fe: &Arc<FrontEnd>, s: &mut Session, b: OpBatch) {
    write(
        fe,
        s,
        Write {
            ops: b.ops,
            concern: b.write_concern,
            timeout: b.timeout,
            shape: Shape::Batch,
        },
    )
    .await;
}

fn kind_label(op: &MapOp) -> &'static str {
    match op {
        MapOp::Lww(r) if r.is_tombstone() => "REMOVE",
        MapOp::Lww(_) => "PUT",
        MapOp::OrAdd(_) => "OR_ADD",
        MapOp::OrRemove(_) => "OR_REMOVE",
    }
}

/// Runs a write: convert, route, apply, then spawn the acknowledgement.
pub(super) async fn write(fe: &Arc<FrontEnd>, s: &mut Session, w: Write) {
    let started = Instant::now();
    let Some(permit) = admit(fe, s) else { return };
    let node = &fe.node;
    let metrics = &node.metrics;
    let origin = Origin::client(s.id, &node.config.node_id);
    let view = node.cluster.partition_view();
    let last_id = w
        .ops
        .last()
        .and_then(|o| o.id.clone())
        .unwrap_or_else(|| "unknown".to_string());

    let mut entries = Vec::with_capacity(w.ops.len());
    let mut local: Vec<WriteOp> = Vec::new();
    let mut local_entries: Vec<usize> = Vec::new();
    let mut groups: Vec<(RString, Vec<WriteOp>)> = Vec::new();
    let mut max_local = WriteConcern::FireAndForget;
    let mut max_timeout = node.config.storage.write_ack_timeout_ms;
    for op in w.ops {
        let id = op.id.clone().unwrap_or_default();
        let concern = op
            .own_write_concern()
            .unwrap_or_else(|| parse_write_concern(w.concern.as_deref()));
        let timeout = op.timeout.or(w.timeout);
        if let Some(t) = timeout {
            max_timeout = max_timeout.max(t);
        }
        let refused = |reason: String, code: u32| Entry {
            id: id.clone(),
            route: Route::Refused { reason, code },
        };
        if op.map_name.is_empty() || op.key.is_empty() {
            entries.push(refused(
                "mapName and key must be non-empty strings".into(),
                400,
            ));
            continue;
        }
        let keyed: KeyedOp = match op.into_keyed_op(|| node.clock.now()) {
            Ok(k) => k,
            Err(e) => {
                entries.push(refused(e.to_string(), 400));
                continue;
            }
        };
        metrics.counter(
            "hangar_client_ops_total",
            &[("type", kind_label(&keyed.op))],
            1.0,
        );
        let partition = partition_of(&keyed.key);
        let wop = WriteOp {
            op: keyed,
            concern,
            timeout_ms: timeout.into(),
        };
        if view.is_local_owner(partition) {
            max_local = max_local.max(concern);
            entries.push(Entry {
                id,
                route: Route::Local(local.len()),
            });
            local_entries.push(entries.len() - 1);
            local.push(wop);
        } else if let ROption::RSome(owner) = view.owner(partition) {
            let g = match groups.iter().position(|(n, _)| *n == owner) {
                Some(g) => g,
                None => {
                    groups.push((owner, Vec::new()));
                    groups.len() - 1
                }
            };
            entries.push(Entry {
                id,
                route: Route::Forwarded(g, groups[g].1.len()),
            });
            groups[g].1.push(wop);
        } else {
            entries.push(refused(
                format!("partition {partition} has no owner at the moment; retry later"),
                503,
            ));
        }
    }

    // Forwarded sub-batches start now and are awaited with the acks.
    let forwards: Vec<_> = groups
        .into_iter()
        .map(|(owner, ops)| {
            let n = ops.len();
            let fut = node.cluster.forward(
                owner.clone(),
                ApplyBatch {
                    ops: ops.into(),
                    origin: origin.clone(),
                },
            );
            (owner, n, fut)
        })
        .collect();

    // Local apply, in frame order.
    let mut acks: Vec<AckId> = Vec::new();
    let mut ack_entry: Vec<usize> = Vec::new();
    let mut changes: Vec<KeyedOp> = Vec::new();
    if !local.is_empty() {
        let n = local.len();
        let applied = node
            .storage
            .apply(ApplyBatch {
                ops: local.into(),
                origin: origin.clone(),
            })
            .await;
        match applied {
            Ok(outcomes) if outcomes.len() == n => {
                for (o, &e) in outcomes.into_iter().zip(&local_entries) {
                    match o.status {
                        OpStatus::Rejected => {
                            let err = o.error.into_option().unwrap_or_else(|| {
                                ModuleError::internal("rejected without a reason")
                            });
                            entries[e].route = Route::Refused {
                                reason: err.message.to_string(),
                                code: status_of(&err),
                            };
                        }
                        OpStatus::Applied | OpStatus::Unchanged => {
                            if let ROption::RSome(c) = o.change {
                                changes.push(c);
                            }
                            entries[e].route = Route::Local(acks.len());
                            acks.push(o.ack);
                            ack_entry.push(e);
                        }
                    }
                }
            }
            Ok(outcomes) => {
                let reason = format!(
                    "storage module returned {} outcomes for {n} ops",
                    outcomes.len()
                );
                tracing::error!(conn = s.id, "{reason}");
                for &e in &local_entries {
                    entries[e].route = Route::Refused {
                        reason: reason.clone(),
                        code: 500,
                    };
                }
            }
            Err(err) => {
                for &e in &local_entries {
                    entries[e].route = Route::Refused {
                        reason: err.message.to_string(),
                        code: status_of(&err),
                    };
                }
            }
        }
    }
    let refused_n = entries
        .iter()
        .filter(|e| matches!(e.route, Route::Refused { .. }))
        .count();
    if refused_n > 0 {
        #[allow(clippy::cast_precision_loss)]
        metrics.counter("hangar_client_ops_rejected_total", &[], refused_n as f64);
    }

    // A single op refused outright: OP_REJECTED at once, nothing to await.
    if w.shape == Shape::Single {
        if let Some(Entry {
            id,
            route: Route::Refused { reason, code },
        }) = entries.first()
        {
            let msg = Message::OpRejected {
                payload: OpRejected {
                    op_id: id.clone(),
                    reason: reason.clone(),
                    code: Some(*code),
                },
            };
            s.reply(&msg).await;
            return;
        }
    }

    // Wait for a free slot of this connection (backpressure on it alone),
    // then hand the acknowledgement to its own task.
    let Ok(slot) = s.ack_slots.clone().acquire_owned().await else {
        return;
    };
    let job = AckJob {
        fe: fe.clone(),
        out: s.out.clone(),
        entries,
        acks,
        changes,
        forwards,
        wait_replication: max_local >= WriteConcern::Replicated,
        safety: Duration::from_millis(max_timeout.saturating_add(5_000)),
        last_id,
        shape: w.shape,
        started,
    };
    let guard = fe.drain.guard();
    tokio::spawn(async move {
        job.run().await;
        drop(slot);
        drop(permit);
        drop(guard);
    });
}

type Forward = (
    RString,
    usize,
    hangar_core::module::ModuleFuture<RVec<AckResult>>,
);

struct AckJob {
    fe: Arc<FrontEnd>,
    out: Outbound,
    entries: Vec<Entry>,
    acks: Vec<AckId>,
    changes: Vec<KeyedOp>,
    forwards: Vec<Forward>,
    wait_replication: bool,
    safety: Duration,
    last_id: String,
    shape: Shape,
    started: Instant,
}

fn failed(ack: AckId, error: String) -> AckResult {
    AckResult {
        ack,
        success: false,
        achieved: WriteConcern::FireAndForget,
        error: ROption::RSome(error.into()),
    }
}

impl AckJob {
    async fn replicate(fe: Arc<FrontEnd>, changes: Vec<KeyedOp>, acks: Vec<AckId>) {
        if changes.is_empty() {
            return;
        }
        let out = fe
            .node
            .cluster
            .replicate(ReplicationRequest {
                changes: changes.into(),
                consistency: ROption::RNone,
            })
            .await;
        match out {
            Ok(o) if o.success => {
                fe.node
                    .storage
                    .notify_acks(acks.into(), WriteConcern::Replicated);
            }
            Ok(o) => tracing::warn!(
                error = %o.error.as_ref().map_or("", |e| e.as_str()),
                "replication did not reach its consistency level"
            ),
            Err(e) => tracing::warn!(error = %e, "replication failed"),
        }
    }

    async fn run(self) {
        let fe = self.fe.clone();
        let node = &fe.node;
        let repl = Self::replicate(fe.clone(), self.changes, self.acks.clone());
        if self.wait_replication {
            repl.await;
        } else {
            tokio::spawn(repl);
        }
        let local = async {
            if self.acks.is_empty() {
                return Vec::new();
            }
            let ids: RVec<AckId> = self.acks.iter().copied().collect();
            match tokio::time::timeout(self.safety, node.storage.await_acks(ids)).await {
                Ok(Ok(r)) if r.len() == self.acks.len() => r.into_vec(),
                Ok(Ok(r)) => {
                    let msg = format!(
                        "storage module returned {} ack results for {} acks",
                        r.len(),
                        self.acks.len()
                    );
                    self.acks.iter().map(|&a| failed(a, msg.clone())).collect()
                }
                Ok(Err(e)) => self
                    .acks
                    .iter()
                    .map(|&a| failed(a, e.to_string()))
                    .collect(),
                Err(_) => self
                    .acks
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

        let results: Vec<OpResult> = self
            .entries
            .into_iter()
            .map(|e| {
                let (success, achieved, error) = match e.route {
                    Route::Refused { reason, .. } => {
                        (false, WriteConcern::FireAndForget, Some(reason))
                    }
                    Route::Local(i) => {
                        let r = &local[i];
                        (
                            r.success,
                            r.achieved,
                            r.error.clone().map(|e| e.into_string()).into_option(),
                        )
                    }
                    Route::Forwarded(g, i) => {
                        let r = &remote[g][i];
                        (
                            r.success,
                            r.achieved,
                            r.error.clone().map(|e| e.into_string()).into_option(),
                        )
                    }
                };
                OpResult {
                    op_id: e.id,
                    success,
                    achieved_level: achieved,
                    error,
                }
            })
            .collect();
        let level = results
            .iter()
            .map(|r| r.achieved_level)
            .min()
            .unwrap_or(WriteConcern::FireAndForget);
        let failures = results.iter().filter(|r| !r.success).count();
        let metrics = &node.metrics;
        metrics.observe(
            "hangar_write_latency_seconds",
            &[],
            self.started.elapsed().as_secs_f64(),
        );
        if failures > 0 {
            #[allow(clippy::cast_precision_loss)]
            metrics.counter("hangar_client_ops_failed_total", &[], failures as f64);
        }
        if self.shape == Shape::Silent {
            return;
        }
        let mut buf = Vec::with_capacity(64 + 48 * results.len());
        fast::write_op_ack(&mut buf, &self.last_id, Some(level), Some(&results));
        self.out.send(Bytes::from(buf)).await;
    }
}
