//! What nodes say to each other on the cluster transport's channels, above
//! the frame layer (`transport`): each body is one msgpack value of these
//! types (`rmp-serde`, maps with field names, so a field added later is
//! ignored by an older peer).

use abi_stable::std_types::{ROption, RVec};
use hangar_core::module::local_node::TopicPublish;
use hangar_core::module::partition::PARTITION_SET_WORDS;
use hangar_core::module::storage_types::{
    AckResult, ApplyBatch, ChangeType, KeyRecord, Origin, QueryRequest, SearchHit, SearchRequest,
    WriteOp,
};
use hangar_core::{ConsistencyLevel, KeyedOp, MapKind, RawValue, WriteConcern};
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

/// [`Replicate`] as an owner sends it: the changes of several queued writes
/// encoded in place, in order, as one sequence. Same encoding as
/// [`Replicate`] (a backup decodes it as that).
#[derive(Debug, Serialize)]
pub struct ReplicateOut<'a> {
    /// The changes, write by write.
    pub changes: Chunks<'a, KeyedOp>,
    /// Answer only once they are durable on the backup.
    pub durable: bool,
}

/// Slices serialized as the one sequence of their elements.
#[derive(Debug)]
pub struct Chunks<'a, T>(pub Vec<&'a [T]>);

impl<T: Serialize> Serialize for Chunks<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.iter().map(|c| c.len()).sum()))?;
        for c in &self.0 {
            for x in *c {
                seq.serialize_element(x)?;
            }
        }
        seq.end()
    }
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

/// A query as it travels to the nodes that run it on their storage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireQuery {
    /// Map name.
    pub map: String,
    /// The query object (msgpack).
    pub query: RawValue,
    /// Projection.
    pub fields: Option<Vec<String>>,
    /// Only rows of these partitions (`PartitionSet` words): those the
    /// asked node serves in the coordinator's read plan; `None` for every
    /// partition the node holds.
    #[serde(default)]
    pub partitions: Option<[u64; PARTITION_SET_WORDS]>,
}

impl WireQuery {
    /// The wire form of `r`.
    #[must_use]
    pub fn from_request(r: &QueryRequest) -> Self {
        Self {
            map: r.map.to_string(),
            query: r.query.clone(),
            fields: r
                .fields
                .as_ref()
                .into_option()
                .map(|f| f.iter().map(ToString::to_string).collect()),
            partitions: None,
        }
    }

    /// Back to a [`QueryRequest`].
    #[must_use]
    pub fn into_request(self) -> QueryRequest {
        QueryRequest {
            map: self.map.into(),
            query: self.query,
            fields: self
                .fields
                .map(|f| f.into_iter().map(Into::into).collect())
                .into(),
            consistency: ROption::RNone,
        }
    }
}

/// One row a node answers a query with: a key it holds and its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireRow {
    /// The key.
    pub key: String,
    /// Its (unprojected) value.
    pub value: RawValue,
}

/// One live-query update a node ships to the coordinator of the query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireUpdate {
    /// The coordinator's subscription id.
    pub sub: u64,
    /// The gathering round the sending registration belongs to; updates of
    /// an older round are dropped by the coordinator.
    pub gen: u64,
    /// The key.
    pub key: String,
    /// The new value; `None` on `Leave`.
    pub value: Option<RawValue>,
    /// Enter, update or leave on the sending node.
    pub change: ChangeType,
}

/// A full-text search as it travels to the nodes that run it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireSearch {
    /// Map name.
    pub map: String,
    /// Query text.
    pub query: String,
    /// Most hits (0: the storage module's default).
    pub limit: u32,
    /// Lowest score kept.
    pub min_score: f64,
    /// Per-field boosts.
    pub boost: Vec<(String, f64)>,
    /// Only hits of these partitions, as [`WireQuery::partitions`].
    #[serde(default)]
    pub partitions: Option<[u64; PARTITION_SET_WORDS]>,
}

impl WireSearch {
    /// The wire form of `r`.
    #[must_use]
    pub fn from_request(r: &SearchRequest) -> Self {
        Self {
            map: r.map.to_string(),
            query: r.query.to_string(),
            limit: r.limit,
            min_score: r.min_score,
            boost: r.boost.iter().map(|t| (t.0.to_string(), t.1)).collect(),
            partitions: None,
        }
    }

    /// Back to a [`SearchRequest`].
    #[must_use]
    pub fn into_request(self) -> SearchRequest {
        SearchRequest {
            map: self.map.into(),
            query: self.query.into(),
            limit: self.limit,
            min_score: self.min_score,
            boost: self
                .boost
                .into_iter()
                .map(|(f, w)| abi_stable::std_types::Tuple2(f.into(), w))
                .collect(),
            consistency: ROption::RNone,
        }
    }
}

/// One search hit on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireHit {
    /// The key.
    pub key: String,
    /// Its score on the node that found it.
    pub score: f64,
    /// Query terms it matched.
    pub matched_terms: Vec<String>,
    /// Its value.
    pub value: RawValue,
}

impl From<&SearchHit> for WireHit {
    fn from(h: &SearchHit) -> Self {
        Self {
            key: h.key.to_string(),
            score: h.score,
            matched_terms: h.matched_terms.iter().map(ToString::to_string).collect(),
            value: h.value.clone(),
        }
    }
}

impl WireHit {
    /// The local form.
    #[must_use]
    pub fn into_hit(self) -> SearchHit {
        SearchHit {
            key: self.key.into(),
            score: self.score,
            matched_terms: self.matched_terms.into_iter().map(Into::into).collect(),
            value: self.value,
        }
    }
}

/// Every one-way frame body on the `Query` channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum QueryMessage {
    /// Change events for `SERVER_EVENT` subscribers (see [`Events`]).
    Events(Events),
    /// Live-query updates for the coordinator of their queries, in order.
    Updates(Vec<WireUpdate>),
    /// The coordinator stopped live query `sub`: drop its registration.
    Unsubscribe {
        /// The coordinator's subscription id.
        sub: u64,
    },
}

/// Every request body on the `Query` channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum QueryCall {
    /// Run this query once on the local storage; answered with
    /// `Vec<WireRow>` (every matching row held here, owned or backup).
    Query(WireQuery),
    /// Register (or re-register, for round `gen`) a live query for the
    /// sender's subscription `sub`; answered with its `Vec<WireRow>`
    /// snapshot, after which updates follow as [`QueryMessage::Updates`].
    /// A round older than the registered one is refused.
    Subscribe {
        /// The coordinator's subscription id.
        sub: u64,
        /// The gathering round.
        gen: u64,
        /// The query (no `limit`, no `cursor`, no projection).
        request: WireQuery,
    },
    /// Run this search on the local storage; answered with `Vec<WireHit>`.
    Search(WireSearch),
    /// This node's share of a Merkle tree node for the given partitions
    /// (`StorageAccessor::merkle_node_in`); answered with a
    /// [`MerkleShare`].
    Merkle(WireMerkle),
}

/// A request for a node's share of one node of a map's Merkle tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireMerkle {
    /// Map name.
    pub map: String,
    /// Which tree.
    pub kind: MapKind,
    /// Hex path ("" is the root).
    pub path: String,
    /// The partitions the share covers (`PartitionSet` words): those the
    /// asked node serves in the coordinator's read plan.
    pub partitions: [u64; PARTITION_SET_WORDS],
}

/// A node's answer to [`WireMerkle`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MerkleShare {
    /// An inner node: (child hex character as ASCII, sum of the share).
    Buckets(Vec<(u8, u32)>),
    /// A leaf: the share's records, and the map's OR tombstones.
    Leaf {
        /// Records of the asked partitions' keys in the leaf.
        records: Vec<KeyRecord>,
        /// The map's tombstoned tags (OR maps).
        tombstones: Vec<String>,
    },
    /// The node does not hold one of the asked partitions in memory (not
    /// related to it any more, or still loading it): ask again later.
    NotHeld(String),
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

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::types::{LwwRecord, MapOp, Timestamp};

    fn op(key: &str, millis: u64) -> KeyedOp {
        KeyedOp {
            map: "m".into(),
            key: key.into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(RawValue::encode(&millis).unwrap()),
                timestamp: Timestamp::new(millis, 0, "n"),
                ttl_ms: ROption::RNone,
            }),
        }
    }

    #[test]
    fn t10_replicate_out_decodes_as_replicate_in_order() {
        let a = vec![op("a", 1), op("b", 2)];
        let b: Vec<KeyedOp> = Vec::new();
        let c = vec![op("c", 3)];
        let body = encode(&ReplicateOut {
            changes: Chunks(vec![&a, &b, &c]),
            durable: true,
        });
        let back: Replicate = decode(&body, "test").unwrap();
        assert!(back.durable);
        let keys: Vec<&str> = back.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(back.changes[2], c[0]);
    }
}
