//! One client connection's state: who it is, what it listens to, what it
//! holds, and its limits. Owned by the connection's task; handlers get it
//! as `&mut Session`.
//!
//! [`Session::close`] undoes everything the connection set up elsewhere:
//! live queries in the storage module, `SERVER_EVENT` listening, topic
//! subscriptions and locks in the cluster module's lock manager.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use hangar_core::module::storage_types::SubscriptionId;
use tokio::sync::Semaphore;

use super::auth::Principal;
use super::handlers::live_search::LiveSearch;
use super::limits::TokenBucket;
use super::outbound::Outbound;
use super::state::FrontEnd;
use crate::protocol::messages::ErrorPayload;
use crate::protocol::Message;

/// A live query a connection holds.
#[derive(Debug, Clone)]
pub struct LiveQuery {
    /// Host-assigned id the storage module knows it by.
    pub subscription: SubscriptionId,
    /// The map it watches.
    pub map: String,
}

/// A connection's state.
#[derive(Debug)]
pub struct Session {
    /// Host-assigned connection id (origins carry it).
    pub id: u64,
    /// Cluster-unique name of this connection as a lock holder:
    /// `<nodeId>/<connId>`.
    pub holder: String,
    /// Frames towards the client.
    pub out: Outbound,
    /// Set once authenticated (always `None` with auth off).
    pub principal: Option<Principal>,
    /// Client query id → live query.
    pub queries: HashMap<String, LiveQuery>,
    /// Client subscription id → live search.
    pub searches: HashMap<String, LiveSearch>,
    /// Topics subscribed.
    pub topics: HashSet<String>,
    /// PN counters listened to.
    pub counters: HashSet<String>,
    /// Journal subscription (`requestId`) → the storage module's id.
    pub journals: HashMap<String, u64>,
    /// True once the connection was granted any lock.
    pub took_locks: bool,
    /// The per-connection rate limit.
    pub bucket: TokenBucket,
    /// Write acknowledgements this connection may still wait for at once.
    pub ack_slots: Arc<Semaphore>,
    /// The highest OR tombstone epoch the client confirmed with
    /// `CLIENT_APPLY_ACK` (0 until it does).
    pub apply_cursor: u64,
    /// The device this connection is bound to (its key in
    /// [`crate::server::epochs::Epochs`]), after `DEVICE_HELLO` or `AUTH`.
    pub device: Option<String>,
    /// The highest `coveringEpoch` sent on this connection: a confirmation
    /// is clamped to it.
    pub max_epoch_sent: u64,
    /// The epoch up to which this connection's client is known to hold
    /// every tombstone (its sync's knowledge, raised by its confirmations);
    /// `None` before its first OR sync.
    pub or_knowledge: Option<u64>,
}

impl Session {
    /// A fresh session for connection `id`.
    #[must_use]
    pub fn new(fe: &FrontEnd, id: u64, out: Outbound) -> Self {
        Self {
            id,
            holder: format!("{}/{id}", fe.node.config.node_id),
            out,
            principal: None,
            queries: HashMap::new(),
            searches: HashMap::new(),
            topics: HashSet::new(),
            counters: HashSet::new(),
            journals: HashMap::new(),
            took_locks: false,
            bucket: TokenBucket::new(fe.net.rate_limit_per_sec, fe.net.rate_limit_burst),
            ack_slots: Arc::new(Semaphore::new(fe.net.max_in_flight_per_connection)),
            apply_cursor: 0,
            device: None,
            max_epoch_sent: 0,
            or_knowledge: None,
        }
    }

    /// Encodes and queues one of this connection's own answers (waits for
    /// room in the queue). Returns false when the connection is gone.
    pub async fn reply(&self, msg: &Message) -> bool {
        reply(&self.out, msg).await
    }

    /// Queues `ERROR {code, message}` without waiting (dropped when the
    /// queue is full: an error storm must not kill a client).
    pub fn error(&self, fe: &FrontEnd, code: u32, message: impl Into<String>) {
        error_to(&self.out, fe, code, message);
    }

    /// Ends the connection's live queries, event listening, topic
    /// subscriptions, journal subscriptions and counter listening: nothing more is pushed to it.
    /// Locks are kept.
    pub fn drop_subscriptions(&mut self, fe: &FrontEnd) {
        for (_, q) in self.queries.drain() {
            fe.node.cluster.unsubscribe(q.subscription);
            fe.fanout.remove(&q.map, self.id);
        }
        for (_, l) in self.searches.drain() {
            l.stop(fe);
        }
        for t in self.topics.drain() {
            fe.topics.unsubscribe(&t, self.id);
        }
        for c in self.counters.drain() {
            fe.counters.unsubscribe(&c, self.id);
        }
        for (_, id) in self.journals.drain() {
            fe.node.storage.journal_unsubscribe(id);
        }
    }

    /// Undoes everything the connection set up: live queries, event
    /// listening, topics, locks.
    pub async fn close(&mut self, fe: &FrontEnd) {
        self.drop_subscriptions(fe);
        if self.took_locks {
            match fe
                .node
                .cluster
                .release_holder(self.holder.as_str().into())
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::debug!(conn = self.id, released = n, "released locks on disconnect");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(conn = self.id, error = %e, "cannot release locks on disconnect");
                }
            }
        }
    }
}

/// Encodes `msg` and queues it on `out`, waiting for room.
pub async fn reply(out: &Outbound, msg: &Message) -> bool {
    match msg.encode() {
        Ok(f) => out.send(f).await,
        Err(e) => {
            tracing::error!(conn = out.conn(), error = %e, "cannot encode a reply; dropped");
            false
        }
    }
}

/// Queues `ERROR {code, message}` on `out` without waiting, and counts it.
pub fn error_to(out: &Outbound, fe: &FrontEnd, code: u32, message: impl Into<String>) {
    use hangar_core::module::services::MetricsExt;
    let msg = Message::Error {
        payload: ErrorPayload {
            code,
            message: message.into(),
            details: None,
        },
    };
    let code_s = code.to_string();
    fe.node
        .metrics
        .counter("hangar_ws_errors_sent_total", &[("code", &code_s)], 1.0);
    if let Ok(f) = msg.encode() {
        out.offer(Bytes::from(f));
    }
}
