//! Group commit: one writer task turns the writes of many concurrent callers
//! into few durable backend commits, and tells each caller when *its* write
//! is durable.
//!
//! This is what the PERSISTED write concern hangs on: an ack for PERSISTED
//! MUST NOT be sent before the [`Durable`] future of the write resolved.
//!
//! # How it works
//!
//! [`GroupCommitter::enqueue`] is synchronous and never blocks: under one
//! short lock it validates the ops, checks map kinds against the committer's
//! registry, assigns a sequence number and puts the request on the writer's
//! queue, so queue order = sequence order = the order in which enqueues
//! returned. The writer task takes the first waiting request, then every
//! request already queued (and, with a `linger`, those arriving within it)
//! until the group holds `max_group_ops` ops. Requests are never split, so
//! each request is atomic. While the writer waits for a commit's fsync, new
//! requests pile up and form the next group: the batching comes from the
//! fsync time itself, no artificial delay is needed.
//!
//! Within a group, ops on the same slot (`(map, key)`, or `(map, tag)` for
//! tombstones) are coalesced: only the last one is committed. The caller
//! stores the winning CRDT state, so the last enqueue of a key holds the
//! newest state, provided callers enqueue a key's states in the order they
//! applied them (enqueue under the same per-key lock as the merge).
//! Coalescing drops only superseded ops, so the committed state equals
//! committing every request one by one (see the `t60` property test). One
//! consequence: when a put is superseded by a delete in the same group, the
//! put does not record its map in the backend's catalog.
//!
//! Each group is one [`PersistenceBackend::commit`]. When it returns `Ok`,
//! every request of the group resolves with its [`Receipt`] and the durable
//! watermark advances to the group's last sequence number. Groups commit one
//! after another in sequence order, so the watermark is prefix-complete:
//! every request with `seq <= watermark` is durable.
//!
//! # Failure: fail the waiters, keep the ops, commit them again
//!
//! When a commit fails, every request of the group fails with
//! [`CommitError::CommitFailed`]: none is reported durable, since the fate
//! of a failed commit is unknown. The committer does not stop. Its caller
//! has already applied those writes in memory, so dropping them would leave
//! memory ahead of the store for good (a later write of another key would
//! become durable while the failed ones never do). Instead the writer keeps
//! the failed group's ops and commits them again, before anything later:
//! with the next group, or on their own after a pause (100 ms, doubling up
//! to [`RETRY_PAUSE_MAX`]) when no request comes. The watermark stays at
//! the last good group until they commit, so it stays prefix-complete, and
//! journal entries keep dense numbers in commit order.
//!
//! While ops are waiting to be committed again, [`GroupCommitter::failure`]
//! says why, so the storage module refuses new writes (they would only pile
//! up behind the failure); the first commit that succeeds clears it. So
//! memory is always the store plus what is queued or being committed again,
//! as in normal operation: a write whose PERSISTED failed may still become
//! durable later (it was never reported durable, nor reported lost), and
//! nothing acknowledged is lost, since acknowledgements follow commits that
//! returned `Ok` only.
//!
//! Committing the same ops again is safe because ops are whole states
//! ("last op per slot wins", see [`PersistenceBackend`]): applied once or
//! twice they give the same rows. A backend that cannot vouch for later
//! commits after a failure (a failed fsync) refuses them itself (redb
//! after an I/O error, the template's log) and may say so in
//! `PersistenceBackend::failure`, in which case the writer stops retrying
//! on a timer and tries again only with the next request.
//!
//! # Negative control
//!
//! [`AckMode::UnsafeBeforeCommit`] acknowledges a write as soon as it is
//! queued, before any commit (the classic write-behind bug: PERSISTED
//! reported when the write was merely handed to the persister). It exists
//! only so that the crash tests can prove they catch an implementation that
//! acks too early; never use it otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hangar_core::{ErrorKind, MapKind, ModuleError};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::backend::{plan_kinds, PersistenceBackend};
use super::entry::{StoreOp, WriteBatch};
use super::error::PersistenceError;
use super::journal::JournalRecord;

mod writer;

pub use writer::{coalesce, RETRY_PAUSE_MAX, RETRY_PAUSE_MIN};
use writer::{Msg, Request};

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod tests;

/// When the committer acknowledges a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckMode {
    /// After the group's commit returned `Ok` (the only correct mode).
    #[default]
    AfterCommit,
    /// BROKEN ON PURPOSE: acknowledges every request as soon as it is
    /// queued, before its commit even starts (its receipt has group 0). A
    /// negative control for crash tests, which MUST catch it; never use it
    /// in a node.
    UnsafeBeforeCommit,
}

/// Hears about every group commit, for metrics (commit latency) and for
/// owners that must react at once to a failure.
///
/// # Contract
/// Called on the writer task, after the commit returned and before the
/// group's requests are answered: implementations MUST be cheap and MUST NOT
/// block or call back into the committer.
pub trait CommitObserver: Send + Sync + 'static {
    /// Group `group` committed `ops` ops (after coalescing) of `requests`
    /// requests in `elapsed` (the backend's `commit` call alone).
    fn committed(&self, group: u64, ops: usize, requests: usize, elapsed: Duration);
    /// Group `group`, carrying every request up to sequence number
    /// `last_seq` not yet durable, failed after `elapsed`; its ops will be
    /// committed again.
    fn failed(&self, group: u64, last_seq: u64, cause: &PersistenceError, elapsed: Duration);
    /// The journal entries of a group that just committed, in sequence
    /// order (called after [`Self::committed`]; groups in commit order, so
    /// every entry is heard once, in sequence order). The default ignores
    /// them.
    fn journaled(&self, records: &[Arc<JournalRecord>]) {
        let _ = records;
    }
}

/// Settings of a [`GroupCommitter`].
#[derive(Clone)]
pub struct GroupCommitConfig {
    /// Most ops in one group (one backend commit). A single request with
    /// more ops is committed alone, unsplit. At least 1.
    pub max_group_ops: usize,
    /// How long the writer waits for more requests after the queue ran dry,
    /// before committing a group that is not full. Zero (the default)
    /// commits at once; the fsync time of the previous group already
    /// gathers requests. A request waits at most one commit in progress
    /// plus `linger` plus its own commit.
    pub linger: Duration,
    /// Queued ops above which [`GroupCommitter::admit`] makes callers wait.
    pub queue_capacity_ops: usize,
    /// When to acknowledge; keep [`AckMode::AfterCommit`].
    pub ack_mode: AckMode,
    /// Told about every commit (none by default).
    pub observer: Option<Arc<dyn CommitObserver>>,
    /// Most event-journal entries kept: a request whose entries take the
    /// journal past it also carries a [`StoreOp::JournalPrune`] of the
    /// oldest ones, in the same commit. 0 keeps every entry.
    pub journal_capacity: u64,
}

impl std::fmt::Debug for GroupCommitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitConfig")
            .field("max_group_ops", &self.max_group_ops)
            .field("linger", &self.linger)
            .field("queue_capacity_ops", &self.queue_capacity_ops)
            .field("ack_mode", &self.ack_mode)
            .field("observer", &self.observer.is_some())
            .field("journal_capacity", &self.journal_capacity)
            .finish()
    }
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_group_ops: 4096,
            linger: Duration::ZERO,
            queue_capacity_ops: 64 * 1024,
            ack_mode: AckMode::AfterCommit,
            observer: None,
            journal_capacity: 0,
        }
    }
}

/// Proof that a request is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The request's sequence number (from 1, in enqueue order).
    pub seq: u64,
    /// The number of the group commit that carried it (from 1).
    pub group: u64,
}

/// Why a request is not (known to be) durable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The request was refused at enqueue (bad name, kind conflict) and
    /// never queued; the committer keeps running.
    #[error("write refused before queuing: {0}")]
    Rejected(PersistenceError),
    /// The group commit that carried the request failed; the request is not
    /// known to be persisted (its fate on disk is unknown). The committer
    /// commits its ops again before anything later.
    #[error("group commit #{group} failed, so this write is not known to be persisted: {cause}")]
    CommitFailed {
        /// The failed group's number.
        group: u64,
        /// The backend's error.
        cause: PersistenceError,
    },
    /// The committer was shut down.
    #[error("persistence is shut down; no more writes are accepted")]
    ShutDown,
    /// Closing the backend at shutdown failed (everything enqueued before
    /// the shutdown was still committed or failed as usual).
    #[error("closing the persistence backend at shutdown failed: {0}")]
    CloseFailed(PersistenceError),
    /// The writer task ended without answering (it panicked).
    #[error("the group-commit writer ended without answering; the write is not persisted")]
    WriterGone,
}

impl From<CommitError> for ModuleError {
    fn from(e: CommitError) -> Self {
        let kind = match &e {
            CommitError::Rejected(p) => return ModuleError::from(p.clone()),
            CommitError::CommitFailed { .. } | CommitError::CloseFailed(_) => ErrorKind::STORAGE,
            CommitError::ShutDown => ErrorKind::SHUT_DOWN,
            CommitError::WriterGone => ErrorKind::INTERNAL,
        };
        ModuleError::new(kind, e.to_string())
    }
}

/// Resolves when the request is durable (or known not to be).
///
/// Dropping it does not cancel the write.
#[derive(Debug)]
pub struct Durable {
    seq: u64,
    rx: oneshot::Receiver<Result<Receipt, CommitError>>,
}

impl Durable {
    /// The request's sequence number; compare with
    /// [`GroupCommitter::watermark`].
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Future for Durable {
    type Output = Result<Receipt, CommitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(CommitError::WriterGone)))
    }
}

/// Counters of a committer, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Requests accepted by `enqueue` (flush barriers included).
    pub requests_enqueued: u64,
    /// Ops accepted by `enqueue`.
    pub ops_enqueued: u64,
    /// Group commits that returned `Ok`.
    pub groups_committed: u64,
    /// Requests acknowledged as durable.
    pub requests_committed: u64,
    /// Ops handed to the backend (after coalescing).
    pub ops_committed: u64,
    /// Ops dropped because a later op in the same group replaced them.
    pub ops_coalesced: u64,
    /// Group commits that failed.
    pub groups_failed: u64,
}

#[derive(Default)]
struct Counters {
    requests_enqueued: AtomicU64,
    ops_enqueued: AtomicU64,
    groups_committed: AtomicU64,
    requests_committed: AtomicU64,
    ops_committed: AtomicU64,
    ops_coalesced: AtomicU64,
    groups_failed: AtomicU64,
}

const RUNNING: u8 = 0;
/// The last commit failed; its ops wait to be committed again.
const FAILING: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

/// What `enqueue` serialises: kind registry, sequence numbers (of requests
/// and of journal entries) and the queue.
struct Intake {
    kinds: HashMap<String, MapKind>,
    next_seq: u64,
    /// The number the next journal entry gets.
    journal_next: u64,
    /// The oldest journal entry kept (== `journal_next` when none).
    journal_first: u64,
    journal_capacity: u64,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Intake {
    /// Numbers the batch's journal entries from `journal_next` and, past
    /// the capacity, appends the prune. Returns the new `(next, first)`,
    /// applied by the caller once the request is queued.
    fn number_journal(&self, batch: &mut WriteBatch) -> (u64, u64) {
        let mut next = self.journal_next;
        for op in &mut batch.ops {
            if let StoreOp::JournalAppend(r) = op {
                Arc::make_mut(r).seq = next;
                next += 1;
            }
        }
        let mut first = self.journal_first;
        if next != self.journal_next
            && self.journal_capacity > 0
            && next - first > self.journal_capacity
        {
            first = next - self.journal_capacity;
            batch.ops.push(StoreOp::JournalPrune { below: first });
        }
        (next, first)
    }
}

/// State shared by the handles and the writer. The queue's sender is not
/// here but in the handles' [`Intake`], so that dropping every handle ends
/// the writer (after it committed what was queued).
struct Shared {
    status: AtomicU8,
    failure: Mutex<Option<Arc<str>>>,
    queued_ops: AtomicUsize,
    space: Notify,
    watermark: watch::Sender<u64>,
    finished: watch::Sender<Option<Result<(), PersistenceError>>>,
    counters: Counters,
    capacity: usize,
    ack_mode: AckMode,
}

/// Handle on a running group-commit writer. Clones share the writer.
///
/// When the last handle is dropped without [`Self::shutdown`], the writer
/// still commits everything queued (the durability futures resolve as
/// usual), then ends and drops the backend without calling `close`.
///
/// While a committer runs it MUST be the only writer of its backend: its
/// kind registry is seeded from the backend at start and kept by enqueue.
#[derive(Clone)]
pub struct GroupCommitter {
    shared: Arc<Shared>,
    intake: Arc<Mutex<Intake>>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Starts the writer task on the current tokio runtime, after reading the
    /// backend's map kinds.
    ///
    /// # Errors
    /// [`CommitError::Rejected`] when `config.max_group_ops` is 0 or there is
    /// no current tokio runtime; the backend's error when `list_maps` fails.
    pub async fn start(
        backend: Arc<dyn PersistenceBackend>,
        config: GroupCommitConfig,
    ) -> Result<Self, CommitError> {
        if config.max_group_ops == 0 {
            return Err(CommitError::Rejected(PersistenceError::InvalidInput(
                "max_group_ops is 0, expected at least 1".into(),
            )));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            CommitError::Rejected(PersistenceError::InvalidInput(format!(
                "GroupCommitter::start needs a tokio runtime: {e}"
            )))
        })?;
        let kinds = backend
            .list_maps()
            .await
            .map_err(CommitError::Rejected)?
            .into_iter()
            .map(|m| (m.name, m.kind))
            .collect();
        let (journal_first, journal_next) = match backend
            .journal_bounds()
            .await
            .map_err(CommitError::Rejected)?
        {
            Some((first, last)) => (first, last + 1),
            None => (1, 1),
        };
        let journal_capacity = config.journal_capacity;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            status: AtomicU8::new(RUNNING),
            failure: Mutex::new(None),
            queued_ops: AtomicUsize::new(0),
            space: Notify::new(),
            watermark: watch::Sender::new(0),
            finished: watch::Sender::new(None),
            counters: Counters::default(),
            capacity: config.queue_capacity_ops,
            ack_mode: config.ack_mode,
        });
        runtime.spawn(writer::writer(backend, rx, Arc::clone(&shared), config));
        let intake = Arc::new(Mutex::new(Intake {
            kinds,
            next_seq: 1,
            journal_next,
            journal_first,
            journal_capacity,
            tx,
        }));
        Ok(Self { shared, intake })
    }

    /// Queues `batch` for the next group commit and returns the future that
    /// resolves when it is durable. Its [`StoreOp::JournalAppend`] entries
    /// are numbered here, under the lock that orders requests, so journal
    /// order is commit order and the numbers are dense (a failed commit's
    /// entries are committed again before any later one); see
    /// `journal_capacity` for pruning. Accepted while a failed commit waits
    /// to be committed again (the request joins it). Never blocks; see [`Self::admit`] for
    /// back-pressure. The batch's ops are committed atomically (never split
    /// across groups). An empty batch is a flush barrier.
    ///
    /// # Errors
    /// [`CommitError::Rejected`] for invalid names or a kind conflict with
    /// the map's recorded kind (nothing queued, committer keeps running);
    /// [`CommitError::ShutDown`] after [`Self::shutdown`].
    pub fn enqueue(&self, mut batch: WriteBatch) -> Result<Durable, CommitError> {
        let mut intake = self.intake.lock();
        if self.shared.status.load(Ordering::Acquire) == SHUTTING_DOWN {
            return Err(CommitError::ShutDown);
        }
        let (journal_next, journal_first) = intake.number_journal(&mut batch);
        let n_ops = batch.ops.len();
        let new_maps =
            plan_kinds(&batch, |m| intake.kinds.get(m).copied()).map_err(CommitError::Rejected)?;
        let seq = intake.next_seq;
        let (done, rx) = oneshot::channel();
        let done = match self.shared.ack_mode {
            AckMode::AfterCommit => Some(done),
            AckMode::UnsafeBeforeCommit => {
                let _ = done.send(Ok(Receipt { seq, group: 0 }));
                None
            }
        };
        self.shared.queued_ops.fetch_add(n_ops, Ordering::AcqRel);
        if intake
            .tx
            .send(Msg::Write(Request {
                seq,
                ops: batch.ops,
                done,
            }))
            .is_err()
        {
            self.shared.queued_ops.fetch_sub(n_ops, Ordering::AcqRel);
            return Err(CommitError::WriterGone);
        }
        intake.next_seq += 1;
        intake.journal_next = journal_next;
        intake.journal_first = journal_first;
        intake.kinds.extend(new_maps);
        drop(intake);
        let c = &self.shared.counters;
        c.requests_enqueued.fetch_add(1, Ordering::Relaxed);
        c.ops_enqueued.fetch_add(n_ops as u64, Ordering::Relaxed);
        Ok(Durable { seq, rx })
    }

    /// [`Self::enqueue`] of a single op.
    ///
    /// # Errors
    /// As [`Self::enqueue`].
    pub fn enqueue_op(&self, op: StoreOp) -> Result<Durable, CommitError> {
        self.enqueue(WriteBatch { ops: vec![op] })
    }

    /// Waits until everything enqueued before this call is durable.
    ///
    /// # Errors
    /// As [`Self::enqueue`], or the failure of a commit it waited for.
    pub async fn flush(&self) -> Result<(), CommitError> {
        self.enqueue(WriteBatch::new())?.await.map(|_| ())
    }

    /// Waits while more than `queue_capacity_ops` ops are queued. Call it
    /// before applying a write (outside any lock) to bound the queue; the
    /// committer itself never refuses a write for being busy.
    pub async fn admit(&self) {
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.queued_ops.load(Ordering::Acquire) <= self.shared.capacity
                || self.shared.status.load(Ordering::Acquire) == SHUTTING_DOWN
            {
                return;
            }
            notified.await;
        }
    }

    /// The highest sequence number up to which every request is durable
    /// (0 before the first commit). Prefix-complete: every request with
    /// `seq <= watermark` is durable.
    #[must_use]
    pub fn watermark(&self) -> watch::Receiver<u64> {
        self.shared.watermark.subscribe()
    }

    /// The sequence number of the last request enqueued (0 before the
    /// first). Once the watermark reaches it, everything enqueued so far is
    /// durable: a barrier that costs no request.
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.intake.lock().next_seq - 1
    }

    /// Ops queued and not yet taken into a group.
    #[must_use]
    pub fn queued_ops(&self) -> usize {
        self.shared.queued_ops.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> CommitStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CommitStats {
            requests_enqueued: l(&c.requests_enqueued),
            ops_enqueued: l(&c.ops_enqueued),
            groups_committed: l(&c.groups_committed),
            requests_committed: l(&c.requests_committed),
            ops_committed: l(&c.ops_committed),
            ops_coalesced: l(&c.ops_coalesced),
            groups_failed: l(&c.groups_failed),
        }
    }

    /// Why the last commit failed, while its ops wait to be committed again
    /// (`None` once a commit succeeded since).
    #[must_use]
    pub fn failure(&self) -> Option<Arc<str>> {
        self.shared.failure.lock().clone()
    }

    /// Stops taking writes, commits everything enqueued before, then closes
    /// the backend. Every clone sees the shutdown; calling it again waits
    /// for the first call to finish and returns its result.
    ///
    /// # Errors
    /// The backend's `close` error; [`CommitError::WriterGone`] if the
    /// writer ended without closing.
    pub async fn shutdown(&self) -> Result<(), CommitError> {
        {
            let intake = self.intake.lock();
            let was = self.shared.status.swap(SHUTTING_DOWN, Ordering::AcqRel);
            if was != SHUTTING_DOWN {
                // Under the intake lock: every enqueue that returned Ok is ahead of this.
                let _ = intake.tx.send(Msg::Shutdown);
            }
        }
        self.shared.space.notify_waiters();
        let mut finished = self.shared.finished.subscribe();
        let result = finished
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CommitError::WriterGone)?
            .clone();
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(CommitError::CloseFailed(e)),
            None => Err(CommitError::WriterGone),
        }
    }
}
