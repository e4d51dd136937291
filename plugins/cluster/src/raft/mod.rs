//! Raft for the cluster's agreed decisions, on openraft 0.9.
//!
//! What Raft decides: the member list (openraft's membership: voters and
//! learners, each with a [`NodeAddr`]), the partition table (versioned,
//! installed by compare-and-set) and lock fencing counters (strictly
//! increasing per name, across restarts and leader changes). Liveness is
//! not decided here: gossip detects it, and the leader's controllers turn
//! its findings into commands.
//!
//! # Layout
//!
//! - `types`: node identity ([`raft_id`], [`NodeAddr`]), [`Command`],
//!   [`ClusterState`] and its deterministic `apply`, [`RaftStatus`].
//! - `db`: the one redb file (`<dir>/raft.redb`) and its layout.
//! - `log_store`: the Raft log and vote (openraft's `RaftLogStorage`).
//! - `state_machine`: applied state and snapshots (`RaftStateMachine`).
//! - `network`: the [`RaftRpc`] seam, the wire format, openraft's client.
//! - `node`: [`ClusterRaft`], the handle the node uses; forwarding to the
//!   leader lives in `forward`.

mod db;
mod forward;
mod log_store;
mod network;
mod node;
mod state_machine;
mod types;

#[cfg(test)]
mod store_suite;

pub use network::{rpc_kind, RaftRpc};
pub use node::ClusterRaft;
pub use types::{
    raft_id, ClusterState, Command, CommandResponse, NodeAddr, RaftNodeId, RaftStatus, Table,
};

/// Raft timing, in milliseconds, and the snapshot interval.
///
/// MUST hold: `heartbeat_ms < election_min_ms < election_max_ms`, and
/// `snapshot_every >= 1`; `ClusterRaft::open` refuses anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// Interval of the leader's heartbeats; also each AppendEntries' timeout.
    pub heartbeat_ms: u64,
    /// Shortest time without a leader before a follower stands for election.
    pub election_min_ms: u64,
    /// Longest such time (each node picks at random in between).
    pub election_max_ms: u64,
    /// Log entries between snapshots; as many stay in the log after one.
    pub snapshot_every: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_min_ms: 600,
            election_max_ms: 1200,
            snapshot_every: 1000,
        }
    }
}

/// Why a Raft operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftError {
    /// Reading or writing the Raft file failed; the text names the file.
    #[error("Raft storage failed: {0}")]
    Storage(String),
    /// This node has no Raft state: no cluster was initialized with it and
    /// no leader has added it yet.
    #[error(
        "this node is not part of a Raft cluster yet: initialize one, or have a member add it \
         with add_member"
    )]
    NotInitialized,
    /// No leader could be reached in the time allowed (election under way,
    /// quorum lost, or the leader unreachable).
    #[error("no Raft leader could be reached in time")]
    NoLeader,
    /// The request is invalid or not allowed now; the text says why.
    #[error("Raft refused the request: {0}")]
    Rejected(String),
    /// The operation did not finish in time: it may or may not take effect.
    #[error("the Raft operation did not finish in time; it may or may not take effect")]
    Timeout,
    /// Raft on this node was shut down.
    #[error("Raft on this node is shut down")]
    ShutDown,
    /// Forwarding to the leader failed in transport; the text says where.
    #[error("Raft RPC failed: {0}")]
    Rpc(String),
}
