//! The replication pipeline: every change an owner applies is shipped to the
//! backups of its partition, batched per backup, and acknowledged at the
//! consistency the write asked for.
//!
//! - One queue and one sender task per backup node. The sender takes
//!   whatever is queued (up to `batch_size` changes) into one `Replicate`
//!   request, with up to [`IN_FLIGHT`] requests outstanding per backup, and
//!   retries a failed batch `max_retries` times. The request is encoded
//!   from the queued changes in place (no copy of them).
//! - Memory per backup is bounded in changes, not in writes:
//!   `queue_size_limit` changes may be queued or in flight at once (a write
//!   larger than the limit takes all of it). A write that cannot get room
//!   within `ack_timeout_ms` is not shipped: counted in
//!   `hangar_replication_dropped_total`, and anti-entropy repair brings the
//!   backup back in line. So an EVENTUAL writer runs at most
//!   `queue_size_limit` changes ahead of a backup, and a QUORUM write never
//!   queues behind more than that.
//! - QUORUM needs a majority of owner + backups (so `floor((1 + B) / 2)`
//!   backups), STRONG every backup, within `ack_timeout_ms`.
//! - `durable` asks backups to answer only once the changes are durable, so
//!   that PERSISTED means durable on as many replicas as the level needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::{ConsistencyLevel, KeyedOp};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::settings::ReplicationConfig;
use crate::transport::{Channel, Transport};
use crate::wire::{self, ReplicateOut, ReplicateReply};

/// Replication requests outstanding per backup.
pub const IN_FLIGHT: usize = 4;

/// How many backups must acknowledge a change of a partition with `backups`
/// backups at `level`.
#[must_use]
pub fn required_acks(level: ConsistencyLevel, backups: usize) -> usize {
    match level {
        ConsistencyLevel::Eventual => 0,
        // A majority of the 1 + B copies, the owner being one of them.
        ConsistencyLevel::Quorum => backups.div_ceil(2),
        ConsistencyLevel::Strong => backups,
    }
}

struct Item {
    changes: Vec<KeyedOp>,
    durable: bool,
    done: Option<oneshot::Sender<Result<(), String>>>,
    /// Its room in the backup's budget, given back once answered.
    _room: OwnedSemaphorePermit,
}

struct BackupQueue {
    tx: mpsc::UnboundedSender<Item>,
    /// `queue_size_limit` permits, one per change queued or in flight.
    room: Arc<Semaphore>,
    queued: Arc<AtomicI64>,
}

/// Where a backup is and what it should get.
#[derive(Clone, Debug)]
pub struct Shipment {
    /// Backup node id.
    pub node: String,
    /// Its transport address.
    pub addr: SocketAddr,
    /// The changes of the write that partitions it backs up hold.
    pub changes: Vec<KeyedOp>,
    /// True when the node holds (owns or backs up) the partition of at
    /// least one of `changes`, so its acknowledgement counts toward the
    /// write's level; false when it is only a pending holder of all of
    /// them (see `crate::migration`). A pending holder is never asked for
    /// durability: its answer means "applied", and the transfer's last
    /// chunk makes everything it applied durable before it becomes a
    /// holder. Asking it for an fsync per write would make every client
    /// write wait for the commits of the chunks it is ingesting.
    pub counted: bool,
}

/// Ships changes to backups.
pub struct Replicator {
    transport: Arc<Transport>,
    config: ReplicationConfig,
    metrics: Arc<dyn MetricsSink>,
    queues: Mutex<HashMap<(String, SocketAddr), Arc<BackupQueue>>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator").finish_non_exhaustive()
    }
}

impl Replicator {
    /// A pipeline over `transport`.
    #[must_use]
    pub fn new(
        transport: Arc<Transport>,
        config: ReplicationConfig,
        metrics: Arc<dyn MetricsSink>,
    ) -> Arc<Self> {
        Arc::new(Self {
            transport,
            config,
            metrics,
            queues: Mutex::new(HashMap::new()),
        })
    }

    fn queue(self: &Arc<Self>, node: &str, addr: SocketAddr) -> Arc<BackupQueue> {
        let mut q = self.queues.lock();
        if let Some(b) = q.get(&(node.to_string(), addr)) {
            return b.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicI64::new(0));
        let b = Arc::new(BackupQueue {
            tx,
            room: Arc::new(Semaphore::new(self.config.queue_size_limit.max(1))),
            queued: queued.clone(),
        });
        q.insert((node.to_string(), addr), b.clone());
        tokio::spawn(self.clone().sender(node.to_string(), addr, rx, queued));
        b
    }

    /// Ships `shipments`. With `wait`, resolves once each backup answered
    /// or `ack_timeout_ms` passed, with one result per backup; without, once
    /// everything is queued, with no results (EVENTUAL). `durable` asks the
    /// shipments that are [`Shipment::counted`] to answer once durable;
    /// the others answer once applied.
    pub async fn ship(
        self: &Arc<Self>,
        shipments: Vec<Shipment>,
        wait: bool,
        durable: bool,
    ) -> Vec<(String, Result<(), String>)> {
        let mut pending = Vec::new();
        for s in shipments {
            if s.changes.is_empty() {
                continue;
            }
            let q = self.queue(&s.node, s.addr);
            let n = s.changes.len();
            let (done, rx) = if wait {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let want =
                u32::try_from(n.min(self.config.queue_size_limit.max(1))).unwrap_or(u32::MAX);
            let room = tokio::time::timeout(
                Duration::from_millis(self.config.ack_timeout_ms),
                q.room.clone().acquire_many_owned(want),
            )
            .await;
            let sent = match room {
                Ok(Ok(room)) => {
                    q.queued.fetch_add(n as i64, Ordering::Relaxed);
                    q.tx.send(Item {
                        changes: s.changes,
                        durable: durable && s.counted,
                        done,
                        _room: room,
                    })
                    .is_ok()
                }
                _ => false,
            };
            if !sent {
                self.metrics.counter(
                    "hangar_replication_dropped_total",
                    &[("backup", &s.node)],
                    n as f64,
                );
                tracing::warn!(backup = %s.node, changes = n, "replication queue full: changes dropped; repair will bring the backup in line");
            }
            if let Some(rx) = rx {
                pending.push((s.node, rx));
            }
        }
        if !wait {
            return Vec::new();
        }
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let results = futures::future::join_all(pending.into_iter().map(|(node, rx)| async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => (node, r),
                Ok(Err(_)) => (node, Err("the replication pipeline stopped".to_string())),
                Err(_) => (node, Err(format!("no acknowledgement within {timeout:?}"))),
            }
        }))
        .await;
        let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
        {
            self.metrics.counter(
                "hangar_replication_acks_total",
                &[("result", "ok")],
                ok as f64,
            );
            self.metrics.counter(
                "hangar_replication_acks_total",
                &[("result", "failed")],
                (results.len() - ok) as f64,
            );
        }
        results
    }

    async fn sender(
        self: Arc<Self>,
        node: String,
        addr: SocketAddr,
        mut rx: mpsc::UnboundedReceiver<Item>,
        queued: Arc<AtomicI64>,
    ) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let batch_size = self.config.batch_size.max(1);
        while let Some(first) = rx.recv().await {
            let mut items = vec![first];
            let mut n = items[0].changes.len();
            while n < batch_size {
                match rx.try_recv() {
                    Ok(it) => {
                        n += it.changes.len();
                        items.push(it);
                    }
                    Err(_) => break,
                }
            }
            let left = queued.fetch_sub(n as i64, Ordering::Relaxed) - n as i64;
            self.metrics.gauge(
                "hangar_replication_lag_changes",
                &[("backup", &node)],
                left.max(0) as f64,
            );
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let r = me.send_batch(&node, addr, &items).await;
                for it in items {
                    if let Some(done) = it.done {
                        let _ = done.send(r.clone());
                    }
                }
                drop(slot);
            });
        }
    }

    async fn send_batch(&self, node: &str, addr: SocketAddr, items: &[Item]) -> Result<(), String> {
        let durable = items.iter().any(|i| i.durable);
        let body = wire::encode(&ReplicateOut {
            changes: wire::Chunks(items.iter().map(|i| i.changes.as_slice()).collect()),
            durable,
        });
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let mut last = String::new();
        for attempt in 0..=self.config.max_retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
            match self
                .transport
                .request(addr, Channel::Replication, body.clone(), timeout)
                .await
            {
                Ok(reply) => match wire::decode::<ReplicateReply>(&reply, "replication reply") {
                    Ok(r) if !durable || r.durable => {
                        self.metrics.counter(
                            "hangar_replication_batches_total",
                            &[("backup", node)],
                            1.0,
                        );
                        return Ok(());
                    }
                    Ok(_) => last = "the backup did not make the changes durable".into(),
                    Err(e) => last = e,
                },
                Err(e) => last = e.to_string(),
            }
        }
        tracing::warn!(backup = %node, error = %last, "replication batch failed after retries");
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_quorum_is_a_majority_of_owner_and_backups() {
        use ConsistencyLevel::{Eventual, Quorum, Strong};
        assert_eq!(required_acks(Eventual, 2), 0);
        assert_eq!(required_acks(Quorum, 0), 0);
        assert_eq!(required_acks(Quorum, 1), 1, "2 copies: both");
        assert_eq!(required_acks(Quorum, 2), 1, "3 copies: 2");
        assert_eq!(required_acks(Quorum, 3), 2, "4 copies: 3");
        assert_eq!(required_acks(Quorum, 4), 2, "5 copies: 3");
        assert_eq!(required_acks(Strong, 3), 3);
    }
}
