//! The network front end: one port serving HTTP (`/health`, `/metrics`) and
//! the TopGun client protocol over WebSocket at `/ws`.
//!
//! # Layout
//!
//! - `mod.rs`: the router, [`bind`] / [`serve`], and [`Listening::stop`].
//! - `ws`: upgrade and the per-connection task (reader, limits, writer).
//! - `session`: one connection's state and its clean-up.
//! - `outbound`: the bounded queue towards one client and its kill switch.
//! - `handlers/`: one file per message family.
//! - `fanout`: the storage change sink that sends `SERVER_EVENT`s.
//! - `topics`: node-local pub/sub.
//! - `auth`: HS256 JWT checks.
//! - `limits`: the per-connection token bucket and the in-flight cap.
//! - `state`: what all connections share, and the drain tracker.
//!
//! The port is bound before the modules are built ([`bind`]), so that the
//! node can advertise its real client URL (`ws://host:port/ws`) in the
//! partition map; it serves only once the modules are up ([`serve`]).
//!
//! Shutdown ([`Listening::stop`]): stop accepting, tell every connection to
//! close (close code 1001), wait for in-flight acknowledgements and the
//! connection tasks (bounded by `shutdown_grace_ms`); the modules shut down
//! after that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hangar_core::module::services::MetricKind;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::HangarConfig;
use crate::factory::{Node, StartError, Step};

pub mod auth;
pub mod fanout;
pub mod handlers;
pub mod limits;
pub mod outbound;
pub mod session;
pub mod state;
pub mod topics;
pub mod ws;

pub use state::FrontEnd;

/// The router of the node's port.
pub fn router(fe: Arc<FrontEnd>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws::upgrade))
        .with_state(fe)
}

/// The gauge a storage module sets to 1 once its store failed (damage met
/// at run time, a failed commit); see the default storage module's metrics
/// table (`plugins/storage/src/module/metrics.rs`).
pub const STORAGE_FAILED_GAUGE: &str = "hangar_storage_failed";

/// `200 {"status": "ok", ...}`, or `503 {"status": "failed", ...}` with
/// `storage.status = "failed"` once the storage module reported its store
/// failed (the reason is in the node's log).
async fn health(State(fe): State<Arc<FrontEnd>>) -> impl IntoResponse {
    let storage = fe.node.storage.info();
    let cluster = fe.node.cluster.info();
    let storage_failed = fe
        .node
        .metrics
        .value(STORAGE_FAILED_GAUGE, MetricKind::Gauge, &[])
        .is_some_and(|v| v > 0.0);
    let (code, status) = if storage_failed {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        code,
        Json(json!({
            "status": status,
            "nodeId": fe.node.config.node_id,
            "storage": {
                "name": storage.name.as_str(),
                "version": storage.version.as_str(),
                "status": status,
            },
            "cluster": {"name": cluster.name.as_str(), "version": cluster.version.as_str()},
        })),
    )
}

async fn metrics(State(fe): State<Arc<FrontEnd>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        fe.node.metrics.render(),
    )
}

/// The node's port, bound but not yet serving.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    /// The address actually bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
}

impl Bound {
    /// The WebSocket URL clients reach this node at.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

/// Binds the node's port (`host:port`; port 0 picks a free one).
///
/// # Errors
/// [`StartError`] at the network step when the address cannot be bound.
pub async fn bind(config: &HangarConfig) -> Result<Bound, StartError> {
    let bind = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| StartError::at(Step::Network, format!("cannot bind {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::at(Step::Network, e))?;
    if addr.ip().is_unspecified() && config.cluster.client_endpoint.is_none() {
        tracing::warn!(
            %addr,
            "bound to an unspecified address: set cluster.client_endpoint so the partition map advertises a reachable URL"
        );
    }
    Ok(Bound { listener, addr })
}

/// The serving front end.
pub struct Listening {
    /// The address served.
    pub addr: SocketAddr,
    fe: Arc<FrontEnd>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Listening {
    /// The shared front-end state (tests, embedding).
    #[must_use]
    pub fn front_end(&self) -> &Arc<FrontEnd> {
        &self.fe
    }

    /// Stops accepting, closes every connection after its in-flight
    /// acknowledgements, and waits (at most `shutdown_grace_ms`).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let grace = Duration::from_millis(self.fe.node.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.fe.drain.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                live = self.fe.drain.live(),
                "connections still open after the shutdown grace period"
            );
        }
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "network front end stopped with an error")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "network front end task failed"),
            Err(_) => tracing::warn!("HTTP server did not stop within the grace period"),
        }
    }
}

/// Serves the bound port for `node`: installs the `SERVER_EVENT` fan-out as
/// the storage module's change sink and starts accepting.
#[must_use]
pub fn serve(bound: Bound, node: Arc<Node>) -> Listening {
    let (stop, stopped) = watch::channel(false);
    let fe = Arc::new(FrontEnd::new(node.clone(), stopped.clone()));
    node.storage.set_change_sink(fe.fanout.clone());
    let app = router(fe.clone());
    let mut stopped_http = stopped;
    let task = tokio::spawn(async move {
        axum::serve(bound.listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped_http.wait_for(|s| *s).await;
            })
            .await
    });
    Listening {
        addr: bound.addr,
        fe,
        stop,
        task,
    }
}
