//! The write path: `CLIENT_OP`, `OP_BATCH` and their answers.
//!
//! Record values are captured as raw msgpack ([`crate::protocol::RawMsgpack`]);
//! [`crate::protocol::convert`] turns a [`ClientOp`] into a core
//! [`hangar_core::KeyedOp`] without touching the value bytes.

use hangar_core::WriteConcern;
use serde::{Deserialize, Serialize};

use super::records::{WireLwwRecord, WireOrRecord};
use crate::protocol::num;

/// Reads a field that may be absent (`None`), `null` (`Some(None)`) or set
/// (`Some(Some(v))`). Pair with `#[serde(default)]`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// One client write (the `CLIENT_OP` payload, and each element of
/// `OP_BATCH.ops`).
///
/// Absent and `null` differ for `record`, `orRecord` and `orTag`
/// (`Option<Option<_>>`): `record: null` means REMOVE. How the kind of write
/// is decided is [`ClientOp::kind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientOp {
    /// Client-chosen op id (stringified integers from the TS client);
    /// acknowledged in `OP_ACK.lastId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Target map.
    pub map_name: String,
    /// Target key.
    pub key: String,
    /// "PUT", "REMOVE", "OR_ADD", "OR_REMOVE"; only "REMOVE" decides anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_type: Option<String>,
    /// LWW record; `Some(None)` (null) means REMOVE.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub record: Option<Option<WireLwwRecord>>,
    /// OR-Map record to add.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub or_record: Option<Option<WireOrRecord>>,
    /// OR-Map tag to remove.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub or_tag: Option<Option<String>>,
    /// Requested write concern, as sent; see
    /// [`crate::protocol::convert::parse_write_concern`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_concern: Option<String>,
    /// Ack timeout in milliseconds.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<u64>,
    /// Replication consistency (`EVENTUAL`, `QUORUM`, `STRONG`); a Hangar
    /// extension, absent from the TopGun client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// `OP_BATCH` payload (C→S): many writes, one aggregated `OP_ACK`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpBatch {
    /// The writes, in client order.
    pub ops: Vec<ClientOp>,
    /// Write concern for ops that do not name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_concern: Option<String>,
    /// Ack timeout in milliseconds for the batch.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<u64>,
    /// Replication consistency for the batch (`EVENTUAL`, `QUORUM`,
    /// `STRONG`); a Hangar extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

/// The outcome of one op in `OP_ACK.results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpResult {
    /// The op's id.
    pub op_id: String,
    /// Whether it reached its requested level.
    pub success: bool,
    /// The level it reached.
    pub achieved_level: WriteConcern,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the op was merged but changed nothing (a repeated or stale
    /// op): it is still a success. Written only when true; clients that do
    /// not know the field ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// `OP_ACK` payload (S→C): the client marks every op up to `lastId` synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpAck {
    /// Id of the last op acknowledged (or "unknown").
    pub last_id: String,
    /// The level the whole batch reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_level: Option<WriteConcern>,
    /// Per-op outcomes; the TS client resolves write-concern promises from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<OpResult>>,
}

/// `OP_REJECTED` payload (S→C): one op refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpRejected {
    /// The refused op's id.
    pub op_id: String,
    /// Why.
    pub reason: String,
    /// HTTP-style status code.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<u32>,
}
