//! [`MemoryBackend`]: a real in-memory implementation of the backend
//! contract, for tests and for nodes that need no durability.
//!
//! Its "durability" is the life of its [`MemoryStore`]: data lives as long
//! as any handle to the store does, in this process only. Unlike the legacy
//! memory adapter, `close` does not clear anything: it closes the handle,
//! and [`MemoryBackend::open`] on the same store shows the data again, which
//! is how tests model a restart. Values are owned copies, never shared
//! references to the caller's objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_core::MapKind;
use parking_lot::Mutex;

use super::backend::{plan_kinds, PersistResult, PersistenceBackend};
use super::entry::{LoadedMap, StoreOp, StoredEntry, StoredMap, WriteBatch};
use super::error::PersistenceError;
use super::journal::JournalRecord;

#[derive(Debug)]
struct MemMap {
    kind: MapKind,
    entries: BTreeMap<String, StoredEntry>,
    tombstones: BTreeSet<String>,
}

/// The data behind one or more [`MemoryBackend`] handles. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    maps: Arc<Mutex<BTreeMap<String, MemMap>>>,
    /// The event journal; locked after `maps` (commits hold both).
    journal: Arc<Mutex<BTreeMap<u64, Arc<JournalRecord>>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// An open handle on a [`MemoryStore`] that implements
/// [`PersistenceBackend`]. Commits are atomic (one lock, validated before
/// any change) and visible to every handle of the store at once.
#[derive(Debug)]
pub struct MemoryBackend {
    store: MemoryStore,
    closed: AtomicBool,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend over a fresh, empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::open(&MemoryStore::new())
    }

    /// A new open handle on `store` (a "restart" in tests).
    #[must_use]
    pub fn open(store: &MemoryStore) -> Self {
        Self {
            store: store.clone(),
            closed: AtomicBool::new(false),
        }
    }

    /// The store this handle reads and writes.
    #[must_use]
    pub fn memory_store(&self) -> &MemoryStore {
        &self.store
    }

    /// Runs `f` on the data under the store lock, unless this handle is closed.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, MemMap>) -> PersistResult<T>,
    ) -> PersistResult<T> {
        let mut maps = self.store.maps.lock();
        // Checked under the lock: a close that returned is seen by every later call.
        if self.closed.load(Ordering::Acquire) {
            return Err(PersistenceError::Closed);
        }
        f(&mut maps)
    }

    fn commit_now(&self, batch: &WriteBatch) -> PersistResult<()> {
        self.with(|maps| {
            let new_maps = plan_kinds(batch, |m| maps.get(m).map(|mm| mm.kind))?;
            for (name, kind) in new_maps {
                maps.insert(
                    name,
                    MemMap {
                        kind,
                        entries: BTreeMap::new(),
                        tombstones: BTreeSet::new(),
                    },
                );
            }
            let mut journal = self.store.journal.lock();
            for op in &batch.ops {
                match op {
                    StoreOp::JournalAppend(r) => {
                        journal.insert(r.seq, Arc::clone(r));
                    }
                    StoreOp::JournalPrune { below } => {
                        let kept = journal.split_off(below);
                        *journal = kept;
                    }
                    StoreOp::Put { map, key, entry } => {
                        if let Some(m) = maps.get_mut(map) {
                            m.entries.insert(key.clone(), entry.clone());
                        }
                    }
                    StoreOp::Delete { map, key } => {
                        if let Some(m) = maps.get_mut(map) {
                            m.entries.remove(key);
                        }
                    }
                    StoreOp::AddOrTombstone { map, tag } => {
                        if let Some(m) = maps.get_mut(map) {
                            m.tombstones.insert(tag.clone());
                        }
                    }
                    StoreOp::RemoveOrTombstone { map, tag } => {
                        if let Some(m) = maps.get_mut(map) {
                            m.tombstones.remove(tag);
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

fn ready<'a, T: Send + 'a>(r: PersistResult<T>) -> BoxFuture<'a, PersistResult<T>> {
    Box::pin(std::future::ready(r))
}

impl PersistenceBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        ready(self.commit_now(&batch))
    }

    fn keeps_journal(&self) -> bool {
        true
    }

    fn read_journal(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, PersistResult<Vec<JournalRecord>>> {
        ready(self.with(|_| {
            Ok(self
                .store
                .journal
                .lock()
                .range(from..)
                .take(limit)
                .map(|(_, r)| JournalRecord::clone(r))
                .collect())
        }))
    }

    fn journal_bounds(&self) -> BoxFuture<'_, PersistResult<Option<(u64, u64)>>> {
        ready(self.with(|_| {
            let j = self.store.journal.lock();
            Ok(j.keys().next().copied().zip(j.keys().next_back().copied()))
        }))
    }

    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        ready(self.with(|maps| {
            Ok(maps
                .get(map)
                .map_or_else(LoadedMap::default, |m| LoadedMap {
                    kind: Some(m.kind),
                    entries: m
                        .entries
                        .iter()
                        .map(|(k, e)| (k.clone(), e.clone()))
                        .collect(),
                    or_tombstones: m.tombstones.iter().cloned().collect(),
                }))
        }))
    }

    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        ready(self.with(|maps| {
            let Some(m) = maps.get(map) else {
                return Ok(Vec::new());
            };
            let wanted: BTreeSet<&String> = keys.iter().collect();
            Ok(wanted
                .into_iter()
                .filter_map(|k| m.entries.get(k).map(|e| (k.clone(), e.clone())))
                .collect())
        }))
    }

    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        ready(self.with(|maps| {
            Ok(maps
                .get(map)
                .map(|m| m.entries.keys().cloned().collect())
                .unwrap_or_default())
        }))
    }

    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        ready(self.with(|maps| {
            Ok(maps
                .get(map)
                .map(|m| m.tombstones.iter().cloned().collect())
                .unwrap_or_default())
        }))
    }

    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        ready(self.with(|maps| {
            Ok(maps
                .iter()
                .map(|(name, m)| StoredMap {
                    name: name.clone(),
                    kind: m.kind,
                })
                .collect())
        }))
    }

    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        ready(self.with(|_| Ok(())))
    }

    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        let _guard = self.store.maps.lock();
        self.closed.store(true, Ordering::Release);
        ready(Ok(()))
    }
}
