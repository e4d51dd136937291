//! Values that go in and out of the cluster module: members, the partition
//! map, replication, locks and repair.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use crate::types::{ConsistencyLevel, KeyedOp};

/// Membership status of a node.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Serving.
    Active,
    /// Joining the cluster.
    Joining,
    /// Leaving gracefully.
    Leaving,
    /// Missed heartbeats; not yet confirmed failed.
    Suspected,
    /// Confirmed failed.
    Failed,
}

/// A cluster member.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub node_id: RString,
    /// Cluster transport address (`host:port`).
    pub address: RString,
    /// WebSocket URL clients use (may be empty if unknown).
    pub client_endpoint: RString,
    /// Status.
    pub status: NodeStatus,
    /// True for this node.
    pub is_local: bool,
}

/// A node as the client-visible partition map lists it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// Node id.
    pub node_id: RString,
    /// WebSocket URL.
    pub websocket: RString,
    /// HTTP URL, if advertised.
    pub http: ROption<RString>,
    /// Status.
    pub status: NodeStatus,
}

/// Owner and backups of one partition.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition id, 0..271.
    pub partition: u32,
    /// Owning node.
    pub owner: RString,
    /// Backup nodes, in promotion order.
    pub backups: RVec<RString>,
}

/// The client-visible partition map (`PARTITION_MAP`).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PartitionMap {
    /// Version; increases with every ownership change.
    pub version: u64,
    /// Always 271.
    pub partition_count: u32,
    /// Nodes with their endpoints.
    pub nodes: RVec<NodeEndpoint>,
    /// Every partition.
    pub partitions: RVec<PartitionInfo>,
    /// Wall-clock ms when generated.
    pub generated_at: u64,
}

/// Changes to replicate to the backups of their partitions.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ReplicationRequest {
    /// Applied changes (winning records).
    pub changes: RVec<KeyedOp>,
    /// Consistency wanted; `None` takes the module's default.
    pub consistency: ROption<ConsistencyLevel>,
}

/// How replication went.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ReplicationOutcome {
    /// True when the consistency level was met.
    pub success: bool,
    /// Nodes that acknowledged (this node included).
    pub acked_by: RVec<RString>,
    /// On failure, why (timeout, unreachable backups).
    pub error: ROption<RString>,
}

/// A request for a named lock.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LockRequest {
    /// Lock name.
    pub name: RString,
    /// Who holds it: unique per client connection in the cluster.
    pub holder: RString,
    /// Lease in ms; clamped by the lock manager (1 000..=300 000).
    pub ttl_ms: u64,
}

/// Answer to a [`LockRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LockGrant {
    /// True when the holder now has the lock.
    pub granted: bool,
    /// Fencing token of the grant; strictly greater than every token issued
    /// for this name before (0 when not granted).
    pub fencing_token: u64,
}

/// A release of a named lock.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LockRelease {
    /// Lock name.
    pub name: RString,
    /// The holder releasing it.
    pub holder: RString,
    /// The token it was granted with.
    pub fencing_token: u64,
}

/// Result of one anti-entropy pass.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// Partitions compared with their replicas.
    pub partitions_checked: u32,
    /// Records written to repair divergence.
    pub records_repaired: u64,
    /// Problems met (unreachable replicas, ...).
    pub errors: RVec<RString>,
}
