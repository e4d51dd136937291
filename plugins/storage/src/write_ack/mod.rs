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
mod shards;
mod waiter;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hangar_core::config::StorageModuleConfig;
use hangar_core::error::ModuleResult;
use hangar_core::module::services::MetricsSink;
use hangar_core::module::storage_types::{AckId, AckResult};
use hangar_core::types::WriteConcern;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use metrics::Reporter;
use shards::Inner;
use waiter::{Claim, WaitCall};

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
        let inner = Arc::new(Inner::new(config, Reporter::new(metrics)));
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
    /// [`hangar_core::ErrorKind::SHUT_DOWN`] once [`shutdown`](Self::shutdown) was called.
    pub fn register(
        &self,
        concern: WriteConcern,
        timeout: Option<Duration>,
    ) -> ModuleResult<AckId> {
        self.inner.register_at(concern, timeout, Instant::now())
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
        self.inner.fail_at(ack, message, Instant::now());
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
        let mut call = WaitCall::new(acks.len());
        for (slot, &ack) in acks.iter().enumerate() {
            let slot = u32::try_from(slot).expect("a wait covers fewer than 2^32 acks");
            match self.inner.claim(ack, slot, &mut call) {
                Claim::Ready(r) => call.ready(slot, r),
                Claim::Wait(deadline) => call.timer(deadline, ack, slot),
            }
        }
        call.finish(&self.inner)
    }

    /// Resolves every wait in progress (see the module contract), makes
    /// further registrations fail, stops the sweeper and flushes metrics.
    /// Idempotent.
    pub fn shutdown(&self) {
        if !self.inner.shut_down() {
            return;
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
