//! Operator endpoints for anti-entropy repair:
//!
//! - `POST /cluster/repair`: runs one repair pass now over every partition
//!   this node owns (the cluster module's `repair`) and answers its
//!   report as JSON: `{"partitionsChecked", "recordsRepaired", "errors"}`.
//! - `GET /cluster/digests`: this node's per-(map, partition) digests for
//!   every partition it holds (owns or backs up): `{"nodeId",
//!   "tableVersion", "held": [partition...], "digests": [{"map",
//!   "partition", "hash", "count"}...]}`. Two holders of a partition agree
//!   on its records exactly when their digests for it are equal (up to
//!   hash collisions), which is how an operator (or a test) checks that
//!   replicas converged.
//!
//! Errors answer `503 {"error": ...}` with what the module reported
//! (cluster not started, a partition still loading after a table change).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hangar_core::module::digest::{DigestLevel, DigestRequest};
use hangar_core::PARTITION_COUNT;
use serde_json::json;

use super::FrontEnd;

fn unavailable(what: &str, e: impl std::fmt::Display) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": format!("{what}: {e}") })),
    )
}

/// `POST /cluster/repair` (module docs).
pub async fn repair(State(fe): State<Arc<FrontEnd>>) -> impl IntoResponse {
    match fe.node.cluster.repair().await {
        Ok(r) => (
            StatusCode::OK,
            Json(json!({
                "partitionsChecked": r.partitions_checked,
                "recordsRepaired": r.records_repaired,
                "errors": r.errors.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            })),
        ),
        Err(e) => unavailable("repair", e),
    }
}

/// `GET /cluster/digests` (module docs).
pub async fn digests(State(fe): State<Arc<FrontEnd>>) -> impl IntoResponse {
    let view = fe.node.cluster.partition_view();
    let version = view.version();
    let held: Vec<u32> = (0..PARTITION_COUNT)
        .filter(|p| view.is_related(*p))
        .collect();
    let request = DigestRequest {
        level: DigestLevel::Partitions,
        map: "".into(),
        partitions: held.clone().into(),
        under: Vec::new().into(),
    };
    match fe.node.storage.accessor().partition_digests(request).await {
        Ok(items) => (
            StatusCode::OK,
            Json(json!({
                "nodeId": fe.node.config.node_id,
                "tableVersion": version,
                "held": held,
                "digests": items
                    .iter()
                    .map(|i| json!({
                        "map": i.map.as_str(),
                        "partition": i.partition,
                        "hash": i.hash,
                        "count": i.count,
                    }))
                    .collect::<Vec<_>>(),
            })),
        ),
        Err(e) => unavailable("digests", e),
    }
}
