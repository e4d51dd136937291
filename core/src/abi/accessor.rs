//! ABI mirror of the storage accessor (storage module → host → cluster
//! module).

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use std::sync::Arc;

use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, RString, RVec};

use super::convert::conversions;
use super::guard::{await_foreign, guard, guard_future, report, FfiFut, FfiResult};
use super::sinks::{query_sink_from_ffi, query_sink_to_ffi, FfiQuerySinkBox};
use crate::error::ModuleResult;
use crate::module::accessor::{ScanPage, ScanRequest, StorageAccessor};
use crate::module::digest::{DigestItem, DigestRequest};
use crate::module::partition::PartitionSet;
use crate::module::storage_types::{
    KeyRecord, MapInfo, MerkleRequest, MerkleResponse, OpStatus, Origin, QueryRequest,
    QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use crate::module::ModuleFuture;
use crate::types::KeyedOp;

/// ABI mirror of [`StorageAccessor`].
#[sabi_trait]
pub trait FfiStorageAccessor: Send + Sync + Clone {
    /// See [`StorageAccessor::apply_replicated`].
    fn apply_replicated(&self, changes: RVec<KeyedOp>, origin: Origin) -> FfiFut<RVec<OpStatus>>;
    /// See [`StorageAccessor::read`].
    fn read(&self, map: RString, keys: RVec<RString>) -> FfiFut<RVec<KeyRecord>>;
    /// See [`StorageAccessor::scan_partition`].
    fn scan_partition(&self, request: ScanRequest) -> FfiFut<ScanPage>;
    /// See [`StorageAccessor::list_maps`].
    fn list_maps(&self) -> FfiFut<RVec<MapInfo>>;
    /// See [`StorageAccessor::or_tombstones`].
    fn or_tombstones(&self, map: RString) -> FfiFut<RVec<RString>>;
    /// See [`StorageAccessor::durable_barrier`].
    fn durable_barrier(&self) -> FfiFut<()>;
    /// See [`StorageAccessor::partitions_changed`].
    fn partitions_changed(&self, version: u64) -> FfiResult<()>;
    /// See [`StorageAccessor::query`].
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse>;
    /// See [`StorageAccessor::subscribe`].
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse>;
    /// See [`StorageAccessor::unsubscribe`].
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool>;
    /// See [`StorageAccessor::search`].
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>>;
    /// See [`StorageAccessor::merge_pages`].
    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> FfiResult<QueryResponse>;
    /// See [`StorageAccessor::merkle_node_in`].
    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> FfiFut<MerkleResponse>;
    /// See [`StorageAccessor::partition_digests`].
    #[sabi(last_prefix_field)]
    fn partition_digests(&self, request: DigestRequest) -> FfiFut<RVec<DigestItem>>;
}

/// A storage accessor as it crosses the boundary.
pub type FfiStorageAccessorBox = FfiStorageAccessor_TO<'static, RArc<()>>;

/// Exports a native storage accessor.
#[derive(Clone)]
pub struct StorageAccessorExport(pub std::sync::Arc<dyn StorageAccessor>);

impl FfiStorageAccessor for StorageAccessorExport {
    fn apply_replicated(&self, changes: RVec<KeyedOp>, origin: Origin) -> FfiFut<RVec<OpStatus>> {
        guard_future("accessor.apply_replicated", || {
            self.0.apply_replicated(changes, origin)
        })
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> FfiFut<RVec<KeyRecord>> {
        guard_future("accessor.read", || self.0.read(map, keys))
    }
    fn scan_partition(&self, request: ScanRequest) -> FfiFut<ScanPage> {
        guard_future("accessor.scan_partition", || self.0.scan_partition(request))
    }
    fn list_maps(&self) -> FfiFut<RVec<MapInfo>> {
        guard_future("accessor.list_maps", || self.0.list_maps())
    }
    fn or_tombstones(&self, map: RString) -> FfiFut<RVec<RString>> {
        guard_future("accessor.or_tombstones", || self.0.or_tombstones(map))
    }
    fn durable_barrier(&self) -> FfiFut<()> {
        guard_future("accessor.durable_barrier", || self.0.durable_barrier())
    }
    fn partitions_changed(&self, version: u64) -> FfiResult<()> {
        guard("accessor.partitions_changed", || {
            self.0.partitions_changed(version);
            Ok(())
        })
    }
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse> {
        guard_future("accessor.query", || self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse> {
        guard_future("accessor.subscribe", || {
            self.0.subscribe(id, request, query_sink_from_ffi(sink))
        })
    }
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool> {
        guard("accessor.unsubscribe", || Ok(self.0.unsubscribe(id)))
    }
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>> {
        guard_future("accessor.search", || self.0.search(request))
    }
    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> FfiResult<QueryResponse> {
        guard("accessor.merge_pages", || {
            self.0.merge_pages(request, pages)
        })
    }
    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> FfiFut<MerkleResponse> {
        guard_future("accessor.merkle_node_in", || {
            self.0.merkle_node_in(request, partitions)
        })
    }
    fn partition_digests(&self, request: DigestRequest) -> FfiFut<RVec<DigestItem>> {
        guard_future("accessor.partition_digests", || {
            self.0.partition_digests(request)
        })
    }
}

/// A storage accessor received through the boundary.
pub struct ForeignStorageAccessor(pub FfiStorageAccessorBox);

impl StorageAccessor for ForeignStorageAccessor {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn apply_replicated(
        &self,
        changes: RVec<KeyedOp>,
        origin: Origin,
    ) -> ModuleFuture<RVec<OpStatus>> {
        await_foreign(
            "accessor.apply_replicated",
            self.0.apply_replicated(changes, origin),
        )
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        await_foreign("accessor.read", self.0.read(map, keys))
    }
    fn scan_partition(&self, request: ScanRequest) -> ModuleFuture<ScanPage> {
        await_foreign("accessor.scan_partition", self.0.scan_partition(request))
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        await_foreign("accessor.list_maps", self.0.list_maps())
    }
    fn or_tombstones(&self, map: RString) -> ModuleFuture<RVec<RString>> {
        await_foreign("accessor.or_tombstones", self.0.or_tombstones(map))
    }
    fn durable_barrier(&self) -> ModuleFuture<()> {
        await_foreign("accessor.durable_barrier", self.0.durable_barrier())
    }
    fn partitions_changed(&self, version: u64) {
        report(self.0.partitions_changed(version), || ());
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        await_foreign("accessor.query", self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        await_foreign(
            "accessor.subscribe",
            self.0.subscribe(id, request, query_sink_to_ffi(sink)),
        )
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        report(self.0.unsubscribe(id), || false)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        await_foreign("accessor.search", self.0.search(request))
    }
    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> ModuleResult<QueryResponse> {
        self.0.merge_pages(request, pages).into()
    }
    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> ModuleFuture<MerkleResponse> {
        await_foreign(
            "accessor.merkle_node_in",
            self.0.merkle_node_in(request, partitions),
        )
    }
    fn partition_digests(&self, request: DigestRequest) -> ModuleFuture<RVec<DigestItem>> {
        await_foreign(
            "accessor.partition_digests",
            self.0.partition_digests(request),
        )
    }
}

conversions! {
    native: StorageAccessor,
    ffi_box: FfiStorageAccessorBox,
    ffi_to: FfiStorageAccessor_TO,
    export: StorageAccessorExport,
    foreign: ForeignStorageAccessor,
    to_ffi: accessor_to_ffi,
    from_ffi: accessor_from_ffi,
    to_ffi_forced: accessor_to_ffi_forced,
    from_ffi_forced: accessor_from_ffi_forced,
}
