//! What every connection shares: the node, the fan-out and topic tables,
//! the limits, id counters, the shutdown signal and the drain tracker.

use crate::server::epochs::licence::Licence;
use crate::server::epochs::Epochs;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hangar_core::module::services::MetricsExt;
use tokio::sync::{watch, Notify};

use std::collections::HashMap;
use std::net::IpAddr;

use axum::body::Bytes;
use parking_lot::Mutex;

use super::auth::Verifier;
use super::counters::Counters;
use super::fanout::Fanout;
use super::handlers::partition_to_wire as to_wire;
use super::limits::{InFlight, TokenBucket};
use super::outbound::Outbound;
use super::topics::Topics;
use crate::config::NetworkConfig;
use crate::factory::Node;
use crate::protocol::Message;

/// Counts live tasks (connections, pending acknowledgements) so shutdown
/// can wait until the last one ends.
#[derive(Debug, Default)]
pub struct Drain {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a tracked task; dropping it marks the task done.
#[derive(Debug)]
pub struct DrainGuard(Arc<Drain>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Tracks one more task until the guard drops.
    #[must_use]
    pub fn guard(self: &Arc<Self>) -> DrainGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        DrainGuard(self.clone())
    }

    /// Tasks still running.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves once no tracked task is left.
    pub async fn wait(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// The rate limits of `POST /sync`: one [`TokenBucket`] per client IP
/// address, with the WebSocket's rate and burst (`network.rate_limit_*`),
/// since an HTTP client has no connection to hold one.
///
/// The table is bounded: past [`HttpBuckets::MAX_ADDRESSES`] addresses it is
/// emptied, so a flood of addresses costs memory once, and the addresses
/// then start again with full buckets.
#[derive(Debug, Default)]
pub struct HttpBuckets(Mutex<HashMap<IpAddr, TokenBucket>>);

impl HttpBuckets {
    /// Most addresses tracked at once.
    pub const MAX_ADDRESSES: usize = 65_536;

    /// Charges `n` tokens to `ip` (a new address starts with a full bucket
    /// of `burst`, refilled at `rate` per second); false when it has not
    /// that many.
    pub fn charge(&self, ip: IpAddr, n: usize, rate: f64, burst: f64) -> bool {
        let mut t = self.0.lock();
        if t.len() >= Self::MAX_ADDRESSES && !t.contains_key(&ip) {
            t.clear();
        }
        t.entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .charge(n)
    }
}

/// One client connection counted against `max_connections`: taken when the
/// TCP connection is accepted (so that sockets still sending their HTTP
/// request count), carried over to the WebSocket task on upgrade, and
/// counted out when the last holder drops it.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<FrontEnd>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The front end's shared state.
pub struct FrontEnd {
    /// The node: modules, clock, metrics, config.
    pub node: Arc<Node>,
    /// Limits and timings.
    pub net: NetworkConfig,
    /// Token checks; `None` when auth is off.
    pub verifier: Option<Verifier>,
    /// `SERVER_EVENT` fan-out (also installed as the storage change sink).
    pub fanout: Arc<Fanout>,
    /// Pub/sub topics.
    pub topics: Topics,
    /// PN counters and their listeners.
    pub counters: Counters,
    /// Node-wide in-flight cap.
    pub in_flight: InFlight,
    /// Connection tasks and pending acknowledgements.
    pub drain: Arc<Drain>,
    /// Becomes true when the node shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// `POST /sync` rate limits, one token bucket per client IP address.
    pub http_buckets: HttpBuckets,
    /// OR tombstone epochs, device identities and their cursors.
    pub epochs: Arc<Epochs>,
    /// The cluster licence for pruning OR tombstones with peers.
    pub licence: Licence,
    /// Authenticated connections, for messages sent unasked
    /// (`PARTITION_MAP` when the partition table changes).
    clients: Mutex<HashMap<u64, Outbound>>,
    next_conn: AtomicU64,
    next_sub: AtomicU64,
    open: AtomicUsize,
}

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEnd")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FrontEnd {
    /// Shared state for `node`; `shutdown` turns true when it stops.
    #[must_use]
    pub fn new(node: Arc<Node>, shutdown: watch::Receiver<bool>, epochs: Arc<Epochs>) -> Self {
        let net = node.config.network.clone();
        Self {
            verifier: node.config.auth.jwt_secret.as_deref().map(Verifier::new),
            fanout: Arc::new(Fanout::new(&node.config.node_id)),
            topics: Topics::default(),
            counters: Counters::new(),
            in_flight: InFlight::new(net.max_in_flight),
            drain: Arc::new(Drain::default()),
            shutdown,
            http_buckets: HttpBuckets::default(),
            epochs,
            licence: Licence::new(&node.config.node_id),
            clients: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            next_sub: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            net,
            node,
        }
    }

    /// A fresh connection id (never 0, which origins use for "none").
    pub fn next_connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh live-query subscription id, unique on this node.
    pub fn next_subscription_id(&self) -> u64 {
        self.next_sub.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection in if there is room, until the returned slot
    /// drops; `None` when the node is at `max_connections`.
    #[must_use]
    pub fn connection_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        self.admit().then(|| ConnectionSlot(self.clone()))
    }

    /// Open connections (those still in their HTTP request included).
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Counts a connection in if there is room; false when the node is at
    /// `max_connections`. Prefer [`Self::connection_slot`], which counts it
    /// out again when dropped.
    pub fn admit(&self) -> bool {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.net.max_connections).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.report_open();
        }
        admitted
    }

    /// Counts a connection out.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.report_open();
    }

    fn report_open(&self) {
        let n = self.open.load(Ordering::Acquire) as f64;
        self.node.metrics.gauge("hangar_ws_connections", &[], n);
    }

    /// Lists an authenticated connection for unasked messages.
    pub fn register_client(&self, out: &Outbound) {
        self.clients.lock().insert(out.conn(), out.clone());
    }

    /// Forgets a connection (idempotent).
    pub fn unregister_client(&self, conn: u64) {
        self.clients.lock().remove(&conn);
    }

    /// Sends the cluster module's partition map to every authenticated
    /// connection (the table changed to `version`). Non-blocking: a client
    /// whose queue is full misses it and gets it on its next request.
    pub fn push_partition_map(&self, version: u64) {
        let map = self.node.cluster.partition_map();
        let msg = Message::PartitionMap {
            payload: to_wire(&map),
        };
        let frame = match msg.encode() {
            Ok(f) => Bytes::from(f),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode PARTITION_MAP");
                return;
            }
        };
        let clients: Vec<Outbound> = self.clients.lock().values().cloned().collect();
        let sent = clients.iter().filter(|o| o.push(frame.clone())).count();
        tracing::debug!(version, sent, "partition map pushed to clients");
    }

    /// Sends `msg` to every authenticated connection (non-blocking: a
    /// client whose queue is full misses it).
    pub fn broadcast(&self, msg: &Message) -> usize {
        let frame = match msg.encode() {
            Ok(f) => Bytes::from(f),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a broadcast");
                return 0;
            }
        };
        let clients: Vec<Outbound> = self.clients.lock().values().cloned().collect();
        clients.iter().filter(|o| o.push(frame.clone())).count()
    }

    /// True once shutdown began.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn t10_drain_resolves_when_the_last_guard_drops() {
        let d = Arc::new(Drain::default());
        d.wait().await; // nothing tracked: immediate
        let g1 = d.guard();
        let g2 = d.guard();
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.wait().await });
        drop(g1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "one task still live");
        drop(g2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("drained")
            .unwrap();
    }
}
