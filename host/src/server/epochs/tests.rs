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
        e.observe_tombstone("m", &format!("{i}:0:c"), || ts(i as u64));
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
