//! ABI mirror of the cluster module.

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
use super::local_node::{local_node_from_ffi, local_node_to_ffi, FfiLocalNodeBox};
use super::partition::{partition_view_from_ffi, partition_view_to_ffi, FfiPartitionViewBox};
use super::sinks::{query_sink_from_ffi, query_sink_to_ffi, FfiQuerySinkBox};
use crate::error::ModuleResult;
use crate::module::accessor::StorageAccessor;
use crate::module::cluster::ClusterModule;
use crate::module::cluster_types::{
    ClusterPhase, ClusterStatus, LockGrant, LockRelease, LockRequest, Member, PartitionMap,
    RepairReport, ReplicationOutcome, ReplicationRequest,
};
use crate::module::local_node::{LocalNode, TopicPublish};
use crate::module::partition::PartitionView;
use crate::module::storage_types::{
    AckResult, ApplyBatch, ChangeEvent, MerkleRequest, MerkleResponse, QueryRequest, QueryResponse,
    QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use crate::module::{ModuleFuture, ModuleInfo};
use crate::types::ConsistencyLevel;

/// ABI mirror of [`ClusterModule`]. Method order is the ABI: new methods go at
/// the end only, with the ABI version bumped.
#[sabi_trait]
pub trait FfiClusterModule: Send + Sync + Clone {
    /// See [`ClusterModule::info`].
    fn info(&self) -> FfiResult<ModuleInfo>;
    /// See [`ClusterModule::start`].
    fn start(&self) -> FfiFut<()>;
    /// See [`ClusterModule::shutdown`].
    fn shutdown(&self) -> FfiFut<()>;
    /// See [`ClusterModule::partition_view`].
    fn partition_view(&self) -> FfiResult<FfiPartitionViewBox>;
    /// See [`ClusterModule::attach_storage`].
    fn attach_storage(&self, storage: FfiStorageAccessorBox) -> FfiResult<()>;
    /// See [`ClusterModule::members`].
    fn members(&self) -> FfiResult<RVec<Member>>;
    /// See [`ClusterModule::partition_map`].
    fn partition_map(&self) -> FfiResult<PartitionMap>;
    /// See [`ClusterModule::replicate`].
    fn replicate(&self, request: ReplicationRequest) -> FfiFut<ReplicationOutcome>;
    /// See [`ClusterModule::forward`].
    fn forward(&self, node: RString, batch: ApplyBatch) -> FfiFut<RVec<AckResult>>;
    /// See [`ClusterModule::read_replica`].
    fn read_replica(
        &self,
        partition: u32,
        consistency: ConsistencyLevel,
    ) -> FfiResult<ROption<RString>>;
    /// See [`ClusterModule::lock`].
    fn lock(&self, request: LockRequest) -> FfiFut<LockGrant>;
    /// See [`ClusterModule::unlock`].
    fn unlock(&self, release: LockRelease) -> FfiFut<bool>;
    /// See [`ClusterModule::release_holder`].
    fn release_holder(&self, holder: RString) -> FfiFut<u32>;
    /// See [`ClusterModule::repair`].
    fn repair(&self) -> FfiFut<RepairReport>;
    /// See [`ClusterModule::attach_node`].
    fn attach_node(&self, node: FfiLocalNodeBox) -> FfiResult<()>;
    /// See [`ClusterModule::observe_change`].
    fn observe_change(&self, event: &ChangeEvent) -> FfiResult<()>;
    /// See [`ClusterModule::publish_topic`].
    fn publish_topic(&self, message: TopicPublish) -> FfiFut<()>;
    /// See [`ClusterModule::status`].
    fn status(&self) -> FfiResult<ClusterStatus>;
    /// See [`ClusterModule::query`].
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse>;
    /// See [`ClusterModule::subscribe`].
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse>;
    /// See [`ClusterModule::unsubscribe`].
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool>;
    /// See [`ClusterModule::search`].
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>>;
    /// See [`ClusterModule::merkle_node`].
    #[sabi(last_prefix_field)]
    fn merkle_node(&self, request: MerkleRequest) -> FfiFut<MerkleResponse>;
}

/// A cluster module as it crosses the boundary.
pub type FfiClusterModuleBox = FfiClusterModule_TO<'static, RArc<()>>;

/// Exports a native cluster module.
#[derive(Clone)]
pub struct ClusterExport(pub Arc<dyn ClusterModule>);

impl FfiClusterModule for ClusterExport {
    fn info(&self) -> FfiResult<ModuleInfo> {
        guard("cluster.info", || Ok(self.0.info()))
    }
    fn start(&self) -> FfiFut<()> {
        guard_future("cluster.start", || self.0.start())
    }
    fn shutdown(&self) -> FfiFut<()> {
        guard_future("cluster.shutdown", || self.0.shutdown())
    }
    fn partition_view(&self) -> FfiResult<FfiPartitionViewBox> {
        guard("cluster.partition_view", || {
            Ok(partition_view_to_ffi(self.0.partition_view()))
        })
    }
    fn attach_storage(&self, storage: FfiStorageAccessorBox) -> FfiResult<()> {
        guard("cluster.attach_storage", || {
            self.0.attach_storage(accessor_from_ffi(storage))
        })
    }
    fn members(&self) -> FfiResult<RVec<Member>> {
        guard("cluster.members", || Ok(self.0.members()))
    }
    fn partition_map(&self) -> FfiResult<PartitionMap> {
        guard("cluster.partition_map", || Ok(self.0.partition_map()))
    }
    fn replicate(&self, request: ReplicationRequest) -> FfiFut<ReplicationOutcome> {
        guard_future("cluster.replicate", || self.0.replicate(request))
    }
    fn forward(&self, node: RString, batch: ApplyBatch) -> FfiFut<RVec<AckResult>> {
        guard_future("cluster.forward", || self.0.forward(node, batch))
    }
    fn read_replica(
        &self,
        partition: u32,
        consistency: ConsistencyLevel,
    ) -> FfiResult<ROption<RString>> {
        guard("cluster.read_replica", || {
            Ok(self.0.read_replica(partition, consistency))
        })
    }
    fn lock(&self, request: LockRequest) -> FfiFut<LockGrant> {
        guard_future("cluster.lock", || self.0.lock(request))
    }
    fn unlock(&self, release: LockRelease) -> FfiFut<bool> {
        guard_future("cluster.unlock", || self.0.unlock(release))
    }
    fn release_holder(&self, holder: RString) -> FfiFut<u32> {
        guard_future("cluster.release_holder", || self.0.release_holder(holder))
    }
    fn repair(&self) -> FfiFut<RepairReport> {
        guard_future("cluster.repair", || self.0.repair())
    }
    fn attach_node(&self, node: FfiLocalNodeBox) -> FfiResult<()> {
        guard("cluster.attach_node", || {
            self.0.attach_node(local_node_from_ffi(node))
        })
    }
    fn observe_change(&self, event: &ChangeEvent) -> FfiResult<()> {
        guard("cluster.observe_change", || {
            self.0.observe_change(event);
            Ok(())
        })
    }
    fn publish_topic(&self, message: TopicPublish) -> FfiFut<()> {
        guard_future("cluster.publish_topic", || self.0.publish_topic(message))
    }
    fn status(&self) -> FfiResult<ClusterStatus> {
        guard("cluster.status", || Ok(self.0.status()))
    }
    fn query(&self, request: QueryRequest) -> FfiFut<QueryResponse> {
        guard_future("cluster.query", || self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: FfiQuerySinkBox,
    ) -> FfiFut<QueryResponse> {
        guard_future("cluster.subscribe", || {
            self.0.subscribe(id, request, query_sink_from_ffi(sink))
        })
    }
    fn unsubscribe(&self, id: SubscriptionId) -> FfiResult<bool> {
        guard("cluster.unsubscribe", || Ok(self.0.unsubscribe(id)))
    }
    fn search(&self, request: SearchRequest) -> FfiFut<RVec<SearchHit>> {
        guard_future("cluster.search", || self.0.search(request))
    }
    fn merkle_node(&self, request: MerkleRequest) -> FfiFut<MerkleResponse> {
        guard_future("cluster.merkle_node", || self.0.merkle_node(request))
    }
}

/// A cluster module received through the boundary.
pub struct ForeignCluster(pub FfiClusterModuleBox);

impl ClusterModule for ForeignCluster {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn info(&self) -> ModuleInfo {
        report(self.0.info(), || {
            ModuleInfo::new("unknown", "0.0.0", "the plugin failed to describe itself")
        })
    }
    fn start(&self) -> ModuleFuture<()> {
        await_foreign("cluster.start", self.0.start())
    }
    fn shutdown(&self) -> ModuleFuture<()> {
        await_foreign("cluster.shutdown", self.0.shutdown())
    }
    fn partition_view(&self) -> Arc<dyn PartitionView> {
        match self.0.partition_view().into_result() {
            Ok(v) => partition_view_from_ffi(v),
            Err(e) => {
                report::<()>(abi_stable::std_types::RResult::RErr(e), || ());
                Arc::new(EverythingLocal)
            }
        }
    }
    fn attach_storage(&self, storage: Arc<dyn StorageAccessor>) -> ModuleResult<()> {
        self.0.attach_storage(accessor_to_ffi(storage)).into()
    }
    fn members(&self) -> RVec<Member> {
        report(self.0.members(), RVec::new)
    }
    fn partition_map(&self) -> PartitionMap {
        report(self.0.partition_map(), || PartitionMap {
            version: 0,
            partition_count: crate::hash::PARTITION_COUNT,
            nodes: RVec::new(),
            partitions: RVec::new(),
            generated_at: crate::hlc::system_millis(),
        })
    }
    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        await_foreign("cluster.replicate", self.0.replicate(request))
    }
    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        await_foreign("cluster.forward", self.0.forward(node, batch))
    }
    fn read_replica(&self, partition: u32, consistency: ConsistencyLevel) -> ROption<RString> {
        report(self.0.read_replica(partition, consistency), || {
            ROption::RNone
        })
    }
    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        await_foreign("cluster.lock", self.0.lock(request))
    }
    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool> {
        await_foreign("cluster.unlock", self.0.unlock(release))
    }
    fn release_holder(&self, holder: RString) -> ModuleFuture<u32> {
        await_foreign("cluster.release_holder", self.0.release_holder(holder))
    }
    fn repair(&self) -> ModuleFuture<RepairReport> {
        await_foreign("cluster.repair", self.0.repair())
    }
    fn attach_node(&self, node: Arc<dyn LocalNode>) -> ModuleResult<()> {
        self.0.attach_node(local_node_to_ffi(node)).into()
    }
    fn observe_change(&self, event: &ChangeEvent) {
        report(self.0.observe_change(event), || ());
    }
    fn publish_topic(&self, message: TopicPublish) -> ModuleFuture<()> {
        await_foreign("cluster.publish_topic", self.0.publish_topic(message))
    }
    fn status(&self) -> ClusterStatus {
        report(self.0.status(), || ClusterStatus {
            phase: ClusterPhase::Forming,
            ready: false,
            cluster_id: RString::new(),
            leader: ROption::RNone,
            raft_term: 0,
            raft_commit_index: 0,
            table_version: 0,
            members_alive: 0,
        })
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        await_foreign("cluster.query", self.0.query(request))
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        await_foreign(
            "cluster.subscribe",
            self.0.subscribe(id, request, query_sink_to_ffi(sink)),
        )
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        report(self.0.unsubscribe(id), || false)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        await_foreign("cluster.search", self.0.search(request))
    }
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        await_foreign("cluster.merkle_node", self.0.merkle_node(request))
    }
}

/// Stands in for a partition view the cluster plugin failed to hand out: it
/// treats every key as related so that storage loses nothing.
struct EverythingLocal;

impl PartitionView for EverythingLocal {
    fn local_node(&self) -> RString {
        RString::new()
    }
    fn version(&self) -> u64 {
        0
    }
    fn owner(&self, _: u32) -> ROption<RString> {
        ROption::RNone
    }
    fn backups(&self, _: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, _: u32) -> bool {
        true
    }
    fn is_related(&self, _: u32) -> bool {
        true
    }
}

conversions! {
    native: ClusterModule,
    ffi_box: FfiClusterModuleBox,
    ffi_to: FfiClusterModule_TO,
    export: ClusterExport,
    foreign: ForeignCluster,
    to_ffi: cluster_to_ffi,
    from_ffi: cluster_from_ffi,
    to_ffi_forced: cluster_to_ffi_forced,
    from_ffi_forced: cluster_from_ffi_forced,
}
