//! The cluster module's lock operations over Raft, and the leader's keeper
//! that frees the locks of dead or restarted nodes.
//!
//! The host names a holder by its connection (`<nodeId>/<connId>`); this
//! service stores it as `<nodeId>/<generation>/<host holder>`, where
//! `generation` is this node's gossip incarnation (its start time), so that
//! the connections of a restarted node never pass for those of its earlier
//! life. See [`crate::locks`] for the rules the Raft state applies.
//!
//! The keeper runs on every node and acts only while it leads: for each
//! node named by a lease it looks at gossip and proposes
//! [`Command::ReleaseNode`] when that node is confirmed failed (all its
//! leases) or alive under a newer generation (the leases of its other
//! generations). A node gossip has not heard of is left alone (its leases
//! end with their TTL).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_core::module::cluster_types::{LockGrant, LockRelease, LockRequest};
use hangar_core::{ErrorKind, ModuleError, ModuleResult};

use crate::membership::{Membership, PeerHealth};
use crate::raft::{ClusterRaft, Command, CommandResponse};

/// Lock operations of one node.
pub struct LockService {
    node_id: String,
    generation: u64,
    raft: Arc<ClusterRaft>,
    membership: Arc<Membership>,
}

impl std::fmt::Debug for LockService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockService")
            .field("node_id", &self.node_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, name: &str, e: impl std::fmt::Display) -> ModuleError {
    ModuleError::new(
        ErrorKind::UNAVAILABLE,
        format!("cluster.{what} {name:?}: the cluster's lock authority (Raft) did not decide: {e}"),
    )
}

fn unexpected(what: &str, r: &CommandResponse) -> ModuleError {
    ModuleError::internal(format!(
        "cluster.{what}: Raft answered {r:?}; expected the lock command's own answer"
    ))
}

impl LockService {
    /// The service of node `node_id` (incarnation `membership.generation()`).
    #[must_use]
    pub fn new(node_id: &str, raft: Arc<ClusterRaft>, membership: Arc<Membership>) -> Arc<Self> {
        Arc::new(Self {
            node_id: node_id.to_owned(),
            generation: membership.generation(),
            raft,
            membership,
        })
    }

    fn holder(&self, host_holder: &str) -> String {
        format!("{}/{}/{host_holder}", self.node_id, self.generation)
    }

    /// Takes (or extends) a lock, decided by the Raft log.
    ///
    /// # Errors
    /// [`ErrorKind::UNAVAILABLE`] when no decision could be committed in
    /// time (no leader, no quorum): the lock is not held (if the command
    /// still commits later, its lease simply runs out).
    pub async fn lock(&self, req: LockRequest) -> ModuleResult<LockGrant> {
        let cmd = Command::Lock {
            name: req.name.to_string(),
            holder: self.holder(&req.holder),
            ttl_ms: req.ttl_ms,
            now_ms: 0,
        };
        match self.raft.propose(cmd).await {
            Ok(CommandResponse::Lock(g)) => Ok(LockGrant {
                granted: g.granted,
                fencing_token: g.token,
            }),
            Ok(other) => Err(unexpected("lock", &other)),
            Err(e) => Err(failed("lock", &req.name, e)),
        }
    }

    /// Releases a lock held with `fencing_token`; false when the holder or
    /// the token do not match.
    ///
    /// # Errors
    /// As [`LockService::lock`].
    pub async fn unlock(&self, rel: LockRelease) -> ModuleResult<bool> {
        let cmd = Command::Unlock {
            name: rel.name.to_string(),
            holder: self.holder(&rel.holder),
            token: rel.fencing_token,
        };
        match self.raft.propose(cmd).await {
            Ok(CommandResponse::Released(n)) => Ok(n > 0),
            Ok(other) => Err(unexpected("unlock", &other)),
            Err(e) => Err(failed("unlock", &rel.name, e)),
        }
    }

    /// Releases every lock of a holder (its connection closed).
    ///
    /// # Errors
    /// As [`LockService::lock`].
    pub async fn release_holder(&self, host_holder: &str) -> ModuleResult<u32> {
        let cmd = Command::ReleaseHolder {
            holder: self.holder(host_holder),
        };
        match self.raft.propose(cmd).await {
            Ok(CommandResponse::Released(n)) => Ok(n),
            Ok(other) => Err(unexpected("release_holder", &other)),
            Err(e) => Err(failed("release_holder", host_holder, e)),
        }
    }

    /// The releases the leader should propose now: per node named by a
    /// lease, `Some(keep)` (`None` = all of its leases) when it is failed
    /// or alive under another generation than some of its leases.
    fn stale(&self) -> Vec<(String, Option<String>)> {
        let state = self.raft.state().borrow().clone();
        // node -> generations that hold leases
        let mut by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in state.locks.leases.values() {
            let mut parts = l.holder.splitn(3, '/');
            if let (Some(node), Some(generation)) = (parts.next(), parts.next()) {
                by_node.entry(node).or_default().push(generation);
            }
        }
        let peers = self.membership.peers();
        let mut out = Vec::new();
        for (node, generations) in by_node {
            let (health, current) = if node == self.node_id {
                (PeerHealth::Alive, self.generation)
            } else {
                match peers.get(node) {
                    Some(p) => (p.health, p.generation),
                    None => continue,
                }
            };
            if health == PeerHealth::Failed {
                out.push((node.to_owned(), None));
            } else {
                let current = current.to_string();
                if generations.iter().any(|g| *g != current) {
                    out.push((node.to_owned(), Some(format!("{node}/{current}/"))));
                }
            }
        }
        out
    }

    /// The keeper loop (see the module doc); runs until the task is dropped.
    pub async fn keep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if !self.raft.status().is_leader {
                continue;
            }
            for (node_id, keep) in self.stale() {
                match self
                    .raft
                    .propose(Command::ReleaseNode {
                        node_id: node_id.clone(),
                        keep: keep.clone(),
                    })
                    .await
                {
                    Ok(CommandResponse::Released(n)) if n > 0 => {
                        tracing::info!(node = %node_id, released = n, current = ?keep, "released the locks of a failed or restarted node");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(node = %node_id, error = %e, "lock release not committed this round")
                    }
                }
            }
        }
    }
}
