//! Domain values that both modules, the host and the wire agree on.
//!
//! They are `#[repr(C)]` and derive `StableAbi`, so the very same values cross
//! the plugin boundary without conversion: the native traits and their ABI
//! mirrors take and return these types.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

/// A hybrid-logical-clock timestamp: wall-clock milliseconds, a logical
/// counter, and the id of the node that issued it.
///
/// Ordering is by `millis`, then `counter`, then `node_id` compared as bytes
/// (keep node ids ASCII: the TypeScript client compares with `localeCompare`,
/// which agrees with byte order on ASCII). The string form is
/// `millis:counter:nodeId`, which is why node ids must not contain `:`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch.
    pub millis: u64,
    /// Logical counter that orders events within one millisecond.
    pub counter: u32,
    /// Issuing node; MUST NOT contain `:`.
    pub node_id: RString,
}

impl Timestamp {
    /// Builds a timestamp. Does not validate `node_id`; see [`crate::hlc::validate_node_id`].
    pub fn new(millis: u64, counter: u32, node_id: impl Into<RString>) -> Self {
        Self {
            millis,
            counter,
            node_id: node_id.into(),
        }
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.millis
            .cmp(&other.millis)
            .then(self.counter.cmp(&other.counter))
            .then_with(|| self.node_id.as_bytes().cmp(other.node_id.as_bytes()))
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.millis, self.counter, self.node_id)
    }
}

/// Why a `millis:counter:nodeId` string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected `millis:counter:nodeId`")]
pub struct ParseTimestampError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTimestampError {
            input: s.to_string(),
        };
        let mut parts = s.split(':');
        let (Some(m), Some(c), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        Ok(Self {
            millis: m.parse().map_err(|_| err())?,
            counter: c.parse().map_err(|_| err())?,
            node_id: n.into(),
        })
    }
}

/// A value as msgpack bytes, exactly as it came off the wire.
///
/// Hangar keeps values encoded unless someone needs them decoded (a query
/// predicate, a search index); it never re-encodes them on the write path.
#[repr(transparent)]
#[derive(StableAbi, Clone, Default, PartialEq, Eq, Hash)]
pub struct RawValue(pub RVec<u8>);

impl RawValue {
    /// Wraps already-encoded msgpack bytes. The caller vouches they are one
    /// well-formed msgpack value.
    pub fn from_msgpack(bytes: impl Into<Vec<u8>>) -> Self {
        Self(RVec::from(bytes.into()))
    }

    /// Encodes a serde value as msgpack (maps with string keys).
    ///
    /// # Errors
    /// Fails when `value` cannot be represented in msgpack.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(value).map(Self::from_msgpack)
    }

    /// Decodes the bytes as a dynamic msgpack value.
    ///
    /// # Errors
    /// Fails when the bytes are not one well-formed msgpack value.
    pub fn decode(&self) -> Result<rmpv::Value, rmpv::decode::Error> {
        rmpv::decode::read_value(&mut self.0.as_slice())
    }

    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Ok(v) => write!(f, "RawValue({v})"),
            Err(_) => write!(f, "RawValue({} bytes, undecodable)", self.0.len()),
        }
    }
}

impl Serialize for RawValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("msgpack bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawValue, E> {
                Ok(RawValue::from_msgpack(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RawValue, E> {
                Ok(RawValue::from_msgpack(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RawValue, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(RawValue::from_msgpack(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// One version of a last-write-wins entry. `value == None` is a tombstone.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LwwRecord {
    /// The value, or `None` for a tombstone.
    pub value: ROption<RawValue>,
    /// When it was written; the merge keeps the strictly greatest.
    pub timestamp: Timestamp,
    /// Time to live in ms; the record is expired once `millis + ttl < now`.
    pub ttl_ms: ROption<u64>,
}

impl LwwRecord {
    /// True when the record is a tombstone.
    #[must_use]
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// True when the record has a TTL that ran out strictly before `now_ms`.
    #[must_use]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        match self.ttl_ms {
            ROption::RSome(ttl) => self.timestamp.millis.saturating_add(ttl) < now_ms,
            ROption::RNone => false,
        }
    }
}

/// One tagged element of an observed-remove map entry.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrRecord {
    /// The element's value.
    pub value: RawValue,
    /// When it was added.
    pub timestamp: Timestamp,
    /// Unique tag of this add, `millis:counter:nodeId`; removes name tags.
    pub tag: RString,
    /// Time to live in ms.
    pub ttl_ms: ROption<u64>,
}

impl OrRecord {
    /// True when the record has a TTL that ran out strictly before `now_ms`.
    #[must_use]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        match self.ttl_ms {
            ROption::RSome(ttl) => self.timestamp.millis.saturating_add(ttl) < now_ms,
            ROption::RNone => false,
        }
    }
}

/// Which CRDT a map is.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MapKind {
    /// Last-write-wins map: one record per key.
    Lww,
    /// Observed-remove map: a set of tagged records per key, add-wins.
    Or,
}

/// A change to one key of one map, as a client or a peer sends it.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapOp {
    /// LWW put, or remove when the record's value is `None`.
    Lww(LwwRecord),
    /// OR add of one tagged record.
    OrAdd(OrRecord),
    /// OR remove of one tag (the tag is tombstoned wherever it is).
    OrRemove(RString),
}

impl MapOp {
    /// The kind of map this op applies to.
    #[must_use]
    pub fn map_kind(&self) -> MapKind {
        match self {
            Self::Lww(_) => MapKind::Lww,
            Self::OrAdd(_) | Self::OrRemove(_) => MapKind::Or,
        }
    }

    /// The timestamp the op carries, if any (an OR remove carries only a tag).
    #[must_use]
    pub fn timestamp(&self) -> Option<&Timestamp> {
        match self {
            Self::Lww(r) => Some(&r.timestamp),
            Self::OrAdd(r) => Some(&r.timestamp),
            Self::OrRemove(_) => None,
        }
    }
}

/// An op addressed to a key of a map: the unit of writes, replication and
/// change events.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedOp {
    /// Map name.
    pub map: RString,
    /// Key within the map.
    pub key: RString,
    /// The change.
    pub op: MapOp,
}

/// Write-concern levels, in order. A write that reached a level has reached
/// every level below it.
///
/// Hangar's contract: a level counts as reached only when it and every level
/// below it are reached. So PERSISTED means applied, replicated as the
/// cluster's consistency requires, and durably committed.
#[repr(u8)]
#[derive(
    StableAbi, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteConcern {
    /// No acknowledgement wanted.
    FireAndForget = 0,
    /// Received into server memory (the default).
    Memory = 1,
    /// Merged into the CRDT map.
    Applied = 2,
    /// Replicated to backups at the configured consistency.
    Replicated = 3,
    /// Durably committed by the persistence backend.
    Persisted = 4,
}

impl WriteConcern {
    /// All levels, lowest first.
    pub const ALL: [Self; 5] = [
        Self::FireAndForget,
        Self::Memory,
        Self::Applied,
        Self::Replicated,
        Self::Persisted,
    ];

    /// The wire name (`FIRE_AND_FORGET`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FireAndForget => "FIRE_AND_FORGET",
            Self::Memory => "MEMORY",
            Self::Applied => "APPLIED",
            Self::Replicated => "REPLICATED",
            Self::Persisted => "PERSISTED",
        }
    }

    /// Parses a wire name; `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for WriteConcern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Replication consistency: how many backups must acknowledge a write.
#[repr(u8)]
#[derive(
    StableAbi,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsistencyLevel {
    /// Queue for backups and return at once.
    #[default]
    Eventual,
    /// A majority of owner + backups (`floor((1 + B) / 2)` backups), so
    /// that any majority of a partition's replicas holds the write.
    Quorum,
    /// Every backup.
    Strong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_timestamps_order_by_millis_counter_then_node_bytes() {
        let a = Timestamp::new(1, 5, "b");
        let b = Timestamp::new(2, 0, "a");
        let c = Timestamp::new(2, 1, "a");
        let d = Timestamp::new(2, 1, "b");
        assert!(a < b && b < c && c < d);
        assert_eq!(Timestamp::new(2, 1, "b").cmp(&d), Ordering::Equal);
        // byte order, not locale order: 'B' (0x42) sorts before 'a' (0x61)
        assert!(Timestamp::new(1, 1, "B") < Timestamp::new(1, 1, "a"));
    }

    #[test]
    fn t11_timestamp_string_round_trip() {
        let t = Timestamp::new(1_700_000_000_000, 7, "node-1");
        assert_eq!(t.to_string(), "1700000000000:7:node-1");
        assert_eq!("1700000000000:7:node-1".parse::<Timestamp>(), Ok(t));
        assert!("1:2".parse::<Timestamp>().is_err());
        assert!("1:2:a:b".parse::<Timestamp>().is_err());
        assert!("x:2:a".parse::<Timestamp>().is_err());
    }

    #[test]
    fn t12_write_concern_levels_are_ordered_and_named() {
        assert!(WriteConcern::FireAndForget < WriteConcern::Memory);
        assert!(WriteConcern::Replicated < WriteConcern::Persisted);
        for l in WriteConcern::ALL {
            assert_eq!(WriteConcern::parse(l.as_str()), Some(l));
        }
        assert_eq!(WriteConcern::parse("SOMETIMES"), None);
    }

    #[test]
    fn t13_ttl_expiry_is_strict() {
        let r = LwwRecord {
            value: ROption::RSome(RawValue::encode(&1).unwrap()),
            timestamp: Timestamp::new(1000, 0, "n"),
            ttl_ms: ROption::RSome(100),
        };
        assert!(!r.is_expired(1100), "alive at exactly millis + ttl");
        assert!(r.is_expired(1101));
    }

    #[test]
    fn t14_raw_value_serde_round_trip() {
        let v = RawValue::encode(&serde_json::json!({"a": 1})).unwrap();
        let bytes = rmp_serde::to_vec(&v).unwrap();
        let back: RawValue = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
