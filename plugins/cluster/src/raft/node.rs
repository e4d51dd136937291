//! [`ClusterRaft`]: one node's Raft, opened from its directory.
//!
//! This file holds its life cycle (open, initialize, shutdown), what it
//! reports (state, status, members) and the inbound RPC handler. Commands
//! and membership changes, which must run on the leader, are in `forward`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, InitializeError, RaftError as OpenRaftError};
use openraft::{Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::db::RaftDb;
use super::log_store::LogStore;
use super::network::{decode_body, encode_body, Network, Reply, Request, WireError};
use super::state_machine::{Published, StateMachine};
use super::types::{
    raft_id, ClusterState, NodeAddr, RaftNodeId, RaftStatus, StoredMembership, TypeConfig,
};
use super::{RaftError, RaftRpc, RaftTiming};

/// Largest snapshot chunk one InstallSnapshot request carries.
pub(super) const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Most log entries one AppendEntries request carries.
pub(super) const MAX_ENTRIES_PER_APPEND: u64 = 64;

/// openraft's metrics, as this crate reads them.
pub(super) type Metrics = RaftMetrics<RaftNodeId, NodeAddr>;

/// One node's Raft: persistent state in a directory, openraft running on
/// it, and the operations the node needs.
///
/// Every operation that must run on the leader (propose, add_member,
/// remove_member) can be called on any node: a follower forwards it over
/// [`RaftRpc`]. After [`ClusterRaft::shutdown`] every operation answers
/// [`RaftError::ShutDown`] and the directory can be opened again.
pub struct ClusterRaft {
    pub(super) me: NodeAddr,
    pub(super) id: RaftNodeId,
    pub(super) raft: Raft<TypeConfig>,
    pub(super) rpc: Arc<dyn RaftRpc>,
    pub(super) timing: RaftTiming,
    /// Bound on one propose / membership change, leader search included.
    pub(super) op_timeout: Duration,
    db: Arc<RaftDb>,
    state_rx: watch::Receiver<Arc<ClusterState>>,
    membership_rx: watch::Receiver<Arc<StoredMembership>>,
    status_rx: watch::Receiver<RaftStatus>,
    initialized: AtomicBool,
    shut: AtomicBool,
    shutdown_lock: tokio::sync::Mutex<()>,
    status_task: tokio::task::JoinHandle<()>,
}

impl ClusterRaft {
    /// Opens (creating) the persistent Raft state in `dir` (`dir/raft.redb`)
    /// and starts openraft as node [`raft_id`]`(me.node_id)`.
    ///
    /// A node restarted from the same `dir` comes back with its vote, log,
    /// snapshot and membership, and rejoins its cluster by itself.
    ///
    /// # Errors
    ///
    /// [`RaftError::Rejected`] for invalid timing or an empty node id;
    /// [`RaftError::Storage`] when the file cannot be opened or read (for
    /// example while another process holds it).
    pub async fn open(
        dir: &Path,
        me: NodeAddr,
        rpc: Arc<dyn RaftRpc>,
        timing: RaftTiming,
    ) -> Result<Arc<Self>, RaftError> {
        let config = openraft_config(&timing)?;
        if me.node_id.is_empty() {
            return Err(RaftError::Rejected(
                "the node id is empty; expected the Hangar node id".into(),
            ));
        }
        let db = RaftDb::open(dir).await.map_err(RaftError::Storage)?;
        let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let (membership_tx, membership_rx) = watch::channel(Arc::new(StoredMembership::default()));
        let publish = Published {
            state: state_tx,
            membership: membership_tx,
        };
        let sm = StateMachine::open(db.clone(), publish)
            .await
            .map_err(RaftError::Storage)?;
        let id = raft_id(&me.node_id);
        let network = Network { rpc: rpc.clone() };
        let raft = Raft::new(id, Arc::new(config), network, LogStore::new(db.clone()), sm).await;
        let raft = match raft {
            Ok(r) => r,
            Err(e) => {
                db.close().await;
                return Err(match fatal(e) {
                    WireError::Storage(s) => {
                        RaftError::Storage(format!("{}: {s}", db.path().display()))
                    }
                    e => e.into(),
                });
            }
        };
        // The metrics reach the watch only after the core has started: ask
        // the core itself whether this node came back with Raft state.
        let initialized = raft.is_initialized().await.unwrap_or(false);
        let metrics = raft.metrics();
        let (status_tx, status_rx) = watch::channel(status_of(&metrics.borrow(), id));
        let status_task = tokio::spawn(publish_status(metrics, status_tx, id));
        let op_timeout = Duration::from_millis((timing.election_max_ms * 10).max(5_000));
        Ok(Arc::new(Self {
            me,
            id,
            raft,
            rpc,
            timing,
            op_timeout,
            db,
            state_rx,
            membership_rx,
            status_rx,
            initialized: AtomicBool::new(initialized),
            shut: AtomicBool::new(false),
            shutdown_lock: tokio::sync::Mutex::new(()),
            status_task,
        }))
    }

    /// This node's address, as given to `open`.
    #[must_use]
    pub fn me(&self) -> &NodeAddr {
        &self.me
    }

    /// True once this node has Raft state (it was initialized, or a leader
    /// has reached it); stays true across restarts.
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire) || has_state(&self.raft.metrics().borrow())
    }

    /// Forms a new cluster with `members` as voters (this node included).
    ///
    /// # Errors
    ///
    /// [`RaftError::Rejected`] if this node already has Raft state (a
    /// cluster is formed once; join an existing one with `add_member`), if
    /// `members` does not include this node, or if two members share a
    /// node id or its hash.
    pub async fn initialize(&self, members: Vec<NodeAddr>) -> Result<(), RaftError> {
        self.check_open()?;
        if self.is_initialized() {
            return Err(already_initialized(&self.me));
        }
        if !members.iter().any(|m| m.node_id == self.me.node_id) {
            return Err(RaftError::Rejected(format!(
                "the members {:?} do not include this node {:?}; the initializing node MUST be a \
                 voter",
                members.iter().map(|m| &m.node_id).collect::<Vec<_>>(),
                self.me.node_id
            )));
        }
        let mut nodes = BTreeMap::new();
        for m in members {
            let id = raft_id(&m.node_id);
            if let Some(prev) = nodes.insert(id, m) {
                return Err(RaftError::Rejected(format!(
                    "node {:?} appears twice (or hashes like another member); each member MUST \
                     have its own node id",
                    prev.node_id
                )));
            }
        }
        match self.raft.initialize(nodes).await {
            Ok(()) => {
                self.initialized.store(true, Ordering::Release);
                Ok(())
            }
            Err(OpenRaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(already_initialized(&self.me))
            }
            Err(OpenRaftError::APIError(e)) => Err(RaftError::Rejected(e.to_string())),
            Err(OpenRaftError::Fatal(f)) => Err(fatal(f).into()),
        }
    }

    /// Members from the committed membership: (address, is_voter), ordered
    /// by Raft id.
    #[must_use]
    pub fn members(&self) -> Vec<(NodeAddr, bool)> {
        let stored = self.membership_rx.borrow();
        let m = stored.membership();
        let voters: BTreeSet<RaftNodeId> = m.voter_ids().collect();
        m.nodes()
            .map(|(id, n)| (n.clone(), voters.contains(id)))
            .collect()
    }

    /// The applied state; the watch changes whenever a command or snapshot
    /// is applied on this node.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state_rx.clone()
    }

    /// Leader, term, indexes and membership, from openraft's metrics.
    #[must_use]
    pub fn status(&self) -> RaftStatus {
        status_of(&self.raft.metrics().borrow(), self.id)
    }

    /// A watch that changes whenever [`ClusterRaft::status`] changes (leader
    /// change, new term, applied entries, membership).
    #[must_use]
    pub fn status_watch(&self) -> watch::Receiver<RaftStatus> {
        self.status_rx.clone()
    }

    /// Handles one inbound Raft RPC body (AppendEntries, Vote,
    /// InstallSnapshot, and the forwarded propose / add_member /
    /// remove_member) and returns the reply body.
    ///
    /// # Errors
    ///
    /// Text saying why the body could not be handled at all: undecodable,
    /// or this node is shut down. Failures of the operation itself are
    /// inside the reply.
    pub async fn handle_rpc(&self, body: bytes::Bytes) -> Result<bytes::Bytes, String> {
        if self.shut.load(Ordering::Acquire) {
            return Err(format!("node {}: Raft is shut down", self.me.node_id));
        }
        let req: Request = decode_body(&body)?;
        let reply = match req {
            Request::AppendEntries(r) => Reply::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Reply::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Reply::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Propose(cmd) => Reply::Propose(self.propose_local(cmd).await),
            Request::AddMember(n) => Reply::Membership(self.add_member_local(n).await),
            Request::RemoveMember(id) => Reply::Membership(self.remove_member_local(&id).await),
        };
        encode_body(&reply)
    }

    /// Stops openraft and closes the file. Idempotent; concurrent calls
    /// return once it is done.
    pub async fn shutdown(&self) {
        let _guard = self.shutdown_lock.lock().await;
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = %self.me.node_id, "openraft shutdown: {e}");
        }
        self.status_task.abort();
        self.db.close().await;
    }

    /// [`RaftError::ShutDown`] once `shutdown` was called.
    pub(super) fn check_open(&self) -> Result<(), RaftError> {
        if self.shut.load(Ordering::Acquire) {
            Err(RaftError::ShutDown)
        } else {
            Ok(())
        }
    }
}

/// Dropped without `shutdown`: the last `Raft` handle goes with it, which
/// stops openraft's core and so closes the file (t85 checks the directory
/// can be opened again).
impl Drop for ClusterRaft {
    fn drop(&mut self) {
        self.status_task.abort();
    }
}

fn already_initialized(me: &NodeAddr) -> RaftError {
    RaftError::Rejected(format!(
        "node {} already has Raft state: a cluster is initialized once; add nodes to it with \
         add_member",
        me.node_id
    ))
}

/// Whether the metrics show Raft state: a membership or any log.
pub(super) fn has_state(m: &Metrics) -> bool {
    m.last_log_index.is_some() || m.membership_config.membership().nodes().next().is_some()
}

/// The openraft error a stopped or failing core reports, as ours.
pub(super) fn fatal(f: Fatal<RaftNodeId>) -> WireError {
    match f {
        Fatal::StorageError(e) => WireError::Storage(e.to_string()),
        Fatal::Panicked => WireError::Storage("the Raft core task panicked".into()),
        Fatal::Stopped => WireError::ShutDown,
    }
}

fn openraft_config(t: &RaftTiming) -> Result<Config, RaftError> {
    if !(t.heartbeat_ms > 0
        && t.heartbeat_ms < t.election_min_ms
        && t.election_min_ms < t.election_max_ms)
    {
        return Err(RaftError::Rejected(format!(
            "Raft timing {t:?}: expected 0 < heartbeat_ms < election_min_ms < election_max_ms"
        )));
    }
    if t.snapshot_every == 0 {
        return Err(RaftError::Rejected(
            "Raft timing: snapshot_every is 0; expected at least 1 log entry between snapshots"
                .into(),
        ));
    }
    let config = Config {
        cluster_name: "hangar".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        // One snapshot RPC carries the whole state; give it an election's time.
        install_snapshot_timeout: t.election_max_ms.max(1_000),
        // Bounds on one RPC body (see the `RaftRpc` contract).
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        max_payload_entries: MAX_ENTRIES_PER_APPEND,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: t.snapshot_every,
        ..Config::default()
    };
    config
        .validate()
        .map_err(|e| RaftError::Rejected(format!("Raft timing {t:?}: {e}")))
}

pub(super) fn status_of(m: &Metrics, me: RaftNodeId) -> RaftStatus {
    let mem = m.membership_config.membership();
    let name = |id: RaftNodeId| {
        mem.get_node(&id)
            .map_or_else(|| format!("raft-{id:016x}"), |n| n.node_id.clone())
    };
    let mut voters: Vec<String> = mem.voter_ids().map(name).collect();
    let mut learners: Vec<String> = mem.learner_ids().map(name).collect();
    voters.sort();
    learners.sort();
    let applied = m.last_applied.map_or(0, |l| l.index);
    RaftStatus {
        leader: m.current_leader.map(name),
        is_leader: m.state == ServerState::Leader && m.current_leader == Some(me),
        term: m.current_term,
        commit_index: applied,
        last_applied: applied,
        voters,
        learners,
    }
}

async fn publish_status(
    mut metrics: watch::Receiver<Metrics>,
    tx: watch::Sender<RaftStatus>,
    me: RaftNodeId,
) {
    while metrics.changed().await.is_ok() {
        let status = status_of(&metrics.borrow_and_update(), me);
        tx.send_if_modified(|cur| {
            if *cur == status {
                false
            } else {
                *cur = status;
                true
            }
        });
    }
}
