//! A pool of reusable objects, and its preset for change-event payloads.
//!
//! Fanning out a change means building a [`ChangeEvent`] (map, key, record,
//! origin: several strings and byte buffers) for every applied op, and the
//! sinks only borrow it. Building it in a pooled [`EventPayload`] reuses the
//! buffers of an earlier event instead of allocating new ones: after warm-up,
//! an acquire / fill / release cycle allocates nothing for values that fit
//! the capacity already held (proved by `tests/t20_event_pool_allocs.rs`).
//!
//! # Contract
//!
//! - [`ObjectPool::acquire`] hands out a guard; dropping the guard resets the
//!   object and returns it, so an object is returned at most once by
//!   construction (the legacy pool needed a WeakSet for that).
//! - Reuse is LIFO (the most recently returned object is warmest in cache).
//! - At most `max_size` idle objects are kept; an object returned to a full
//!   pool, or holding more than `max_retained_bytes` of capacity after its
//!   reset, is dropped and counted as `discarded`. So the pool's memory is
//!   bounded by `max_size * max_retained_bytes`.
//! - `initial_size` objects are made up front and count as `created`.
//! - Thread-safe: one short mutex section per acquire and per release (a
//!   `Vec` push or pop and the counters); making, resetting and dropping
//!   objects happen outside it.
//!
//! [`ChangeEvent`]: hangar_core::module::storage_types::ChangeEvent

mod payload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::settings::StorageSettings;
use parking_lot::Mutex;

pub use payload::EventPayload;

/// An object a pool can recycle.
pub trait Reusable: Send + 'static {
    /// Empties the object for its next user, keeping its allocations.
    fn reset(&mut self);
    /// Bytes of heap capacity the object holds (for the retention limit).
    fn retained_bytes(&self) -> usize;
}

/// Settings of an [`ObjectPool`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Name for stats and logs.
    pub name: String,
    /// Most idle objects kept (4096 for events).
    pub max_size: usize,
    /// Objects made up front (128 for events); capped at `max_size`.
    pub initial_size: usize,
    /// An object holding more capacity than this is dropped on release
    /// (64 KiB).
    pub max_retained_bytes: usize,
}

impl PoolConfig {
    /// The storage module's event pool: 4096 kept, 128 made up front.
    #[must_use]
    pub fn events() -> Self {
        Self {
            name: "event-payload".to_string(),
            max_size: 4_096,
            initial_size: 128,
            max_retained_bytes: 64 * 1024,
        }
    }

    /// The event pool sized by the storage module's settings.
    #[must_use]
    pub fn events_from_settings(config: &StorageSettings) -> Self {
        Self {
            max_size: config.event_pool_max,
            initial_size: config.event_pool_initial,
            ..Self::events()
        }
    }
}

/// A snapshot of a pool's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Idle objects held now.
    pub available: usize,
    /// Objects handed out and not yet returned.
    pub in_use: usize,
    /// Objects made (up front and when the pool was empty).
    pub created: u64,
    /// Acquisitions served by an idle object.
    pub reused: u64,
    /// Objects dropped on release (pool full or object oversized).
    pub discarded: u64,
    /// Most idle objects kept.
    pub max_size: usize,
    /// Highest `in_use` seen.
    pub peak: usize,
    /// `reused / (created + reused)`; 0 before anything was made.
    pub reuse_ratio: f64,
}

struct State<T> {
    free: Vec<Box<T>>,
    created: u64,
    reused: u64,
    discarded: u64,
    in_use: usize,
    peak: usize,
}

/// A bounded LIFO pool of reusable objects; see the module contract.
pub struct ObjectPool<T: Reusable> {
    state: Mutex<State<T>>,
    factory: Box<dyn Fn() -> T + Send + Sync>,
    config: PoolConfig,
}

/// The pool of change-event payloads.
pub type EventPool = ObjectPool<EventPayload>;

impl<T: Reusable> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<T: Reusable> ObjectPool<T> {
    /// A pool making objects with `factory`, pre-filled with
    /// `min(initial_size, max_size)` of them.
    pub fn new(config: PoolConfig, factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let initial = config.initial_size.min(config.max_size);
        let mut free = Vec::with_capacity(config.max_size.min(initial.max(16)));
        free.extend((0..initial).map(|_| Box::new(factory())));
        Self {
            state: Mutex::new(State {
                free,
                created: initial as u64,
                reused: 0,
                discarded: 0,
                in_use: 0,
                peak: 0,
            }),
            factory: Box::new(factory),
            config,
        }
    }

    /// An object for the caller's exclusive use, returned (reset) when the
    /// guard drops: the last one returned if any, else a new one.
    pub fn acquire(&self) -> Pooled<'_, T> {
        let item = {
            let mut st = self.state.lock();
            st.in_use += 1;
            st.peak = st.peak.max(st.in_use);
            let item = st.free.pop();
            if item.is_some() {
                st.reused += 1;
            } else {
                st.created += 1;
            }
            item
        };
        let item = item.unwrap_or_else(|| Box::new((self.factory)()));
        Pooled {
            pool: self,
            item: Some(item),
        }
    }

    fn release(&self, mut item: Box<T>) {
        item.reset();
        let oversized = item.retained_bytes() > self.config.max_retained_bytes;
        let rejected = {
            let mut st = self.state.lock();
            st.in_use = st.in_use.saturating_sub(1);
            if oversized || st.free.len() >= self.config.max_size {
                st.discarded += 1;
                Some(item)
            } else {
                st.free.push(item);
                None
            }
        };
        drop(rejected);
    }

    /// The pool's counters now.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let st = self.state.lock();
        let total = st.created + st.reused;
        PoolStats {
            name: self.config.name.clone(),
            available: st.free.len(),
            in_use: st.in_use,
            created: st.created,
            reused: st.reused,
            discarded: st.discarded,
            max_size: self.config.max_size,
            peak: st.peak,
            reuse_ratio: if total == 0 {
                0.0
            } else {
                st.reused as f64 / total as f64
            },
        }
    }

    /// Drops every idle object (shutdown); objects in use are unaffected.
    pub fn clear(&self) {
        let free = std::mem::take(&mut self.state.lock().free);
        drop(free);
    }
}

impl ObjectPool<EventPayload> {
    /// The event-payload pool.
    #[must_use]
    pub fn for_events(config: PoolConfig) -> Self {
        Self::new(config, EventPayload::new)
    }
}

/// An object on loan from an [`ObjectPool`]; derefs to it, and returns it on
/// drop.
pub struct Pooled<'a, T: Reusable> {
    pool: &'a ObjectPool<T>,
    item: Option<Box<T>>,
}

impl<T: Reusable + fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

impl<T: Reusable> Pooled<'_, T> {
    /// Keeps the object for good: it is not returned to the pool (and no
    /// longer counts as in use).
    #[must_use]
    pub fn detach(mut self) -> Box<T> {
        let item = self.item.take().expect("present until drop or detach");
        let mut st = self.pool.state.lock();
        st.in_use = st.in_use.saturating_sub(1);
        item
    }
}

impl<T: Reusable> Deref for Pooled<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_deref().expect("present until drop or detach")
    }
}

impl<T: Reusable> DerefMut for Pooled<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_deref_mut()
            .expect("present until drop or detach")
    }
}

impl<T: Reusable> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.release(item);
        }
    }
}
