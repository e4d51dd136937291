//! Write acks: the levels FIRE_AND_FORGET < MEMORY < APPLIED < REPLICATED <
//! PERSISTED, each reached only with every level below it, and timeouts
//! that report the highest level reached.

use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RVec};
use hangar_core::module::storage_types::{ApplyBatch, OpStatus, Origin, WriteOp};
use hangar_core::types::WriteConcern;
use serde_json::json;

use super::helpers::{acks_of, apply, apply_durable, lww};
use super::Ctx;

pub(super) async fn t20_memory_and_applied_acks_succeed_without_waiting(cx: Ctx) {
    let m = cx.m();
    for level in [
        WriteConcern::FireAndForget,
        WriteConcern::Memory,
        WriteConcern::Applied,
    ] {
        let out = apply(
            &m,
            vec![lww("m", "k", Some(json!(1)), 100 + level as u64, "n")],
            level,
        )
        .await;
        let acks = acks_of(&m, &out).await;
        assert_eq!(acks.len(), 1);
        assert!(acks[0].success, "{level}: {:?}", acks[0]);
        assert!(acks[0].achieved >= level, "{level}: {:?}", acks[0]);
    }
}

pub(super) async fn t21_replicated_is_reached_when_the_caller_reports_it(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![lww("m", "k", Some(json!(1)), 100, "n")],
        WriteConcern::Replicated,
    )
    .await;
    let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
    m.notify_acks(ids.clone(), WriteConcern::Replicated);
    let acks = m.await_acks(ids).await.expect("await");
    assert!(acks[0].success, "{:?}", acks[0]);
    assert_eq!(acks[0].achieved, WriteConcern::Replicated);
}

pub(super) async fn t22_an_unmet_level_fails_with_the_highest_level_reached(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![lww("m", "k", Some(json!(1)), 100, "n")],
        WriteConcern::Replicated,
    )
    .await;
    // Nobody reports REPLICATED, and the module must not reach it by
    // itself: the ack ends unsuccessful after its timeout, at APPLIED.
    let acks = acks_of(&m, &out).await;
    assert!(!acks[0].success, "{:?}", acks[0]);
    assert_eq!(acks[0].achieved, WriteConcern::Applied);
    let err = acks[0]
        .error
        .as_ref()
        .into_option()
        .expect("an error message");
    assert!(
        err.contains("APPLIED") && err.contains("REPLICATED"),
        "{err}"
    );
}

pub(super) async fn t23_persisted_succeeds_once_the_commit_is_durable_and_replicated_reported(
    cx: Ctx,
) {
    let m = cx.m();
    let out = apply_durable(
        &m,
        (0..20)
            .map(|i| lww("p", &format!("k{i}"), Some(json!(i)), 100, "n"))
            .collect(),
    )
    .await;
    let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
    m.notify_acks(ids.clone(), WriteConcern::Replicated);
    let acks = m.await_acks(ids).await.expect("await");
    for a in acks.iter() {
        assert!(a.success, "{a:?}");
        assert_eq!(a.achieved, WriteConcern::Persisted);
    }
}

pub(super) async fn t24_persisted_without_replicated_fails_with_applied(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![lww("p", "k", Some(json!(1)), 100, "n")],
        WriteConcern::Persisted,
    )
    .await;
    // Durable, but REPLICATED was never reported: PERSISTED is not reached
    // (a level counts only with every level below it).
    let acks = acks_of(&m, &out).await;
    assert!(!acks[0].success, "{:?}", acks[0]);
    assert_eq!(acks[0].achieved, WriteConcern::Applied);
}

pub(super) async fn t25_an_unchanged_op_asking_persisted_succeeds(cx: Ctx) {
    let m = cx.m();
    let first = apply_durable(&m, vec![lww("p", "k", Some(json!(1)), 100, "n")]).await;
    let again = apply_durable(&m, vec![lww("p", "k", Some(json!(1)), 100, "n")]).await;
    assert_eq!(again[0].status, OpStatus::Unchanged);
    let ids: RVec<u64> = first.iter().chain(&again).map(|o| o.ack).collect();
    m.notify_acks(ids.clone(), WriteConcern::Replicated);
    for a in m.await_acks(ids).await.expect("await").iter() {
        assert!(a.success, "{a:?}");
        assert_eq!(a.achieved, WriteConcern::Persisted);
    }
}

pub(super) async fn t26_each_op_waits_at_most_its_own_timeout(cx: Ctx) {
    let m = cx.m();
    let op = |key: &str, timeout: u64| WriteOp {
        op: lww("t", key, Some(json!(1)), 100, "n"),
        concern: WriteConcern::Replicated,
        timeout_ms: ROption::RSome(timeout),
    };
    let out = m
        .apply(ApplyBatch {
            ops: vec![op("short", 20), op("long", 5_000)].into(),
            origin: Origin::client(1, "suite"),
            consistency: abi_stable::std_types::ROption::RNone,
        })
        .await
        .expect("apply");
    let started = Instant::now();
    let short = m.await_acks(vec![out[0].ack].into()).await.expect("await");
    assert!(!short[0].success);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the short timeout ended the wait, not the long one"
    );
    m.notify_acks(vec![out[1].ack].into(), WriteConcern::Replicated);
    let long = m.await_acks(vec![out[1].ack].into()).await.expect("await");
    assert!(long[0].success, "{:?}", long[0]);
}
