use std::collections::BTreeSet;

use hangar_cluster::partition_table::Table;
use hangar_cluster::strategy::{Acks, DefaultStrategy, ReplicationStrategy, Zones};
use hangar_core::ConsistencyLevel::{Eventual, Quorum, Strong};

use super::ZoneStrategy;

fn zones(spec: &[(&str, &str)]) -> Zones {
    spec.iter()
        .map(|(n, z)| ((*n).to_string(), (*z).to_string()))
        .collect()
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// Plans until the table is stable, every transfer completing at once;
/// every table on the way must be valid.
fn settle(
    s: &dyn ReplicationStrategy,
    mut t: Table,
    live: &[String],
    z: &Zones,
    bc: usize,
) -> Table {
    for _ in 0..60 {
        let done: BTreeSet<(u32, String)> = t
            .transfers()
            .into_iter()
            .map(|x| (x.partition, x.target))
            .collect();
        match s.next_table(&t, live, &[], z, bc, &done) {
            Some(n) => {
                n.validate().expect("a valid table");
                assert!(n.version > t.version);
                t = n;
            }
            None => return t,
        }
    }
    panic!("the plan did not settle in 60 rounds")
}

/// Partitions whose backups are all in the owner's zone.
fn single_zone(t: &Table, z: &Zones) -> Vec<usize> {
    (0..t.owners.len())
        .filter(|&p| {
            let oz = &z[&t.owners[p]];
            t.backups[p].iter().all(|b| &z[b] == oz)
        })
        .collect()
}

fn two_zones() -> Zones {
    zones(&[("n1", "a"), ("n2", "a"), ("n3", "b")])
}

#[test]
fn t10_the_first_table_has_a_backup_in_another_zone_for_every_partition() {
    let z = two_zones();
    let t = ZoneStrategy.initial_table(&ids(&["n1", "n2", "n3"]), &z, 1);
    t.validate().unwrap();
    assert_eq!(single_zone(&t, &z), Vec::<usize>::new());
    // and planning on from it keeps the property
    let live = ids(&["n1", "n2", "n3"]);
    assert_eq!(
        single_zone(&settle(&ZoneStrategy, t, &live, &z, 1), &z),
        Vec::<usize>::new()
    );
}

#[test]
fn t11_the_default_strategy_leaves_partitions_in_one_zone() {
    // Negative control: the property the zone strategy adds does not hold
    // by chance.
    let z = two_zones();
    let live = ids(&["n1", "n2", "n3"]);
    let t = DefaultStrategy.initial_table(&live, &z, 1);
    assert!(!single_zone(&t, &z).is_empty());
    let t = settle(&DefaultStrategy, t, &live, &z, 1);
    assert!(!single_zone(&t, &z).is_empty());
}

#[test]
fn t12_a_zone_joining_later_gets_a_copy_of_every_partition_by_transfer() {
    let z = two_zones();
    let t = ZoneStrategy.initial_table(&ids(&["n1", "n2"]), &z, 1);
    let live = ids(&["n1", "n2", "n3"]);
    // The first plan may not make n3 a holder: it has no data yet.
    let next = ZoneStrategy
        .next_table(&t, &live, &[], &z, 1, &BTreeSet::new())
        .expect("n3 must get copies");
    for p in 0..next.owners.len() {
        assert!(next.owners[p] != "n3" && !next.backups[p].contains(&"n3".to_string()));
    }
    assert!(next.transfers().iter().any(|x| x.target == "n3"));
    let settled = settle(&ZoneStrategy, t, &live, &z, 1);
    assert_eq!(single_zone(&settled, &z), Vec::<usize>::new());
}

#[test]
fn t13_with_two_backups_and_two_zones_each_partition_spans_zones() {
    let z = zones(&[
        ("n1", "a"),
        ("n2", "a"),
        ("n3", "b"),
        ("n4", "b"),
        ("n5", "a"),
    ]);
    let live = ids(&["n1", "n2", "n3", "n4", "n5"]);
    let t = settle(
        &ZoneStrategy,
        ZoneStrategy.initial_table(&live, &z, 2),
        &live,
        &z,
        2,
    );
    assert_eq!(single_zone(&t, &z), Vec::<usize>::new());
    assert!(t.backups.iter().all(|b| b.len() == 2));
}

#[test]
fn t14_one_zone_falls_back_to_the_default_placement() {
    let z = zones(&[("n1", "a"), ("n2", "a"), ("n3", "a")]);
    let live = ids(&["n1", "n2", "n3"]);
    assert_eq!(
        ZoneStrategy.initial_table(&live, &z, 1),
        DefaultStrategy.initial_table(&live, &z, 1)
    );
    let t = Table::initial(&ids(&["n1", "n2"]), 1);
    let done = BTreeSet::new();
    assert_eq!(
        ZoneStrategy.next_table(&t, &live, &[], &z, 1, &done),
        DefaultStrategy.next_table(&t, &live, &[], &z, 1, &done)
    );
}

#[test]
fn t15_losing_the_only_node_of_a_zone_keeps_every_partition_and_falls_back() {
    let z = two_zones();
    let all = ids(&["n1", "n2", "n3"]);
    let t = settle(
        &ZoneStrategy,
        ZoneStrategy.initial_table(&all, &z, 1),
        &all,
        &z,
        1,
    );
    let survivors = ids(&["n1", "n2"]);
    assert!(
        t.orphans(&survivors).is_empty(),
        "n3's partitions have backups in zone a"
    );
    let after = settle(&ZoneStrategy, t, &survivors, &z, 1);
    for p in 0..after.owners.len() {
        assert!(survivors.contains(&after.owners[p]));
        assert!(after.backups[p].iter().all(|b| survivors.contains(b)));
        assert_eq!(
            after.backups[p].len(),
            1,
            "one zone left: backups stay within it"
        );
    }
}

#[test]
fn t20_quorum_needs_an_ack_from_outside_the_owners_zone() {
    let z = two_zones();
    let backups = ids(&["n2", "n3"]);
    let only_n2 = ids(&["n2"]);
    let only_n3 = ids(&["n3"]);
    fn ack<'a>(backups: &'a [String], acked: &'a [String], z: &'a Zones) -> Acks<'a> {
        Acks {
            owner: "n1",
            backups,
            local: "n1",
            acked,
            zones: z,
        }
    }
    // A majority (n1 + n2) but both in zone a: not enough.
    assert!(!ZoneStrategy.acks_met(Quorum, &ack(&backups, &only_n2, &z)));
    assert!(
        DefaultStrategy.acks_met(Quorum, &ack(&backups, &only_n2, &z)),
        "the default accepts it"
    );
    assert!(ZoneStrategy.acks_met(Quorum, &ack(&backups, &only_n3, &z)));
    assert!(!ZoneStrategy.acks_met(Strong, &ack(&backups, &only_n3, &z)));
    assert!(ZoneStrategy.acks_met(Eventual, &ack(&backups, &[], &z)));
}

#[test]
fn t21_quorum_without_a_copy_outside_the_zone_is_the_majority_rule() {
    let z = two_zones();
    let backups = ids(&["n2"]);
    let acked = ids(&["n2"]);
    let acks = Acks {
        owner: "n1",
        backups: &backups,
        local: "n1",
        acked: &acked,
        zones: &z,
    };
    assert!(ZoneStrategy.acks_met(Quorum, &acks));
    let none: Vec<String> = Vec::new();
    assert!(!ZoneStrategy.acks_met(
        Quorum,
        &Acks {
            acked: &none,
            ..acks
        }
    ));
}
