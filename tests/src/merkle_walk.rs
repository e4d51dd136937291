//! A client's Merkle sync, as the TopGun client walks it: `SYNC_INIT` (or
//! `ORMAP_SYNC_INIT`) for the root hash, then `MERKLE_REQ_BUCKET` (or
//! `ORMAP_MERKLE_REQ_BUCKET`) for every listed child down to the leaves,
//! whose records it keeps. It starts from an empty local tree, so it
//! descends into every bucket the node lists.
//!
//! On the way it checks what a client relies on: the children of every
//! node add up (wrapping) to the hash its parent listed for it, and the
//! records of every leaf hash to the leaf's hash (`hangar_core::merkle`:
//! LWW item hashes, OR entry hashes). Requests of one level are sent
//! together and their answers matched by path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use hangar_core::merkle::{lww_item_hash, or_entry_hash, KeyedMerkleTree, OrHashInput};
use hangar_host::protocol::messages::{
    MerkleReqBucket, OrMapSyncInit, SyncInit, WireLwwRecord, WireOrRecord,
};
use hangar_host::protocol::Message;

use crate::cluster_harness::Client;

/// What a walk from the root down to every leaf collected.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The root hash `SYNC_INIT` answered.
    pub root: u32,
    /// LWW records by key (an LWW walk).
    pub lww: BTreeMap<String, WireLwwRecord>,
    /// OR records by key (an OR walk).
    pub or: BTreeMap<String, Vec<WireOrRecord>>,
    /// The OR tombstones the leaves carried.
    pub tombstones: BTreeSet<String>,
    /// Bucket and leaf requests sent.
    pub requests: usize,
}

/// The LWW item hash of `key` holding `r`.
#[must_use]
pub fn lww_hash(key: &str, r: &WireLwwRecord) -> u32 {
    lww_item_hash(
        key,
        r.timestamp.millis,
        r.timestamp.counter,
        r.timestamp.node_id.as_str(),
    )
}

/// The OR entry hash of `key` holding `records`.
#[must_use]
pub fn or_hash(key: &str, records: &[WireOrRecord]) -> u32 {
    let mut inputs: Vec<OrHashInput<'_>> = records
        .iter()
        .map(|r| OrHashInput {
            tag: &r.tag,
            value: r.value.as_bytes(),
            millis: r.timestamp.millis,
            counter: r.timestamp.counter,
            node_id: r.timestamp.node_id.as_str(),
            ttl_ms: r.ttl_ms,
        })
        .collect();
    or_entry_hash(key, &mut inputs)
}

impl Walk {
    /// The root a lone tree over the collected records has: what every
    /// node's `SYNC_INIT` must answer when the walk collected everything.
    #[must_use]
    pub fn computed_root(&self) -> u32 {
        let mut t = KeyedMerkleTree::new();
        for (k, r) in &self.lww {
            t.set(k, lww_hash(k, r));
        }
        for (k, rs) in &self.or {
            t.set(k, or_hash(k, rs));
        }
        t.root()
    }
}

fn add(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}

/// Walks `map`'s tree (the OR tree when `or`) on the node `c` is connected
/// to, each answer within `timeout`.
///
/// # Errors
/// On an `ERROR` answer, a timeout, a closed connection, or hashes that do
/// not add up (the message says where).
pub async fn walk(c: &mut Client, map: &str, or: bool, timeout: Duration) -> Result<Walk, String> {
    walk_at(c, map, or, None, timeout).await
}

/// [`walk`] with every message asking for read `consistency` (`EVENTUAL`,
/// `QUORUM`, `STRONG`); `None` leaves it to the node's configuration.
///
/// # Errors
/// As [`walk`].
pub async fn walk_at(
    c: &mut Client,
    map: &str,
    or: bool,
    consistency: Option<&str>,
    timeout: Duration,
) -> Result<Walk, String> {
    let consistency = consistency.map(ToString::to_string);
    if or {
        c.send(&Message::OrMapSyncInit(OrMapSyncInit {
            map_name: map.to_string(),
            root_hash: 0,
            bucket_hashes: BTreeMap::new(),
            last_sync_timestamp: None,
            claimed_epoch: None,
            consistency: consistency.clone(),
        }))
        .await?;
    } else {
        c.send(&Message::SyncInit(SyncInit {
            map_name: map.to_string(),
            last_sync_timestamp: None,
            root_hash: None,
            bucket_hashes: None,
            consistency: consistency.clone(),
        }))
        .await?;
    }
    let root = c
        .wait_for(timeout, |m| match m {
            Message::SyncRespRoot { payload } if payload.map_name == map => {
                Some(Ok(payload.root_hash))
            }
            Message::OrMapSyncRespRoot { payload } if payload.map_name == map => {
                Some(Ok(payload.root_hash))
            }
            Message::Error { payload } => Some(Err(format!(
                "SYNC_INIT of {map}: ERROR {} {}",
                payload.code, payload.message
            ))),
            _ => None,
        })
        .await??;
    let mut out = Walk {
        root,
        ..Walk::default()
    };
    let mut level: Vec<(String, u32)> = vec![(String::new(), root)];
    while !level.is_empty() {
        for (path, _) in &level {
            let payload = MerkleReqBucket {
                map_name: map.to_string(),
                path: path.clone(),
                consistency: consistency.clone(),
            };
            c.send(&if or {
                Message::OrMapMerkleReqBucket { payload }
            } else {
                Message::MerkleReqBucket { payload }
            })
            .await?;
            out.requests += 1;
        }
        let mut expected: HashMap<String, u32> = level.drain(..).collect();
        while !expected.is_empty() {
            let m = c
                .wait_for(timeout, |m| match m {
                    Message::SyncRespBuckets { payload }
                    | Message::OrMapSyncRespBuckets { payload }
                        if payload.map_name == map =>
                    {
                        Some(m.clone())
                    }
                    Message::SyncRespLeaf { payload } if payload.map_name == map => Some(m.clone()),
                    Message::OrMapSyncRespLeaf { payload } if payload.map_name == map => {
                        Some(m.clone())
                    }
                    Message::Error { .. } => Some(m.clone()),
                    _ => None,
                })
                .await?;
            let (path, got) = match m {
                Message::SyncRespBuckets { payload }
                | Message::OrMapSyncRespBuckets { payload } => {
                    let sum = payload.buckets.values().fold(0, |a, h| add(a, *h));
                    for (child, h) in &payload.buckets {
                        level.push((format!("{}{child}", payload.path), *h));
                    }
                    (payload.path, sum)
                }
                Message::SyncRespLeaf { payload } => {
                    let mut sum = 0;
                    for r in payload.records {
                        sum = add(sum, lww_hash(&r.key, &r.record));
                        out.lww.insert(r.key, r.record);
                    }
                    (payload.path, sum)
                }
                Message::OrMapSyncRespLeaf { payload } => {
                    let mut sum = 0;
                    for e in payload.entries {
                        sum = add(sum, or_hash(&e.key, &e.records));
                        out.tombstones.extend(e.tombstones);
                        out.or.insert(e.key, e.records);
                    }
                    (payload.path, sum)
                }
                Message::Error { payload } => {
                    return Err(format!(
                        "Merkle walk of {map}: ERROR {} {}",
                        payload.code, payload.message
                    ))
                }
                _ => unreachable!("filtered above"),
            };
            let want = expected
                .remove(&path)
                .ok_or_else(|| format!("{map}: an answer for path {path:?} nobody asked for"))?;
            if got != want {
                return Err(format!(
                    "{map}: node {path:?} was listed with hash {want} but its content sums to {got}"
                ));
            }
        }
    }
    Ok(out)
}
