//! Sorting: the ONE comparator shared by result ordering, cursors and live
//! windows.
//!
//! A row's position is its [`SortKey`]: an order-preserving byte encoding of
//! the row's sort-field values, then the record key. Comparing two sort keys
//! is a byte comparison followed by a key comparison, so sorting a page,
//! testing "is this row after the cursor", and placing a row in a live top-N
//! window can never disagree (the legacy server used two comparators, and
//! they did disagree).
//!
//! # Total order of values (ascending)
//!
//! missing = nil < booleans (false < true) < numbers (exact, integers and
//! floats interleaved, NaN last) < strings (byte order) < binary (byte order)
//! < arrays (element-wise) < maps (entry-wise, in stored order) < ext.
//! A `desc` field reverses this order for that field only. The record key,
//! ascending, is always the final tie-break, so the order is total and a
//! query without `sort` is ordered by key.
//!
//! # Encoding (per sort field; `desc` inverts every byte of the field)
//!
//! ```text
//! nil/missing  01
//! boolean      02 00|01
//! number       03 <8 bytes: f64 order bits, -0 folded into +0, NaN canonical>
//!                 <16 bytes: exact value as i128, sign bit flipped, for ties
//!                  between integers that round to the same f64>
//! string       04 <bytes, 00 escaped as 00 FF> 00 00
//! binary       05 <bytes, escaped as for strings> 00 00
//! array        06 <each element encoded> 00
//! map          07 <each key, value encoded> 00
//! ext          08 <type byte ^ 0x80> <bytes, escaped> 00 00
//! ```
//! Every encoding is prefix-free, so concatenations compare field by field and
//! byte inversion reverses exactly one field's order.

use std::cmp::Ordering;
use std::sync::Arc;

use rmpv::Value;

use super::error::{describe, QueryError};
use super::value::{FieldPath, Num};

/// Sort direction of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

impl Direction {
    /// `"asc"` or `"desc"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    pub(crate) fn parse(v: &Value, at: &str) -> Result<Self, QueryError> {
        match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("asc") => Ok(Self::Asc),
            Some("desc") => Ok(Self::Desc),
            _ => Err(QueryError::WrongType {
                at: at.to_string(),
                expected: "\"asc\" or \"desc\"",
                found: describe(v),
            }),
        }
    }
}

/// One field of a multi-field sort.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortField {
    /// The (dotted) field to sort by.
    pub path: FieldPath,
    /// Its direction.
    pub direction: Direction,
}

/// A query's sort: fields in priority order, then the key ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SortSpec {
    fields: Vec<SortField>,
}

impl SortSpec {
    /// A sort over `fields`, in priority order.
    #[must_use]
    pub fn new(fields: Vec<SortField>) -> Self {
        Self { fields }
    }

    /// The fields, in priority order (empty: ordered by key only).
    #[must_use]
    pub fn fields(&self) -> &[SortField] {
        &self.fields
    }

    /// The sort key of the row (`key`, `value`).
    #[must_use]
    pub fn key_of(&self, key: Arc<str>, value: &Value) -> SortKey {
        SortKey::from_parts(self.encode(value).into(), key)
    }

    /// The order-preserving encoding of `value`'s sort fields (see the module
    /// docs); empty when there are no sort fields.
    #[must_use]
    pub fn encode(&self, value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.fields {
            let start = out.len();
            match f.path.lookup(value) {
                Some(v) => encode_value(v, &mut out),
                None => out.push(TAG_NIL),
            }
            if f.direction == Direction::Desc {
                for b in &mut out[start..] {
                    *b = !*b;
                }
            }
        }
        out
    }
}

/// A row's position under a [`SortSpec`]: encoded sort values, then the key.
///
/// `Ord` is the query order. Cloning is cheap (two reference counts). The
/// first 16 bytes of the encoding and the first 8 bytes of the key are kept
/// inline (zero-padded, big-endian), so most comparisons inside a window's
/// ordered set decide without following a pointer: the set is walked on
/// every change and pointer chasing there is cache misses.
#[derive(Debug, Clone)]
pub struct SortKey {
    bytes_prefix: u128,
    key_prefix: u64,
    bytes: Arc<[u8]>,
    key: Arc<str>,
}

impl SortKey {
    /// Rebuilds a sort key from its parts (as carried by a cursor).
    #[must_use]
    pub fn from_parts(bytes: Arc<[u8]>, key: Arc<str>) -> Self {
        let mut b = [0u8; 16];
        let n = bytes.len().min(16);
        b[..n].copy_from_slice(&bytes[..n]);
        let mut k = [0u8; 8];
        let m = key.len().min(8);
        k[..m].copy_from_slice(&key.as_bytes()[..m]);
        Self {
            bytes_prefix: u128::from_be_bytes(b),
            key_prefix: u64::from_be_bytes(k),
            bytes,
            key,
        }
    }

    /// The record key.
    #[must_use]
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The encoded sort values.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

// Zero padding keeps prefix order consistent with full order: two
// encodings (or keys) whose padded prefixes differ compare the same way in
// full; equal prefixes fall back to the full comparison.
impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes_prefix
            .cmp(&other.bytes_prefix)
            .then_with(|| self.bytes.cmp(&other.bytes))
            .then_with(|| self.key_prefix.cmp(&other.key_prefix))
            .then_with(|| self.key.as_bytes().cmp(other.key.as_bytes()))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortKey {}

/// The encoding of one value, as a sort field ascending would encode it.
pub(crate) fn encode_one(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(26);
    encode_value(v, &mut out);
    out
}

/// `[start, end)` of every encoding of `v`'s type (numbers or strings), so
/// a one-sided range like `gt 5` covers numbers only.
pub(crate) fn type_span(v: &Value) -> (Vec<u8>, Vec<u8>) {
    let tag = match v {
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => TAG_NUM,
        Value::String(_) => TAG_STR,
        Value::Nil => TAG_NIL,
        Value::Boolean(_) => TAG_BOOL,
        Value::Binary(_) => TAG_BIN,
        Value::Array(_) => TAG_ARRAY,
        Value::Map(_) => TAG_MAP,
        Value::Ext(..) => TAG_EXT,
    };
    (vec![tag], vec![tag + 1])
}

const TAG_END: u8 = 0x00;
const TAG_NIL: u8 = 0x01;
const TAG_BOOL: u8 = 0x02;
const TAG_NUM: u8 = 0x03;
const TAG_STR: u8 = 0x04;
const TAG_BIN: u8 = 0x05;
const TAG_ARRAY: u8 = 0x06;
const TAG_MAP: u8 = 0x07;
const TAG_EXT: u8 = 0x08;

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.push(TAG_NIL),
        Value::Boolean(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            out.push(TAG_NUM);
            // Num::of cannot fail on these variants.
            encode_number(Num::of(v).unwrap_or(Num::F(f64::NAN)), out);
        }
        Value::String(s) => {
            out.push(TAG_STR);
            encode_bytes(s.as_bytes(), out);
        }
        Value::Binary(b) => {
            out.push(TAG_BIN);
            encode_bytes(b, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for i in items {
                encode_value(i, out);
            }
            out.push(TAG_END);
        }
        Value::Map(entries) => {
            out.push(TAG_MAP);
            for (k, v) in entries {
                encode_value(k, out);
                encode_value(v, out);
            }
            out.push(TAG_END);
        }
        Value::Ext(t, data) => {
            out.push(TAG_EXT);
            out.push(t.to_ne_bytes()[0] ^ 0x80);
            encode_bytes(data, out);
        }
    }
}

fn encode_number(n: Num, out: &mut Vec<u8>) {
    let (approx, exact): (f64, i128) = match n {
        Num::I(i) => (i as f64, i128::from(i)),
        Num::U(u) => (u as f64, i128::from(u)),
        // `as` saturates; for floats the exact part only matters when the
        // approximation ties with an integer, and then the float is integral.
        Num::F(f) if f.is_nan() => (f64::NAN, 0),
        Num::F(f) => (f, f.trunc() as i128),
    };
    let approx = if approx == 0.0 { 0.0 } else { approx };
    let bits = if approx.is_nan() {
        f64::NAN.to_bits()
    } else {
        approx.to_bits()
    };
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.extend_from_slice(&ordered.to_be_bytes());
    out.extend_from_slice(&((exact as u128) ^ (1u128 << 127)).to_be_bytes());
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.push(0);
    out.push(0);
}
