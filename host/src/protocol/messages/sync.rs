//! Merkle anti-entropy with clients, for LWW maps (`SYNC_*`,
//! `MERKLE_REQ_BUCKET`) and OR-Maps (`ORMAP_*`), plus `GC_PRUNE`.
//!
//! Hashes are u32 and travel as float64 from JavaScript when they exceed
//! 2^31, so every hash goes through the float-tolerant helpers.

use std::collections::BTreeMap;

use hangar_core::Timestamp;
use serde::{Deserialize, Serialize};

use super::records::{OrMapEntry, WireLwwRecord};
use crate::protocol::num;

/// `SYNC_INIT` (C→S, flat): start syncing an LWW map.
///
/// `rootHash` and `bucketHashes`, which the TS client may add, are kept for
/// re-encoding but the server does not need them: it answers with its own
/// root and the client walks down from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncInit {
    /// The map.
    pub map_name: String,
    /// When the client last synced (ms).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_sync_timestamp: Option<u64>,
    /// The client's root hash (informational).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_hash: Option<u32>,
    /// The client's top-level bucket hashes (informational).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32_map",
        skip_serializing_if = "Option::is_none"
    )]
    pub bucket_hashes: Option<BTreeMap<String, u32>>,
    /// Read consistency (`EVENTUAL`, `QUORUM`, `STRONG`); absent takes the
    /// map's configured one, else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `SYNC_RESP_ROOT` payload (S→C).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRespRoot {
    /// The map.
    pub map_name: String,
    /// Root of the server's tree; 0 for an empty map.
    #[serde(deserialize_with = "num::de_u32")]
    pub root_hash: u32,
    /// Server HLC time of the answer.
    #[serde(with = "num::timestamp")]
    pub timestamp: Timestamp,
}

/// `MERKLE_REQ_BUCKET` and `ORMAP_MERKLE_REQ_BUCKET` payload (C→S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerkleReqBucket {
    /// The map.
    pub map_name: String,
    /// Trie path: "" for the root's children, then hex prefixes.
    pub path: String,
    /// Read consistency (`EVENTUAL`, `QUORUM`, `STRONG`); absent takes the
    /// map's configured one, else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `SYNC_RESP_BUCKETS` and `ORMAP_SYNC_RESP_BUCKETS` payload (S→C).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRespBuckets {
    /// The map.
    pub map_name: String,
    /// The path these buckets hang under.
    pub path: String,
    /// Hex digit → bucket hash.
    #[serde(deserialize_with = "num::de_u32_map")]
    pub buckets: BTreeMap<String, u32>,
}

/// One LWW record in a sync leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncLeafRecord {
    /// The key.
    pub key: String,
    /// Its record (tombstones included).
    pub record: WireLwwRecord,
}

/// `SYNC_RESP_LEAF` payload (S→C): the records under a leaf bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRespLeaf {
    /// The map.
    pub map_name: String,
    /// The leaf's path.
    pub path: String,
    /// Its records.
    pub records: Vec<SyncLeafRecord>,
}

/// `SYNC_RESET_REQUIRED` payload (S→C): the client must resync from scratch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResetRequired {
    /// The map.
    pub map_name: String,
    /// Why.
    pub reason: String,
}

/// `ORMAP_SYNC_INIT` (C→S, flat): start syncing an OR-Map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapSyncInit {
    /// The map.
    pub map_name: String,
    /// The client's root hash.
    #[serde(deserialize_with = "num::de_u32")]
    pub root_hash: u32,
    /// The client's top-level bucket hashes.
    #[serde(deserialize_with = "num::de_u32_map")]
    pub bucket_hashes: BTreeMap<String, u32>,
    /// When the client last synced (ms).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_sync_timestamp: Option<u64>,
    /// The client's confirmed-apply cursor, if it has one.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub claimed_epoch: Option<u64>,
    /// Read consistency (`EVENTUAL`, `QUORUM`, `STRONG`); absent takes the
    /// map's configured one, else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `ORMAP_SYNC_RESP_ROOT` payload (S→C).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapSyncRespRoot {
    /// The map.
    pub map_name: String,
    /// Root of the server's OR tree.
    #[serde(deserialize_with = "num::de_u32")]
    pub root_hash: u32,
    /// Server HLC time of the answer.
    #[serde(with = "num::timestamp")]
    pub timestamp: Timestamp,
    /// Highest tombstone epoch this answer covers.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub covering_epoch: Option<u64>,
    /// The client must drop its state and take the server's snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_resync: bool,
}

/// `ORMAP_SYNC_RESP_LEAF` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapSyncRespLeaf {
    /// The map.
    pub map_name: String,
    /// The leaf's path.
    pub path: String,
    /// Its keys with records and tombstones.
    pub entries: Vec<OrMapEntry>,
    /// Highest tombstone epoch this answer covers.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub covering_epoch: Option<u64>,
}

/// `ORMAP_DIFF_REQUEST` payload (C→S): full state of some keys, please.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapDiffRequest {
    /// The map.
    pub map_name: String,
    /// The keys.
    pub keys: Vec<String>,
}

/// `ORMAP_DIFF_RESPONSE` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapDiffResponse {
    /// The map.
    pub map_name: String,
    /// The requested keys' state.
    pub entries: Vec<OrMapEntry>,
    /// Highest tombstone epoch this answer covers.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub covering_epoch: Option<u64>,
}

/// `ORMAP_PUSH_DIFF` payload (C→S): the client's state of some keys, to merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapPushDiff {
    /// The map.
    pub map_name: String,
    /// Keys with records and tombstones.
    pub entries: Vec<OrMapEntry>,
}

/// `GC_PRUNE` payload (S→C): drop tombstones older than this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcPrune {
    /// The threshold.
    #[serde(with = "num::timestamp")]
    pub older_than: Timestamp,
}
