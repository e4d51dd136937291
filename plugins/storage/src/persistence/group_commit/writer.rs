//! The writer task of the group committer: gathers queued requests into
//! groups, coalesces each group, commits it in one backend call and answers
//! every request of it. See the parent module for the protocol.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{CommitError, CommitObserver, GroupCommitConfig, Receipt, Shared, FAILING, RUNNING};
use crate::persistence::backend::PersistenceBackend;
use crate::persistence::entry::{StoreOp, WriteBatch};
use crate::persistence::error::PersistenceError;
use crate::persistence::journal::JournalRecord;

/// One enqueued batch on its way to a group commit.
pub(super) struct Request {
    pub(super) seq: u64,
    pub(super) ops: Vec<StoreOp>,
    /// `None` when the request was already acknowledged (the unsafe mode).
    pub(super) done: Option<oneshot::Sender<Result<Receipt, CommitError>>>,
}

/// What the writer's queue carries.
pub(super) enum Msg {
    /// A batch (or, when empty, a flush barrier).
    Write(Request),
    /// Commit everything ahead of this, close the backend, stop.
    Shutdown,
}

/// Drops every op that a later op of the same slot replaces, keeping the
/// order of the others. Returns the kept ops and how many were dropped.
#[must_use]
pub fn coalesce(ops: Vec<StoreOp>) -> (Vec<StoreOp>, usize) {
    let mut keep = vec![true; ops.len()];
    {
        let mut seen = HashSet::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate().rev() {
            if !seen.insert(op.slot()) {
                keep[i] = false;
            }
        }
    }
    let dropped = keep.iter().filter(|k| !**k).count();
    let kept = ops
        .into_iter()
        .zip(keep)
        .filter_map(|(op, k)| k.then_some(op))
        .collect();
    (kept, dropped)
}

/// Takes the next group: `first`, then what is queued (or arrives within
/// `linger`) up to `max_ops`. A message that does not fit is returned as the
/// carry for the next group.
async fn gather(
    first: Request,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    config: &GroupCommitConfig,
) -> (Vec<Request>, Option<Msg>) {
    let mut ops = first.ops.len();
    let mut group = vec![first];
    let deadline = Instant::now() + config.linger;
    while ops < config.max_group_ops {
        let next = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if config.linger.is_zero() {
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                }
            }
        };
        match next {
            Msg::Write(r) if ops + r.ops.len() <= config.max_group_ops => {
                ops += r.ops.len();
                group.push(r);
            }
            other => return (group, Some(other)),
        }
    }
    (group, None)
}

/// The ops of groups whose commit failed, committed again (first) with the
/// next group, or alone after a pause.
struct Redo {
    /// The failed groups' ops, coalesced, in sequence order.
    ops: Vec<StoreOp>,
    /// The last sequence number they carry: once they commit, every
    /// request up to it is durable.
    last_seq: u64,
    /// Commits of them that failed in a row.
    attempts: u32,
}

/// How long the writer waits for a request before committing the redo
/// alone: 100 ms after the first failure, doubling up to [`RETRY_PAUSE_MAX`].
fn retry_pause(attempts: u32) -> Duration {
    RETRY_PAUSE_MIN
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(RETRY_PAUSE_MAX)
}

/// The first pause before a failed group is committed again on its own.
pub const RETRY_PAUSE_MIN: Duration = Duration::from_millis(100);
/// The longest pause between two commits of a failed group's ops.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

pub(super) async fn writer(
    backend: Arc<dyn PersistenceBackend>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    shared: Arc<Shared>,
    config: GroupCommitConfig,
) {
    let mut carry: Option<Msg> = None;
    let mut group_no: u64 = 0;
    let mut redo: Option<Redo> = None;
    loop {
        // A backend failed for good (`failure()`) is not retried on a timer;
        // its next commit comes with the next request.
        let pause = redo
            .as_ref()
            .filter(|_| backend.failure().is_none())
            .map(|r| retry_pause(r.attempts));
        let msg = match (carry.take(), pause) {
            (Some(m), _) => Some(m),
            (None, None) => match rx.recv().await {
                Some(m) => Some(m),
                // Every handle dropped and the queue is drained. The backend
                // is not closed: dropping it releases it (and a pending
                // redo, which no one was told is durable, is dropped).
                None => return,
            },
            (None, Some(pause)) => match tokio::time::timeout(pause, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                Ok(None) => return,
                // Nothing came: commit the redo on its own.
                Err(_) => None,
            },
        };
        let group = match msg {
            Some(Msg::Write(first)) => {
                let (group, next) = gather(first, &mut rx, &config).await;
                carry = next;
                group
            }
            Some(Msg::Shutdown) => break,
            None => Vec::new(),
        };
        let taken: usize = group.iter().map(|r| r.ops.len()).sum();
        shared.queued_ops.fetch_sub(taken, Ordering::AcqRel);
        shared.space.notify_waiters();

        group_no += 1;
        let observer = config.observer.as_deref();
        let attempts = redo.as_ref().map_or(0, |r| r.attempts);
        match commit_group(&*backend, &shared, redo.take(), group, group_no, observer).await {
            Ok(()) => {
                if attempts > 0 {
                    tracing::warn!(
                        group = group_no,
                        failed_attempts = attempts,
                        "group commit succeeded again; persistence recovered"
                    );
                    *shared.failure.lock() = None;
                    let _ = shared.status.compare_exchange(
                        FAILING,
                        RUNNING,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
            Err((cause, mut again)) => {
                again.attempts = attempts + 1;
                let cause: Arc<str> = Arc::from(cause.to_string());
                if again.attempts == 1 {
                    tracing::error!(group = group_no, %cause, "group commit failed; its writes fail, new writes are refused and the commit is retried until it succeeds");
                } else {
                    tracing::debug!(group = group_no, attempts = again.attempts, %cause, "group commit failed again");
                }
                *shared.failure.lock() = Some(cause);
                let _ = shared.status.compare_exchange(
                    RUNNING,
                    FAILING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                shared.space.notify_waiters();
                redo = Some(again);
            }
        }
    }
    // Shutdown: everything enqueued before it has been committed (or
    // failed); a pending redo was tried once more with the last group.
    drop(rx);
    let result = backend.close().await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "closing the persistence backend failed");
    }
    shared.finished.send_replace(Some(result));
}

/// Commits one group (after the ops of `redo`, if any) and answers its
/// requests. On failure, returns the cause and every op it tried, to be
/// committed again.
async fn commit_group(
    backend: &dyn PersistenceBackend,
    shared: &Shared,
    redo: Option<Redo>,
    group: Vec<Request>,
    group_no: u64,
    observer: Option<&dyn CommitObserver>,
) -> Result<(), (PersistenceError, Redo)> {
    let redo_last = redo.as_ref().map_or(0, |r| r.last_seq);
    let last_seq = group.last().map_or(redo_last, |r| r.seq).max(redo_last);
    let mut ops = redo.map(|r| r.ops).unwrap_or_default();
    ops.reserve(group.iter().map(|r| r.ops.len()).sum());
    let mut waiters = Vec::with_capacity(group.len());
    for r in group {
        ops.extend(r.ops);
        waiters.push((r.seq, r.done));
    }
    let journaled: Vec<Arc<JournalRecord>> = match observer {
        Some(_) => ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::JournalAppend(r) => Some(Arc::clone(r)),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let (ops, dropped) = coalesce(ops);
    let n_ops = ops.len();
    let started = Instant::now();
    let result = if ops.is_empty() {
        // Only flush barriers: every earlier group is already durable.
        Ok(())
    } else {
        // A clone only while a redo is pending would be enough; commits
        // take the batch by value, and a failed one must be tried again.
        backend.commit(WriteBatch { ops: ops.clone() }).await
    };
    let elapsed = started.elapsed();
    let c = &shared.counters;
    if let Some(o) = observer {
        match &result {
            Ok(()) if n_ops > 0 => {
                o.committed(group_no, n_ops, waiters.len(), elapsed);
                if !journaled.is_empty() {
                    o.journaled(&journaled);
                }
            }
            Ok(()) => {}
            Err(cause) => o.failed(group_no, last_seq, cause, elapsed),
        }
    }
    match result {
        Ok(()) => {
            shared.watermark.send_replace(last_seq);
            c.groups_committed.fetch_add(1, Ordering::Relaxed);
            c.ops_committed.fetch_add(n_ops as u64, Ordering::Relaxed);
            c.ops_coalesced.fetch_add(dropped as u64, Ordering::Relaxed);
            c.requests_committed
                .fetch_add(waiters.len() as u64, Ordering::Relaxed);
            for (seq, done) in waiters {
                if let Some(done) = done {
                    let _ = done.send(Ok(Receipt {
                        seq,
                        group: group_no,
                    }));
                }
            }
            Ok(())
        }
        Err(cause) => {
            c.groups_failed.fetch_add(1, Ordering::Relaxed);
            for done in waiters.into_iter().filter_map(|(_, d)| d) {
                let _ = done.send(Err(CommitError::CommitFailed {
                    group: group_no,
                    cause: cause.clone(),
                }));
            }
            Err((
                cause,
                Redo {
                    ops,
                    last_seq,
                    attempts: 0,
                },
            ))
        }
    }
}
