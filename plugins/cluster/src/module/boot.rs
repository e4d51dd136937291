//! Starting the module's parts in order, and the status gauges.

use super::*;

/// The module's parts, owned by the start-up future.
pub(super) struct Boot {
    pub(super) config: ClusterModuleConfig,
    pub(super) settings: ClusterSettings,
    pub(super) deps: ClusterDeps,
    pub(super) seeds: Vec<String>,
    pub(super) table: Arc<PartitionTable>,
    pub(super) strategy: Arc<dyn ReplicationStrategy>,
    pub(super) running: Arc<OnceLock<Arc<Running>>>,
    pub(super) storage: Arc<dyn StorageAccessor>,
    pub(super) node: Option<Arc<dyn LocalNode>>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Boot {
    pub(super) async fn boot(self) -> ModuleResult<()> {
        let c = &self.config;
        let s = &self.settings;
        let storage = self.storage.clone();
        let node = self.node.clone();
        let bind = resolve_one(&s.host, s.cluster_port)
            .await
            .map_err(|e| config_error(format!("cluster.host {:?}: {e}", s.host)))?;
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
        let tls = s
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
                cluster_id: s.cluster_id.clone(),
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
        tracing::info!(node = %c.node_id, cluster = %s.cluster_id, %addr, "cluster transport listening");

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
        let interval = Duration::from_millis(s.gossip_interval_ms);
        let membership = Membership::start(
            MembershipConfig {
                node_id: c.node_id.clone(),
                cluster_id: s.cluster_id.clone(),
                addr,
                seeds: seed_strings
                    .iter()
                    .filter(|s| s.parse::<SocketAddr>().ok() != Some(addr))
                    .cloned()
                    .collect(),
                gossip_interval: interval,
                phi_threshold: f64::from(s.phi_threshold),
                failure_confirm: Duration::from_millis(s.failure_confirm_ms),
                client_endpoint: client_endpoint.clone(),
                zone: s.zone.clone(),
            },
            Arc::new(TransportGossip(transport.clone())),
        )
        .await
        .map_err(unavailable)?;

        let me = NodeAddr {
            node_id: c.node_id.clone(),
            cluster_addr: addr.to_string(),
            client_endpoint,
            zone: s.zone.clone(),
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
        // A node with Raft state belongs (or belonged) to a formed cluster:
        // it must not serve as the owner of everything until the cluster's
        // committed table installs (see `PartitionTable::withdraw_provisional`).
        if raft.is_initialized() {
            self.table.withdraw_provisional();
        }

        let default_timeout = Duration::from_millis(s.replication.ack_timeout_ms.max(1_000));
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
            s.replication.clone(),
            self.deps.metrics.clone(),
        );
        let scatter = Scatter::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            storage.clone(),
            crate::scatter::replicas::ReadPolicy {
                default: s.default_read_consistency,
                per_map: s.map_read_consistency.clone(),
            },
            self.deps.metrics.clone(),
        );
        let locks = LockService::new(&c.node_id, raft.clone(), membership.clone());
        let migrator = Migrator::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            storage.clone(),
            s.migration.clone(),
            self.deps.metrics.clone(),
        );
        let repairer = Repairer::new(
            &c.node_id,
            transport.clone(),
            membership.clone(),
            self.table.clone(),
            storage.clone(),
            s.repair.clone(),
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
            repairer: repairer.clone(),
            node_id: c.node_id.clone(),
            locks: locks.clone(),
            raft_dir: dir.clone(),
        }));
        if !s.replication_enabled && s.backup_count > 0 {
            tracing::info!(
                backup_count = s.backup_count,
                "replication_enabled = false: partitions get no backups, whatever backup_count says"
            );
        }
        let formation = Arc::new(Formation {
            me,
            seeds,
            gossip_interval: interval,
            bootstrap_timeout: Duration::from_millis(s.bootstrap_timeout_ms),
            backup_count: s.backups(),
            strategy: self.strategy.clone(),
            leader_grace: Duration::from_millis(s.failure_confirm_ms) + interval * 20,
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
            tasks.push(h.spawn(repairer.keep()));
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
