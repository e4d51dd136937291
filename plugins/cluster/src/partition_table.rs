//! The partition table: 271 partitions, each with an owner and backups,
//! assigned over the sorted member list (the legacy assignment, kept because
//! clients and peers compute the same one).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster_types::{NodeEndpoint, NodeStatus, PartitionInfo, PartitionMap};
use hangar_core::module::partition::PartitionView;
use hangar_core::PARTITION_COUNT;
use parking_lot::RwLock;

/// One assignment of all partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Members, sorted by id.
    pub members: Vec<String>,
    /// Owner index into `members`, per partition.
    pub owners: Vec<usize>,
    /// Backup indexes into `members`, per partition.
    pub backups: Vec<Vec<usize>>,
}

impl Assignment {
    /// Assigns every partition over `members` with `backup_count` backups:
    /// `owner = m[i % n]`, backups `m[(i % n + b) % n]` for `b` in
    /// `1..=backup_count` (fewer when there are fewer other members).
    ///
    /// # Panics
    /// If `members` is empty (a node always counts itself).
    #[must_use]
    pub fn compute(mut members: Vec<String>, backup_count: usize) -> Self {
        members.sort();
        members.dedup();
        assert!(
            !members.is_empty(),
            "a partition table needs at least this node"
        );
        let n = members.len();
        let mut owners = Vec::with_capacity(PARTITION_COUNT as usize);
        let mut backups = Vec::with_capacity(PARTITION_COUNT as usize);
        for i in 0..PARTITION_COUNT as usize {
            let o = i % n;
            owners.push(o);
            backups.push((1..=backup_count.min(n - 1)).map(|b| (o + b) % n).collect());
        }
        Self {
            members,
            owners,
            backups,
        }
    }
}

/// The versioned partition table of this node, shared with the storage
/// module through [`PartitionView`].
#[derive(Debug)]
pub struct PartitionTable {
    local: String,
    state: RwLock<(u64, Assignment)>,
}

impl PartitionTable {
    /// A table where `local` is the only member: it owns every partition.
    /// Version 1.
    #[must_use]
    pub fn single(local: &str) -> Arc<Self> {
        Arc::new(Self {
            local: local.to_string(),
            state: RwLock::new((1, Assignment::compute(vec![local.to_string()], 1))),
        })
    }

    /// Installs a new assignment; the version increases only when some owner
    /// changed. Returns the version in force.
    pub fn install(&self, next: Assignment) -> u64 {
        let mut st = self.state.write();
        let owner_changed = (0..PARTITION_COUNT as usize)
            .any(|p| st.1.members[st.1.owners[p]] != next.members[next.owners[p]]);
        if owner_changed {
            st.0 += 1;
        }
        st.1 = next;
        st.0
    }

    /// The client-visible map. `endpoint_of` gives each node's WebSocket URL.
    pub fn to_map(&self, endpoint_of: impl Fn(&str) -> String, now_ms: u64) -> PartitionMap {
        let st = self.state.read();
        let a = &st.1;
        PartitionMap {
            version: st.0,
            partition_count: PARTITION_COUNT,
            nodes: a
                .members
                .iter()
                .map(|m| NodeEndpoint {
                    node_id: m.as_str().into(),
                    websocket: endpoint_of(m).into(),
                    http: ROption::RNone,
                    status: NodeStatus::Active,
                })
                .collect(),
            partitions: (0..PARTITION_COUNT)
                .map(|p| PartitionInfo {
                    partition: p,
                    owner: a.members[a.owners[p as usize]].as_str().into(),
                    backups: a.backups[p as usize]
                        .iter()
                        .map(|&b| RString::from(a.members[b].as_str()))
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
        self.state.read().0
    }

    fn owner(&self, partition: u32) -> ROption<RString> {
        let st = self.state.read();
        st.1.owners
            .get(partition as usize)
            .map(|&o| RString::from(st.1.members[o].as_str()))
            .into()
    }

    fn backups(&self, partition: u32) -> RVec<RString> {
        let st = self.state.read();
        st.1.backups
            .get(partition as usize)
            .map(|b| {
                b.iter()
                    .map(|&i| RString::from(st.1.members[i].as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn is_local_owner(&self, partition: u32) -> bool {
        let st = self.state.read();
        st.1.owners
            .get(partition as usize)
            .is_some_and(|&o| st.1.members[o] == self.local)
    }

    fn is_related(&self, partition: u32) -> bool {
        let st = self.state.read();
        let Some(&o) = st.1.owners.get(partition as usize) else {
            return false;
        };
        st.1.members[o] == self.local
            || st.1.backups[partition as usize]
                .iter()
                .any(|&b| st.1.members[b] == self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::module::partition::PartitionViewExt;

    #[test]
    fn t10_a_single_node_owns_every_partition_with_no_backups() {
        let t = PartitionTable::single("n1");
        assert_eq!(t.version(), 1);
        for p in 0..PARTITION_COUNT {
            assert_eq!(t.owner(p).into_option().unwrap(), "n1");
            assert!(t.backups(p).is_empty());
            assert!(t.is_local_owner(p) && t.is_related(p));
        }
        assert!(!t.is_related(PARTITION_COUNT));
        assert!(t.owns_key("hello"));
    }

    #[test]
    fn t11_assignment_is_round_robin_over_sorted_members_and_never_self_backup() {
        let a = Assignment::compute(vec!["c".into(), "a".into(), "b".into()], 1);
        assert_eq!(a.members, ["a", "b", "c"]);
        assert_eq!((a.owners[0], a.owners[1], a.owners[3]), (0, 1, 0));
        assert_eq!(a.backups[0], vec![1]);
        assert_eq!(a.backups[2], vec![0]);
        for p in 0..PARTITION_COUNT as usize {
            assert!(!a.backups[p].contains(&a.owners[p]));
        }
    }

    #[test]
    fn t12_version_moves_only_when_an_owner_changes() {
        let t = PartitionTable::single("a");
        assert_eq!(t.install(Assignment::compute(vec!["a".into()], 2)), 1);
        assert_eq!(
            t.install(Assignment::compute(vec!["a".into(), "b".into()], 1)),
            2
        );
        assert!(!t.is_local_owner(1) && t.is_related(1), "backup of p1");
        let m = t.to_map(|n| format!("ws://{n}"), 5);
        assert_eq!(m.version, 2);
        assert_eq!(m.partitions.len(), 271);
        assert_eq!(m.partitions[1].owner, "b");
        assert_eq!(m.partitions[1].backups.as_slice(), &[RString::from("a")]);
    }
}
