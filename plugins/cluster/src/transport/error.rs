//! [`TransportError`]: what a transport call can fail with.

use std::net::SocketAddr;
use std::time::Duration;

use hangar_core::{ErrorKind, ModuleError};

/// Why a transport call failed.
///
/// `Clone` so that one broken connection can fail every request that was
/// waiting on it with the same error.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// The listening socket could not be bound (address in use, no
    /// permission). Only [`Transport::start`](super::Transport::start)
    /// returns it.
    #[error("cannot bind the cluster transport to {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's message.
        reason: String,
    },
    /// A [`TransportConfig`](super::TransportConfig) setting is out of
    /// range; the text names it and what was expected. Only
    /// [`Transport::start`](super::Transport::start) returns it.
    #[error("cluster transport configuration: {0}")]
    Config(String),
    /// The TLS configuration is unusable: a certificate, key or CA file is
    /// missing or malformed. The text names the file and what was wrong.
    /// Only [`Transport::start`](super::Transport::start) returns it.
    #[error("cluster TLS configuration: {0}")]
    Tls(String),
    /// No TCP connection to the peer could be made (nothing listens, the
    /// connect timed out). Retrying later may succeed.
    #[error("cannot connect to cluster peer {addr}: {reason}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The connection was made but the handshake failed: the peer belongs to
    /// another cluster or speaks another protocol version, or a certificate
    /// was refused (by either side), or the peer closed the connection
    /// before answering. Retrying does not help until a configuration
    /// changes.
    #[error("cluster peer {addr} refused the connection: {reason}")]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// What was expected and what was found.
        reason: String,
    },
    /// The outgoing queue to the peer is full: the peer (or the network)
    /// does not keep up. Returned by `try_send` only; `send` waits instead.
    #[error("outgoing queue to cluster peer {addr} is full")]
    Full {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The connection broke while a request waited for its answer. The
    /// request may or may not have been processed by the peer.
    #[error("connection to cluster peer {addr} broke before the answer came")]
    Disconnected {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// No answer came within the request's deadline. The request may or may
    /// not have been processed by the peer.
    #[error("cluster peer {addr} did not answer within {after:?}")]
    Timeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The deadline that passed.
        after: Duration,
    },
    /// The peer's handler answered the request with an error; the text is
    /// the handler's.
    #[error("cluster peer failed the request: {0}")]
    Remote(String),
    /// The frame would exceed the frame limit (`max_frame_bytes`). Nothing
    /// was sent.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The size the frame would have (envelope, without the length prefix).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The transport was shut down; no call succeeds after
    /// [`Transport::shutdown`](super::Transport::shutdown).
    #[error("cluster transport is shut down")]
    ShutDown,
}

impl From<TransportError> for ModuleError {
    fn from(e: TransportError) -> Self {
        let kind = match &e {
            TransportError::Bind { .. } | TransportError::Config(_) | TransportError::Tls(_) => {
                ErrorKind::CONFIG
            }
            TransportError::Connect { .. }
            | TransportError::Refused { .. }
            | TransportError::Disconnected { .. } => ErrorKind::UNAVAILABLE,
            TransportError::Full { .. } => ErrorKind::OVERLOADED,
            TransportError::Timeout { .. } => ErrorKind::TIMEOUT,
            TransportError::Remote(_) => ErrorKind::INTERNAL,
            TransportError::FrameTooLarge { .. } => ErrorKind::INVALID_INPUT,
            TransportError::ShutDown => ErrorKind::SHUT_DOWN,
        };
        ModuleError::new(kind, e.to_string())
    }
}
