//! The replication extension point: [`ReplicationStrategy`] decides who
//! holds copies of each partition, which nodes a change is shipped to, and
//! when the acknowledgements received satisfy a consistency level.
//!
//! Everything else (transport, gossip, Raft, migration, the replication
//! pipeline, locks, reads) is the default module's, so a strategy is a
//! small piece of policy. [`crate::create_with_strategy`] builds the module
//! with one, and [`crate::export_cluster_plugin_with_strategy!`] exports
//! such a module as a plugin from another crate. [`DefaultStrategy`] is
//! what the stock `hangar_cluster` plugin runs.
//!
//! A strategy's tables MUST keep the planning contract of
//! `partition_table/plan.rs`: a node becomes an owner or backup of a
//! partition only once it has the data (it was already a holder, or a
//! pending holder whose transfer is done); any other new copy is first a
//! pending holder. Tables are checked with [`Table::validate`] before they
//! are committed, and a table that breaks an invariant is not committed.

use std::collections::{BTreeMap, BTreeSet};

use hangar_core::ConsistencyLevel;

use crate::partition_table::Table;
use crate::replication::required_acks;

/// Node id → zone label, for the cluster's Raft members (`[cluster] zone`
/// or `HANGAR_ZONE` on each node; the empty label is a zone like any other).
pub type Zones = BTreeMap<String, String>;

/// Who receives a change of one partition, from the node that applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receivers {
    /// Copies whose acknowledgements count toward the consistency level.
    pub counted: Vec<String>,
    /// Nodes that get the change too but count toward no level (pending
    /// holders receiving the partition by transfer).
    pub uncounted: Vec<String>,
}

/// The holders of one partition and which of them acknowledged a change,
/// as [`ReplicationStrategy::acks_met`] sees them.
#[derive(Clone, Copy, Debug)]
pub struct Acks<'a> {
    /// The partition's owner.
    pub owner: &'a str,
    /// Its backups, in promotion order.
    pub backups: &'a [String],
    /// The node that applied the change (it holds it without an ack).
    pub local: &'a str,
    /// Nodes that acknowledged the change.
    pub acked: &'a [String],
    /// Zones of the members.
    pub zones: &'a Zones,
}

impl Acks<'_> {
    /// Whether `node` has the change: it is this node or acknowledged it.
    #[must_use]
    pub fn has(&self, node: &str) -> bool {
        node == self.local || self.acked.iter().any(|a| a == node)
    }
}

/// A replication policy for the default cluster module.
///
/// Implementations must be deterministic functions of their inputs: the
/// Raft leader plans tables with it, and every node decides acknowledgements
/// with it, so two nodes given the same inputs must agree.
pub trait ReplicationStrategy: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and `/health` (e.g. `"default"`, `"zones"`).
    fn name(&self) -> &str;

    /// The first table of a cluster formed by `members` (no data exists
    /// yet, so any placement is allowed). `members` is never empty.
    fn initial_table(&self, members: &[String], zones: &Zones, backup_count: usize) -> Table;

    /// The next table after `current` for the `live` and `leaving`
    /// members, with the transfers `done` (partition, target) complete, or
    /// `None` when `current` already fits. See the module docs for the
    /// contract the result must keep.
    fn next_table(
        &self,
        current: &Table,
        live: &[String],
        leaving: &[String],
        zones: &Zones,
        backup_count: usize,
        done: &BTreeSet<(u32, String)>,
    ) -> Option<Table>;

    /// Who gets a change of partition `partition` applied on `local`.
    /// The default ships to every holder (owner and backups) other than
    /// `local`, counted, and to the pending holders, uncounted.
    fn receivers(&self, table: &Table, partition: usize, local: &str) -> Receivers {
        let mut r = Receivers::default();
        let (Some(owner), Some(backups)) =
            (table.owners.get(partition), table.backups.get(partition))
        else {
            return r;
        };
        for n in std::iter::once(owner).chain(backups) {
            if n != local && !r.counted.contains(n) {
                r.counted.push(n.clone());
            }
        }
        r.uncounted = table
            .pending_of(partition)
            .iter()
            .filter(|n| *n != local)
            .cloned()
            .collect();
        r
    }

    /// Whether the acknowledgements in `acks` satisfy `level` for one
    /// change. The default: [`required_acks`] of the backups among the
    /// holders other than the applying node.
    fn acks_met(&self, level: ConsistencyLevel, acks: &Acks<'_>) -> bool {
        default_acks_met(level, acks)
    }

    /// Whether a write at `level` waits for any acknowledgement at all
    /// for a partition with `backups` backups.
    fn waits(&self, level: ConsistencyLevel, backups: usize) -> bool {
        required_acks(level, backups) > 0
    }
}

/// The default acknowledgement rule (see [`ReplicationStrategy::acks_met`]).
#[must_use]
pub fn default_acks_met(level: ConsistencyLevel, acks: &Acks<'_>) -> bool {
    let need = required_acks(level, acks.backups.len());
    let got = std::iter::once(acks.owner)
        .chain(acks.backups.iter().map(String::as_str))
        .filter(|n| *n != acks.local)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|n| acks.acked.iter().any(|a| a == n))
        .count();
    got >= need
}

/// The stock strategy: round-robin first table, `Table::plan` for every
/// next one (zones ignored), QUORUM a majority of owner and backups.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultStrategy;

impl ReplicationStrategy for DefaultStrategy {
    fn name(&self) -> &'static str {
        "default"
    }

    fn initial_table(&self, members: &[String], _zones: &Zones, backup_count: usize) -> Table {
        Table::initial(members, backup_count)
    }

    fn next_table(
        &self,
        current: &Table,
        live: &[String],
        leaving: &[String],
        _zones: &Zones,
        backup_count: usize,
        done: &BTreeSet<(u32, String)>,
    ) -> Option<Table> {
        current.plan(live, leaving, backup_count, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_the_default_ack_rule_is_the_majority_rule() {
        let zones = Zones::new();
        let backups = vec!["b".to_string(), "c".to_string()];
        let acked_one = vec!["b".to_string()];
        let acks = Acks {
            owner: "a",
            backups: &backups,
            local: "a",
            acked: &acked_one,
            zones: &zones,
        };
        assert!(default_acks_met(ConsistencyLevel::Quorum, &acks));
        assert!(!default_acks_met(ConsistencyLevel::Strong, &acks));
        let none: Vec<String> = Vec::new();
        let acks = Acks {
            acked: &none,
            ..acks
        };
        assert!(!default_acks_met(ConsistencyLevel::Quorum, &acks));
        assert!(default_acks_met(ConsistencyLevel::Eventual, &acks));
    }

    #[test]
    fn t11_the_default_receivers_are_the_other_holders_and_the_pending() {
        let mut t = Table::initial(&["a".into(), "b".into(), "c".into()], 1);
        t.pending[0] = vec!["c".into()];
        let r = DefaultStrategy.receivers(&t, 0, "a");
        assert_eq!(r.counted, vec!["b".to_string()]);
        assert_eq!(r.uncounted, vec!["c".to_string()]);
    }
}
