//! Values that go in and out of the storage module: writes and their acks,
//! reads, live queries, search, Merkle sync and change events.

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use crate::error::ModuleError;
use crate::types::{KeyedOp, LwwRecord, MapKind, OrRecord, RawValue, WriteConcern};

/// Where a write comes from. Change events carry it so that the writer's own
/// connection does not get its write echoed back.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OriginKind {
    /// A client connection of this node.
    Client,
    /// A peer replicating to this node as a backup.
    Replication,
    /// Anti-entropy repair or partition migration.
    Repair,
    /// The node itself (GC, TTL expiry).
    Internal,
}

/// The origin of a write.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// What kind of writer.
    pub kind: OriginKind,
    /// Host-assigned connection id for [`OriginKind::Client`]; 0 otherwise.
    pub connection: u64,
    /// Node the write entered the cluster at.
    pub node: RString,
}

impl Origin {
    /// A client connection on `node`.
    pub fn client(connection: u64, node: &str) -> Self {
        Self {
            kind: OriginKind::Client,
            connection,
            node: node.into(),
        }
    }

    /// A write made by the node itself.
    pub fn internal(node: &str) -> Self {
        Self {
            kind: OriginKind::Internal,
            connection: 0,
            node: node.into(),
        }
    }
}

/// Identifies a pending write acknowledgement. 0 means "none".
pub type AckId = u64;

/// One op of a write with the acknowledgement it asks for.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct WriteOp {
    /// The change.
    pub op: KeyedOp,
    /// Level the writer waits for.
    pub concern: WriteConcern,
    /// How long to wait for it, in ms; `None` takes the module's default.
    pub timeout_ms: ROption<u64>,
}

/// A batch of writes from one origin.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ApplyBatch {
    /// The ops, applied in order.
    pub ops: RVec<WriteOp>,
    /// Who writes.
    pub origin: Origin,
    /// Replication consistency the writer asked for; `None` takes the
    /// configured default (per map, then the cluster's). The storage module
    /// ignores it; the write path hands it to the cluster module.
    pub consistency: ROption<crate::types::ConsistencyLevel>,
}

/// What became of one op of an [`ApplyBatch`].
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpStatus {
    /// Merged and changed the map.
    Applied,
    /// Merged but changed nothing (a stale or repeated op). Still a success.
    Unchanged,
    /// Refused; the outcome's error says why. Nothing changed.
    Rejected,
}

/// Outcome of one op, in the order of the batch.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct OpOutcome {
    /// Applied, unchanged or rejected.
    pub status: OpStatus,
    /// The pending acknowledgement to await; 0 when rejected.
    pub ack: AckId,
    /// The effective change when `Applied` (for an LWW op, the winning
    /// record): what replication sends and change events carry.
    pub change: ROption<KeyedOp>,
    /// Why it was rejected.
    pub error: ROption<ModuleError>,
}

/// How a write acknowledgement ended.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct AckResult {
    /// Which acknowledgement.
    pub ack: AckId,
    /// True when the requested level was reached in time.
    pub success: bool,
    /// Highest level reached (every level below it reached too).
    pub achieved: WriteConcern,
    /// On failure: what happened, e.g. `Timeout: achieved APPLIED, requested PERSISTED`.
    pub error: ROption<RString>,
}

/// A key's current state as read from a map.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    /// No such key (or pruned).
    Missing,
    /// The LWW record, tombstones and expired records included.
    Lww(LwwRecord),
    /// The live tagged records of an OR entry.
    Or(RVec<OrRecord>),
}

/// A key with its state.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key.
    pub key: RString,
    /// Its state.
    pub state: RecordState,
}

/// A map the storage module holds.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapInfo {
    /// Map name.
    pub name: RString,
    /// LWW or OR.
    pub kind: MapKind,
    /// Keys held, tombstones included.
    pub entries: u64,
}

/// Host-assigned id of a live-query subscription, unique per node.
pub type SubscriptionId = u64;

/// A query on one map.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct QueryRequest {
    /// Map name.
    pub map: RString,
    /// The query object as the client sent it (msgpack): `where`,
    /// `predicate`, `sort`, `limit`, `cursor`.
    pub query: RawValue,
    /// Projection: only these top-level fields of each value.
    pub fields: ROption<RVec<RString>>,
    /// Read consistency the client asked for; `None` takes the configured
    /// one (per map, then the cluster's default). In a cluster, EVENTUAL
    /// reads may be served by any complete replica of a partition, QUORUM
    /// and STRONG reads by its owner. The storage module ignores it.
    pub consistency: ROption<crate::types::ConsistencyLevel>,
}

/// One result row.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct QueryRow {
    /// The key.
    pub key: RString,
    /// The (projected) value.
    pub value: RawValue,
}

/// What became of the cursor a query carried (the wire `cursorStatus`:
/// `none`, `valid`, `invalid` or `expired`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CursorStatus {
    /// No cursor was given.
    None,
    /// The cursor was used.
    Valid,
    /// Undecodable or from another query; results start from the beginning.
    Invalid,
    /// Too old; results start from the beginning.
    Expired,
}

impl CursorStatus {
    /// The wire string: `none`, `valid`, `invalid` or `expired`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
        }
    }
}

/// A query's result page.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct QueryResponse {
    /// The rows of this page, in order.
    pub rows: RVec<QueryRow>,
    /// Cursor for the next page, present only when `has_more`.
    pub next_cursor: ROption<RString>,
    /// More rows exist after this page.
    pub has_more: bool,
    /// What became of the request's cursor.
    pub cursor_status: CursorStatus,
}

/// How a live query's result set changed (the wire `changeType`: `ENTER`,
/// `UPDATE` or `LEAVE`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeType {
    /// The key entered the result set (or the top-N window).
    Enter,
    /// A key in the result set changed value.
    Update,
    /// The key left the result set (or was displaced from the window).
    Leave,
}

impl ChangeType {
    /// The wire string: `ENTER`, `UPDATE` or `LEAVE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enter => "ENTER",
            Self::Update => "UPDATE",
            Self::Leave => "LEAVE",
        }
    }
}

/// One live-query update.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct QueryUpdate {
    /// Which subscription.
    pub subscription: SubscriptionId,
    /// The key.
    pub key: RString,
    /// The new (projected) value; `None` on `Leave`.
    pub value: ROption<RawValue>,
    /// Enter, update or leave.
    pub change: ChangeType,
}

/// Receives live-query updates.
///
/// # Contract
/// `deliver` MUST NOT block and MUST NOT call back into the storage module:
/// it is called while the module processes a change. Updates for one
/// subscription arrive in the order they happened.
pub trait QuerySink: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// One update.
    fn deliver(&self, update: &QueryUpdate);
}

/// A full-text search on one map.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct SearchRequest {
    /// Map name; MUST have full-text search configured.
    pub map: RString,
    /// The query text.
    pub query: RString,
    /// Most hits returned; 0 means the module's default (10).
    pub limit: u32,
    /// Hits scoring below this are dropped.
    pub min_score: f64,
    /// Per-field weights.
    pub boost: RVec<Tuple2<RString, f64>>,
    /// Read consistency, as [`QueryRequest::consistency`].
    pub consistency: ROption<crate::types::ConsistencyLevel>,
}

/// One search hit.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The key.
    pub key: RString,
    /// BM25 score.
    pub score: f64,
    /// Query terms found in the document.
    pub matched_terms: RVec<RString>,
    /// The current value.
    pub value: RawValue,
}

/// A request for one node of a map's Merkle tree.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct MerkleRequest {
    /// Map name.
    pub map: RString,
    /// Which tree: the LWW tree or the OR tree.
    pub kind: MapKind,
    /// Hex path from the root ("" is the root), at most the tree depth.
    pub path: RString,
    /// Read consistency, as [`QueryRequest::consistency`].
    pub consistency: ROption<crate::types::ConsistencyLevel>,
}

/// A node of a Merkle tree.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub enum MerkleNode {
    /// Inner node: child hex character (as an ASCII byte) and its hash.
    Buckets(RVec<Tuple2<u8, u32>>),
    /// Leaf: the records under it.
    Leaf(RVec<KeyRecord>),
}

/// Answer to a [`MerkleRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct MerkleResponse {
    /// The node.
    pub node: MerkleNode,
    /// For OR leaves: the map's tombstoned tags; empty otherwise.
    pub tombstones: RVec<RString>,
}

/// A change that was applied to a map: what `SERVER_EVENT` fans out.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// The effective change (the winning record for LWW).
    pub op: KeyedOp,
    /// Who made it.
    pub origin: Origin,
}

/// Receives every change applied to any map, whatever its origin.
///
/// # Contract
/// `on_change` MUST NOT block and MUST NOT call back into the storage module.
/// The event is borrowed: the module reuses its buffers after the call.
pub trait ChangeSink: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// One applied change.
    fn on_change(&self, event: &ChangeEvent);
}
