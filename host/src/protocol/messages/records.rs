//! Records as the wire carries them, and their conversions to core types.
//!
//! A wire record holds its value as [`RawMsgpack`], so converting to the
//! core [`LwwRecord`] / [`OrRecord`] moves the bytes without copying or
//! re-encoding them.

use abi_stable::std_types::{ROption, RString};
use hangar_core::{LwwRecord, OrRecord, Timestamp};
use serde::{Deserialize, Serialize};

use crate::protocol::num;
use crate::protocol::raw::RawMsgpack;

/// An LWW record: `{value, timestamp, ttlMs?}`.
///
/// `value: null` is a tombstone (`None`); an absent `value` reads as a
/// tombstone too. A tombstone is written back as `value: null`, which is
/// how the TypeScript client expects it. Consequently `Some(v)` where `v` is
/// msgpack nil cannot be told from a tombstone on the wire: it decodes as
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLwwRecord {
    /// The value, `None` for a tombstone.
    #[serde(default)]
    pub value: Option<RawMsgpack>,
    /// Write time; the merge keeps the greatest.
    #[serde(with = "num::timestamp")]
    pub timestamp: Timestamp,
    /// Time to live in milliseconds.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_ms: Option<u64>,
}

/// One tagged OR-Map record: `{value, timestamp, tag, ttlMs?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireOrRecord {
    /// The element's value.
    pub value: RawMsgpack,
    /// When it was added.
    #[serde(with = "num::timestamp")]
    pub timestamp: Timestamp,
    /// The add's unique tag, `millis:counter:nodeId`.
    pub tag: String,
    /// Time to live in milliseconds.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_ms: Option<u64>,
}

/// One key of an OR-Map in sync and diff messages: live records plus the
/// tags removed from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrMapEntry {
    /// The key.
    pub key: String,
    /// Live records.
    pub records: Vec<WireOrRecord>,
    /// Tombstoned tags.
    pub tombstones: Vec<String>,
}

fn ropt<T>(o: Option<T>) -> ROption<T> {
    o.map_or(ROption::RNone, ROption::RSome)
}

impl From<WireLwwRecord> for LwwRecord {
    fn from(w: WireLwwRecord) -> Self {
        Self {
            value: ropt(w.value.map(RawMsgpack::into_raw_value)),
            timestamp: w.timestamp,
            ttl_ms: ropt(w.ttl_ms),
        }
    }
}

impl From<LwwRecord> for WireLwwRecord {
    fn from(r: LwwRecord) -> Self {
        Self {
            value: r.value.into_option().map(RawMsgpack::from_raw_value),
            timestamp: r.timestamp,
            ttl_ms: r.ttl_ms.into_option(),
        }
    }
}

impl From<WireOrRecord> for OrRecord {
    fn from(w: WireOrRecord) -> Self {
        Self {
            value: w.value.into_raw_value(),
            timestamp: w.timestamp,
            tag: RString::from(w.tag),
            ttl_ms: ropt(w.ttl_ms),
        }
    }
}

impl From<OrRecord> for WireOrRecord {
    fn from(r: OrRecord) -> Self {
        Self {
            value: RawMsgpack::from_raw_value(r.value),
            timestamp: r.timestamp,
            tag: r.tag.into_string(),
            ttl_ms: r.ttl_ms.into_option(),
        }
    }
}
