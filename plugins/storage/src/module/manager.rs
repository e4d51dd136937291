//! The storage manager: the table of maps, and their lazy loading.
//!
//! # Contract
//!
//! - A map the backend holds is loaded on first use: the first user starts
//!   ONE load and every concurrent user waits for that same load.
//! - Loading reads the backend (`load_map`), keeps only the keys the
//!   partition view says are related to this node (the OR tombstones are
//!   always kept: they name tags, not keys), and merges the records into the
//!   live map in tasklet slices under the configured time budget, so writes
//!   to the map are held up at most one slice.
//! - Writes made during a load are applied at once; they do not wait (see
//!   `write_path` for how they stay correct on disk).
//! - A load error reaches every waiter as `ErrorKind::STORAGE` (or the
//!   tasklet scheduler's error) and is not remembered: the next use starts
//!   a new load.
//! - When a load finishes, live queries on the map are refreshed against
//!   its records and its size and load time go to metrics; the partitions
//!   it kept become the map's held set (see `ownership` for how they move
//!   afterwards).
//! - A map's kind comes from the backend's catalog (read at start) when the
//!   backend holds it, else from the first op applied to it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use hangar_core::{partition_of, ErrorKind, MapKind, ModuleError, ModuleResult};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::core::Core;
use super::load::{LoadReport, LoadTasklet};
use super::map_slot::{LoadPhase, MapSlot};
use super::partition_set::PartitionSet;
use super::read_path::decoded_rows;
use crate::persistence::StoredMap;
use crate::query::Row;

/// The table of maps and the backend's catalog.
#[derive(Default)]
pub(crate) struct StorageManager {
    slots: RwLock<HashMap<Arc<str>, Arc<MapSlot>>>,
    catalog: RwLock<HashMap<String, MapKind>>,
}

impl StorageManager {
    /// Records the maps the backend holds (read once at start).
    pub(crate) fn set_catalog(&self, maps: Vec<StoredMap>) {
        let mut c = self.catalog.write();
        c.extend(maps.into_iter().map(|m| (m.name, m.kind)));
    }

    fn get(&self, name: &str) -> Option<Arc<MapSlot>> {
        self.slots.read().get(name).cloned()
    }

    /// The slot of `name`, created if needed (a write, a subscription).
    pub(crate) fn slot(&self, name: &str) -> Arc<MapSlot> {
        if let Some(s) = self.get(name) {
            return s;
        }
        let mut slots = self.slots.write();
        if let Some(s) = slots.get(name) {
            return s.clone();
        }
        let slot = Arc::new(match self.catalog.read().get(name) {
            Some(kind) => MapSlot::persisted(name, *kind),
            None => MapSlot::fresh(name),
        });
        slots.insert(slot.name.clone(), slot.clone());
        slot
    }

    /// The slot of `name` if the map exists (in memory or in the backend);
    /// `None` for a map nobody has written.
    pub(crate) fn existing(&self, name: &str) -> Option<Arc<MapSlot>> {
        if let Some(s) = self.get(name) {
            return Some(s);
        }
        if self.catalog.read().contains_key(name) {
            return Some(self.slot(name));
        }
        None
    }

    /// Every map name known (held or persisted), sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.catalog.read().keys().cloned().collect();
        names.extend(self.slots.read().keys().map(|k| k.to_string()));
        names.into_iter().collect()
    }

    /// The slots that exist now (loaded or not).
    pub(crate) fn slots(&self) -> Vec<Arc<MapSlot>> {
        self.slots.read().values().cloned().collect()
    }
}

impl Core {
    /// Starts the load of `slot` if it needs one and none runs; returns the
    /// channel the load's result arrives on, or `None` when loaded.
    pub(crate) fn start_load(
        self: &Arc<Self>,
        slot: &Arc<MapSlot>,
    ) -> Option<watch::Receiver<Option<Result<(), ModuleError>>>> {
        let mut phase = slot.load.lock();
        match &*phase {
            LoadPhase::Done => None,
            LoadPhase::Running(rx) => Some(rx.clone()),
            LoadPhase::Needed => {
                let (tx, rx) = watch::channel(None);
                *phase = LoadPhase::Running(rx.clone());
                drop(phase);
                let core = Arc::clone(self);
                let slot = Arc::clone(slot);
                self.runtime.handle().spawn(async move {
                    let result = core.load(&slot).await;
                    tx.send_replace(Some(result));
                });
                Some(rx)
            }
        }
    }

    /// Waits until `slot` is loaded, starting the load if needed.
    ///
    /// # Errors
    /// The load's error ([`ErrorKind::STORAGE`] for the backend); the next
    /// call retries.
    pub(crate) async fn ensure_loaded(self: &Arc<Self>, slot: &Arc<MapSlot>) -> ModuleResult<()> {
        let Some(mut rx) = self.start_load(slot) else {
            return Ok(());
        };
        let result = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                ModuleError::internal(format!(
                    "the load of map {:?} ended without a result",
                    slot.name
                ))
            })?
            .clone();
        result.unwrap_or_else(|| Err(ModuleError::internal("load result missing")))
    }

    /// Runs one load of `slot` to the end and records its outcome in the
    /// slot (done, or needed again after an error).
    async fn load(self: &Arc<Self>, slot: &Arc<MapSlot>) -> Result<(), ModuleError> {
        let started = Instant::now();
        let result = self.read_and_merge(slot).await;
        match &result {
            Ok((report, related)) => {
                let now = self.deps.clock.wall_millis();
                let size = {
                    let st = slot.state.lock();
                    slot.held.set(*related);
                    slot.set_loaded();
                    if self.registry.has_subscriptions(&slot.name) {
                        let rows = decoded_rows(&st.data, now);
                        self.registry.refresh(
                            &slot.name,
                            rows.iter().map(|(k, v)| Row::live(k, v)),
                            now,
                        );
                    }
                    st.data.entries()
                };
                *slot.load.lock() = LoadPhase::Done;
                self.metrics
                    .loaded(&slot.name, started.elapsed().as_secs_f64(), report.entries);
                self.metrics.map_size(&slot.name, size);
                tracing::debug!(map = %slot.name, ?report, elapsed = ?started.elapsed(), "map loaded");
                Ok(())
            }
            Err(e) => {
                *slot.load.lock() = LoadPhase::Needed;
                self.metrics.load_failed(&slot.name);
                if self
                    .persist_opt()
                    .is_some_and(|p| p.backend.failure().is_some())
                {
                    self.metrics.store_failed(true);
                }
                tracing::warn!(map = %slot.name, error = %e, "loading a map failed; the next use retries");
                Err(e.clone())
            }
        }
    }

    /// Reads and merges the map's related records; returns what it did and
    /// the partitions it filtered by (what the map then holds).
    async fn read_and_merge(
        self: &Arc<Self>,
        slot: &Arc<MapSlot>,
    ) -> ModuleResult<(LoadReport, PartitionSet)> {
        let persist = self.persist()?;
        let loaded = persist.backend.load_map(&slot.name).await.map_err(|e| {
            ModuleError::storage(format!(
                "loading map {:?} from the backend failed: {e}",
                slot.name
            ))
        })?;
        if let Some(kind) = loaded.kind {
            let st = slot.state.lock();
            if st.data.kind().is_some_and(|k| k != kind) {
                return Err(ModuleError::new(
                    ErrorKind::CONFLICT,
                    format!(
                        "map {:?} is stored as a {kind:?} map but is held as a {:?} map",
                        slot.name,
                        st.data.kind()
                    ),
                ));
            }
        }
        let related = PartitionSet::related(&*self.deps.partitions);
        let entries: Vec<_> = loaded
            .entries
            .into_iter()
            .filter(|(k, _)| related.contains(partition_of(k)))
            .collect();
        let tasklet = LoadTasklet::new(
            slot.clone(),
            self.deps.clock.clone(),
            self.fts_of(&slot.name).cloned(),
            loaded.or_tombstones,
            entries,
        );
        let report = self
            .tasklets
            .schedule(tasklet)
            .map_err(ModuleError::from)?
            .await
            .map_err(ModuleError::from)?;
        if report.refused > 0 {
            tracing::error!(
                map = %slot.name,
                refused = report.refused,
                "records with timestamps the node's clock refuses were not loaded (see the errors above)"
            );
        }
        Ok((report, related))
    }
}
