//! The sharded state behind a [`WriteAckManager`](super::WriteAckManager):
//! entries in per-shard hash maps, and every operation on them. Each
//! operation takes one shard's lock, changes the entry, and hands any result
//! to its waiter only after releasing the lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RString;
use hangar_core::error::{ErrorKind, ModuleError, ModuleResult};
use hangar_core::module::storage_types::{AckId, AckResult};
use hangar_core::types::WriteConcern;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::entry::{self, Entry, EntryState, Outcome, Reached, IMMEDIATE_BIT, SEQ_MASK};
use super::metrics::{Label, OutcomeCounters, Reporter};
use super::waiter::{Batch, Claim, WaitCall};
use super::AckConfig;

/// The shared state of a manager.
pub(crate) struct Inner {
    shards: Box<[Shard]>,
    mask: u64,
    next: AtomicU64,
    shut: AtomicBool,
    reporter: Reporter,
    pub(super) config: AckConfig,
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

    pub(super) fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.map.lock().entries.len()).sum()
    }

    pub(super) fn flush_metrics(&self) {
        let tracked = self.tracked();
        self.reporter
            .flush(self.shards.iter().map(|s| &s.counters), tracked);
    }

    /// `WriteAckManager::notify` at `now`.
    pub(super) fn notify_at(&self, ack: AckId, level: WriteConcern, now: Instant) {
        self.resolve_at(ack, now, |e| {
            e.reached.insert(level);
            (e.reached.achieved() >= e.target).then_some(Outcome::Reached)
        });
    }

    /// Settles `ack` at `now` with what `decide` makes of its unresolved
    /// entry (`None`: not yet), or as timed out once its deadline has
    /// passed, then delivers any result outside the shard's lock. Immediate
    /// ids, unknown acks and resolved entries are left alone.
    fn resolve_at(
        &self,
        ack: AckId,
        now: Instant,
        decide: impl FnOnce(&mut Entry) -> Option<Outcome>,
    ) {
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
                let Some(outcome) = decide(e) else {
                    return;
                };
                outcome
            };
            settle(&shard.counters, &mut map.entries, ack, outcome)
        };
        if let Some(d) = delivery {
            d.deliver();
        }
    }

    /// Hands `ack` to slot `slot` of the wait call `call`: gives its result
    /// now when the outcome is known, otherwise records the call's batch as
    /// the waiter and returns the deadline to sleep until. A waiter already
    /// recorded is superseded.
    pub(super) fn claim(&self, ack: AckId, slot: u32, call: &mut WaitCall) -> Claim {
        if ack == 0 {
            return Claim::Ready(entry::unknown(ack));
        }
        if entry::immediate_target(ack).is_some() {
            return Claim::Ready(entry::success(ack, WriteConcern::Memory));
        }
        let shard = self.shard(ack);
        let mut map = shard.map.lock();
        let Some(e) = map.entries.get_mut(&ack) else {
            return Claim::Ready(entry::unknown(ack));
        };
        let deadline = e.deadline;
        let mut superseded = None;
        let known = match std::mem::replace(&mut e.state, EntryState::Pending) {
            EntryState::Resolved(outcome) => Some(outcome),
            old => {
                if let EntryState::Waiting { batch: b, slot: s } = old {
                    superseded = Some((b, s));
                }
                if call.now() >= deadline {
                    shard
                        .counters
                        .count(e.target, e.reached.achieved(), Label::Timeout);
                    Some(Outcome::Timeout)
                } else {
                    e.state = EntryState::Waiting {
                        batch: call.batch(),
                        slot,
                    };
                    None
                }
            }
        };
        let claim = match known {
            Some(outcome) => {
                let e = map.entries.remove(&ack).expect("present under the lock");
                Claim::Ready(e.result(ack, &outcome))
            }
            None => Claim::Wait(deadline),
        };
        drop(map);
        if let Some((old, s)) = superseded {
            old.complete(s, superseded_result(ack));
        }
        claim
    }

    /// The timer of slot `slot` of `batch` fired: resolves `ack` as timed
    /// out if that slot still waits for it.
    pub(super) fn expire(&self, ack: AckId, slot: u32, batch: &Arc<Batch>) {
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
    pub(super) fn sweep(&self, now: Instant) -> usize {
        let retention = self.config.retention;
        // `deadline + retention` at or before `now` (never, if it overflows).
        let expired = |deadline: Instant| deadline.checked_add(retention).is_some_and(|t| t <= now);
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut deliveries = Vec::new();
            {
                let mut map = shard.map.lock();
                match map.min_deadline {
                    Some(d) if expired(d) => {}
                    _ => continue,
                }
                let mut min: Option<Instant> = None;
                let before = map.entries.len();
                map.entries.retain(|&ack, e| {
                    if !expired(e.deadline) {
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

impl Inner {
    /// A fresh state with `config.shards` (rounded up to a power of two)
    /// shards.
    pub(super) fn new(config: AckConfig, reporter: Reporter) -> Self {
        let shards = config.shards.max(1).next_power_of_two();
        Self {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            mask: (shards - 1) as u64,
            next: AtomicU64::new(1),
            shut: AtomicBool::new(false),
            reporter,
            config,
        }
    }

    /// `WriteAckManager::register` at `now`.
    pub(super) fn register_at(
        &self,
        concern: WriteConcern,
        timeout: Option<Duration>,
        now: Instant,
    ) -> ModuleResult<AckId> {
        let inner = self;
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

    /// `WriteAckManager::fail` at `now`.
    pub(super) fn fail_at(&self, ack: AckId, message: &str, now: Instant) {
        self.resolve_at(ack, now, |_| Some(Outcome::Failed(RString::from(message))));
    }

    /// Sets the shut-down flag and resolves every unresolved entry as shut
    /// down; false if it was shut down already.
    pub(super) fn shut_down(&self) -> bool {
        if self.shut.swap(true, Ordering::AcqRel) {
            return false;
        }
        for shard in self.shards.iter() {
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
        true
    }
}

fn shut_down() -> ModuleError {
    ModuleError::new(
        ErrorKind::SHUT_DOWN,
        "write-ack manager is shut down: no new acknowledgements can be registered",
    )
}
