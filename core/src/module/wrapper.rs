//! Wrapping a module to change a few of its methods.
//!
//! A plugin that adds one rule to the default storage module (or the default
//! cluster module) implements [`StorageWrapper`] (or [`ClusterWrapper`]):
//! it names the module it wraps in `inner` and overrides only the methods it
//! changes; every other method is forwarded to `inner`. The blanket
//! implementations below make every wrapper a [`StorageModule`] /
//! [`ClusterModule`], so it is exported and loaded like any module:
//!
//! ```
//! use std::sync::Arc;
//! use abi_stable::std_types::{RString, RVec};
//! use hangar_core::module::storage::StorageModule;
//! use hangar_core::module::storage_types::KeyRecord;
//! use hangar_core::module::wrapper::StorageWrapper;
//! use hangar_core::module::{ready, ModuleFuture};
//! use hangar_core::ModuleError;
//!
//! /// Refuses reads of the map `secrets`; everything else is the inner module's.
//! struct NoSecrets(Arc<dyn StorageModule>);
//!
//! impl StorageWrapper for NoSecrets {
//!     fn inner(&self) -> &dyn StorageModule {
//!         &*self.0
//!     }
//!     fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
//!         if map.as_str() == "secrets" {
//!             return ready(Err(ModuleError::invalid("map `secrets` cannot be read")));
//!         }
//!         self.inner().read(map, keys)
//!     }
//! }
//! ```
//!
//! A type is either a wrapper or implements the module trait itself, not
//! both (the blanket implementation would conflict).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};

use super::accessor::StorageAccessor;
use super::cluster::ClusterModule;
use super::cluster_types::{
    ClusterStatus, LockGrant, LockRelease, LockRequest, Member, PartitionMap, RepairReport,
    ReplicationOutcome, ReplicationRequest,
};
use super::journal::{JournalFilter, JournalPage, JournalReadRequest, JournalSink};
use super::local_node::{LocalNode, TopicPublish};
use super::partition::PartitionView;
use super::storage::StorageModule;
use super::storage_types::{
    AckId, AckResult, ApplyBatch, ChangeEvent, ChangeSink, KeyRecord, MapInfo, MerkleRequest,
    MerkleResponse, OpOutcome, QueryRequest, QueryResponse, QuerySink, SearchHit, SearchRequest,
    SubscriptionId,
};
use super::{ModuleFuture, ModuleInfo};
use crate::error::ModuleResult;
use crate::types::{ConsistencyLevel, MapKind, WriteConcern};

/// A storage module made of another one (`inner`) and the methods it
/// overrides. Each method's contract is [`StorageModule`]'s; a wrapper
/// MUST keep it (an override that acknowledges a write MUST still apply it
/// through `inner`, and so on). `info` defaults to the inner module's; a
/// plugin that ships a wrapper SHOULD override it with its own name.
#[allow(missing_docs, reason = "each method is documented on StorageModule")]
pub trait StorageWrapper: Send + Sync + 'static {
    /// The module every method not overridden is forwarded to.
    fn inner(&self) -> &dyn StorageModule;

    fn info(&self) -> ModuleInfo {
        self.inner().info()
    }
    fn start(&self) -> ModuleFuture<()> {
        self.inner().start()
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        self.inner().shutdown()
    }
    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        self.inner().apply(batch)
    }
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) {
        self.inner().notify_acks(acks, level);
    }
    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        self.inner().await_acks(acks)
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        self.inner().read(map, keys)
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        self.inner().list_maps()
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        self.inner().query(request)
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        self.inner().subscribe(id, request, sink)
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner().unsubscribe(id)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        self.inner().search(request)
    }
    fn merkle_root(&self, map: RString, kind: MapKind) -> ModuleFuture<u32> {
        self.inner().merkle_root(map, kind)
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        self.inner().merkle_node(request)
    }
    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        self.inner().set_change_sink(sink);
    }
    fn accessor(&self) -> Arc<dyn StorageAccessor> {
        self.inner().accessor()
    }
    fn journal_read(&self, request: JournalReadRequest) -> ModuleFuture<JournalPage> {
        self.inner().journal_read(request)
    }
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleFuture<u64> {
        self.inner()
            .journal_subscribe(id, from_sequence, filter, sink)
    }
    fn journal_unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner().journal_unsubscribe(id)
    }
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> ModuleFuture<u64> {
        self.inner().prune_or_tombstones(map, tags)
    }
}

impl<W: StorageWrapper> StorageModule for W {
    fn info(&self) -> ModuleInfo {
        StorageWrapper::info(self)
    }
    fn start(&self) -> ModuleFuture<()> {
        StorageWrapper::start(self)
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        StorageWrapper::shutdown(self)
    }
    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        StorageWrapper::apply(self, batch)
    }
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) {
        StorageWrapper::notify_acks(self, acks, level);
    }
    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        StorageWrapper::await_acks(self, acks)
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        StorageWrapper::read(self, map, keys)
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        StorageWrapper::list_maps(self)
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        StorageWrapper::query(self, request)
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        StorageWrapper::subscribe(self, id, request, sink)
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        StorageWrapper::unsubscribe(self, id)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        StorageWrapper::search(self, request)
    }
    fn merkle_root(&self, map: RString, kind: MapKind) -> ModuleFuture<u32> {
        StorageWrapper::merkle_root(self, map, kind)
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        StorageWrapper::merkle_node(self, request)
    }
    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        StorageWrapper::set_change_sink(self, sink);
    }
    fn accessor(&self) -> Arc<dyn StorageAccessor> {
        StorageWrapper::accessor(self)
    }
    fn journal_read(&self, request: JournalReadRequest) -> ModuleFuture<JournalPage> {
        StorageWrapper::journal_read(self, request)
    }
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleFuture<u64> {
        StorageWrapper::journal_subscribe(self, id, from_sequence, filter, sink)
    }
    fn journal_unsubscribe(&self, id: SubscriptionId) -> bool {
        StorageWrapper::journal_unsubscribe(self, id)
    }
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> ModuleFuture<u64> {
        StorageWrapper::prune_or_tombstones(self, map, tags)
    }
}

/// A cluster module made of another one (`inner`) and the methods it
/// overrides. Each method's contract is [`ClusterModule`]'s; a wrapper MUST
/// keep it. `info` defaults to the inner module's; a plugin that ships a
/// wrapper SHOULD override it with its own name.
#[allow(missing_docs, reason = "each method is documented on ClusterModule")]
pub trait ClusterWrapper: Send + Sync + 'static {
    /// The module every method not overridden is forwarded to.
    fn inner(&self) -> &dyn ClusterModule;

    fn info(&self) -> ModuleInfo {
        self.inner().info()
    }
    fn start(&self) -> ModuleFuture<()> {
        self.inner().start()
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        self.inner().shutdown()
    }
    fn partition_view(&self) -> Arc<dyn PartitionView> {
        self.inner().partition_view()
    }
    fn attach_storage(&self, storage: Arc<dyn StorageAccessor>) -> ModuleResult<()> {
        self.inner().attach_storage(storage)
    }
    fn members(&self) -> RVec<Member> {
        self.inner().members()
    }
    fn partition_map(&self) -> PartitionMap {
        self.inner().partition_map()
    }
    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        self.inner().replicate(request)
    }
    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        self.inner().forward(node, batch)
    }
    fn read_replica(&self, partition: u32, consistency: ConsistencyLevel) -> ROption<RString> {
        self.inner().read_replica(partition, consistency)
    }
    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        self.inner().lock(request)
    }
    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool> {
        self.inner().unlock(release)
    }
    fn release_holder(&self, holder: RString) -> ModuleFuture<u32> {
        self.inner().release_holder(holder)
    }
    fn repair(&self) -> ModuleFuture<RepairReport> {
        self.inner().repair()
    }
    fn attach_node(&self, node: Arc<dyn LocalNode>) -> ModuleResult<()> {
        self.inner().attach_node(node)
    }
    fn observe_change(&self, event: &ChangeEvent) {
        self.inner().observe_change(event);
    }
    fn publish_topic(&self, message: TopicPublish) -> ModuleFuture<()> {
        self.inner().publish_topic(message)
    }
    fn status(&self) -> ClusterStatus {
        self.inner().status()
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        self.inner().query(request)
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        self.inner().subscribe(id, request, sink)
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner().unsubscribe(id)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        self.inner().search(request)
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        self.inner().merkle_node(request)
    }
}

impl<W: ClusterWrapper> ClusterModule for W {
    fn info(&self) -> ModuleInfo {
        ClusterWrapper::info(self)
    }
    fn start(&self) -> ModuleFuture<()> {
        ClusterWrapper::start(self)
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        ClusterWrapper::shutdown(self)
    }
    fn partition_view(&self) -> Arc<dyn PartitionView> {
        ClusterWrapper::partition_view(self)
    }
    fn attach_storage(&self, storage: Arc<dyn StorageAccessor>) -> ModuleResult<()> {
        ClusterWrapper::attach_storage(self, storage)
    }
    fn members(&self) -> RVec<Member> {
        ClusterWrapper::members(self)
    }
    fn partition_map(&self) -> PartitionMap {
        ClusterWrapper::partition_map(self)
    }
    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        ClusterWrapper::replicate(self, request)
    }
    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        ClusterWrapper::forward(self, node, batch)
    }
    fn read_replica(&self, partition: u32, consistency: ConsistencyLevel) -> ROption<RString> {
        ClusterWrapper::read_replica(self, partition, consistency)
    }
    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        ClusterWrapper::lock(self, request)
    }
    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool> {
        ClusterWrapper::unlock(self, release)
    }
    fn release_holder(&self, holder: RString) -> ModuleFuture<u32> {
        ClusterWrapper::release_holder(self, holder)
    }
    fn repair(&self) -> ModuleFuture<RepairReport> {
        ClusterWrapper::repair(self)
    }
    fn attach_node(&self, node: Arc<dyn LocalNode>) -> ModuleResult<()> {
        ClusterWrapper::attach_node(self, node)
    }
    fn observe_change(&self, event: &ChangeEvent) {
        ClusterWrapper::observe_change(self, event);
    }
    fn publish_topic(&self, message: TopicPublish) -> ModuleFuture<()> {
        ClusterWrapper::publish_topic(self, message)
    }
    fn status(&self) -> ClusterStatus {
        ClusterWrapper::status(self)
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        ClusterWrapper::query(self, request)
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        ClusterWrapper::subscribe(self, id, request, sink)
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        ClusterWrapper::unsubscribe(self, id)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        ClusterWrapper::search(self, request)
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        ClusterWrapper::merkle_node(self, request)
    }
}
