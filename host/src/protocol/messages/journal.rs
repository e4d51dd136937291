//! The event journal: `JOURNAL_SUBSCRIBE`, `JOURNAL_UNSUBSCRIBE`,
//! `JOURNAL_READ` (C→S), `JOURNAL_READ_RESPONSE` and `JOURNAL_EVENT` (S→C).
//!
//! All are flat (fields beside `type`); `JOURNAL_EVENT` carries its entry
//! under `event`. Sequence numbers travel as decimal strings; a client that
//! sends a number instead is accepted too.

use hangar_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::protocol::num;
use crate::protocol::raw::RawMsgpack;

/// `JOURNAL_SUBSCRIBE` (C→S): follow the journal, replaying from
/// `fromSequence` when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalSubscribe {
    /// The subscription's id (unsubscribe names it).
    pub request_id: String,
    /// The first sequence to replay (decimal string); absent = live only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<rmpv::Value>,
    /// Only this map's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_name: Option<String>,
    /// Only these types (`PUT`, `UPDATE`, `DELETE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
}

/// `JOURNAL_UNSUBSCRIBE` (C→S).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalUnsubscribe {
    /// The `requestId` of the subscribe.
    pub subscription_id: String,
}

/// `JOURNAL_READ` (C→S): a range of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalRead {
    /// Correlates the answer.
    pub request_id: String,
    /// The first sequence wanted (decimal string; 0 = the oldest kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<rmpv::Value>,
    /// Most entries (100 when absent).
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<u32>,
    /// Only this map's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_name: Option<String>,
    /// Only these types (an extension: the subscribe's filter, for reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
}

/// One journal entry on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEventData {
    /// Decimal sequence number.
    pub sequence: String,
    /// `PUT`, `UPDATE` or `DELETE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The map.
    pub map_name: String,
    /// The key.
    pub key: String,
    /// The value after the change (absent for DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<RawMsgpack>,
    /// The value before the change (absent for PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<RawMsgpack>,
    /// The write's timestamp.
    #[serde(with = "num::timestamp")]
    pub timestamp: Timestamp,
    /// The node whose journal holds the entry.
    pub node_id: String,
}

/// `JOURNAL_EVENT` (S→C): one entry of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEventMessage {
    /// The entry.
    pub event: JournalEventData,
}

/// `JOURNAL_READ_RESPONSE` (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalReadResponse {
    /// The read's `requestId`.
    pub request_id: String,
    /// The entries, in order.
    pub events: Vec<JournalEventData>,
    /// True when more matching entries follow.
    pub has_more: bool,
    /// The oldest sequence kept (an extension; absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_sequence: Option<String>,
    /// The newest durable sequence (an extension; absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_sequence: Option<String>,
    /// Why the read failed (an extension: a pruned `fromSequence`, a bad
    /// field, the journal off); `events` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The status code of `error` (404 pruned, 400 bad input, 501 off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
}
