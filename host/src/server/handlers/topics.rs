//! `TOPIC_SUB` / `TOPIC_UNSUB` / `TOPIC_PUB` on the node-local topic table
//! ([`crate::server::topics`]). None of them is answered.

use crate::protocol::messages::TopicPub;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Most topics one connection may subscribe to.
pub const MAX_TOPICS_PER_CONNECTION: usize = 1_024;

/// Subscribes the connection to `topic`.
pub fn subscribe(fe: &FrontEnd, s: &mut Session, topic: String) {
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

/// Publishes to every other subscriber of the topic.
pub fn publish(fe: &FrontEnd, s: &Session, p: TopicPub) {
    let publisher = s
        .principal
        .as_ref()
        .map_or_else(|| s.holder.clone(), |p| p.user_id.clone());
    fe.topics.publish(
        &p.topic,
        s.id,
        Some(publisher),
        p.data,
        fe.node.clock.wall_millis(),
    );
}
