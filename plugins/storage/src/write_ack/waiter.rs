//! One `wait` call: a shared table of results that resolvers fill, and the
//! future that sleeps until the table is full or the earliest unresolved
//! deadline passes.
//!
//! A wait call costs one allocation for the table however many acks it
//! covers, and at most one live timer at a time (the earliest deadline it
//! still needs); no task is spawned. Each slot is filled exactly once: by the
//! caller itself when the ack was already resolved, otherwise by whoever
//! removes the waiting entry from its shard (a notification, `fail`, the
//! timer of this future, a sweep, or shutdown), which happens once under the
//! shard's lock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
pub(crate) struct Timer {
    pub(crate) deadline: Instant,
    pub(crate) ack: AckId,
    pub(crate) slot: u32,
}

/// Marks its batch abandoned when the wait future is dropped (completed or
/// not: once completed, nothing refers to the batch any more).
pub(crate) struct AbandonOnDrop(pub(crate) Arc<Batch>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandoned.store(true, Ordering::Release);
    }
}

/// Waits until every slot of `batch` is filled, expiring unresolved acks at
/// their deadlines, earliest first.
pub(crate) async fn wait_batch(
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
