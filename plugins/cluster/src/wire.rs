//! What nodes say to each other on the cluster transport's channels, above
//! the frame layer (`transport`): each body is one msgpack value of these
//! types (`rmp-serde`, maps with field names, so a field added later is
//! ignored by an older peer).

use abi_stable::std_types::{ROption, RVec};
use hangar_core::module::local_node::TopicPublish;
use hangar_core::module::storage_types::{AckResult, ApplyBatch, Origin, WriteOp};
use hangar_core::{ConsistencyLevel, KeyedOp, WriteConcern};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::raft::NodeAddr;

/// Encodes a wire value.
///
/// # Panics
/// Never for these types (they have no non-string map keys).
#[must_use]
pub fn encode<T: Serialize>(v: &T) -> bytes::Bytes {
    bytes::Bytes::from(rmp_serde::to_vec_named(v).expect("wire types always encode"))
}

/// Decodes a wire value; the error names what was expected.
///
/// # Errors
/// When the body is not a `T`.
pub fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| format!("undecodable {what}: {e}"))
}

/// `Control` channel requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Control {
    /// A node asks to become a member of the formed cluster.
    Join(NodeAddr),
}

/// One op of a forwarded write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireOp {
    /// The change.
    pub op: KeyedOp,
    /// Level the writer waits for.
    pub concern: WriteConcern,
    /// Ack timeout in ms.
    pub timeout_ms: Option<u64>,
}

/// `Forward` channel request: a write sent to the owner of its keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forward {
    /// The ops.
    pub ops: Vec<WireOp>,
    /// Who wrote them.
    pub origin: Origin,
    /// Consistency asked for.
    pub consistency: Option<ConsistencyLevel>,
    /// Times this write was forwarded already (routing loops stop at a bound).
    pub hops: u8,
}

impl Forward {
    /// The wire form of `batch`.
    #[must_use]
    pub fn from_batch(batch: &ApplyBatch, hops: u8) -> Self {
        Self {
            ops: batch
                .ops
                .iter()
                .map(|o| WireOp {
                    op: o.op.clone(),
                    concern: o.concern,
                    timeout_ms: o.timeout_ms.into_option(),
                })
                .collect(),
            origin: batch.origin.clone(),
            consistency: batch.consistency.into_option(),
            hops,
        }
    }

    /// Back to an [`ApplyBatch`].
    #[must_use]
    pub fn into_batch(self) -> ApplyBatch {
        ApplyBatch {
            ops: self
                .ops
                .into_iter()
                .map(|o| WriteOp {
                    op: o.op,
                    concern: o.concern,
                    timeout_ms: o.timeout_ms.into(),
                })
                .collect(),
            origin: self.origin,
            consistency: self.consistency.into(),
        }
    }
}

/// One acknowledgement on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireAck {
    /// Level reached in time.
    pub success: bool,
    /// Highest level reached.
    pub achieved: WriteConcern,
    /// Why not, on failure.
    pub error: Option<String>,
}

impl From<&AckResult> for WireAck {
    fn from(a: &AckResult) -> Self {
        Self {
            success: a.success,
            achieved: a.achieved,
            error: a.error.as_ref().map(ToString::to_string).into_option(),
        }
    }
}

impl WireAck {
    /// The local form (ack id 0: it belongs to another node).
    #[must_use]
    pub fn into_result(self) -> AckResult {
        AckResult {
            ack: 0,
            success: self.success,
            achieved: self.achieved,
            error: self.error.map(Into::into).into(),
        }
    }
}

/// Results of a forwarded write, one per op.
pub type ForwardReply = Vec<WireAck>;

/// `Replication` channel request: changes an owner applied, for a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Replicate {
    /// The changes (winning records).
    pub changes: Vec<KeyedOp>,
    /// Answer only once they are durable on the backup.
    pub durable: bool,
}

/// A backup's answer to [`Replicate`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicateReply {
    /// Changes applied (merged, changed or not).
    pub applied: u32,
    /// True when `durable` was asked and they are durable.
    pub durable: bool,
}

/// `Query` channel one-way message: changes applied on the sender, for
/// subscribers on nodes that hold no copy of their partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Events {
    /// (change, origin) pairs in the order they were applied.
    pub changes: Vec<(KeyedOp, Origin)>,
}

/// `Control` channel topic traffic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Topic {
    /// To the topic's sequencer: order this message and broadcast it.
    Publish(TopicPublish),
    /// From the sequencer to every node: deliver these, in order.
    Deliver(Vec<TopicPublish>),
}

/// Every frame body on the `Control` channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlMessage {
    /// Membership.
    Control(Control),
    /// Topics.
    Topic(Topic),
}

/// `ROption` ↔ `Option` for wire conversions.
#[must_use]
pub fn ropt<T>(o: Option<T>) -> ROption<T> {
    o.into()
}

/// Results of a forwarded write into the local form.
#[must_use]
pub fn into_results(reply: ForwardReply) -> RVec<AckResult> {
    reply.into_iter().map(WireAck::into_result).collect()
}
