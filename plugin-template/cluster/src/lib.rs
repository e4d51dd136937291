//! A starting point for a third-party Hangar cluster plugin.
//!
//! It runs Hangar's default cluster module (gossip, Raft, partition
//! tables, migration, the replication pipeline, locks) with a replication
//! strategy of its own, [`FirstBackupStrategy`]: placement and shipping
//! are the default ones, and a QUORUM write is acknowledged only once the
//! partition's *first* backup (the one promoted if the owner dies) has it,
//! on top of the default majority.
//!
//! What makes it a cluster plugin:
//! - `crate-type = ["cdylib", "rlib"]` in `Cargo.toml`;
//! - a type implementing `hangar_cluster::ReplicationStrategy` (override
//!   `initial_table`/`next_table` for placement, `receivers` for who gets
//!   a change, `acks_met` for when a consistency level is met);
//! - `hangar_cluster::export_cluster_plugin_with_strategy!(...)`, which
//!   builds the default module with it (`hangar_cluster::create_with_strategy`)
//!   and exports it with this crate's name, version and description.
//!
//! Placement must keep the contract in `hangar_cluster::strategy`: a node
//! becomes a holder only once it has the data (a pending holder first).
//! Keep `tests/t10_conformance.rs`: the cluster conformance suites, loaded.

use std::collections::BTreeSet;
use std::sync::Arc;

use hangar_cluster::partition_table::Table;
use hangar_cluster::strategy::{default_acks_met, Acks, DefaultStrategy, Zones};
use hangar_cluster::ReplicationStrategy;
use hangar_core::ConsistencyLevel;

/// The default strategy, with QUORUM also waiting for the first backup.
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstBackupStrategy;

impl ReplicationStrategy for FirstBackupStrategy {
    fn name(&self) -> &'static str {
        "first-backup"
    }

    fn initial_table(&self, members: &[String], zones: &Zones, backup_count: usize) -> Table {
        DefaultStrategy.initial_table(members, zones, backup_count)
    }

    fn next_table(
        &self,
        current: &Table,
        live: &[String],
        leaving: &[String],
        zones: &Zones,
        backup_count: usize,
        done: &BTreeSet<(u32, String)>,
    ) -> Option<Table> {
        DefaultStrategy.next_table(current, live, leaving, zones, backup_count, done)
    }

    /// The default majority, and at QUORUM the first backup (when there is
    /// one) has the change.
    fn acks_met(&self, level: ConsistencyLevel, acks: &Acks<'_>) -> bool {
        default_acks_met(level, acks)
            && (level != ConsistencyLevel::Quorum
                || acks.backups.first().is_none_or(|b| acks.has(b)))
    }
}

/// The plugin's constructor, for embedding and tests: the default cluster
/// module with [`FirstBackupStrategy`].
///
/// # Errors
/// What the default module refuses (see `hangar_cluster::create`).
pub fn create(
    config: hangar_core::config::ClusterModuleConfig,
    deps: hangar_core::module::cluster::ClusterDeps,
) -> hangar_core::ModuleResult<Arc<dyn hangar_core::module::cluster::ClusterModule>> {
    hangar_cluster::create_with_strategy(config, deps, Arc::new(FirstBackupStrategy))
}

hangar_cluster::export_cluster_plugin_with_strategy!(Arc::new(FirstBackupStrategy));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_quorum_waits_for_the_first_backup() {
        let zones = Zones::new();
        let backups = vec!["b1".to_string(), "b2".to_string(), "b3".to_string()];
        let acked = vec!["b2".to_string(), "b3".to_string()];
        let acks = Acks {
            owner: "o",
            backups: &backups,
            local: "o",
            acked: &acked,
            zones: &zones,
        };
        assert!(
            default_acks_met(ConsistencyLevel::Quorum, &acks),
            "a majority"
        );
        assert!(!FirstBackupStrategy.acks_met(ConsistencyLevel::Quorum, &acks));
        let acked = vec!["b1".to_string(), "b3".to_string()];
        let acks = Acks {
            acked: &acked,
            ..acks
        };
        assert!(FirstBackupStrategy.acks_met(ConsistencyLevel::Quorum, &acks));
    }
}
