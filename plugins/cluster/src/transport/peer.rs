//! One destination: its bounded outgoing queue, the requests waiting for an
//! answer from it, and the task that dials it, keeps the connection and
//! redials with backoff.
//!
//! # Lifecycle
//!
//! The task sleeps until something is queued, then dials (TCP connect within
//! `connect_timeout`, then TLS and the handshake within
//! [`HANDSHAKE_TIMEOUT`]) and runs the connection. When the connection ends,
//! every waiting request fails at once with
//! [`TransportError::Disconnected`]; if frames remain queued, it redials
//! after a backoff (50 ms doubling to 2 s, each delay drawn from its upper
//! half; it starts over only after a connection that lasted 2 s, so a peer
//! that drops every connection at once is not redialed in a tight loop).
//! A failed dial fails the waiting requests with its error. After a
//! refused handshake, or [`MAX_FAILED_DIALS`] failed dials in a row, the
//! queued frames are dropped (with one log line) and the task sleeps again
//! until the next frame, so an unreachable peer holds no memory and costs
//! no retries nobody asked for.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::connection::{self, Outbound};
use super::endpoint::Shared;
use super::error::TransportError;
use super::frame::Frame;
use super::handshake::{establish_outbound, Conn, Refusal, HANDSHAKE_TIMEOUT};
use super::PeerInfo;

/// Failed dials in a row after which the queued frames are dropped.
const MAX_FAILED_DIALS: u32 = 10;
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

type Answer = Result<Bytes, TransportError>;

/// Requests sent (or queued) to one peer that wait for their answer.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl Pending {
    pub fn insert(&self, id: u64, tx: oneshot::Sender<Answer>) {
        self.waiting.lock().insert(id, tx);
    }

    pub fn remove(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    pub fn contains(&self, id: u64) -> bool {
        self.waiting.lock().contains_key(&id)
    }

    /// Delivers the answer to request `id`, if anyone still waits for it.
    pub fn complete(&self, id: u64, answer: Answer) {
        if let Some(tx) = self.waiting.lock().remove(&id) {
            let _ = tx.send(answer);
        }
    }

    /// Fails every waiting request with `err`.
    pub fn fail_all(&self, err: &TransportError) {
        let drained: Vec<_> = self.waiting.lock().drain().collect();
        for (_, tx) in drained {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// One destination address.
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub queue: mpsc::Sender<Frame>,
    pub pending: Pending,
    /// What the handshake said, while a dialed connection is up.
    pub info: Mutex<Option<PeerInfo>>,
}

impl Peer {
    /// Creates the peer and spawns its task.
    pub fn spawn(shared: &Arc<Shared>, addr: SocketAddr) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(shared.cfg.peer_queue_frames);
        let peer = Arc::new(Self {
            addr,
            queue: tx,
            pending: Pending::default(),
            info: Mutex::new(None),
        });
        tokio::spawn(run(shared.clone(), peer.clone(), rx));
        peer
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    /// The next delay: uniform in the upper half of the current step.
    fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // A fresh `RandomState` is randomly keyed: hashing anything with it
        // gives a random number without a dependency on a RNG crate.
        let r = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let fraction = (r >> 11) as f64 / (1u64 << 53) as f64;
        step / 2 + step.mul_f64(fraction / 2.0)
    }
}

/// Why a dial failed.
enum DialError {
    /// No TCP connection.
    Connect(String),
    /// Connected, but the handshake failed.
    Refused(Refusal),
}

async fn dial(shared: &Shared, addr: SocketAddr) -> Result<(Conn, PeerInfo), DialError> {
    let connect = tokio::time::timeout(shared.cfg.connect_timeout, TcpStream::connect(addr));
    let tcp = match connect.await {
        Err(_) => {
            return Err(DialError::Connect(format!(
                "no TCP connection within {:?}",
                shared.cfg.connect_timeout
            )))
        }
        Ok(Err(e)) => return Err(DialError::Connect(e.to_string())),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    establish_outbound(
        Box::new(tcp),
        addr,
        shared.tls.as_ref(),
        &shared.me,
        shared.cfg.max_frame_bytes,
        HANDSHAKE_TIMEOUT,
    )
    .await
    .map_err(DialError::Refused)
}

/// Drops everything queued; returns how many frames that was.
fn drop_queued(rx: &mut mpsc::Receiver<Frame>, carry: &mut Option<Frame>) -> usize {
    let mut n = usize::from(carry.take().is_some());
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// The peer's task; returns at shutdown.
async fn run(shared: Arc<Shared>, peer: Arc<Peer>, mut rx: mpsc::Receiver<Frame>) {
    let addr = peer.addr;
    let mut carry: Option<Frame> = None;
    'idle: loop {
        if carry.is_none() {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                f = rx.recv() => match f {
                    Some(f) => carry = Some(f),
                    None => return,
                },
            }
        }
        let mut backoff = Backoff::new();
        let mut failed_dials = 0;
        loop {
            let attempt = tokio::select! {
                () = shared.shutdown.cancelled() => return,
                r = dial(&shared, addr) => r,
            };
            match attempt {
                Ok((conn, info)) => {
                    failed_dials = 0;
                    let connected_at = tokio::time::Instant::now();
                    tracing::debug!("connected to peer {addr} (node {})", info.node_id);
                    *peer.info.lock() = Some(info.clone());
                    let counted = shared.metrics.connection();
                    let outbound = Outbound {
                        queue: &mut rx,
                        carry: &mut carry,
                        pending: &peer.pending,
                    };
                    let why = connection::run(&shared, conn, &info, Some(outbound)).await;
                    drop(counted);
                    *peer.info.lock() = None;
                    if shared.shutdown.is_cancelled() {
                        peer.pending.fail_all(&TransportError::ShutDown);
                        return;
                    }
                    peer.pending
                        .fail_all(&TransportError::Disconnected { addr });
                    tracing::info!(
                        "connection to peer {addr} (node {}) ended: {why}",
                        info.node_id
                    );
                    // A connection that breaks right after each handshake
                    // keeps backing off; one that lived a while starts over.
                    if connected_at.elapsed() >= BACKOFF_MAX {
                        backoff = Backoff::new();
                    }
                }
                Err(DialError::Refused(refusal)) => {
                    shared.metrics.refused(&refusal.code);
                    // Drain before failing: a request queued in between
                    // is then failed too instead of waiting for its timeout.
                    let dropped = drop_queued(&mut rx, &mut carry);
                    peer.pending.fail_all(&TransportError::Refused {
                        addr,
                        reason: refusal.describe(),
                    });
                    refusal.log_dialer(addr, dropped);
                    continue 'idle;
                }
                Err(DialError::Connect(reason)) => {
                    failed_dials += 1;
                    let give_up = failed_dials >= MAX_FAILED_DIALS;
                    // Drain before failing, as above.
                    let dropped = if give_up {
                        drop_queued(&mut rx, &mut carry)
                    } else {
                        0
                    };
                    peer.pending.fail_all(&TransportError::Connect {
                        addr,
                        reason: reason.clone(),
                    });
                    if give_up {
                        tracing::warn!(
                            "cannot connect to peer {addr} after {failed_dials} tries ({reason}); \
                             queued frames dropped: {dropped}"
                        );
                        continue 'idle;
                    }
                    if failed_dials == 1 {
                        tracing::info!("cannot connect to peer {addr}: {reason}; retrying");
                    } else {
                        tracing::debug!("cannot connect to peer {addr}: {reason}; retrying");
                    }
                }
            }
            if carry.is_none() && rx.is_empty() {
                continue 'idle;
            }
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff.delay()) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
        let mut step = BACKOFF_START;
        for d in &delays {
            assert!(
                *d >= step / 2 && *d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(BACKOFF_MAX);
        }
        assert!(delays[9] >= BACKOFF_MAX / 2);
        let distinct: std::collections::HashSet<_> = delays[6..].iter().collect();
        assert!(distinct.len() > 1, "capped delays are jittered: {delays:?}");
    }

    #[test]
    fn t10_pending_fails_all_waiters_with_one_error() {
        let p = Pending::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        p.insert(1, tx1);
        p.insert(2, tx2);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        p.fail_all(&TransportError::Disconnected { addr });
        assert_eq!(
            rx1.try_recv().unwrap(),
            Err(TransportError::Disconnected { addr })
        );
        assert_eq!(
            rx2.try_recv().unwrap(),
            Err(TransportError::Disconnected { addr })
        );
        assert!(!p.contains(1));
    }
}
