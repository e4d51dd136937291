//! The cluster-module trait: membership, partitions, replication, locks,
//! Merkle trees, reassignment, read replicas and repair (the default
//! implementation's layout is in `plugins/cluster/src/lib.rs`).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};

use super::accessor::StorageAccessor;
use super::cluster_types::{
    ClusterStatus, LockGrant, LockRelease, LockRequest, Member, PartitionMap, RepairReport,
    ReplicationOutcome, ReplicationRequest,
};
use super::local_node::{LocalNode, TopicPublish};
use super::partition::PartitionView;
use super::services::{ClockService, MetricsSink};
use super::storage_types::{
    AckResult, ApplyBatch, ChangeEvent, MerkleRequest, MerkleResponse, QueryRequest, QueryResponse,
    QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use super::{ModuleFuture, ModuleInfo};
use crate::error::ModuleResult;
use crate::types::ConsistencyLevel;

/// Resolves the peer list at start-up (seed `resolvePeers`), for peers that
/// are only known at run time.
pub trait PeerResolver: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Peers as `host:port`.
    fn resolve(&self) -> RVec<RString>;
}

/// What the cluster module is built with (step 2 of start-up).
#[derive(Clone)]
pub struct ClusterDeps {
    /// The node's clock.
    pub clock: Arc<dyn ClockService>,
    /// Where to report metrics.
    pub metrics: Arc<dyn MetricsSink>,
    /// Overrides the configured `peers` when present.
    pub peer_resolver: Option<Arc<dyn PeerResolver>>,
}

/// The cluster module.
///
/// # Contract
///
/// - `partition_view` MUST be usable before `start` (storage is built before
///   the cluster starts); a node that knows no peers owns every partition.
/// - `attach_storage` and `attach_node` are called once each, after the
///   storage module exists and before `start`; replication, reassignment and
///   repair use the accessor; forwarded writes and events from peers go to
///   the local node.
/// - `replicate` is called for every change applied on this node as owner of
///   its key (client writes and forwarded writes); it resolves when the
///   consistency level is met or fails; EVENTUAL resolves once the change is
///   queued. With no backups it succeeds at once.
/// - `forward` sends a write to the owner of its keys and resolves with the
///   owner's acknowledgements (the full write concern honoured there); it
///   never answers "not the owner": a write that reached a node that no
///   longer owns its keys is routed again.
/// - `observe_change` sees every change applied on this node, whatever its
///   origin (client, replication, repair, TTL expiry and GC); it MUST NOT
///   block.
/// - `status().ready` is false until the node has a committed partition
///   table; the host reports it and may refuse writes until then.
/// - Lock fencing tokens MUST strictly increase per name and never go
///   backwards, also after a lock went idle and its entry was dropped.
/// - A lock held by a holder whose TTL ran out is released; `release_holder`
///   releases every lock of a disconnected holder.
/// - `query`, `subscribe` and `search` cover every partition, wherever it
///   is held: each key is answered once, by the node that owns it (backup
///   copies are not counted twice), and sorted or limited queries are
///   merged with the storage module's own semantics
///   ([`StorageAccessor::merge_pages`]). A node alone goes straight to its
///   storage. A live query's `sink` receives ENTER/UPDATE/LEAVE for the
///   cluster-wide result; after a partition table change the result is
///   gathered again and only the differences are delivered (nothing missed,
///   nothing twice). `unsubscribe` stops it everywhere; no update reaches
///   the sink after it returns.
/// - `merkle_node` answers a node of a map's Merkle tree over every
///   partition of the cluster, exactly: an inner node's child hashes are
///   the wrapping sums, over the members, of each member's share restricted
///   to the partitions it owns in one partition table
///   ([`StorageAccessor::merkle_node_in`]); a leaf's records are the union
///   of the owners' records. It never answers a partial node: when a
///   member cannot answer for its partitions in time, or the table keeps
///   moving, it fails ([`crate::ErrorKind::UNAVAILABLE`] or
///   [`crate::ErrorKind::TIMEOUT`]). A node alone answers from its storage
///   (the same answer as the storage module's `merkle_node`).
/// - `shutdown` flushes pending replication (bounded), leaves the cluster and
///   stops background work. Idempotent.
pub trait ClusterModule: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Who this module is.
    fn info(&self) -> ModuleInfo;
    /// Binds the transport, joins peers, starts failure detection and repair.
    fn start(&self) -> ModuleFuture<()>;
    /// Leaves the cluster and stops. Idempotent.
    fn shutdown(&self) -> ModuleFuture<()>;

    /// The partition view handed to the storage module.
    fn partition_view(&self) -> Arc<dyn PartitionView>;
    /// Cross-wiring: the storage module's accessor.
    ///
    /// # Errors
    /// When called twice or after `start`.
    fn attach_storage(&self, storage: Arc<dyn StorageAccessor>) -> ModuleResult<()>;

    /// Current members, this node included.
    fn members(&self) -> RVec<Member>;
    /// The client-visible partition map.
    fn partition_map(&self) -> PartitionMap;

    /// Replicates applied changes to backups.
    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome>;
    /// Sends writes for partitions another node owns to that node; resolves
    /// with that node's acknowledgements.
    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>>;
    /// The node a read of `partition` at `consistency` should go to.
    fn read_replica(&self, partition: u32, consistency: ConsistencyLevel) -> ROption<RString>;

    /// Tries to take a named lock; never queues.
    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant>;
    /// Releases a lock; false if the holder or token do not match.
    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool>;
    /// Releases every lock of `holder`; returns how many.
    fn release_holder(&self, holder: RString) -> ModuleFuture<u32>;

    /// Runs one anti-entropy pass now.
    fn repair(&self) -> ModuleFuture<RepairReport>;

    /// Cross-wiring: the host's local node (forwarded writes, events from
    /// peers, topology notices).
    ///
    /// # Errors
    /// When called twice or after `start`.
    fn attach_node(&self, node: Arc<dyn LocalNode>) -> ModuleResult<()>;
    /// One change applied on this node (the change feed). Non-blocking.
    fn observe_change(&self, event: &ChangeEvent);
    /// Publishes a topic message to the subscribers on every node, this one
    /// included (delivered through [`LocalNode::deliver_topic`] in one order
    /// per topic). Resolves once the message is sequenced.
    fn publish_topic(&self, message: TopicPublish) -> ModuleFuture<()>;
    /// This node's view of the cluster (readiness, leader, versions).
    fn status(&self) -> ClusterStatus;

    /// Runs a query once over every partition of the cluster.
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse>;
    /// Registers a live query over every partition of the cluster under the
    /// host's `id` and returns its first page; updates reach `sink` (which
    /// MUST NOT block) from the moment the snapshot is taken.
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse>;
    /// Stops a live query on every node; true if it existed.
    fn unsubscribe(&self, id: SubscriptionId) -> bool;
    /// Full-text search over every partition of the cluster, merged by score
    /// and cut at the request's limit.
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>>;

    /// One node of a map's Merkle tree over every partition of the cluster
    /// (see the contract): what a client's Merkle sync walks, whichever node
    /// it is connected to. The root hash is the wrapping sum of the root's
    /// buckets (path `""`).
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse>;
}
