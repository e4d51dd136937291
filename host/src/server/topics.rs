//! Node-local publish/subscribe: `TOPIC_SUB`, `TOPIC_UNSUB`, `TOPIC_PUB`.
//!
//! A publish is encoded once as `TOPIC_MESSAGE` and queued to every
//! subscriber of the topic except the publisher. Publishes to one topic are
//! serialised by that topic's lock, so every subscriber sees them in the
//! same (publish) order. Queueing never waits ([`Outbound::push`]): a
//! subscriber that cannot keep up is disconnected, never the publisher
//! slowed down.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use parking_lot::{Mutex, RwLock};

use super::outbound::Outbound;
use crate::protocol::messages::TopicMessage;
use crate::protocol::{Message, RawMsgpack};

type Subscribers = Arc<Mutex<Vec<Outbound>>>;

/// Topic name → subscribers.
#[derive(Default)]
pub struct Topics {
    topics: RwLock<HashMap<String, Subscribers>>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("topics", &self.topics.read().len())
            .finish()
    }
}

impl Topics {
    /// Subscribes `out`'s connection to `topic` (idempotent).
    pub fn subscribe(&self, topic: &str, out: &Outbound) {
        // The map's write lock is held while adding, so a concurrent
        // unsubscribe cannot drop the entry between lookup and push.
        let mut topics = self.topics.write();
        let mut subs = topics.entry(topic.to_string()).or_default().lock();
        if !subs.iter().any(|o| o.conn() == out.conn()) {
            subs.push(out.clone());
        }
    }

    /// Unsubscribes connection `conn` from `topic` (idempotent).
    pub fn unsubscribe(&self, topic: &str, conn: u64) {
        let mut topics = self.topics.write();
        let Some(subs) = topics.get(topic) else {
            return;
        };
        let empty = {
            let mut s = subs.lock();
            s.retain(|o| o.conn() != conn);
            s.is_empty()
        };
        if empty {
            topics.remove(topic);
        }
    }

    /// Publishes `data` on `topic` from connection `publisher`; returns how
    /// many subscribers it was queued to.
    pub fn publish(
        &self,
        topic: &str,
        publisher: u64,
        publisher_id: Option<String>,
        data: RawMsgpack,
        now_ms: u64,
    ) -> usize {
        let Some(subs) = self.topics.read().get(topic).cloned() else {
            return 0;
        };
        let subs = subs.lock();
        if subs.iter().all(|o| o.conn() == publisher) {
            return 0;
        }
        let msg = Message::TopicMessage {
            payload: TopicMessage {
                topic: topic.to_string(),
                data,
                publisher_id,
                timestamp: now_ms,
            },
        };
        let frame = match msg.encode() {
            Ok(f) => Bytes::from(f),
            Err(e) => {
                tracing::warn!(error = %e, topic, "cannot encode TOPIC_MESSAGE; dropped");
                return 0;
            }
        };
        subs.iter()
            .filter(|o| o.conn() != publisher)
            .filter(|o| o.push(frame.clone()))
            .count()
    }

    /// Number of subscribers of `topic`.
    #[must_use]
    pub fn subscribers(&self, topic: &str) -> usize {
        self.topics.read().get(topic).map_or(0, |s| s.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;
    use crate::server::outbound::Out;

    #[tokio::test]
    async fn t10_publish_reaches_other_subscribers_in_order_not_the_publisher() {
        let m = Arc::new(Registry::default());
        let t = Topics::default();
        let (a, mut ra, _) = Outbound::new(1, 8, 1 << 20, m.clone());
        let (b, mut rb, _) = Outbound::new(2, 8, 1 << 20, m);
        t.subscribe("chat", &a);
        t.subscribe("chat", &a);
        t.subscribe("chat", &b);
        assert_eq!(t.subscribers("chat"), 2);
        let v = |n: i64| RawMsgpack::from_value(&rmpv::Value::from(n));
        assert_eq!(t.publish("chat", 1, None, v(1), 5), 1);
        assert_eq!(t.publish("chat", 2, None, v(2), 6), 1);
        assert_eq!(t.publish("chat", 1, None, v(3), 7), 1);
        let data = |o: Out| match o {
            Out::Frame(f) => match crate::protocol::decode_frame(&f).unwrap() {
                crate::protocol::Decoded::Message(Message::TopicMessage { payload }) => {
                    payload.data.to_value().unwrap().as_i64().unwrap()
                }
                other => panic!("{other:?}"),
            },
            Out::Close(..) => panic!("close"),
        };
        assert_eq!(data(rb.try_recv().unwrap()), 1);
        assert_eq!(data(rb.try_recv().unwrap()), 3);
        assert_eq!(data(ra.try_recv().unwrap()), 2);
        assert!(ra.try_recv().is_err());
        t.unsubscribe("chat", 2);
        assert_eq!(t.publish("chat", 1, None, v(4), 8), 0);
        t.unsubscribe("chat", 1);
        assert_eq!(t.subscribers("chat"), 0);
    }
}
