//! A cluster plugin with zone-aware replication: the default cluster module
//! (`hangar-cluster`) run with [`ZoneStrategy`].
//!
//! Each node names its failure zone (`[cluster] zone = "..."` or
//! `HANGAR_ZONE`); the label travels in gossip and in the Raft member list.
//! Then:
//!
//! - **placement**: whenever a live member exists in another zone than a
//!   partition's owner, the partition has a backup in such a zone; with one
//!   zone only, placement is the default one;
//! - **QUORUM**: besides the default majority of owner and backups, a write
//!   needs an acknowledgement from a copy outside the owner's zone when the
//!   partition has such a copy, so losing a whole zone loses no
//!   QUORUM-acknowledged write.
//!
//! Keeping a copy outside the owner's zone takes precedence over even load:
//! a load-balancing transfer that a later trim could turn into a
//! single-zone partition is not started (see [`ZoneStrategy::next_table`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hangar_cluster::partition_table::Table;
use hangar_cluster::strategy::{default_acks_met, Acks, ReplicationStrategy, Zones};
use hangar_core::ConsistencyLevel;

/// The zone-aware strategy (see the crate docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct ZoneStrategy;

fn zone_of<'a>(zones: &'a Zones, node: &str) -> &'a str {
    zones.get(node).map_or("", String::as_str)
}

/// Whether some backup is in another zone than the owner.
fn spans_zones(owner: &str, backups: &[String], zones: &Zones) -> bool {
    let oz = zone_of(zones, owner);
    backups.iter().any(|b| zone_of(zones, b) != oz)
}

impl ReplicationStrategy for ZoneStrategy {
    fn name(&self) -> &'static str {
        "zones"
    }

    /// The default round-robin table, then, for each partition whose
    /// backups are all in its owner's zone while other zones have members,
    /// its last backup replaced by a member of another zone (round robin
    /// over those members, by partition).
    fn initial_table(&self, members: &[String], zones: &Zones, backup_count: usize) -> Table {
        let mut t = Table::initial(members, backup_count);
        let mut sorted: Vec<String> = members.to_vec();
        sorted.sort();
        sorted.dedup();
        for p in 0..t.owners.len() {
            if t.backups[p].is_empty() || spans_zones(&t.owners[p], &t.backups[p], zones) {
                continue;
            }
            let oz = zone_of(zones, &t.owners[p]);
            let others: Vec<&String> = sorted.iter().filter(|m| zone_of(zones, m) != oz).collect();
            if others.is_empty() {
                continue;
            }
            let pick = others[p % others.len()].clone();
            if let Some(last) = t.backups[p].last_mut() {
                *last = pick;
            }
        }
        t
    }

    /// The default plan (`Table::plan`), then per partition, when a live
    /// member exists in another zone than the owner:
    /// 1. pending holders that only balance load (the partition already has
    ///    its copies) are dropped if trimming one holder after their
    ///    transfer could leave every copy in one zone;
    /// 2. if no backup is in another zone, a live node of another zone that
    ///    already has the data (a holder in `current`, or a pending holder
    ///    whose transfer is done) replaces the last backup; failing that, the
    ///    least loaded live member of another zone becomes a pending holder
    ///    (a backup once its transfer is done).
    fn next_table(
        &self,
        current: &Table,
        live: &[String],
        leaving: &[String],
        zones: &Zones,
        backup_count: usize,
        done: &BTreeSet<(u32, String)>,
    ) -> Option<Table> {
        let leaving_set: BTreeSet<&String> = leaving.iter().collect();
        let live: Vec<String> = live
            .iter()
            .filter(|n| !leaving_set.contains(n))
            .cloned()
            .collect();
        if live.is_empty() {
            return None;
        }
        let mut t = current
            .plan(&live, leaving, backup_count, done)
            .unwrap_or_else(|| current.clone());
        if backup_count > 0 {
            keep_a_copy_in_another_zone(&mut t, current, &live, zones, backup_count, done);
        }
        let same = t.owners == current.owners
            && t.backups == current.backups
            && (0..t.owners.len()).all(|p| t.pending_of(p) == current.pending_of(p));
        if same {
            return None;
        }
        t.version = current.version + 1;
        Some(t)
    }

    /// The default rule, and at QUORUM also an acknowledged copy outside
    /// the owner's zone when the partition has a copy there.
    fn acks_met(&self, level: ConsistencyLevel, acks: &Acks<'_>) -> bool {
        default_acks_met(level, acks)
            && (level != ConsistencyLevel::Quorum || cross_zone_acked(acks))
    }
}

/// Whether a copy outside the owner's zone has the change, or no such copy
/// exists.
#[must_use]
pub fn cross_zone_acked(acks: &Acks<'_>) -> bool {
    let oz = zone_of(acks.zones, acks.owner);
    let mut outside = acks
        .backups
        .iter()
        .filter(|b| zone_of(acks.zones, b) != oz)
        .peekable();
    outside.peek().is_none() || outside.any(|b| acks.has(b))
}

fn keep_a_copy_in_another_zone(
    t: &mut Table,
    current: &Table,
    live: &[String],
    zones: &Zones,
    backup_count: usize,
    done: &BTreeSet<(u32, String)>,
) {
    let want = backup_count.min(live.len() - 1) + 1;
    let mut load: BTreeMap<&String, usize> = live.iter().map(|n| (n, 0)).collect();
    for p in 0..t.owners.len() {
        for n in std::iter::once(&t.owners[p])
            .chain(&t.backups[p])
            .chain(t.pending_of(p))
        {
            if let Some(c) = load.get_mut(n) {
                *c += 1;
            }
        }
    }
    if t.pending.len() < t.owners.len() {
        t.pending.resize(t.owners.len(), Vec::new());
    }
    for p in 0..t.owners.len() {
        let owner = t.owners[p].clone();
        let oz = zone_of(zones, &owner).to_string();
        let others: Vec<&String> = live.iter().filter(|m| zone_of(zones, m) != oz).collect();
        if others.is_empty() {
            continue; // one zone only: the default placement stands
        }
        // 1. Drop balancing transfers that could end in one zone.
        let holders: Vec<String> = std::iter::once(owner.clone())
            .chain(t.backups[p].iter().cloned())
            .collect();
        let live_holders = holders.iter().filter(|h| live.contains(h)).count();
        if live_holders >= want {
            let pending = std::mem::take(&mut t.pending[p]);
            for y in pending {
                let mut after = holders.clone();
                after.push(y.clone());
                let safe = (0..after.len()).all(|drop| {
                    let rest: BTreeSet<&str> = after
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != drop)
                        .map(|(_, n)| zone_of(zones, n))
                        .collect();
                    rest.len() > 1
                });
                if safe {
                    t.pending[p].push(y);
                } else if let Some(c) = load.get_mut(&y) {
                    *c -= 1;
                }
            }
        }
        if spans_zones(&owner, &t.backups[p], zones) {
            continue;
        }
        // 2. A copy in another zone: one that has the data, else a transfer.
        let p32 = u32::try_from(p).unwrap_or(u32::MAX);
        let has_data = |x: &String| {
            current.owners.get(p) == Some(x)
                || current.backups.get(p).is_some_and(|b| b.contains(x))
                || (current.pending_of(p).contains(x) && done.contains(&(p32, x.clone())))
        };
        if let Some(x) = others.iter().find(|x| has_data(x)).map(|x| (*x).clone()) {
            t.pending[p].retain(|n| *n != x);
            if t.backups[p].len() + 1 < want {
                t.backups[p].push(x);
            } else if let Some(last) = t.backups[p].last_mut() {
                *last = x;
            }
            continue;
        }
        if t.pending[p].iter().any(|n| zone_of(zones, n) != oz) {
            continue;
        }
        let pick = others
            .iter()
            .filter(|m| !t.backups[p].contains(m))
            .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), (**m).clone()))
            .map(|m| (*m).clone());
        if let Some(m) = pick {
            if let Some(c) = load.get_mut(&m) {
                *c += 1;
            }
            t.pending[p].push(m);
        }
    }
}

/// The plugin's constructor: the default cluster module with
/// [`ZoneStrategy`].
///
/// # Errors
/// What the default module refuses (see `hangar_cluster::create`).
pub fn create(
    config: hangar_core::config::ClusterModuleConfig,
    deps: hangar_core::module::cluster::ClusterDeps,
) -> hangar_core::ModuleResult<Arc<dyn hangar_core::module::cluster::ClusterModule>> {
    hangar_cluster::create_with_strategy(config, deps, Arc::new(ZoneStrategy))
}

hangar_cluster::export_cluster_plugin_with_strategy!(Arc::new(ZoneStrategy));

#[cfg(test)]
mod tests;
