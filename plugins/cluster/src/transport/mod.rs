//! Node-to-node transport: one TCP port per node, length-delimited msgpack
//! frames, request/response and one-way messages on named channels, with
//! bounded queues and optional mutual TLS.
//!
//! # Connections
//!
//! Each node dials its own connection to each destination, lazily, on the
//! first [`Transport::send`] or [`Transport::request`], and sends its
//! messages and requests on it; answers come back on that connection. An
//! accepted connection is read for messages and requests, and the answers
//! are written back on it. A pair of nodes therefore has up to two TCP
//! connections. A message or request to the node's own
//! [`Transport::local_addr`] goes to its [`Inbound`] without a socket.
//!
//! # Frames
//!
//! Every frame is a 4-byte big-endian length followed by a msgpack array
//! `[kind, request_id, channel, body]` with `body` as msgpack `bin`; the
//! layout and the kinds are documented next to the encoding in `frame.rs`.
//! A frame over `max_frame_bytes` is refused on send
//! ([`TransportError::FrameTooLarge`]); a peer that sends one, or anything
//! that does not decode, is disconnected with a log line naming it.
//!
//! # Handshake
//!
//! The first frame each way (`handshake.rs`): the dialer sends `Hello`
//! {protocol version, cluster id, node id, advertised address}; the acceptor
//! answers `HelloAck` {node id, address}, or `Refused` {reason} and closes
//! when the cluster id or protocol version differ or the first frame is not
//! a `Hello`. Both sides log a refusal with one `warn` line naming the peer,
//! what was expected and what was found, and the dialer's callers get
//! [`TransportError::Refused`] with that reason. TCP connect is bounded by
//! `connect_timeout`; TLS plus the handshake by 5 s.
//!
//! # TLS
//!
//! With [`TransportConfig::tls`] set (`tls.rs`), every connection is TLS
//! (rustls, `ring` provider). Both sides trust only the configured CA. The
//! dialer presents its certificate and checks the acceptor's against the
//! acceptor's IP address (node certificates carry IP SANs); the acceptor
//! checks the dialer's certificate, and refuses a dialer without one when
//! `require_client_cert`. A failed TLS handshake is logged on the side that
//! sees it (`TLS handshake with 127.0.0.1:40112 failed: ...`) and is a
//! [`TransportError::Refused`] for the dialer. A node without TLS and a
//! node with TLS cannot talk: the handshake fails on both sides.
//!
//! # Backpressure and failures
//!
//! Each destination has one outgoing queue of at most `peer_queue_frames`
//! frames and one writer. [`Transport::send`] waits for room;
//! [`Transport::try_send`] returns [`TransportError::Full`] instead. A peer
//! that stops reading fills the socket buffers, then the queue, and then
//! pushes back on its senders; memory stays bounded. On the receiving
//! side, at most `peer_queue_frames` request handlers run per connection,
//! after which the connection is not read until one finishes.
//! When a connection breaks, the requests waiting on it fail at once with
//! [`TransportError::Disconnected`]; while frames remain queued, the peer
//! is redialed with exponential backoff (50 ms doubling to 2 s, jittered).
//! See `peer.rs` for when queued frames are dropped.
//!
//! # Layout
//!
//! - `endpoint`: [`Transport`], the listener and the peer table.
//! - `peer`: one destination's queue, waiting requests and dial loop.
//! - `connection`: the reader and writer of one established connection.
//! - `handshake`: the first frames, and TLS plus handshake under a deadline.
//! - `frame`: the wire frame and its codec.
//! - `tls`: loading the PEM files; the TLS client and server sides.
//! - `metrics`: the metric names and the connection gauge.
//! - `error`: [`TransportError`].

mod connection;
mod endpoint;
mod error;
mod frame;
mod handshake;
mod metrics;
mod peer;
mod rtt;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use endpoint::Transport;
pub use error::TransportError;
pub use rtt::{RttTable, RTT_ALPHA};

/// Which subsystem a frame is for. The receiver's [`Inbound`] routes on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Channel {
    /// Membership and failure detection.
    Gossip = 0,
    /// Consensus messages.
    Raft = 1,
    /// Cluster control (also carries the handshake frames).
    Control = 2,
    /// Client operations forwarded to a partition's owner.
    Forward = 3,
    /// Replication of writes to backups.
    Replication = 4,
    /// Distributed queries.
    Query = 5,
    /// Partition migration.
    Migration = 6,
    /// Anti-entropy repair (digest comparison and record exchange).
    Repair = 7,
}

impl Channel {
    /// Every channel, in wire order.
    pub const ALL: [Channel; 8] = [
        Channel::Gossip,
        Channel::Raft,
        Channel::Control,
        Channel::Forward,
        Channel::Replication,
        Channel::Query,
        Channel::Migration,
        Channel::Repair,
    ];

    /// Lower-case name, as used in metric labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Gossip => "gossip",
            Self::Raft => "raft",
            Self::Control => "control",
            Self::Forward => "forward",
            Self::Replication => "replication",
            Self::Query => "query",
            Self::Migration => "migration",
            Self::Repair => "repair",
        }
    }
}

/// The PEM files for mutual TLS between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (leaf first). It MUST carry the node's
    /// advertised IP address as an IP SAN: dialers verify against it.
    pub cert_path: PathBuf,
    /// The private key of `cert_path` (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// The CA (one or more certificates) that signs every node's
    /// certificate; the only trust root.
    pub ca_cert_path: PathBuf,
    /// Refuse dialers that present no certificate. Dialers that present an
    /// invalid one are refused either way.
    pub require_client_cert: bool,
}

/// Settings of a [`Transport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Peers with another cluster id are refused at the handshake.
    pub cluster_id: String,
    /// This node's id, sent in the handshake. MUST NOT be empty.
    pub node_id: String,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The IP peers dial. The advertised address is this IP (or, when
    /// `None`, the bind IP, which then MUST NOT be a wildcard) with the
    /// bound port.
    pub advertise_ip: Option<IpAddr>,
    /// Mutual TLS; `None` is plain TCP.
    pub tls: Option<TlsFiles>,
    /// Largest frame envelope either way, in bytes (1 KiB to 4 GiB - 1).
    pub max_frame_bytes: usize,
    /// Bound of the outgoing queue per peer, in frames (at least 1); also
    /// the number of request handlers that may run at once per connection.
    pub peer_queue_frames: usize,
    /// Longest wait for a TCP connection to a peer.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    /// Cluster `hangar`, node `node-1`, bound to `127.0.0.1:0`, plain TCP,
    /// 16 MiB frames, 4,096 queued frames per peer, 2 s connect timeout.
    fn default() -> Self {
        Self {
            cluster_id: "hangar".to_owned(),
            node_id: "node-1".to_owned(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            advertise_ip: None,
            tls: None,
            max_frame_bytes: 16 * 1024 * 1024,
            peer_queue_frames: 4096,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Who is on the other end, as its handshake said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: String,
    /// The peer's advertised transport address (where its listener is, not
    /// the source address of its connection).
    pub addr: SocketAddr,
}

/// Receives what peers send.
///
/// # Contract
/// Both methods are called from a connection's reader task.
/// [`on_message`](Self::on_message) MUST NOT block: the connection is not
/// read while it runs. [`on_request`](Self::on_request) MUST return quickly
/// too; the work goes in the returned future, which runs in its own task.
/// A panic in either is caught, logged, and answered (for a request) as an
/// error; it does not close the connection.
///
/// The future returned by `on_request` is dropped unfinished when its
/// connection ends or the transport shuts down (the answer could not be
/// delivered): handlers MUST NOT rely on running to completion, and the
/// caller sees `Disconnected`, `ShutDown` or `Timeout` and cannot know
/// whether the work was done.
pub trait Inbound: Send + Sync + 'static {
    /// A one-way message from `from`.
    fn on_message(&self, from: &PeerInfo, channel: Channel, body: bytes::Bytes);

    /// A request from `from`; the future's output is sent back as the
    /// response. `Err(text)` arrives at the caller as
    /// [`TransportError::Remote`]`(text)`.
    fn on_request(
        &self,
        from: PeerInfo,
        channel: Channel,
        body: bytes::Bytes,
    ) -> futures::future::BoxFuture<'static, Result<bytes::Bytes, String>>;
}
