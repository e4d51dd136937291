//! [`RawMsgpack`]: a dynamic value kept as the msgpack bytes it arrived as.
//!
//! Which dynamic values stay raw, and why:
//!
//! | value | representation | why |
//! |---|---|---|
//! | record values (`record.value`, `orRecord.value`) | [`RawMsgpack`] | stored as [`RawValue`] unchanged; the write path never builds a tree |
//! | `TOPIC_PUB.data` / `TOPIC_MESSAGE.data` | [`RawMsgpack`] | forwarded to subscribers byte for byte |
//! | query results, `QUERY_UPDATE.value`, search hits | [`RawMsgpack`] | come from storage as [`RawValue`] and are spliced into frames |
//! | `QUERY_SUB.query`, `ERROR.details` | [`rmpv::Value`] | the query engine must look inside anyway |
//!
//! Decoding through [`super::decode_frame`] captures the byte span with no
//! tree and one copy. The serde `Serialize` impl (used by
//! [`super::Message::encode`]) decodes the bytes to an `rmpv` tree and writes
//! it again, which is correct but not cheap; the hot server-to-client frames
//! use [`super::fast`], which copies the bytes straight into the frame.

use std::fmt;

use hangar_core::RawValue;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Error as _, Serialize, Serializer};

use super::de::RAW_TOKEN;

/// One msgpack value as bytes; see the module docs for where it is used.
///
/// Contract: the bytes are exactly one well-formed msgpack value. Values
/// captured by the decoder satisfy this (the frame passed the pre-scan);
/// callers constructing one with [`RawMsgpack::from_raw_value`] vouch for it.
/// Equality is byte equality: two encodings of the same value may differ.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct RawMsgpack(RawValue);

impl RawMsgpack {
    /// Wraps an already-encoded value (for example one read from storage).
    #[must_use]
    pub fn from_raw_value(v: RawValue) -> Self {
        Self(v)
    }

    /// Encodes a dynamic value.
    #[must_use]
    pub fn from_value(v: &rmpv::Value) -> Self {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("writing msgpack to a Vec cannot fail");
        Self(RawValue::from_msgpack(buf))
    }

    /// The msgpack nil value (`0xc0`).
    #[must_use]
    pub fn nil() -> Self {
        Self(RawValue::from_msgpack(vec![0xc0]))
    }

    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The core value, for storage and replication (no copy).
    #[must_use]
    pub fn into_raw_value(self) -> RawValue {
        self.0
    }

    /// Borrows the core value.
    #[must_use]
    pub fn as_raw_value(&self) -> &RawValue {
        &self.0
    }

    /// Decodes the bytes into a dynamic value.
    ///
    /// # Errors
    /// Fails when the bytes are not one well-formed msgpack value.
    pub fn to_value(&self) -> Result<rmpv::Value, rmpv::decode::Error> {
        self.0.decode()
    }
}

impl From<RawValue> for RawMsgpack {
    fn from(v: RawValue) -> Self {
        Self(v)
    }
}

impl From<RawMsgpack> for RawValue {
    fn from(v: RawMsgpack) -> Self {
        v.0
    }
}

impl fmt::Debug for RawMsgpack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_value() {
            Ok(v) => write!(f, "RawMsgpack({v})"),
            Err(_) => write!(
                f,
                "RawMsgpack({} bytes, undecodable)",
                self.as_bytes().len()
            ),
        }
    }
}

impl Serialize for RawMsgpack {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self
            .to_value()
            .map_err(|e| S::Error::custom(format_args!("raw value is not valid msgpack: {e}")))?;
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawMsgpack {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(RAW_TOKEN, RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawMsgpack;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
    }

    /// The protocol's own deserializer answers the raw token with the exact
    /// byte span of the value.
    fn visit_borrowed_bytes<E: de::Error>(self, span: &'de [u8]) -> Result<RawMsgpack, E> {
        Ok(RawMsgpack(RawValue::from_msgpack(span)))
    }

    /// Any other deserializer (rmp_serde, rmpv, serde_json) ignores the token
    /// and offers the value itself: decode it and encode it once.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<RawMsgpack, D::Error> {
        let v = rmpv::Value::deserialize(d)?;
        Ok(RawMsgpack::from_value(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_protocol_decoder_keeps_the_original_bytes() {
        // a float64 whole number stays a float64: nothing was re-encoded
        let mut bytes = vec![0xcb];
        bytes.extend_from_slice(&3.0f64.to_bits().to_be_bytes());
        let raw: RawMsgpack = crate::protocol::de::from_slice(&bytes).unwrap();
        assert_eq!(raw.as_bytes(), bytes.as_slice());
    }

    #[test]
    fn t11_other_deserializers_fall_back_to_a_tree() {
        let v = rmpv::Value::Map(vec![("a".into(), 1u64.into())]);
        let json = serde_json::json!({"a": 1});
        let raw: RawMsgpack = serde_json::from_value(json).unwrap();
        assert_eq!(raw.to_value().unwrap(), v);
        let raw2: RawMsgpack =
            rmp_serde::from_slice(RawMsgpack::from_value(&v).as_bytes()).unwrap();
        assert_eq!(raw2.to_value().unwrap(), v);
    }

    #[test]
    fn t12_serialize_writes_the_value_not_a_bin() {
        let raw = RawMsgpack::from_value(&rmpv::Value::from("hi"));
        let out = rmp_serde::to_vec_named(&raw).unwrap();
        assert_eq!(out, raw.as_bytes());
        let bad = RawMsgpack::from_raw_value(RawValue::from_msgpack(vec![0x92, 0x01]));
        assert!(rmp_serde::to_vec_named(&bad).is_err());
    }
}
