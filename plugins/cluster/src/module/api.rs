//! The `ClusterModule` trait methods of the default module.

use super::*;

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
        let gossip_interval = Duration::from_millis(self.settings.gossip_interval_ms);
        let leave_timeout = Duration::from_millis(self.settings.migration.leave_timeout_ms);
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
                address: format!("{}:{}", self.settings.host, self.settings.cluster_port).into(),
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
        // Who gets each change and which copies count is the strategy's
        // (see `crate::strategy`); the default ships to every holder but
        // this node, counted, and to the pending holders, uncounted.
        let peers = r.membership.peers();
        let table = self.table.current();
        let strategy = self.strategy.clone();
        let mut per_node: HashMap<String, Vec<hangar_core::KeyedOp>> = HashMap::new();
        let mut counted: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut partitions: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
        for ch in request.changes.iter() {
            let p = partition_of(&ch.key) as usize;
            if p >= table.owners.len() || p >= table.backups.len() {
                continue;
            }
            let to = strategy.receivers(&table, p, &self.config.node_id);
            for n in to.counted.iter().chain(&to.uncounted) {
                per_node.entry(n.clone()).or_default().push(ch.clone());
            }
            counted.extend(to.counted);
            partitions.insert(p);
        }
        let zones: Zones = peers
            .iter()
            .map(|(id, p)| (id.clone(), p.zone.clone()))
            .collect();
        let mut unreachable = Vec::new();
        let shipments: Vec<Shipment> = per_node
            .into_iter()
            .filter_map(|(node, changes)| match peers.get(&node) {
                Some(p) if p.health != PeerHealth::Failed => Some(Shipment {
                    counted: counted.contains(&node),
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
        let wait = partitions
            .iter()
            .any(|p| strategy.waits(level, table.backups[*p].len()));
        // Durability on backups matters only to a write that waits for them:
        // at EVENTUAL (or with no backup to wait for) PERSISTED means durable
        // on the owner, and a barrier per batch would only slow the stream.
        // A pending holder is asked to apply, not to persist (see
        // `Shipment::counted`).
        let durable = request.durable && wait;
        let local = self.config.node_id.clone();
        self.runtime.spawn_call("cluster.replicate", async move {
            let results = r.replicator.ship(shipments, wait, durable).await;
            let acked: Vec<String> = results
                .iter()
                .filter(|(_, res)| res.is_ok())
                .map(|(n, _)| n.clone())
                .collect();
            let met = partitions.iter().all(|p| {
                strategy.acks_met(
                    level,
                    &Acks {
                        owner: &table.owners[*p],
                        backups: &table.backups[*p],
                        local: &local,
                        acked: &acked,
                        zones: &zones,
                    },
                )
            });
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

    fn read_replica(&self, partition: u32, consistency: ConsistencyLevel) -> ROption<RString> {
        match self.running() {
            Some(r) => r
                .scatter
                .read_replica(partition, consistency)
                .map(RString::from)
                .into(),
            None => self.table.owner(partition),
        }
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
        if let Err(e) = self.check_running("repair") {
            return ready(Err(e));
        }
        let Some(repairer) = self.running().map(|r| r.repairer.clone()) else {
            return ready(Err(unavailable(
                "cluster.repair: the cluster module has not started",
            )));
        };
        self.runtime.spawn_call(
            "cluster.repair",
            async move { Ok(repairer.run(None).await) },
        )
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
                cluster_id: self.settings.cluster_id.as_str().into(),
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
            cluster_id: self.settings.cluster_id.as_str().into(),
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
