//! `SERVER_EVENT` fan-out: the one [`ChangeSink`] installed on the storage
//! module, and the table of which connections listen to which map.
//!
//! A connection listens to a map while it holds at least one live query
//! (`QUERY_SUB`) on it. Every applied change is encoded once (with the
//! [`crate::protocol::fast`] encoder) and queued to each listener except the
//! writer itself: an event whose origin is a client connection of this node
//! is never echoed back to that connection.
//!
//! `on_change` runs inside the storage module's write path, so it only takes
//! a read lock, encodes, and uses the non-blocking [`Outbound::push`].

use std::collections::HashMap;

use axum::body::Bytes;
use hangar_core::module::storage_types::{ChangeEvent, ChangeSink, OriginKind};
use parking_lot::RwLock;

use super::outbound::Outbound;
use crate::protocol::fast;

struct Listener {
    out: Outbound,
    /// Live queries this connection holds on the map.
    queries: u32,
}

/// Map name → listening connections.
pub struct Fanout {
    node_id: String,
    maps: RwLock<HashMap<String, Vec<Listener>>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("maps", &self.maps.read().len())
            .finish()
    }
}

impl Fanout {
    /// An empty table for the node `node_id` (events from its own client
    /// connections are matched against this id).
    #[must_use]
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_string(),
            maps: RwLock::new(HashMap::new()),
        }
    }

    /// One more live query of `out`'s connection on `map`.
    pub fn add(&self, map: &str, out: &Outbound) {
        let mut maps = self.maps.write();
        let list = maps.entry(map.to_string()).or_default();
        match list.iter_mut().find(|l| l.out.conn() == out.conn()) {
            Some(l) => l.queries += 1,
            None => list.push(Listener {
                out: out.clone(),
                queries: 1,
            }),
        }
    }

    /// One live query fewer of connection `conn` on `map`; the connection
    /// stops listening when it has none left.
    pub fn remove(&self, map: &str, conn: u64) {
        let mut maps = self.maps.write();
        let Some(list) = maps.get_mut(map) else {
            return;
        };
        if let Some(i) = list.iter().position(|l| l.out.conn() == conn) {
            list[i].queries -= 1;
            if list[i].queries == 0 {
                list.swap_remove(i);
            }
        }
        if list.is_empty() {
            maps.remove(map);
        }
    }

    /// Connections listening to `map` (tests, metrics).
    #[must_use]
    pub fn listeners(&self, map: &str) -> usize {
        self.maps.read().get(map).map_or(0, Vec::len)
    }
}

impl ChangeSink for Fanout {
    fn on_change(&self, event: &ChangeEvent) {
        let maps = self.maps.read();
        let Some(list) = maps.get(event.op.map.as_str()) else {
            return;
        };
        let writer = (event.origin.kind == OriginKind::Client
            && event.origin.node.as_str() == self.node_id)
            .then_some(event.origin.connection);
        let mut frame: Option<Bytes> = None;
        for l in list {
            if Some(l.out.conn()) == writer {
                continue;
            }
            let f = frame.get_or_insert_with(|| {
                let mut buf = Vec::with_capacity(96 + event.op.key.len());
                fast::write_server_event(&mut buf, &event.op);
                Bytes::from(buf)
            });
            l.out.push(f.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;
    use crate::protocol::{decode_frame, Decoded, Message};
    use abi_stable::std_types::ROption;
    use hangar_core::module::storage_types::Origin;
    use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp};
    use std::sync::Arc;

    fn event(map: &str, origin: Origin) -> ChangeEvent {
        ChangeEvent {
            op: KeyedOp {
                map: map.into(),
                key: "k".into(),
                op: MapOp::Lww(LwwRecord {
                    value: ROption::RSome(RawValue::encode(&1).unwrap()),
                    timestamp: Timestamp::new(1, 0, "n"),
                    ttl_ms: ROption::RNone,
                }),
            },
            origin,
        }
    }

    #[tokio::test]
    async fn t10_events_reach_listeners_of_the_map_but_never_the_writer() {
        let m = Arc::new(Registry::default());
        let f = Fanout::new("node-1");
        let (a, mut ra, _) = Outbound::new(1, 8, 1 << 20, m.clone());
        let (b, mut rb, _) = Outbound::new(2, 8, 1 << 20, m.clone());
        let (c, mut rc, _) = Outbound::new(3, 8, 1 << 20, m);
        f.add("users", &a);
        f.add("users", &b);
        f.add("other", &c);
        f.on_change(&event("users", Origin::client(1, "node-1")));
        let got = rb.try_recv().expect("b listens and did not write");
        let super::super::outbound::Out::Frame(bytes) = got else {
            panic!("frame expected")
        };
        assert!(matches!(
            decode_frame(&bytes).unwrap(),
            Decoded::Message(Message::ServerEvent { .. })
        ));
        assert!(ra.try_recv().is_err(), "the writer gets no echo");
        assert!(
            rc.try_recv().is_err(),
            "another map's listener gets nothing"
        );
        // Same connection id but from another node (replication): not the writer.
        f.on_change(&event("users", Origin::client(1, "node-2")));
        assert!(ra.try_recv().is_ok());
    }

    #[test]
    fn t11_a_connection_listens_while_it_holds_any_query_on_the_map() {
        let f = Fanout::new("n");
        let (a, _ra, _) = Outbound::new(1, 8, 1 << 20, Arc::new(Registry::default()));
        f.add("m", &a);
        f.add("m", &a);
        assert_eq!(f.listeners("m"), 1);
        f.remove("m", 1);
        assert_eq!(f.listeners("m"), 1);
        f.remove("m", 1);
        assert_eq!(f.listeners("m"), 0);
        f.remove("m", 1); // harmless
    }
}
