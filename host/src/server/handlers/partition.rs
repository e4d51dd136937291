//! `PARTITION_MAP_REQUEST` → `PARTITION_MAP`, only when the client's copy
//! is older than the cluster module's map (or it has none).

use hangar_core::module::cluster_types::{self as ct, NodeStatus as CoreStatus};

use crate::protocol::messages::{
    NodeEndpoints, NodeInfo, NodeStatus, PartitionInfo, PartitionMap, PartitionMapRequest,
};
use crate::protocol::Message;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Sends the partition map unless the client already holds this version.
pub async fn request(fe: &FrontEnd, s: &Session, req: PartitionMapRequest) {
    let map = fe.node.cluster.partition_map();
    if req
        .current_version
        .is_some_and(|v| u64::from(v) >= map.version)
    {
        return;
    }
    s.reply(&Message::PartitionMap {
        payload: to_wire(&map),
    })
    .await;
}

fn status(s: CoreStatus) -> NodeStatus {
    match s {
        CoreStatus::Active => NodeStatus::Active,
        CoreStatus::Joining => NodeStatus::Joining,
        CoreStatus::Leaving => NodeStatus::Leaving,
        CoreStatus::Suspected => NodeStatus::Suspected,
        CoreStatus::Failed => NodeStatus::Failed,
    }
}

/// The cluster module's map in wire form.
#[must_use]
pub fn to_wire(m: &ct::PartitionMap) -> PartitionMap {
    PartitionMap {
        version: u32::try_from(m.version).unwrap_or(u32::MAX),
        partition_count: m.partition_count,
        nodes: m
            .nodes
            .iter()
            .map(|n| NodeInfo {
                node_id: n.node_id.to_string(),
                endpoints: NodeEndpoints {
                    websocket: n.websocket.to_string(),
                    http: n.http.as_ref().map(ToString::to_string).into_option(),
                },
                status: status(n.status),
            })
            .collect(),
        partitions: m
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition_id: p.partition,
                owner_node_id: p.owner.to_string(),
                backup_node_ids: p.backups.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        generated_at: i64::try_from(m.generated_at).unwrap_or(i64::MAX),
    }
}
