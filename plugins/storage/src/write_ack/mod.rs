//! The write-ack manager: tracks each write's progress through the
//! write-concern levels and resolves the callers waiting for it.
//!
//! It implements `StorageModule::notify_acks` / `await_acks`: `apply`
//! registers an ack per op ([`WriteAckManager::register`]), the storage
//! module notifies APPLIED and PERSISTED, the cluster side REPLICATED
//! ([`WriteAckManager::notify_many`]), and the host awaits
//! ([`WriteAckManager::wait`]).
//!
//! # Contract
//!
//! - **All levels below.** A level counts as reached only when it and every
//!   level below it were notified (core `WriteConcern`). Notifications may
//!   arrive in any order and any number of times; `achieved` is the highest
//!   level `L` such that every level FIRE_AND_FORGET..=`L` was notified. So
//!   PERSISTED without REPLICATED does NOT satisfy a PERSISTED (or
//!   REPLICATED) target; it still satisfies APPLIED. (The legacy server took
//!   the maximum notified level instead.)
//! - **Registration** records FIRE_AND_FORGET and MEMORY at once; a
//!   FIRE_AND_FORGET or MEMORY target is therefore resolved at registration
//!   and costs no tracking at all (the id says so, see `entry`).
//! - **Deadline.** A notification counts only if it arrives before the ack's
//!   deadline (registration time + timeout). An ack whose target is not
//!   reached by then resolves `success == false`, `achieved` = the level
//!   reached before the deadline, error `Timeout: achieved X, requested Y`.
//! - **First resolution wins.** Reached, timed out, failed or shut down: once
//!   resolved, later notifications and `fail` calls change nothing.
//! - **Waiting.** `wait` gives one result per id, in order; each resolves as
//!   soon as its ack resolves. An ack is meant to be awaited once: a second
//!   `wait` takes the result over (the earlier call gets an error result for
//!   it), and an ack already handed to a wait is unknown afterwards. Unknown
//!   ids (never registered, already awaited, forgotten, 0) give a failed
//!   result that says so; they never hang.
//! - **Forgetting.** An entry (waited on or not, resolved or not) is removed by
//!   the first sweep that runs at or after `deadline + retention`; sweeps run
//!   every `sweep_interval`. So an ack nobody waits for is forgotten between
//!   `deadline + retention` and `deadline + retention + sweep_interval` (plus
//!   scheduling delay), and memory stays bounded by the registration rate
//!   times `timeout + retention + sweep_interval`. A live wait never needs the
//!   sweep: its own timer resolves it at the deadline.
//! - **Shutdown** resolves every ack being waited for with
//!   `success = (achieved >= requested)` and otherwise
//!   `Shutdown: achieved X, requested Y`; unresolved acks not yet waited for
//!   get the same result when they are; `register` fails with
//!   `ErrorKind::SHUT_DOWN` from then on.
//!
//! # Design
//!
//! Entries live in a power-of-two number of shards, each a `parking_lot`
//! mutex over a hash map keyed by the (sequential) id; the shard is picked by
//! the id's low bits, so there is no global lock on the hot path. Timers are
//! the waiters' own: a wait call sleeps until the earliest deadline it still
//! needs (tokio's timer wheel), and one background sweeper per manager
//! forgets abandoned entries and flushes metrics. No task is spawned per ack.

mod entry;
mod metrics;
mod waiter;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use abi_stable::std_types::RString;
use hangar_core::config::StorageModuleConfig;
use hangar_core::error::{ErrorKind, ModuleError, ModuleResult};
use hangar_core::module::services::MetricsSink;
use hangar_core::module::storage_types::{AckId, AckResult};
use hangar_core::types::WriteConcern;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use entry::{Entry, EntryState, Outcome, Reached, IMMEDIATE_BIT, SEQ_MASK};
use metrics::{Label, OutcomeCounters, Reporter};
use waiter::{Batch, Timer};

/// Settings of a [`WriteAckManager`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckConfig {
    /// Timeout of a registration that names none (5 s).
    pub default_timeout: Duration,
    /// How long past its deadline an entry is kept for a late `wait` (10 s).
    pub retention: Duration,
    /// How often abandoned entries are swept and metrics flushed (1 s).
    pub sweep_interval: Duration,
    /// Number of shards, rounded up to a power of two (64).
    pub shards: usize,
}

impl Default for AckConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_millis(5_000),
            retention: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            shards: 64,
        }
    }
}

impl AckConfig {
    /// The defaults with the storage module's configured ack timeout.
    #[must_use]
    pub fn from_storage_config(config: &StorageModuleConfig) -> Self {
        Self {
            default_timeout: Duration::from_millis(config.write_ack_timeout_ms),
            ..Self::default()
        }
    }
}

/// Tracks pending write acknowledgements by write-concern level; see the
/// module documentation for the contract.
///
/// Dropping the manager stops its sweeper; waits still pending then end at
/// their deadlines.
pub struct WriteAckManager {
    inner: Arc<Inner>,
    stop: Arc<Notify>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for WriteAckManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAckManager")
            .field("config", &self.inner.config)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl WriteAckManager {
    /// A manager whose sweeper runs on `runtime`, reporting to `metrics`.
    #[must_use]
    pub fn new(config: AckConfig, metrics: Arc<dyn MetricsSink>, runtime: &Handle) -> Self {
        let shards = config.shards.max(1).next_power_of_two();
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            mask: (shards - 1) as u64,
            next: AtomicU64::new(1),
            shut: AtomicBool::new(false),
            reporter: Reporter::new(metrics),
            config,
        });
        let stop = Arc::new(Notify::new());
        let sweeper = runtime.spawn(run_sweeper(
            Arc::downgrade(&inner),
            stop.clone(),
            inner.config.sweep_interval,
        ));
        Self {
            inner,
            stop,
            sweeper: Mutex::new(Some(sweeper)),
        }
    }

    /// Registers a write that wants `concern`, waiting at most `timeout`
    /// (`None`: the configured default). MEMORY is recorded as reached at
    /// once, so FIRE_AND_FORGET and MEMORY targets are resolved already.
    ///
    /// The id is non-zero and unique for this manager.
    ///
    /// # Errors
    /// [`ErrorKind::SHUT_DOWN`] once [`shutdown`](Self::shutdown) was called.
    pub fn register(
        &self,
        concern: WriteConcern,
        timeout: Option<Duration>,
    ) -> ModuleResult<AckId> {
        let inner = &*self.inner;
        let seq = inner.next.fetch_add(1, Ordering::Relaxed) & SEQ_MASK;
        let shard = inner.shard(seq);
        if concern <= WriteConcern::Memory {
            if inner.shut.load(Ordering::Acquire) {
                return Err(shut_down());
            }
            shard
                .counters
                .count(concern, WriteConcern::Memory, Label::Success);
            return Ok(entry::immediate_id(seq, concern));
        }
        let now = Instant::now();
        let timeout = timeout.unwrap_or(inner.config.default_timeout);
        // A timeout too large for the clock waits "forever" (a century).
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let mut map = shard.map.lock();
        // Checked under the shard lock: shutdown drains each shard after
        // setting the flag, so no entry slips in behind the drain.
        if inner.shut.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        map.entries.insert(
            seq,
            Entry {
                target: concern,
                reached: Reached::AT_REGISTRATION,
                deadline,
                state: EntryState::Pending,
            },
        );
        map.min_deadline = Some(map.min_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(seq)
    }

    /// Records that the write behind `ack` reached `level`. Unknown ids and
    /// repeated notifications are ignored; so is a notification at or after
    /// the ack's deadline (the ack then resolves as timed out).
    pub fn notify(&self, ack: AckId, level: WriteConcern) {
        self.inner.notify_at(ack, level, Instant::now());
    }

    /// [`notify`](Self::notify) for many acks at one instant.
    pub fn notify_many(&self, acks: &[AckId], level: WriteConcern) {
        let now = Instant::now();
        for &ack in acks {
            self.inner.notify_at(ack, level, now);
        }
    }

    /// Resolves `ack` as failed with `message` (e.g. `Persistence failed:
    /// disk full`), unless it was resolved already. Unknown ids are ignored.
    pub fn fail(&self, ack: AckId, message: &str) {
        if ack == 0 || ack & IMMEDIATE_BIT != 0 {
            return;
        }
        let now = Instant::now();
        let shard = self.inner.shard(ack);
        let delivery = {
            let mut map = shard.map.lock();
            let Some(e) = map.entries.get(&ack) else {
                return;
            };
            if matches!(e.state, EntryState::Resolved(_)) {
                return;
            }
            let outcome = if now >= e.deadline {
                Outcome::Timeout
            } else {
                Outcome::Failed(RString::from(message))
            };
            settle(&shard.counters, &mut map.entries, ack, outcome)
        };
        if let Some(d) = delivery {
            d.deliver();
        }
    }

    /// Waits for `acks`: one result per id, in order, each as soon as its ack
    /// resolves (target reached, deadline passed, failed, shut down) or at
    /// once for ids that are unknown or resolved already.
    ///
    /// The state is read when `wait` is called; the returned future only
    /// collects. It needs a tokio runtime with time enabled to be polled if
    /// any ack is still unresolved (the plugin's runtime); if it is dropped
    /// early, its acks stay tracked until a later `wait` or the sweep.
    pub fn wait(&self, acks: &[AckId]) -> impl Future<Output = Vec<AckResult>> + Send + 'static {
        let now = Instant::now();
        let batch = Arc::new(Batch::new(acks.len()));
        let mut timers = Vec::new();
        for (slot, &ack) in acks.iter().enumerate() {
            let slot = u32::try_from(slot).expect("a wait covers fewer than 2^32 acks");
            if let Some(deadline) = self.inner.claim(ack, slot, &batch, now) {
                timers.push(Timer {
                    deadline,
                    ack,
                    slot,
                });
            }
        }
        waiter::wait_batch(self.inner.clone(), waiter::AbandonOnDrop(batch), timers)
    }

    /// Resolves every wait in progress (see the module contract), makes
    /// further registrations fail, stops the sweeper and flushes metrics.
    /// Idempotent.
    pub fn shutdown(&self) {
        let inner = &*self.inner;
        if inner.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        for shard in inner.shards.iter() {
            let mut deliveries = Vec::new();
            {
                let mut map = shard.map.lock();
                map.entries.retain(|&ack, e| {
                    if matches!(e.state, EntryState::Resolved(_)) {
                        return true;
                    }
                    shard
                        .counters
                        .count(e.target, e.reached.achieved(), Label::Shutdown);
                    if !e.has_live_waiter() {
                        e.state = EntryState::Resolved(Outcome::Shutdown);
                        return true;
                    }
                    let result = e.result(ack, &Outcome::Shutdown);
                    if let EntryState::Waiting { batch, slot } = &e.state {
                        deliveries.push(Delivery {
                            batch: batch.clone(),
                            slot: *slot,
                            result,
                        });
                    }
                    false
                });
            }
            for d in deliveries {
                d.deliver();
            }
        }
        self.stop.notify_one();
        self.flush_metrics();
    }

    /// Entries held: unresolved acks and resolved ones not yet awaited.
    /// Acks resolved at registration are never held.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.inner.tracked()
    }

    /// Reports outcome counts to the metrics sink now (the sweeper does so
    /// every `sweep_interval`).
    pub fn flush_metrics(&self) {
        self.inner.flush_metrics();
    }
}

impl Drop for WriteAckManager {
    fn drop(&mut self) {
        if let Some(h) = self.sweeper.lock().take() {
            h.abort();
        }
    }
}

fn shut_down() -> ModuleError {
    ModuleError::new(
        ErrorKind::SHUT_DOWN,
        "write-ack manager is shut down: no new acknowledgements can be registered",
    )
}

/// The shared state.
pub(crate) struct Inner {
    shards: Box<[Shard]>,
    mask: u64,
    next: AtomicU64,
    shut: AtomicBool,
    reporter: Reporter,
    config: AckConfig,
}

/// One shard, on its own cache lines.
#[repr(align(128))]
struct Shard {
    map: Mutex<ShardMap>,
    counters: OutcomeCounters,
}

impl Shard {
    fn new() -> Self {
        Self {
            map: Mutex::new(ShardMap {
                entries: HashMap::default(),
                min_deadline: None,
            }),
            counters: OutcomeCounters::new(),
        }
    }
}

type Entries = HashMap<AckId, Entry, BuildHasherDefault<IdHasher>>;

struct ShardMap {
    entries: Entries,
    /// A lower bound of the entries' deadlines (None: no entries since the
    /// last sweep); lets a sweep skip shards with nothing old enough.
    min_deadline: Option<Instant>,
}

/// Hashes the sequential ids with a folded 128-bit multiply: every id bit
/// reaches the low bits the table indexes with (ids of one shard share their
/// low bits, so the identity would not do).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let m = u128::from(n ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A result to hand to a waiting batch once the shard lock is released.
struct Delivery {
    batch: Arc<Batch>,
    slot: u32,
    result: AckResult,
}

impl Delivery {
    fn deliver(self) {
        self.batch.complete(self.slot, self.result);
    }
}

/// Resolves the entry `ack` (which MUST be unresolved) with `outcome`:
/// counts it, then either removes it for its waiter or keeps the outcome for
/// a later `wait`.
fn settle(
    counters: &OutcomeCounters,
    entries: &mut Entries,
    ack: AckId,
    outcome: Outcome,
) -> Option<Delivery> {
    let e = entries.get_mut(&ack)?;
    let label = match outcome {
        Outcome::Reached => Label::Success,
        Outcome::Timeout => Label::Timeout,
        Outcome::Failed(_) => Label::Failed,
        Outcome::Shutdown => Label::Shutdown,
    };
    counters.count(e.target, e.reached.achieved(), label);
    if e.has_live_waiter() {
        let e = entries.remove(&ack)?;
        let result = e.result(ack, &outcome);
        let EntryState::Waiting { batch, slot } = e.state else {
            unreachable!("checked just above")
        };
        return Some(Delivery {
            batch,
            slot,
            result,
        });
    }
    e.state = EntryState::Resolved(outcome);
    None
}

impl Inner {
    fn shard(&self, seq: u64) -> &Shard {
        &self.shards[(seq & self.mask) as usize]
    }

    fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.map.lock().entries.len()).sum()
    }

    fn flush_metrics(&self) {
        let tracked = self.tracked();
        self.reporter
            .flush(self.shards.iter().map(|s| &s.counters), tracked);
    }

    fn notify_at(&self, ack: AckId, level: WriteConcern, now: Instant) {
        if ack == 0 || ack & IMMEDIATE_BIT != 0 {
            return;
        }
        let shard = self.shard(ack);
        let delivery = {
            let mut map = shard.map.lock();
            let Some(e) = map.entries.get_mut(&ack) else {
                return;
            };
            if matches!(e.state, EntryState::Resolved(_)) {
                return;
            }
            let outcome = if now >= e.deadline {
                Outcome::Timeout
            } else {
                e.reached.insert(level);
                if e.reached.achieved() < e.target {
                    return;
                }
                Outcome::Reached
            };
            settle(&shard.counters, &mut map.entries, ack, outcome)
        };
        if let Some(d) = delivery {
            d.deliver();
        }
    }

    /// Hands `ack` to slot `slot` of `batch`: fills the slot now when the
    /// outcome is known, otherwise records the waiter and returns the
    /// deadline to sleep until. A waiter already recorded is superseded.
    fn claim(&self, ack: AckId, slot: u32, batch: &Arc<Batch>, now: Instant) -> Option<Instant> {
        if ack == 0 {
            batch.complete(slot, entry::unknown(ack));
            return None;
        }
        if entry::immediate_target(ack).is_some() {
            batch.complete(slot, entry::success(ack, WriteConcern::Memory));
            return None;
        }
        let shard = self.shard(ack);
        let mut map = shard.map.lock();
        let Some(e) = map.entries.get_mut(&ack) else {
            drop(map);
            batch.complete(slot, entry::unknown(ack));
            return None;
        };
        let deadline = e.deadline;
        let mut superseded = None;
        let known = match std::mem::replace(&mut e.state, EntryState::Pending) {
            EntryState::Resolved(outcome) => Some(outcome),
            old => {
                if let EntryState::Waiting { batch: b, slot: s } = old {
                    superseded = Some((b, s));
                }
                if now >= deadline {
                    shard
                        .counters
                        .count(e.target, e.reached.achieved(), Label::Timeout);
                    Some(Outcome::Timeout)
                } else {
                    e.state = EntryState::Waiting {
                        batch: batch.clone(),
                        slot,
                    };
                    None
                }
            }
        };
        let (result, deadline) = match known {
            Some(outcome) => {
                let e = map.entries.remove(&ack).expect("present under the lock");
                (Some(e.result(ack, &outcome)), None)
            }
            None => (None, Some(deadline)),
        };
        drop(map);
        if let Some((old, s)) = superseded {
            old.complete(s, superseded_result(ack));
        }
        if let Some(r) = result {
            batch.complete(slot, r);
        }
        deadline
    }

    /// The timer of slot `slot` of `batch` fired: resolves `ack` as timed
    /// out if that slot still waits for it.
    fn expire(&self, ack: AckId, slot: u32, batch: &Arc<Batch>) {
        let shard = self.shard(ack);
        let delivery = {
            let mut map = shard.map.lock();
            let Some(e) = map.entries.get(&ack) else {
                return;
            };
            match &e.state {
                EntryState::Waiting { batch: b, slot: s }
                    if Arc::ptr_eq(b, batch) && *s == slot => {}
                _ => return,
            }
            settle(&shard.counters, &mut map.entries, ack, Outcome::Timeout)
        };
        if let Some(d) = delivery {
            d.deliver();
        }
    }

    /// Forgets every entry whose `deadline + retention` is at or before
    /// `now`; returns how many.
    fn sweep(&self, now: Instant) -> usize {
        let retention = self.config.retention;
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut deliveries = Vec::new();
            {
                let mut map = shard.map.lock();
                match map.min_deadline {
                    Some(d) if d + retention <= now => {}
                    _ => continue,
                }
                let mut min: Option<Instant> = None;
                let before = map.entries.len();
                map.entries.retain(|&ack, e| {
                    if e.deadline + retention > now {
                        min = Some(min.map_or(e.deadline, |m| m.min(e.deadline)));
                        return true;
                    }
                    match &e.state {
                        EntryState::Resolved(_) => {}
                        EntryState::Pending => {
                            shard
                                .counters
                                .count(e.target, e.reached.achieved(), Label::Timeout);
                        }
                        EntryState::Waiting { batch, slot } => {
                            shard
                                .counters
                                .count(e.target, e.reached.achieved(), Label::Timeout);
                            deliveries.push(Delivery {
                                batch: batch.clone(),
                                slot: *slot,
                                result: e.result(ack, &Outcome::Timeout),
                            });
                        }
                    }
                    false
                });
                forgotten += before - map.entries.len();
                map.min_deadline = min;
            }
            for d in deliveries {
                d.deliver();
            }
        }
        forgotten
    }
}

fn superseded_result(ack: AckId) -> AckResult {
    entry::failure(
        ack,
        WriteConcern::FireAndForget,
        format!("Ack {ack} was awaited again by another call, which takes its result"),
    )
}

/// Sweeps and flushes every `interval` until stopped or the manager is gone.
async fn run_sweeper(inner: Weak<Inner>, stop: Arc<Notify>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.notified() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.sweep(Instant::now());
        inner.flush_metrics();
    }
}
