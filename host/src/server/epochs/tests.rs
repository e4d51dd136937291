use super::*;
use crate::config::SyncConfig;

fn cfg(width: u64) -> SyncConfig {
    SyncConfig {
        tombstone_epoch_width: width,
        forget_after_epochs: 3,
        ..SyncConfig::default()
    }
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::new(ms, 0, "n1")
}

fn tombstones(e: &Epochs, n: usize, from: usize) {
    for i in from..from + n {
        e.observe_tombstone("m", "k", &format!("{i}:0:c"), || ts(i as u64));
    }
}

#[test]
fn t10_the_epoch_advances_per_width_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = Epochs::open(cfg(2), Some(dir.path().into())).unwrap();
    assert_eq!(e.covering(), None, "absent while 0");
    tombstones(&e, 5, 0);
    assert_eq!(e.current(), 2);
    e.flush();
    drop(e);
    let e = Epochs::open(cfg(2), Some(dir.path().into())).unwrap();
    assert_eq!(e.current(), 2);
    tombstones(&e, 1, 5);
    assert_eq!(e.current(), 3, "the open epoch's count survived the reopen");
}

#[test]
fn t11_cursors_are_clamped_monotonic_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let e = Epochs::open(cfg(1), Some(dir.path().into())).unwrap();
    tombstones(&e, 4, 0);
    let b = e.bind("", None).unwrap();
    assert!(b.new_token.is_some());
    assert_eq!(
        e.apply_ack(&b.key, 100, 3),
        Some(3),
        "clamped to what was sent"
    );
    assert_eq!(e.apply_ack(&b.key, 2, 4), Some(2));
    assert_eq!(e.knowledge(Some(&b.key), Some(9)), 3, "never moves down");
    assert_eq!(e.apply_ack("nobody", 1, 1), None);
    e.flush();
    drop(e);
    let e = Epochs::open(cfg(1), Some(dir.path().into())).unwrap();
    let again = e.bind("", b.new_token.as_deref()).unwrap();
    assert_eq!(
        again.device_id, b.device_id,
        "a valid token keeps its identity"
    );
    assert_eq!(again.new_token, None);
    assert_eq!(e.knowledge(Some(&again.key), Some(3)), 3);
    assert_eq!(
        e.knowledge(Some(&again.key), None),
        0,
        "no claim: regressed"
    );
    let other = e.bind("alice", b.new_token.as_deref()).unwrap();
    assert_ne!(other.device_id, b.device_id, "another namespace mints");
    let forged = format!("{}.{}", b.device_id, "00".repeat(32));
    assert_ne!(e.bind("", Some(&forged)).unwrap().device_id, b.device_id);
}

#[test]
fn t12_pruning_follows_the_lowest_cursor_and_forgets_laggards() {
    let e = Epochs::open(cfg(1), None).unwrap();
    let a = e.bind("", None).unwrap();
    let b = e.bind("", None).unwrap();
    tombstones(&e, 3, 0);
    e.apply_ack(&a.key, 3, 3);
    e.apply_ack(&b.key, 1, 3);
    let plan = e.plan_prune().unwrap();
    assert_eq!(plan.below, 1);
    assert_eq!(plan.epochs, vec![0]);
    assert_eq!(plan.by_map["m"], vec!["0:0:c".to_string()]);
    assert_eq!(plan.older_than, Some(ts(0)));
    e.begin_prune(&plan);
    e.finish_prune(&plan);
    assert_eq!(e.verdict(0), SyncVerdict::FullResync);
    assert_eq!(e.verdict(1), SyncVerdict::Merge);
    // b lags more than 3 epochs: forgotten, no longer holding pruning back
    tombstones(&e, 3, 3);
    let plan = e.plan_prune().unwrap();
    assert_eq!(plan.below, 3, "a's cursor");
    assert_eq!(e.knowledge(Some(&b.key), Some(1)), 0, "forgotten");
}

#[test]
fn t13_without_protection_nothing_is_pruned_and_stale_devices_reset() {
    let mut c = cfg(1);
    c.epoch_protection = false;
    let e = Epochs::open(c, None).unwrap();
    tombstones(&e, 3, 0);
    assert_eq!(e.plan_prune(), None);
    assert_eq!(e.verdict(0), SyncVerdict::Merge, "nothing pruned");
    e.begin_prune(&PrunePlan {
        below: 2,
        by_map: HashMap::new(),
        epochs: vec![],
        older_than: None,
    });
    assert_eq!(e.verdict(1), SyncVerdict::Reset);
}

#[test]
fn t14_lists_written_without_keys_still_load_and_are_never_proposed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("epoch-0.json"), br#"[["m","0:0:c"]]"#).unwrap();
    std::fs::write(dir.path().join("epochs.json"), br#"{"epoch":1}"#).unwrap();
    let e = Epochs::open(cfg(1), Some(dir.path().into())).unwrap();
    assert_eq!(
        e.licensed(10, |_| false),
        Vec::<u64>::new(),
        "no key: no replica check, never proposed"
    );
    assert_eq!(
        e.plan_prune().unwrap().by_map["m"],
        vec!["0:0:c".to_string()],
        "a lone node still prunes it"
    );
    std::fs::write(dir.path().join("epoch-0.json"), br#"[["m"]]"#).unwrap();
    let err = Epochs::open(cfg(1), Some(dir.path().into())).unwrap_err();
    assert!(err.to_string().contains("[map, tag, key]"), "{err}");
}

#[test]
fn t15_the_licence_offers_what_every_device_confirmed_and_a_commit_unlists_it_durably() {
    let dir = tempfile::tempdir().unwrap();
    let e = Epochs::open(cfg(1), Some(dir.path().into())).unwrap();
    let a = e.bind("", None).unwrap();
    tombstones(&e, 3, 0);
    e.apply_ack(&a.key, 2, 3);
    let item = |i: usize| item_name("m", "k", &format!("{i}:0:c"));
    assert_eq!(
        e.licensed(10, |_| false),
        vec![item(0), item(1)],
        "epochs below a's cursor"
    );
    assert_eq!(
        e.licensed(1, |_| false),
        vec![item(0)],
        "capped, oldest first"
    );
    assert_eq!(e.licensed(10, |i| i == item(0)), vec![item(1)], "skipped");
    let found = e.licensed_among(&[item(1), item(2), 7]);
    assert_eq!(found.len(), 1, "epoch 2 is not confirmed, 7 is unknown");
    assert_eq!((found[0].0, found[0].2), (item(1), 1));
    // Nothing promised yet: a device that knows nothing still merges.
    assert_eq!(e.verdict(0), SyncVerdict::Merge);
    let plan = e.plan_commit(&[item(0)]);
    assert_eq!(plan.by_map["m"], vec!["0:0:c".to_string()]);
    assert_eq!(plan.below, 1);
    e.promise(plan.below);
    assert_eq!(e.verdict(0), SyncVerdict::FullResync);
    assert_eq!(e.verdict(1), SyncVerdict::Merge);
    let older_than = e.finish_commit(&plan, 70_000);
    assert_eq!(
        older_than,
        Some(ts(0)),
        "epoch 1 began when tombstone 0 closed epoch 0"
    );
    assert_eq!(e.licensed(10, |_| false), vec![item(1)]);
    assert_eq!(e.licence_round(), 70_000);
    e.flush();
    drop(e);
    let e = Epochs::open(cfg(1), Some(dir.path().into())).unwrap();
    assert_eq!(
        e.licensed(10, |_| false),
        vec![item(1)],
        "the unlisting survived a reopen"
    );
    assert_eq!((e.licence_round(), e.pruned_below()), (70_000, 1));
    assert!(!dir.path().join("epoch-0.json").exists());
}

#[test]
fn t16_a_missed_round_closes_the_epoch_and_every_device_confirms_again() {
    let e = Epochs::open(cfg(10), None).unwrap();
    let a = e.bind("", None).unwrap();
    tombstones(&e, 3, 0);
    e.apply_ack(&a.key, 0, 0);
    assert_eq!((e.current(), e.verdict(0)), (0, SyncVerdict::Merge));
    e.missed_round(5, || ts(9));
    assert_eq!(e.current(), 1, "the open epoch closed early");
    assert_eq!(e.verdict(0), SyncVerdict::FullResync);
    assert_eq!(e.verdict(1), SyncVerdict::Merge);
    assert_eq!(e.licence_round(), 5);
    e.missed_round(5, || ts(10));
    assert_eq!(e.current(), 1, "a round already known changes nothing");
}
