//! How Raft messages travel: the [`RaftRpc`] seam, the wire format, and
//! openraft's network client built on them.
//!
//! # Wire format
//!
//! A request body is one msgpack value (named fields, `rmp_serde::to_vec_named`)
//! of [`Request`]: a map with a single key naming the kind
//! (`AppendEntries`, `Vote`, `InstallSnapshot`, `Propose`, `AddMember`,
//! `RemoveMember`) and the request as its value. The reply is one [`Reply`]
//! of the matching kind. Failures of the operation itself travel inside the
//! reply (openraft's own error types, or [`WireError`] for forwarded
//! commands); a body that cannot be handled at all (undecodable, node shut
//! down) is an `Err(text)` of [`RaftRpc::call`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError as OpenRaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use serde::{Deserialize, Serialize};

use super::types::{Command, CommandResponse, NodeAddr, RaftNodeId, TypeConfig};
use super::RaftError;

/// How a Raft RPC reaches another node. The node implements it over the
/// cluster transport's Raft channel; tests route to in-process instances.
///
/// # Contract
///
/// - `call` delivers `body` to [`ClusterRaft::handle_rpc`] on the node
///   listening at `cluster_addr` and resolves to that call's result: its
///   reply body, or its error text.
/// - It MUST resolve within about `timeout` (an `Err` saying it timed out).
/// - It MUST NOT retry on its own: Raft and the forwarding logic retry, and
///   a retried forwarded command could be applied twice.
/// - Any transport failure is an `Err` with text saying what failed and
///   where; Raft treats the peer as unreachable for a while.
/// - It MUST carry bodies of a few MiB: an InstallSnapshot request holds up
///   to 1 MiB of snapshot (about 2 MiB encoded), an AppendEntries request up
///   to 64 entries (a partition table entry is some KiB).
///
/// [`ClusterRaft::handle_rpc`]: super::ClusterRaft::handle_rpc
pub trait RaftRpc: Send + Sync + 'static {
    /// Sends one request body and waits for its reply body.
    fn call(
        &self,
        cluster_addr: &str,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<bytes::Bytes, String>>;
}

/// One Raft RPC request.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A command forwarded to the leader.
    Propose(Command),
    /// `add_member` forwarded to the leader.
    AddMember(NodeAddr),
    /// `remove_member` forwarded to the leader (Hangar node id).
    RemoveMember(String),
}

/// Kind names of [`Request`], as they appear on the wire.
const KINDS: [&str; 6] = [
    "AppendEntries",
    "Vote",
    "InstallSnapshot",
    "Propose",
    "AddMember",
    "RemoveMember",
];

/// The kind of a Raft RPC request body (`"AppendEntries"`, `"Vote"`,
/// `"InstallSnapshot"`, `"Propose"`, `"AddMember"` or `"RemoveMember"`),
/// read from its first bytes without decoding the rest; `None` if the body
/// is not a request. For transports and tests that treat kinds differently
/// (snapshots are large, heartbeats are urgent).
#[must_use]
pub fn rpc_kind(body: &[u8]) -> Option<&'static str> {
    let mut rd = body;
    if rmp::decode::read_map_len(&mut rd).ok()? != 1 {
        return None;
    }
    let len = rmp::decode::read_str_len(&mut rd).ok()? as usize;
    let name = rd.get(..len)?;
    KINDS.iter().copied().find(|k| k.as_bytes() == name)
}

/// The reply to a [`Request`] of the same kind.
#[derive(Serialize, Deserialize)]
pub(crate) enum Reply {
    AppendEntries(Result<AppendEntriesResponse<RaftNodeId>, OpenRaftError<RaftNodeId>>),
    Vote(Result<VoteResponse<RaftNodeId>, OpenRaftError<RaftNodeId>>),
    InstallSnapshot(
        Result<
            InstallSnapshotResponse<RaftNodeId>,
            OpenRaftError<RaftNodeId, InstallSnapshotError>,
        >,
    ),
    Propose(Result<CommandResponse, WireError>),
    /// Reply to `AddMember` and `RemoveMember`.
    Membership(Result<(), WireError>),
}

/// A forwarded operation's failure, as it travels back to the forwarder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    /// The receiver is not the leader (anymore); the forwarder retries.
    NotLeader,
    NotInitialized,
    NoLeader,
    Rejected(String),
    Timeout,
    ShutDown,
    Storage(String),
    Rpc(String),
}

impl WireError {
    /// Whether the forwarder should look for the leader again and retry.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Self::NotLeader | Self::NoLeader | Self::Rpc(_))
    }
}

impl From<WireError> for RaftError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader | WireError::NoLeader => RaftError::NoLeader,
            WireError::NotInitialized => RaftError::NotInitialized,
            WireError::Rejected(s) => RaftError::Rejected(s),
            WireError::Timeout => RaftError::Timeout,
            WireError::ShutDown => RaftError::ShutDown,
            WireError::Storage(s) => RaftError::Storage(s),
            WireError::Rpc(s) => RaftError::Rpc(s),
        }
    }
}

/// Encodes a request or reply body.
pub(crate) fn encode_body<T: Serialize>(v: &T) -> Result<bytes::Bytes, String> {
    rmp_serde::to_vec_named(v)
        .map(bytes::Bytes::from)
        .map_err(|e| format!("cannot encode a Raft RPC body: {e}"))
}

/// Decodes a request or reply body.
pub(crate) fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| {
        format!(
            "cannot decode a Raft RPC body of {} bytes (kind {:?}): {e}",
            body.len(),
            rpc_kind(body)
        )
    })
}

/// openraft's network factory: one [`Peer`] per target.
pub(crate) struct Network {
    pub(crate) rpc: Arc<dyn RaftRpc>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: RaftNodeId, node: &NodeAddr) -> Peer {
        Peer {
            rpc: self.rpc.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// openraft's client for one peer.
pub(crate) struct Peer {
    rpc: Arc<dyn RaftRpc>,
    target: RaftNodeId,
    node: NodeAddr,
}

enum SendError {
    Unreachable(String),
    Network(String),
}

impl SendError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<RaftNodeId, NodeAddr, E> {
        match self {
            Self::Unreachable(s) => RPCError::Unreachable(Unreachable::new(&AnyError::error(s))),
            Self::Network(s) => RPCError::Network(NetworkError::new(&AnyError::error(s))),
        }
    }
}

impl Peer {
    async fn send(&self, req: &Request, ttl: Duration) -> Result<Reply, SendError> {
        let body = encode_body(req).map_err(SendError::Network)?;
        let bytes = self
            .rpc
            .call(&self.node.cluster_addr, body, ttl)
            .await
            .map_err(|e| SendError::Unreachable(format!("{}: {e}", self.node)))?;
        decode_body(&bytes).map_err(|e| SendError::Network(format!("{}: {e}", self.node)))
    }

    fn unexpected<E: std::error::Error>(&self, want: &str) -> RPCError<RaftNodeId, NodeAddr, E> {
        SendError::Network(format!(
            "{} answered a {want} request with another kind of reply",
            self.node
        ))
        .into_rpc()
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<RaftNodeId, NodeAddr, OpenRaftError<RaftNodeId, E>>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<RaftNodeId>> {
        match self
            .send(&Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Reply::AppendEntries(Ok(r))) => Ok(r),
            Ok(Reply::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected("AppendEntries")),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<RaftNodeId>, InstallSnapshotError> {
        match self
            .send(&Request::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Reply::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Reply::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected("InstallSnapshot")),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<RaftNodeId>> {
        match self.send(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Reply::Vote(Ok(r))) => Ok(r),
            Ok(Reply::Vote(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected("Vote")),
            Err(e) => Err(e.into_rpc()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_rpc_kind_reads_the_request_kind() {
        let b = encode_body(&Request::RemoveMember("n1".into())).unwrap();
        assert_eq!(rpc_kind(&b), Some("RemoveMember"));
        let b = encode_body(&Request::Propose(Command::NextFence { name: "x".into() })).unwrap();
        assert_eq!(rpc_kind(&b), Some("Propose"));
        assert_eq!(rpc_kind(b"\x01\x02"), None);
        assert_eq!(rpc_kind(&[]), None);
    }
}
