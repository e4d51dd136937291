//! Semantics of dynamic msgpack values inside queries: field paths, truthiness,
//! equality, ordering, and hashing.
//!
//! # Decisions (documented here once; the rest of the engine relies on them)
//!
//! - **Field paths** are dotted: `address.city` reads `value["address"]["city"]`.
//!   A segment that is a decimal number also indexes an array (`tags.0`).
//!   Every segment is a map key; a record key that itself contains `.` cannot
//!   be addressed (the TopGun v2 server behaves the same way).
//! - **Missing vs nil**: a path is *missing* when any step is absent or is not
//!   a map (or array, for a numeric segment). `isNull` is true for missing and
//!   for nil; `eq(field, nil)` is true only for a stored nil.
//! - **Equality** ([`loose_eq`]) is deep. Numbers compare by numeric value
//!   across integer and float (`1 == 1.0`); maps compare as unordered sets of
//!   entries; there is no other cross-type coercion (`"1" != 1`).
//! - **Ordering in predicates** ([`order_cmp`]) exists only between two
//!   numbers (exact, across integer and float) or two strings (byte order,
//!   which for UTF-8 equals code-point order). Anything else is unordered and
//!   the comparison is false.
//! - **Truthiness** ([`is_truthy`]) follows the legacy server: a record whose
//!   whole value is nil, `false`, `0`, `0.0`, NaN or `""` never matches a query.

use std::cmp::Ordering;
use std::hash::Hasher;

use rmpv::Value;

use super::error::QueryError;

/// A dotted path into a record value, parsed once per query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    raw: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `raw` (`a` or `a.b.c`).
    ///
    /// # Errors
    /// [`QueryError::Invalid`] when the path is empty or has an empty segment
    /// (`a..b`, `.a`).
    pub fn parse(raw: &str, at: &str) -> Result<Self, QueryError> {
        let segments: Vec<String> = raw.split('.').map(str::to_string).collect();
        if raw.is_empty() || segments.iter().any(String::is_empty) {
            return Err(QueryError::Invalid {
                at: at.to_string(),
                problem: format!(
                    "field path {raw:?} is empty or has an empty segment; expected `name` or `a.b.c`"
                ),
            });
        }
        Ok(Self {
            raw: raw.to_string(),
            segments,
        })
    }

    /// The path as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The top-level field the path starts at: a change to any other
    /// top-level field cannot change what this path reads.
    #[must_use]
    pub fn top(&self) -> &str {
        &self.segments[0]
    }

    /// True when the path is a single top-level field.
    #[must_use]
    pub fn is_top_level(&self) -> bool {
        self.segments.len() == 1
    }

    /// Reads the path in `root`; `None` when missing.
    #[must_use]
    pub fn lookup<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for seg in &self.segments {
            cur = match cur {
                Value::Map(entries) => map_get(entries, seg)?,
                Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// The value under string key `key` in a msgpack map (first match).
#[must_use]
pub fn map_get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// JavaScript truthiness of a whole record value (see the module docs).
#[must_use]
pub fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Boolean(b) => *b,
        Value::Integer(i) => i.as_i64() != Some(0),
        Value::F32(f) => *f != 0.0 && !f.is_nan(),
        Value::F64(f) => *f != 0.0 && !f.is_nan(),
        Value::String(s) => !s.as_bytes().is_empty(),
        _ => true,
    }
}

/// A msgpack number, kept exact.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    pub(crate) fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(i) => Some(match i.as_i64() {
                Some(n) => Self::I(n),
                None => Self::U(i.as_u64()?),
            }),
            Value::F32(f) => Some(Self::F(f64::from(*f))),
            Value::F64(f) => Some(Self::F(*f)),
            _ => None,
        }
    }

    /// The value as an `i128` when it is an integer or an integral float
    /// within `i128` range.
    fn as_i128(self) -> Option<i128> {
        match self {
            Self::I(n) => Some(i128::from(n)),
            Self::U(n) => Some(i128::from(n)),
            Self::F(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.0e38 => {
                // In range (|f| < 1e38 < 2^127) and integral: exact.
                Some(f as i128)
            }
            Self::F(_) => None,
        }
    }

    /// Exact numeric comparison; `None` when a NaN is involved.
    pub(crate) fn cmp(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::F(a), Self::F(b)) => a.partial_cmp(&b),
            (Self::F(f), n) => cmp_int_float(n, f).map(Ordering::reverse),
            (n, Self::F(f)) => cmp_int_float(n, f),
            (a, b) => Some(a.as_i128()?.cmp(&b.as_i128()?)),
        }
    }
}

/// Compares an integer `n` (I or U) with float `f`, exactly.
fn cmp_int_float(n: Num, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let n = n.as_i128()?;
    // Every i64/u64 lies strictly inside (-2^64, 2^64).
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if f >= TWO_64 {
        return Some(Ordering::Less);
    }
    if f <= -TWO_64 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    let ti = t as i128; // exact: |t| < 2^64
    Some(n.cmp(&ti).then_with(|| {
        let fr = f - t;
        if fr > 0.0 {
            Ordering::Less
        } else if fr < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

/// Deep equality with numeric normalization (see the module docs).
#[must_use]
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return x.cmp(y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Boolean(x), Value::Boolean(y)) => x == y,
        (Value::String(x), Value::String(y)) => x.as_bytes() == y.as_bytes(),
        (Value::Binary(x), Value::Binary(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| loose_eq(k, k2))
                        .is_some_and(|(_, v2)| loose_eq(v, v2))
                })
        }
        (Value::Ext(t1, d1), Value::Ext(t2, d2)) => t1 == t2 && d1 == d2,
        _ => false,
    }
}

/// Predicate ordering: number vs number or string vs string, else `None`.
#[must_use]
pub fn order_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return x.cmp(y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

/// Exact representational identity: what a client would see as "the same
/// value". Unlike `==` on [`Value`], NaN is identical to itself; unlike
/// [`loose_eq`], `1` and `1.0` differ and map entry order matters.
#[must_use]
pub fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| identical(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| identical(k1, k2) && identical(v1, v2))
        }
        _ => a == b,
    }
}

/// The normalized key of a scalar for equality indexes: two scalars that are
/// [`loose_eq`] have the same `IndexKey`. Composite values have none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum IndexKey {
    Nil,
    Bool(bool),
    Int(i128),
    /// Bits of a non-integral (or out-of-range) float.
    Float(u64),
    Str(Vec<u8>),
    Bin(Vec<u8>),
}

impl IndexKey {
    pub(crate) fn of(v: &Value) -> Option<Self> {
        if let Some(n) = Num::of(v) {
            return Some(match n.as_i128() {
                Some(i) => Self::Int(i),
                None => match n {
                    Num::F(f) if f.is_nan() => Self::Float(f64::NAN.to_bits()),
                    Num::F(f) => Self::Float(f.to_bits()),
                    // Integers always have an i128 form.
                    Num::I(_) | Num::U(_) => return None,
                },
            });
        }
        match v {
            Value::Nil => Some(Self::Nil),
            Value::Boolean(b) => Some(Self::Bool(*b)),
            Value::String(s) => Some(Self::Str(s.as_bytes().to_vec())),
            Value::Binary(b) => Some(Self::Bin(b.clone())),
            _ => None,
        }
    }
}

/// 64-bit FNV-1a: a small deterministic hasher, stable across Rust releases
/// and processes (cursor hashes travel between nodes).
#[derive(Debug, Clone)]
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A canonical hash of a value: map entries are hashed in sorted order, so
/// `{a:1,b:2}` and `{b:2,a:1}` agree. Used to tie a cursor to its query.
pub(crate) fn canonical_hash(v: &Value, h: &mut Fnv64) {
    match v {
        Value::Nil => h.write_u8(0),
        Value::Boolean(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            h.write_u8(2);
            match Num::of(v).and_then(Num::as_i128) {
                Some(i) => h.write_i128(i),
                None => {
                    let f = v.as_f64().unwrap_or(f64::NAN);
                    h.write_u64(if f.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        f.to_bits()
                    });
                }
            }
        }
        Value::String(s) => {
            h.write_u8(3);
            h.write_usize(s.as_bytes().len());
            h.write(s.as_bytes());
        }
        Value::Binary(b) => {
            h.write_u8(4);
            h.write_usize(b.len());
            h.write(b);
        }
        Value::Array(items) => {
            h.write_u8(5);
            h.write_usize(items.len());
            for i in items {
                canonical_hash(i, h);
            }
        }
        Value::Map(entries) => {
            h.write_u8(6);
            h.write_usize(entries.len());
            let mut hashed: Vec<(u64, u64)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut hk = Fnv64::default();
                    canonical_hash(k, &mut hk);
                    let mut hv = Fnv64::default();
                    canonical_hash(v, &mut hv);
                    (hk.finish(), hv.finish())
                })
                .collect();
            hashed.sort_unstable();
            for (k, v) in hashed {
                h.write_u64(k);
                h.write_u64(v);
            }
        }
        Value::Ext(t, b) => {
            h.write_u8(7);
            h.write_i8(*t);
            h.write_usize(b.len());
            h.write(b);
        }
    }
}
