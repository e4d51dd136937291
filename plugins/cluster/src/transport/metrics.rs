//! The transport's metrics, named in one place.
//!
//! - `hangar_cluster_transport_bytes_total{direction="sent"|"received"}`:
//!   frame bytes on the wire, length prefix included (TLS overhead not).
//! - `hangar_cluster_transport_frames_total{direction, channel}`: frames,
//!   handshake frames included (on `control`).
//! - `hangar_cluster_transport_refused_total{reason}`: handshakes that
//!   failed, as seen by this node, either side: `cluster_id`,
//!   `protocol_version`, `tls`, `handshake` (anything else: a malformed or
//!   missing first frame, a timeout, a peer that closed).
//! - `hangar_cluster_transport_connections`: live connections, both
//!   directions.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use hangar_core::module::services::{MetricsExt, MetricsSink};

use super::Channel;

const BYTES: &str = "hangar_cluster_transport_bytes_total";
const FRAMES: &str = "hangar_cluster_transport_frames_total";
const REFUSED: &str = "hangar_cluster_transport_refused_total";
const CONNECTIONS: &str = "hangar_cluster_transport_connections";

/// Which way a frame went.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    Sent,
    Received,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
        }
    }
}

/// The transport's view of the metrics sink.
pub(crate) struct TransportMetrics {
    sink: Arc<dyn MetricsSink>,
    connections: AtomicI64,
}

impl TransportMetrics {
    pub fn new(sink: Arc<dyn MetricsSink>) -> Self {
        sink.gauge(CONNECTIONS, &[], 0.0);
        Self {
            sink,
            connections: AtomicI64::new(0),
        }
    }

    /// One frame of `wire_len` bytes went `dir` on `channel`.
    pub fn frame(&self, dir: Direction, channel: Channel, wire_len: usize) {
        let d = dir.label();
        self.sink
            .counter(BYTES, &[("direction", d)], wire_len as f64);
        self.sink.counter(
            FRAMES,
            &[("direction", d), ("channel", channel.name())],
            1.0,
        );
    }

    /// A handshake failed for `reason` (a refusal code).
    pub fn refused(&self, reason: &str) {
        self.sink.counter(REFUSED, &[("reason", reason)], 1.0);
    }

    /// Counts a live connection until the guard drops.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        let n = self.connections.fetch_add(1, Ordering::SeqCst) + 1;
        self.sink.gauge(CONNECTIONS, &[], n as f64);
        ConnectionGuard(self.clone())
    }
}

/// Keeps one connection counted in `hangar_cluster_transport_connections`.
pub(crate) struct ConnectionGuard(Arc<TransportMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let n = self.0.connections.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.sink.gauge(CONNECTIONS, &[], n as f64);
    }
}
