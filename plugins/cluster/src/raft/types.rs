//! What the cluster agrees on: node identity, the commands Raft orders, and
//! the state those commands build.
//!
//! [`ClusterState::apply`] is the whole state machine logic. It is a pure
//! function of the current state and the command, so every node that applies
//! the same log reaches the same state (the property Raft relies on).

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// openraft node id: a stable 64-bit FNV-1a hash of the Hangar node id string.
pub type RaftNodeId = u64;

const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The openraft node id of a Hangar node: 64-bit FNV-1a over the UTF-8 bytes
/// of `node_id`.
///
/// It MUST be the same on every node and across releases: it is stored in
/// the Raft log and votes. Two node ids that hash alike cannot both be
/// members; `add_member` refuses the second one.
#[must_use]
pub fn raft_id(node_id: &str) -> RaftNodeId {
    node_id.bytes().fold(FNV64_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV64_PRIME)
    })
}

/// openraft `Node` type: what the cluster knows of a member.
///
/// It travels inside the membership, so every node can reach every member
/// through `cluster_addr` without another lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The Hangar node id (the string [`raft_id`] hashes).
    pub node_id: String,
    /// `"ip:port"` of the node's cluster transport; Raft RPCs go there.
    pub cluster_addr: String,
    /// Where clients reach the node.
    pub client_endpoint: String,
    /// Failure zone, for placing backups.
    pub zone: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.node_id, self.cluster_addr)
    }
}

pub use crate::locks::{Grant, LockTable};
pub use crate::partition_table::Table;

/// A decision to commit through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Installs `table` if the current table's version is `expected_version`
    /// (0 = no table yet); `table.version` MUST be greater.
    ///
    /// The compare-and-set is exact: any other current version answers
    /// [`CommandResponse::TableConflict`] and changes nothing. A proposal that
    /// was retried after an ambiguous failure (timeout, lost leader) may find
    /// its own table already installed: then `current == table.version`.
    SetTable {
        /// The version the proposer based its table on.
        expected_version: u64,
        /// The table to install.
        table: Table,
    },
    /// Returns the next fencing token for `name`: strictly greater than every
    /// token returned before for it.
    NextFence {
        /// The lock (or other fenced resource) name.
        name: String,
    },
    /// Takes a named lock (see [`LockTable::lock`]). `now_ms` is stamped by
    /// the leader when it proposes the command.
    Lock {
        /// Lock name.
        name: String,
        /// Holder (`<nodeId>/<generation>/<host holder>`).
        holder: String,
        /// Lease asked for, in ms.
        ttl_ms: u64,
        /// The leader's wall clock when it proposed the command.
        now_ms: u64,
    },
    /// Releases a lock held by `holder` with `token`.
    Unlock {
        /// Lock name.
        name: String,
        /// Holder.
        holder: String,
        /// Its fencing token.
        token: u64,
    },
    /// Releases every lock of a holder (its connection closed).
    ReleaseHolder {
        /// Holder.
        holder: String,
    },
    /// Releases every lock taken through a node (it died or restarted),
    /// except holders starting with `keep` (its current incarnation).
    ReleaseNode {
        /// Hangar node id.
        node_id: String,
        /// Holder prefix to keep.
        keep: Option<String>,
    },
}

impl Command {
    /// Stamps the proposing leader's wall clock into a time-dependent
    /// command; others are left as they are.
    pub fn stamp(&mut self, wall_ms: u64) {
        if let Self::Lock { now_ms, .. } = self {
            *now_ms = wall_ms;
        }
    }
}

/// What applying a [`Command`] decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The table with this version is now the committed table.
    TableSet {
        /// The installed version.
        version: u64,
    },
    /// Nothing changed: the committed table has version `current`.
    TableConflict {
        /// The committed table's version (0 = none).
        current: u64,
    },
    /// The fencing token issued.
    Fence(u64),
    /// What a [`Command::Lock`] decided.
    Lock(Grant),
    /// A release: whether it matched ([`Command::Unlock`]: 0 or 1) or how
    /// many locks it freed.
    Released(u32),
}

/// The applied state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The committed partition table, once one was set.
    pub table: Option<Table>,
    /// Per name, the last fencing token issued.
    pub fences: BTreeMap<String, u64>,
    /// The cluster's named locks.
    #[serde(default)]
    pub locks: LockTable,
}

impl ClusterState {
    /// The version of the committed table; 0 when there is none.
    #[must_use]
    pub fn table_version(&self) -> u64 {
        self.table.as_ref().map_or(0, |t| t.version)
    }

    /// Applies one committed command. Deterministic: it reads nothing but
    /// `self` and `cmd`.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match cmd {
            Command::SetTable {
                expected_version,
                table,
            } => {
                let current = self.table_version();
                // The proposer checked the table, but a log written by another
                // build could still carry a bad one: it never gets installed.
                if current != *expected_version || table.check(current).is_err() {
                    return CommandResponse::TableConflict { current };
                }
                self.table = Some(table.clone());
                CommandResponse::TableSet {
                    version: table.version,
                }
            }
            Command::NextFence { name } => {
                let slot = self.fences.entry(name.clone()).or_insert(0);
                *slot = slot.saturating_add(1);
                CommandResponse::Fence(*slot)
            }
            Command::Lock {
                name,
                holder,
                ttl_ms,
                now_ms,
            } => CommandResponse::Lock(self.locks.lock(name, holder, *ttl_ms, *now_ms)),
            Command::Unlock {
                name,
                holder,
                token,
            } => CommandResponse::Released(u32::from(self.locks.unlock(name, holder, *token))),
            Command::ReleaseHolder { holder } => {
                CommandResponse::Released(self.locks.release_holder(holder))
            }
            Command::ReleaseNode { node_id, keep } => {
                CommandResponse::Released(self.locks.release_node(node_id, keep.as_deref()))
            }
        }
    }
}

/// Status of this node's Raft, for the node's control loops and admin views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    /// The Hangar node id of the leader this node knows of.
    pub leader: Option<String>,
    /// This node is the leader.
    pub is_leader: bool,
    /// Current term.
    pub term: u64,
    /// Index of the last committed entry this node knows of (= applied here).
    pub commit_index: u64,
    /// Index of the last entry applied to this node's state.
    pub last_applied: u64,
    /// Voters of the effective membership, by Hangar node id, sorted.
    pub voters: Vec<String>,
    /// Learners of the effective membership, by Hangar node id, sorted.
    pub learners: Vec<String>,
}

/// The response openraft records per applied entry: blank and membership
/// entries have none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied(pub(crate) Option<CommandResponse>);

openraft::declare_raft_types!(
    /// openraft's type configuration for Hangar's cluster Raft.
    pub(crate) TypeConfig:
        D = Command,
        R = Applied,
        NodeId = RaftNodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// One log entry of our Raft.
pub(crate) type LogEntry = openraft::Entry<TypeConfig>;
/// A log position.
pub(crate) type LogId = openraft::LogId<RaftNodeId>;
/// A membership with the log id that set it.
pub(crate) type StoredMembership = openraft::StoredMembership<RaftNodeId, NodeAddr>;
/// Snapshot metadata.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<RaftNodeId, NodeAddr>;
/// openraft's storage error.
pub(crate) type StorageError = openraft::StorageError<RaftNodeId>;

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::hash::PARTITION_COUNT;

    fn table(version: u64) -> Table {
        Table {
            version,
            owners: vec!["a".into(); PARTITION_COUNT as usize],
            backups: vec![vec!["b".into()]; PARTITION_COUNT as usize],
            pending: Vec::new(),
        }
    }

    #[test]
    fn t10_raft_id_is_fnv1a_64() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(raft_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(raft_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(raft_id("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn t11_set_table_is_an_exact_compare_and_set() {
        let mut s = ClusterState::default();
        let set = |e, v| Command::SetTable {
            expected_version: e,
            table: table(v),
        };
        assert_eq!(
            s.apply(&set(1, 2)),
            CommandResponse::TableConflict { current: 0 }
        );
        assert_eq!(
            s.apply(&set(0, 1)),
            CommandResponse::TableSet { version: 1 }
        );
        assert_eq!(
            s.apply(&set(0, 5)),
            CommandResponse::TableConflict { current: 1 }
        );
        // A version that does not grow is never installed.
        assert_eq!(
            s.apply(&set(1, 1)),
            CommandResponse::TableConflict { current: 1 }
        );
        assert_eq!(
            s.apply(&set(1, 7)),
            CommandResponse::TableSet { version: 7 }
        );
        assert_eq!(s.table_version(), 7);
    }

    #[test]
    fn t12_set_table_refuses_a_wrong_partition_count() {
        let mut s = ClusterState::default();
        let mut t = table(1);
        t.owners.pop();
        assert!(t.check(0).unwrap_err().contains("expected 271"));
        let r = s.apply(&Command::SetTable {
            expected_version: 0,
            table: t,
        });
        assert_eq!(r, CommandResponse::TableConflict { current: 0 });
        assert_eq!(s.table, None);
    }

    #[test]
    fn t13_fences_increase_per_name() {
        let mut s = ClusterState::default();
        let f = |n: &str| Command::NextFence { name: n.into() };
        assert_eq!(s.apply(&f("x")), CommandResponse::Fence(1));
        assert_eq!(s.apply(&f("x")), CommandResponse::Fence(2));
        assert_eq!(s.apply(&f("y")), CommandResponse::Fence(1));
        assert_eq!(s.apply(&f("x")), CommandResponse::Fence(3));
    }
}
