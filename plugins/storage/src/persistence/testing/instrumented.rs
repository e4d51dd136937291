//! [`InstrumentedBackend`]: wraps any backend to fail commits after a
//! countdown, hold commits at a gate, and log what was committed; and to
//! fail or hold map loads (`load_map`), for tests of lazy loading; and to
//! hold journal reads, for tests of a replay that falls behind.
//!
//! It is the "backend that fails I/O after a countdown" of redb's own
//! tests, at the level of our trait, so that group commit and the storage
//! manager can be tested against every failure style the contract allows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard};

use crate::persistence::backend::{PersistResult, PersistenceBackend};
use crate::persistence::entry::{LoadedMap, StoreOp, StoredEntry, StoredMap, WriteBatch};
use crate::persistence::error::PersistenceError;

/// How an injected commit failure behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureStyle {
    /// The commit writes nothing and returns an error.
    BeforeWrite,
    /// The commit writes the batch to the inner backend, then returns an
    /// error anyway (an fsync error after the write: the fate is unknown to
    /// the caller, and the data happens to be there).
    AfterWrite,
}

/// Counts calls that reached a point, and wakes whoever waits for a
/// number of them.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    notify: Notify,
}

impl Arrivals {
    fn arrive(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits until at least `n` calls arrived.
    async fn wait(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) >= n {
                return;
            }
            notified.await;
        }
    }
}

/// A backend wrapper for fault injection and observation.
pub struct InstrumentedBackend {
    inner: Arc<dyn PersistenceBackend>,
    /// Commits still allowed before failing, and how to fail.
    countdown: Mutex<Option<(usize, FailureStyle)>>,
    gate: Arc<tokio::sync::Mutex<()>>,
    log: Mutex<Vec<Vec<StoreOp>>>,
    commits_started: Arrivals,
    load_failures: AtomicUsize,
    load_gate: Arc<tokio::sync::Mutex<()>>,
    loads: AtomicUsize,
    journal_gate: Arc<tokio::sync::Mutex<()>>,
    journal_reads: Arrivals,
}

impl InstrumentedBackend {
    /// Wraps `inner`; it passes everything through until told otherwise.
    #[must_use]
    pub fn new(inner: Arc<dyn PersistenceBackend>) -> Self {
        Self {
            inner,
            countdown: Mutex::new(None),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            log: Mutex::new(Vec::new()),
            commits_started: Arrivals::default(),
            load_failures: AtomicUsize::new(0),
            load_gate: Arc::new(tokio::sync::Mutex::new(())),
            loads: AtomicUsize::new(0),
            journal_gate: Arc::new(tokio::sync::Mutex::new(())),
            journal_reads: Arrivals::default(),
        }
    }

    /// Lets the next `n` commits through, then fails that one and every
    /// later commit (as redb refuses writes after an I/O error).
    pub fn fail_commits_after(&self, n: usize, style: FailureStyle) {
        *self.countdown.lock() = Some((n, style));
    }

    /// Stops failing commits (as a database that is back): every later
    /// commit passes through again.
    pub fn heal(&self) {
        *self.countdown.lock() = None;
    }

    /// Holds every commit (after it started) until the guard is dropped.
    pub async fn hold(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.gate).lock_owned().await
    }

    /// Waits until at least `n` commits have started (reached the gate).
    pub async fn wait_commits_started(&self, n: usize) {
        self.commits_started.wait(n).await;
    }

    /// Makes the next `n` `load_map` calls fail with a storage error.
    pub fn fail_next_loads(&self, n: usize) {
        self.load_failures.store(n, Ordering::Release);
    }

    /// Holds every `load_map` call until the guard is dropped.
    pub async fn hold_loads(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.load_gate).lock_owned().await
    }

    /// Holds every `read_journal` call (after it started) until the
    /// guard is dropped.
    pub async fn hold_journal_reads(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.journal_gate).lock_owned().await
    }

    /// Waits until at least `n` `read_journal` calls have started.
    pub async fn wait_journal_reads_started(&self, n: usize) {
        self.journal_reads.wait(n).await;
    }

    /// How many `load_map` calls were made so far.
    #[must_use]
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::Acquire)
    }

    /// The ops of every commit attempted so far, in order.
    #[must_use]
    pub fn commit_log(&self) -> Vec<Vec<StoreOp>> {
        self.log.lock().clone()
    }
}

impl PersistenceBackend for InstrumentedBackend {
    fn name(&self) -> &'static str {
        "instrumented"
    }

    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        Box::pin(async move {
            self.commits_started.arrive();
            let _gate = self.gate.lock().await;
            self.log.lock().push(batch.ops.clone());
            let fail = {
                let mut c = self.countdown.lock();
                match &mut *c {
                    None => None,
                    Some((0, style)) => Some(*style),
                    Some((n, _)) => {
                        *n -= 1;
                        None
                    }
                }
            };
            let injected = || {
                PersistenceError::storage("commit", "injected I/O failure (countdown reached zero)")
            };
            match fail {
                None => self.inner.commit(batch).await,
                Some(FailureStyle::BeforeWrite) => Err(injected()),
                Some(FailureStyle::AfterWrite) => {
                    self.inner.commit(batch).await?;
                    Err(injected())
                }
            }
        })
    }

    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        Box::pin(async move {
            self.loads.fetch_add(1, Ordering::AcqRel);
            let _gate = self.load_gate.lock().await;
            let failed = self
                .load_failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if failed {
                return Err(PersistenceError::storage(
                    "load_map",
                    "injected read failure",
                ));
            }
            self.inner.load_map(map).await
        })
    }

    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        self.inner.load_keys(map, keys)
    }

    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        self.inner.list_keys(map)
    }

    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        self.inner.load_or_tombstones(map)
    }

    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        self.inner.list_maps()
    }

    fn keeps_journal(&self) -> bool {
        self.inner.keeps_journal()
    }

    fn read_journal(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, PersistResult<Vec<crate::persistence::JournalRecord>>> {
        Box::pin(async move {
            self.journal_reads.arrive();
            let _gate = self.journal_gate.lock().await;
            self.inner.read_journal(from, limit).await
        })
    }

    fn journal_bounds(&self) -> BoxFuture<'_, PersistResult<Option<(u64, u64)>>> {
        self.inner.journal_bounds()
    }

    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        self.inner.flush()
    }

    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        self.inner.close()
    }
}
