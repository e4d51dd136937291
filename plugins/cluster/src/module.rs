//! `DefaultCluster`: the default `ClusterModule`.
//!
//! This version runs as a single node: it owns all 271 partitions, so every
//! write is local, replication succeeds at once (there are no backups) and
//! locks live here. Configuration that asks for more (peers, discovery,
//! cluster TLS) is refused at construction with a clear error rather than
//! silently ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::{ClusterModuleConfig, Discovery};
use hangar_core::hlc::validate_node_id;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::cluster_types::{
    LockGrant, LockRelease, LockRequest, Member, NodeStatus, PartitionMap, RepairReport,
    ReplicationOutcome, ReplicationRequest,
};
use hangar_core::module::partition::PartitionView;
use hangar_core::module::storage_types::{AckResult, ApplyBatch};
use hangar_core::module::{ready, ModuleFuture, ModuleInfo};
use hangar_core::{ConsistencyLevel, ErrorKind, ModuleError, ModuleResult};
use hangar_plugin_sdk::PluginRuntime;
use parking_lot::Mutex;

use crate::locks::LockManager;
use crate::merkle_manager::MerkleTreeManager;
use crate::partition_table::PartitionTable;

/// The default cluster module.
pub struct DefaultCluster {
    config: ClusterModuleConfig,
    deps: ClusterDeps,
    runtime: Arc<PluginRuntime>,
    table: Arc<PartitionTable>,
    locks: Arc<LockManager>,
    merkle: Arc<MerkleTreeManager>,
    storage: Mutex<Option<Arc<dyn StorageAccessor>>>,
    started: AtomicBool,
    stopped: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for DefaultCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultCluster")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

/// Builds the default cluster module.
///
/// # Errors
/// [`ErrorKind::CONFIG`] for an invalid node id, and for settings this
/// single-node version cannot honour (peers, a peer resolver, Kubernetes
/// discovery, cluster TLS), naming the setting.
pub fn create(
    config: ClusterModuleConfig,
    deps: ClusterDeps,
) -> ModuleResult<Arc<dyn ClusterModule>> {
    DefaultCluster::new(config, deps).map(|c| c as Arc<dyn ClusterModule>)
}

fn config_error(msg: String) -> ModuleError {
    ModuleError::new(ErrorKind::CONFIG, msg)
}

impl DefaultCluster {
    /// See [`create`].
    ///
    /// # Errors
    /// As [`create`].
    pub fn new(config: ClusterModuleConfig, deps: ClusterDeps) -> ModuleResult<Arc<Self>> {
        validate_node_id(&config.node_id)
            .map_err(|e| config_error(format!("cluster.node_id: {e}")))?;
        let peers: Vec<String> = match &deps.peer_resolver {
            Some(r) => r.resolve().into_iter().map(|s| s.to_string()).collect(),
            None => config.peers.clone(),
        };
        if !peers.is_empty() {
            return Err(config_error(format!(
                "cluster.peers: this version of {} runs as a single node and cannot join peers {peers:?}; expected no peers",
                env!("CARGO_PKG_NAME")
            )));
        }
        if config.discovery == Discovery::Kubernetes {
            return Err(config_error(
                "cluster.discovery = \"kubernetes\" is not supported by this single-node version; expected \"manual\"".into(),
            ));
        }
        if config.cluster_tls.as_ref().is_some_and(|t| t.enabled) {
            return Err(config_error(
                "cluster.cluster_tls.enabled: this single-node version has no cluster transport to secure; expected it off".into(),
            ));
        }
        let lock_dir = config.data_dir.as_deref();
        let locks = Arc::new(LockManager::new(lock_dir)?);
        let runtime = PluginRuntime::new(env!("CARGO_PKG_NAME"), 1)?;
        Ok(Arc::new(Self {
            table: PartitionTable::single(&config.node_id),
            merkle: Arc::new(MerkleTreeManager::default()),
            config,
            deps,
            runtime,
            locks,
            storage: Mutex::new(None),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    fn check_running(&self, what: &str) -> ModuleResult<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(ModuleError::new(
                ErrorKind::SHUT_DOWN,
                format!("cluster.{what}: the cluster module has shut down"),
            ));
        }
        Ok(())
    }

    fn endpoint(&self) -> String {
        self.config.client_endpoint.clone().unwrap_or_default()
    }
}

impl ClusterModule for DefaultCluster {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            "single node: owns all 271 partitions",
        )
    }

    fn start(&self) -> ModuleFuture<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return ready(Ok(()));
        }
        let locks = self.locks.clone();
        let clock = self.deps.clock.clone();
        let sweeper = self.runtime.handle().spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let expired = locks.sweep(clock.wall_millis());
                if expired > 0 {
                    tracing::debug!(expired, "released expired locks");
                }
            }
        });
        self.tasks.lock().push(sweeper);
        tracing::info!(node = %self.config.node_id, "cluster module started (single node)");
        ready(Ok(()))
    }

    fn shutdown(&self) -> ModuleFuture<()> {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            for t in self.tasks.lock().drain(..) {
                t.abort();
            }
            tracing::info!("cluster module stopped");
        }
        ready(Ok(()))
    }

    fn partition_view(&self) -> Arc<dyn PartitionView> {
        self.table.clone()
    }

    fn attach_storage(&self, storage: Arc<dyn StorageAccessor>) -> ModuleResult<()> {
        if self.started.load(Ordering::Acquire) {
            return Err(ModuleError::invalid(
                "cluster.attach_storage: must be called before start",
            ));
        }
        let mut slot = self.storage.lock();
        if slot.is_some() {
            return Err(ModuleError::invalid(
                "cluster.attach_storage: a storage accessor is already attached",
            ));
        }
        *slot = Some(storage);
        Ok(())
    }

    fn members(&self) -> RVec<Member> {
        RVec::from(vec![Member {
            node_id: self.config.node_id.as_str().into(),
            address: format!("{}:{}", self.config.host, self.config.cluster_port).into(),
            client_endpoint: self.endpoint().into(),
            status: NodeStatus::Active,
            is_local: true,
        }])
    }

    fn partition_map(&self) -> PartitionMap {
        let me = self.endpoint();
        self.table
            .to_map(|_| me.clone(), self.deps.clock.wall_millis())
    }

    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        if let Err(e) = self.check_running("replicate") {
            return ready(Err(e));
        }
        // Owner of every partition and no backups: the trees are kept
        // current, and any consistency level is met by this node alone.
        self.merkle.apply(&request.changes);
        ready(Ok(ReplicationOutcome {
            success: true,
            acked_by: RVec::from(vec![RString::from(self.config.node_id.as_str())]),
            error: ROption::RNone,
        }))
    }

    fn forward(&self, node: RString, _batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        ready(Err(ModuleError::new(
            ErrorKind::UNAVAILABLE,
            format!("cluster.forward: node {node} is not a member; this node is alone and owns every partition"),
        )))
    }

    fn read_replica(&self, partition: u32, _consistency: ConsistencyLevel) -> ROption<RString> {
        self.table.owner(partition)
    }

    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        if let Err(e) = self.check_running("lock") {
            return ready(Err(e));
        }
        ready(self.locks.acquire(&request, self.deps.clock.wall_millis()))
    }

    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool> {
        ready(Ok(self.locks.release(&release)))
    }

    fn release_holder(&self, holder: RString) -> ModuleFuture<u32> {
        ready(Ok(self.locks.release_holder(holder.as_str())))
    }

    fn merkle_root(&self, partition: u32) -> u32 {
        self.merkle.root(partition)
    }

    fn repair(&self) -> ModuleFuture<RepairReport> {
        // Alone there is no replica to compare with: nothing to check.
        ready(Ok(RepairReport::default()))
    }
}
