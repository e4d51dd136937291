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
//! When a group commit fails, every ack waiting for a request it carried
//! (sequence number up to the group's last) fails with the commit's error;
//! so does an ack registered later for such a request while its ops are
//! not yet committed again. Acks of later requests keep waiting: the
//! committer commits the failed ops again, with them.

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
    /// The latest failure: the last sequence number it carried, and why.
    latest: Mutex<Option<(u64, String)>>,
    notify: Notify,
}

impl FailureSignal {
    /// Records that the requests up to `last_seq` failed (failures come in
    /// commit order, so the latest covers the earlier ones) and wakes the
    /// tracker.
    pub(crate) fn raise(&self, last_seq: u64, cause: String) {
        *self.latest.lock() = Some((last_seq, cause));
        self.notify.notify_one();
    }

    fn latest(&self) -> Option<(u64, String)> {
        self.latest.lock().clone()
    }
}

#[derive(Default)]
struct Pending {
    by_seq: BTreeMap<u64, Vec<AckId>>,
    /// The latest failure: requests up to this sequence number failed.
    failed: Option<(u64, String)>,
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
        // Read under the lock: `drain` takes the same lock after the
        // watermark moved, so an ack is either notified here or found there.
        if *self.watermark.borrow() >= seq {
            drop(p);
            self.acks.notify(ack, WriteConcern::Persisted);
            return;
        }
        if let Some((_, cause)) = p.failed.as_ref().filter(|(upto, _)| seq <= *upto) {
            let msg = Self::failure_message(cause);
            drop(p);
            self.acks.fail(ack, &msg);
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

    /// Fails every waiting ack of a request up to `last_seq` (and those
    /// registered later for such requests) with `cause`.
    pub(crate) fn fail_up_to(&self, last_seq: u64, cause: &str) {
        let waiting = {
            let mut p = self.pending.lock();
            p.failed = Some((last_seq, cause.to_string()));
            let later = p.by_seq.split_off(&last_seq.saturating_add(1));
            std::mem::replace(&mut p.by_seq, later)
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

    /// The tracker's loop: drains on every watermark move, fails the acks of
    /// a failed commit's requests. Ends when the committer is gone.
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
                    if let Some((last_seq, cause)) = self.failure.latest() {
                        self.fail_up_to(last_seq, &cause);
                    }
                }
            }
        }
    }
}
