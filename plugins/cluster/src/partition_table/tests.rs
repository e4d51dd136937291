use super::*;
use hangar_core::module::partition::PartitionViewExt;
use proptest::prelude::*;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn owned_by(t: &Table, n: &str) -> usize {
    t.owners.iter().filter(|o| *o == n).count()
}

#[test]
fn t10_the_first_table_is_round_robin_and_never_backs_up_its_owner() {
    let t = Table::initial(&names(&["c", "a", "b"]), 1);
    assert_eq!(t.version, 1);
    assert_eq!(
        (&*t.owners[0], &*t.owners[1], &*t.owners[3]),
        ("a", "b", "a")
    );
    assert_eq!(t.backups[0], ["b"]);
    assert_eq!(t.backups[2], ["a"]);
    t.validate().unwrap();
    for n in ["a", "b", "c"] {
        assert!((90..=91).contains(&owned_by(&t, n)));
    }
}

#[test]
fn t11_a_lone_view_owns_everything_at_version_0_until_a_table_is_installed() {
    let v = PartitionTable::single("n1");
    assert_eq!(v.version(), 0);
    assert!(v.owns_key("hello") && v.is_related(270));
    assert!(!v.is_related(PARTITION_COUNT));
    let t = Arc::new(Table::initial(&names(&["n1", "n2"]), 1));
    assert!(v.install(t.clone()));
    assert!(!v.install(t), "the same version is not installed twice");
    assert_eq!(v.version(), 1);
    assert!(!v.is_local_owner(1) && v.is_related(1), "n1 backs up p1");
    let m = v.to_map(|n| Some((format!("ws://{n}"), NodeStatus::Active)), &[], 5);
    assert_eq!(m.version, 1);
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.partitions[1].owner, "n2");
}

#[test]
fn t20_a_dead_owner_is_replaced_by_its_backup_and_ownership_evens_out() {
    let t = Table::initial(&names(&["a", "b", "c"]), 1);
    let live = names(&["a", "b"]);
    let next = t.rebalance(&live, 1).expect("c died: the table changes");
    next.validate().unwrap();
    assert_eq!(next.version, 2);
    for p in 0..N {
        assert_ne!(next.owners[p], "c");
        assert!(!next.backups[p].contains(&"c".to_string()));
        let before: Vec<&String> = std::iter::once(&t.owners[p]).chain(&t.backups[p]).collect();
        if before.iter().any(|h| live.contains(h)) {
            assert!(
                before.contains(&&next.owners[p]),
                "p{p}: the new owner {} held the partition before",
                next.owners[p]
            );
        }
        assert_eq!(next.backups[p].len(), 1, "p{p} has its backup count back");
    }
    let (a, b) = (owned_by(&next, "a"), owned_by(&next, "b"));
    assert!(a.abs_diff(b) <= 1, "ownership evened out: a {a}, b {b}");
}

#[test]
fn t21_an_unchanged_member_set_gives_no_new_table() {
    let t = Table::initial(&names(&["a", "b", "c"]), 1);
    assert!(t.rebalance(&names(&["c", "b", "a"]), 1).is_none());
}

#[test]
fn t22_a_member_that_holds_nothing_takes_over_nothing_it_has_no_data_for() {
    let t = Table::initial(&names(&["a", "b"]), 1);
    // d joins: every partition already has owner + 1 backup.
    assert!(t.rebalance(&names(&["a", "b", "d"]), 1).is_none());
}

#[test]
fn t23_partitions_whose_holders_all_died_go_to_the_least_loaded_member() {
    let t = Table::initial(&names(&["a", "b", "c"]), 1);
    let live = names(&["a"]);
    assert!(!t.orphans(&live).is_empty());
    let next = t.rebalance(&live, 1).unwrap();
    next.validate().unwrap();
    assert!(next.owners.iter().all(|o| o == "a"));
    assert!(next.backups.iter().all(Vec::is_empty));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn t30_any_sequence_of_failures_and_returns_keeps_the_invariants(
        steps in proptest::collection::vec(proptest::collection::btree_set(0usize..5, 1..=5), 1..12),
        backups in 0usize..3,
    ) {
        let all = names(&["n0", "n1", "n2", "n3", "n4"]);
        let mut t = Table::initial(&all, backups);
        for live_idx in steps {
            let live: Vec<String> = live_idx.iter().map(|&i| all[i].clone()).collect();
            let Some(next) = t.rebalance(&live, backups) else { continue };
            prop_assert!(next.validate().is_ok());
            prop_assert_eq!(next.version, t.version + 1);
            for p in 0..N {
                prop_assert!(live.contains(&next.owners[p]));
                let held_before = std::iter::once(&t.owners[p]).chain(&t.backups[p]).any(|h| live.contains(h));
                if held_before {
                    let before: Vec<&String> = std::iter::once(&t.owners[p]).chain(&t.backups[p]).collect();
                    prop_assert!(before.contains(&&next.owners[p]), "owner of p{} came from nowhere", p);
                }
                prop_assert_eq!(next.backups[p].len(), backups.min(live.len() - 1));
            }
            // Rebalancing again may only trade roles among the same holders.
            if let Some(again) = next.rebalance(&live, backups) {
                for p in 0..N {
                    let mut a: Vec<&String> = std::iter::once(&next.owners[p]).chain(&next.backups[p]).collect();
                    let mut b: Vec<&String> = std::iter::once(&again.owners[p]).chain(&again.backups[p]).collect();
                    a.sort();
                    b.sort();
                    prop_assert_eq!(a, b);
                }
            }
            t = next;
        }
    }
}
