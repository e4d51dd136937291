//! The network front end: one port serving HTTP (`/health`, `/metrics`,
//! `/cluster/repair`, `/cluster/digests`, `POST /sync`) and the TopGun
//! client protocol over WebSocket at `/ws` (and at `/`).
//!
//! # Layout
//!
//! - `mod.rs`: the router, [`bind`] / [`serve`], and [`Listening::stop`].
//! - `accept`: the accept loop (connection cap, request timeout, accept
//!   errors) and the process's open-file limit.
//! - `ws`: upgrade and the per-connection task (reader, limits, writer).
//! - `session`: one connection's state and its clean-up.
//! - `outbound`: the bounded queue towards one client and its kill switch.
//! - `handlers/`: one file per message family.
//! - `http_sync`: `POST /sync`, HTTP sync for clients without a WebSocket.
//! - `fanout`: the storage change sink that sends `SERVER_EVENT`s.
//! - `grouped`: grouped live queries (`groupBy` / `aggregations`), kept
//!   on the host from the ungrouped live query's updates.
//! - `topics`: node-local pub/sub.
//! - `repair`: the operator endpoints of anti-entropy repair.
//! - `auth`: HS256 JWT checks.
//! - `limits`: the per-connection token bucket and the in-flight cap.
//! - `state`: what all connections share, and the drain tracker.
//!
//! The port is bound before the modules are built ([`bind`]), so that the
//! node can advertise its real client URL (`ws://host:port/ws`) in the
//! partition map; it serves only once the modules are up ([`serve`]).
//!
//! Shutdown ([`Listening::stop`]): stop accepting, tell every connection to
//! close; each sends the acknowledgements of its in-flight writes, then its
//! close frame (code 1001), and reads until the client's close reply so the
//! socket is not reset under those acknowledgements; wait for the connection
//! tasks (bounded by `shutdown_grace_ms`); the modules shut down after that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hangar_core::module::services::MetricKind;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::HangarConfig;
use crate::factory::{Node, StartError, Step};

pub mod accept;
pub mod auth;
pub mod counters;
pub mod epochs;
pub mod fanout;
pub mod grouped;
pub mod handlers;
pub mod http_sync;
pub mod limits;
pub mod link;
pub mod outbound;
pub mod pn_counter;
pub mod repair;
pub mod session;
pub mod state;
pub mod topics;
pub mod write_path;
pub mod ws;

pub use accept::{raise_fd_limit, FdLimit};
pub use state::FrontEnd;

/// The router of the node's port.
pub fn router(fe: Arc<FrontEnd>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/cluster/repair", post(repair::repair))
        .route("/cluster/digests", get(repair::digests))
        .route("/sync", post(http_sync::sync))
        .route("/ws", get(ws::upgrade))
        // Clients given a node's address without a path (cluster maps
        // advertise `ws://host:port`) upgrade at the root.
        .route("/", get(ws::upgrade))
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
    let st = fe.node.cluster.status();
    let members: Vec<serde_json::Value> = fe
        .node
        .cluster
        .members()
        .iter()
        .map(|m| {
            json!({
                "nodeId": m.node_id.as_str(),
                "status": m.status,
                "address": m.address.as_str(),
                "endpoint": m.client_endpoint.as_str(),
                "local": m.is_local,
            })
        })
        .collect();
    let storage_failed = fe
        .node
        .metrics
        .value(STORAGE_FAILED_GAUGE, MetricKind::Gauge, &[])
        .is_some_and(|v| v > 0.0);
    let (code, status) = if storage_failed {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    } else if st.ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::OK, "starting")
    };
    (
        code,
        Json(json!({
            "status": status,
            "nodeId": fe.node.config.node_id,
            "storage": {
                "name": storage.name.as_str(),
                "version": storage.version.as_str(),
                "status": if storage_failed { "failed" } else { "ok" },
            },
            "cluster": {
                "name": cluster.name.as_str(),
                "version": cluster.version.as_str(),
                "clusterId": st.cluster_id.as_str(),
                "state": st.phase,
                "ready": st.ready,
                "leader": st.leader.as_ref().map(|l| l.as_str()).into_option(),
                "raftTerm": st.raft_term,
                "raftCommitIndex": st.raft_commit_index,
                "tableVersion": st.table_version,
                "membersAlive": st.members_alive,
                "members": members,
            },
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
    task: JoinHandle<()>,
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
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "network front end task failed"),
            Err(_) => tracing::warn!("HTTP server did not stop within the grace period"),
        }
        self.fe.epochs.flush();
    }
}

/// Serves the bound port for `node`: attaches the front end to the host link
/// (from then on `SERVER_EVENT`s and topic messages reach its clients) and
/// starts accepting.
#[must_use]
pub fn serve(bound: Bound, node: Arc<Node>, epochs: Arc<epochs::Epochs>) -> Listening {
    let (stop, stopped) = watch::channel(false);
    let fe = Arc::new(FrontEnd::new(node.clone(), stopped.clone(), epochs));
    node.link.attach_front(&fe);
    tokio::spawn(epochs::upkeep::run(Arc::downgrade(&fe), stopped.clone()));
    let app = router(fe.clone());
    let task = tokio::spawn(accept::accept_loop(
        bound.listener,
        app,
        fe.clone(),
        stopped,
    ));
    Listening {
        addr: bound.addr,
        fe,
        stop,
        task,
    }
}
