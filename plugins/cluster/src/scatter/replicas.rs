//! Read replicas: which node serves each partition of a read.
//!
//! A read's consistency is the request's own (`consistency` on the
//! client's message), else the map's `map_read_consistency`, else
//! `default_read_consistency` (see `crate::settings::ClusterSettings`). Then, per
//! partition of the coordinator's table:
//!
//! - **EVENTUAL**: any complete replica, that is the owner or a backup
//!   (never a *pending* holder, which is still receiving the partition):
//!   this node if it is one, else the live replica with the lowest
//!   measured round trip ([`crate::transport::RttTable`]); replicas not
//!   measured yet come after measured ones, and ties go in table order
//!   (owner, then backups in promotion order).
//! - **QUORUM** and **STRONG**: the owner. A backup may lag the owner by
//!   the writes still queued for it, so only the owner is sure to have
//!   every acknowledged write.
//!
//! A [`ReadPlan`] gathers the choices: each chosen node is asked once, for
//! exactly the partitions it serves (a [`PartitionSet`]), and a row is kept
//! only from the node that serves its partition, so no row counts twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hangar_core::module::partition::PartitionSet;
use hangar_core::{partition_of, ConsistencyLevel};

use crate::partition_table::Table;

/// Counter of reads per serving replica and role:
/// `hangar_cluster_reads_total{replica="<node>", role="owner"|"backup"}`,
/// on the coordinating node, +1 per read (a query, a live query's
/// gathering round, a search, one Merkle node) for each role in which
/// the replica serves at least one partition of it.
pub const READS_TOTAL: &str = "hangar_cluster_reads_total";

/// Which consistency a read runs at: the request's, else the map's
/// configured one, else the default.
#[derive(Clone, Debug, Default)]
pub struct ReadPolicy {
    /// `default_read_consistency`.
    pub default: ConsistencyLevel,
    /// `map_read_consistency`.
    pub per_map: BTreeMap<String, ConsistencyLevel>,
}

impl ReadPolicy {
    /// The consistency of a read of `map` that asked for `asked`.
    #[must_use]
    pub fn level(&self, map: &str, asked: Option<ConsistencyLevel>) -> ConsistencyLevel {
        asked
            .or_else(|| self.per_map.get(map).copied())
            .unwrap_or(self.default)
    }
}

/// True when a read at `level` may be served by a backup.
#[must_use]
pub fn backups_may_serve(level: ConsistencyLevel) -> bool {
    level == ConsistencyLevel::Eventual
}

/// What the chooser needs to know about nodes besides the table.
pub trait NodeFacts {
    /// This node's id.
    fn local(&self) -> &str;
    /// True when `node` can be asked (a member not confirmed failed).
    fn is_live(&self, node: &str) -> bool;
    /// The measured round trip to `node`, if any.
    fn rtt(&self, node: &str) -> Option<Duration>;
}

/// The replica that serves partition `p` of `table` at `level` (see the
/// module docs), skipping the nodes in `excluded` (they did not answer
/// this read); `None` when no allowed replica is live.
#[must_use]
pub fn choose<'t>(
    table: &'t Table,
    p: usize,
    level: ConsistencyLevel,
    facts: &dyn NodeFacts,
    excluded: &BTreeSet<String>,
) -> Option<&'t str> {
    let owner = table.owners.get(p)?;
    let usable = |n: &String| facts.is_live(n) && !excluded.contains(n);
    if !backups_may_serve(level) {
        return usable(owner).then_some(owner.as_str());
    }
    let holders = std::iter::once(owner).chain(table.backups.get(p).into_iter().flatten());
    let mut best: Option<(&'t String, Option<Duration>)> = None;
    for h in holders.filter(|h| usable(h)) {
        if h == facts.local() {
            return Some(h.as_str());
        }
        let rtt = facts.rtt(h);
        let better = match (&best, rtt) {
            (None, _) => true,
            (Some((_, None)), Some(_)) => true,
            (Some((_, Some(b))), Some(r)) => r < *b,
            _ => false,
        };
        if better {
            best = Some((h, rtt));
        }
    }
    best.map(|(h, _)| h.as_str())
}

/// Which node serves each partition of one read (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// The table version the plan was made from.
    pub version: u64,
    /// The serving node per partition; `None` when no allowed replica is
    /// live (the read cannot cover that partition now).
    pub by_partition: Vec<Option<String>>,
    /// The partitions each chosen node serves.
    pub sets: BTreeMap<String, PartitionSet>,
    /// Per chosen node: (partitions it serves as owner, as backup).
    pub roles: BTreeMap<String, (u32, u32)>,
}

impl ReadPlan {
    /// The plan for a read at `level` over `table`.
    #[must_use]
    pub fn new(
        table: &Table,
        level: ConsistencyLevel,
        facts: &dyn NodeFacts,
        excluded: &BTreeSet<String>,
    ) -> Self {
        let mut by_partition = Vec::with_capacity(table.owners.len());
        let mut sets: BTreeMap<String, PartitionSet> = BTreeMap::new();
        let mut roles: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for (p, owner) in (0u32..).zip(&table.owners) {
            let chosen = choose(table, p as usize, level, facts, excluded).map(str::to_string);
            if let Some(n) = &chosen {
                sets.entry(n.clone()).or_default().insert(p);
                let r = roles.entry(n.clone()).or_default();
                if n == owner {
                    r.0 += 1;
                } else {
                    r.1 += 1;
                }
            }
            by_partition.push(chosen);
        }
        Self {
            version: table.version,
            by_partition,
            sets,
            roles,
        }
    }

    /// True when `node` serves the partition of `key` in this plan.
    #[must_use]
    pub fn serves(&self, key: &str, node: &str) -> bool {
        self.by_partition
            .get(partition_of(key) as usize)
            .and_then(Option::as_deref)
            == Some(node)
    }

    /// Partitions no live replica can serve.
    #[must_use]
    pub fn unserved(&self) -> u32 {
        u32::try_from(self.by_partition.iter().filter(|n| n.is_none()).count()).unwrap_or(0)
    }

    /// The `role` labels `node` serves this read in ("owner", "backup").
    pub fn role_labels(&self, node: &str) -> impl Iterator<Item = &'static str> {
        let (o, b) = self.roles.get(node).copied().unwrap_or_default();
        [(o > 0).then_some("owner"), (b > 0).then_some("backup")]
            .into_iter()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::PARTITION_COUNT;

    struct Facts {
        local: String,
        dead: Vec<String>,
        rtt: BTreeMap<String, u64>,
    }

    impl NodeFacts for Facts {
        fn local(&self) -> &str {
            &self.local
        }
        fn is_live(&self, node: &str) -> bool {
            !self.dead.iter().any(|d| d == node)
        }
        fn rtt(&self, node: &str) -> Option<Duration> {
            self.rtt.get(node).map(|us| Duration::from_micros(*us))
        }
    }

    fn facts(local: &str, rtt: &[(&str, u64)]) -> Facts {
        Facts {
            local: local.into(),
            dead: Vec::new(),
            rtt: rtt.iter().map(|(n, r)| ((*n).to_string(), *r)).collect(),
        }
    }

    /// Partition 0 owned by `a` with backups `b`, `c`; `d` pending.
    fn table() -> Table {
        let mut t = Table::initial(&["a".into(), "b".into(), "c".into()], 2);
        t.pending[0] = vec!["d".into()];
        t.version = 7;
        t
    }

    const NONE: BTreeSet<String> = BTreeSet::new();

    #[test]
    fn t10_eventual_reads_go_to_this_node_when_it_holds_the_partition() {
        let t = table();
        // c is a backup of partition 0 and the slowest by far: still local.
        let f = facts("c", &[("a", 10), ("b", 20), ("c", 9_999)]);
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("c")
        );
    }

    #[test]
    fn t11_eventual_reads_elsewhere_go_to_the_replica_with_the_lowest_round_trip() {
        let t = table();
        let f = facts("x", &[("a", 900), ("b", 300), ("c", 500)]);
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("b")
        );
        // Unmeasured replicas come after measured ones.
        let f = facts("x", &[("c", 500)]);
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("c")
        );
        // Nothing measured: table order, the owner first.
        let f = facts("x", &[]);
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("a")
        );
        // A dead or excluded replica is skipped.
        let mut f = facts("x", &[("a", 900), ("b", 300), ("c", 500)]);
        f.dead.push("b".into());
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("c")
        );
        let ex: BTreeSet<String> = ["c".to_string()].into();
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &ex),
            Some("a")
        );
    }

    #[test]
    fn t12_strong_and_quorum_reads_go_to_the_owner_only() {
        let t = table();
        let f = facts("b", &[("a", 9_000), ("b", 1), ("c", 1)]);
        for level in [ConsistencyLevel::Strong, ConsistencyLevel::Quorum] {
            assert_eq!(choose(&t, 0, level, &f, &NONE), Some("a"), "{level:?}");
        }
        let mut f = facts("b", &[]);
        f.dead.push("a".into());
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Strong, &f, &NONE),
            None,
            "a dead owner is not replaced by a backup at STRONG"
        );
    }

    #[test]
    fn t13_a_pending_holder_never_serves_even_when_local_or_fastest() {
        let t = table();
        let f = facts("d", &[("d", 1), ("a", 500), ("b", 400), ("c", 600)]);
        assert_eq!(
            choose(&t, 0, ConsistencyLevel::Eventual, &f, &NONE),
            Some("b")
        );
        let plan = ReadPlan::new(&t, ConsistencyLevel::Eventual, &f, &NONE);
        assert!(!plan.sets.contains_key("d"), "{:?}", plan.sets.keys());
    }

    #[test]
    fn t14_a_plan_covers_every_partition_once_and_counts_roles() {
        let t = table();
        let f = facts("a", &[]);
        let local = ReadPlan::new(&t, ConsistencyLevel::Eventual, &f, &NONE);
        // With two backups on three nodes, a holds everything.
        assert_eq!(local.sets.len(), 1);
        assert_eq!(local.sets["a"], PartitionSet::ALL);
        let (o, b) = local.roles["a"];
        assert_eq!(o + b, PARTITION_COUNT);
        assert!(o > 0 && b > 0);
        assert_eq!(
            local.role_labels("a").collect::<Vec<_>>(),
            ["owner", "backup"]
        );

        let strong = ReadPlan::new(&t, ConsistencyLevel::Strong, &f, &NONE);
        assert_eq!(strong.sets.len(), 3);
        let mut union = PartitionSet::EMPTY;
        for s in strong.sets.values() {
            for p in s.iter() {
                assert!(!union.contains(p), "partition {p} twice");
                union.insert(p);
            }
        }
        assert_eq!(union, PartitionSet::ALL);
        assert!(strong.roles.values().all(|(_, b)| *b == 0));
        let k = "some-key";
        let owner = &t.owners[partition_of(k) as usize];
        assert!(strong.serves(k, owner));
        assert_eq!(strong.unserved(), 0);
        assert_eq!(strong.version, 7);
    }

    #[test]
    fn t15_read_consistency_comes_from_the_request_then_the_map_then_the_default() {
        let p = ReadPolicy {
            default: ConsistencyLevel::Eventual,
            per_map: [("m".to_string(), ConsistencyLevel::Strong)].into(),
        };
        assert_eq!(p.level("x", None), ConsistencyLevel::Eventual);
        assert_eq!(p.level("m", None), ConsistencyLevel::Strong);
        assert_eq!(
            p.level("m", Some(ConsistencyLevel::Eventual)),
            ConsistencyLevel::Eventual
        );
        assert_eq!(
            p.level("x", Some(ConsistencyLevel::Strong)),
            ConsistencyLevel::Strong
        );
    }
}
