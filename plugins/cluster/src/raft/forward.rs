//! Operations that must run on the leader: commands and membership changes.
//!
//! Each public operation finds the leader (waiting for one within the
//! operation's time bound), runs the `*_local` form there — in this process
//! when this node leads, else over [`RaftRpc`](super::RaftRpc) to the
//! leader's `handle_rpc` — and retries while the answer is "not the leader"
//! or the leader cannot be reached. The `*_local` forms never forward, so a
//! request crosses at most one hop.
//!
//! A retry after a transport failure can apply a command a second time
//! (the first attempt may have committed): `NextFence` then skips a token,
//! and a repeated `SetTable` answers `TableConflict { current }` with
//! `current == table.version`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError as OpenRaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::time::{sleep, timeout_at, Instant};

use super::network::{decode_body, encode_body, Reply, Request, WireError};
use super::node::{fatal, has_state, ClusterRaft};
use super::types::{raft_id, Command, CommandResponse, NodeAddr, RaftNodeId};
use super::RaftError;

/// Who runs a leader-only operation.
enum Leader {
    Me,
    Other(NodeAddr),
}

type Membership = openraft::Membership<RaftNodeId, NodeAddr>;
type WriteError = OpenRaftError<RaftNodeId, ClientWriteError<RaftNodeId, NodeAddr>>;

/// Our error for an openraft write failure.
fn write_error(e: WriteError) -> WireError {
    match e {
        OpenRaftError::APIError(ClientWriteError::ForwardToLeader(_)) => WireError::NotLeader,
        OpenRaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WireError::Rejected(e.to_string())
        }
        OpenRaftError::Fatal(f) => fatal(f),
    }
}

impl ClusterRaft {
    /// Commits a command and returns what applying it decided.
    ///
    /// On a follower it is forwarded to the leader, so callers need not know
    /// who leads; it waits a bounded time (10 election timeouts, at least
    /// 5 s) for a leader to exist.
    ///
    /// # Errors
    ///
    /// [`RaftError::Rejected`] for a `SetTable` whose table is malformed
    /// (not 271 partitions, or a version not above `expected_version`);
    /// [`RaftError::NotInitialized`] on a node that has no Raft state and
    /// knows no leader; [`RaftError::NoLeader`] / [`RaftError::Rpc`] when
    /// no leader could be reached in time; [`RaftError::Timeout`] when the
    /// leader did not commit in time (the command may still apply).
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, RaftError> {
        if let Command::SetTable {
            expected_version,
            table,
        } = &cmd
        {
            table
                .check(*expected_version)
                .map_err(RaftError::Rejected)?;
        }
        let req = Request::Propose(cmd.clone());
        self.on_leader(
            req,
            || self.propose_local(cmd.clone()),
            |r| match r {
                Reply::Propose(res) => Some(res),
                _ => None,
            },
        )
        .await
    }

    /// Makes `node` a voting member: adds it as a learner, waits until it
    /// has caught up with the leader's log, then changes the membership.
    ///
    /// Any member may call it (it is forwarded to the leader); a node that
    /// is not initialized knows no leader and answers
    /// [`RaftError::NotInitialized`], so a joining node asks a member to add
    /// it. Idempotent: a voter with the same address is left alone; a member
    /// whose address changed gets the new one.
    ///
    /// # Errors
    ///
    /// As [`ClusterRaft::propose`], plus [`RaftError::Rejected`] when the
    /// node id is empty or hashes like another member's, and
    /// [`RaftError::Timeout`] when the new node did not catch up in time
    /// (it stays a learner; calling again resumes).
    pub async fn add_member(&self, node: NodeAddr) -> Result<(), RaftError> {
        let req = Request::AddMember(node.clone());
        self.on_leader(
            req,
            || self.add_member_local(node.clone()),
            membership_reply,
        )
        .await
    }

    /// Removes a member (graceful leave), voter or learner. Forwarded to the
    /// leader. Removing a node that is not a member succeeds.
    ///
    /// # Errors
    ///
    /// As [`ClusterRaft::propose`], plus [`RaftError::Rejected`] when the
    /// node is the last voter.
    pub async fn remove_member(&self, node_id: &str) -> Result<(), RaftError> {
        let req = Request::RemoveMember(node_id.to_string());
        self.on_leader(req, || self.remove_member_local(node_id), membership_reply)
            .await
    }

    /// Runs `local` on the leader: here, or by sending `req` to it.
    async fn on_leader<T, F, Fut>(
        &self,
        req: Request,
        local: F,
        unpack: fn(Reply) -> Option<Result<T, WireError>>,
    ) -> Result<T, RaftError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, WireError>>,
    {
        self.check_open()?;
        let deadline = Instant::now() + self.op_timeout;
        let body = encode_body(&req).map_err(RaftError::Rejected)?;
        loop {
            let res = match self.find_leader(deadline).await? {
                Leader::Me => local().await,
                Leader::Other(addr) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.rpc.call(&addr.cluster_addr, body.clone(), left).await {
                        Err(e) => Err(WireError::Rpc(format!("leader {addr}: {e}"))),
                        Ok(bytes) => match decode_body::<Reply>(&bytes).map(unpack) {
                            Ok(Some(r)) => r,
                            Ok(None) => Err(WireError::Rpc(format!(
                                "leader {addr} answered with a reply of another kind"
                            ))),
                            Err(e) => Err(WireError::Rpc(format!("leader {addr}: {e}"))),
                        },
                    }
                }
            };
            match res {
                Err(e) if e.retryable() => {
                    if Instant::now() + self.retry_pause() >= deadline {
                        return Err(match e {
                            WireError::Rpc(s) => RaftError::Rpc(s),
                            _ => RaftError::NoLeader,
                        });
                    }
                    sleep(self.retry_pause()).await;
                }
                r => return r.map_err(RaftError::from),
            }
        }
    }

    fn retry_pause(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timing.heartbeat_ms)
    }

    /// Waits until a leader is known: this node in leader state, or another
    /// member.
    async fn find_leader(&self, deadline: Instant) -> Result<Leader, RaftError> {
        let mut rx = self.raft.metrics();
        loop {
            self.check_open()?;
            {
                let m = rx.borrow_and_update();
                match m.current_leader {
                    Some(l) if l == self.id && m.state == ServerState::Leader => {
                        return Ok(Leader::Me)
                    }
                    // Named leader, but not in leader state (yet or anymore).
                    Some(l) if l == self.id => {}
                    Some(l) => {
                        if let Some(n) = m.membership_config.membership().get_node(&l) {
                            return Ok(Leader::Other(n.clone()));
                        }
                    }
                    None if !has_state(&m) && !self.is_initialized() => {
                        return Err(RaftError::NotInitialized)
                    }
                    None => {}
                }
            }
            match timeout_at(deadline, rx.changed()).await {
                Err(_) => return Err(RaftError::NoLeader),
                Ok(Err(_)) => return Err(RaftError::ShutDown),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Commits `cmd` if this node leads; never forwards.
    pub(super) async fn propose_local(
        &self,
        mut cmd: Command,
    ) -> Result<CommandResponse, WireError> {
        if self.check_open().is_err() {
            return Err(WireError::ShutDown);
        }
        // Only the leader runs this: time-dependent commands carry its clock.
        cmd.stamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        );
        let write = tokio::time::timeout(self.op_timeout, self.raft.client_write(cmd));
        match write.await {
            Err(_) => Err(WireError::Timeout),
            Ok(Err(e)) => Err(write_error(e)),
            Ok(Ok(resp)) => resp.data.0.ok_or_else(|| {
                WireError::Storage(format!(
                    "entry {} was applied without a command response",
                    resp.log_id
                ))
            }),
        }
    }

    /// One membership change on this node, which must lead; retried while
    /// another change is still in progress. Returns the membership it
    /// committed.
    async fn change(
        &self,
        changes: ChangeMembers<RaftNodeId, NodeAddr>,
        retain: bool,
        deadline: Instant,
    ) -> Result<Membership, WireError> {
        loop {
            let res = timeout_at(
                deadline,
                self.raft.change_membership(changes.clone(), retain),
            )
            .await;
            match res {
                Err(_) => return Err(WireError::Timeout),
                Ok(Ok(resp)) => {
                    return resp.membership.ok_or_else(|| {
                        WireError::Storage(format!(
                            "membership change at {} reported no membership",
                            resp.log_id
                        ))
                    })
                }
                Ok(Err(OpenRaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                )))) => {
                    // Another change is committing: wait for it.
                    if Instant::now() + self.retry_pause() >= deadline {
                        return Err(WireError::Timeout);
                    }
                    sleep(self.retry_pause()).await;
                }
                Ok(Err(e)) => return Err(write_error(e)),
            }
        }
    }

    /// `add_member` on this node, which must lead; never forwards.
    pub(super) async fn add_member_local(&self, node: NodeAddr) -> Result<(), WireError> {
        if self.check_open().is_err() {
            return Err(WireError::ShutDown);
        }
        if node.node_id.is_empty() || node.cluster_addr.is_empty() {
            return Err(WireError::Rejected(format!(
                "member {node:?} lacks a node id or cluster address; both are required"
            )));
        }
        let deadline = Instant::now() + self.op_timeout;
        let id = raft_id(&node.node_id);
        let mut membership = self.leader_membership()?;
        loop {
            let is_voter = membership.voter_ids().any(|v| v == id);
            match membership.get_node(&id) {
                Some(cur) if cur.node_id != node.node_id => {
                    return Err(WireError::Rejected(format!(
                        "node id {:?} hashes to the same Raft id as member {:?}; choose another \
                         node id",
                        node.node_id, cur.node_id
                    )))
                }
                Some(cur) if *cur != node => {
                    let set = ChangeMembers::SetNodes(BTreeMap::from([(id, node.clone())]));
                    membership = self.change(set, true, deadline).await?;
                }
                Some(_) if is_voter => return Ok(()),
                Some(_) => {
                    self.wait_caught_up(id, deadline).await?;
                    let add = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                    return self.change(add, true, deadline).await.map(drop);
                }
                None => {
                    let add = ChangeMembers::AddNodes(BTreeMap::from([(id, node.clone())]));
                    membership = self.change(add, true, deadline).await?;
                }
            }
        }
    }

    /// The effective membership, if this node leads.
    fn leader_membership(&self) -> Result<Membership, WireError> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader {
            return Err(WireError::NotLeader);
        }
        Ok(m.membership_config.membership().clone())
    }

    /// Waits until the leader has replicated its whole log (as of the call)
    /// to learner `id`.
    async fn wait_caught_up(&self, id: RaftNodeId, deadline: Instant) -> Result<(), WireError> {
        let mut rx = self.raft.metrics();
        let target = rx.borrow().last_log_index;
        loop {
            {
                let m = rx.borrow_and_update();
                if m.state != ServerState::Leader {
                    return Err(WireError::NotLeader);
                }
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map(|l| l.index);
                if matched >= target {
                    return Ok(());
                }
            }
            match timeout_at(deadline, rx.changed()).await {
                Err(_) => return Err(WireError::Timeout),
                Ok(Err(_)) => return Err(WireError::ShutDown),
                Ok(Ok(())) => {}
            }
        }
    }

    /// `remove_member` on this node, which must lead; never forwards.
    pub(super) async fn remove_member_local(&self, node_id: &str) -> Result<(), WireError> {
        if self.check_open().is_err() {
            return Err(WireError::ShutDown);
        }
        let deadline = Instant::now() + self.op_timeout;
        let id = raft_id(node_id);
        let membership = self.leader_membership()?;
        match membership.get_node(&id) {
            Some(n) if n.node_id == node_id => {}
            _ => return Ok(()),
        }
        let ids = BTreeSet::from([id]);
        if membership.voter_ids().any(|v| v == id) {
            self.change(ChangeMembers::RemoveVoters(ids), false, deadline)
                .await
                .map(drop)
        } else {
            self.change(ChangeMembers::RemoveNodes(ids), false, deadline)
                .await
                .map(drop)
        }
    }
}

fn membership_reply(r: Reply) -> Option<Result<(), WireError>> {
    match r {
        Reply::Membership(res) => Some(res),
        _ => None,
    }
}
