//! Coordination and routing: locks, topics, the partition map, and the
//! `BATCH` envelope.

use serde::{Deserialize, Serialize};

use crate::protocol::num;
use crate::protocol::raw::RawMsgpack;

/// `LOCK_REQUEST` payload (C→S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRequest {
    /// Correlates the answer.
    pub request_id: String,
    /// Lock name.
    pub name: String,
    /// Lease in ms; 0 is refused by the lock manager.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<u64>,
}

/// `LOCK_GRANTED` payload (S→C).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockGranted {
    /// The request's id.
    pub request_id: String,
    /// Lock name.
    pub name: String,
    /// Fencing token; never goes backwards for a lock.
    #[serde(deserialize_with = "num::de_u64")]
    pub fencing_token: u64,
}

/// `LOCK_RELEASE` payload (C→S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRelease {
    /// Correlates the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Lock name.
    pub name: String,
    /// The token the grant carried.
    #[serde(deserialize_with = "num::de_u64")]
    pub fencing_token: u64,
}

/// `LOCK_RELEASED` payload (S→C): the answer to a release, or a refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockReleased {
    /// The request's id.
    pub request_id: String,
    /// Lock name.
    pub name: String,
    /// Whether it worked.
    pub success: bool,
}

/// `TOPIC_SUB` and `TOPIC_UNSUB` payload (C→S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRef {
    /// Topic name.
    pub topic: String,
}

/// `TOPIC_PUB` payload (C→S).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicPub {
    /// Topic name.
    pub topic: String,
    /// The message, forwarded byte for byte.
    pub data: RawMsgpack,
}

/// `TOPIC_MESSAGE` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicMessage {
    /// Topic name.
    pub topic: String,
    /// The published message.
    pub data: RawMsgpack,
    /// Who published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_id: Option<String>,
    /// Publish time, ms since the epoch.
    #[serde(deserialize_with = "num::de_u64")]
    pub timestamp: u64,
}

/// `PARTITION_MAP_REQUEST` payload (C→S).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionMapRequest {
    /// The version the client holds.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub current_version: Option<u32>,
}

/// A node's membership state in a partition map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Serving.
    Active,
    /// Joining.
    Joining,
    /// Leaving gracefully.
    Leaving,
    /// Suspected dead.
    Suspected,
    /// Confirmed dead.
    Failed,
}

/// Where clients reach a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEndpoints {
    /// WebSocket URL.
    pub websocket: String,
    /// HTTP URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// A node in a partition map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Its endpoints.
    pub endpoints: NodeEndpoints,
    /// Its state.
    pub status: NodeStatus,
}

/// Owner and backups of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInfo {
    /// 0..partitionCount.
    #[serde(deserialize_with = "num::de_u32")]
    pub partition_id: u32,
    /// The owner's node id.
    pub owner_node_id: String,
    /// Backup node ids, in order.
    pub backup_node_ids: Vec<String>,
}

/// `PARTITION_MAP` payload (S→C): lets clients route writes to owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionMap {
    /// Grows with every change.
    #[serde(deserialize_with = "num::de_u32")]
    pub version: u32,
    /// 271.
    #[serde(deserialize_with = "num::de_u32")]
    pub partition_count: u32,
    /// Members.
    pub nodes: Vec<NodeInfo>,
    /// Assignments.
    pub partitions: Vec<PartitionInfo>,
    /// When it was built, ms since the epoch.
    #[serde(deserialize_with = "num::de_i64")]
    pub generated_at: i64,
}

/// `BATCH` (C→S, flat): several messages in one frame.
///
/// `data` is repeated `[u32 big-endian length][msgpack message]`. `count` is
/// what the client claims and is never trusted; unpack with
/// [`crate::protocol::unpack_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// Claimed number of messages.
    #[serde(deserialize_with = "num::de_u32")]
    pub count: u32,
    /// The packed messages.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
