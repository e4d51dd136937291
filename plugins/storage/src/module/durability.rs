//! PERSISTED acknowledgements: an ack waiting for PERSISTED is notified when
//! the group commit that carried its write is durable.
//!
//! One task watches the committer's durable watermark (prefix-complete:
//! every request with `seq <= watermark` is durable) and notifies, in one
//! call, every ack whose sequence number it passed. No task or future is
//! made per write. A write that changed nothing waits for a barrier: the
//! last sequence number enqueued when it was applied, so that it is reported
//! durable only once the write that produced the state it saw is.
//!
//! When the committer fails (fail-stop), every ack still waiting, and every
//! later one, fails with the commit's error.

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_core::module::storage_types::AckId;
use hangar_core::WriteConcern;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::write_ack::WriteAckManager;

/// Raised by the commit observer when a group commit fails.
#[derive(Debug, Default)]
pub(crate) struct FailureSignal {
    cause: Mutex<Option<String>>,
    notify: Notify,
}

impl FailureSignal {
    /// Records the failure (the first one wins) and wakes the tracker.
    pub(crate) fn raise(&self, cause: String) {
        self.cause.lock().get_or_insert(cause);
        self.notify.notify_one();
    }

    fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}

#[derive(Default)]
struct Pending {
    by_seq: BTreeMap<u64, Vec<AckId>>,
    failed: Option<String>,
}

/// Tracks acks waiting for PERSISTED by commit sequence number.
pub(crate) struct Durability {
    pending: Mutex<Pending>,
    watermark: watch::Receiver<u64>,
    acks: Arc<WriteAckManager>,
    failure: Arc<FailureSignal>,
}

impl Durability {
    /// A tracker over a committer's watermark.
    pub(crate) fn new(
        watermark: watch::Receiver<u64>,
        acks: Arc<WriteAckManager>,
        failure: Arc<FailureSignal>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            watermark,
            acks,
            failure,
        })
    }

    fn failure_message(cause: &str) -> String {
        format!("Persistence failed: {cause}; the write is not known to be durable")
    }

    /// Reports `ack` PERSISTED once every request up to `seq` is durable
    /// (at once if it is already).
    pub(crate) fn track(&self, seq: u64, ack: AckId) {
        let mut p = self.pending.lock();
        if let Some(cause) = &p.failed {
            let msg = Self::failure_message(cause);
            drop(p);
            self.acks.fail(ack, &msg);
            return;
        }
        // Read under the lock: `drain` takes the same lock after the
        // watermark moved, so an ack is either notified here or found there.
        if *self.watermark.borrow() >= seq {
            drop(p);
            self.acks.notify(ack, WriteConcern::Persisted);
            return;
        }
        p.by_seq.entry(seq).or_default().push(ack);
    }

    /// Notifies every ack the watermark has passed.
    pub(crate) fn drain(&self) {
        let mark = *self.watermark.borrow();
        let ready = {
            let mut p = self.pending.lock();
            let rest = p.by_seq.split_off(&mark.saturating_add(1));
            std::mem::replace(&mut p.by_seq, rest)
        };
        if !ready.is_empty() {
            let ids: Vec<AckId> = ready.into_values().flatten().collect();
            self.acks.notify_many(&ids, WriteConcern::Persisted);
        }
    }

    /// Fails every waiting ack (and every later one) with `cause`.
    pub(crate) fn fail_all(&self, cause: &str) {
        let waiting = {
            let mut p = self.pending.lock();
            p.failed.get_or_insert_with(|| cause.to_string());
            std::mem::take(&mut p.by_seq)
        };
        let msg = Self::failure_message(cause);
        for id in waiting.into_values().flatten() {
            self.acks.fail(id, &msg);
        }
    }

    /// Acks waiting now (for tests and metrics).
    pub(crate) fn waiting(&self) -> usize {
        self.pending.lock().by_seq.values().map(Vec::len).sum()
    }

    /// The tracker's loop: drains on every watermark move, fails everything
    /// on a commit failure. Ends when the committer is gone.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut mark = self.watermark.clone();
        loop {
            tokio::select! {
                changed = mark.changed() => {
                    if changed.is_err() {
                        self.drain();
                        return;
                    }
                    self.drain();
                }
                () = self.failure.notify.notified() => {
                    // Commits before the failure are durable; ack them first.
                    self.drain();
                    if let Some(cause) = self.failure.cause() {
                        self.fail_all(&cause);
                    }
                }
            }
        }
    }
}
