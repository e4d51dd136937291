//! serde helpers for integers that JavaScript clients send as float64.
//!
//! The TopGun client encodes with msgpackr, which writes any number outside
//! the int32 range (for example `Date.now()`) as a float64. Every integer
//! field of every wire struct is therefore read through these helpers: they
//! accept msgpack integers and floats that hold a whole number in range, and
//! refuse NaN, infinities, fractions and out-of-range values with a message
//! that says which.
//!
//! Use with `#[serde(deserialize_with = "num::de_u64")]`, and for optional
//! fields `#[serde(default, deserialize_with = "num::de_opt_u64",
//! skip_serializing_if = "Option::is_none")]`. Encoding needs no helper:
//! integers are written as msgpack integers.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// An integer type the helpers can produce.
trait WireInt: TryFrom<i128> + Sized {
    const NAME: &'static str;
}

impl WireInt for u64 {
    const NAME: &'static str = "u64";
}
impl WireInt for u32 {
    const NAME: &'static str = "u32";
}
impl WireInt for i64 {
    const NAME: &'static str = "i64";
}

/// 2^127 as f64: every whole float below it in magnitude fits an i128.
const I128_BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

struct WholeVisitor<T>(PhantomData<T>);

impl<T: WireInt> WholeVisitor<T> {
    fn fit<E: de::Error>(n: i128) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::custom(format_args!("{n} is out of range for {}", T::NAME)))
    }
}

impl<T: WireInt> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a whole number that fits {} (integer or float64)",
            T::NAME
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::fit(i128::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::fit(i128::from(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<T, E> {
        self.visit_f64(f64::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if !v.is_finite() || v.fract() != 0.0 || v.abs() >= I128_BOUND {
            return Err(E::invalid_value(Unexpected::Float(v), &self));
        }
        // whole and below 2^127: exact
        Self::fit(v as i128)
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: WireInt> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nil or a whole number that fits {}", T::NAME)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_u64(WholeVisitor(PhantomData)).map(Some)
    }
}

fn whole<'de, D: Deserializer<'de>, T: WireInt>(d: D) -> Result<T, D::Error> {
    d.deserialize_u64(WholeVisitor(PhantomData))
}

fn opt_whole<'de, D: Deserializer<'de>, T: WireInt>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_option(OptionVisitor(PhantomData))
}

/// Reads a `u64` sent as an integer or a whole float64.
///
/// # Errors
/// NaN, infinity, a fraction, a negative number or one above `u64::MAX`.
pub fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(d)
}

/// Reads a `u32` sent as an integer or a whole float64.
///
/// # Errors
/// As [`de_u64`], with `u32::MAX` as the bound.
pub fn de_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(d)
}

/// Reads an `i64` sent as an integer or a whole float64.
///
/// # Errors
/// NaN, infinity, a fraction, or a value outside the `i64` range.
pub fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    whole(d)
}

/// Reads an optional `u64`; nil reads as `None` (pair with `#[serde(default)]`
/// so an absent key does too).
///
/// # Errors
/// As [`de_u64`] for a present, non-nil value.
pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    opt_whole(d)
}

/// Reads an optional `u32`; nil reads as `None`.
///
/// # Errors
/// As [`de_u32`] for a present, non-nil value.
pub fn de_opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    opt_whole(d)
}

/// Reads an optional `i64`; nil reads as `None`.
///
/// # Errors
/// As [`de_i64`] for a present, non-nil value.
pub fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    opt_whole(d)
}

/// Reads a map of string keys to `u32` values (Merkle bucket hashes), each
/// through [`de_u32`]. Hashes above 2^31 arrive from JavaScript as float64.
///
/// # Errors
/// A non-map, or any value [`de_u32`] refuses.
pub fn de_u32_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, u32>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Hash(#[serde(deserialize_with = "de_u32")] u32);
    let m: std::collections::BTreeMap<String, Hash> = serde::Deserialize::deserialize(d)?;
    Ok(m.into_iter().map(|(k, Hash(v))| (k, v)).collect())
}

/// Like [`de_u32_map`], for an optional field; nil reads as `None`.
///
/// # Errors
/// As [`de_u32_map`] for a present, non-nil value.
pub fn de_opt_u32_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<String, u32>>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Map(#[serde(deserialize_with = "de_u32_map")] std::collections::BTreeMap<String, u32>);
    let m: Option<Map> = serde::Deserialize::deserialize(d)?;
    Ok(m.map(|Map(m)| m))
}

/// serde `with` module for [`hangar_core::Timestamp`] on the wire:
/// `{millis, counter, nodeId}`, with `millis` and `counter` read through the
/// float-tolerant helpers.
pub mod timestamp {
    use hangar_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        #[serde(deserialize_with = "super::de_u64")]
        millis: u64,
        #[serde(deserialize_with = "super::de_u32")]
        counter: u32,
        node_id: String,
    }

    /// Writes `{millis, counter, nodeId}`.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        ts.serialize(s)
    }

    /// Reads `{millis, counter, nodeId}`; unknown keys are ignored.
    ///
    /// # Errors
    /// A missing field, or a number the helpers refuse.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Timestamp::new(w.millis, w.counter, w.node_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::de::from_slice;

    #[derive(Debug, serde::Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "de_u64")]
        a: u64,
        #[serde(default, deserialize_with = "de_opt_u64")]
        b: Option<u64>,
        #[serde(default, deserialize_with = "de_opt_u32")]
        c: Option<u32>,
        #[serde(default, deserialize_with = "de_opt_i64")]
        d: Option<i64>,
    }

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        buf
    }

    fn probe(pairs: Vec<(&str, rmpv::Value)>) -> Result<Probe, String> {
        let v = rmpv::Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect());
        from_slice::<Probe>(&enc(&v)).map_err(|e| e.0)
    }

    #[test]
    fn t10_whole_float64_reads_as_integer() {
        use rmpv::Value::F64;
        let p = probe(vec![
            ("a", F64(1_700_000_000_000.0)),
            ("b", F64(5.0)),
            ("c", F64(4_294_967_295.0)),
            ("d", F64(-9.0)),
        ])
        .unwrap();
        assert_eq!(
            (p.a, p.b, p.c, p.d),
            (1_700_000_000_000, Some(5), Some(u32::MAX), Some(-9))
        );
        let p = probe(vec![("a", rmpv::Value::F32(3.0))]).unwrap();
        assert_eq!(p.a, 3);
    }

    #[test]
    fn t11_integers_nil_and_absent() {
        let p = probe(vec![("a", 7u64.into()), ("b", rmpv::Value::Nil)]).unwrap();
        assert_eq!((p.a, p.b, p.c, p.d), (7, None, None, None));
    }

    #[test]
    fn t20_nan_inf_fraction_and_range_are_clear_errors() {
        use rmpv::Value::F64;
        for (bad, what) in [
            (F64(f64::NAN), "NaN"),
            (F64(f64::INFINITY), "inf"),
            (F64(1.5), "1.5"),
            (F64(-1.0), "-1"),
            (F64(1e30), "1e30"),
            (rmpv::Value::from(-1i64), "-1"),
            (rmpv::Value::from("12"), "string"),
        ] {
            let err = probe(vec![("a", bad)]).unwrap_err();
            assert!(
                err.contains("u64") || err.contains("whole"),
                "{what}: {err}"
            );
        }
        let err = probe(vec![("a", 1u64.into()), ("c", F64(4_294_967_296.0))]).unwrap_err();
        assert!(err.contains("out of range for u32"), "{err}");
        let err = probe(vec![("a", 1u64.into()), ("c", F64(2.5))]).unwrap_err();
        assert!(err.contains("2.5"), "{err}");
    }

    #[test]
    fn t30_timestamp_accepts_float_millis() {
        #[derive(serde::Deserialize)]
        struct T(#[serde(with = "timestamp")] hangar_core::Timestamp);
        let v = rmpv::Value::Map(vec![
            ("millis".into(), rmpv::Value::F64(1_700_000_000_123.0)),
            ("counter".into(), 2u64.into()),
            ("nodeId".into(), "n1".into()),
            ("extra".into(), true.into()),
        ]);
        let T(ts) = from_slice(&enc(&v)).unwrap();
        assert_eq!(ts, hangar_core::Timestamp::new(1_700_000_000_123, 2, "n1"));
    }
}
