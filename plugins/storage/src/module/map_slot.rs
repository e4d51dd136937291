//! One map of the storage manager: its CRDT state behind a per-map lock, and
//! where its lazy load stands.
//!
//! # Invariants
//!
//! - Every change to a map's data happens under `MapSlot::state`, and so do
//!   the persistence enqueue, the query-registry and FTS notifications and
//!   the change-sink call of that change: for one map, all of them see
//!   changes in the same order.
//! - A map's kind never changes: it comes from the backend's catalog for a
//!   persisted map, else from the first op applied to it.
//! - `loaded` becomes true once, when the backend's records have all been
//!   merged (at once for a map the backend does not hold). Reads wait for
//!   it; writes never do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hangar_core::{MapKind, ModuleError};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::partition_set::{HeldPartitions, PartitionSet};
use crate::crdt::{LwwMap, OrMap};

/// The CRDT data of a map.
#[derive(Debug)]
pub(crate) enum MapData {
    /// No kind yet: a new map no op has reached.
    Empty,
    /// A last-write-wins map.
    Lww(LwwMap),
    /// An observed-remove map.
    Or(OrMap),
}

impl MapData {
    /// Empty data of `kind`.
    pub(crate) fn of_kind(kind: MapKind) -> Self {
        match kind {
            MapKind::Lww => Self::Lww(LwwMap::new()),
            MapKind::Or => Self::Or(OrMap::new()),
        }
    }

    /// The map's kind, once it has one.
    pub(crate) fn kind(&self) -> Option<MapKind> {
        match self {
            Self::Empty => None,
            Self::Lww(_) => Some(MapKind::Lww),
            Self::Or(_) => Some(MapKind::Or),
        }
    }

    /// Keys held: LWW records (tombstones included) or OR keys with records.
    pub(crate) fn entries(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Lww(m) => m.len(),
            Self::Or(m) => m.size(),
        }
    }

    /// Gives the data a kind if it has none yet.
    pub(crate) fn settle_kind(&mut self, kind: MapKind) {
        if matches!(self, Self::Empty) {
            *self = Self::of_kind(kind);
        }
    }
}

/// The expiry queue of a map's TTL records: `(expires_at_ms, key)`,
/// earliest first.
#[derive(Debug, Default)]
pub(crate) struct Expiry(BinaryHeap<Reverse<(u64, Arc<str>)>>);

impl Expiry {
    /// Records that `key` holds a record expiring at `millis + ttl`.
    pub(crate) fn push(&mut self, key: &str, millis: u64, ttl_ms: Option<u64>) {
        if let Some(ttl) = ttl_ms {
            self.0
                .push(Reverse((millis.saturating_add(ttl), Arc::from(key))));
        }
    }

    /// Takes the keys of entries expired strictly before `now_ms` (alive at
    /// exactly `millis + ttl`), each once.
    pub(crate) fn take_due(&mut self, now_ms: u64) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.0.peek() {
            if *at >= now_ms {
                break;
            }
            if let Some(Reverse((_, key))) = self.0.pop() {
                due.push(key);
            }
        }
        due.sort_unstable();
        due.dedup();
        due
    }
}

/// What the per-map lock guards.
#[derive(Debug)]
pub(crate) struct MapState {
    /// The CRDT.
    pub(crate) data: MapData,
    /// When records with a TTL expire: `(millis + ttl, key)` for every TTL
    /// record merged, earliest first. Garbage collection pops the due
    /// entries instead of scanning the map; an entry whose record was
    /// replaced since is skipped then (the check reads the current record).
    pub(crate) expiry: Expiry,
    /// Subscriptions whose snapshot is being read in slices: every key
    /// changed meanwhile is noted in each (see `snapshot`).
    pub(crate) captures: Vec<super::snapshot::Capture>,
}

/// Where a map's lazy load stands. The result of a running load is
/// published on the watch channel; a failed load goes back to `Needed`, so
/// the next use retries it.
#[derive(Debug)]
pub(crate) enum LoadPhase {
    /// The backend holds records not merged yet; nobody is loading them.
    Needed,
    /// A load runs; its result arrives here.
    Running(watch::Receiver<Option<Result<(), ModuleError>>>),
    /// Loaded (or there was nothing to load).
    Done,
}

/// One map: name, data, load state.
#[derive(Debug)]
pub(crate) struct MapSlot {
    /// The map's name.
    pub(crate) name: Arc<str>,
    /// The data, behind the per-map lock.
    pub(crate) state: Mutex<MapState>,
    /// The load's progress (its own lock: never held with `state`).
    pub(crate) load: Mutex<LoadPhase>,
    /// The partitions whose persisted records the data reflects: every
    /// partition for a map the backend did not hold, the related ones once
    /// a load finished, then as ownership changes move them (see
    /// `ownership`). A write to a key outside it first merges the key's
    /// persisted entry (see `write_path`).
    pub(crate) held: HeldPartitions,
    loaded: AtomicBool,
}

impl MapSlot {
    /// A slot for a map the backend holds with `kind`: it must be loaded.
    pub(crate) fn persisted(name: &str, kind: MapKind) -> Self {
        Self::build(name, MapData::of_kind(kind), false)
    }

    /// A slot for a map the backend does not hold: loaded from the start.
    pub(crate) fn fresh(name: &str) -> Self {
        Self::build(name, MapData::Empty, true)
    }

    fn build(name: &str, data: MapData, loaded: bool) -> Self {
        Self {
            held: HeldPartitions::new(if loaded {
                PartitionSet::ALL
            } else {
                PartitionSet::EMPTY
            }),
            name: Arc::from(name),
            state: Mutex::new(MapState {
                data,
                expiry: Expiry::default(),
                captures: Vec::new(),
            }),
            load: Mutex::new(if loaded {
                LoadPhase::Done
            } else {
                LoadPhase::Needed
            }),
            loaded: AtomicBool::new(loaded),
        }
    }

    /// True once the backend's records are merged (a cheap check; the
    /// authoritative state is `load`).
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Marks the map loaded; the caller holds `state` so that readers that
    /// see the flag also see every merged record.
    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }
}
