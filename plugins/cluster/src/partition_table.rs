//! The partition table: 271 partitions, each with an owner and backups.
//!
//! A [`Table`] is one versioned assignment. The Raft leader computes the next
//! one with [`Table::plan`] whenever the live member set changes and
//! commits it through Raft, so every node serves the same version; each node
//! installs committed tables into its [`PartitionTable`], the view the
//! storage module and the host read.
//!
//! Planning ([`Table::plan`], in `plan.rs`) moves as few partitions as
//! possible and never makes a node a holder before it has the data: a
//! partition whose owner died is taken over by its first live backup
//! (promotion), ownership is evened out only by swapping an owner with one
//! of its backups (which holds the data), and a node that should get a
//! copy (a partition short of copies, a member below its share) is first a
//! *pending* holder that receives the partition by transfer.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster_types::{NodeEndpoint, NodeStatus, PartitionInfo, PartitionMap};
use hangar_core::module::partition::PartitionView;
use hangar_core::PARTITION_COUNT;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

const N: usize = PARTITION_COUNT as usize;

/// One assignment of all partitions, by node id.
///
/// # Invariants
/// - `owners.len() == backups.len() == 271`;
/// - a partition's backups never include its owner and never repeat;
/// - `version` grows with every committed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Version; 1 for the first table of a cluster.
    pub version: u64,
    /// Owner per partition.
    pub owners: Vec<String>,
    /// Backups per partition, in promotion order.
    pub backups: Vec<Vec<String>>,
    /// Pending holders per partition: nodes receiving the partition by
    /// transfer. The owner replicates every write to them too, but they
    /// count toward no acknowledgement and serve nothing until a later
    /// table makes them backups. Empty (no list at all) in tables from
    /// before migration existed.
    #[serde(default)]
    pub pending: Vec<Vec<String>>,
}

mod plan;
pub use plan::Transfer;

impl Table {
    /// The first table of a cluster: round robin over the sorted members,
    /// `owner = m[p % n]`, backups the next `backup_count` members.
    ///
    /// # Panics
    /// If `members` is empty.
    #[must_use]
    pub fn initial(members: &[String], backup_count: usize) -> Self {
        let mut m: Vec<String> = members.to_vec();
        m.sort();
        m.dedup();
        assert!(!m.is_empty(), "a partition table needs at least one member");
        let n = m.len();
        let mut owners = Vec::with_capacity(N);
        let mut backups = Vec::with_capacity(N);
        for p in 0..N {
            let o = p % n;
            owners.push(m[o].clone());
            backups.push(
                (1..=backup_count.min(n - 1))
                    .map(|b| m[(o + b) % n].clone())
                    .collect(),
            );
        }
        Self {
            version: 1,
            owners,
            backups,
            pending: vec![Vec::new(); N],
        }
    }

    /// Why this table cannot be installed over `expected_version`, if it
    /// cannot: wrong partition count or a version that does not grow.
    pub(crate) fn check(&self, expected_version: u64) -> Result<(), String> {
        let n = PARTITION_COUNT as usize;
        if self.owners.len() != n || self.backups.len() != n {
            return Err(format!(
                "table version {} has {} owners and {} backup lists; expected {n} of each",
                self.version,
                self.owners.len(),
                self.backups.len()
            ));
        }
        if self.version <= expected_version {
            return Err(format!(
                "table version {} does not exceed expected_version {expected_version}; \
                 a new table MUST have a greater version",
                self.version
            ));
        }
        Ok(())
    }

    /// Partitions of `self` none of whose holders is in `live`.
    #[must_use]
    pub fn orphans(&self, live: &[String]) -> Vec<u32> {
        (0..N)
            .filter(|&p| {
                !std::iter::once(&self.owners[p])
                    .chain(&self.backups[p])
                    .any(|h| live.contains(h))
            })
            .map(|p| p as u32)
            .collect()
    }

    /// Every node holding some partition, sorted.
    #[must_use]
    pub fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .owners
            .iter()
            .chain(self.backups.iter().flatten())
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Checks the invariants; the text says which one a table breaks.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn validate(&self) -> Result<(), String> {
        if self.owners.len() != N || self.backups.len() != N {
            return Err(format!(
                "a table has {N} partitions; this one has {} owners and {} backup lists",
                self.owners.len(),
                self.backups.len()
            ));
        }
        for p in 0..N {
            let b = &self.backups[p];
            if b.contains(&self.owners[p]) {
                return Err(format!("partition {p}: the owner is also a backup"));
            }
            if self
                .pending_of(p)
                .iter()
                .any(|n| *n == self.owners[p] || b.contains(n))
            {
                return Err(format!(
                    "partition {p}: a pending holder already holds the partition"
                ));
            }
            let mut s = b.clone();
            s.sort();
            s.dedup();
            if s.len() != b.len() {
                return Err(format!("partition {p}: a backup is listed twice"));
            }
        }
        Ok(())
    }
}

/// The table in force on this node, shared with the storage module through
/// [`PartitionView`]. Before the cluster commits its first table, this node
/// is treated as the owner of everything (version 0), so a lone node serves
/// at once.
#[derive(Debug)]
pub struct PartitionTable {
    local: String,
    table: RwLock<Arc<Table>>,
}

impl PartitionTable {
    /// The pending holders of `partition` in the table in force: the owner
    /// replicates to them as well (see [`Table::pending`]).
    #[must_use]
    pub fn pending(&self, partition: u32) -> Vec<String> {
        self.table.read().pending_of(partition as usize).to_vec()
    }

    /// A table where `local` owns every partition, at version 0 (no
    /// committed table yet).
    #[must_use]
    pub fn single(local: &str) -> Arc<Self> {
        let mut t = Table::initial(&[local.to_string()], 0);
        t.version = 0;
        Arc::new(Self {
            local: local.to_string(),
            table: RwLock::new(Arc::new(t)),
        })
    }

    /// Withdraws the provisional table of [`Self::single`] (version 0, this
    /// node owning every partition) once this node is known to belong to a
    /// formed cluster (it restarted with Raft state, or found a formed
    /// cluster to join). Until the cluster's committed table installs, no
    /// partition then has an owner here, so writes are refused ("retry
    /// later") instead of being acknowledged at QUORUM by this node alone:
    /// a restarted member served such writes for the moment before its
    /// table installed, and they were lost once the real owners (which
    /// never received them) took over. Returns true when it withdrew it;
    /// a committed table (version ≥ 1) is never touched.
    pub fn withdraw_provisional(&self) -> bool {
        let mut cur = self.table.write();
        if cur.version != 0 || cur.owners.is_empty() {
            return false;
        }
        *cur = Arc::new(Table {
            version: 0,
            owners: Vec::new(),
            backups: Vec::new(),
            pending: Vec::new(),
        });
        true
    }

    /// Installs a committed table; older or equal versions are ignored.
    /// Returns true when `t` was installed.
    pub fn install(&self, t: Arc<Table>) -> bool {
        let mut cur = self.table.write();
        if t.version <= cur.version {
            return false;
        }
        *cur = t;
        true
    }

    /// The table in force.
    #[must_use]
    pub fn current(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// The client-visible map. `node` gives each node's endpoint and status
    /// (nodes it does not know are listed as failed with no endpoint).
    pub fn to_map(
        &self,
        node: impl Fn(&str) -> Option<(String, NodeStatus)>,
        extra_nodes: &[String],
        now_ms: u64,
    ) -> PartitionMap {
        let t = self.current();
        let mut ids = t.nodes();
        ids.extend(extra_nodes.iter().cloned());
        ids.sort();
        ids.dedup();
        PartitionMap {
            version: t.version.max(1),
            partition_count: PARTITION_COUNT,
            nodes: ids
                .iter()
                .map(|id| {
                    let (ws, status) = node(id).unwrap_or((String::new(), NodeStatus::Failed));
                    NodeEndpoint {
                        node_id: id.as_str().into(),
                        websocket: ws.into(),
                        http: ROption::RNone,
                        status,
                    }
                })
                .collect(),
            partitions: (0..PARTITION_COUNT)
                .map(|p| PartitionInfo {
                    partition: p,
                    owner: t.owners[p as usize].as_str().into(),
                    backups: t.backups[p as usize]
                        .iter()
                        .map(|b| RString::from(b.as_str()))
                        .collect(),
                })
                .collect(),
            generated_at: now_ms,
        }
    }
}

impl PartitionView for PartitionTable {
    fn local_node(&self) -> RString {
        self.local.as_str().into()
    }

    fn version(&self) -> u64 {
        self.table.read().version
    }

    fn owner(&self, partition: u32) -> ROption<RString> {
        let t = self.table.read();
        t.owners
            .get(partition as usize)
            .map(|o| RString::from(o.as_str()))
            .into()
    }

    fn backups(&self, partition: u32) -> RVec<RString> {
        let t = self.table.read();
        t.backups
            .get(partition as usize)
            .map(|b| b.iter().map(|n| RString::from(n.as_str())).collect())
            .unwrap_or_default()
    }

    fn is_local_owner(&self, partition: u32) -> bool {
        let t = self.table.read();
        t.owners
            .get(partition as usize)
            .is_some_and(|o| *o == self.local)
    }

    /// Owner, backup, or pending holder (a node receiving the partition
    /// keeps what it receives).
    fn is_related(&self, partition: u32) -> bool {
        let t = self.table.read();
        let p = partition as usize;
        t.owners.get(p).is_some_and(|o| *o == self.local)
            || t.backups.get(p).is_some_and(|b| b.contains(&self.local))
            || t.pending_of(p).contains(&self.local)
    }
}

#[cfg(test)]
mod tests;
