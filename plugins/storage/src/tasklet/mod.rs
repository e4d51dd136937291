//! Tasklets: long work (loading a map, backfilling an index, GC) cut into
//! slices that each stop at a time budget, so that the runtime's workers are
//! never held for much longer than the budget and writes keep flowing.
//!
//! # Layout
//!
//! - this file: the [`Tasklet`] trait, [`Progress`], [`Deadline`] and the
//!   [`Clock`] it reads, [`TaskletError`], and [`run_sync`].
//! - `scheduler`: [`TaskletScheduler`], which runs many tasklets slice by
//!   slice, round robin, on one driver task.
//! - `iter`: [`IterTasklet`], work over an iterator, and the `map`, `filter`,
//!   `for_each` and `reduce` conveniences.
//!
//! # Contract of a tasklet
//!
//! A step SHOULD return soon after `deadline.expired()` becomes true; nothing
//! can pre-empt it, so one indivisible operation inside a step (a hash-map
//! rehash of a million entries, say) overruns the budget by its own length.
//! The scheduler measures each slice and counts overruns (`TaskletStats`).

mod iter;
mod scheduler;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hangar_core::error::{ErrorKind, ModuleError};

pub use iter::{filter, for_each, map, reduce, Fold, IterTasklet};
pub use scheduler::{SchedulerConfig, TaskletHandle, TaskletId, TaskletScheduler, TaskletStats};

/// What one step of a tasklet achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<T> {
    /// Finished with this result; the tasklet is not stepped again.
    Done(T),
    /// Did some work; step again later.
    MadeProgress,
    /// Could do nothing this time (waiting for something). The scheduler
    /// retries, backing off while every tasklet reports this; [`run_sync`]
    /// fails.
    NoProgress,
}

/// A piece of long work that runs in slices.
pub trait Tasklet: Send + 'static {
    /// What the finished work yields.
    type Output: Send + 'static;

    /// A name for stats, logs, errors and cancellation by prefix.
    fn name(&self) -> &str;

    /// Does work until done or until `deadline` expires (checked as often as
    /// the work allows). MUST NOT be called again after it returned
    /// [`Progress::Done`].
    fn step(&mut self, deadline: Deadline<'_>) -> Progress<Self::Output>;

    /// Called once when the tasklet is cancelled before it finished, to
    /// release what it holds. A panic here is caught and ignored.
    fn on_cancel(&mut self) {}
}

/// A monotonic time source, injectable so that tests count budget checks
/// instead of measuring wall time.
pub trait Clock: Send + Sync + 'static {
    /// Time since an arbitrary fixed origin; MUST never go backwards.
    fn now(&self) -> Duration;
}

/// The real clock: time since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told: by [`advance`](Self::advance), and by
/// `step_per_read` on every read. For deterministic tests of budgets.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    step_per_read: u64,
    reads: AtomicU64,
}

impl ManualClock {
    /// A clock at 0 that advances `step_per_read` each time it is read.
    #[must_use]
    pub fn new(step_per_read: Duration) -> Self {
        Self {
            nanos: AtomicU64::new(0),
            step_per_read: u64::try_from(step_per_read.as_nanos()).unwrap_or(u64::MAX),
            reads: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// How many times the clock was read.
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Duration::from_nanos(self.nanos.fetch_add(self.step_per_read, Ordering::SeqCst))
    }
}

/// The end of a slice: a start instant and a budget on a [`Clock`].
#[derive(Clone, Copy)]
pub struct Deadline<'a> {
    clock: &'a dyn Clock,
    start: Duration,
    budget: Duration,
}

impl std::fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("start", &self.start)
            .field("budget", &self.budget)
            .finish()
    }
}

impl<'a> Deadline<'a> {
    /// A slice of `budget` starting now on `clock` (reads it once).
    #[must_use]
    pub fn start(clock: &'a dyn Clock, budget: Duration) -> Self {
        Self {
            clock,
            start: clock.now(),
            budget,
        }
    }

    /// True once `budget` has passed since the start (reads the clock).
    #[must_use]
    pub fn expired(&self) -> bool {
        self.elapsed() >= self.budget
    }

    /// Time since the start (reads the clock).
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_sub(self.start)
    }

    /// The slice's budget.
    #[must_use]
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The clock's reading when the slice started.
    #[must_use]
    pub fn started_at(&self) -> Duration {
        self.start
    }
}

/// Why a tasklet did not deliver its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskletError {
    /// Cancelled by id, by name prefix, or by shutdown, before it finished.
    #[error("Tasklet {name} was cancelled")]
    Cancelled {
        /// The tasklet's name.
        name: String,
    },
    /// [`run_sync`]: a step returned [`Progress::NoProgress`].
    #[error("Tasklet {name} made no progress")]
    NoProgress {
        /// The tasklet's name.
        name: String,
    },
    /// A step panicked; the scheduler carries on with the others.
    #[error("Tasklet {name} panicked: {message}")]
    Panicked {
        /// The tasklet's name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// `schedule` after `shutdown`.
    #[error("Scheduler is shutting down: tasklet {name} was not scheduled")]
    ShuttingDown {
        /// The tasklet's name.
        name: String,
    },
    /// `schedule` while `max` tasklets run and the wait queue holds `queue`.
    #[error(
        "Max concurrent tasklets ({max}) reached and the wait queue ({queue}) is full: \
         tasklet {name} was not scheduled; retry when some finish"
    )]
    Full {
        /// The tasklet's name.
        name: String,
        /// Most tasklets running at once.
        max: usize,
        /// Most tasklets waiting to run.
        queue: usize,
    },
    /// The scheduler was dropped without a shutdown while the tasklet was
    /// pending.
    #[error("Tasklet {name} was dropped with its scheduler")]
    Dropped {
        /// The tasklet's name.
        name: String,
    },
}

impl From<TaskletError> for ModuleError {
    fn from(e: TaskletError) -> Self {
        let kind = match &e {
            TaskletError::Cancelled { .. } | TaskletError::Dropped { .. } => ErrorKind::UNAVAILABLE,
            TaskletError::NoProgress { .. } => ErrorKind::INTERNAL,
            TaskletError::Panicked { .. } => ErrorKind::PANICKED,
            TaskletError::ShuttingDown { .. } => ErrorKind::SHUT_DOWN,
            TaskletError::Full { .. } => ErrorKind::OVERLOADED,
        };
        ModuleError::new(kind, e.to_string())
    }
}

/// Runs `tasklet` to completion on the calling thread, one slice of `budget`
/// after another (the legacy `runSync`), with the real clock.
///
/// # Errors
/// [`TaskletError::NoProgress`] as soon as a step makes no progress (there is
/// nothing else to wait for on this thread).
pub fn run_sync<T: Tasklet>(tasklet: T, budget: Duration) -> Result<T::Output, TaskletError> {
    run_sync_with_clock(tasklet, budget, &MonotonicClock::new())
}

/// [`run_sync`] on the given clock.
///
/// # Errors
/// As [`run_sync`].
pub fn run_sync_with_clock<T: Tasklet>(
    mut tasklet: T,
    budget: Duration,
    clock: &dyn Clock,
) -> Result<T::Output, TaskletError> {
    loop {
        match tasklet.step(Deadline::start(clock, budget)) {
            Progress::Done(v) => return Ok(v),
            Progress::MadeProgress => {}
            Progress::NoProgress => {
                return Err(TaskletError::NoProgress {
                    name: tasklet.name().to_string(),
                })
            }
        }
    }
}
