//! [`Core`]: everything one storage module holds (maps, persistence, live
//! queries, search, acks, tasklets, event pool), how it is built from the
//! configuration, and its lifecycle: start opens the backend and the
//! committer; shutdown drains, flushes and closes.
//!
//! # Lifecycle contract
//!
//! - `start` opens the backend (on the blocking pool: redb may repair its
//!   file after a crash), reads the backend's catalog of maps, starts the
//!   group committer and the background tasks (PERSISTED tracker, garbage
//!   collection, metrics sampling). A second `start` does nothing.
//! - Every call counts as in flight from its entry to its return
//!   ([`Core::enter`]); after shutdown began, new calls fail with
//!   `SHUT_DOWN`.
//! - `shutdown` waits for the calls in flight, stops background tasks and
//!   tasklets (loads in progress are cancelled), flushes the committer and
//!   reports the acks it made durable, flushes full-text indexes, shuts the
//!   committer down (which closes the backend), then resolves every pending
//!   ack per the write-ack manager's shutdown rule. Idempotent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use hangar_core::config::StorageModuleConfig;
use hangar_core::module::storage::StorageDeps;
use hangar_core::module::storage_types::ChangeSink;
use hangar_core::{ErrorKind, ModuleError, ModuleResult};
use hangar_plugin_sdk::PluginRuntime;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::convert::fts_config;
use super::durability::{Durability, FailureSignal};
use super::journal::JournalHub;
use super::manager::StorageManager;
use super::metrics::{CommitHooks, Metrics, REPORT_INTERVAL};
use super::BackendOpener;
use crate::event_pool::{EventPayload, ObjectPool, PoolConfig};
use crate::persistence::{GroupCommitConfig, GroupCommitter, PersistenceBackend};
use crate::query::QueryRegistry;
use crate::search::{FullTextIndex, IndexWriter, WriterOptions};
use crate::settings::{StorageBackendKind, StorageSettings};
use crate::tasklet::{SchedulerConfig, TaskletScheduler};
use crate::write_ack::{AckConfig, WriteAckManager};

/// The open persistence: backend, committer, PERSISTED tracker.
pub(crate) struct Persist {
    pub(crate) backend: Arc<dyn PersistenceBackend>,
    pub(crate) committer: GroupCommitter,
    pub(crate) durability: Arc<Durability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    Stopped,
}

/// The storage module's state, shared by the module, its accessor and its
/// background tasks (which hold it weakly).
pub(crate) struct Core {
    pub(crate) config: StorageModuleConfig,
    pub(crate) deps: StorageDeps,
    pub(crate) runtime: Arc<PluginRuntime>,
    pub(crate) manager: StorageManager,
    pub(crate) registry: QueryRegistry,
    pub(crate) acks: Arc<WriteAckManager>,
    pub(crate) tasklets: TaskletScheduler,
    pub(crate) pool: ObjectPool<EventPayload>,
    pub(crate) fts: HashMap<String, Arc<IndexWriter>>,
    /// Runs the full-text writers (kept alive with them).
    _fts_runtime: Option<Arc<PluginRuntime>>,
    pub(crate) sink: RwLock<Option<Arc<dyn ChangeSink>>>,
    pub(crate) metrics: Metrics,
    pub(crate) backend_label: String,
    /// Where applying partition table changes stands (see `ownership`).
    pub(crate) ownership: super::ownership::Ownership,
    /// The event journal's subscriptions (see `journal`).
    pub(crate) journal: Arc<JournalHub>,
    /// Most journal entries kept (`StorageSettings::journal_capacity`; 0: off).
    journal_capacity: u64,
    persist: OnceLock<Persist>,
    opener: BackendOpener,
    phase: tokio::sync::Mutex<Phase>,
    stopping: AtomicBool,
    inflight: AtomicUsize,
    drained: Notify,
    background: Mutex<Vec<JoinHandle<()>>>,
}

/// A call in flight; shutdown waits until every guard is dropped.
pub(crate) struct CallGuard<'a>(&'a Core);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

pub(crate) fn shut_down(what: &str) -> ModuleError {
    ModuleError::new(
        ErrorKind::SHUT_DOWN,
        format!("storage.{what}: the storage module has shut down"),
    )
}

impl Core {
    /// Builds everything that needs no I/O; the backend opens in `start`.
    ///
    /// # Errors
    /// [`ErrorKind::CONFIG`] for an invalid node id or full-text config
    /// (naming the map and the setting); [`ErrorKind::INTERNAL`] when the
    /// runtime cannot be built.
    pub(crate) fn new(
        config: StorageModuleConfig,
        settings: StorageSettings,
        deps: StorageDeps,
        opener: BackendOpener,
        backend_label: String,
    ) -> ModuleResult<Arc<Self>> {
        hangar_core::hlc::validate_node_id(&config.node_id)
            .map_err(|e| ModuleError::new(ErrorKind::CONFIG, format!("storage.node_id: {e}")))?;
        let mut indexes = Vec::new();
        for (map, cfg) in &settings.full_text_search {
            let index = FullTextIndex::new(fts_config(cfg)).map_err(|e| {
                ModuleError::new(
                    ErrorKind::CONFIG,
                    format!("storage.full_text_search.{map}: {e}"),
                )
            })?;
            indexes.push((map.clone(), index));
        }
        let runtime = PluginRuntime::new(env!("CARGO_PKG_NAME"), settings.worker_threads)?;
        let handle = runtime.handle().clone();
        let fts_runtime = if indexes.is_empty() {
            None
        } else {
            Some(super::fts_runtime::indexing_runtime()?)
        };
        let fts = indexes
            .into_iter()
            .map(|(map, index)| {
                let rt = fts_runtime.as_ref().map_or(&handle, |r| r.handle());
                let w = IndexWriter::spawn(index, WriterOptions::default(), rt);
                (map, Arc::new(w))
            })
            .collect();
        let acks = Arc::new(WriteAckManager::new(
            AckConfig::from_storage_config(&config),
            deps.metrics.clone(),
            &handle,
        ));
        let tasklets = TaskletScheduler::new(SchedulerConfig::from_settings(&settings), &handle);
        let pool = ObjectPool::for_events(PoolConfig::events_from_settings(&settings));
        Ok(Arc::new(Self {
            metrics: Metrics::new(deps.metrics.clone()),
            ownership: super::ownership::Ownership::default(),
            journal: Arc::new(JournalHub::new(
                settings.journal_replay_buffer,
                deps.metrics.clone(),
            )),
            journal_capacity: settings.journal_capacity,
            manager: StorageManager::default(),
            registry: QueryRegistry::default(),
            sink: RwLock::new(None),
            persist: OnceLock::new(),
            phase: tokio::sync::Mutex::new(Phase::NotStarted),
            stopping: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            drained: Notify::new(),
            background: Mutex::new(Vec::new()),
            config,
            deps,
            runtime,
            acks,
            tasklets,
            pool,
            fts,
            _fts_runtime: fts_runtime,
            opener,
            backend_label,
        }))
    }

    /// Counts a call as in flight.
    ///
    /// # Errors
    /// [`ErrorKind::SHUT_DOWN`] once shutdown began.
    pub(crate) fn enter(&self, what: &str) -> ModuleResult<CallGuard<'_>> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = CallGuard(self);
        if self.stopping.load(Ordering::Acquire) {
            return Err(shut_down(what));
        }
        Ok(guard)
    }

    /// The open persistence.
    ///
    /// # Errors
    /// [`ErrorKind::SHUT_DOWN`] before `start` completed.
    pub(crate) fn persist(&self) -> ModuleResult<&Persist> {
        self.persist.get().ok_or_else(|| {
            ModuleError::new(
                ErrorKind::SHUT_DOWN,
                "the storage module is not started: call start() and wait for it first",
            )
        })
    }

    /// The persistence if started (for background work that may run early).
    pub(crate) fn persist_opt(&self) -> Option<&Persist> {
        self.persist.get()
    }

    /// The full-text writer of `map`, if it has search configured.
    pub(crate) fn fts_of(&self, map: &str) -> Option<&Arc<IndexWriter>> {
        self.fts.get(map)
    }

    /// Opens persistence and starts the background tasks; see the module docs.
    ///
    /// # Errors
    /// [`ErrorKind::STORAGE`] when the backend cannot be opened or read;
    /// [`ErrorKind::SHUT_DOWN`] after shutdown.
    pub(crate) async fn start(self: &Arc<Self>) -> ModuleResult<()> {
        let mut phase = self.phase.lock().await;
        match *phase {
            Phase::Running => return Ok(()),
            Phase::Stopped => return Err(shut_down("start")),
            Phase::NotStarted => {}
        }
        let opener = self.opener.clone();
        let config = self.config.clone();
        let label = self.backend_label.clone();
        let backend = tokio::task::spawn_blocking(move || opener(&config))
            .await
            .map_err(|e| {
                ModuleError::internal(format!("storage.start: opening the backend panicked: {e}"))
            })?
            .map_err(|e| {
                ModuleError::storage(format!(
                    "storage.start: cannot open the {label} backend: {e}"
                ))
            })?;
        let catalog = backend.list_maps().await.map_err(|e| {
            ModuleError::storage(format!("storage.start: cannot list the stored maps: {e}"))
        })?;
        let journal_latest = backend
            .journal_bounds()
            .await
            .map_err(|e| {
                ModuleError::storage(format!("storage.start: cannot read the event journal: {e}"))
            })?
            .map_or(0, |(_, last)| last);
        self.journal
            .start(self.journal_capacity, &*backend, journal_latest);
        let failure = Arc::new(FailureSignal::default());
        let committer = GroupCommitter::start(
            backend.clone(),
            GroupCommitConfig {
                observer: Some(Arc::new(CommitHooks::new(
                    self.deps.metrics.clone(),
                    failure.clone(),
                    self.journal.clone(),
                ))),
                journal_capacity: self.journal_capacity,
                ..GroupCommitConfig::default()
            },
        )
        .await
        .map_err(ModuleError::from)?;
        let n_maps = catalog.len();
        self.manager.set_catalog(catalog);
        let durability = Durability::new(committer.watermark(), self.acks.clone(), failure);
        let handle = self.runtime.handle().clone();
        {
            let mut bg = self.background.lock();
            bg.push(handle.spawn(durability.clone().run()));
            bg.push(handle.spawn(super::gc::run(Arc::downgrade(self))));
            bg.push(handle.spawn(report_loop(Arc::downgrade(self))));
        }
        self.metrics.store_failed(false);
        let _ = self.persist.set(Persist {
            backend,
            committer,
            durability,
        });
        *phase = Phase::Running;
        tracing::info!(
            node = %self.config.node_id,
            backend = %self.backend_label,
            maps = n_maps,
            "storage module started"
        );
        Ok(())
    }

    async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Drains, flushes and closes; see the module docs. Idempotent.
    ///
    /// # Errors
    /// [`ErrorKind::STORAGE`] when the backend failed to close (the module is
    /// stopped all the same).
    pub(crate) async fn shutdown(self: &Arc<Self>) -> ModuleResult<()> {
        let mut phase = self.phase.lock().await;
        if *phase == Phase::Stopped {
            return Ok(());
        }
        self.stopping.store(true, Ordering::Release);
        self.wait_drained().await;
        let background: Vec<JoinHandle<()>> = self.background.lock().drain(..).collect();
        for h in &background {
            h.abort();
        }
        self.tasklets.shutdown().await;
        let mut result = Ok(());
        if let Some(p) = self.persist.get() {
            if let Err(e) = p.committer.flush().await {
                tracing::warn!(error = %e, "final flush of the storage module failed");
            }
            p.durability.drain();
            for w in self.fts.values() {
                w.flush();
            }
            if let Err(e) = p.committer.shutdown().await {
                result = Err(ModuleError::from(e));
            }
            p.durability.drain();
        }
        self.acks.shutdown();
        self.pool.clear();
        *phase = Phase::Stopped;
        tracing::info!(node = %self.config.node_id, "storage module stopped");
        result
    }

    /// True once shutdown began.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Samples tasklet and pool figures until the module is gone or stopped.
async fn report_loop(core: Weak<Core>) {
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else {
            return;
        };
        if core.is_stopping() {
            return;
        }
        core.metrics
            .sample(&core.tasklets.stats(), &core.pool.stats());
        if let Some(reason) = core.persist_opt().and_then(|p| p.backend.failure()) {
            tracing::debug!(%reason, "the store is failed");
            core.metrics.store_failed(true);
        }
    }
}

/// The opener of a configured backend kind.
pub(crate) fn configured_opener(
    config: &StorageModuleConfig,
    settings: &StorageSettings,
) -> (BackendOpener, String) {
    let (reset_damaged, check_integrity) = (
        settings.reset_damaged_store,
        settings.check_integrity_on_start,
    );
    match settings.backend {
        StorageBackendKind::Embedded => (
            Arc::new(move |c: &StorageModuleConfig| {
                std::fs::create_dir_all(&c.data_dir).map_err(|e| {
                    crate::persistence::PersistenceError::storage(
                        "open",
                        format!("cannot create {}: {e}", c.data_dir.display()),
                    )
                })?;
                let options = crate::persistence::RedbOptions {
                    reset_damaged,
                    check_integrity,
                    ..crate::persistence::RedbOptions::default()
                };
                let b: Arc<dyn PersistenceBackend> = Arc::new(
                    crate::persistence::RedbBackend::open_with(&c.data_dir, &options)?,
                );
                Ok(b)
            }),
            format!("redb ({})", config.data_dir.display()),
        ),
        StorageBackendKind::Memory => (
            Arc::new(|_: &StorageModuleConfig| {
                let b: Arc<dyn PersistenceBackend> =
                    Arc::new(crate::persistence::MemoryBackend::new());
                Ok(b)
            }),
            "memory".to_string(),
        ),
    }
}
