//! `TOPIC_SUB` / `TOPIC_UNSUB` / `TOPIC_PUB`: subscriptions live in the
//! node-local topic table ([`crate::server::topics`]); publishing goes
//! through the cluster module so subscribers on every node get it. None of
//! them is answered (a failed publish gets an `ERROR`).

use hangar_core::module::local_node::TopicPublish;

use super::status_of;
use crate::protocol::messages::TopicPub;
use crate::server::epochs::licence::RESERVED_PREFIX;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Most topics one connection may subscribe to.
pub const MAX_TOPICS_PER_CONNECTION: usize = 1_024;

/// Answers `ERROR` 403 and returns true when `topic` is one of the node's
/// own ([`RESERVED_PREFIX`]).
fn reserved(fe: &FrontEnd, s: &Session, topic: &str) -> bool {
    if !topic.starts_with(RESERVED_PREFIX) {
        return false;
    }
    s.error(
        fe,
        403,
        format!("topic {topic}: topics starting with {RESERVED_PREFIX} are reserved for the nodes"),
    );
    true
}

/// Subscribes the connection to `topic`.
pub fn subscribe(fe: &FrontEnd, s: &mut Session, topic: String) {
    if reserved(fe, s, &topic) {
        return;
    }
    if s.topics.contains(&topic) {
        return;
    }
    if s.topics.len() >= MAX_TOPICS_PER_CONNECTION {
        s.error(
            fe,
            400,
            format!(
                "too many topic subscriptions: at most {MAX_TOPICS_PER_CONNECTION} per connection"
            ),
        );
        return;
    }
    fe.topics.subscribe(&topic, &s.out);
    s.topics.insert(topic);
}

/// Unsubscribes the connection from `topic`.
pub fn unsubscribe(fe: &FrontEnd, s: &mut Session, topic: &str) {
    if s.topics.remove(topic) {
        fe.topics.unsubscribe(topic, s.id);
    }
}

/// Publishes to every other subscriber of the topic, on every node: the
/// cluster module orders the topic's messages and delivers them back to
/// this node's subscribers through the host link. Awaited in the reader, so
/// one connection's messages keep their order.
pub async fn publish(fe: &FrontEnd, s: &Session, p: TopicPub) {
    if reserved(fe, s, &p.topic) {
        return;
    }
    let publisher = s
        .principal
        .as_ref()
        .map_or_else(|| s.holder.clone(), |p| p.user_id.clone());
    let message = TopicPublish {
        topic: p.topic.as_str().into(),
        data: p.data.into_raw_value(),
        node: fe.node.config.node_id.as_str().into(),
        connection: s.id,
        publisher: publisher.into(),
        timestamp: fe.node.clock.wall_millis(),
        sequence: 0,
    };
    if let Err(e) = fe.node.cluster.publish_topic(message).await {
        s.error(fe, status_of(&e), format!("topic {}: {e}", p.topic));
    }
}
