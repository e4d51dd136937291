//! [`Transport`]: the listener, the table of peers, and the public calls.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hangar_core::module::services::MetricsSink;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::connection;
use super::error::TransportError;
use super::frame::{check_size, Frame, FrameKind};
use super::handshake::{establish_inbound, Identity, HANDSHAKE_TIMEOUT};
use super::metrics::TransportMetrics;
use super::peer::{Peer, Pending};
use super::rtt::RttTable;
use super::tls::TlsContext;
use super::{Channel, Inbound, PeerInfo, TransportConfig};

/// Smallest accepted `max_frame_bytes`: room for a handshake frame.
const MIN_FRAME_BYTES: usize = 1024;

/// State shared by the transport's tasks.
pub(crate) struct Shared {
    pub me: Identity,
    pub cfg: TransportConfig,
    pub tls: Option<TlsContext>,
    pub inbound: Arc<dyn Inbound>,
    pub metrics: Arc<TransportMetrics>,
    pub shutdown: CancellationToken,
    /// Outgoing side, one per destination address.
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    /// Accepted connections that completed the handshake, by a local id.
    incoming: Mutex<HashMap<u64, PeerInfo>>,
    next_id: AtomicU64,
    /// Measured round trips of answered requests, by destination.
    rtt: RttTable,
}

/// The node-to-node transport of one node: see the [module docs](super).
///
/// Dropping the last `Arc` shuts it down, as [`Transport::shutdown`] does.
pub struct Transport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.shared.me.node_id)
            .field("addr", &self.shared.me.addr)
            .finish_non_exhaustive()
    }
}

fn config_error(msg: String) -> TransportError {
    TransportError::Config(msg)
}

fn validate(cfg: &TransportConfig) -> Result<(), TransportError> {
    if cfg.node_id.is_empty() {
        return Err(config_error(
            "node_id is empty; expected the node's id".into(),
        ));
    }
    if cfg.peer_queue_frames == 0 {
        return Err(config_error(
            "peer_queue_frames is 0; expected at least 1".into(),
        ));
    }
    if cfg.max_frame_bytes < MIN_FRAME_BYTES || u32::try_from(cfg.max_frame_bytes).is_err() {
        return Err(config_error(format!(
            "max_frame_bytes is {}; expected {MIN_FRAME_BYTES} to {}",
            cfg.max_frame_bytes,
            u32::MAX
        )));
    }
    if cfg.advertise_ip.is_none() && cfg.bind.ip().is_unspecified() {
        return Err(config_error(format!(
            "bind address {} is a wildcard, which peers cannot dial; set advertise_ip",
            cfg.bind
        )));
    }
    Ok(())
}

impl Transport {
    /// Binds the listener and starts accepting peers, on the ambient tokio
    /// runtime.
    ///
    /// # Errors
    /// [`TransportError::Config`] for settings out of range (see
    /// [`TransportConfig`]), [`TransportError::Tls`] for unusable
    /// certificate files (checked before binding), [`TransportError::Bind`]
    /// when the address cannot be bound.
    pub async fn start(
        cfg: TransportConfig,
        inbound: Arc<dyn Inbound>,
        metrics: Arc<dyn MetricsSink>,
    ) -> Result<Arc<Self>, TransportError> {
        validate(&cfg)?;
        let tls = cfg.tls.as_ref().map(TlsContext::load).transpose()?;
        let bind = cfg.bind;
        let bind_err = move |e: std::io::Error| TransportError::Bind {
            addr: bind,
            reason: e.to_string(),
        };
        // Bound through std so that the port is taken before `start` returns
        // even if the runtime is busy.
        let std_listener = StdListener::bind(cfg.bind).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
        let bound = listener.local_addr().map_err(bind_err)?;
        let port = bound.port();
        let ip = cfg.advertise_ip.unwrap_or(cfg.bind.ip());
        let me = Identity {
            cluster_id: cfg.cluster_id.clone(),
            node_id: cfg.node_id.clone(),
            addr: SocketAddr::new(ip, port),
        };
        let shared = Arc::new(Shared {
            me,
            cfg,
            tls,
            inbound,
            metrics: Arc::new(TransportMetrics::new(metrics)),
            shutdown: CancellationToken::new(),
            peers: Mutex::new(HashMap::new()),
            incoming: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            rtt: RttTable::default(),
        });
        tracing::info!(
            "cluster transport of node {} listening on {} (advertised {}, TLS {})",
            shared.me.node_id,
            bound,
            shared.me.addr,
            if shared.tls.is_some() { "on" } else { "off" }
        );
        tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Arc::new(Self { shared }))
    }

    /// The address peers dial to reach this node: `advertise_ip` (or the
    /// bind IP) with the bound port.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.me.addr
    }

    /// This node's id, as its handshakes say.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.shared.me.node_id
    }

    fn me(&self) -> PeerInfo {
        PeerInfo {
            node_id: self.shared.me.node_id.clone(),
            addr: self.shared.me.addr,
        }
    }

    fn check(&self, body: &Bytes) -> Result<(), TransportError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(TransportError::ShutDown);
        }
        check_size(body.len(), self.shared.cfg.max_frame_bytes)
    }

    /// The peer for `to`, created (with its task) on first use.
    fn peer(&self, to: SocketAddr) -> Arc<Peer> {
        if let Some(p) = self.shared.peers.lock().get(&to) {
            return p.clone();
        }
        self.shared
            .peers
            .lock()
            .entry(to)
            .or_insert_with(|| Peer::spawn(&self.shared, to))
            .clone()
    }

    /// Queues a one-way message to `to`, waiting while the peer's queue is
    /// full (backpressure). Connects lazily and reconnects with backoff.
    ///
    /// `Ok` means queued, not delivered: a message is delivered at most
    /// once, and one queued or in flight when a connection breaks may be
    /// lost. Messages to one peer on one connection arrive in order. A
    /// message to [`local_addr`](Self::local_addr) goes to this node's
    /// [`Inbound`] directly, before this returns.
    ///
    /// # Errors
    /// [`TransportError::FrameTooLarge`], [`TransportError::ShutDown`].
    /// It waits as long as the queue stays full (a peer that does not read);
    /// callers that must not wait use [`try_send`](Self::try_send) or a
    /// timeout.
    pub async fn send(
        &self,
        to: SocketAddr,
        channel: Channel,
        body: Bytes,
    ) -> Result<(), TransportError> {
        self.check(&body)?;
        if to == self.shared.me.addr {
            self.shared.inbound.on_message(&self.me(), channel, body);
            return Ok(());
        }
        let frame = Frame::new(FrameKind::Message, 0, channel, body);
        self.peer(to)
            .queue
            .send(frame)
            .await
            .map_err(|_| TransportError::ShutDown)
    }

    /// As [`send`](Self::send), without waiting.
    ///
    /// # Errors
    /// [`TransportError::Full`] when the peer's queue holds
    /// `peer_queue_frames` frames (the message is not queued; callers such as
    /// gossip drop it), and as [`send`](Self::send).
    pub fn try_send(
        &self,
        to: SocketAddr,
        channel: Channel,
        body: Bytes,
    ) -> Result<(), TransportError> {
        self.check(&body)?;
        if to == self.shared.me.addr {
            self.shared.inbound.on_message(&self.me(), channel, body);
            return Ok(());
        }
        let frame = Frame::new(FrameKind::Message, 0, channel, body);
        self.peer(to).queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::Full { addr: to },
            mpsc::error::TrySendError::Closed(_) => TransportError::ShutDown,
        })
    }

    /// Sends a request to `to` and waits for the answer, at most `timeout`
    /// (queueing included). A request to [`local_addr`](Self::local_addr)
    /// runs this node's [`Inbound::on_request`] directly.
    ///
    /// # Errors
    /// - [`TransportError::Remote`]: the peer's handler returned `Err`.
    /// - [`TransportError::Timeout`]: no answer within `timeout`.
    /// - [`TransportError::Disconnected`]: the connection broke while
    ///   waiting; returned at once, not at the deadline.
    /// - [`TransportError::Connect`] / [`TransportError::Refused`]: the
    ///   peer could not be reached; returned at the first failed dial.
    /// - [`TransportError::FrameTooLarge`], [`TransportError::ShutDown`].
    ///
    /// After `Timeout` or `Disconnected` the peer may or may not have
    /// processed the request.
    pub async fn request(
        &self,
        to: SocketAddr,
        channel: Channel,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        self.check(&body)?;
        let timed_out = TransportError::Timeout {
            addr: to,
            after: timeout,
        };
        if to == self.shared.me.addr {
            let answer = self.shared.inbound.on_request(self.me(), channel, body);
            return match tokio::time::timeout(timeout, answer).await {
                Err(_) => Err(timed_out),
                Ok(r) => r.map_err(TransportError::Remote),
            };
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let peer = self.peer(to);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        peer.pending.insert(id, tx);
        let _waiting = Waiting {
            pending: &peer.pending,
            id,
        };
        // `shutdown` cancels before failing the pending requests, so a
        // request inserted after that sweep sees the cancellation here.
        if self.shared.shutdown.is_cancelled() {
            return Err(TransportError::ShutDown);
        }
        let frame = Frame::new(FrameKind::Request, id, channel, body);
        let sent = std::time::Instant::now();
        match tokio::time::timeout_at(deadline, peer.queue.send(frame)).await {
            Err(_) => return Err(timed_out),
            Ok(Err(_)) => return Err(TransportError::ShutDown),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(timed_out),
            Ok(Ok(answer)) => {
                if matches!(answer, Ok(_) | Err(TransportError::Remote(_))) {
                    self.shared.rtt.record(to, sent.elapsed());
                }
                answer
            }
            // The peer's task ended without answering: only at shutdown.
            Ok(Err(_)) => Err(TransportError::ShutDown),
        }
    }

    /// The average round trip of requests to `to` that were answered
    /// (see [`RttTable`]); `None` before the first answer.
    #[must_use]
    pub fn rtt(&self, to: SocketAddr) -> Option<Duration> {
        self.shared.rtt.get(to)
    }

    /// Peers with a live, handshaken connection in either direction, as
    /// their handshake described them; each listed once.
    #[must_use]
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .shared
            .peers
            .lock()
            .values()
            .filter_map(|p| p.info.lock().clone())
            .collect();
        out.extend(self.shared.incoming.lock().values().cloned());
        out.sort_by(|a, b| (a.addr, &a.node_id).cmp(&(b.addr, &b.node_id)));
        out.dedup();
        out
    }

    /// Stops the listener and every connection; waiting requests fail with
    /// [`TransportError::ShutDown`], and so does every later call.
    /// Idempotent. The listening socket and the connections close as their
    /// tasks notice, within a scheduling round rather than before this
    /// returns.
    pub fn shutdown(&self) {
        if self.shared.shutdown.is_cancelled() {
            return;
        }
        self.shared.shutdown.cancel();
        let peers: Vec<Arc<Peer>> = self.shared.peers.lock().values().cloned().collect();
        for p in peers {
            p.pending.fail_all(&TransportError::ShutDown);
        }
        tracing::info!(
            "cluster transport of node {} shut down",
            self.shared.me.node_id
        );
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes a request's waiting entry however its call ends (answered,
/// timed out, or the caller dropped the future).
struct Waiting<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, remote)) => {
                tokio::spawn(serve_inbound(shared.clone(), tcp, remote));
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!("cluster transport accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_inbound(shared: Arc<Shared>, tcp: TcpStream, remote: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let established = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        r = establish_inbound(
            Box::new(tcp),
            shared.tls.as_ref(),
            &shared.me,
            shared.cfg.max_frame_bytes,
            HANDSHAKE_TIMEOUT,
        ) => r,
    };
    let (conn, info) = match established {
        Ok(ok) => ok,
        Err(refusal) => {
            shared.metrics.refused(&refusal.code);
            refusal.log_acceptor(remote);
            return;
        }
    };
    tracing::debug!(
        "accepted peer {} (node {}) from {remote}",
        info.addr,
        info.node_id
    );
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.incoming.lock().insert(id, info.clone());
    let counted = shared.metrics.connection();
    let why = connection::run(&shared, conn, &info, None).await;
    drop(counted);
    shared.incoming.lock().remove(&id);
    tracing::debug!(
        "connection from peer {} (node {}) ended: {why}",
        info.addr,
        info.node_id
    );
}
