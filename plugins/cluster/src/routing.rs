//! Routing: writes forwarded to the owner of their keys, change events for
//! nodes that hold no copy of a partition, and topic messages ordered by
//! their topic's sequencer.
//!
//! - **Forwarding.** A write is sent to the owner the table names. When the
//!   owner cannot be reached (it died, the table is moving), the write waits
//!   for the next table and is routed again, until its deadline: a client
//!   never hears "not the owner". A node receiving a forwarded write routes
//!   the ops it does not own once more, at most [`MAX_HOPS`] times (tables
//!   converge in milliseconds; the bound stops a loop between two nodes that
//!   disagree for longer).
//! - **Events.** The owner of a partition sends each change it applies (a
//!   client or forwarded write, TTL expiry) to the live nodes that hold no
//!   copy of the partition, batched per node, so `SERVER_EVENT` subscribers
//!   on every node see it; backups see it by applying the replicated change.
//! - **Topics.** The owner of `partition_of(topic)` sequences the topic: it
//!   numbers each message, delivers it locally and broadcasts it to every
//!   other live node over one ordered connection each, so every subscriber
//!   sees one order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::local_node::{LocalNode, TopicPublish};
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::module::storage_types::{AckResult, ApplyBatch, ChangeEvent, Origin, OriginKind};
use hangar_core::{partition_of, ErrorKind, KeyedOp, ModuleError, ModuleResult};
use parking_lot::Mutex;

use crate::membership::{Membership, PeerHealth};
use crate::partition_table::PartitionTable;
use crate::transport::{Channel, Transport, TransportError};
use crate::wire::{self, ControlMessage, Events, Forward, ForwardReply, Topic, WireAck};

/// Times a write may be forwarded before it is refused as a routing loop.
pub const MAX_HOPS: u8 = 3;

/// Routes writes, events and topic messages.
pub struct Router {
    node_id: String,
    metrics: Arc<dyn MetricsSink>,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    table: Arc<PartitionTable>,
    node: Option<Arc<dyn LocalNode>>,
    default_timeout: Duration,
    events: Mutex<HashMap<SocketAddr, Vec<(KeyedOp, Origin)>>>,
    topic_seq: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

fn unavailable(msg: String) -> ModuleError {
    ModuleError::new(ErrorKind::UNAVAILABLE, msg)
}

fn retryable(e: &TransportError) -> bool {
    !matches!(
        e,
        TransportError::Remote(_) | TransportError::FrameTooLarge { .. }
    )
}

impl Router {
    /// A router for this node.
    #[must_use]
    pub fn new(
        node_id: &str,
        transport: Arc<Transport>,
        membership: Arc<Membership>,
        table: Arc<PartitionTable>,
        node: Option<Arc<dyn LocalNode>>,
        default_timeout: Duration,
        metrics: Arc<dyn MetricsSink>,
    ) -> Arc<Self> {
        let r = Arc::new(Self {
            node_id: node_id.to_string(),
            metrics,
            transport,
            membership,
            table,
            node,
            default_timeout,
            events: Mutex::new(HashMap::new()),
            topic_seq: Mutex::new(HashMap::new()),
        });
        let flusher = Arc::downgrade(&r);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(r) = flusher.upgrade() else { return };
                r.flush_events();
            }
        });
        r
    }

    /// The transport address of a live node.
    fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.membership.with_peers(|peers| {
            peers
                .get(node)
                .filter(|p| p.health != PeerHealth::Failed)
                .map(|p| p.addr)
        })
    }

    fn local(&self) -> ModuleResult<&Arc<dyn LocalNode>> {
        self.node.as_ref().ok_or_else(|| {
            unavailable("this node's host is not attached to the cluster module".into())
        })
    }

    /// Sends `batch` to `owner` and resolves with its acknowledgements,
    /// routing again while the owner cannot be reached (see the module doc).
    ///
    /// # Errors
    /// When no owner could be reached before the write's deadline, or the
    /// owner refused the batch as a whole.
    pub async fn forward(
        self: &Arc<Self>,
        owner: String,
        batch: ApplyBatch,
        hops: u8,
    ) -> ModuleResult<RVec<AckResult>> {
        let timeout = batch
            .ops
            .iter()
            .filter_map(|o| o.timeout_ms.into_option())
            .max()
            .map_or(self.default_timeout, Duration::from_millis);
        let deadline = Instant::now() + timeout;
        let mut owner = owner;
        let mut last = String::from("no attempt");
        loop {
            if owner == self.node_id {
                return self.local()?.write(batch).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "the owner of these keys could not be reached within {timeout:?}: {last}"
                )));
            }
            if let Some(addr) = self.addr_of(&owner) {
                let body = wire::encode(&Forward::from_batch(&batch, hops));
                self.metrics.counter(
                    "hangar_cluster_forwarded_ops_total",
                    &[("direction", "sent")],
                    batch.ops.len() as f64,
                );
                match self
                    .transport
                    .request(addr, Channel::Forward, body, left + Duration::from_secs(1))
                    .await
                {
                    Ok(reply) => {
                        let acks: ForwardReply =
                            wire::decode(&reply, "forward reply").map_err(ModuleError::internal)?;
                        if acks.len() != batch.ops.len() {
                            return Err(ModuleError::internal(format!(
                                "node {owner} answered {} results for {} ops",
                                acks.len(),
                                batch.ops.len()
                            )));
                        }
                        return Ok(wire::into_results(acks));
                    }
                    Err(e) if retryable(&e) => last = format!("node {owner}: {e}"),
                    Err(e) => return Err(unavailable(format!("node {owner}: {e}"))),
                }
            } else {
                last = format!("node {owner} is not a live member");
            }
            // Wait for the table to move on (or a short while), then re-route.
            let seen = self.table.version();
            let wait_until = Instant::now() + Duration::from_millis(250);
            while self.table.version() == seen && Instant::now() < wait_until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let owners: Vec<Option<RString>> = batch
                .ops
                .iter()
                .map(|o| self.table.owner(partition_of(&o.op.key)).into_option())
                .collect();
            match owners.first().cloned().flatten() {
                Some(o) if owners.iter().all(|x| x.as_ref() == Some(&o)) => owner = o.into(),
                _ => return self.split_forward(batch, hops, deadline).await,
            }
        }
    }

    /// Forwards each op of `batch` to its own owner (after a table change
    /// split a group), and puts the results back in order.
    async fn split_forward(
        self: &Arc<Self>,
        batch: ApplyBatch,
        hops: u8,
        deadline: Instant,
    ) -> ModuleResult<RVec<AckResult>> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, o) in batch.ops.iter().enumerate() {
            let owner = self
                .table
                .owner(partition_of(&o.op.key))
                .into_option()
                .map_or_else(String::new, Into::into);
            match groups.iter_mut().find(|(g, _)| *g == owner) {
                Some((_, v)) => v.push(i),
                None => groups.push((owner, vec![i])),
            }
        }
        let mut out: Vec<Option<AckResult>> = vec![None; batch.ops.len()];
        let futs = groups.into_iter().map(|(owner, idx)| {
            let sub = ApplyBatch {
                ops: idx.iter().map(|&i| batch.ops[i].clone()).collect(),
                origin: batch.origin.clone(),
                consistency: batch.consistency,
            };
            let me = self.clone();
            async move {
                if owner.is_empty() || Instant::now() >= deadline {
                    let e = unavailable("no owner is known for this partition; retry".into());
                    return (idx, Err(e));
                }
                (idx, Box::pin(me.forward(owner, sub, hops)).await)
            }
        });
        for (idx, r) in futures::future::join_all(futs).await {
            match r {
                Ok(acks) => {
                    for (k, a) in idx.into_iter().zip(acks) {
                        out[k] = Some(a);
                    }
                }
                Err(e) => {
                    for k in idx {
                        out[k] = Some(AckResult {
                            ack: 0,
                            success: false,
                            achieved: hangar_core::WriteConcern::FireAndForget,
                            error: ROption::RSome(e.message.clone()),
                        });
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|a| a.expect("every op routed"))
            .collect())
    }

    /// A forwarded write arrived: run the ops this node owns through the
    /// host, route the others again (bounded by [`MAX_HOPS`]).
    ///
    /// # Errors
    /// The text travels back to the forwarding node.
    pub async fn on_forward(self: &Arc<Self>, f: Forward) -> Result<ForwardReply, String> {
        let hops = f.hops;
        let batch = f.into_batch();
        self.metrics.counter(
            "hangar_cluster_forwarded_ops_total",
            &[("direction", "received")],
            batch.ops.len() as f64,
        );
        let mine = batch
            .ops
            .iter()
            .all(|o| self.table.is_local_owner(partition_of(&o.op.key)));
        let acks = if mine {
            self.local().map_err(|e| e.to_string())?.write(batch).await
        } else if hops >= MAX_HOPS {
            return Err(format!(
                "routing loop: the write was forwarded {hops} times and no node owns it yet; retry"
            ));
        } else {
            self.split_forward(batch, hops + 1, Instant::now() + self.default_timeout)
                .await
        };
        acks.map(|a| a.iter().map(WireAck::from).collect())
            .map_err(|e| e.to_string())
    }

    /// One change applied here: queue it for the live nodes that hold no
    /// copy of its partition, when this node applied it as the owner.
    pub fn observe(&self, event: &ChangeEvent) {
        if !matches!(event.origin.kind, OriginKind::Client | OriginKind::Internal) {
            return;
        }
        let p = partition_of(&event.op.key);
        if !self.table.is_local_owner(p) {
            return;
        }
        let holders = self.table.backups(p);
        // Called for every applied change: borrow the peers, do not copy them.
        self.membership.with_peers(|peers| {
            let mut ev = self.events.lock();
            for peer in peers.values() {
                if peer.is_local
                    || peer.health != PeerHealth::Alive
                    || holders.iter().any(|h| h.as_str() == peer.node_id)
                {
                    continue;
                }
                ev.entry(peer.addr)
                    .or_default()
                    .push((event.op.clone(), event.origin.clone()));
            }
        });
    }

    fn flush_events(&self) {
        let batches: Vec<(SocketAddr, Vec<(KeyedOp, Origin)>)> = self
            .events
            .lock()
            .drain()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (addr, changes) in batches {
            let body = wire::encode(&wire::QueryMessage::Events(Events { changes }));
            if let Err(e) = self.transport.try_send(addr, Channel::Query, body) {
                tracing::debug!(peer = %addr, error = %e, "change events dropped");
            }
        }
    }

    /// Change events from the owner of their partitions.
    pub fn on_events(&self, events: Events) {
        let Ok(node) = self.local() else { return };
        for (op, origin) in events.changes {
            node.deliver_change(&ChangeEvent { op, origin });
        }
    }

    /// Publishes a topic message (see the module doc).
    ///
    /// # Errors
    /// When the sequencer cannot be reached before the default timeout.
    pub async fn publish(self: &Arc<Self>, message: TopicPublish) -> ModuleResult<()> {
        let deadline = Instant::now() + self.default_timeout;
        loop {
            let p = partition_of(&message.topic);
            let sequencer = self.table.owner(p).into_option();
            match sequencer {
                None => {
                    // No table yet: this node alone delivers.
                    self.local()?.deliver_topic(&message);
                    return Ok(());
                }
                Some(s) if s.as_str() == self.node_id => {
                    self.sequence(message);
                    return Ok(());
                }
                Some(s) => {
                    let err = match self.addr_of(&s) {
                        Some(addr) => {
                            let body = wire::encode(&ControlMessage::Topic(Topic::Publish(
                                message.clone(),
                            )));
                            match self
                                .transport
                                .request(addr, Channel::Control, body, self.default_timeout)
                                .await
                            {
                                Ok(_) => return Ok(()),
                                Err(e) => e.to_string(),
                            }
                        }
                        None => format!("sequencer {s} is not live"),
                    };
                    if Instant::now() >= deadline {
                        return Err(unavailable(format!(
                            "topic {}: the sequencer could not be reached: {err}",
                            message.topic
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// This node sequences `message`: number it, deliver it here, send it
    /// to every other live node.
    pub fn sequence(&self, mut message: TopicPublish) {
        let targets: Vec<SocketAddr> = self
            .membership
            .peers()
            .values()
            .filter(|p| !p.is_local && p.health != PeerHealth::Failed)
            .map(|p| p.addr)
            .collect();
        // Numbering, local delivery and queueing happen under one lock, so
        // every node receives the topic's messages in sequence order.
        let mut seqs = self.topic_seq.lock();
        let seq = seqs.entry(message.topic.to_string()).or_insert(0);
        *seq += 1;
        message.sequence = *seq;
        if let Ok(n) = self.local() {
            n.deliver_topic(&message);
        }
        let body = wire::encode(&ControlMessage::Topic(Topic::Deliver(vec![message])));
        for addr in targets {
            if let Err(e) = self
                .transport
                .try_send(addr, Channel::Control, body.clone())
            {
                tracing::warn!(peer = %addr, error = %e, "topic message not delivered to a node");
            }
        }
    }

    /// Topic messages from a sequencer.
    pub fn on_deliver(&self, messages: Vec<TopicPublish>) {
        let Ok(node) = self.local() else { return };
        for m in &messages {
            node.deliver_topic(m);
        }
    }
}
