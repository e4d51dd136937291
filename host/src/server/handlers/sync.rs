//! Merkle sync with clients, over the trees of every partition of the
//! cluster: each request goes through `ClusterModule::merkle_node`, which
//! sums the shares of each partition's serving replica (a node alone
//! answers from its storage's tree), so a client ends with every record
//! whichever node it is connected to. `SYNC_INIT`, `MERKLE_REQ_BUCKET` and
//! their `ORMAP_*` counterparts may carry a read `consistency` (EVENTUAL:
//! any complete replica; QUORUM, STRONG: the owners); without it the map's
//! configured read consistency applies.
//!
//! LWW maps: `SYNC_INIT` → `SYNC_RESP_ROOT`; `MERKLE_REQ_BUCKET {path}` →
//! `SYNC_RESP_BUCKETS` (an inner node's children) or `SYNC_RESP_LEAF` (the
//! records under a leaf). OR maps: the `ORMAP_*` counterparts, whose leaves
//! carry each key's records and the map's tombstoned tags, plus
//! `ORMAP_DIFF_REQUEST` → `ORMAP_DIFF_RESPONSE` (full state of some keys,
//! also through the cluster: their leaves)
//! and `ORMAP_PUSH_DIFF` (the client's state merged in as OR adds and
//! removes, through the normal write path, unanswered).
//!
//! A client that walks the tree from the root down to every leaf whose hash
//! differs from its own ends with every record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString};
use hangar_core::merkle::{leaf_of_key, leaf_path};
use hangar_core::module::storage_types::{MerkleNode, MerkleRequest, RecordState};
use hangar_core::{ConsistencyLevel, MapKind, ModuleError, OrRecord};

use super::status_of;
use super::writes::{write, Shape, Write};
use crate::protocol::messages::{
    ClientOp, ErrorPayload, MerkleReqBucket, OrMapDiffRequest, OrMapDiffResponse, OrMapEntry,
    OrMapPushDiff, OrMapSyncRespLeaf, OrMapSyncRespRoot, SyncLeafRecord, SyncResetRequired,
    SyncRespBuckets, SyncRespLeaf, SyncRespRoot, WireLwwRecord,
};
use crate::protocol::{parse_consistency, Message};
use crate::server::epochs::licence::Licence;
use crate::server::epochs::SyncVerdict;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

async fn fail(s: &Session, what: &str, map: &str, e: &ModuleError) {
    tracing::debug!(conn = s.id, map, error = %e, "{what} failed");
    s.reply(&Message::Error {
        payload: ErrorPayload {
            code: status_of(e),
            message: format!("{what} on map {map}: {}", e.message),
            details: None,
        },
    })
    .await;
}

/// The read consistency a sync message asked for; an unknown name is
/// answered with an `ERROR` (400) naming it, and `None` returned.
async fn consistency_of(
    s: &Session,
    what: &str,
    map: &str,
    asked: Option<&str>,
) -> Option<ROption<ConsistencyLevel>> {
    match parse_consistency(asked) {
        Ok(c) => Some(c.into()),
        Err(e) => {
            s.reply(&Message::Error {
                payload: ErrorPayload {
                    code: 400,
                    message: format!("{what} on map {map}: {e}"),
                    details: None,
                },
            })
            .await;
            None
        }
    }
}

/// The current epoch as `coveringEpoch`, remembered as sent on `s` (read
/// before the data it covers).
fn covering(fe: &FrontEnd, s: &mut Session) -> Option<u64> {
    let c = fe.epochs.covering();
    if let Some(e) = c {
        s.max_epoch_sent = s.max_epoch_sent.max(e);
    }
    c
}

/// `SYNC_INIT` / `ORMAP_SYNC_INIT` (then `claimed` is `Some`, holding the
/// message's `claimedEpoch`): the root hash of the map's tree, read at the
/// message's `consistency` (else the configured one). An OR root carries
/// `coveringEpoch`, and `fullResync` for a device that may lack pruned
/// tombstones; without protection such a device gets
/// `SYNC_RESET_REQUIRED` instead (see [`crate::server::epochs`]).
pub async fn init(
    fe: &FrontEnd,
    s: &mut Session,
    map: String,
    consistency: Option<String>,
    claimed: Option<Option<u64>>,
) {
    let or = claimed.is_some();
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    let Some(consistency) = consistency_of(s, "sync init", &map, consistency.as_deref()).await
    else {
        return;
    };
    let mut full_resync = false;
    if let Some(claimed) = claimed {
        // After (re)joining a cluster, a verdict waits for the cluster's
        // newest prune round (see `epochs::licence`).
        Licence::ready(fe).await;
        let k = fe.epochs.knowledge(s.device.as_deref(), claimed);
        Licence::settle(fe, k).await;
        s.or_knowledge = Some(s.or_knowledge.map_or(k, |o| o.min(k)));
        match fe.epochs.verdict(k) {
            SyncVerdict::Merge => {}
            SyncVerdict::FullResync => full_resync = true,
            SyncVerdict::Reset => {
                let reason = format!(
                    "OR tombstones before epoch {} were pruned and this device confirmed only epoch {k}: clear the map and sync it again",
                    fe.epochs.pruned_below()
                );
                s.reply(&Message::SyncResetRequired {
                    payload: SyncResetRequired {
                        map_name: map,
                        reason,
                    },
                })
                .await;
                return;
            }
        }
    }
    let covering_epoch = if or { covering(fe, s) } else { None };
    let kind = if or { MapKind::Or } else { MapKind::Lww };
    let request = MerkleRequest {
        map: map.as_str().into(),
        kind,
        path: RString::new(),
        consistency,
    };
    // The root hash is the wrapping sum of the root's buckets.
    let root = match fe.node.cluster.merkle_node(request).await {
        Ok(r) => match r.node {
            MerkleNode::Buckets(b) => b.iter().fold(0u32, |acc, c| acc.wrapping_add(c.1)),
            MerkleNode::Leaf(_) => 0,
        },
        Err(e) => return fail(s, "sync init", &map, &e).await,
    };
    let timestamp = fe.node.clock.now();
    let msg = if or {
        Message::OrMapSyncRespRoot {
            payload: OrMapSyncRespRoot {
                map_name: map,
                root_hash: root,
                timestamp,
                covering_epoch,
                full_resync,
            },
        }
    } else {
        Message::SyncRespRoot {
            payload: SyncRespRoot {
                map_name: map,
                root_hash: root,
                timestamp,
            },
        }
    };
    s.reply(&msg).await;
}

/// `MERKLE_REQ_BUCKET` / `ORMAP_MERKLE_REQ_BUCKET`: one node of the tree,
/// read at the message's `consistency` (else the configured one).
pub async fn bucket(fe: &FrontEnd, s: &mut Session, req: MerkleReqBucket, or: bool) {
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    let Some(consistency) = consistency_of(
        s,
        "merkle bucket request",
        &req.map_name,
        req.consistency.as_deref(),
    )
    .await
    else {
        return;
    };
    let covering_epoch = if or { covering(fe, s) } else { None };
    let kind = if or { MapKind::Or } else { MapKind::Lww };
    let resp = match fe
        .node
        .cluster
        .merkle_node(MerkleRequest {
            map: req.map_name.as_str().into(),
            kind,
            path: req.path.as_str().into(),
            consistency,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(s, "merkle bucket request", &req.map_name, &e).await,
    };
    let msg = match resp.node {
        MerkleNode::Buckets(children) => {
            let buckets: BTreeMap<String, u32> = children
                .into_iter()
                .map(|c| (char::from(c.0).to_string(), c.1))
                .collect();
            let payload = SyncRespBuckets {
                map_name: req.map_name,
                path: req.path,
                buckets,
            };
            if or {
                Message::OrMapSyncRespBuckets { payload }
            } else {
                Message::SyncRespBuckets { payload }
            }
        }
        MerkleNode::Leaf(records) if or => {
            let tombstones: Vec<String> = resp
                .tombstones
                .into_iter()
                .map(RString::into_string)
                .collect();
            Message::OrMapSyncRespLeaf {
                payload: OrMapSyncRespLeaf {
                    map_name: req.map_name,
                    path: req.path,
                    entries: records
                        .into_iter()
                        .filter_map(|kr| match kr.state {
                            RecordState::Or(rs) => Some(OrMapEntry {
                                key: kr.key.into_string(),
                                records: rs.into_iter().map(Into::into).collect(),
                                tombstones: tombstones.clone(),
                            }),
                            _ => None,
                        })
                        .collect(),
                    covering_epoch,
                },
            }
        }
        MerkleNode::Leaf(records) => Message::SyncRespLeaf {
            payload: SyncRespLeaf {
                map_name: req.map_name,
                path: req.path,
                records: records
                    .into_iter()
                    .filter_map(|kr| match kr.state {
                        RecordState::Lww(r) => Some(SyncLeafRecord {
                            key: kr.key.into_string(),
                            record: WireLwwRecord::from(r),
                        }),
                        _ => None,
                    })
                    .collect(),
            },
        },
    };
    s.reply(&msg).await;
}

/// `ORMAP_DIFF_REQUEST`: the full state of the asked keys (unknown keys come
/// back with no records), from every partition of the cluster: the keys'
/// leaves are read through `ClusterModule::merkle_node` (each from the
/// owners of its keys; one request per distinct leaf), then each key keeps
/// its live records (TTL-expired ones are left out, as a read leaves them
/// out) and every entry carries the tombstones the leaves carried.
pub async fn diff(fe: &FrontEnd, s: &mut Session, req: OrMapDiffRequest) {
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    let covering_epoch = covering(fe, s);
    let leaves: BTreeSet<String> = req.keys.iter().map(|k| leaf_path(leaf_of_key(k))).collect();
    let mut records: HashMap<String, Vec<OrRecord>> = HashMap::new();
    let mut tombstones: BTreeSet<String> = BTreeSet::new();
    for path in leaves {
        let resp = fe
            .node
            .cluster
            .merkle_node(MerkleRequest {
                map: req.map_name.as_str().into(),
                kind: MapKind::Or,
                path: path.as_str().into(),
                consistency: ROption::RNone,
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return fail(s, "OR-map diff", &req.map_name, &e).await,
        };
        tombstones.extend(resp.tombstones.into_iter().map(RString::into_string));
        if let MerkleNode::Leaf(rs) = resp.node {
            for kr in rs {
                if let RecordState::Or(v) = kr.state {
                    records.insert(kr.key.into_string(), v.into_vec());
                }
            }
        }
    }
    let now = fe.node.clock.wall_millis();
    let tombstones: Vec<String> = tombstones.into_iter().collect();
    let entries = req
        .keys
        .iter()
        .map(|k| OrMapEntry {
            key: k.clone(),
            records: records
                .get(k)
                .map(|rs| {
                    rs.iter()
                        .filter(|r| !r.is_expired(now))
                        .cloned()
                        .map(Into::into)
                        .collect()
                })
                .unwrap_or_default(),
            tombstones: tombstones.clone(),
        })
        .collect();
    s.reply(&Message::OrMapDiffResponse {
        payload: OrMapDiffResponse {
            map_name: req.map_name,
            entries,
            covering_epoch,
        },
    })
    .await;
}

/// `ORMAP_PUSH_DIFF`: merges the client's records (OR adds) and tombstones
/// (OR removes) through the write path. Not answered. The records of a
/// connection that may lack pruned tombstones (its knowledge is below the
/// pruned epochs, see [`crate::server::epochs`]) are dropped: they could
/// bring back removed tags. Its tombstones still merge.
pub async fn push_diff(fe: &Arc<FrontEnd>, s: &mut Session, req: OrMapPushDiff) {
    let knowledge = s
        .or_knowledge
        .unwrap_or_else(|| fe.epochs.knowledge(s.device.as_deref(), None));
    Licence::settle(fe, knowledge).await;
    let pruned_below = fe.epochs.pruned_below();
    let stale = knowledge < pruned_below;
    if stale {
        tracing::debug!(
            conn = s.id,
            knowledge,
            pruned_below,
            map = req.map_name,
            "records of a stale push dropped"
        );
    }
    let mut ops = Vec::new();
    for e in req.entries {
        let records = if stale { Vec::new() } else { e.records };
        for r in records {
            ops.push(ClientOp {
                id: None,
                map_name: req.map_name.clone(),
                key: e.key.clone(),
                op_type: Some("OR_ADD".into()),
                record: None,
                or_record: Some(Some(r)),
                or_tag: None,
                write_concern: None,
                timeout: None,
                consistency: None,
            });
        }
        for tag in e.tombstones {
            ops.push(ClientOp {
                id: None,
                map_name: req.map_name.clone(),
                key: e.key.clone(),
                op_type: Some("OR_REMOVE".into()),
                record: None,
                or_record: None,
                or_tag: Some(Some(tag)),
                write_concern: None,
                timeout: None,
                consistency: None,
            });
        }
    }
    if ops.is_empty() {
        return;
    }
    write(
        fe,
        s,
        Write {
            ops,
            concern: None,
            timeout: None,
            consistency: None,
            shape: Shape::Silent,
        },
    )
    .await;
}
