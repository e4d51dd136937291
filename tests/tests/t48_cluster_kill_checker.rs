//! The kill checker (`hangar_tests::kill_checker`) on real `hangar`
//! processes: writers at QUORUM + PERSISTED through three nodes while nodes
//! are `kill -9`ed and restarted, one joins and one leaves; nothing
//! acknowledged may be lost and every partition's replicas must agree.
//!
//! The negative control runs the same plan with `backup_count = 0` (no
//! replica but the owner): a killed owner's partitions go to nodes that
//! never had their data, so the checker must report lost writes.
//!
//! The seed is fixed unless `HANGAR_KILL_SEED` is set (a failing run
//! prints its seed); `HANGAR_KILL_ROUNDS`, `HANGAR_KILL_NODES` and
//! `HANGAR_KILL_WRITERS` change the plan (`scripts/soak-cluster`). Bounded: 10 rounds, each step waits at most 60 s.
//! Needs the debug binary and plugins (`cargo build -p hangar-host -p
//! hangar-storage -p hangar-cluster`).

use hangar_tests::kill_checker::{run, Plan};

/// The CI plan with `seed`, overridden by `HANGAR_KILL_*` (see
/// `Plan::with_env`; `scripts/soak-cluster` sets them).
fn plan(seed: u64, backup_count: u32) -> Plan {
    Plan {
        seed,
        backup_count,
        ..Plan::default()
    }
    .with_env()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn t10_no_acknowledged_write_is_lost_and_replicas_agree_across_kills_a_join_and_a_leave() {
    let plan = plan(48, 1);
    let out = run(&plan).unwrap_or_else(|e| panic!("seed {}: the run failed: {e}", plan.seed));
    assert!(
        out.acked > 500,
        "too few writes acknowledged to check anything: {out:?}"
    );
    assert_eq!(out.partitions_compared, 271);
    if let Err(e) = out.verdict() {
        panic!("seed {}:\n{e}\nrounds:\n{}", plan.seed, out.log.join("\n"));
    }
}

#[test]
fn t11_negative_control_without_backups_the_checker_finds_lost_writes() {
    let plan = plan(49, 0);
    let out = run(&plan).unwrap_or_else(|e| panic!("seed {}: the run failed: {e}", plan.seed));
    let e = out
        .verdict()
        .expect_err("with no backups, kill -9 of owners must lose acknowledged writes");
    eprintln!("the negative control found, as it must:\n{e}");
    assert!(e.contains("acknowledged writes lost"), "{e}");
}
