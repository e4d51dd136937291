//! Claims about the write-ack manager, numbered by theme: t10 levels, t20
//! ordering and the all-levels-below rule, t30 timeouts, t40 failures, t50
//! shutdown, t60 forgetting and re-waiting, t70 metrics, t80 properties.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hangar_core::module::services::{MetricKind, MetricSample, MetricsSink, NoMetrics};
use hangar_core::types::WriteConcern::{self, *};
use parking_lot::Mutex;
use proptest::prelude::*;
use tokio::runtime::Handle;

use super::entry::Reached;
use super::*;
use hangar_core::error::ErrorKind;

fn manager() -> WriteAckManager {
    WriteAckManager::new(
        AckConfig::default(),
        Arc::new(NoMetrics),
        &Handle::current(),
    )
}

/// A wait whose acks are all resolved completes on its first poll.
fn ready(m: &WriteAckManager, acks: &[AckId]) -> Vec<AckResult> {
    m.wait(acks)
        .now_or_never()
        .expect("every ack was resolved, so the wait completes at once")
}

fn err(r: &AckResult) -> &str {
    r.error.as_ref().map_or("", |e| e.as_str())
}

#[tokio::test]
async fn t10_fire_and_forget_and_memory_resolve_at_registration() {
    let m = manager();
    let f = m.register(FireAndForget, None).unwrap();
    let mem = m.register(Memory, None).unwrap();
    assert_eq!(m.tracked(), 0, "immediate acks are not tracked");
    let r = ready(&m, &[f, mem]);
    for (r, id) in r.iter().zip([f, mem]) {
        assert_eq!((r.ack, r.success, r.achieved), (id, true, Memory));
        assert!(r.error.is_none());
    }
}

#[tokio::test]
async fn t11_each_level_resolves_once_it_and_the_levels_below_are_notified() {
    let m = manager();
    for target in [Applied, Replicated, Persisted] {
        let id = m.register(target, None).unwrap();
        let wait = m.wait(&[id]);
        for level in [Applied, Replicated, Persisted] {
            if level > target {
                break;
            }
            assert_eq!(m.tracked(), 1, "{target} not reached before {level}");
            m.notify(id, level);
        }
        let r = wait.now_or_never().expect("resolved by the last notify");
        assert_eq!((r[0].success, r[0].achieved), (true, target));
        assert_eq!(m.tracked(), 0);
    }
}

#[tokio::test]
async fn t12_ids_are_non_zero_and_unique() {
    let m = manager();
    let mut seen = std::collections::HashSet::new();
    for i in 0..10_000 {
        let level = WriteConcern::ALL[i % 5];
        let id = m.register(level, None).unwrap();
        assert_ne!(id, 0);
        assert!(seen.insert(id), "id {id} repeated");
    }
}

#[tokio::test]
async fn t13_a_pending_wait_is_woken_by_a_notify_from_another_task() {
    let m = Arc::new(manager());
    let id = m.register(Persisted, None).unwrap();
    let wait = tokio::spawn(m.wait(&[id]));
    let m2 = m.clone();
    tokio::spawn(async move {
        m2.notify_many(&[id], Applied);
        m2.notify_many(&[id], Replicated);
        m2.notify_many(&[id], Persisted);
    })
    .await
    .unwrap();
    let r = wait.await.unwrap();
    assert_eq!((r[0].success, r[0].achieved), (true, Persisted));
}

#[tokio::test]
async fn t20_out_of_order_notifications_resolve_when_the_run_is_complete() {
    let m = manager();
    let id = m.register(Persisted, None).unwrap();
    let wait = m.wait(&[id]);
    m.notify(id, Persisted);
    m.notify(id, Replicated);
    assert_eq!(m.tracked(), 1, "APPLIED is still missing");
    m.notify(id, Applied);
    let r = wait.now_or_never().unwrap();
    assert_eq!((r[0].success, r[0].achieved), (true, Persisted));
}

#[tokio::test]
async fn t21_duplicate_notifications_are_harmless() {
    let m = manager();
    let id = m.register(Replicated, None).unwrap();
    for _ in 0..3 {
        m.notify(id, Applied);
    }
    assert_eq!(m.tracked(), 1);
    m.notify(id, Replicated);
    m.notify(id, Replicated);
    m.notify(id, Applied);
    let r = ready(&m, &[id]);
    assert_eq!((r[0].success, r[0].achieved), (true, Replicated));
    // After the wait took it, the id is unknown; notifying it does nothing.
    m.notify(id, Persisted);
    assert_eq!(m.tracked(), 0);
}

#[tokio::test(start_paused = true)]
async fn t22_persisted_without_replicated_does_not_satisfy_a_persisted_target() {
    let m = manager();
    let id = m
        .register(Persisted, Some(Duration::from_millis(100)))
        .unwrap();
    m.notify(id, Applied);
    m.notify(id, Persisted);
    let r = m.wait(&[id]).await;
    assert!(!r[0].success);
    assert_eq!(
        r[0].achieved, Applied,
        "REPLICATED is missing below PERSISTED"
    );
    assert_eq!(err(&r[0]), "Timeout: achieved APPLIED, requested PERSISTED");
}

#[tokio::test]
async fn t23_persisted_without_replicated_still_satisfies_applied() {
    let m = manager();
    let id = m.register(Applied, None).unwrap();
    m.notify(id, Persisted);
    assert_eq!(m.tracked(), 1, "PERSISTED alone leaves a gap at APPLIED");
    m.notify(id, Applied);
    let r = ready(&m, &[id]);
    assert_eq!((r[0].success, r[0].achieved), (true, Applied));
}

#[tokio::test]
async fn t24_a_higher_run_reports_the_highest_level_reached() {
    let m = manager();
    let id = m.register(Applied, None).unwrap();
    m.notify(id, Replicated);
    m.notify(id, Persisted);
    m.notify(id, Applied);
    let r = ready(&m, &[id]);
    assert_eq!((r[0].success, r[0].achieved), (true, Persisted));
}

#[tokio::test]
async fn t25_unknown_ids_are_ignored_by_notify_and_fail_clearly_in_wait() {
    let m = manager();
    m.notify(12345, Applied);
    m.notify(0, Applied);
    m.fail(12345, "x");
    let r = ready(&m, &[12345, 0]);
    assert!(!r[0].success && !r[1].success);
    assert!(
        err(&r[0]).starts_with("Unknown ack 12345"),
        "{}",
        err(&r[0])
    );
    assert!(err(&r[1]).contains("Ack id 0"), "{}", err(&r[1]));
}

#[tokio::test]
async fn t26_results_come_back_in_the_order_asked() {
    let m = manager();
    let a = m.register(Applied, None).unwrap();
    let b = m.register(Memory, None).unwrap();
    let c = m.register(Applied, None).unwrap();
    let wait = m.wait(&[c, b, a]);
    m.notify_many(&[a, c], Applied);
    let r = wait.now_or_never().unwrap();
    assert_eq!(r.iter().map(|r| r.ack).collect::<Vec<_>>(), vec![c, b, a]);
    assert!(r.iter().all(|r| r.success));
}

#[tokio::test]
async fn t27_results_known_at_once_keep_their_place_before_a_pending_one() {
    let m = manager();
    let mem = m.register(Memory, None).unwrap();
    let done = m.register(Applied, None).unwrap();
    m.notify(done, Applied);
    let pending = m.register(Replicated, None).unwrap();
    let wait = m.wait(&[mem, done, 0, pending]);
    m.notify_many(&[pending], Applied);
    m.notify_many(&[pending], Replicated);
    let r = wait.now_or_never().unwrap();
    let got: Vec<_> = r.iter().map(|r| (r.ack, r.success)).collect();
    assert_eq!(
        got,
        vec![(mem, true), (done, true), (0, false), (pending, true)]
    );
}

#[tokio::test]
async fn t28_an_ack_listed_twice_in_one_wait_goes_to_its_last_slot() {
    let m = manager();
    let id = m.register(Applied, None).unwrap();
    let wait = m.wait(&[id, id]);
    m.notify(id, Applied);
    let r = wait.now_or_never().unwrap();
    assert!(err(&r[0]).contains("awaited again"), "{}", err(&r[0]));
    assert!(r[1].success);
}

#[tokio::test(start_paused = true)]
async fn t30_a_timeout_resolves_with_the_highest_level_reached() {
    let m = manager();
    let id = m.register(Persisted, None).unwrap();
    m.notify(id, Applied);
    let start = Instant::now();
    let r = m.wait(&[id]).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(5_000),
        "default timeout"
    );
    assert_eq!((r[0].success, r[0].achieved), (false, Applied));
    assert_eq!(err(&r[0]), "Timeout: achieved APPLIED, requested PERSISTED");
    assert_eq!(m.tracked(), 0, "a timed-out wait leaves nothing behind");
}

#[tokio::test(start_paused = true)]
async fn t31_each_ack_of_a_wait_keeps_its_own_deadline() {
    let m = Arc::new(manager());
    let short = m
        .register(Applied, Some(Duration::from_millis(100)))
        .unwrap();
    let long = m
        .register(Applied, Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let wait = tokio::spawn(m.wait(&[short, long]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // `short` timed out at 100 ms, so this notify is too late for it.
    m.notify_many(&[short, long], Applied);
    let r = wait.await.unwrap();
    assert_eq!(err(&r[0]), "Timeout: achieved MEMORY, requested APPLIED");
    assert!(r[1].success, "{:?}", r[1]);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn t32_a_notification_at_or_after_the_deadline_does_not_count() {
    let m = manager();
    let id = m
        .register(Applied, Some(Duration::from_millis(50)))
        .unwrap();
    tokio::time::advance(Duration::from_millis(50)).await;
    m.notify(id, Applied);
    let r = ready(&m, &[id]);
    assert_eq!(err(&r[0]), "Timeout: achieved MEMORY, requested APPLIED");
}

#[tokio::test(start_paused = true)]
async fn t33_a_wait_after_the_deadline_times_out_at_once() {
    let m = manager();
    let id = m
        .register(Replicated, Some(Duration::from_millis(50)))
        .unwrap();
    m.notify(id, Applied);
    tokio::time::advance(Duration::from_millis(60)).await;
    let r = ready(&m, &[id]);
    assert_eq!(
        err(&r[0]),
        "Timeout: achieved APPLIED, requested REPLICATED"
    );
}

#[tokio::test(start_paused = true)]
async fn t34_a_target_reached_before_the_deadline_succeeds_even_if_awaited_later() {
    let m = manager();
    let id = m
        .register(Applied, Some(Duration::from_millis(50)))
        .unwrap();
    m.notify(id, Applied);
    tokio::time::advance(Duration::from_millis(500)).await;
    let r = ready(&m, &[id]);
    assert!(r[0].success);
}

#[tokio::test]
async fn t40_fail_resolves_with_the_message() {
    let m = manager();
    let waited = m.register(Persisted, None).unwrap();
    let later = m.register(Persisted, None).unwrap();
    let wait = m.wait(&[waited]);
    m.notify_many(&[waited, later], Applied);
    m.fail(waited, "Persistence failed: disk full");
    m.fail(later, "Rejected by conflict resolver");
    let r = wait.now_or_never().unwrap();
    assert_eq!((r[0].success, r[0].achieved), (false, Applied));
    assert_eq!(err(&r[0]), "Persistence failed: disk full");
    let r = ready(&m, &[later]);
    assert_eq!(err(&r[0]), "Rejected by conflict resolver");
}

#[tokio::test]
async fn t41_the_first_resolution_wins() {
    let m = manager();
    let ok = m.register(Applied, None).unwrap();
    m.notify(ok, Applied);
    m.fail(ok, "too late");
    let failed = m.register(Applied, None).unwrap();
    m.fail(failed, "first");
    m.notify(failed, Applied);
    m.fail(failed, "second");
    let r = ready(&m, &[ok, failed]);
    assert!(r[0].success);
    assert_eq!(err(&r[1]), "first");
}

#[tokio::test]
async fn t50_shutdown_resolves_waits_and_refuses_registrations() {
    let m = manager();
    let a = m.register(Persisted, None).unwrap();
    let b = m.register(Replicated, None).unwrap();
    let done = m.register(Applied, None).unwrap();
    m.notify_many(&[a, b, done], Applied);
    let wait = m.wait(&[a, done]);
    m.shutdown();
    let r = wait.now_or_never().expect("shutdown resolves waits");
    assert_eq!(
        err(&r[0]),
        "Shutdown: achieved APPLIED, requested PERSISTED"
    );
    assert!(r[1].success, "already reached before shutdown");
    // Not waited before shutdown: the same answer, at once.
    let r = ready(&m, &[b]);
    assert_eq!(
        err(&r[0]),
        "Shutdown: achieved APPLIED, requested REPLICATED"
    );
    for level in WriteConcern::ALL {
        let e = m.register(level, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::SHUT_DOWN, "{level}");
    }
    m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn t60_an_ack_nobody_waits_for_is_forgotten_after_deadline_plus_retention() {
    let config = AckConfig {
        default_timeout: Duration::from_millis(1_000),
        retention: Duration::from_millis(2_000),
        sweep_interval: Duration::from_millis(500),
        ..AckConfig::default()
    };
    let m = WriteAckManager::new(config, Arc::new(NoMetrics), &Handle::current());
    let unresolved = m.register(Persisted, None).unwrap();
    let resolved = m.register(Applied, None).unwrap();
    m.notify(resolved, Applied);
    assert_eq!(m.tracked(), 2);
    // Just before deadline + retention (3 s): still held, and a late wait
    // still gets its answer.
    tokio::time::sleep(Duration::from_millis(2_999)).await;
    assert_eq!(m.tracked(), 2);
    // The first sweep at or after 3 s (sweeps every 0.5 s) forgets both.
    tokio::time::sleep(Duration::from_millis(501)).await;
    assert_eq!(m.tracked(), 0);
    let r = ready(&m, &[unresolved, resolved]);
    assert!(err(&r[0]).starts_with("Unknown ack"));
    assert!(err(&r[1]).starts_with("Unknown ack"));
}

#[tokio::test(start_paused = true)]
async fn t61_a_dropped_wait_leaves_the_ack_for_a_later_wait() {
    let m = manager();
    let id = m.register(Applied, None).unwrap();
    let first = m.wait(&[id]);
    drop(first);
    m.notify(id, Applied);
    let r = ready(&m, &[id]);
    assert!(r[0].success);
}

#[tokio::test]
async fn t62_a_second_wait_takes_the_result_over() {
    let m = manager();
    let id = m.register(Applied, None).unwrap();
    let first = m.wait(&[id]);
    let second = m.wait(&[id]);
    let r1 = first
        .now_or_never()
        .expect("the first wait is told at once");
    assert!(err(&r1[0]).contains("awaited again"), "{}", err(&r1[0]));
    m.notify(id, Applied);
    let r2 = second.now_or_never().unwrap();
    assert!(r2[0].success);
}

#[tokio::test(start_paused = true)]
async fn t63_many_waits_leave_no_timers_or_entries_behind() {
    let m = manager();
    for _ in 0..1_000 {
        let id = m
            .register(Persisted, Some(Duration::from_millis(10)))
            .unwrap();
        let r = m.wait(&[id]).await;
        assert!(!r[0].success);
    }
    assert_eq!(m.tracked(), 0);
}

/// Records counters by `name{k=v,...}`.
#[derive(Default)]
struct Recorder(Mutex<HashMap<String, f64>>);

impl MetricsSink for Recorder {
    fn record(&self, s: MetricSample<'_>) {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|t| format!("{}={}", t.0, t.1))
            .collect();
        let key = format!("{}{{{}}}", s.name, labels.join(","));
        let mut m = self.0.lock();
        let v = m.entry(key).or_default();
        match s.kind {
            MetricKind::Counter => *v += s.value,
            _ => *v = s.value,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn t70_metrics_count_outcomes_by_requested_and_achieved_level() {
    let rec = Arc::new(Recorder::default());
    let m = WriteAckManager::new(AckConfig::default(), rec.clone(), &Handle::current());
    let _ = m.register(Memory, None).unwrap();
    let ok = m.register(Persisted, None).unwrap();
    m.notify_many(&[ok], Applied);
    m.notify_many(&[ok], Replicated);
    m.notify_many(&[ok], Persisted);
    let late = m
        .register(Replicated, Some(Duration::from_millis(5)))
        .unwrap();
    m.notify(late, Applied);
    let _ = m.wait(&[ok, late]).await;
    let bad = m.register(Applied, None).unwrap();
    m.fail(bad, "no");
    m.flush_metrics();
    m.flush_metrics(); // a second flush reports no growth twice
    let got = rec.0.lock().clone();
    let key = |r: &str, a: &str, o: &str| {
        format!("hangar_write_acks_total{{requested={r},achieved={a},outcome={o}}}")
    };
    assert_eq!(got[&key("MEMORY", "MEMORY", "success")], 1.0);
    assert_eq!(got[&key("PERSISTED", "PERSISTED", "success")], 1.0);
    assert_eq!(got[&key("REPLICATED", "APPLIED", "timeout")], 1.0);
    assert_eq!(got[&key("APPLIED", "MEMORY", "failed")], 1.0);
    assert_eq!(got.len(), 5, "four outcome cells and the gauge: {got:?}");
    assert_eq!(
        got["hangar_write_acks_tracked{}"], 1.0,
        "`bad` is not awaited"
    );
}

/// What the rule says a sequence of notifications gives: resolved with the
/// run at the moment the target is first reached, else timed out with the
/// final run.
fn model(target: WriteConcern, notes: &[WriteConcern]) -> (bool, WriteConcern) {
    let mut reached = Reached::AT_REGISTRATION;
    for &n in notes {
        reached.insert(n);
        if reached.achieved() >= target {
            return (true, reached.achieved());
        }
    }
    (false, reached.achieved())
}

fn level() -> impl Strategy<Value = WriteConcern> {
    prop::sample::select(WriteConcern::ALL.to_vec())
}

proptest! {
    #[test]
    fn t80_any_notification_order_resolves_as_the_all_levels_below_rule_says(
        target in prop::sample::select(vec![Applied, Replicated, Persisted]),
        notes in prop::collection::vec(level(), 0..12),
        wait_first in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (success, achieved) = rt.block_on(async {
            let m = manager();
            let id = m.register(target, Some(Duration::from_millis(100))).unwrap();
            let wait = wait_first.then(|| m.wait(&[id]));
            for &n in &notes {
                m.notify(id, n);
            }
            let r = match wait {
                Some(w) => w.await,
                None => m.wait(&[id]).await,
            };
            assert_eq!(m.tracked(), 0);
            (r[0].success, r[0].achieved)
        });
        prop_assert_eq!((success, achieved), model(target, &notes));
    }
}
