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
    /// Consistency wanted; `None` takes the module's default (per map,
    /// then the cluster's).
    pub consistency: ROption<ConsistencyLevel>,
    /// True when a write of these changes asked for PERSISTED: backups
    /// acknowledge only once the changes are durable there, so PERSISTED
    /// means durable on as many replicas as the consistency level needs.
    pub durable: bool,
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

/// Where this node stands in its cluster.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterPhase {
    /// Looking for peers or waiting to be admitted; no partition table yet.
    Forming,
    /// A member with a committed partition table: serving.
    Active,
    /// Handing off and leaving.
    Leaving,
    /// Shut down.
    Stopped,
}

/// This node's view of its cluster, for `/health` and readiness.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Where this node stands.
    pub phase: ClusterPhase,
    /// True when the node can serve writes for every partition it is asked
    /// about (it has a committed partition table).
    pub ready: bool,
    /// The cluster id peers must share.
    pub cluster_id: RString,
    /// Node id of the current Raft leader, if known.
    pub leader: ROption<RString>,
    /// Raft term this node has seen.
    pub raft_term: u64,
    /// Raft commit index this node has seen.
    pub raft_commit_index: u64,
    /// Version of the partition table in force here.
    pub table_version: u64,
    /// Live members, this node included.
    pub members_alive: u32,
}

impl ClusterStatus {
    /// The status of a node that is alone and owns every partition.
    #[must_use]
    pub fn standalone(cluster_id: &str, table_version: u64) -> Self {
        Self {
            phase: ClusterPhase::Active,
            ready: true,
            cluster_id: cluster_id.into(),
            leader: ROption::RNone,
            raft_term: 0,
            raft_commit_index: 0,
            table_version,
            members_alive: 1,
        }
    }
}
