//! The write path: `CLIENT_OP` and `OP_BATCH`. The pipeline itself
//! (routing, apply, replication, acknowledgements) is
//! `crate::server::write_path`, shared with writes forwarded from peers.
//!
//! ```text
//! ops ─convert─▶ owner of partition(key)?
//!        ├─ this node ──▶ storage.apply ──▶ outcomes (MEMORY, APPLIED reached)
//!        │                    └─ applied changes ─▶ cluster.replicate ─▶ notify_acks(REPLICATED)
//!        └─ another node ─▶ cluster.forward(owner) ─▶ that node's ack results
//! storage.await_acks(ids) ─▶ OP_ACK {lastId, achievedLevel, results[]}
//! ```
//!
//! The replication consistency comes from the op's or the batch's optional
//! `consistency` field (`EVENTUAL`, `QUORUM`, `STRONG`), else the cluster
//! module's configuration (per map, then the default).
//!
//! Conversion and apply run in the reader, in frame order, so a
//! connection's writes are merged in the order it sent them. Waiting for
//! the acknowledgements is spawned (bounded by the connection's in-flight
//! slots), so a slow PERSISTED write does not hold up the frames behind it.
//!
//! Replication is started for every applied change. When some op asks for
//! REPLICATED or more, the acknowledgements are awaited only after the
//! replication outcome was reported to the storage module; otherwise
//! replication runs beside the acknowledgement.
//!
//! Answers: a `CLIENT_OP` that cannot be applied gets `OP_REJECTED {opId,
//! reason, code}`; otherwise `OP_ACK` with one result. An `OP_BATCH` gets one
//! `OP_ACK` whose `results` hold every op in order, refused ones with
//! `success: false` and their reason. `achievedLevel` is the lowest level
//! any op of the write reached (FIRE_AND_FORGET for a refused op). An op
//! that was merged but changed nothing (resent, or stale) is a success with
//! `unchanged: true`, acknowledged at every level its write asked for as
//! soon as the state it met is (see `write_path`).
//! Client timestamps and OR tags are kept as sent: the client is a CRDT
//! replica and the merge is by timestamp.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage_types::{Origin, WriteOp};
use hangar_core::{KeyedOp, MapOp, WriteConcern};

use super::admit;
use crate::factory::Node;
use crate::protocol::messages::{ClientOp, OpBatch, OpRejected, OpResult};
use crate::protocol::{fast, parse_consistency, parse_write_concern, Message};
use crate::server::counters::RESERVED_MAP_PREFIX;
use crate::server::outbound::Outbound;
use crate::server::session::Session;
use crate::server::state::FrontEnd;
use crate::server::write_path::{self, Incoming, Pending, Route};

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

/// A write as the client sent it, ready to convert.
pub(super) struct Write {
    pub ops: Vec<ClientOp>,
    pub concern: Option<String>,
    pub timeout: Option<u64>,
    pub consistency: Option<String>,
    pub shape: Shape,
}

/// `CLIENT_OP`.
pub async fn client_op(fe: &Arc<FrontEnd>, s: &mut Session, op: ClientOp) {
    let consistency = op.consistency.clone();
    write(
        fe,
        s,
        Write {
            ops: vec![op],
            concern: None,
            timeout: None,
            consistency,
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
            consistency: b.consistency,
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

/// A write's ops converted for the write path.
pub(crate) struct Converted {
    /// Each op's id (empty when it had none), in order.
    pub ids: Vec<String>,
    /// Each op ready to route, or refused with its reason and code.
    pub incoming: Vec<Incoming>,
    /// The write's replication consistency (`None` when it named none or
    /// named an unknown one; the ops then carry the refusal).
    pub consistency: Option<hangar_core::ConsistencyLevel>,
    /// The id of the last op, or "unknown" (what `OP_ACK.lastId` carries).
    pub last_id: String,
}

/// Converts client ops for the write path: checks names (non-empty, not
/// reserved) and consistency names, and turns each op into a core write.
/// Shared by the WebSocket writes and `POST /sync`.
pub(crate) fn convert(
    node: &Node,
    ops: Vec<ClientOp>,
    concern: Option<&str>,
    timeout: Option<u64>,
    consistency: Option<&str>,
) -> Converted {
    let metrics = &node.metrics;
    let last_id = ops
        .last()
        .and_then(|o| o.id.clone())
        .unwrap_or_else(|| "unknown".to_string());
    let consistency = parse_consistency(consistency);
    let mut ids = Vec::with_capacity(ops.len());
    let mut incoming: Vec<Incoming> = Vec::with_capacity(ops.len());
    for op in ops {
        ids.push(op.id.clone().unwrap_or_default());
        let concern = op
            .own_write_concern()
            .unwrap_or_else(|| parse_write_concern(concern));
        let timeout = op.timeout.or(timeout);
        if op.map_name.is_empty() || op.key.is_empty() {
            incoming.push(Err((
                "mapName and key must be non-empty strings".into(),
                400,
            )));
            continue;
        }
        if op.map_name.starts_with(RESERVED_MAP_PREFIX) {
            incoming.push(Err((
                format!(
                    "map {:?} is reserved: names starting with {RESERVED_MAP_PREFIX} hold the node's own state (PN counters); use another name",
                    op.map_name
                ),
                403,
            )));
            continue;
        }
        if let Err(e) = &consistency {
            incoming.push(Err((e.clone(), 400)));
            continue;
        }
        if let Err(e) = parse_consistency(op.consistency.as_deref()) {
            incoming.push(Err((e, 400)));
            continue;
        }
        let keyed: KeyedOp = match op.into_keyed_op(|| node.clock.now()) {
            Ok(k) => k,
            Err(e) => {
                incoming.push(Err((e.to_string(), 400)));
                continue;
            }
        };
        metrics.counter(
            "hangar_client_ops_total",
            &[("type", kind_label(&keyed.op))],
            1.0,
        );
        incoming.push(Ok(WriteOp {
            op: keyed,
            concern,
            timeout_ms: timeout.into(),
        }));
    }
    Converted {
        ids,
        incoming,
        consistency: consistency.unwrap_or(None),
        last_id,
    }
}

/// Runs a write: convert, route, apply, then spawn the acknowledgement.
pub(super) async fn write(fe: &Arc<FrontEnd>, s: &mut Session, w: Write) {
    let started = Instant::now();
    let Some(permit) = admit(fe, s) else { return };
    let node = &fe.node;
    let origin = Origin::client(s.id, &node.config.node_id);
    let Converted {
        ids,
        incoming,
        consistency,
        last_id,
    } = convert(
        node,
        w.ops,
        w.concern.as_deref(),
        w.timeout,
        w.consistency.as_deref(),
    );
    let pending = write_path::prepare(node, incoming, &origin, consistency).await;

    // A single op refused outright: OP_REJECTED at once, nothing to await.
    if w.shape == Shape::Single {
        if let Some(Route::Refused { reason, code }) = pending.routes.first() {
            let msg = Message::OpRejected {
                payload: OpRejected {
                    op_id: ids[0].clone(),
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
        ids,
        pending,
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

struct AckJob {
    fe: Arc<FrontEnd>,
    out: Outbound,
    ids: Vec<String>,
    pending: Pending,
    last_id: String,
    shape: Shape,
    started: Instant,
}

impl AckJob {
    async fn run(self) {
        let node = &self.fe.node;
        let unchanged = self.pending.unchanged.clone();
        let acks = self.pending.finish(node).await;
        let results: Vec<OpResult> = self
            .ids
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
