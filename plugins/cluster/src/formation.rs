//! Forming the cluster and keeping its partition table: three loops that
//! tie gossip (who is alive) to Raft (what is agreed).
//!
//! - **Bootstrap** (until this node has Raft state). If a live peer belongs
//!   to a formed cluster, ask it to admit this node (`Control::Join`; the
//!   Raft leader adds it as a learner, then a voter). Otherwise the node with
//!   the smallest id among the live, unformed nodes forms the cluster with
//!   all of them, once the gossip view has been stable for a few rounds and
//!   every seed has been heard from (or `bootstrap_timeout_ms` passed). Only
//!   one node can be the smallest in a view everybody shares, and a node
//!   that already has Raft state never forms another cluster, so nodes
//!   started in any order end up in one cluster.
//! - **Table** (on the Raft leader). Whenever gossip, Raft status or the
//!   committed state changes, and every 500 ms, compute the next table from
//!   the voters that are not confirmed failed, those leaving apart, and the
//!   transfers known done (`ReplicationStrategy::next_table`), commit it with a
//!   compare-and-set on its version, and start the transfers the committed
//!   table asks for ([`Migrator::drive`]).
//! - **Install** (every node). Install each committed table, tell storage
//!   (`partitions_changed`) and the host (`topology_changed`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::local_node::LocalNode;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::PARTITION_COUNT;

use crate::membership::{Membership, PeerHealth};
use crate::migration::Migrator;
use crate::partition_table::PartitionTable;
use crate::raft::{ClusterRaft, Command, CommandResponse, NodeAddr};
use crate::strategy::{ReplicationStrategy, Zones};
use crate::transport::{Channel, Transport};
use crate::wire::{self, Control, ControlMessage};

/// What the loops need.
pub struct Formation {
    /// This node as Raft knows it.
    pub me: NodeAddr,
    /// Seeds resolved at start (this node's own address removed).
    pub seeds: Vec<SocketAddr>,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// Wait for seeds at most this long.
    pub bootstrap_timeout: Duration,
    /// Backups per partition.
    pub backup_count: usize,
    /// Plans the tables (see `crate::strategy`).
    pub strategy: Arc<dyn ReplicationStrategy>,
    /// How long a new leader treats voters it has not heard of as alive.
    pub leader_grace: Duration,
    /// The transport.
    pub transport: Arc<Transport>,
    /// Gossip.
    pub membership: Arc<Membership>,
    /// Raft.
    pub raft: Arc<ClusterRaft>,
    /// The table in force here.
    pub table: Arc<PartitionTable>,
    /// Storage, told about ownership changes.
    pub storage: Arc<dyn StorageAccessor>,
    /// The host, told about ownership changes.
    pub node: Option<Arc<dyn LocalNode>>,
    /// Metrics.
    pub metrics: Arc<dyn MetricsSink>,
    /// Partition transfers.
    pub migrator: Arc<Migrator>,
}

impl Formation {
    /// Runs until this node belongs to a formed cluster.
    pub async fn bootstrap(self: Arc<Self>) {
        let started = Instant::now();
        let mut last_view: Vec<String> = Vec::new();
        let mut stable_since = Instant::now();
        let mut announced = false;
        loop {
            // A node that left gracefully has Raft state but is no longer
            // a member: it joins again like a new node.
            let removed = self.raft.is_initialized()
                && !self
                    .raft
                    .members()
                    .iter()
                    .any(|(a, _)| a.node_id == self.me.node_id);
            if self.raft.is_initialized() && !removed {
                self.membership.set_formed(true).await;
                tracing::info!(node = %self.me.node_id, "member of a formed cluster");
                return;
            }
            let peers = self.membership.peers();
            let alive: Vec<_> = peers
                .values()
                .filter(|p| p.health == PeerHealth::Alive)
                .collect();
            if let Some(p) = alive.iter().find(|p| p.formed && !p.is_local) {
                if !announced {
                    tracing::info!(via = %p.node_id, "found a formed cluster; asking to join");
                    announced = true;
                }
                let body = wire::encode(&ControlMessage::Control(Control::Join(self.me.clone())));
                if let Err(e) = self
                    .transport
                    .request(p.addr, Channel::Control, body, Duration::from_secs(15))
                    .await
                {
                    tracing::debug!(via = %p.node_id, error = %e, "join not done yet");
                }
                tokio::time::sleep(self.gossip_interval).await;
                continue;
            }
            if removed {
                // Never form a second cluster from left-over state.
                tokio::time::sleep(self.gossip_interval).await;
                continue;
            }
            let mut view: Vec<String> = alive.iter().map(|p| p.node_id.clone()).collect();
            view.sort();
            if view != last_view {
                last_view.clone_from(&view);
                stable_since = Instant::now();
            }
            let heard: BTreeSet<SocketAddr> = alive.iter().map(|p| p.addr).collect();
            let seeds_heard = self.seeds.iter().all(|s| heard.contains(s));
            let waited = started.elapsed() >= self.bootstrap_timeout;
            let stable =
                self.seeds.is_empty() || stable_since.elapsed() >= self.gossip_interval * 4;
            let smallest = view.first().is_none_or(|f| *f == self.me.node_id);
            if smallest && stable && (seeds_heard || waited) {
                let members: Vec<NodeAddr> = alive
                    .iter()
                    .map(|p| NodeAddr {
                        node_id: p.node_id.clone(),
                        cluster_addr: p.addr.to_string(),
                        client_endpoint: p.client_endpoint.clone(),
                        zone: p.zone.clone(),
                    })
                    .collect();
                let ids: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
                tracing::info!(members = ?ids, seeds_heard, "forming a new cluster");
                if let Err(e) = self.raft.initialize(members).await {
                    tracing::warn!(error = %e, "could not form the cluster; retrying");
                }
            }
            tokio::time::sleep(self.gossip_interval).await;
        }
    }

    /// Runs for the node's life: on the leader, commits tables that follow
    /// the live members.
    pub async fn keep_table(self: Arc<Self>) {
        let mut peers = self.membership.watch();
        let mut status = self.raft.status_watch();
        let mut state = self.raft.state();
        let mut leader_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = peers.changed() => {}
                _ = status.changed() => {}
                _ = state.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if !self.raft.status().is_leader {
                if leader_since.take().is_some() {
                    self.migrator.reset();
                }
                continue;
            }
            let since = *leader_since.get_or_insert_with(Instant::now);
            if let Err(e) = self.commit_next_table(since).await {
                tracing::debug!(error = %e, "table not committed this round");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let committed = self.raft.state().borrow().table.clone();
            if let Some(t) = committed {
                self.migrator.drive(&t);
            }
        }
    }

    /// The voters that count, as (live, leaving): not confirmed failed;
    /// leaving when they announced a graceful leave (they still serve their
    /// partitions until these are handed off). A voter gossip has not heard
    /// of yet counts as live during the leader's first `leader_grace` (a
    /// new leader has not heard everyone).
    fn live_voters(&self, leader_since: Instant) -> (Vec<String>, Vec<String>) {
        let peers = self.membership.peers();
        let mut live = Vec::new();
        let mut leaving = Vec::new();
        for (a, voter) in self.raft.members() {
            if !voter {
                continue;
            }
            match peers.get(&a.node_id) {
                Some(p) if p.health == PeerHealth::Failed => {}
                Some(p) if p.leaving => leaving.push(a.node_id),
                Some(_) => live.push(a.node_id),
                None if leader_since.elapsed() < self.leader_grace => live.push(a.node_id),
                None => {}
            }
        }
        (live, leaving)
    }

    async fn commit_next_table(&self, leader_since: Instant) -> Result<(), String> {
        let (live, leaving) = self.live_voters(leader_since);
        if live.is_empty() {
            return Ok(());
        }
        let current = self.raft.state().borrow().table.clone();
        let zones: Zones = self
            .raft
            .members()
            .into_iter()
            .map(|(a, _)| (a.node_id, a.zone))
            .collect();
        let s = &self.strategy;
        let (expected, next) = match &current {
            None => (0, s.initial_table(&live, &zones, self.backup_count)),
            Some(t) => match s.next_table(
                t,
                &live,
                &leaving,
                &zones,
                self.backup_count,
                &self.migrator.done(),
            ) {
                Some(n) => {
                    let serving: Vec<String> = live.iter().chain(&leaving).cloned().collect();
                    let orphans = t.orphans(&serving);
                    if !orphans.is_empty() {
                        tracing::error!(partitions = ?orphans, "every copy of these partitions is on failed members: they restart empty");
                    }
                    (t.version, n)
                }
                None => return Ok(()),
            },
        };
        next.validate()?;
        let version = next.version;
        match self
            .raft
            .propose(Command::SetTable {
                expected_version: expected,
                table: next,
            })
            .await
        {
            Ok(CommandResponse::TableSet { version }) => {
                let transfers = self
                    .raft
                    .state()
                    .borrow()
                    .table
                    .as_ref()
                    .map_or(0, |t| t.transfers().len());
                tracing::info!(version, live = ?live, leaving = ?leaving, transfers, "partition table committed");
                Ok(())
            }
            Ok(CommandResponse::TableConflict { current }) => Err(format!(
                "table v{version} lost a race: v{current} is committed"
            )),
            Ok(other) => Err(format!("unexpected answer to SetTable: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs for the node's life: installs every committed table.
    pub async fn install_tables(self: Arc<Self>) {
        let mut state = self.raft.state();
        loop {
            let table = state.borrow_and_update().table.clone();
            if let Some(t) = table {
                let v = t.version;
                if self.table.install(Arc::new(t)) {
                    self.report(v);
                    self.storage.partitions_changed(v);
                    if let Some(n) = &self.node {
                        n.topology_changed(v);
                    }
                }
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    fn report(&self, version: u64) {
        let t = self.table.current();
        let me = &self.me.node_id;
        let owned = t.owners.iter().filter(|o| *o == me).count();
        let backed = t.backups.iter().filter(|b| b.contains(me)).count();
        tracing::info!(
            version,
            owned,
            backed_up = backed,
            of = PARTITION_COUNT,
            "partition table installed"
        );
        {
            self.metrics
                .gauge("hangar_cluster_table_version", &[], version as f64);
            self.metrics
                .gauge("hangar_cluster_partitions_owned", &[], owned as f64);
            self.metrics
                .gauge("hangar_cluster_partitions_backed_up", &[], backed as f64);
        }
    }
}
