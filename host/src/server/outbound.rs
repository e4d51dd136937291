//! The outbound side of one connection: a bounded queue of frames towards
//! the client and the connection's kill switch.
//!
//! Two ways to queue a frame, for two kinds of senders:
//!
//! - [`Outbound::send`]: the connection's own answers (acks, snapshots,
//!   pongs). It waits for room, so a client that does not read slows down
//!   only its own request processing (backpressure on that client alone).
//! - [`Outbound::push`]: frames produced on behalf of *other* parties
//!   (change events, live-query updates, topic messages). It never waits:
//!   the storage module's sinks and other connections' publishes MUST NOT
//!   block. A full queue (too many frames, or too many bytes) means the
//!   client cannot keep up, so the connection is killed (closed at once)
//!   and the frame is dropped.
//!
//! The queue is bounded twice: by frames (the channel) and by bytes (an
//! atomic tally, decremented by the writer as it takes frames). The byte
//! bound is what limits memory; the frame bound can then be generous
//! enough that a healthy client survives a burst of small frames.
//! - [`Outbound::offer`]: best-effort frames (`ERROR 429`) that are simply
//!   dropped when the queue is full.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use tokio::sync::{mpsc, watch};

use crate::metrics::Registry;
use hangar_core::module::services::MetricsExt;

/// What the writer task takes from the queue.
#[derive(Debug)]
pub enum Out {
    /// One binary frame.
    Frame(Bytes),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

/// Why a frame could not be queued without waiting.
enum Refused {
    /// The byte bound is reached.
    Bytes,
    /// The frame bound is reached.
    Frames,
    /// The writer is gone.
    Closed,
}

/// A cloneable handle to one connection's outbound queue.
#[derive(Clone)]
pub struct Outbound {
    conn: u64,
    tx: mpsc::Sender<Out>,
    kill: Arc<watch::Sender<bool>>,
    metrics: Arc<Registry>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// A queue of at most `capacity` frames and `max_bytes` bytes (pushed
    /// frames count against the byte bound; one frame larger than it is
    /// still accepted into an empty queue) for connection `conn`; returns
    /// the handle, the receiving end for the writer task, and a watch on the
    /// kill switch. The writer MUST call [`Self::taken`] for every frame it
    /// takes.
    #[must_use]
    pub fn new(
        conn: u64,
        capacity: usize,
        max_bytes: usize,
        metrics: Arc<Registry>,
    ) -> (Self, mpsc::Receiver<Out>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (kill, killed) = watch::channel(false);
        (
            Self {
                conn,
                tx,
                kill: Arc::new(kill),
                metrics,
                queued_bytes: Arc::new(AtomicUsize::new(0)),
                max_bytes,
            },
            rx,
            killed,
        )
    }

    /// Bytes of frames queued and not yet taken by the writer.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// The writer took a frame of `len` bytes off the queue.
    pub fn taken(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Reserves `len` bytes of the budget; false when they do not fit (an
    /// empty queue takes any one frame, so a big frame is never refused
    /// outright).
    fn reserve(&self, len: usize) -> bool {
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The connection this queue belongs to.
    #[must_use]
    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// Queues one of the connection's own answers, waiting for room.
    /// Returns false when the connection is gone or killed.
    pub async fn send(&self, frame: impl Into<Bytes>) -> bool {
        if self.is_killed() {
            return false;
        }
        let frame: Bytes = frame.into();
        let len = frame.len();
        let mut killed = self.kill.subscribe();
        // Own answers wait for frame room only; their bytes are counted so
        // that pushes from others see the real backlog.
        self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let sent = tokio::select! {
            r = self.tx.send(Out::Frame(frame)) => r.is_ok(),
            _ = killed.wait_for(|k| *k) => false,
        };
        if !sent {
            self.taken(len);
        }
        sent
    }

    /// Queues a frame on behalf of someone else without waiting. A full
    /// queue kills the connection (it is too slow); returns whether the
    /// frame was queued.
    pub fn push(&self, frame: Bytes) -> bool {
        match self.try_queue(frame) {
            Ok(()) => true,
            Err(Refused::Bytes) => self.too_slow("bytes"),
            Err(Refused::Frames) => self.too_slow("frames"),
            Err(Refused::Closed) => false,
        }
    }

    /// Kills the connection as too slow (once, counted); always false, the
    /// frame that found the queue full was not queued.
    fn too_slow(&self, bound: &'static str) -> bool {
        if !self.is_killed() {
            tracing::warn!(
                conn = self.conn,
                bound,
                queued_bytes = self.queued_bytes(),
                "client cannot keep up: outbound queue full, disconnecting"
            );
            self.metrics
                .counter("hangar_ws_slow_consumer_disconnects_total", &[], 1.0);
            self.kill();
        }
        false
    }

    /// Queues a best-effort frame; dropped if the queue is full.
    pub fn offer(&self, frame: Bytes) -> bool {
        self.try_queue(frame).is_ok()
    }

    /// Queues `frame` without waiting if both bounds leave room; a refused
    /// frame leaves no bytes reserved.
    fn try_queue(&self, frame: Bytes) -> Result<(), Refused> {
        let len = frame.len();
        if !self.reserve(len) {
            return Err(Refused::Bytes);
        }
        self.tx.try_send(Out::Frame(frame)).map_err(|e| {
            self.taken(len);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Frames,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    /// Asks the writer to send a close frame after what is queued. Waits for
    /// room like [`Self::send`].
    pub async fn close(&self, code: u16, reason: &'static str) {
        let mut killed = self.kill.subscribe();
        tokio::select! {
            _ = self.tx.send(Out::Close(code, reason)) => {}
            _ = killed.wait_for(|k| *k) => {}
        }
    }

    /// Closes the connection at once, dropping whatever is queued.
    pub fn kill(&self) {
        self.kill.send_replace(true);
    }

    /// True once the connection was killed.
    #[must_use]
    pub fn is_killed(&self) -> bool {
        *self.kill.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn t10_push_on_a_full_queue_kills_the_connection_and_never_waits() {
        let (out, mut rx, killed) = Outbound::new(7, 2, 1 << 20, Arc::new(Registry::default()));
        assert!(out.push(Bytes::from_static(b"a")));
        assert!(out.push(Bytes::from_static(b"b")));
        assert!(!*killed.borrow());
        assert!(
            !out.push(Bytes::from_static(b"c")),
            "third frame is refused"
        );
        assert!(*killed.borrow(), "a full queue kills the connection");
        assert!(
            !out.send(Bytes::from_static(b"d")).await,
            "killed: send refuses"
        );
        assert!(matches!(rx.recv().await, Some(Out::Frame(f)) if f == "a"));
    }

    #[tokio::test]
    async fn t11_offer_drops_on_a_full_queue_without_killing() {
        let (out, _rx, killed) = Outbound::new(1, 1, 1 << 20, Arc::new(Registry::default()));
        assert!(out.offer(Bytes::from_static(b"a")));
        assert!(!out.offer(Bytes::from_static(b"b")));
        assert!(!*killed.borrow());
    }

    #[tokio::test]
    async fn t12_send_waits_for_room_then_delivers_in_order() {
        let (out, mut rx, _killed) = Outbound::new(1, 1, 1 << 20, Arc::new(Registry::default()));
        assert!(out.send(Bytes::from_static(b"1")).await);
        let o2 = out.clone();
        let h = tokio::spawn(async move { o2.send(Bytes::from_static(b"2")).await });
        assert!(matches!(rx.recv().await, Some(Out::Frame(f)) if f == "1"));
        assert!(h.await.unwrap());
        assert!(matches!(rx.recv().await, Some(Out::Frame(f)) if f == "2"));
    }

    #[tokio::test]
    async fn t13_the_byte_bound_kills_before_the_frame_bound_and_taken_frees_room() {
        let (out, mut rx, killed) = Outbound::new(1, 100, 10, Arc::new(Registry::default()));
        assert!(
            out.push(Bytes::from_static(b"0123456789abcdef")),
            "one frame over the bound fits an empty queue"
        );
        assert_eq!(out.queued_bytes(), 16);
        let Some(Out::Frame(f)) = rx.recv().await else {
            panic!("frame expected")
        };
        out.taken(f.len());
        assert_eq!(out.queued_bytes(), 0);
        assert!(out.push(Bytes::from_static(b"123456")));
        assert!(
            !out.offer(Bytes::from_static(b"789012")),
            "offer past the byte bound is dropped"
        );
        assert!(!*killed.borrow(), "offer never kills");
        assert!(
            !out.push(Bytes::from_static(b"789012")),
            "push past the byte bound is refused"
        );
        assert!(*killed.borrow(), "and kills the connection");
        assert_eq!(
            out.queued_bytes(),
            6,
            "refused frames leave no tally behind"
        );
    }
}
