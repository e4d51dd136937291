//! The serving side of live queries: this node's storage subscriptions on
//! behalf of coordinators (other nodes, or this one), whose updates are
//! shipped back to the coordinator.
//!
//! - A registration is keyed by (coordinator node, coordinator's id) and
//!   uses a local storage id with the top bit set, so it never collides with
//!   the host's ids. Registering again (a newer gathering round) replaces
//!   the storage subscription; an older round than the registered one is
//!   refused, so a slow request cannot undo a newer one.
//! - A registration covers the partitions the coordinator's read plan has
//!   this node serve: its snapshot and its updates leave out the others
//!   (this node may hold them too, as owner or backup).
//! - The storage sink never blocks: it appends to an outbox per coordinator
//!   address, flushed every 2 ms as one-way `Query` frames
//!   ([`Transport::try_send`]); a full queue keeps the updates for the next
//!   flush, a broken connection drops them (the coordinator re-gathers
//!   when the table changes).
//! - Once a second, registrations whose coordinator is no longer a live
//!   member are dropped: a coordinator that died never unsubscribes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::storage_types::{QueryResponse, QuerySink, QueryUpdate, SubscriptionId};
use parking_lot::Mutex;

use crate::membership::{Membership, PeerHealth};
use crate::transport::{Channel, PeerInfo, Transport, TransportError};
use crate::wire::{self, QueryMessage, WireQuery, WireUpdate};

/// Local storage ids for registrations have this bit set.
pub const REMOTE_ID_BIT: u64 = 1 << 63;

/// Most updates in one frame.
const MAX_UPDATES_PER_FRAME: usize = 1_000;

struct Registration {
    local: SubscriptionId,
    gen: u64,
}

/// Registrations for coordinators, and the outbox of their updates.
pub(crate) struct Registrations {
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    storage: Arc<dyn StorageAccessor>,
    by_coordinator: Mutex<HashMap<(String, u64), Registration>>,
    next: AtomicU64,
    outbox: Arc<Mutex<HashMap<SocketAddr, Vec<WireUpdate>>>>,
}

impl Registrations {
    pub(crate) fn new(
        transport: Arc<Transport>,
        membership: Arc<Membership>,
        storage: Arc<dyn StorageAccessor>,
    ) -> Arc<Self> {
        let r = Arc::new(Self {
            transport,
            membership,
            storage,
            by_coordinator: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            outbox: Arc::new(Mutex::new(HashMap::new())),
        });
        let weak = Arc::downgrade(&r);
        tokio::spawn(flush_loop(weak.clone()));
        tokio::spawn(expire_loop(weak));
        r
    }

    /// Registers (or re-registers) `from`'s live query `sub` for round
    /// `gen`, and returns its snapshot.
    pub(crate) async fn register(
        &self,
        from: &PeerInfo,
        sub: u64,
        gen: u64,
        request: WireQuery,
    ) -> Result<QueryResponse, String> {
        let local = {
            let mut regs = self.by_coordinator.lock();
            let key = (from.node_id.clone(), sub);
            match regs.get_mut(&key) {
                Some(r) if r.gen > gen => {
                    return Err(format!(
                        "round {gen} of live query {sub} is older than the registered round {}",
                        r.gen
                    ))
                }
                Some(r) => {
                    r.gen = gen;
                    r.local
                }
                None => {
                    let local = REMOTE_ID_BIT | self.next.fetch_add(1, Ordering::Relaxed);
                    regs.insert(key, Registration { local, gen });
                    local
                }
            }
        };
        let sink = Arc::new(ShipSink {
            outbox: Arc::downgrade(&self.outbox),
            to: from.addr,
            sub,
            gen,
            only: request.partitions.map(PartitionSet::from_words),
        });
        match self
            .storage
            .subscribe(local, request.into_request(), sink)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.drop_one(&from.node_id, sub);
                Err(e.message.to_string())
            }
        }
    }

    /// Drops `coordinator`'s registration `sub`, if any.
    pub(crate) fn drop_one(&self, coordinator: &str, sub: u64) {
        let reg = self
            .by_coordinator
            .lock()
            .remove(&(coordinator.to_string(), sub));
        if let Some(r) = reg {
            self.storage.unsubscribe(r.local);
        }
    }

    /// How many registrations this node holds (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.by_coordinator.lock().len()
    }

    fn flush(&self) {
        let batches: Vec<(SocketAddr, Vec<WireUpdate>)> = self
            .outbox
            .lock()
            .drain()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (addr, updates) in batches {
            let mut rest = updates;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(MAX_UPDATES_PER_FRAME));
                let chunk = std::mem::replace(&mut rest, tail);
                let body = wire::encode(&QueryMessage::Updates(chunk.clone()));
                match self.transport.try_send(addr, Channel::Query, body) {
                    Ok(()) => {}
                    Err(TransportError::Full { .. }) => {
                        // Keep the order: these go before anything queued since.
                        let mut ob = self.outbox.lock();
                        let q = ob.entry(addr).or_default();
                        let mut again = chunk;
                        again.append(&mut rest);
                        again.append(q);
                        std::mem::swap(q, &mut again);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "live-query updates dropped");
                        break;
                    }
                }
            }
        }
    }

    fn expire(&self) {
        let peers = self.membership.peers();
        let dead: Vec<(String, u64)> = self
            .by_coordinator
            .lock()
            .keys()
            .filter(|(node, _)| {
                peers
                    .get(node)
                    .is_none_or(|p| !p.is_local && p.health == PeerHealth::Failed)
            })
            .cloned()
            .collect();
        for (node, sub) in dead {
            tracing::info!(coordinator = %node, sub, "dropping a live query of a coordinator that left");
            self.drop_one(&node, sub);
        }
    }
}

async fn flush_loop(r: Weak<Registrations>) {
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = r.upgrade() else { return };
        r.flush();
    }
}

async fn expire_loop(r: Weak<Registrations>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(r) = r.upgrade() else { return };
        r.expire();
    }
}

/// The storage sink of a registration: appends to the outbox, never blocks.
struct ShipSink {
    outbox: Weak<Mutex<HashMap<SocketAddr, Vec<WireUpdate>>>>,
    to: SocketAddr,
    sub: u64,
    gen: u64,
    /// The partitions this registration serves; `None` for all.
    only: Option<PartitionSet>,
}

impl QuerySink for ShipSink {
    fn deliver(&self, u: &QueryUpdate) {
        if self
            .only
            .is_some_and(|o| !o.contains(hangar_core::partition_of(&u.key)))
        {
            return;
        }
        let Some(outbox) = self.outbox.upgrade() else {
            return;
        };
        outbox.lock().entry(self.to).or_default().push(WireUpdate {
            sub: self.sub,
            gen: self.gen,
            key: u.key.to_string(),
            value: u.value.clone().into_option(),
            change: u.change,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::module::storage_types::ChangeType;
    use hangar_core::partition_of;

    #[test]
    fn t10_a_registration_ships_updates_of_the_partitions_it_serves_only() {
        let outbox: Arc<Mutex<HashMap<SocketAddr, Vec<WireUpdate>>>> = Arc::default();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (a, b) = (
            "a",
            (0..)
                .map(|i| format!("b{i}"))
                .find(|k| partition_of(k) != partition_of("a"))
                .unwrap(),
        );
        let sink = ShipSink {
            outbox: Arc::downgrade(&outbox),
            to,
            sub: 1,
            gen: 2,
            only: Some(PartitionSet::of([partition_of(a)])),
        };
        for key in [a, b.as_str()] {
            sink.deliver(&QueryUpdate {
                subscription: 5,
                key: key.into(),
                value: abi_stable::std_types::ROption::RNone,
                change: ChangeType::Leave,
            });
        }
        let shipped: Vec<String> = outbox.lock()[&to].iter().map(|u| u.key.clone()).collect();
        assert_eq!(shipped, ["a"]);
    }
}
