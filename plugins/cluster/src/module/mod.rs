//! `DefaultCluster`: the default `ClusterModule`. It only ties the parts
//! together; each concept lives in its own module:
//!
//! - `transport`: node-to-node frames on the cluster port (TLS optional);
//! - `membership`: gossip membership and failure detection (chitchat);
//! - `raft`: what is agreed (members, the partition table), on openraft;
//! - `formation`: forming the cluster, committing and installing tables;
//! - `routing`: forwarded writes, change events, topics;
//! - `replication`: shipping changes to backups at a consistency level;
//! - `migration`: moving partitions with their data to new holders;
//! - `repair`: anti-entropy between owners and backups;
//! - `locks`, `lock_service`: cluster-wide named locks decided by Raft.
//!
//! A node with no seeds forms a cluster of one at start and owns every
//! partition; `start` returns once its first table is committed. A node
//! with seeds returns from `start` at once and reports `ready` when it
//! belongs to a cluster with a table.
//!
//! # Layout
//!
//! - this file: the module's state (`DefaultCluster`, `Running`) and `create`;
//! - `boot`: starting the parts in order (transport, gossip, Raft, routing,
//!   replication, reads, migration, locks) and the status gauges;
//! - `dispatch`: what peers send, routed to the part that handles it;
//! - `api`: the `ClusterModule` trait methods.

mod api;
mod boot;
mod dispatch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use bytes::Bytes;
use futures::future::BoxFuture;
use hangar_core::config::ClusterModuleConfig;
use hangar_core::hlc::validate_node_id;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::cluster_types::{
    ClusterPhase, ClusterStatus, LockGrant, LockRelease, LockRequest, Member, NodeStatus,
    PartitionMap, RepairReport, ReplicationOutcome, ReplicationRequest,
};
use hangar_core::module::local_node::{LocalNode, TopicPublish};
use hangar_core::module::partition::{PartitionSet, PartitionView};
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::module::storage_types::{
    AckResult, ApplyBatch, ChangeEvent, MerkleRequest, MerkleResponse, Origin, OriginKind,
    QueryRequest, QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::module::{ready, ModuleFuture, ModuleInfo};
use hangar_core::{partition_of, ConsistencyLevel, ErrorKind, ModuleError, ModuleResult};
use hangar_plugin_sdk::PluginRuntime;
use parking_lot::Mutex;

use crate::formation::Formation;
use crate::lock_service::LockService;
use crate::membership::{GossipLink, Membership, MembershipConfig, PeerHealth};
use crate::migration::Migrator;
use crate::partition_table::PartitionTable;
use crate::raft::{ClusterRaft, NodeAddr, RaftRpc, RaftTiming};
use crate::repair::Repairer;
use crate::replication::{Replicator, Shipment};
use crate::routing::Router;
use crate::scatter::Scatter;
use crate::settings::{ClusterSettings, Discovery};
use crate::strategy::{Acks, DefaultStrategy, ReplicationStrategy, Zones};
use crate::transport::{Channel, Inbound, PeerInfo, TlsFiles, Transport, TransportConfig};
use crate::wire::{
    self, Control, ControlMessage, QueryCall, QueryMessage, Replicate, ReplicateReply, Topic,
};

use self::boot::Boot;
use self::dispatch::Dispatch;
/// The parts that exist once the module started.
struct Running {
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    raft: Arc<ClusterRaft>,
    router: Arc<Router>,
    replicator: Arc<Replicator>,
    scatter: Arc<Scatter>,
    storage: Arc<dyn StorageAccessor>,
    migrator: Arc<Migrator>,
    repairer: Arc<Repairer>,
    node_id: String,
    locks: Arc<LockService>,
    /// The Raft directory; a graceful leave marks it (see [`LEFT_MARKER`]).
    raft_dir: std::path::PathBuf,
}

/// File a node writes in its Raft directory once it left the cluster
/// gracefully: the membership change that removed it may never have
/// reached it, so at the next start it drops its Raft state and joins
/// like a new node (its stored data stays).
const LEFT_MARKER: &str = "LEFT";

/// The default cluster module.
pub struct DefaultCluster {
    config: ClusterModuleConfig,
    /// The plugin's own settings, decoded from `config.settings`.
    settings: ClusterSettings,
    deps: ClusterDeps,
    runtime: Arc<PluginRuntime>,
    table: Arc<PartitionTable>,
    storage: Mutex<Option<Arc<dyn StorageAccessor>>>,
    node: Mutex<Option<Arc<dyn LocalNode>>>,
    running: Arc<OnceLock<Arc<Running>>>,
    started: AtomicBool,
    stopped: AtomicBool,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Placement, shipping and acknowledgement policy (see `crate::strategy`).
    strategy: Arc<dyn ReplicationStrategy>,
}

impl std::fmt::Debug for DefaultCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultCluster")
            .field("node_id", &self.config.node_id)
            .field("strategy", &self.strategy.name())
            .finish_non_exhaustive()
    }
}

/// Builds the default cluster module with the [`DefaultStrategy`].
///
/// # Errors
/// [`ErrorKind::CONFIG`] for an invalid node id, or settings that do not
/// decode as [`ClusterSettings`] or break its rules, naming the plugin, the
/// setting and what was expected.
pub fn create(
    config: ClusterModuleConfig,
    deps: ClusterDeps,
) -> ModuleResult<Arc<dyn ClusterModule>> {
    create_with_strategy(config, deps, Arc::new(DefaultStrategy))
}

/// Builds the default cluster module with `strategy` deciding placement,
/// shipping and acknowledgements (see `crate::strategy`). This is how
/// another crate makes a cluster plugin of its own replication policy
/// (see `crate::export_cluster_plugin_with_strategy!`).
///
/// # Errors
/// As [`create`].
pub fn create_with_strategy(
    config: ClusterModuleConfig,
    deps: ClusterDeps,
    strategy: Arc<dyn ReplicationStrategy>,
) -> ModuleResult<Arc<dyn ClusterModule>> {
    DefaultCluster::with_strategy(config, deps, strategy).map(|c| c as Arc<dyn ClusterModule>)
}

fn config_error(msg: String) -> ModuleError {
    ModuleError::new(ErrorKind::CONFIG, msg)
}

fn unavailable(msg: impl Into<String>) -> ModuleError {
    ModuleError::new(ErrorKind::UNAVAILABLE, msg.into())
}

impl DefaultCluster {
    /// See [`create`].
    ///
    /// # Errors
    /// As [`create`].
    pub fn new(config: ClusterModuleConfig, deps: ClusterDeps) -> ModuleResult<Arc<Self>> {
        Self::with_strategy(config, deps, Arc::new(DefaultStrategy))
    }

    /// See [`create_with_strategy`].
    ///
    /// # Errors
    /// As [`create`].
    pub fn with_strategy(
        config: ClusterModuleConfig,
        deps: ClusterDeps,
        strategy: Arc<dyn ReplicationStrategy>,
    ) -> ModuleResult<Arc<Self>> {
        validate_node_id(&config.node_id)
            .map_err(|e| config_error(format!("cluster.node_id: {e}")))?;
        let settings: ClusterSettings = config.settings.decode()?;
        let runtime = PluginRuntime::new(env!("CARGO_PKG_NAME"), 2)?;
        Ok(Arc::new(Self {
            table: PartitionTable::single(&config.node_id),
            config,
            settings,
            deps,
            runtime,
            storage: Mutex::new(None),
            node: Mutex::new(None),
            running: Arc::new(OnceLock::new()),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            tasks: Arc::new(Mutex::new(Vec::new())),
            strategy,
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

    fn running(&self) -> Option<&Arc<Running>> {
        self.running.get()
    }

    /// The lock service, once started and until shut down.
    fn lock_service(&self, what: &str) -> ModuleResult<Arc<LockService>> {
        self.check_running(what)?;
        self.running().map(|r| r.locks.clone()).ok_or_else(|| {
            unavailable(format!(
                "cluster.{what}: the cluster module has not started; locks are decided once it has"
            ))
        })
    }

    /// Seeds from config (or the peer resolver, or the Kubernetes service).
    fn seed_strings(&self) -> Vec<String> {
        let mut seeds: Vec<String> = match &self.deps.peer_resolver {
            Some(r) => r.resolve().into_iter().map(|s| s.to_string()).collect(),
            None => self.settings.seed_nodes.clone(),
        };
        if self.settings.discovery == Discovery::Kubernetes {
            if let Some(svc) = &self.settings.service_name {
                let svc = if svc.contains(':') {
                    svc.clone()
                } else {
                    format!("{svc}:{}", self.settings.cluster_port)
                };
                seeds.push(svc);
            }
        }
        seeds
    }

    /// The consistency of a replication request: the request's, else the
    /// strongest configured for any of its maps, else the default.
    fn level_of(&self, request: &ReplicationRequest) -> ConsistencyLevel {
        if let ROption::RSome(c) = request.consistency {
            return c;
        }
        request
            .changes
            .iter()
            .filter_map(|c| self.settings.map_consistency.get(c.map.as_str()).copied())
            .max()
            .unwrap_or(self.settings.default_consistency)
    }

    /// What `start` needs, taken from the module so the start-up future
    /// owns it.
    fn boot_parts(&self) -> ModuleResult<Boot> {
        Ok(Boot {
            config: self.config.clone(),
            settings: self.settings.clone(),
            deps: self.deps.clone(),
            seeds: self.seed_strings(),
            table: self.table.clone(),
            strategy: self.strategy.clone(),
            running: self.running.clone(),
            storage: self.storage.lock().clone().ok_or_else(|| {
                ModuleError::invalid("cluster.start: attach_storage was not called")
            })?,
            node: self.node.lock().clone(),
            handle: self.runtime.handle().clone(),
            tasks: self.tasks.clone(),
        })
    }
}
