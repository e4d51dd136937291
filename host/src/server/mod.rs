//! The network front end: one port serving HTTP (`/health`, `/metrics`) and,
//! with the client protocol, WebSocket at `/ws`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::factory::{Node, StartError, Step};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The node.
    pub node: Arc<Node>,
}

/// The router of the node's port.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let storage = s.node.storage.info();
    let cluster = s.node.cluster.info();
    Json(json!({
        "status": "ok",
        "nodeId": s.node.config.node_id,
        "storage": {"name": storage.name.as_str(), "version": storage.version.as_str()},
        "cluster": {"name": cluster.name.as_str(), "version": cluster.version.as_str()},
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.node.metrics.render(),
    )
}

/// The bound listener and its serving task.
pub struct Listening {
    /// The address actually bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listening {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "network front end stopped with an error"),
            Err(e) => tracing::error!(error = %e, "network front end task failed"),
        }
    }
}

/// Binds the node's port and starts serving.
///
/// # Errors
/// [`StartError`] at the network step when the address cannot be bound.
pub async fn listen(node: Arc<Node>) -> Result<Listening, StartError> {
    let bind = format!("{}:{}", node.config.host, node.config.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| StartError::at(Step::Network, format!("cannot bind {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::at(Step::Network, e))?;
    let app = router(AppState { node });
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(Listening { addr, stop, task })
}
