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
//! - `locks`, `lock_service`: cluster-wide named locks decided by Raft.
//!
//! A node with no seeds forms a cluster of one at start and owns every
//! partition; `start` returns once its first table is committed. A node
//! with seeds returns from `start` at once and reports `ready` when it
//! belongs to a cluster with a table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use bytes::Bytes;
use futures::future::BoxFuture;
use hangar_core::config::{ClusterModuleConfig, Discovery};
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
use crate::replication::{required_acks, Replicator, Shipment};
use crate::routing::Router;
use crate::scatter::Scatter;
use crate::transport::{Channel, Inbound, PeerInfo, TlsFiles, Transport, TransportConfig};
use crate::wire::{
    self, Control, ControlMessage, QueryCall, QueryMessage, Replicate, ReplicateReply, Topic,
};

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
    deps: ClusterDeps,
    runtime: Arc<PluginRuntime>,
    table: Arc<PartitionTable>,
    storage: Mutex<Option<Arc<dyn StorageAccessor>>>,
    node: Mutex<Option<Arc<dyn LocalNode>>>,
    running: Arc<OnceLock<Arc<Running>>>,
    started: AtomicBool,
    stopped: AtomicBool,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
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
/// [`ErrorKind::CONFIG`] for an invalid node id or cluster setting, naming
/// the setting and what was expected.
pub fn create(
    config: ClusterModuleConfig,
    deps: ClusterDeps,
) -> ModuleResult<Arc<dyn ClusterModule>> {
    DefaultCluster::new(config, deps).map(|c| c as Arc<dyn ClusterModule>)
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
        validate_node_id(&config.node_id)
            .map_err(|e| config_error(format!("cluster.node_id: {e}")))?;
        if config.cluster_id.is_empty() {
            return Err(config_error(
                "cluster.cluster_id: must not be empty; expected a name all nodes of the cluster share".into(),
            ));
        }
        if config.discovery == Discovery::Kubernetes && config.service_name.is_none() {
            return Err(config_error(
                "cluster.discovery = \"kubernetes\" needs cluster.service_name (the headless service's DNS name)".into(),
            ));
        }
        if config.gossip_interval_ms == 0 {
            return Err(config_error(
                "cluster.gossip_interval_ms: must be positive".into(),
            ));
        }
        if let Some(tls) = config.cluster_tls.as_ref().filter(|t| t.enabled) {
            if tls.ca_cert_path.is_none() {
                return Err(config_error(
                    "cluster.cluster_tls.ca_cert_path: required when cluster TLS is enabled (peers are verified against it)".into(),
                ));
            }
        }
        let runtime = PluginRuntime::new(env!("CARGO_PKG_NAME"), 2)?;
        Ok(Arc::new(Self {
            table: PartitionTable::single(&config.node_id),
            config,
            deps,
            runtime,
            storage: Mutex::new(None),
            node: Mutex::new(None),
            running: Arc::new(OnceLock::new()),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            tasks: Arc::new(Mutex::new(Vec::new())),
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
            None => self.config.seed_nodes.clone(),
        };
        if self.config.discovery == Discovery::Kubernetes {
            if let Some(svc) = &self.config.service_name {
                let svc = if svc.contains(':') {
                    svc.clone()
                } else {
                    format!("{svc}:{}", self.config.cluster_port)
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
            .filter_map(|c| self.config.map_consistency.get(c.map.as_str()).copied())
            .max()
            .unwrap_or(self.config.default_consistency)
    }

    /// What `start` needs, taken from the module so the start-up future
    /// owns it.
    fn boot_parts(&self) -> ModuleResult<Boot> {
        Ok(Boot {
            config: self.config.clone(),
            deps: self.deps.clone(),
            seeds: self.seed_strings(),
            table: self.table.clone(),
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

/// The module's parts, owned by the start-up future.
struct Boot {
    config: ClusterModuleConfig,
    deps: ClusterDeps,
    seeds: Vec<String>,
    table: Arc<PartitionTable>,
    running: Arc<OnceLock<Arc<Running>>>,
    storage: Arc<dyn StorageAccessor>,
    node: Option<Arc<dyn LocalNode>>,
    handle: tokio::runtime::Handle,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Boot {
    async fn boot(self) -> ModuleResult<()> {
        let c = &self.config;
        let storage = self.storage.clone();
        let node = self.node.clone();
        let bind = resolve_one(&c.host, c.cluster_port)
            .await
            .map_err(|e| config_error(format!("cluster.host {:?}: {e}", c.host)))?;
        let advertise_ip = match &c.advertise_host {
            Some(h) => Some(
                resolve_one(h, 0)
                    .await
                    .map_err(|e| config_error(format!("cluster.advertise_host {h:?}: {e}")))?
                    .ip(),
            ),
            None if bind.ip().is_unspecified() => {
                return Err(config_error(format!(
                    "cluster.host is {}: set cluster.advertise_host to the address peers reach this node at",
                    bind.ip()
                )))
            }
            None => None,
        };
        let tls = c
            .cluster_tls
            .as_ref()
            .filter(|t| t.enabled)
            .map(|t| TlsFiles {
                cert_path: t.cert_path.clone(),
                key_path: t.key_path.clone(),
                ca_cert_path: t.ca_cert_path.clone().unwrap_or_default(),
                require_client_cert: true,
            });
        let dispatch = Arc::new(Dispatch {
            running: self.running.clone(),
        });
        let transport = Transport::start(
            TransportConfig {
                cluster_id: c.cluster_id.clone(),
                node_id: c.node_id.clone(),
                bind,
                advertise_ip,
                tls,
                ..TransportConfig::default()
            },
            dispatch,
            self.deps.metrics.clone(),
        )
        .await
        .map_err(|e| unavailable(format!("cluster transport: {e}")))?;
        let addr = transport.local_addr();
        tracing::info!(node = %c.node_id, cluster = %c.cluster_id, %addr, "cluster transport listening");

        let seed_strings = self.seeds.clone();
        let mut seeds = Vec::new();
        for s in &seed_strings {
            match tokio::net::lookup_host(s.as_str()).await {
                // Only addresses of the family this node speaks count as
                // seeds to hear from ("localhost" also resolves to ::1).
                Ok(addrs) => {
                    seeds.extend(addrs.filter(|a| *a != addr && a.is_ipv4() == addr.is_ipv4()));
                }
                Err(e) => {
                    tracing::warn!(seed = %s, error = %e, "seed does not resolve yet; gossip retries it")
                }
            }
        }
        seeds.sort();
        seeds.dedup();
        let client_endpoint = c.client_endpoint.clone().unwrap_or_default();
        let interval = Duration::from_millis(c.gossip_interval_ms);
        let membership = Membership::start(
            MembershipConfig {
                node_id: c.node_id.clone(),
                cluster_id: c.cluster_id.clone(),
                addr,
                seeds: seed_strings
                    .iter()
                    .filter(|s| s.parse::<SocketAddr>().ok() != Some(addr))
                    .cloned()
                    .collect(),
                gossip_interval: interval,
                phi_threshold: f64::from(c.phi_threshold),
                failure_confirm: Duration::from_millis(c.failure_confirm_ms),
                client_endpoint: client_endpoint.clone(),
                zone: c.zone.clone(),
            },
            Arc::new(TransportGossip(transport.clone())),
        )
        .await
        .map_err(unavailable)?;

        let me = NodeAddr {
            node_id: c.node_id.clone(),
            cluster_addr: addr.to_string(),
            client_endpoint,
            zone: c.zone.clone(),
        };
        let dir = c
            .data_dir
            .clone()
            .unwrap_or_else(|| {
                std::path::PathBuf::from("data")
                    .join(&c.node_id)
                    .join("cluster")
            })
            .join("raft");
        if dir.join(LEFT_MARKER).exists() {
            tracing::info!(dir = %dir.display(), "this node left its cluster gracefully; joining again as a new member");
            std::fs::remove_dir_all(&dir).map_err(|e| {
                ModuleError::new(
                    ErrorKind::STORAGE,
                    format!(
                        "cannot clear the Raft directory {} of a node that left: {e}",
                        dir.display()
                    ),
                )
            })?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            ModuleError::new(
                ErrorKind::STORAGE,
                format!("cannot create the Raft directory {}: {e}", dir.display()),
            )
        })?;
        let raft = ClusterRaft::open(
            &dir,
            me.clone(),
            Arc::new(TransportRaft(transport.clone())),
            RaftTiming::default(),
        )
        .await
        .map_err(|e| unavailable(format!("raft: {e}")))?;

        let default_timeout = Duration::from_millis(c.replication.ack_timeout_ms.max(1_000));
        let router = Router::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            node.clone(),
            default_timeout,
            self.deps.metrics.clone(),
        );
        let replicator = Replicator::new(
            transport.clone(),
            c.replication.clone(),
            self.deps.metrics.clone(),
        );
        let scatter = Scatter::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            storage.clone(),
        );
        let locks = LockService::new(&c.node_id, raft.clone(), membership.clone());
        let migrator = Migrator::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            storage.clone(),
            c.migration.clone(),
            self.deps.metrics.clone(),
        );
        let _ = self.running.set(Arc::new(Running {
            transport: transport.clone(),
            membership: membership.clone(),
            raft: raft.clone(),
            router,
            replicator,
            scatter,
            storage: storage.clone(),
            migrator: migrator.clone(),
            node_id: c.node_id.clone(),
            locks: locks.clone(),
            raft_dir: dir.clone(),
        }));
        let formation = Arc::new(Formation {
            me,
            seeds,
            gossip_interval: interval,
            bootstrap_timeout: Duration::from_millis(c.bootstrap_timeout_ms),
            backup_count: c.backup_count as usize,
            leader_grace: Duration::from_millis(c.failure_confirm_ms) + interval * 20,
            transport,
            membership,
            raft,
            table: self.table.clone(),
            storage,
            node,
            metrics: self.deps.metrics.clone(),
            migrator,
        });
        {
            let h = &self.handle;
            let mut tasks = self.tasks.lock();
            tasks.push(h.spawn(formation.clone().bootstrap()));
            tasks.push(h.spawn(formation.clone().keep_table()));
            tasks.push(h.spawn(formation.install_tables()));
            tasks.push(h.spawn(report_status(
                self.running.clone(),
                self.deps.metrics.clone(),
            )));
            tasks.push(h.spawn(locks.keep()));
        }

        if seed_strings.is_empty() {
            // Alone: serve once the first table (everything ours) is in.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while self.table.version() == 0 {
                if tokio::time::Instant::now() >= deadline {
                    return Err(unavailable(
                        "a node without seeds did not commit its first partition table within 30 s",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tracing::info!(node = %c.node_id, seeds = ?seed_strings, "cluster module started");
        Ok(())
    }
}

/// Publishes membership and Raft gauges once a second.
async fn report_status(running: Arc<OnceLock<Arc<Running>>>, metrics: Arc<dyn MetricsSink>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(r) = running.get() else { continue };
        let peers = r.membership.peers();
        let count = |h: PeerHealth| peers.values().filter(|p| p.health == h).count();
        let s = r.raft.status();
        #[allow(clippy::cast_precision_loss)]
        {
            for (label, h) in [
                ("alive", PeerHealth::Alive),
                ("suspected", PeerHealth::Suspected),
                ("failed", PeerHealth::Failed),
            ] {
                metrics.gauge(
                    "hangar_cluster_members",
                    &[("health", label)],
                    count(h) as f64,
                );
            }
            metrics.gauge("hangar_cluster_raft_term", &[], s.term as f64);
            metrics.gauge(
                "hangar_cluster_live_query_registrations",
                &[],
                crate::scatter::registrations(&r.scatter) as f64,
            );
            metrics.gauge(
                "hangar_cluster_raft_commit_index",
                &[],
                s.commit_index as f64,
            );
            metrics.gauge(
                "hangar_cluster_raft_is_leader",
                &[],
                if s.is_leader { 1.0 } else { 0.0 },
            );
        }
    }
}

/// Resolves `host:port` to one address, IPv4 first.
async fn resolve_one(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("does not resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// Gossip frames over the transport.
struct TransportGossip(Arc<Transport>);

impl GossipLink for TransportGossip {
    fn send(&self, to: SocketAddr, frame: Bytes) {
        if let Err(e) = self.0.try_send(to, Channel::Gossip, frame) {
            tracing::trace!(peer = %to, error = %e, "gossip frame dropped");
        }
    }
}

/// Raft RPCs over the transport.
struct TransportRaft(Arc<Transport>);

impl RaftRpc for TransportRaft {
    fn call(
        &self,
        cluster_addr: &str,
        body: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let t = self.0.clone();
        let addr = cluster_addr.parse::<SocketAddr>();
        Box::pin(async move {
            let addr = addr.map_err(|e| format!("bad Raft address: {e}"))?;
            t.request(addr, Channel::Raft, body, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Routes what peers send to the part that handles it.
struct Dispatch {
    running: Arc<OnceLock<Arc<Running>>>,
}

impl Inbound for Dispatch {
    fn on_message(&self, from: &PeerInfo, channel: Channel, body: Bytes) {
        let Some(r) = self.running.get() else { return };
        match channel {
            Channel::Gossip => r.membership.receive(from.addr, body),
            Channel::Query => match wire::decode(&body, "query message") {
                Ok(QueryMessage::Events(ev)) => r.router.on_events(ev),
                Ok(m) => r.scatter.on_message(from, m),
                Err(e) => tracing::warn!(peer = %from.node_id, "{e}"),
            },
            Channel::Control => match wire::decode(&body, "control message") {
                Ok(ControlMessage::Topic(Topic::Deliver(m))) => r.router.on_deliver(m),
                Ok(other) => {
                    tracing::warn!(peer = %from.node_id, message = ?other, "unexpected one-way control message");
                }
                Err(e) => tracing::warn!(peer = %from.node_id, "{e}"),
            },
            other => {
                tracing::warn!(peer = %from.node_id, channel = ?other, "unexpected one-way message");
            }
        }
    }

    fn on_request(
        &self,
        from: PeerInfo,
        channel: Channel,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let Some(r) = self.running.get().cloned() else {
            return Box::pin(async { Err("this node is still starting".to_string()) });
        };
        Box::pin(async move {
            match channel {
                Channel::Raft => r.raft.handle_rpc(body).await,
                Channel::Control => match wire::decode(&body, "control request")? {
                    ControlMessage::Control(Control::Join(n)) => {
                        tracing::info!(node = %n.node_id, addr = %n.cluster_addr, "admitting a node");
                        r.raft
                            .add_member(n)
                            .await
                            .map(|()| wire::encode(&()))
                            .map_err(|e| e.to_string())
                    }
                    ControlMessage::Topic(Topic::Publish(m)) => {
                        r.router.publish(m).await.map_err(|e| e.to_string())?;
                        Ok(wire::encode(&()))
                    }
                    ControlMessage::Topic(Topic::Deliver(m)) => {
                        r.router.on_deliver(m);
                        Ok(wire::encode(&()))
                    }
                },
                Channel::Query => {
                    let call: QueryCall = wire::decode(&body, "query request")?;
                    r.scatter.on_request(from, call).await
                }
                Channel::Migration => r.migrator.on_request(&from, body).await,
                Channel::Forward => {
                    let f = wire::decode(&body, "forwarded write")?;
                    r.router.on_forward(f).await.map(|a| wire::encode(&a))
                }
                Channel::Replication => {
                    let req: Replicate = wire::decode(&body, "replication batch")?;
                    let n = req.changes.len();
                    let origin = Origin {
                        kind: OriginKind::Replication,
                        connection: 0,
                        node: from.node_id.as_str().into(),
                    };
                    r.storage
                        .apply_replicated(req.changes.into(), origin)
                        .await
                        .map_err(|e| e.to_string())?;
                    if req.durable {
                        r.storage
                            .durable_barrier()
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(wire::encode(&ReplicateReply {
                        applied: u32::try_from(n).unwrap_or(u32::MAX),
                        durable: req.durable,
                    }))
                }
                other => Err(format!("no requests are served on channel {other:?}")),
            }
        })
    }
}

impl ClusterModule for DefaultCluster {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            "gossip membership (chitchat), Raft-agreed partition table (openraft), replication over the cluster port",
        )
    }

    fn start(&self) -> ModuleFuture<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return ready(Ok(()));
        }
        match self.boot_parts() {
            Ok(b) => self.runtime.spawn_call("cluster.start", b.boot()),
            Err(e) => ready(Err(e)),
        }
    }

    fn shutdown(&self) -> ModuleFuture<()> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return ready(Ok(()));
        }
        let running = self.running().cloned();
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        let gossip_interval = Duration::from_millis(self.config.gossip_interval_ms);
        let leave_timeout = Duration::from_millis(self.config.migration.leave_timeout_ms);
        self.runtime.spawn_call("cluster.shutdown", async move {
            if let Some(r) = running {
                // Tell peers first, so they take over without waiting for
                // the failure detector, and hand the partitions off.
                r.membership.set_leaving().await;
                crate::migration::hand_off(
                    &r.membership,
                    &r.raft,
                    &r.node_id,
                    &r.raft_dir.join(LEFT_MARKER),
                    leave_timeout,
                    gossip_interval,
                )
                .await;
                tokio::time::sleep(gossip_interval * 3).await;
                for t in &tasks {
                    t.abort();
                }
                r.raft.shutdown().await;
                r.membership.shutdown().await;
                r.transport.shutdown();
            } else {
                for t in &tasks {
                    t.abort();
                }
            }
            tracing::info!("cluster module stopped");
            Ok(())
        })
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
        let Some(r) = self.running() else {
            return RVec::from(vec![Member {
                node_id: self.config.node_id.as_str().into(),
                address: format!("{}:{}", self.config.host, self.config.cluster_port).into(),
                client_endpoint: self
                    .config
                    .client_endpoint
                    .clone()
                    .unwrap_or_default()
                    .into(),
                status: NodeStatus::Joining,
                is_local: true,
            }]);
        };
        let peers = r.membership.peers();
        let mut out: HashMap<String, Member> = HashMap::new();
        for (a, voter) in r.raft.members() {
            let p = peers.get(&a.node_id);
            let status = match p {
                Some(p) if p.leaving => NodeStatus::Leaving,
                Some(p) if p.health == PeerHealth::Suspected => NodeStatus::Suspected,
                Some(p) if p.health == PeerHealth::Failed => NodeStatus::Failed,
                Some(_) if voter => NodeStatus::Active,
                Some(_) => NodeStatus::Joining,
                None => NodeStatus::Suspected,
            };
            out.insert(
                a.node_id.clone(),
                Member {
                    node_id: a.node_id.as_str().into(),
                    address: a.cluster_addr.as_str().into(),
                    client_endpoint: p
                        .map_or(a.client_endpoint.as_str(), |p| p.client_endpoint.as_str())
                        .into(),
                    status,
                    is_local: a.node_id == r.node_id,
                },
            );
        }
        for p in peers.values() {
            out.entry(p.node_id.clone()).or_insert_with(|| Member {
                node_id: p.node_id.as_str().into(),
                address: p.addr.to_string().into(),
                client_endpoint: p.client_endpoint.as_str().into(),
                status: match p.health {
                    PeerHealth::Alive => NodeStatus::Joining,
                    PeerHealth::Suspected => NodeStatus::Suspected,
                    PeerHealth::Failed => NodeStatus::Failed,
                },
                is_local: p.is_local,
            });
        }
        let mut v: Vec<Member> = out.into_values().collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v.into()
    }

    fn partition_map(&self) -> PartitionMap {
        let members = self.members();
        let extra: Vec<String> = members
            .iter()
            .filter(|m| m.status != NodeStatus::Failed)
            .map(|m| m.node_id.to_string())
            .collect();
        self.table.to_map(
            |id| {
                members
                    .iter()
                    .find(|m| m.node_id.as_str() == id)
                    .map(|m| (m.client_endpoint.to_string(), m.status))
            },
            &extra,
            self.deps.clock.wall_millis(),
        )
    }

    fn replicate(&self, request: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        if let Err(e) = self.check_running("replicate") {
            return ready(Err(e));
        }
        let me: RString = self.config.node_id.as_str().into();
        let level = self.level_of(&request);
        let Some(r) = self.running().cloned() else {
            return ready(Ok(ReplicationOutcome {
                success: true,
                acked_by: RVec::from(vec![me]),
                error: ROption::RNone,
            }));
        };
        // Group the changes by receiving node; remember which nodes count
        // for each change. The receivers are the partition's holders
        // (owner and backups) other than this node: normally the backups,
        // but when ownership moved while the write ran (a migration swapped
        // roles), the new owner is among them and this node is not shipped
        // to itself. Pending holders (see `migration`) receive every write
        // too, before it is acknowledged, but count toward no level.
        let peers = r.membership.peers();
        let table = self.table.current();
        let mut per_node: HashMap<String, Vec<hangar_core::KeyedOp>> = HashMap::new();
        let mut needs: Vec<(Vec<String>, usize)> = Vec::with_capacity(request.changes.len());
        for ch in request.changes.iter() {
            let p = partition_of(&ch.key) as usize;
            let (Some(owner), Some(backups)) = (table.owners.get(p), table.backups.get(p)) else {
                continue;
            };
            let mut counted: Vec<String> = Vec::with_capacity(backups.len());
            for n in std::iter::once(owner).chain(backups) {
                if *n != self.config.node_id && !counted.contains(n) {
                    counted.push(n.clone());
                }
            }
            for n in counted.iter().chain(
                table
                    .pending_of(p)
                    .iter()
                    .filter(|n| **n != self.config.node_id),
            ) {
                per_node.entry(n.clone()).or_default().push(ch.clone());
            }
            needs.push((counted, required_acks(level, backups.len())));
        }
        let mut unreachable = Vec::new();
        let shipments: Vec<Shipment> = per_node
            .into_iter()
            .filter_map(|(node, changes)| match peers.get(&node) {
                Some(p) if p.health != PeerHealth::Failed => Some(Shipment {
                    node,
                    addr: p.addr,
                    changes,
                }),
                _ => {
                    unreachable.push(node);
                    None
                }
            })
            .collect();
        let wait = needs.iter().any(|(_, n)| *n > 0);
        // Durability on backups matters only to a write that waits for them:
        // at EVENTUAL (or with no backup to wait for) PERSISTED means durable
        // on the owner, and a barrier per batch would only slow the stream.
        let durable = request.durable && wait;
        self.runtime.spawn_call("cluster.replicate", async move {
            let results = r.replicator.ship(shipments, wait, durable).await;
            let acked: Vec<String> = results
                .iter()
                .filter(|(_, res)| res.is_ok())
                .map(|(n, _)| n.clone())
                .collect();
            let met = needs
                .iter()
                .all(|(b, need)| b.iter().filter(|x| acked.contains(x)).count() >= *need);
            let mut acked_by: Vec<RString> = vec![me];
            acked_by.extend(acked.iter().map(|n| RString::from(n.as_str())));
            let error = if met {
                ROption::RNone
            } else {
                let mut why: Vec<String> = results
                    .iter()
                    .filter_map(|(n, res)| res.as_ref().err().map(|e| format!("{n}: {e}")))
                    .collect();
                why.extend(
                    unreachable
                        .iter()
                        .map(|n| format!("{n}: not a live member")),
                );
                ROption::RSome(format!("{level:?} not met: {}", why.join("; ")).into())
            };
            Ok(ReplicationOutcome {
                success: met,
                acked_by: acked_by.into(),
                error,
            })
        })
    }

    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        if let Err(e) = self.check_running("forward") {
            return ready(Err(e));
        }
        let Some(r) = self.running().cloned() else {
            return ready(Err(unavailable(
                "cluster.forward: the cluster module has not started",
            )));
        };
        self.runtime.spawn_call("cluster.forward", async move {
            r.router.forward(node.into(), batch, 0).await
        })
    }

    fn read_replica(&self, partition: u32, _consistency: ConsistencyLevel) -> ROption<RString> {
        self.table.owner(partition)
    }

    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        let locks = match self.lock_service("lock") {
            Ok(l) => l,
            Err(e) => return ready(Err(e)),
        };
        self.runtime
            .spawn_call("cluster.lock", async move { locks.lock(request).await })
    }

    fn unlock(&self, release: LockRelease) -> ModuleFuture<bool> {
        let locks = match self.lock_service("unlock") {
            Ok(l) => l,
            Err(e) => return ready(Err(e)),
        };
        self.runtime
            .spawn_call("cluster.unlock", async move { locks.unlock(release).await })
    }

    fn release_holder(&self, holder: RString) -> ModuleFuture<u32> {
        let locks = match self.lock_service("release_holder") {
            Ok(l) => l,
            Err(e) => return ready(Err(e)),
        };
        self.runtime
            .spawn_call("cluster.release_holder", async move {
                locks.release_holder(holder.as_str()).await
            })
    }

    fn repair(&self) -> ModuleFuture<RepairReport> {
        ready(Ok(RepairReport::default()))
    }

    fn attach_node(&self, node: Arc<dyn LocalNode>) -> ModuleResult<()> {
        if self.started.load(Ordering::Acquire) {
            return Err(ModuleError::invalid(
                "cluster.attach_node: must be called before start",
            ));
        }
        let mut slot = self.node.lock();
        if slot.is_some() {
            return Err(ModuleError::invalid(
                "cluster.attach_node: a local node is already attached",
            ));
        }
        *slot = Some(node);
        Ok(())
    }

    fn observe_change(&self, event: &ChangeEvent) {
        if let Some(r) = self.running() {
            r.router.observe(event);
        }
    }

    fn publish_topic(&self, message: TopicPublish) -> ModuleFuture<()> {
        match self.running().cloned() {
            Some(r) => self
                .runtime
                .spawn_call("cluster.publish_topic", async move {
                    r.router.publish(message).await
                }),
            None => match self.node.lock().clone() {
                Some(n) => {
                    n.deliver_topic(&message);
                    ready(Ok(()))
                }
                None => ready(Err(unavailable(
                    "cluster.publish_topic: no local node attached",
                ))),
            },
        }
    }

    fn status(&self) -> ClusterStatus {
        let version = self.table.version();
        let Some(r) = self.running() else {
            return ClusterStatus {
                phase: if self.stopped.load(Ordering::Acquire) {
                    ClusterPhase::Stopped
                } else {
                    ClusterPhase::Forming
                },
                ready: false,
                cluster_id: self.config.cluster_id.as_str().into(),
                leader: ROption::RNone,
                raft_term: 0,
                raft_commit_index: 0,
                table_version: version,
                members_alive: 0,
            };
        };
        let s = r.raft.status();
        let alive = r
            .membership
            .peers()
            .values()
            .filter(|p| p.health == PeerHealth::Alive)
            .count();
        let phase = if self.stopped.load(Ordering::Acquire) {
            ClusterPhase::Stopped
        } else if version == 0 || !r.raft.is_initialized() {
            ClusterPhase::Forming
        } else {
            ClusterPhase::Active
        };
        ClusterStatus {
            phase,
            ready: phase == ClusterPhase::Active,
            cluster_id: self.config.cluster_id.as_str().into(),
            leader: s.leader.map(RString::from).into(),
            raft_term: s.term,
            raft_commit_index: s.commit_index,
            table_version: version,
            members_alive: u32::try_from(alive).unwrap_or(u32::MAX),
        }
    }

    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        if let Err(e) = self.check_running("query") {
            return ready(Err(e));
        }
        match self.running().cloned() {
            Some(r) => {
                self.runtime.spawn_call(
                    "cluster.query",
                    async move { r.scatter.query(request).await },
                )
            }
            None => match self.storage.lock().clone() {
                Some(st) => st.query(request),
                None => ready(Err(unavailable("cluster.query: no storage attached"))),
            },
        }
    }

    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        if let Err(e) = self.check_running("subscribe") {
            return ready(Err(e));
        }
        match self.running().cloned() {
            Some(r) => self.runtime.spawn_call("cluster.subscribe", async move {
                r.scatter.subscribe(id, request, sink).await
            }),
            None => match self.storage.lock().clone() {
                Some(st) => st.subscribe(id, request, sink),
                None => ready(Err(unavailable("cluster.subscribe: no storage attached"))),
            },
        }
    }

    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        match self.running() {
            Some(r) => r.scatter.unsubscribe(id),
            None => self
                .storage
                .lock()
                .clone()
                .is_some_and(|st| st.unsubscribe(id)),
        }
    }

    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        if let Err(e) = self.check_running("search") {
            return ready(Err(e));
        }
        match self.running().cloned() {
            Some(r) => {
                self.runtime.spawn_call(
                    "cluster.search",
                    async move { r.scatter.search(request).await },
                )
            }
            None => match self.storage.lock().clone() {
                Some(st) => st.search(request),
                None => ready(Err(unavailable("cluster.search: no storage attached"))),
            },
        }
    }

    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        if let Err(e) = self.check_running("merkle_node") {
            return ready(Err(e));
        }
        match self.running().cloned() {
            Some(r) => self.runtime.spawn_call("cluster.merkle_node", async move {
                r.scatter.merkle_node(request).await
            }),
            None => match self.storage.lock().clone() {
                Some(st) => st.merkle_node_in(request, PartitionSet::ALL),
                None => ready(Err(unavailable("cluster.merkle_node: no storage attached"))),
            },
        }
    }
}
