//! Claims about tasklets, numbered by theme: t10 single tasklets and
//! `run_sync`, t20 the scheduler's slices and stats, t30 cancellation, t40
//! concurrency and the queue, t50 shutdown. Budgets are checked against a
//! [`ManualClock`], so assertions count items per slice, never wall time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// Counts to `n`, one unit per step, logging `name` on each step.
struct Counter {
    name: String,
    left: u32,
    log: Arc<Mutex<Vec<String>>>,
    cancelled: Arc<AtomicBool>,
}

impl Counter {
    fn new(name: &str, n: u32, log: &Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            name: name.into(),
            left: n,
            log: log.clone(),
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Tasklet for Counter {
    type Output = String;
    fn name(&self) -> &str {
        &self.name
    }
    fn step(&mut self, _d: Deadline<'_>) -> Progress<String> {
        self.log.lock().push(self.name.clone());
        self.left -= 1;
        if self.left == 0 {
            Progress::Done(format!("{} done", self.name))
        } else {
            Progress::MadeProgress
        }
    }
    fn on_cancel(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

fn log() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

/// A scheduler on the manual clock (1 ms per read unless told otherwise).
fn scheduler(max: usize, queue: usize, clock: Arc<ManualClock>) -> TaskletScheduler {
    let config = SchedulerConfig {
        budget: 5 * MS,
        max_concurrent: max,
        queue_capacity: queue,
        idle_backoff: 4 * MS,
        clock,
    };
    TaskletScheduler::new(config, &Handle::current())
}

#[test]
fn t10_run_sync_runs_a_multi_slice_tasklet_to_its_result() {
    let l = log();
    let r = run_sync(Counter::new("c", 4, &l), 5 * MS).unwrap();
    assert_eq!(r, "c done");
    assert_eq!(l.lock().len(), 4, "one step per slice");
}

#[test]
fn t11_run_sync_fails_on_no_progress() {
    struct Stuck;
    impl Tasklet for Stuck {
        type Output = ();
        fn name(&self) -> &str {
            "stuck"
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<()> {
            Progress::NoProgress
        }
    }
    let e = run_sync(Stuck, 5 * MS).unwrap_err();
    assert_eq!(
        e,
        TaskletError::NoProgress {
            name: "stuck".into()
        }
    );
    assert_eq!(e.to_string(), "Tasklet stuck made no progress");
}

#[test]
fn t12_an_iterator_tasklet_stops_each_slice_when_the_budget_is_used() {
    // Every clock read advances 1 ms: the slice starts at a read, and each
    // item's budget check is one read, so a 5 ms budget allows 5 items.
    let clock = ManualClock::new(MS);
    let mut t = reduce("sum", 0..23u64, 0u64, |s, x| *s += x);
    let mut per_slice = Vec::new();
    loop {
        let before = t.processed();
        let p = t.step(Deadline::start(&clock, 5 * MS));
        per_slice.push(t.processed() - before);
        if let Progress::Done(sum) = p {
            assert_eq!(sum, (0..23).sum::<u64>());
            break;
        }
    }
    assert_eq!(per_slice, vec![5, 5, 5, 5, 3]);
}

#[test]
fn t13_an_iterator_tasklet_takes_at_most_max_items_per_slice() {
    let clock = ManualClock::new(Duration::ZERO); // the budget never runs out
    let mut t = for_each("each", 0..10, |_| {}).max_items_per_slice(4);
    assert_eq!(
        t.step(Deadline::start(&clock, 5 * MS)),
        Progress::MadeProgress
    );
    assert_eq!(t.processed(), 4);
    assert_eq!(
        t.step(Deadline::start(&clock, 5 * MS)),
        Progress::MadeProgress
    );
    assert_eq!(t.step(Deadline::start(&clock, 5 * MS)), Progress::Done(10));
}

#[test]
fn t14_check_every_reads_the_clock_once_per_n_items() {
    let clock = ManualClock::new(MS);
    let mut t = for_each("each", 0..100, |_| {}).check_every(4);
    let _ = t.step(Deadline::start(&clock, 5 * MS));
    // start read + reads after items 4, 8, 12, 16, 20 (the 5th read is at 5 ms)
    assert_eq!(t.processed(), 20);
    assert_eq!(clock.reads(), 6);
}

#[test]
fn t15_map_filter_for_each_and_reduce_compute_what_they_say() {
    let b = 2 * MS;
    assert_eq!(
        run_sync(map("m", 1..4, |x| x * 10), b).unwrap(),
        vec![10, 20, 30]
    );
    assert_eq!(
        run_sync(filter("f", 1..10, |x| x % 3 == 0), b).unwrap(),
        vec![3, 6, 9]
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let n = run_sync(
        for_each("e", 0..7, move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        }),
        b,
    );
    assert_eq!((n.unwrap(), seen.load(Ordering::SeqCst)), (7, 7));
    let joined = run_sync(
        reduce("r", ["a", "b", "c"].into_iter(), String::new(), |s, x| {
            s.push_str(x)
        }),
        b,
    );
    assert_eq!(joined.unwrap(), "abc");
}

#[tokio::test]
async fn t20_the_scheduler_runs_tasklets_round_robin_one_slice_at_a_time() {
    let s = scheduler(20, 0, Arc::new(ManualClock::new(MS)));
    let l = log();
    let a = s.schedule(Counter::new("a", 3, &l)).unwrap();
    let b = s.schedule(Counter::new("b", 2, &l)).unwrap();
    assert_eq!(a.await.unwrap(), "a done");
    assert_eq!(b.await.unwrap(), "b done");
    assert_eq!(*l.lock(), vec!["a", "b", "a", "b", "a"]);
    let st = s.stats();
    assert_eq!((st.scheduled, st.completed, st.iterations), (2, 2, 5));
    assert_eq!(st.active, 0);
}

#[tokio::test]
async fn t21_slice_time_is_measured_and_overruns_are_counted() {
    /// Takes 3 ms, then 10 ms (exactly twice the 5 ms budget: not yet an
    /// overrun), then 11 ms (an overrun), then finishes at once.
    struct Slow {
        clock: Arc<ManualClock>,
        slices: Vec<Duration>,
    }
    impl Tasklet for Slow {
        type Output = ();
        fn name(&self) -> &str {
            "slow"
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<()> {
            match self.slices.pop() {
                Some(d) => {
                    self.clock.advance(d);
                    Progress::MadeProgress
                }
                None => Progress::Done(()),
            }
        }
    }
    let clock = Arc::new(ManualClock::new(Duration::ZERO));
    let s = scheduler(20, 0, clock.clone());
    let h = s
        .schedule(Slow {
            clock,
            slices: vec![11 * MS, 10 * MS, 3 * MS],
        })
        .unwrap();
    h.await.unwrap();
    let st = s.stats();
    assert_eq!(st.iterations, 4);
    assert_eq!(st.total_execution, 24 * MS);
    assert_eq!(st.max_slice, 11 * MS);
    assert_eq!(st.overruns, 1);
}

#[tokio::test]
async fn t22_a_panicking_step_fails_its_tasklet_and_the_others_carry_on() {
    struct Boom;
    impl Tasklet for Boom {
        type Output = ();
        fn name(&self) -> &str {
            "boom"
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<()> {
            panic!("kaboom")
        }
    }
    let s = scheduler(20, 0, Arc::new(ManualClock::new(MS)));
    let l = log();
    let boom = s.schedule(Boom).unwrap();
    let ok = s.schedule(Counter::new("ok", 2, &l)).unwrap();
    let e = boom.await.unwrap_err();
    assert_eq!(e.to_string(), "Tasklet boom panicked: kaboom");
    assert_eq!(ok.await.unwrap(), "ok done");
    assert_eq!(s.stats().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn t23_no_progress_is_retried_with_backoff_until_progress() {
    struct Waits {
        ready: Arc<AtomicBool>,
        tries: Arc<AtomicUsize>,
    }
    impl Tasklet for Waits {
        type Output = usize;
        fn name(&self) -> &str {
            "waits"
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<usize> {
            let n = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
            if self.ready.load(Ordering::SeqCst) {
                Progress::Done(n)
            } else {
                Progress::NoProgress
            }
        }
    }
    let s = scheduler(20, 0, Arc::new(ManualClock::new(MS)));
    let ready = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicUsize::new(0));
    let h = s
        .schedule(Waits {
            ready: ready.clone(),
            tries: tries.clone(),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Backoff 1, 2, 4, 4, ... ms: about 26 tries in 100 ms, not thousands.
    let n = tries.load(Ordering::SeqCst);
    assert!((20..=30).contains(&n), "{n} tries in 100 ms");
    ready.store(true, Ordering::SeqCst);
    assert!(h.await.unwrap() > n);
}

#[tokio::test]
async fn t30_cancel_by_id_calls_on_cancel_and_fails_the_handle() {
    let s = scheduler(1, 4, Arc::new(ManualClock::new(MS)));
    let l = log();
    let first = Counter::new("first", 1_000_000, &l);
    let queued = Counter::new("queued", 1, &l);
    let (f_flag, q_flag) = (first.cancelled.clone(), queued.cancelled.clone());
    let f = s.schedule(first).unwrap();
    let q = s.schedule(queued).unwrap();
    assert!(s.cancel(q.id()), "a queued tasklet can be cancelled");
    assert!(s.cancel(f.id()));
    assert!(!s.cancel(9_999));
    assert_eq!(
        q.await.unwrap_err().to_string(),
        "Tasklet queued was cancelled"
    );
    assert_eq!(
        f.await.unwrap_err(),
        TaskletError::Cancelled {
            name: "first".into()
        }
    );
    assert!(f_flag.load(Ordering::SeqCst) && q_flag.load(Ordering::SeqCst));
    assert_eq!(s.stats().cancelled, 2);
}

#[tokio::test]
async fn t31_cancel_by_prefix_is_a_literal_prefix() {
    let s = scheduler(20, 0, Arc::new(ManualClock::new(MS)));
    let l = log();
    let dotted = s
        .schedule(Counter::new("load.users", 1_000_000, &l))
        .unwrap();
    let other = s.schedule(Counter::new("loadXusers", 3, &l)).unwrap();
    let gc = s.schedule(Counter::new("gc", 3, &l)).unwrap();
    // As a regex, "load." would match "loadXusers" too.
    assert_eq!(s.cancel_prefix("load."), 1);
    assert!(dotted.await.is_err());
    assert!(other.await.is_ok());
    assert!(gc.await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t32_the_running_tasklet_is_cancelled_when_its_slice_ends() {
    /// Signals that it runs, then blocks its slice until released.
    struct Gate {
        running: Arc<AtomicBool>,
        release: Arc<AtomicBool>,
        cancelled: Arc<AtomicBool>,
    }
    impl Tasklet for Gate {
        type Output = ();
        fn name(&self) -> &str {
            "gate"
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<()> {
            self.running.store(true, Ordering::SeqCst);
            while !self.release.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            Progress::MadeProgress
        }
        fn on_cancel(&mut self) {
            self.cancelled.store(true, Ordering::SeqCst);
        }
    }
    let s = scheduler(20, 0, Arc::new(ManualClock::new(MS)));
    let (running, release, cancelled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let h = s
        .schedule(Gate {
            running: running.clone(),
            release: release.clone(),
            cancelled: cancelled.clone(),
        })
        .unwrap();
    while !running.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    assert!(s.cancel(h.id()), "the running tasklet counts");
    assert!(
        !cancelled.load(Ordering::SeqCst),
        "not until its slice ends"
    );
    release.store(true, Ordering::SeqCst);
    assert!(matches!(h.await, Err(TaskletError::Cancelled { .. })));
    assert!(cancelled.load(Ordering::SeqCst));
    assert_eq!(s.stats().cancelled, 1);
}

#[tokio::test]
async fn t40_with_no_queue_a_full_scheduler_rejects_at_once() {
    let s = scheduler(2, 0, Arc::new(ManualClock::new(MS)));
    let l = log();
    let _a = s.schedule(Counter::new("a", 1_000_000, &l)).unwrap();
    let _b = s.schedule(Counter::new("b", 1_000_000, &l)).unwrap();
    let e = s.schedule(Counter::new("c", 1, &l)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Max concurrent tasklets (2) reached and the wait queue (0) is full: \
         tasklet c was not scheduled; retry when some finish"
    );
    assert_eq!(s.stats().scheduled, 2);
    s.cancel_all();
}

#[tokio::test]
async fn t41_queued_tasklets_start_as_slots_free_and_never_exceed_the_limit() {
    /// Tracks how many of its kind are mid-work at once.
    struct Tracked {
        name: String,
        steps: u32,
        live: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        started: bool,
    }
    impl Tasklet for Tracked {
        type Output = ();
        fn name(&self) -> &str {
            &self.name
        }
        fn step(&mut self, _d: Deadline<'_>) -> Progress<()> {
            if !self.started {
                self.started = true;
                let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
            }
            self.steps -= 1;
            if self.steps == 0 {
                self.live.fetch_sub(1, Ordering::SeqCst);
                Progress::Done(())
            } else {
                Progress::MadeProgress
            }
        }
    }
    let s = scheduler(2, 3, Arc::new(ManualClock::new(MS)));
    let (live, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut handles = Vec::new();
    for i in 0..5 {
        let t = Tracked {
            name: format!("t{i}"),
            steps: 3,
            live: live.clone(),
            peak: peak.clone(),
            started: false,
        };
        handles.push(s.schedule(t).unwrap());
    }
    let st = s.stats();
    assert_eq!((st.active, st.queued), (2, 3));
    let full = Tracked {
        name: "t5".into(),
        steps: 1,
        live: live.clone(),
        peak: peak.clone(),
        started: false,
    };
    assert!(matches!(
        s.schedule(full),
        Err(TaskletError::Full {
            max: 2,
            queue: 3,
            ..
        })
    ));
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(s.stats().completed, 5);
}

#[tokio::test]
async fn t50_shutdown_cancels_everything_and_refuses_new_tasklets() {
    let s = scheduler(1, 4, Arc::new(ManualClock::new(MS)));
    let l = log();
    let a = s.schedule(Counter::new("a", 1_000_000, &l)).unwrap();
    let b = s.schedule(Counter::new("b", 1_000_000, &l)).unwrap();
    s.shutdown().await;
    assert!(matches!(a.await, Err(TaskletError::Cancelled { .. })));
    assert!(matches!(b.await, Err(TaskletError::Cancelled { .. })));
    let e = s.schedule(Counter::new("late", 1, &l)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Scheduler is shutting down: tasklet late was not scheduled"
    );
    let st = s.stats();
    assert_eq!((st.active, st.queued, st.cancelled), (0, 0, 2));
    s.shutdown().await; // idempotent
}

#[tokio::test]
async fn t51_dropping_the_scheduler_fails_pending_handles() {
    let s = scheduler(1, 4, Arc::new(ManualClock::new(MS)));
    let l = log();
    let a = s.schedule(Counter::new("a", 1_000_000, &l)).unwrap();
    drop(s);
    assert_eq!(
        a.await.unwrap_err(),
        TaskletError::Dropped { name: "a".into() }
    );
}
