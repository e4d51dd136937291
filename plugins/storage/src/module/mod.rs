//! [`DefaultStorage`]: Hangar's default `StorageModule`.
//!
//! CRDT maps (LWW and OR) loaded lazily from a persistence backend (redb by
//! default, memory, or any [`PersistenceBackend`] through
//! [`create_with_backend`]), group-committed writes with PERSISTED acks on
//! durable commits, live queries, full-text search, write acks, tasklets,
//! pooled change events, Merkle sync and metrics. The trait's contract is in
//! `hangar_core::module::storage`.
//!
//! # Layout
//!
//! - `mod.rs` (this file): the public constructors and the `StorageModule`
//!   impl, which only moves each call onto the module's own runtime.
//! - `core`: [`Core`](core::Core), what one module holds; start and shutdown.
//! - `manager`: the table of maps and their lazy loading.
//! - `map_slot`: one map (kind, data behind its lock, load state).
//! - `load`: merging stored records in tasklet slices.
//! - `write_path`: `apply` (merge, persist, fan out, acks).
//! - `write_fetch`: the stored entries a write merges first (map loading,
//!   keys of partitions not held).
//! - `read_path`: reads, queries, live queries, search, Merkle.
//! - `merkle_share`: a map's Merkle tree restricted to some partitions (the
//!   cluster sums the owners' shares).
//! - `snapshot`: query snapshots of large maps in tasklet slices.
//! - `accessor`: what the cluster module gets.
//! - `ownership`: loading and releasing partitions when the partition
//!   table changes.
//! - `partition_set`: partition bit sets; what each map holds.
//! - `durability`: PERSISTED acks from the committer's durable watermark.
//! - `gc`: TTL expiry and tombstone pruning.
//! - `journal`: the event journal's reads and subscriptions (its entries
//!   are written by `write_path` and numbered by the group committer).
//! - `fts_runtime`: the low-priority thread full-text indexing runs on.
//! - `metrics`: metric names and reporting.
//! - `convert`: core types to and from the engines' types.
//! - `testing`: a lone node's partition view and deps, and write batches,
//!   for tests, benches and embedders that run the module without a cluster.
//!
//! # Backends and PERSISTED
//!
//! With `backend = "embedded"` the maps live in one redb file in
//! `config.data_dir` (created if missing). With `backend = "memory"` they
//! live in an in-memory store that dies with the module: PERSISTED then
//! means "committed to that store", which survives nothing but a reload of
//! a map within the process. A custom backend gives whatever its contract
//! gives (the persistence conformance suite checks it).
//!
//! # Invariants
//!
//! What this module promises is listed, with the tests that enforce each
//! promise, in `INVARIANTS.md` (I3, I4, I20 to I25);
//! `tests/tests/t01_repository.rs` fails when a cited test is gone.
//!
//! # Legacy defects fixed (against the legacy TopGun server)
//!
//! - The winning record is persisted, never the incoming op.
//! - Writes during a load are merged, never lost to a map swap.
//! - A load error is surfaced and retried on the next use.
//! - OR tombstones are loaded whatever the partition filter says.
//! - `ttlMs` is persisted.
//! - A subscription's snapshot is taken under the map's lock with its
//!   registration.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::StorageModuleConfig;

use crate::settings::StorageSettings;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::journal::{JournalFilter, JournalPage, JournalReadRequest, JournalSink};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{
    AckId, AckResult, ApplyBatch, ChangeSink, KeyRecord, MapInfo, MerkleRequest, MerkleResponse,
    OpOutcome, QueryRequest, QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::module::{ModuleFuture, ModuleInfo};
use hangar_core::types::{MapKind, WriteConcern};
use hangar_core::ModuleResult;

use crate::persistence::{CommitStats, PersistResult, PersistenceBackend};
use crate::tasklet::TaskletStats;

mod accessor;
mod convert;
mod core;
mod digests;
mod durability;
mod fts_runtime;
mod gc;
mod journal;
mod load;
mod manager;
mod map_slot;
mod merge;
mod merkle_share;
mod metrics;
mod ownership;
mod partition_set;
mod read_path;
mod snapshot;
pub mod testing;
mod write_fetch;
mod write_path;

pub use gc::{GcReport, GC_INTERVAL, PRUNE_INTERVAL, TOMBSTONE_MAX_AGE_MS};
pub use journal::MAX_READ_LIMIT as JOURNAL_MAX_READ_LIMIT;
pub use metrics::STORE_FAILED;

/// Opens the persistence backend of a module. Called once, by `start`, on
/// the module's runtime (in its blocking pool), so a backend that captures
/// the current runtime at open captures the module's.
pub type BackendOpener =
    Arc<dyn Fn(&StorageModuleConfig) -> PersistResult<Arc<dyn PersistenceBackend>> + Send + Sync>;

/// The default storage module. Cheap to clone (a handle on shared state).
#[derive(Clone)]
pub struct DefaultStorage(Arc<core::Core>);

/// Counters of a running module, for benchmarks and diagnostics.
#[derive(Debug, Clone)]
pub struct StorageStats {
    /// The group committer's counters (`None` before start).
    pub commits: Option<CommitStats>,
    /// The tasklet scheduler's counters.
    pub tasklets: TaskletStats,
    /// The event payload pool's counters.
    pub event_pool: crate::event_pool::PoolStats,
    /// Acks tracked by the write-ack manager.
    pub acks_tracked: usize,
    /// Acks waiting for a durable commit.
    pub acks_waiting_durable: usize,
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Event-journal subscriptions.
    pub journal_subscriptions: usize,
}

impl DefaultStorage {
    /// Builds the module with the backend its configuration names.
    ///
    /// # Errors
    /// [`hangar_core::ErrorKind::CONFIG`] for an invalid node id, settings
    /// that do not decode as [`StorageSettings`] (naming the key and what was
    /// expected) or an invalid full-text configuration (naming the map and
    /// setting);
    /// [`hangar_core::ErrorKind::INTERNAL`] if its runtime cannot be built.
    pub fn new(config: StorageModuleConfig, deps: StorageDeps) -> ModuleResult<Self> {
        let settings: StorageSettings = config.settings.decode()?;
        let (opener, label) = core::configured_opener(&config, &settings);
        Ok(Self(core::Core::new(
            config, settings, deps, opener, label,
        )?))
    }

    /// Builds the module over the backend `opener` opens at start (the
    /// configuration's `backend` and `data_dir` are then not used by the
    /// module; the opener may read them). `label` names the backend in logs
    /// and errors.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_backend(
        config: StorageModuleConfig,
        deps: StorageDeps,
        label: &str,
        opener: BackendOpener,
    ) -> ModuleResult<Self> {
        let settings: StorageSettings = config.settings.decode()?;
        Ok(Self(core::Core::new(
            config,
            settings,
            deps,
            opener,
            label.to_string(),
        )?))
    }

    /// Runs garbage collection now: TTL expiry, and with `prune` tombstone
    /// pruning (both also run on their own schedule once started).
    ///
    /// # Errors
    /// As `apply`.
    pub fn collect_garbage(&self, prune: bool) -> ModuleFuture<GcReport> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.collect_garbage", async move {
                let _g = core.enter("collect_garbage")?;
                core.collect_garbage(prune).await
            })
    }

    /// A snapshot of the module's counters.
    #[must_use]
    pub fn stats(&self) -> StorageStats {
        let c = &self.0;
        StorageStats {
            commits: c.persist_opt().map(|p| p.committer.stats()),
            tasklets: c.tasklets.stats(),
            event_pool: c.pool.stats(),
            acks_tracked: c.acks.tracked(),
            acks_waiting_durable: c.persist_opt().map_or(0, |p| p.durability.waiting()),
            subscriptions: c.registry.subscription_count(),
            journal_subscriptions: c.journal.subscriptions(),
        }
    }

    /// The latest partition-table version (as passed to
    /// `StorageAccessor::partitions_changed`) whose changes are applied to
    /// every loaded map: newly held partitions loaded, released ones
    /// dropped from memory. 0 before any. It stays behind while a backend
    /// error keeps a map from being brought in line (the next change
    /// retries). For tests and diagnostics: poll it to know when an
    /// ownership change has taken effect.
    #[must_use]
    pub fn partitions_applied(&self) -> u64 {
        self.0.partitions_applied()
    }

    /// True once `map`'s load finished (or it needed none); false for a map
    /// being loaded or not yet touched. For tests and diagnostics.
    #[must_use]
    pub fn is_loaded(&self, map: &str) -> bool {
        self.0.manager.existing(map).is_some_and(|s| s.is_loaded())
    }
}

/// Builds the default storage module (the plugin's constructor).
///
/// # Errors
/// As [`DefaultStorage::new`].
pub fn create(
    config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    Ok(Arc::new(DefaultStorage::new(config, deps)?))
}

/// Builds the default storage module over a backend of the caller's: what a
/// plugin that swaps in another store (PostgreSQL, a file format of its
/// own) calls from its constructor. The backend MUST pass the
/// persistence-backend contract suite of `hangar-testkit`
/// (`testkit/src/persistence/`).
///
/// # Errors
/// As [`DefaultStorage::new`].
pub fn create_with_backend(
    config: StorageModuleConfig,
    deps: StorageDeps,
    label: &str,
    opener: BackendOpener,
) -> ModuleResult<Arc<dyn StorageModule>> {
    Ok(Arc::new(DefaultStorage::with_backend(
        config, deps, label, opener,
    )?))
}

impl StorageModule for DefaultStorage {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            &format!(
                "CRDT maps (LWW, OR) persisted in {}; live queries, full-text search, write acks",
                self.0.backend_label
            ),
        )
    }

    fn start(&self) -> ModuleFuture<()> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.start", async move { core.start().await })
    }

    fn shutdown(&self) -> ModuleFuture<()> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.shutdown", async move { core.shutdown().await })
    }

    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.apply", async move {
            let _g = core.enter("apply")?;
            Ok(core.apply_batch(&batch, true).await?.into())
        })
    }

    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) {
        self.0.acks.notify_many(&acks, level);
    }

    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        let wait = self.0.acks.wait(&acks);
        self.0
            .runtime
            .spawn_call("storage.await_acks", async move { Ok(wait.await.into()) })
    }

    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        // A loaded (or unknown) map answers here, on the caller's thread:
        // the hop to the plugin runtime would cost more than the read.
        if let Ok(_g) = self.0.enter("read") {
            if let Some(records) = self.0.read_now(&map, &keys) {
                return Box::pin(std::future::ready(Ok(records)));
            }
        }
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.read", async move {
            let _g = core.enter("read")?;
            core.read(&map, &keys).await
        })
    }

    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.list_maps", async move {
            let _g = core.enter("list_maps")?;
            core.list_maps().await
        })
    }

    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.query", async move {
            let _g = core.enter("query")?;
            core.query(&request).await
        })
    }

    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.subscribe", async move {
            let _g = core.enter("subscribe")?;
            core.subscribe(id, &request, sink).await
        })
    }

    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.0.registry.unsubscribe(crate::query::RegistryId(id))
    }

    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        let core = self.0.clone();
        self.0.runtime.spawn_call("storage.search", async move {
            let _g = core.enter("search")?;
            core.search(&request).await
        })
    }

    fn merkle_root(&self, map: RString, kind: MapKind) -> ModuleFuture<u32> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.merkle_root", async move {
                let _g = core.enter("merkle_root")?;
                core.merkle_root(&map, kind).await
            })
    }

    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.merkle_node", async move {
                let _g = core.enter("merkle_node")?;
                core.merkle_node(&request).await
            })
    }

    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        *self.0.sink.write() = Some(sink);
    }

    fn accessor(&self) -> Arc<dyn StorageAccessor> {
        Arc::new(accessor::Accessor(self.0.clone()))
    }

    fn journal_read(&self, request: JournalReadRequest) -> ModuleFuture<JournalPage> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.journal_read", async move {
                let _g = core.enter("journal_read")?;
                let backend = core.persist()?.backend.clone();
                core.journal.read(&*backend, &request).await
            })
    }

    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleFuture<u64> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.journal_subscribe", async move {
                let _g = core.enter("journal_subscribe")?;
                let backend = core.persist()?.backend.clone();
                core.journal
                    .subscribe(
                        &*backend,
                        id,
                        journal::start_of(&from_sequence),
                        filter,
                        sink,
                    )
                    .await
            })
    }

    fn journal_unsubscribe(&self, id: SubscriptionId) -> bool {
        self.0.journal.unsubscribe(id)
    }

    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> ModuleFuture<u64> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.prune_or_tombstones", async move {
                let _g = core.enter("prune_or_tombstones")?;
                core.prune_or_tags(&map, &tags).await
            })
    }
}

#[cfg(test)]
mod tests;
