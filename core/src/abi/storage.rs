//! ABI mirror of the storage module.

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use std::sync::Arc;

use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, ROption, RString, RVec};

use super::accessor::{accessor_from_ffi, accessor_to_ffi, FfiStorageAccessorBox};
use super::convert::conversions;
use super::guard::{await_foreign, guard, guard_future, report, FfiFut, FfiResult};
use super::sinks::{
    change_sink_from_ffi, change_sink_to_ffi, journal_sink_from_ffi, journal_sink_to_ffi,
    query_sink_from_ffi, query_sink_to_ffi, FfiChangeSinkBox, FfiJournalSinkBox, FfiQuerySinkBox,
};
use crate::error::ModuleError;
use crate::module::accessor::{ScanPage, ScanRequest, StorageAccessor};
use crate::module::journal::{JournalFilter, JournalPage, JournalReadRequest, JournalSink};
use crate::module::storage::StorageModule;
use crate::module::storage_types::{
    AckId, AckResult, ApplyBatch, ChangeSink, KeyRecord, MapInfo, MerkleRequest, MerkleResponse,
    OpOutcome, OpStatus, Origin, QueryRequest, QueryResponse, QuerySink, SearchHit, SearchRequest,
    SubscriptionId,
};
use crate::module::{ready, ModuleFuture, ModuleInfo};
use crate::types::{KeyedOp, MapKind, WriteConcern};

/// ABI mirror of [`StorageModule`]. Method order is the ABI: new methods go at
/// the end only, with the ABI version bumped.
#[sabi_trait]
pub trait FfiStorageModule: Send + Sync + Clone {
    /// See [`StorageModule::info`].
    fn info(&self) -> FfiResult<ModuleInfo>;
    /// See [`StorageModule::start`].
    fn start(&self) -> FfiFut<()>;
    /// See [`StorageModule::shutdown`].
    fn shutdown(&self) -> FfiFut<()>;
    /// See [`StorageModule::apply`].
    fn apply(&self, batch: ApplyBatch) -> FfiFut<RVec<OpOutcome>>;
    /// See [`StorageModule::notify_acks`].
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) -> FfiResult<()>;
    /// See [`StorageModule::await_acks`].
    fn await_acks(&self, acks: RVec<AckId>) -> FfiFut<RVec<AckResult>>;
    /// See [`StorageModule::read`].
    fn read(&self, map: RString, keys: RVec<RString>) -> FfiFut<RVec<KeyRecord>>;
    /// See [`StorageModule::list_maps`].
    fn list_maps(&self) -> FfiFut<RVec<MapInfo>>;
    /// See [`StorageModule::query`].
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse>;
    /// See [`StorageModule::subscribe`].
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse>;
    /// See [`StorageModule::unsubscribe`].
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool>;
    /// See [`StorageModule::search`].
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>>;
    /// See [`StorageModule::merkle_root`].
    fn merkle_root(&self, map: RString, kind: MapKind) -> FfiFut<u32>;
    /// See [`StorageModule::merkle_node`].
    fn merkle_node(&self, request: MerkleRequest) -> FfiFut<MerkleResponse>;
    /// See [`StorageModule::set_change_sink`].
    fn set_change_sink(&self, sink: FfiChangeSinkBox) -> FfiResult<()>;
    /// See [`StorageModule::accessor`].
    fn accessor(&self) -> FfiResult<FfiStorageAccessorBox>;
    /// See [`StorageModule::journal_read`].
    fn journal_read(&self, request: JournalReadRequest) -> FfiFut<JournalPage>;
    /// See [`StorageModule::journal_subscribe`].
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: FfiJournalSinkBox,
    ) -> FfiFut<u64>;
    /// See [`StorageModule::journal_unsubscribe`].
    fn journal_unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool>;
    /// See [`StorageModule::prune_or_tombstones`].
    #[sabi(last_prefix_field)]
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> FfiFut<u64>;
}

/// A storage module as it crosses the boundary.
pub type FfiStorageModuleBox = FfiStorageModule_TO<'static, RArc<()>>;

/// Exports a native storage module.
#[derive(Clone)]
pub struct StorageExport(pub Arc<dyn StorageModule>);

impl FfiStorageModule for StorageExport {
    fn info(&self) -> FfiResult<ModuleInfo> {
        guard("storage.info", || Ok(self.0.info()))
    }
    fn start(&self) -> FfiFut<()> {
        guard_future("storage.start", || self.0.start())
    }
    fn shutdown(&self) -> FfiFut<()> {
        guard_future("storage.shutdown", || self.0.shutdown())
    }
    fn apply(&self, batch: ApplyBatch) -> FfiFut<RVec<OpOutcome>> {
        guard_future("storage.apply", || self.0.apply(batch))
    }
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) -> FfiResult<()> {
        guard("storage.notify_acks", || {
            self.0.notify_acks(acks, level);
            Ok(())
        })
    }
    fn await_acks(&self, acks: RVec<AckId>) -> FfiFut<RVec<AckResult>> {
        guard_future("storage.await_acks", || self.0.await_acks(acks))
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> FfiFut<RVec<KeyRecord>> {
        guard_future("storage.read", || self.0.read(map, keys))
    }
    fn list_maps(&self) -> FfiFut<RVec<MapInfo>> {
        guard_future("storage.list_maps", || self.0.list_maps())
    }
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse> {
        guard_future("storage.query", || self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse> {
        guard_future("storage.subscribe", || {
            self.0.subscribe(id, request, query_sink_from_ffi(sink))
        })
    }
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool> {
        guard("storage.unsubscribe", || Ok(self.0.unsubscribe(id)))
    }
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>> {
        guard_future("storage.search", || self.0.search(request))
    }
    fn merkle_root(&self, map: RString, kind: MapKind) -> FfiFut<u32> {
        guard_future("storage.merkle_root", || self.0.merkle_root(map, kind))
    }
    fn merkle_node(&self, request: MerkleRequest) -> FfiFut<MerkleResponse> {
        guard_future("storage.merkle_node", || self.0.merkle_node(request))
    }
    fn set_change_sink(&self, sink: FfiChangeSinkBox) -> FfiResult<()> {
        guard("storage.set_change_sink", || {
            self.0.set_change_sink(change_sink_from_ffi(sink));
            Ok(())
        })
    }
    fn accessor(&self) -> FfiResult<FfiStorageAccessorBox> {
        guard("storage.accessor", || {
            Ok(accessor_to_ffi(self.0.accessor()))
        })
    }
    fn journal_read(&self, request: JournalReadRequest) -> FfiFut<JournalPage> {
        guard_future("storage.journal_read", || self.0.journal_read(request))
    }
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: FfiJournalSinkBox,
    ) -> FfiFut<u64> {
        guard_future("storage.journal_subscribe", || {
            self.0
                .journal_subscribe(id, from_sequence, filter, journal_sink_from_ffi(sink))
        })
    }
    fn journal_unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool> {
        guard("storage.journal_unsubscribe", || {
            Ok(self.0.journal_unsubscribe(id))
        })
    }
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> FfiFut<u64> {
        guard_future("storage.prune_or_tombstones", || {
            self.0.prune_or_tombstones(map, tags)
        })
    }
}

/// A storage module received through the boundary.
pub struct ForeignStorage(pub FfiStorageModuleBox);

impl StorageModule for ForeignStorage {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn info(&self) -> ModuleInfo {
        report(self.0.info(), || {
            ModuleInfo::new("unknown", "0.0.0", "the plugin failed to describe itself")
        })
    }
    fn start(&self) -> ModuleFuture<()> {
        await_foreign("storage.start", self.0.start())
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        await_foreign("storage.shutdown", self.0.shutdown())
    }
    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        await_foreign("storage.apply", self.0.apply(batch))
    }
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) {
        report(self.0.notify_acks(acks, level), || ());
    }
    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        await_foreign("storage.await_acks", self.0.await_acks(acks))
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        await_foreign("storage.read", self.0.read(map, keys))
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        await_foreign("storage.list_maps", self.0.list_maps())
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        await_foreign("storage.query", self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        await_foreign(
            "storage.subscribe",
            self.0.subscribe(id, request, query_sink_to_ffi(sink)),
        )
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        report(self.0.unsubscribe(id), || false)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        await_foreign("storage.search", self.0.search(request))
    }
    fn merkle_root(&self, map: RString, kind: MapKind) -> ModuleFuture<u32> {
        await_foreign("storage.merkle_root", self.0.merkle_root(map, kind))
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        await_foreign("storage.merkle_node", self.0.merkle_node(request))
    }
    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        report(self.0.set_change_sink(change_sink_to_ffi(sink)), || ());
    }
    fn accessor(&self) -> Arc<dyn StorageAccessor> {
        match self.0.accessor().into_result() {
            Ok(a) => accessor_from_ffi(a),
            Err(e) => Arc::new(FailedAccessor(e)),
        }
    }
    fn journal_read(&self, request: JournalReadRequest) -> ModuleFuture<JournalPage> {
        await_foreign("storage.journal_read", self.0.journal_read(request))
    }
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleFuture<u64> {
        await_foreign(
            "storage.journal_subscribe",
            self.0
                .journal_subscribe(id, from_sequence, filter, journal_sink_to_ffi(sink)),
        )
    }
    fn journal_unsubscribe(&self, id: SubscriptionId) -> bool {
        report(self.0.journal_unsubscribe(id), || false)
    }
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> ModuleFuture<u64> {
        await_foreign(
            "storage.prune_or_tombstones",
            self.0.prune_or_tombstones(map, tags),
        )
    }
}

/// Stands in for an accessor the storage plugin failed to hand out: every
/// call reports that failure.
struct FailedAccessor(ModuleError);

impl StorageAccessor for FailedAccessor {
    fn apply_replicated(&self, _: RVec<KeyedOp>, _: Origin) -> ModuleFuture<RVec<OpStatus>> {
        ready(Err(self.0.clone()))
    }
    fn read(&self, _: RString, _: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        ready(Err(self.0.clone()))
    }
    fn scan_partition(&self, _: ScanRequest) -> ModuleFuture<ScanPage> {
        ready(Err(self.0.clone()))
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        ready(Err(self.0.clone()))
    }
    fn or_tombstones(&self, _: RString) -> ModuleFuture<RVec<RString>> {
        ready(Err(self.0.clone()))
    }
    fn durable_barrier(&self) -> ModuleFuture<()> {
        ready(Err(self.0.clone()))
    }
    fn partitions_changed(&self, _: u64) {}
    fn query(&self, _: QueryRequest) -> ModuleFuture<QueryResponse> {
        ready(Err(self.0.clone()))
    }
    fn subscribe(
        &self,
        _: SubscriptionId,
        _: QueryRequest,
        _: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        ready(Err(self.0.clone()))
    }
    fn unsubscribe(&self, _: SubscriptionId) -> bool {
        false
    }
    fn search(&self, _: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        ready(Err(self.0.clone()))
    }
    fn merge_pages(
        &self,
        _: QueryRequest,
        _: RVec<QueryResponse>,
    ) -> crate::error::ModuleResult<QueryResponse> {
        Err(self.0.clone())
    }
    fn merkle_node_in(
        &self,
        _: MerkleRequest,
        _: crate::module::partition::PartitionSet,
    ) -> ModuleFuture<MerkleResponse> {
        ready(Err(self.0.clone()))
    }
    fn partition_digests(
        &self,
        _: crate::module::digest::DigestRequest,
    ) -> ModuleFuture<RVec<crate::module::digest::DigestItem>> {
        ready(Err(self.0.clone()))
    }
}

conversions! {
    native: StorageModule,
    ffi_box: FfiStorageModuleBox,
    ffi_to: FfiStorageModule_TO,
    export: StorageExport,
    foreign: ForeignStorage,
    to_ffi: storage_to_ffi,
    from_ffi: storage_from_ffi,
    to_ffi_forced: storage_to_ffi_forced,
    from_ffi_forced: storage_from_ffi_forced,
}
