//! A serde `Deserializer` over borrowed msgpack bytes, with raw capture.
//!
//! Why not `rmp_serde::from_slice`: the write path must keep record values as
//! the msgpack bytes that came off the wire ([`hangar_core::RawValue`]),
//! without building an `rmpv` tree and encoding it again. serde has no
//! "give me the raw bytes of this value" call, so this deserializer adds one
//! the way `serde_json::value::RawValue` does: a newtype struct with a private
//! name ([`RAW_TOKEN`]) makes it hand the visitor the exact byte span of the
//! next value. Everything else follows the msgpack data model that `rmp_serde`
//! and `rmpv` use (nil → unit/none, bin → bytes, ext → the `_ExtStruct`
//! newtype `rmpv` understands).
//!
//! Contract: callers run [`super::scan::check_frame`] first. The deserializer
//! still bounds-checks every read and tracks nesting against
//! [`super::MAX_DEPTH`], so it cannot panic or recurse without limit on input
//! that skipped the scan; it just reports such input less precisely.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::scan::{self, MAX_DEPTH};

/// The newtype-struct name that asks [`Deserializer`] for a raw byte span.
pub(crate) const RAW_TOKEN: &str = "$hangar::protocol::RawMsgpack";

/// The newtype-struct name `rmpv` uses for msgpack extension values.
const EXT_TOKEN: &str = "_ExtStruct";

/// Why a structurally valid frame did not fit the requested type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeError(pub(crate) String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Deserializes one `T` from `buf`, which must hold exactly one value.
///
/// # Errors
/// A [`DeError`] naming what did not fit, or trailing bytes.
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(buf: &'de [u8]) -> Result<T, DeError> {
    let mut de = Deserializer {
        buf,
        pos: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut de)?;
    if de.pos != buf.len() {
        return Err(DeError(format!(
            "{} trailing bytes after the value",
            buf.len() - de.pos
        )));
    }
    Ok(value)
}

/// The msgpack reader; see the module docs.
pub(crate) struct Deserializer<'de> {
    buf: &'de [u8],
    pos: usize,
    depth: usize,
}

impl<'de> Deserializer<'de> {
    fn err_eof(&self, n: usize) -> DeError {
        DeError(format!(
            "unexpected end of input: needed {n} bytes at byte {}",
            self.pos
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], DeError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err_eof(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn peek(&self) -> Result<u8, DeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err_eof(1))
    }

    fn be(&mut self, n: usize) -> Result<u64, DeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DeError> {
        let v = self.be(n)?;
        usize::try_from(v).map_err(|_| DeError(format!("length {v} does not fit in memory")))
    }

    fn visit_str<V: Visitor<'de>>(&mut self, n: usize, v: V) -> Result<V::Value, DeError> {
        let at = self.pos;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => v.visit_borrowed_str(s),
            Err(_) => Err(DeError(format!("string at byte {at} is not valid UTF-8"))),
        }
    }

    fn visit_ext<V: Visitor<'de>>(&mut self, n: usize, v: V) -> Result<V::Value, DeError> {
        let tag = i8::from_ne_bytes([self.take(1)?[0]]);
        let data = self.take(n)?;
        v.visit_newtype_struct(ExtDeserializer { tag, data })
    }

    fn enter(&mut self, n: usize, per: usize) -> Result<(), DeError> {
        if n.saturating_mul(per) > self.buf.len() - self.pos {
            return Err(DeError(format!(
                "container at byte {} declares {n} elements but only {} bytes remain",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        if self.depth >= MAX_DEPTH {
            return Err(DeError(format!("nesting exceeds {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        Ok(())
    }

    fn visit_seq<V: Visitor<'de>>(&mut self, n: usize, v: V) -> Result<V::Value, DeError> {
        self.enter(n, 1)?;
        let mut access = Access { de: self, left: n };
        let value = v.visit_seq(&mut access)?;
        let left = access.left;
        self.depth -= 1;
        if left > 0 {
            return Err(DeError(format!(
                "array has {left} elements more than expected"
            )));
        }
        Ok(value)
    }

    fn visit_map<V: Visitor<'de>>(&mut self, n: usize, v: V) -> Result<V::Value, DeError> {
        self.enter(n, 2)?;
        let mut access = Access { de: self, left: n };
        let value = v.visit_map(&mut access)?;
        let left = access.left;
        self.depth -= 1;
        if left > 0 {
            return Err(DeError(format!(
                "map has {left} entries more than expected"
            )));
        }
        Ok(value)
    }

    /// Skips the next value and returns its bytes.
    fn raw_span(&mut self) -> Result<&'de [u8], DeError> {
        let start = self.pos;
        let end = scan::skip_value(self.buf, start).map_err(|e| DeError(e.to_string()))?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let at = self.pos;
        let m = self.take(1)?[0];
        match m {
            0x00..=0x7f => v.visit_u64(u64::from(m)),
            0x80..=0x8f => self.visit_map(usize::from(m & 0x0f), v),
            0x90..=0x9f => self.visit_seq(usize::from(m & 0x0f), v),
            0xa0..=0xbf => self.visit_str(usize::from(m & 0x1f), v),
            0xc0 => v.visit_unit(),
            0xc1 => Err(DeError(format!("reserved marker 0xc1 at byte {at}"))),
            0xc2 => v.visit_bool(false),
            0xc3 => v.visit_bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                v.visit_borrowed_bytes(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (m - 0xc7))?;
                self.visit_ext(n, v)
            }
            // exactly 4 bytes were read
            0xca => v.visit_f32(f32::from_bits(self.be(4)? as u32)),
            0xcb => v.visit_f64(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => v.visit_u64(self.be(1 << (m - 0xcc))?),
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let raw = self.be(n)?;
                // sign-extend an n-byte two's complement integer
                let shift = 64 - 8 * n as u32;
                // reinterpreting the bits is the point
                let signed = (raw << shift) as i64 >> shift;
                v.visit_i64(signed)
            }
            0xd4..=0xd8 => self.visit_ext(1 << (m - 0xd4), v),
            0xd9..=0xdb => {
                let n = self.len(1 << (m - 0xd9))?;
                self.visit_str(n, v)
            }
            0xdc | 0xdd => {
                let n = self.len(if m == 0xdc { 2 } else { 4 })?;
                self.visit_seq(n, v)
            }
            0xde | 0xdf => {
                let n = self.len(if m == 0xde { 2 } else { 4 })?;
                self.visit_map(n, v)
            }
            0xe0..=0xff => v.visit_i64(i64::from(i8::from_ne_bytes([m]))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == RAW_TOKEN {
            let span = self.raw_span()?;
            v.visit_borrowed_bytes(span)
        } else {
            v.visit_newtype_struct(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let at = self.pos;
        let m = self.peek()?;
        let n = match m {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(m & 0x1f)
            }
            0xd9..=0xdb => {
                self.pos += 1;
                self.len(1 << (m - 0xd9))?
            }
            _ => {
                return Err(DeError(format!(
                    "expected {name} as a string (one of {variants:?}) at byte {at}"
                )))
            }
        };
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| DeError(format!("string at byte {at} is not valid UTF-8")))?;
        v.visit_enum(de::value::BorrowedStrDeserializer::new(s))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.raw_span()?;
        v.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// Element access for arrays (`left` elements) and maps (`left` entries).
struct Access<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An extension value, presented as `rmpv` expects: a 2-tuple of the type
/// tag and the data bytes inside the `_ExtStruct` newtype.
struct ExtDeserializer<'de> {
    tag: i8,
    data: &'de [u8],
}

impl<'de> de::Deserializer<'de> for ExtDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_seq(ExtAccess {
            ext: self,
            index: 0,
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == EXT_TOKEN {
            v.visit_newtype_struct(self)
        } else {
            self.deserialize_any(v)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

struct ExtAccess<'de> {
    ext: ExtDeserializer<'de>,
    index: u8,
}

impl<'de> de::SeqAccess<'de> for ExtAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.index += 1;
        match self.index {
            1 => seed.deserialize(self.ext.tag.into_deserializer()).map(Some),
            2 => seed
                .deserialize(de::value::BorrowedBytesDeserializer::new(self.ext.data))
                .map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_value(v: &rmpv::Value) -> rmpv::Value {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        from_slice::<rmpv::Value>(&buf).unwrap()
    }

    #[test]
    fn t10_every_msgpack_kind_reads_back_as_rmpv_does() {
        use rmpv::Value as V;
        let v = V::Map(vec![
            (V::from("nil"), V::Nil),
            (V::from("t"), V::Boolean(true)),
            (V::from("f"), V::Boolean(false)),
            (V::from("pos"), V::from(5u64)),
            (V::from("u8"), V::from(200u64)),
            (V::from("u16"), V::from(60_000u64)),
            (V::from("u32"), V::from(4_000_000_000u64)),
            (V::from("u64"), V::from(u64::MAX)),
            (V::from("neg"), V::from(-3i64)),
            (V::from("i8"), V::from(-100i64)),
            (V::from("i16"), V::from(-30_000i64)),
            (V::from("i32"), V::from(-2_000_000_000i64)),
            (V::from("i64"), V::from(i64::MIN)),
            (V::from("f32"), V::F32(1.5)),
            (V::from("f64"), V::F64(-2.25)),
            (V::from("str"), V::from("x".repeat(40))),
            (V::from("str16"), V::from("y".repeat(300))),
            (V::from("bin"), V::Binary(vec![1, 2, 3])),
            (V::from("ext"), V::Ext(-1, vec![0; 8])),
            (V::from("ext3"), V::Ext(7, vec![1, 2, 3])),
            (V::from("arr"), V::Array((0..20).map(V::from).collect())),
            (V::from("empty"), V::Map(vec![])),
        ]);
        assert_eq!(roundtrip_value(&v), v);
    }

    #[test]
    fn t11_raw_token_captures_the_exact_span() {
        #[derive(serde::Deserialize)]
        struct Probe<'a> {
            a: u8,
            #[serde(borrow)]
            raw: Raw<'a>,
            b: u8,
        }
        struct Raw<'a>(&'a [u8]);
        impl<'de: 'a, 'a> de::Deserialize<'de> for Raw<'a> {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = Raw<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("raw")
                    }
                    fn visit_borrowed_bytes<E: de::Error>(
                        self,
                        b: &'de [u8],
                    ) -> Result<Raw<'a>, E> {
                        Ok(Raw(b))
                    }
                }
                d.deserialize_newtype_struct(RAW_TOKEN, V(std::marker::PhantomData))
            }
        }
        // {"a":1,"raw":{"k":[1,2]},"b":2}
        let frame = [
            0x83, 0xa1, b'a', 0x01, 0xa3, b'r', b'a', b'w', 0x81, 0xa1, b'k', 0x92, 0x01, 0x02,
            0xa1, b'b', 0x02,
        ];
        let p: Probe<'_> = from_slice(&frame).unwrap();
        assert_eq!((p.a, p.b), (1, 2));
        assert_eq!(p.raw.0, &[0x81, 0xa1, b'k', 0x92, 0x01, 0x02]);
    }

    #[test]
    fn t20_lying_container_lengths_are_errors_not_allocations() {
        assert!(from_slice::<rmpv::Value>(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(from_slice::<rmpv::Value>(&[0xdf, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(from_slice::<Vec<u8>>(&[0xc6, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn t21_depth_is_bounded_even_without_the_scan() {
        let mut deep = vec![0x91u8; MAX_DEPTH + 1];
        deep.push(0xc0);
        let err = from_slice::<rmpv::Value>(&deep).unwrap_err();
        assert!(err.0.contains("nesting"), "{err}");
        let mut ok = vec![0x91u8; MAX_DEPTH];
        ok.push(0xc0);
        assert!(from_slice::<rmpv::Value>(&ok).is_ok());
    }

    #[test]
    fn t22_invalid_utf8_and_trailing_bytes_are_errors() {
        assert!(from_slice::<String>(&[0xa2, 0xff, 0xfe]).is_err());
        assert!(from_slice::<u8>(&[0x01, 0x02]).is_err());
        assert!(from_slice::<u8>(&[]).is_err());
    }
}
