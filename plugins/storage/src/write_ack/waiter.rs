//! One `wait` call: the results known at once, and for the rest a shared
//! table that resolvers fill plus the future that sleeps until the table is
//! full or the earliest unresolved deadline passes.
//!
//! A wait on acks that are all resolved allocates one vector and touches no
//! timer. Otherwise it costs one table however many acks it covers, and at
//! most one live timer at a time (the earliest deadline it still needs); no
//! task is spawned. Each slot is filled exactly once: by the call itself when
//! the ack was already resolved, otherwise by whoever removes the waiting
//! entry from its shard (a notification, `fail`, the timer of this future, a
//! sweep, or shutdown), which happens once under the shard's lock.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::Either;

use hangar_core::module::storage_types::{AckId, AckResult};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Inner;

/// The results of one wait call.
#[derive(Debug)]
pub(crate) struct Batch {
    results: Mutex<Vec<Option<AckResult>>>,
    remaining: AtomicUsize,
    done: Notify,
    /// Set when the wait future is dropped before it completed: its acks
    /// then behave as if nobody waited, so a later `wait` can take them.
    abandoned: AtomicBool,
}

impl Batch {
    /// A table of `n` empty slots.
    pub(crate) fn new(n: usize) -> Self {
        let mut results = Vec::with_capacity(n);
        results.resize_with(n, || None);
        Self {
            results: Mutex::new(results),
            remaining: AtomicUsize::new(n),
            done: Notify::new(),
            abandoned: AtomicBool::new(false),
        }
    }

    /// True once the wait future that owns this table was dropped.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Fills `slot`. A slot already filled keeps its first result (that
    /// cannot happen by construction; the check keeps the count honest).
    pub(crate) fn complete(&self, slot: u32, result: AckResult) {
        {
            let mut results = self.results.lock();
            let cell = &mut results[slot as usize];
            if cell.is_some() {
                return;
            }
            *cell = Some(result);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }

    fn take(&self) -> Vec<AckResult> {
        let mut results = self.results.lock();
        results
            .drain(..)
            .map(|r| r.expect("every slot is filled before the batch is taken"))
            .collect()
    }
}

/// An ack of a wait call that was not resolved when the call was made.
#[derive(Clone, Copy, Debug)]
struct Timer {
    deadline: Instant,
    ack: AckId,
    slot: u32,
}

/// What `claim` found for one ack of a wait call.
pub(crate) enum Claim {
    /// The result is known now.
    Ready(AckResult),
    /// The call's batch waits for it until this deadline.
    Wait(Instant),
}

/// A wait call being set up. Results known at once are kept in a plain
/// vector; the shared batch (and the clock read) is only made when some ack
/// must be waited for, so a wait on resolved acks allocates one vector and
/// takes no timer.
pub(crate) struct WaitCall {
    n: usize,
    ready: Vec<AckResult>,
    batch: Option<Arc<Batch>>,
    timers: Vec<Timer>,
    now: Option<Instant>,
}

impl WaitCall {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            ready: Vec::new(),
            batch: None,
            timers: Vec::new(),
            now: None,
        }
    }

    /// The time of the call, read once, on first need.
    pub(crate) fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }

    /// The shared batch, made on first need; the results gathered so far
    /// (slots `0..k`, in order) move into it.
    pub(crate) fn batch(&mut self) -> Arc<Batch> {
        if let Some(b) = &self.batch {
            return b.clone();
        }
        let b = Arc::new(Batch::new(self.n));
        for (slot, r) in self.ready.drain(..).enumerate() {
            b.complete(slot as u32, r);
        }
        self.batch = Some(b.clone());
        b
    }

    /// Slot `slot` (the next one, in order) has its result.
    pub(crate) fn ready(&mut self, slot: u32, r: AckResult) {
        match &self.batch {
            Some(b) => b.complete(slot, r),
            None => {
                debug_assert_eq!(slot as usize, self.ready.len());
                if self.ready.capacity() == 0 {
                    self.ready.reserve_exact(self.n);
                }
                self.ready.push(r);
            }
        }
    }

    /// Slot `slot` waits for `ack` until `deadline`.
    pub(crate) fn timer(&mut self, deadline: Instant, ack: AckId, slot: u32) {
        self.timers.push(Timer {
            deadline,
            ack,
            slot,
        });
    }

    /// The future of the call.
    pub(crate) fn finish(
        self,
        inner: &Arc<Inner>,
    ) -> impl Future<Output = Vec<AckResult>> + Send + 'static {
        match self.batch {
            None => Either::Left(std::future::ready(self.ready)),
            Some(batch) => {
                Either::Right(wait_batch(inner.clone(), AbandonOnDrop(batch), self.timers))
            }
        }
    }
}

/// Marks its batch abandoned when the wait future is dropped (completed or
/// not: once completed, nothing refers to the batch any more).
struct AbandonOnDrop(Arc<Batch>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandoned.store(true, Ordering::Release);
    }
}

/// Waits until every slot of `batch` is filled, expiring unresolved acks at
/// their deadlines, earliest first.
async fn wait_batch(
    inner: Arc<Inner>,
    guard: AbandonOnDrop,
    mut timers: Vec<Timer>,
) -> Vec<AckResult> {
    let batch = &guard.0;
    timers.sort_unstable_by_key(|t| t.deadline);
    let mut timers = timers.into_iter();
    let mut next = timers.next();
    while batch.remaining() > 0 {
        match next {
            // Every remaining slot is owned by a resolver that is filling it.
            None => batch.done.notified().await,
            Some(t) => {
                tokio::select! {
                    biased;
                    () = batch.done.notified() => {}
                    () = tokio::time::sleep_until(t.deadline) => {
                        inner.expire(t.ack, t.slot, batch);
                        next = timers.next();
                    }
                }
            }
        }
    }
    batch.take()
}
