//! `syncMaps` → `deltas`: the LWW records of a map stamped after the
//! client's `lastSyncTimestamp`, read over every partition of the cluster.

use abi_stable::std_types::{ROption, Tuple2};
use futures::{StreamExt, TryStreamExt};
use hangar_core::module::storage_types::{MerkleNode, MerkleRequest, RecordState};
use hangar_core::{LwwRecord, MapKind, ModuleError, Timestamp};

use crate::protocol::messages::{
    DeltaRecord, HttpSyncError, MapDelta, SyncMapRequest, WireLwwRecord,
};
use crate::server::state::FrontEnd;

/// Most records one delta carries. Past it the delta is cut between two
/// timestamps and `serverSyncTimestamp` is the last one returned, so the
/// client's next request continues from there.
pub const MAX_DELTA_RECORDS: usize = 10_000;

/// How far before the node's clock an uncut delta's `serverSyncTimestamp`
/// is set: writes stamped just before the read that were still in flight
/// while the tree was walked are sent again next time (merging a record the
/// client has changes nothing) rather than missed.
pub const DELTA_OVERLAP_MS: u64 = 5_000;

/// How long the default storage module keeps LWW tombstones
/// (`TOMBSTONE_MAX_AGE_MS` in `plugins/storage/src/module/gc.rs`). A client
/// whose `lastSyncTimestamp` is older may miss removals and is told so.
pub const TOMBSTONE_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Merkle nodes read at once while walking a map's tree.
const WALK_CONCURRENCY: usize = 8;

/// The depth of the Merkle trees (`hangar_core::merkle::MERKLE_DEPTH`):
/// a path this long names a leaf.
const LEAF_DEPTH: usize = hangar_core::merkle::MERKLE_DEPTH;

/// One `syncMaps` entry: the map's changes after its timestamp.
pub(super) async fn delta(
    fe: &FrontEnd,
    m: &SyncMapRequest,
    errors: &mut Vec<HttpSyncError>,
) -> Result<MapDelta, ModuleError> {
    let start = fe.node.clock.now();
    let since = &m.last_sync_timestamp;
    let now_ms = fe.node.clock.wall_millis();
    if since.millis > 0 && since.millis < now_ms.saturating_sub(TOMBSTONE_RETENTION_MS) {
        errors.push(HttpSyncError {
            code: 410,
            message: format!(
                "lastSyncTimestamp of map {:?} is older than the {}-day tombstone retention: removals made since may be missing; sync the whole map again (lastSyncTimestamp 0)",
                m.map_name,
                TOMBSTONE_RETENTION_MS / 86_400_000
            ),
            context: Some(m.map_name.clone()),
        });
    }
    let mut changed = map_changes(fe, &m.map_name, since).await?;
    changed.sort_by(|a, b| a.1.timestamp.cmp(&b.1.timestamp).then(a.0.cmp(&b.0)));
    let cut = cut_point(&changed, MAX_DELTA_RECORDS);
    let server_sync_timestamp = if cut < changed.len() {
        changed[cut - 1].1.timestamp.clone()
    } else {
        let overlap = Timestamp::new(
            start.millis.saturating_sub(DELTA_OVERLAP_MS),
            0,
            start.node_id.clone(),
        );
        // Never behind what the client already has.
        if overlap > *since {
            overlap
        } else {
            since.clone()
        }
    };
    changed.truncate(cut);
    Ok(MapDelta {
        map_name: m.map_name.clone(),
        records: changed
            .into_iter()
            .map(|(key, rec)| DeltaRecord {
                event_type: if rec.is_tombstone() { "REMOVE" } else { "PUT" }.to_string(),
                key,
                record: WireLwwRecord::from(rec),
            })
            .collect(),
        server_sync_timestamp,
    })
}

/// Where to cut records sorted by timestamp so that at most `max` are kept
/// and no two records with the same timestamp are split (the next request
/// resumes strictly after the last kept one). Keeps everything when the
/// records up to `max` all share one timestamp, rather than none.
fn cut_point(sorted: &[(String, LwwRecord)], max: usize) -> usize {
    if sorted.len() <= max {
        return sorted.len();
    }
    let mut cut = max;
    while cut > 0 && sorted[cut].1.timestamp == sorted[cut - 1].1.timestamp {
        cut -= 1;
    }
    if cut == 0 {
        sorted.len()
    } else {
        cut
    }
}

/// The LWW records (tombstones included) of `map` stamped strictly after
/// `since`, over every partition of the cluster.
///
/// # How
///
/// The node keeps no per-map change log, and the only reads the host has
/// over every partition are `ClusterModule::query` (live values only: no
/// tombstones, so no REMOVE events) and `ClusterModule::merkle_node`, whose
/// leaves carry every LWW record, tombstones included (the same reads a
/// WebSocket client's Merkle sync makes, `handlers/sync.rs`). So the tree
/// is walked from the root through non-empty buckets only, down to its
/// leaves, and each record is filtered by timestamp. The cost is one
/// cluster read per non-empty node (at most 1 + 16 + 256 + 4096) and every
/// record of the map read once: O(map size) per request, whatever the
/// delta's size. In a cluster each read covers every partition or fails
/// (`UNAVAILABLE` while a partition has no complete replica), and a failure
/// fails the whole delta: the caller answers an `errors` entry, never a
/// partial delta.
///
/// Records are selected by their stored timestamp (the one the LWW merge
/// keeps, which the writer stamped). A write stamped at or before `since`
/// that reaches the node after the client's previous request (a writer
/// whose clock lags by more than [`DELTA_OVERLAP_MS`]) is not reported.
async fn map_changes(
    fe: &FrontEnd,
    map: &str,
    since: &Timestamp,
) -> Result<Vec<(String, LwwRecord)>, ModuleError> {
    let mut out = Vec::new();
    let mut level: Vec<String> = vec![String::new()];
    while !level.is_empty() {
        let nodes: Vec<(String, MerkleNode)> = futures::stream::iter(level)
            .map(|path| async move {
                fe.node
                    .cluster
                    .merkle_node(MerkleRequest {
                        map: map.into(),
                        kind: MapKind::Lww,
                        path: path.as_str().into(),
                        consistency: ROption::RNone,
                    })
                    .await
                    .map(|r| (path, r.node))
            })
            .buffer_unordered(WALK_CONCURRENCY)
            .try_collect()
            .await?;
        let mut next = Vec::new();
        for (path, node) in nodes {
            match node {
                MerkleNode::Buckets(children) if path.len() < LEAF_DEPTH => {
                    for Tuple2(hex, hash) in children {
                        if hash != 0 {
                            let mut p = path.clone();
                            p.push(char::from(hex));
                            next.push(p);
                        }
                    }
                }
                MerkleNode::Buckets(_) => {
                    return Err(ModuleError::internal(format!(
                        "the Merkle tree of map {map:?} has an inner node at leaf depth (path {path:?})"
                    )))
                }
                MerkleNode::Leaf(records) => {
                    out.extend(records.into_iter().filter_map(|kr| match kr.state {
                        RecordState::Lww(r) if r.timestamp > *since => {
                            Some((kr.key.into_string(), r))
                        }
                        _ => None,
                    }));
                }
            }
        }
        level = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: u64) -> (String, LwwRecord) {
        (
            format!("k{ms}"),
            LwwRecord {
                value: ROption::RNone,
                timestamp: Timestamp::new(ms, 0, "n"),
                ttl_ms: ROption::RNone,
            },
        )
    }

    #[test]
    fn t10_cut_point_never_splits_one_timestamp() {
        let rs: Vec<_> = [1, 2, 2, 3].into_iter().map(rec).collect();
        assert_eq!(cut_point(&rs, 10), 4, "under the cap: everything");
        assert_eq!(cut_point(&rs, 2), 1, "the two records at 2 stay together");
        assert_eq!(cut_point(&rs, 3), 3);
        let same: Vec<_> = [5, 5, 5].into_iter().map(rec).collect();
        assert_eq!(
            cut_point(&same, 2),
            3,
            "one timestamp past the cap: all of it"
        );
    }
}
