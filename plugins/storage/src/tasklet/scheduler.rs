//! The tasklet scheduler: runs tasklets slice by slice, round robin, on one
//! driver task of the plugin's runtime.
//!
//! # Contract
//!
//! - **Budget.** Each slice gets a fresh [`Deadline`] of `budget`; after every
//!   slice the driver yields to the runtime (`tokio::task::yield_now`), so a
//!   worker is held by tasklet work for one slice at a time: the budget plus
//!   whatever the step overran by (measured: `max_slice`, `overruns`).
//! - **Executor.** One driver task on the plugin's runtime runs every slice;
//!   no `spawn_blocking`, no extra thread. A dedicated OS thread would take
//!   CPU from the runtime's workers whenever the OS saw fit (on a 2-core
//!   machine, a whole worker's worth); the driver instead gives its worker
//!   back after every slice, so tasklet work is at most one task among the
//!   runtime's and the budget bounds how long it holds a worker.
//!   `benches/tasklet_write_latency.rs` measures what that buys.
//! - **Concurrency.** At most `max_concurrent` tasklets are active. When all
//!   slots are taken, `schedule` puts the tasklet in a FIFO wait queue of
//!   `queue_capacity`; it starts when a slot frees up. When the queue is full
//!   too, `schedule` fails at once with [`TaskletError::Full`]. (The legacy
//!   server had no queue and rejected at once: `queue_capacity: 0` gives that
//!   behaviour back.) Long background work would rather wait its turn than
//!   fail, and the bound keeps memory and the wait itself bounded.
//! - **No progress.** A tasklet that returns `NoProgress` is retried; while
//!   every active tasklet returns `NoProgress` the driver sleeps, doubling from
//!   1 ms up to `idle_backoff`, instead of spinning.
//! - **Cancellation** (by id, by literal name prefix, all, or by shutdown):
//!   an active or queued tasklet is removed at once, its `on_cancel` runs and
//!   its handle resolves to [`TaskletError::Cancelled`]; the tasklet being
//!   stepped is cancelled when its slice ends, unless that slice finished it.
//! - **Panics** in a step resolve that tasklet's handle with
//!   [`TaskletError::Panicked`]; the others carry on.
//! - **Shutdown** cancels everything, refuses new tasklets with
//!   [`TaskletError::ShuttingDown`], and completes when the driver has
//!   stopped.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::settings::StorageSettings;
use hangar_core::error::panic_message;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::{Clock, Deadline, MonotonicClock, Progress, Tasklet, TaskletError};

/// Identifies a scheduled tasklet; unique per scheduler, never 0.
pub type TaskletId = u64;

/// Settings of a [`TaskletScheduler`].
#[derive(Clone)]
pub struct SchedulerConfig {
    /// Time budget of one slice (5 ms).
    pub budget: Duration,
    /// Most tasklets active at once (20).
    pub max_concurrent: usize,
    /// Most tasklets waiting for a free slot (256); 0 rejects when full.
    pub queue_capacity: usize,
    /// Longest sleep while every active tasklet makes no progress (20 ms).
    pub idle_backoff: Duration,
    /// The clock slices are measured on.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerConfig")
            .field("budget", &self.budget)
            .field("max_concurrent", &self.max_concurrent)
            .field("queue_capacity", &self.queue_capacity)
            .field("idle_backoff", &self.idle_backoff)
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(5),
            max_concurrent: 20,
            queue_capacity: 256,
            idle_backoff: Duration::from_millis(20),
            clock: Arc::new(MonotonicClock::new()),
        }
    }
}

impl SchedulerConfig {
    /// The defaults with the storage module's budget and concurrency.
    #[must_use]
    pub fn from_settings(config: &StorageSettings) -> Self {
        Self {
            budget: Duration::from_millis(config.tasklet_budget_ms.max(1)),
            max_concurrent: config.tasklet_max_concurrent.max(1),
            ..Self::default()
        }
    }
}

/// Counters of a scheduler, read with [`TaskletScheduler::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskletStats {
    /// Tasklets accepted by `schedule` (queued ones included).
    pub scheduled: u64,
    /// Tasklets active now (including the one being stepped).
    pub active: usize,
    /// Tasklets waiting for a free slot now.
    pub queued: usize,
    /// Tasklets that returned `Done`.
    pub completed: u64,
    /// Tasklets cancelled before they finished.
    pub cancelled: u64,
    /// Tasklets whose step panicked.
    pub failed: u64,
    /// Slices run.
    pub iterations: u64,
    /// Sum of the slices' durations.
    pub total_execution: Duration,
    /// Longest slice.
    pub max_slice: Duration,
    /// Slices that took more than twice the budget (the legacy tick's
    /// cut-off). A slice that ends because its budget ran out always takes
    /// a little more than the budget (the check comes after the work), so
    /// only a doubling counts: a step too coarse to cut, or the thread being
    /// descheduled mid-slice.
    pub overruns: u64,
}

/// Resolves to the tasklet's result, or to why there is none. Dropping it
/// does not cancel the tasklet.
#[derive(Debug)]
pub struct TaskletHandle<T> {
    id: TaskletId,
    name: String,
    rx: oneshot::Receiver<Result<T, TaskletError>>,
}

impl<T> TaskletHandle<T> {
    /// The tasklet's id, for [`TaskletScheduler::cancel`].
    #[must_use]
    pub fn id(&self) -> TaskletId {
        self.id
    }
}

impl<T> Future for TaskletHandle<T> {
    type Output = Result<T, TaskletError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(TaskletError::Dropped {
                name: std::mem::take(&mut self.name),
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A tasklet with its result channel, type-erased.
trait Erased: Send {
    fn step(&mut self, deadline: Deadline<'_>) -> Step;
    /// Runs `on_cancel` (panics swallowed) and resolves the handle.
    fn cancel(self: Box<Self>);
    fn panicked(self: Box<Self>, message: String);
}

enum Step {
    Done,
    Made,
    NoProgress,
}

struct Wrapped<T: Tasklet> {
    task: T,
    tx: Option<oneshot::Sender<Result<T::Output, TaskletError>>>,
}

impl<T: Tasklet> Wrapped<T> {
    fn resolve(&mut self, r: Result<T::Output, TaskletError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(r);
        }
    }
}

impl<T: Tasklet> Erased for Wrapped<T> {
    fn step(&mut self, deadline: Deadline<'_>) -> Step {
        match self.task.step(deadline) {
            Progress::Done(v) => {
                self.resolve(Ok(v));
                Step::Done
            }
            Progress::MadeProgress => Step::Made,
            Progress::NoProgress => Step::NoProgress,
        }
    }

    fn cancel(mut self: Box<Self>) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.task.on_cancel()));
        let name = self.task.name().to_string();
        self.resolve(Err(TaskletError::Cancelled { name }));
    }

    fn panicked(mut self: Box<Self>, message: String) {
        let name = self.task.name().to_string();
        self.resolve(Err(TaskletError::Panicked { name, message }));
    }
}

struct Slot {
    id: TaskletId,
    name: Arc<str>,
    task: Box<dyn Erased>,
}

struct State {
    active: VecDeque<Slot>,
    queued: VecDeque<Slot>,
    /// Id and name of the tasklet being stepped (out of `active`).
    running: Option<(TaskletId, Arc<str>)>,
    cancel_running: bool,
    shut: bool,
    next_id: TaskletId,
}

impl State {
    fn active_len(&self) -> usize {
        self.active.len() + usize::from(self.running.is_some())
    }

    /// Moves queued tasklets into free slots.
    fn promote(&mut self, max: usize) {
        while self.active_len() < max {
            match self.queued.pop_front() {
                Some(s) => self.active.push_back(s),
                None => break,
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    scheduled: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    iterations: AtomicU64,
    exec_nanos: AtomicU64,
    max_slice_nanos: AtomicU64,
    overruns: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    counters: Counters,
    config: SchedulerConfig,
}

/// Runs [`Tasklet`]s in budgeted slices; see the module contract.
pub struct TaskletScheduler {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TaskletScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskletScheduler")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl TaskletScheduler {
    /// A scheduler whose driver task runs on `runtime`.
    #[must_use]
    pub fn new(config: SchedulerConfig, runtime: &Handle) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                active: VecDeque::new(),
                queued: VecDeque::new(),
                running: None,
                cancel_running: false,
                shut: false,
                next_id: 1,
            }),
            wake: Notify::new(),
            counters: Counters::default(),
            config,
        });
        let driver = runtime.spawn(drive(shared.clone()));
        Self {
            shared,
            driver: Mutex::new(Some(driver)),
        }
    }

    /// Schedules `tasklet`: active at once if a slot is free, else queued.
    ///
    /// # Errors
    /// [`TaskletError::ShuttingDown`] after [`shutdown`](Self::shutdown);
    /// [`TaskletError::Full`] when every slot and the whole queue are taken.
    pub fn schedule<T: Tasklet>(
        &self,
        tasklet: T,
    ) -> Result<TaskletHandle<T::Output>, TaskletError> {
        let name = tasklet.name().to_string();
        let config = &self.shared.config;
        let (tx, rx) = oneshot::channel();
        let mut st = self.shared.state.lock();
        if st.shut {
            return Err(TaskletError::ShuttingDown { name });
        }
        let has_slot = st.active_len() < config.max_concurrent;
        if !has_slot && st.queued.len() >= config.queue_capacity {
            return Err(TaskletError::Full {
                name,
                max: config.max_concurrent,
                queue: config.queue_capacity,
            });
        }
        let id = st.next_id;
        st.next_id += 1;
        let slot = Slot {
            id,
            name: Arc::from(name.as_str()),
            task: Box::new(Wrapped {
                task: tasklet,
                tx: Some(tx),
            }),
        };
        if has_slot {
            st.active.push_back(slot);
        } else {
            st.queued.push_back(slot);
        }
        drop(st);
        self.shared
            .counters
            .scheduled
            .fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(TaskletHandle { id, name, rx })
    }

    /// Cancels the tasklet `id`; true if it was active, queued or running.
    pub fn cancel(&self, id: TaskletId) -> bool {
        self.cancel_where(|slot_id, _| slot_id == id) > 0
    }

    /// Cancels every tasklet whose name starts with `prefix` (a literal
    /// prefix, not a pattern); returns how many.
    pub fn cancel_prefix(&self, prefix: &str) -> usize {
        self.cancel_where(|_, name| name.starts_with(prefix))
    }

    /// Cancels every tasklet; returns how many.
    pub fn cancel_all(&self) -> usize {
        self.cancel_where(|_, _| true)
    }

    fn cancel_where(&self, pred: impl Fn(TaskletId, &str) -> bool) -> usize {
        let mut taken = Vec::new();
        let mut running = 0;
        {
            let mut guard = self.shared.state.lock();
            let st = &mut *guard;
            for q in [&mut st.active, &mut st.queued] {
                let mut keep = VecDeque::with_capacity(q.len());
                for s in q.drain(..) {
                    if pred(s.id, &s.name) {
                        taken.push(s);
                    } else {
                        keep.push_back(s);
                    }
                }
                *q = keep;
            }
            if let Some((id, name)) = &st.running {
                if pred(*id, name) && !st.cancel_running {
                    st.cancel_running = true;
                    running = 1;
                }
            }
            st.promote(self.shared.config.max_concurrent);
        }
        let n = taken.len();
        self.shared
            .counters
            .cancelled
            .fetch_add(n as u64, Ordering::Relaxed);
        for s in taken {
            s.task.cancel();
        }
        self.shared.wake.notify_one();
        n + running
    }

    /// Counters and current sizes.
    #[must_use]
    pub fn stats(&self) -> TaskletStats {
        let c = &self.shared.counters;
        let (active, queued) = {
            let st = self.shared.state.lock();
            (st.active_len(), st.queued.len())
        };
        TaskletStats {
            scheduled: c.scheduled.load(Ordering::Relaxed),
            active,
            queued,
            completed: c.completed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            iterations: c.iterations.load(Ordering::Relaxed),
            total_execution: Duration::from_nanos(c.exec_nanos.load(Ordering::Relaxed)),
            max_slice: Duration::from_nanos(c.max_slice_nanos.load(Ordering::Relaxed)),
            overruns: c.overruns.load(Ordering::Relaxed),
        }
    }

    /// Refuses new tasklets and cancels every one at once; the returned
    /// future completes when the driver has stopped (after the slice in
    /// progress, if any). Idempotent.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.state.lock().shut = true;
        self.cancel_all();
        self.shared.wake.notify_one();
        let driver = self.driver.lock().take();
        async move {
            if let Some(d) = driver {
                let _ = d.await;
            }
        }
    }
}

impl Drop for TaskletScheduler {
    fn drop(&mut self) {
        if let Some(d) = self.driver.lock().take() {
            d.abort();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the driver does with a slot after its slice.
enum After {
    Finished,
    Panicked(Slot, String),
    Cancel(Slot),
    Requeued { progressed: bool },
}

/// The driver: one slice at a time, round robin, yielding between slices.
async fn drive(shared: Arc<Shared>) {
    let config = &shared.config;
    let clock = &*config.clock;
    // Slices in a row that made no progress, and the current backoff.
    let mut idle_run = 0usize;
    let mut backoff = Duration::from_millis(1);
    loop {
        let next = {
            let mut st = shared.state.lock();
            match st.active.pop_front() {
                Some(s) => {
                    st.running = Some((s.id, s.name.clone()));
                    st.cancel_running = false;
                    Some(s)
                }
                None if st.shut => return,
                None => None,
            }
        };
        let Some(slot) = next else {
            shared.wake.notified().await;
            continue;
        };

        let deadline = Deadline::start(clock, config.budget);
        let started = deadline.started_at();
        let mut slot = slot;
        let outcome = catch_unwind(AssertUnwindSafe(|| slot.task.step(deadline)));
        let took = clock.now().saturating_sub(started);

        let c = &shared.counters;
        c.iterations.fetch_add(1, Ordering::Relaxed);
        c.exec_nanos.fetch_add(nanos(took), Ordering::Relaxed);
        c.max_slice_nanos.fetch_max(nanos(took), Ordering::Relaxed);
        if took > config.budget * 2 {
            c.overruns.fetch_add(1, Ordering::Relaxed);
        }

        // What to do once the lock is released (no guard lives across an
        // await, and user hooks never run under the lock).
        let (after, active) = {
            let mut st = shared.state.lock();
            st.running = None;
            let cancel = std::mem::take(&mut st.cancel_running);
            let after = match outcome {
                Ok(Step::Done) => {
                    c.completed.fetch_add(1, Ordering::Relaxed);
                    After::Finished
                }
                Err(p) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    After::Panicked(slot, panic_message(&*p))
                }
                Ok(_) if cancel => {
                    c.cancelled.fetch_add(1, Ordering::Relaxed);
                    After::Cancel(slot)
                }
                Ok(step) => {
                    let progressed = matches!(step, Step::Made);
                    st.active.push_back(slot);
                    After::Requeued { progressed }
                }
            };
            st.promote(config.max_concurrent);
            (after, st.active.len())
        };
        match after {
            After::Finished => {}
            After::Panicked(slot, message) => slot.task.panicked(message),
            After::Cancel(slot) => slot.task.cancel(),
            After::Requeued { progressed: true } => {
                idle_run = 0;
                backoff = Duration::from_millis(1);
            }
            After::Requeued { progressed: false } => {
                idle_run += 1;
                if idle_run >= active {
                    // A whole round without progress: sleep, don't spin.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.idle_backoff.max(Duration::from_millis(1)));
                    idle_run = 0;
                }
            }
        }
        tokio::task::yield_now().await;
    }
}
