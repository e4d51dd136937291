//! Change notifications pushed to subscribers: `SERVER_EVENT`,
//! `SERVER_BATCH_EVENT` and `QUERY_UPDATE`.

use serde::{Deserialize, Serialize};

use super::records::{WireLwwRecord, WireOrRecord};
use crate::protocol::raw::RawMsgpack;

/// The CRDT operation a `SERVER_EVENT` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerEventType {
    /// LWW put.
    Put,
    /// LWW remove (tombstone).
    Remove,
    /// OR-Map add.
    OrAdd,
    /// OR-Map remove of a tag.
    OrRemove,
}

impl ServerEventType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Remove => "REMOVE",
            Self::OrAdd => "OR_ADD",
            Self::OrRemove => "OR_REMOVE",
        }
    }
}

/// `SERVER_EVENT` payload (S→C), also each element of `SERVER_BATCH_EVENT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerEvent {
    /// Affected map.
    pub map_name: String,
    /// What happened.
    pub event_type: ServerEventType,
    /// Affected key.
    pub key: String,
    /// The LWW record (PUT, and REMOVE as a tombstone with `value: null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<WireLwwRecord>,
    /// The OR record (OR_ADD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_record: Option<WireOrRecord>,
    /// The removed tag (OR_REMOVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_tag: Option<String>,
}

/// `SERVER_BATCH_EVENT` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerBatchEvent {
    /// The events, in apply order.
    pub events: Vec<ServerEvent>,
}

/// How a record's membership in a live query changed: core's type, which
/// serializes as the wire's `ENTER` / `UPDATE` / `LEAVE`.
pub use hangar_core::module::storage_types::ChangeType;

/// `QUERY_UPDATE` payload (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryUpdatePayload {
    /// The subscription.
    pub query_id: String,
    /// The key that changed.
    pub key: String,
    /// Its current value.
    pub value: RawMsgpack,
    /// Enter, update or leave.
    pub change_type: ChangeType,
}
