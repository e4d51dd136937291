//! The local node: what the host lends the cluster module (cross-wiring, step
//! 4 of start-up) so that work arriving from peers runs through this node's
//! own paths: a write forwarded to this node as owner goes through the same
//! apply → replicate → acknowledge pipeline as a client write here, and
//! events published on other nodes reach this node's subscribers.

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use super::storage_types::{AckResult, ApplyBatch, ChangeEvent};
use super::ModuleFuture;
use crate::types::RawValue;

/// A message published on a topic, as it travels between nodes.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPublish {
    /// Topic name.
    pub topic: RString,
    /// The payload as the publisher sent it (msgpack).
    pub data: RawValue,
    /// Node the publisher is connected to.
    pub node: RString,
    /// The publisher's connection id on `node` (it does not get its own
    /// message back).
    pub connection: u64,
    /// Who published (the client's user id, or its connection's holder id).
    pub publisher: RString,
    /// Wall-clock ms when it was published.
    pub timestamp: u64,
    /// Order of this message among the topic's messages, assigned by the
    /// node that sequences the topic; 0 when not sequenced.
    pub sequence: u64,
}

/// Host services the cluster module calls for work that peers send.
///
/// # Contract
/// - `write` MUST run the batch as a write whose keys this node owns: apply,
///   replicate at `consistency`, and resolve with one [`AckResult`] per op,
///   in order, once each op reached its requested level or timed out
///   (PERSISTED means durable on this node).
/// - `deliver_change`, `deliver_topic` and `topology_changed` MUST NOT block
///   and MUST NOT call back into the cluster module synchronously.
pub trait LocalNode: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Runs a write forwarded by a peer to this node as the owner.
    fn write(&self, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>>;
    /// A change applied on another node, for this node's `SERVER_EVENT`
    /// subscribers (changes applied here reach them through storage's change
    /// sink instead).
    fn deliver_change(&self, event: &ChangeEvent);
    /// A topic message published on another node (or sequenced by this one).
    fn deliver_topic(&self, message: &TopicPublish);
    /// The partition table changed to `version`: connected clients get the
    /// new `PARTITION_MAP`.
    fn topology_changed(&self, version: u64);
}
