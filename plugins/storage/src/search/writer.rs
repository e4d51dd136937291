//! [`IndexWriter`]: deferred indexing, so the write path only enqueues.
//!
//! Indexing a 1 KB document (tokenize, stem, update postings) costs far more
//! than applying the write to the map, so doing it inline would slow every
//! write of an FTS-enabled map several times over. Instead the write path
//! calls [`IndexWriter::upsert`] / [`IndexWriter::remove`], which push the
//! change onto a queue (a mutex-guarded `VecDeque` push and, when the queue
//! was empty, one wake-up), and a background task on the plugin's tokio
//! runtime drains the queue in batches into the [`FullTextIndex`].
//!
//! # Guarantees
//!
//! - **Order.** Changes are applied in the order their `upsert`/`remove`
//!   calls took the queue lock. Within one batch, only the last change of
//!   each key is applied, which leaves the same index state.
//! - **Prefix visibility.** A batch is applied under one write lock, so every
//!   search sees the changes up to some point of that order, never a later
//!   change without the earlier ones.
//! - **Read-your-writes.** Every change whose call *returned before*
//!   [`IndexWriter::flush`] (synchronous: applies the pending changes on the
//!   caller's thread) or [`IndexWriter::wait_current`] (async: waits for the
//!   background task) was *called* is visible to every search that starts
//!   after it returns. Changes enqueued concurrently with it may or may not
//!   be.
//! - **Bounded memory.** When more than `max_pending` changes are queued, the
//!   writer that pushed over the limit applies the excess itself before
//!   returning (backpressure: the write path then pays the indexing cost).
//!
//! # Costs
//!
//! The write path pays: the key (and, unless shared through an `Arc`, the
//! value) handed over, one uncontended lock and push, and, only when the
//! queue was empty, waking the task (a futex syscall if its worker thread is
//! parked). The indexing itself runs on the runtime's worker. Deferral
//! absorbs bursts and any rate the background task keeps up with; a write
//! rate above the indexing rate fills the queue, and from then on writers
//! apply the excess themselves, so sustained throughput is bounded by the
//! indexing rate (see `benches/fts.rs`).
//!
//! # Caller contract
//!
//! For one key, changes MUST be enqueued in the order they were applied to
//! the map (enqueue the winning value while still holding whatever orders the
//! map's writes to that key), or the index may end on an older value.
//! [`IndexWriter::flush`] and the write path MUST NOT be called while the
//! same thread holds a guard from [`IndexWriter::read`].

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hangar_core::RawValue;
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::index::FullTextIndex;
use super::query::{SearchError, SearchOptions, SearchResults};

/// A record value handed to the writer: decoded, or still msgpack (decoded
/// by the background task, off the write path).
#[derive(Debug, Clone)]
pub enum Document {
    /// An already decoded value.
    Value(rmpv::Value),
    /// Msgpack bytes as stored; undecodable bytes remove the document and
    /// log a warning.
    Msgpack(RawValue),
    /// Msgpack bytes shared with the map, so enqueueing copies no value.
    Shared(Arc<RawValue>),
}

impl From<rmpv::Value> for Document {
    fn from(v: rmpv::Value) -> Self {
        Self::Value(v)
    }
}

impl From<RawValue> for Document {
    fn from(v: RawValue) -> Self {
        Self::Msgpack(v)
    }
}

impl From<Arc<RawValue>> for Document {
    fn from(v: Arc<RawValue>) -> Self {
        Self::Shared(v)
    }
}

#[derive(Debug)]
enum Op {
    Upsert(String, Document),
    Remove(String),
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Upsert(k, _) | Op::Remove(k) => k,
        }
    }
}

/// Tuning of an [`IndexWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Queue length above which the write path applies the excess itself.
    /// MUST be >= 1 (0 is treated as 1). Default 65 536.
    pub max_pending: usize,
    /// Most changes the background task applies under one lock hold before
    /// letting searches and other tasks in. MUST be >= 1 (0 is treated as 1).
    /// Default 256.
    pub max_batch: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_pending: 65_536,
            max_batch: 256,
        }
    }
}

/// Counters of an [`IndexWriter`], for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Changes enqueued since the writer started.
    pub enqueued: u64,
    /// Changes applied (or coalesced away) so far.
    pub applied: u64,
    /// Changes waiting in the queue.
    pub pending: usize,
}

#[derive(Debug, Default)]
struct Queue {
    ops: VecDeque<Op>,
    /// Sequence number of the last op pushed (the first op is 1).
    last_seq: u64,
}

#[derive(Debug)]
struct Applier {
    index: FullTextIndex,
    /// Reused buffer for the ops of one batch.
    batch: Vec<Op>,
}

#[derive(Debug)]
struct Shared {
    state: RwLock<Applier>,
    queue: Mutex<Queue>,
    wake: Notify,
    applied: watch::Sender<u64>,
    closed: AtomicBool,
    options: WriterOptions,
}

/// How many queued ops one [`Shared::apply_pending`] call takes.
#[derive(Debug, Clone, Copy)]
enum Take {
    AtMost(usize),
    DownTo(usize),
}

impl Shared {
    /// Applies queued ops under the index write lock; returns whether ops
    /// remain queued afterwards.
    fn apply_pending(&self, take: Take) -> bool {
        let mut state = self.state.write();
        let Applier { index, batch } = &mut *state;
        // Popping under the index lock is what makes `flush` correct: an op
        // is either still queued or already applied by whoever holds the lock.
        let (through, more) = {
            let mut q = self.queue.lock();
            let k = match take {
                Take::AtMost(n) => n.min(q.ops.len()),
                Take::DownTo(n) => q.ops.len().saturating_sub(n),
            };
            batch.extend(q.ops.drain(..k));
            (q.last_seq - q.ops.len() as u64, !q.ops.is_empty())
        };
        apply_batch(index, batch);
        drop(state);
        self.applied.send_if_modified(|a| {
            let newer = through > *a;
            if newer {
                *a = through;
            }
            newer
        });
        more
    }
}

/// Applies `batch` (oldest first) and empties it, keeping only the last op
/// of each key.
fn apply_batch(index: &mut FullTextIndex, batch: &mut Vec<Op>) {
    if batch.len() == 1 {
        apply_op(index, &batch[0]);
    } else if batch.len() > 1 {
        let mut seen: HashSet<&str> = HashSet::with_capacity(batch.len());
        for op in batch.iter().rev() {
            if seen.insert(op.key()) {
                apply_op(index, op);
            }
        }
    }
    batch.clear();
}

fn apply_op(index: &mut FullTextIndex, op: &Op) {
    match op {
        Op::Upsert(key, Document::Value(v)) => index.upsert(key, v),
        Op::Upsert(key, Document::Msgpack(raw)) => upsert_raw(index, key, raw),
        Op::Upsert(key, Document::Shared(raw)) => upsert_raw(index, key, raw),
        Op::Remove(key) => {
            index.remove(key);
        }
    }
}

fn upsert_raw(index: &mut FullTextIndex, key: &str, raw: &RawValue) {
    if let Err(error) = index.upsert_raw(key, raw) {
        tracing::warn!(
            key = %key,
            %error,
            "full-text index: record value is not msgpack; removed it from the index"
        );
    }
}

async fn drain_loop(shared: Arc<Shared>) {
    let max_batch = shared.options.max_batch.max(1);
    loop {
        shared.wake.notified().await;
        while shared.apply_pending(Take::AtMost(max_batch)) {
            tokio::task::yield_now().await;
        }
        if shared.closed.load(Ordering::Acquire) {
            shared.apply_pending(Take::AtMost(usize::MAX));
            return;
        }
    }
}

/// A [`FullTextIndex`] fed through a queue by a background task; see the
/// module docs for the guarantees.
#[derive(Debug)]
pub struct IndexWriter {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl IndexWriter {
    /// Wraps `index` and starts its background task on `runtime`.
    #[must_use]
    pub fn spawn(
        index: FullTextIndex,
        options: WriterOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: RwLock::new(Applier {
                index,
                batch: Vec::new(),
            }),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            applied: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            options,
        });
        let task = runtime.spawn(drain_loop(Arc::clone(&shared)));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// Enqueues the new value of `key`. A `Nil` value is a tombstone.
    pub fn upsert(&self, key: impl Into<String>, doc: impl Into<Document>) {
        self.enqueue(Op::Upsert(key.into(), doc.into()));
    }

    /// Enqueues the removal of `key`.
    pub fn remove(&self, key: impl Into<String>) {
        self.enqueue(Op::Remove(key.into()));
    }

    fn enqueue(&self, op: Op) {
        let len = {
            let mut q = self.shared.queue.lock();
            q.ops.push_back(op);
            q.last_seq += 1;
            q.ops.len()
        };
        if len == 1 {
            self.shared.wake.notify_one();
        }
        let max = self.shared.options.max_pending.max(1);
        if len > max {
            self.shared.apply_pending(Take::DownTo(max));
        }
    }

    /// Applies every queued change on the calling thread; on return, every
    /// change enqueued before this call is visible to searches.
    ///
    /// Blocks while the background task applies a batch. Costs the indexing
    /// of whatever is pending, so async callers may prefer
    /// [`IndexWriter::wait_current`].
    pub fn flush(&self) {
        self.shared.apply_pending(Take::AtMost(usize::MAX));
    }

    /// Waits until the background task has applied every change enqueued
    /// before this call.
    ///
    /// If the background task is gone (its runtime shut down), applies the
    /// pending changes on the calling thread instead, so it cannot hang on a
    /// dead task it can see; it MUST NOT be awaited on a runtime that is
    /// shutting down underneath it.
    pub async fn wait_current(&self) {
        let target = self.shared.queue.lock().last_seq;
        let mut rx = self.shared.applied.subscribe();
        if *rx.borrow_and_update() >= target {
            return;
        }
        if self.task.as_ref().is_none_or(JoinHandle::is_finished) {
            self.flush();
            return;
        }
        self.shared.wake.notify_one();
        // The sender lives in `shared`, which `self` keeps alive.
        let _ = rx.wait_for(|&applied| applied >= target).await;
    }

    /// Searches the index as it is now: changes still queued are not seen.
    ///
    /// # Errors
    /// As [`FullTextIndex::search`].
    pub fn search(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults, SearchError> {
        self.read().search(query, options)
    }

    /// A read guard on the index as it is now. Hold it briefly: the
    /// background task and [`IndexWriter::flush`] wait for it.
    pub fn read(&self) -> MappedRwLockReadGuard<'_, FullTextIndex> {
        RwLockReadGuard::map(self.shared.state.read(), |a| &a.index)
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> WriterStats {
        let (enqueued, pending) = {
            let q = self.shared.queue.lock();
            (q.last_seq, q.ops.len())
        };
        WriterStats {
            enqueued,
            applied: *self.shared.applied.borrow(),
            pending,
        }
    }

    /// Stops the background task after it has applied every queued change,
    /// and hands back the index (to persist it, or to re-wrap it).
    pub async fn shutdown(mut self) -> FullTextIndex {
        let shared = Arc::clone(&self.shared);
        let task = self.task.take();
        drop(self); // closes the queue
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "full-text index writer task failed");
            }
        }
        // The task is gone, so ours is the last reference; if it failed
        // before draining, drain here.
        shared.apply_pending(Take::AtMost(usize::MAX));
        match Arc::try_unwrap(shared) {
            Ok(shared) => shared.state.into_inner().index,
            Err(_) => unreachable!("the writer and its task held the only references"),
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl Drop for IndexWriter {
    /// Tells the background task to apply what is queued and stop; does not
    /// wait for it (use [`IndexWriter::shutdown`] to wait).
    fn drop(&mut self) {
        self.close();
    }
}
