//! The cases of the three-node cluster suite.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster_types::ReplicationRequest;
use hangar_core::module::storage_types::{ApplyBatch, Origin, WriteOp};
use hangar_core::{partition_of, ConsistencyLevel, WriteConcern, PARTITION_COUNT};

use super::Three;
use crate::storage::lww;

/// One table: every partition has an owner and one backup that is not the
/// owner, and every node has the same version.
pub(super) async fn t10_the_nodes_agree_on_one_table_with_distinct_backups(three: Arc<Three>) {
    let map = three.nodes[0].cluster.partition_map();
    assert_eq!(map.partitions.len(), PARTITION_COUNT as usize);
    for p in map.partitions.iter() {
        assert!(
            !p.backups.contains(&p.owner),
            "p{} backs itself up",
            p.partition
        );
        assert_eq!(p.backups.len(), 1, "p{} has one backup", p.partition);
    }
    for n in &three.nodes {
        assert_eq!(
            n.cluster.partition_map().version,
            map.version,
            "{}: same version",
            n.id
        );
    }
}

/// A change replicated at QUORUM / STRONG is on its backup when
/// `replicate` says the level is met.
pub(super) async fn t20_quorum_and_strong_copies_are_on_the_backup_when_replicate_says_so(
    three: Arc<Three>,
) {
    let map = three.nodes[0].cluster.partition_map();
    for (level, prefix) in [
        (ConsistencyLevel::Quorum, "q"),
        (ConsistencyLevel::Strong, "s"),
    ] {
        let key = three.key_owned_by(0, prefix);
        let change = lww("m", &key, Some(serde_json::json!({"v": 1})), 100, "suite");
        let out = three.nodes[0]
            .cluster
            .replicate(ReplicationRequest {
                changes: RVec::from(vec![change]),
                consistency: ROption::RSome(level),
                durable: false,
            })
            .await
            .expect("replicate");
        assert!(out.success, "{level:?}: {out:?}");
        let backup = map.partitions[partition_of(&key) as usize].backups[0].to_string();
        let b = three.index(&backup);
        assert!(
            three.holds(b, "m", &key).await,
            "{level:?}: replicate succeeded but backup {backup} does not hold {key}"
        );
    }
}

/// A write forwarded from another node is applied by the owner and
/// answered with its acknowledgement.
pub(super) async fn t30_a_forwarded_write_is_applied_by_its_owner(three: Arc<Three>) {
    let key = three.key_owned_by(1, "f");
    let batch = ApplyBatch {
        ops: RVec::from(vec![WriteOp {
            op: lww("m", &key, Some(serde_json::json!({"v": 2})), 200, "suite"),
            concern: WriteConcern::Applied,
            timeout_ms: ROption::RSome(5_000),
        }]),
        origin: Origin::client(1, "n1"),
        consistency: ROption::RNone,
    };
    let owner: RString = three.nodes[1].id.as_str().into();
    let acks = three.nodes[0]
        .cluster
        .forward(owner, batch)
        .await
        .expect("forward");
    assert!(acks.len() == 1 && acks[0].success, "{acks:?}");
    assert!(three.holds(1, "m", &key).await, "the owner holds it");
}
