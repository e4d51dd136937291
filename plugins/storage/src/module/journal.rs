//! The event journal: an ordered, durable change log of this node.
//!
//! # Where entries come from
//!
//! The write path (`write_path`) turns every op whose merge changed a key's
//! visible value into a [`JournalRecord`] (PUT, UPDATE or DELETE, with the
//! value before and after) and puts it in the same persistence batch as the
//! key's new state. Client writes, replicated writes and repairs all take
//! that path, so the journal is the node's change log whatever the origin;
//! an op that changes nothing is not an entry. The group committer numbers
//! the entries at enqueue (dense, from 1, continuing after a restart) and
//! prunes the oldest past `journal_capacity`, in the same commit; see
//! `crate::persistence::group_commit`.
//!
//! # Reads and subscriptions
//!
//! Reads go to the backend, so they see exactly the durable entries. Live
//! entries reach subscribers from the committer's observer
//! ([`JournalHub::publish`]), once their commit returned, in sequence
//! order. A subscription with a start sequence replays the durable entries
//! up to the newest published one at registration, while later entries
//! are held back; the held entries follow the replay. At most
//! `journal_replay_buffer` entries are held: past it they are dropped and
//! the replay goes on from the store up to the newest published entry
//! (counted in `hangar_storage_journal_replay_rereads_total`), as often as
//! needed. Each entry reaches a subscription once, in order.
//!
//! A start sequence that retention already pruned is refused with
//! `NOT_FOUND` naming the oldest sequence available (silently starting
//! later would hide a gap from the reader).
//!
//! # When the journal is off
//!
//! With `journal_capacity = 0`, or on a backend whose `keeps_journal` is
//! false, no entry is recorded and every journal call fails with
//! `UNSUPPORTED`, saying which.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use abi_stable::std_types::{ROption, RVec};
use hangar_core::module::journal::{
    JournalEventType, JournalFilter, JournalPage, JournalReadRequest, JournalSink,
};
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::module::storage_types::SubscriptionId;
use hangar_core::{ErrorKind, ModuleError, ModuleResult, RawValue, Timestamp};
use parking_lot::Mutex;

use crate::persistence::{JournalRecord, PersistenceBackend};

/// Most entries one read returns, whatever its limit asks.
pub const MAX_READ_LIMIT: u32 = 1_000;
/// Rows fetched from the backend per step of a scan.
const PAGE: usize = 256;

/// The kind of change between two visible values; `None` when neither has
/// one (nothing visible changed).
#[must_use]
pub(crate) fn change_kind(
    old: Option<&RawValue>,
    new: Option<&RawValue>,
) -> Option<JournalEventType> {
    match (old, new) {
        (None, None) => None,
        (None, Some(_)) => Some(JournalEventType::Put),
        (Some(_), Some(_)) => Some(JournalEventType::Update),
        (Some(_), None) => Some(JournalEventType::Delete),
    }
}

/// Builds the entry of one change, or `None` when nothing visible changed.
pub(crate) fn record(
    map: &str,
    key: &str,
    previous: Option<RawValue>,
    value: Option<RawValue>,
    timestamp: Timestamp,
    node_id: &str,
) -> Option<JournalRecord> {
    let kind = change_kind(previous.as_ref(), value.as_ref())?;
    Some(JournalRecord {
        seq: 0,
        kind,
        map: map.to_string(),
        key: key.to_string(),
        value,
        previous,
        timestamp,
        node_id: node_id.to_string(),
    })
}

struct SubState {
    /// True while the replay runs: live entries are held back.
    replaying: bool,
    held: Vec<Arc<JournalRecord>>,
    /// More live entries arrived during the replay than the hub holds:
    /// they were dropped, and the replay reads them from the store.
    overflowed: bool,
    closed: bool,
}

struct Sub {
    filter: JournalFilter,
    /// Entries below it are not delivered (the start sequence).
    min_seq: u64,
    sink: Arc<dyn JournalSink>,
    state: Mutex<SubState>,
}

impl Sub {
    fn wants(&self, r: &JournalRecord) -> bool {
        r.seq >= self.min_seq && self.filter.matches(&r.map, r.kind)
    }
}

#[derive(Default)]
struct HubInner {
    /// The newest sequence published (0 before any).
    latest: u64,
    subs: HashMap<SubscriptionId, Arc<Sub>>,
}

/// The journal's live side: subscriptions and the newest published
/// sequence. One per module.
pub(crate) struct JournalHub {
    /// Set at start: `None` when the journal is on, else why it is off.
    off: OnceLock<Option<String>>,
    inner: Mutex<HubInner>,
    /// Most live entries held for one replaying subscription
    /// (`StorageSettings::journal_replay_buffer`).
    held_max: usize,
    metrics: Arc<dyn MetricsSink>,
}

fn pruned(from: u64, oldest: u64) -> ModuleError {
    ModuleError::new(
        ErrorKind::NOT_FOUND,
        format!(
            "journal sequence {from} was pruned by retention (storage.journal_capacity); the \
             oldest available is {oldest}"
        ),
    )
}

impl JournalHub {
    /// A hub holding at most `held_max` live entries per replaying
    /// subscription; re-reads after an overflow are counted in `metrics`
    /// (`hangar_storage_journal_replay_rereads_total`).
    pub(crate) fn new(held_max: usize, metrics: Arc<dyn MetricsSink>) -> Self {
        Self {
            off: OnceLock::new(),
            inner: Mutex::new(HubInner::default()),
            held_max: held_max.max(1),
            metrics,
        }
    }

    /// Records at start whether the journal runs, and the newest durable
    /// sequence found in the store.
    pub(crate) fn start(&self, capacity: u64, backend: &dyn PersistenceBackend, latest: u64) {
        let off = if capacity == 0 {
            Some("the event journal is off (storage.journal_capacity = 0)".to_string())
        } else if !backend.keeps_journal() {
            Some(format!(
                "the event journal is off: the {} backend keeps no journal",
                backend.name()
            ))
        } else {
            None
        };
        if let Some(why) = &off {
            tracing::info!(reason = %why, "event journal off");
        }
        let _ = self.off.set(off);
        self.inner.lock().latest = latest;
    }

    /// True once started with the journal on.
    pub(crate) fn is_on(&self) -> bool {
        matches!(self.off.get(), Some(None))
    }

    fn check_on(&self) -> ModuleResult<()> {
        match self.off.get() {
            Some(None) => Ok(()),
            Some(Some(why)) => Err(ModuleError::new(ErrorKind::UNSUPPORTED, why.clone())),
            None => Err(ModuleError::new(
                ErrorKind::SHUT_DOWN,
                "the storage module is not started: call start() and wait for it first",
            )),
        }
    }

    /// Delivers the entries of a commit to every subscription; called by
    /// the committer's observer, in commit order.
    pub(crate) fn publish(&self, records: &[Arc<JournalRecord>]) {
        let mut inner = self.inner.lock();
        if let Some(last) = records.last() {
            inner.latest = inner.latest.max(last.seq);
        }
        for sub in inner.subs.values() {
            let mut st = sub.state.lock();
            if st.closed {
                continue;
            }
            for r in records.iter().filter(|r| sub.wants(r)) {
                if st.replaying {
                    if st.overflowed {
                        // The replay reads it from the store.
                    } else if st.held.len() >= self.held_max {
                        st.held = Vec::new();
                        st.overflowed = true;
                    } else {
                        st.held.push(Arc::clone(r));
                    }
                } else {
                    sub.sink.deliver(&r.to_event());
                }
            }
        }
    }

    /// Stops a subscription; true if it existed.
    pub(crate) fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let removed = self.inner.lock().subs.remove(&id);
        match removed {
            Some(sub) => {
                sub.state.lock().closed = true;
                true
            }
            None => false,
        }
    }

    /// Registers a subscription and replays from `from` (see the module
    /// docs); returns the newest sequence published at registration.
    pub(crate) async fn subscribe(
        &self,
        backend: &dyn PersistenceBackend,
        id: SubscriptionId,
        from: Option<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleResult<u64> {
        self.check_on()?;
        let sub = Arc::new(Sub {
            filter,
            min_seq: from.unwrap_or(0),
            sink,
            state: Mutex::new(SubState {
                replaying: from.is_some(),
                held: Vec::new(),
                overflowed: false,
                closed: false,
            }),
        });
        let latest = {
            let mut inner = self.inner.lock();
            if let Some(old) = inner.subs.insert(id, Arc::clone(&sub)) {
                old.state.lock().closed = true;
            }
            inner.latest
        };
        let Some(from) = from else {
            return Ok(latest);
        };
        // Replays `cursor..=upto` from the store, then hands over to the
        // held entries (all newer than `upto`, every one published since
        // `upto` was read). When they overflowed, the replay goes on from
        // the store up to the newest published entry, and again, until a
        // pass ends with the held entries complete.
        let (mut cursor, mut upto) = (from, latest);
        loop {
            if let Err(e) = replay(backend, &sub, cursor, upto).await {
                let mut inner = self.inner.lock();
                if inner.subs.get(&id).is_some_and(|s| Arc::ptr_eq(s, &sub)) {
                    inner.subs.remove(&id);
                }
                sub.state.lock().closed = true;
                return Err(e);
            }
            let mut st = sub.state.lock();
            if st.overflowed && !st.closed {
                st.overflowed = false;
                drop(st);
                self.metrics
                    .counter("hangar_storage_journal_replay_rereads_total", &[], 1.0);
                // Entries published from here on are held again; those up
                // to `upto` are durable and replayed from the store.
                cursor = upto + 1;
                upto = self.inner.lock().latest;
                continue;
            }
            let held = std::mem::take(&mut st.held);
            if !st.closed {
                for r in held.iter().filter(|r| r.seq > upto) {
                    sub.sink.deliver(&r.to_event());
                }
            }
            st.replaying = false;
            return Ok(latest);
        }
    }

    /// A range read; see `StorageModule::journal_read`.
    pub(crate) async fn read(
        &self,
        backend: &dyn PersistenceBackend,
        request: &JournalReadRequest,
    ) -> ModuleResult<JournalPage> {
        self.check_on()?;
        let limit = request.limit.clamp(1, MAX_READ_LIMIT) as usize;
        let mut cursor = request.from_sequence;
        let mut events = Vec::new();
        let mut has_more = false;
        let mut first_page = true;
        'scan: loop {
            let rows = backend
                .read_journal(cursor, PAGE)
                .await
                .map_err(|e| ModuleError::storage(format!("reading the journal: {e}")))?;
            if first_page && request.from_sequence > 0 {
                if let Some(r) = rows.first() {
                    if r.seq > request.from_sequence {
                        return Err(pruned(request.from_sequence, r.seq));
                    }
                }
            }
            first_page = false;
            let n = rows.len();
            for r in rows {
                cursor = r.seq + 1;
                if !request.filter.matches(&r.map, r.kind) {
                    continue;
                }
                if events.len() == limit {
                    has_more = true;
                    break 'scan;
                }
                events.push(r.to_event());
            }
            if n < PAGE {
                break;
            }
        }
        let bounds = backend
            .journal_bounds()
            .await
            .map_err(|e| ModuleError::storage(format!("reading the journal: {e}")))?;
        let (oldest, latest) = bounds.unwrap_or((0, 0));
        Ok(JournalPage {
            events: RVec::from(events),
            has_more,
            oldest,
            latest,
        })
    }

    /// Live subscriptions, for stats.
    pub(crate) fn subscriptions(&self) -> usize {
        self.inner.lock().subs.len()
    }
}

/// Delivers the durable entries `from..=latest` that the subscription
/// wants; fails when `from` was pruned.
async fn replay(
    backend: &dyn PersistenceBackend,
    sub: &Sub,
    from: u64,
    latest: u64,
) -> ModuleResult<()> {
    let mut cursor = from;
    let mut first_page = true;
    while cursor <= latest {
        let rows = backend
            .read_journal(cursor, PAGE)
            .await
            .map_err(|e| ModuleError::storage(format!("replaying the journal: {e}")))?;
        if first_page && from > 0 {
            if let Some(r) = rows.first() {
                if r.seq > from {
                    return Err(pruned(from, r.seq));
                }
            }
        }
        first_page = false;
        let n = rows.len();
        let st = sub.state.lock();
        if st.closed {
            return Ok(());
        }
        for r in rows {
            if r.seq > latest {
                return Ok(());
            }
            cursor = r.seq + 1;
            if sub.wants(&r) {
                sub.sink.deliver(&r.to_event());
            }
        }
        drop(st);
        if n < PAGE {
            break;
        }
    }
    Ok(())
}

/// The start sequence of a subscription request (`RNone` = live only).
pub(crate) fn start_of(from: &ROption<u64>) -> Option<u64> {
    from.as_ref().into_option().copied()
}
