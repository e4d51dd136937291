//! The byte encoding of stored values, shared by every backend that stores
//! bytes (redb now; PostgreSQL may store the same bytes in a `bytea` column).
//!
//! # On-disk layout (format version 1)
//!
//! Every stored value starts with a version byte, so that a later build can
//! read old rows and refuse rows it does not understand (with
//! [`PersistenceError::Corrupt`], never a misread). Integers inside msgpack
//! use the smallest msgpack encoding; the record's value is its [`RawValue`]
//! bytes (already msgpack) wrapped in a msgpack `bin`, never re-encoded.
//!
//! ```text
//! entry value, the row of (map, key):
//!   offset 0   u8   FORMAT_VERSION (1)
//!   offset 1   u8   kind: KIND_LWW (0) | KIND_OR (1)
//!   offset 2.. msgpack body, nothing after it
//!     LWW: array(5) [value: bin | nil, millis: uint, counter: uint, node_id: str, ttl_ms: uint | nil]
//!     OR:  array(n) of n records, each
//!          array(6) [value: bin, millis: uint, counter: uint, node_id: str, tag: str, ttl_ms: uint | nil]
//!
//! catalog value, the row of map:
//!   offset 0   u8   FORMAT_VERSION (1)
//!   offset 1   u8   kind: KIND_LWW (0) | KIND_OR (1)
//!
//! tombstone value, the row of (map, tag):
//!   offset 0   u8   FORMAT_VERSION (1)   (the tag is the row's key; nothing else yet)
//! ```
//!
//! A nil value in an LWW body is a tombstone record; an absent TTL is nil, so
//! `ttl_ms` survives a round trip (the legacy SQL adapters dropped it).

use abi_stable::std_types::{ROption, RString};
use hangar_core::{LwwRecord, MapKind, OrRecord, RawValue, Timestamp};

use super::entry::StoredEntry;
use super::error::PersistenceError;

/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;
/// Kind byte of an LWW entry or map.
pub const KIND_LWW: u8 = 0;
/// Kind byte of an OR entry or map.
pub const KIND_OR: u8 = 1;

const LWW_FIELDS: u32 = 5;
const OR_RECORD_FIELDS: u32 = 6;
const MSGPACK_NIL: u8 = 0xc0;

/// The kind byte of `kind`.
#[must_use]
pub fn kind_byte(kind: MapKind) -> u8 {
    match kind {
        MapKind::Lww => KIND_LWW,
        MapKind::Or => KIND_OR,
    }
}

fn kind_of(byte: u8, location: &str) -> Result<MapKind, PersistenceError> {
    match byte {
        KIND_LWW => Ok(MapKind::Lww),
        KIND_OR => Ok(MapKind::Or),
        other => Err(corrupt(
            location,
            format!("unknown kind byte {other}, expected {KIND_LWW} (LWW) or {KIND_OR} (OR)"),
        )),
    }
}

fn corrupt(location: &str, reason: impl Into<String>) -> PersistenceError {
    PersistenceError::Corrupt {
        location: location.to_string(),
        reason: reason.into(),
    }
}

fn check_version(bytes: &[u8], location: &str) -> Result<(), PersistenceError> {
    match bytes.first() {
        None => Err(corrupt(
            location,
            "empty value, expected a format version byte",
        )),
        Some(&FORMAT_VERSION) => Ok(()),
        Some(&v) => Err(corrupt(
            location,
            format!("format version {v}, but this build reads only version {FORMAT_VERSION}"),
        )),
    }
}

// Writing msgpack into a Vec cannot fail: the only error source is the writer.
fn vec_write<T, E: std::fmt::Debug>(r: Result<T, E>) {
    r.expect("writing msgpack into a Vec<u8> cannot fail");
}

fn write_ts(out: &mut Vec<u8>, ts: &Timestamp) {
    vec_write(rmp::encode::write_uint(out, ts.millis));
    vec_write(rmp::encode::write_uint(out, u64::from(ts.counter)));
    vec_write(rmp::encode::write_str(out, ts.node_id.as_str()));
}

fn write_ttl(out: &mut Vec<u8>, ttl: &ROption<u64>) {
    match ttl {
        ROption::RSome(t) => vec_write(rmp::encode::write_uint(out, *t)),
        ROption::RNone => vec_write(rmp::encode::write_nil(out)),
    }
}

fn array_len(n: usize, what: &str) -> Result<u32, PersistenceError> {
    u32::try_from(n).map_err(|_| {
        PersistenceError::InvalidInput(format!("{what} has {n} elements, at most {} fit", u32::MAX))
    })
}

/// Encodes an entry row.
///
/// # Errors
/// [`PersistenceError::InvalidInput`] when an OR entry has more than
/// `u32::MAX` records.
pub fn encode_entry(entry: &StoredEntry) -> Result<Vec<u8>, PersistenceError> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    out.push(kind_byte(entry.kind()));
    match entry {
        StoredEntry::Lww(r) => {
            vec_write(rmp::encode::write_array_len(&mut out, LWW_FIELDS));
            match &r.value {
                ROption::RSome(v) => vec_write(rmp::encode::write_bin(&mut out, v.as_bytes())),
                ROption::RNone => vec_write(rmp::encode::write_nil(&mut out)),
            }
            write_ts(&mut out, &r.timestamp);
            write_ttl(&mut out, &r.ttl_ms);
        }
        StoredEntry::Or { records } => {
            let n = array_len(records.len(), "OR entry")?;
            vec_write(rmp::encode::write_array_len(&mut out, n));
            for r in records {
                vec_write(rmp::encode::write_array_len(&mut out, OR_RECORD_FIELDS));
                vec_write(rmp::encode::write_bin(&mut out, r.value.as_bytes()));
                write_ts(&mut out, &r.timestamp);
                vec_write(rmp::encode::write_str(&mut out, r.tag.as_str()));
                write_ttl(&mut out, &r.ttl_ms);
            }
        }
    }
    Ok(out)
}

/// Decodes an entry row; `location` names the row in errors.
///
/// # Errors
/// [`PersistenceError::Corrupt`] when the bytes are not a version-1 entry.
pub fn decode_entry(bytes: &[u8], location: &str) -> Result<StoredEntry, PersistenceError> {
    check_version(bytes, location)?;
    let kind = kind_of(
        *bytes.get(1).ok_or_else(|| {
            corrupt(
                location,
                "value ends after the version byte, expected a kind byte",
            )
        })?,
        location,
    )?;
    let mut rd = Reader {
        buf: &bytes[2..],
        location,
    };
    let entry = match kind {
        MapKind::Lww => {
            rd.expect_array(LWW_FIELDS, "LWW record")?;
            let value = if rd.take_nil() {
                ROption::RNone
            } else {
                ROption::RSome(RawValue::from_msgpack(rd.bin("value")?))
            };
            let timestamp = rd.timestamp()?;
            let ttl_ms = rd.ttl()?;
            StoredEntry::Lww(LwwRecord {
                value,
                timestamp,
                ttl_ms,
            })
        }
        MapKind::Or => {
            let n = rd.array_len("OR record list")?;
            // Each record takes at least 6 bytes; never trust n for the allocation.
            let mut records = Vec::with_capacity((n as usize).min(rd.buf.len() / 6));
            for _ in 0..n {
                rd.expect_array(OR_RECORD_FIELDS, "OR record")?;
                let value = RawValue::from_msgpack(rd.bin("value")?);
                let timestamp = rd.timestamp()?;
                let tag = RString::from(rd.str("tag")?);
                let ttl_ms = rd.ttl()?;
                records.push(OrRecord {
                    value,
                    timestamp,
                    tag,
                    ttl_ms,
                });
            }
            StoredEntry::Or { records }
        }
    };
    if !rd.buf.is_empty() {
        return Err(corrupt(
            location,
            format!("{} unexpected bytes after the record", rd.buf.len()),
        ));
    }
    Ok(entry)
}

/// Encodes a catalog row (the kind of a map).
#[must_use]
pub fn encode_catalog(kind: MapKind) -> [u8; 2] {
    [FORMAT_VERSION, kind_byte(kind)]
}

/// Decodes a catalog row.
///
/// # Errors
/// [`PersistenceError::Corrupt`] when the bytes are not a version-1 catalog row.
pub fn decode_catalog(bytes: &[u8], location: &str) -> Result<MapKind, PersistenceError> {
    check_version(bytes, location)?;
    match bytes {
        [_, k] => kind_of(*k, location),
        _ => Err(corrupt(
            location,
            format!("catalog row of {} bytes, expected 2", bytes.len()),
        )),
    }
}

/// Encodes a tombstone row.
#[must_use]
pub fn encode_tombstone() -> [u8; 1] {
    [FORMAT_VERSION]
}

/// Checks a tombstone row.
///
/// # Errors
/// [`PersistenceError::Corrupt`] when the bytes are not a version-1 tombstone row.
pub fn check_tombstone(bytes: &[u8], location: &str) -> Result<(), PersistenceError> {
    check_version(bytes, location)?;
    if bytes.len() == 1 {
        Ok(())
    } else {
        Err(corrupt(
            location,
            format!("tombstone row of {} bytes, expected 1", bytes.len()),
        ))
    }
}

struct Reader<'a, 'l> {
    buf: &'a [u8],
    location: &'l str,
}

impl<'a> Reader<'a, '_> {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> PersistenceError {
        corrupt(self.location, format!("bad {what}: {e}"))
    }

    fn take_nil(&mut self) -> bool {
        if self.buf.first() == Some(&MSGPACK_NIL) {
            self.buf = &self.buf[1..];
            true
        } else {
            false
        }
    }

    fn array_len(&mut self, what: &str) -> Result<u32, PersistenceError> {
        rmp::decode::read_array_len(&mut self.buf).map_err(|e| self.err(what, e))
    }

    fn expect_array(&mut self, fields: u32, what: &str) -> Result<(), PersistenceError> {
        let n = self.array_len(what)?;
        if n == fields {
            Ok(())
        } else {
            Err(corrupt(
                self.location,
                format!("{what} has {n} fields, expected {fields}"),
            ))
        }
    }

    fn uint(&mut self, what: &str) -> Result<u64, PersistenceError> {
        rmp::decode::read_int(&mut self.buf).map_err(|e| self.err(what, e))
    }

    fn take(&mut self, n: u32, what: &str) -> Result<&'a [u8], PersistenceError> {
        let n = n as usize;
        if self.buf.len() < n {
            return Err(corrupt(
                self.location,
                format!("{what} needs {n} bytes, only {} remain", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn bin(&mut self, what: &str) -> Result<&'a [u8], PersistenceError> {
        let n = rmp::decode::read_bin_len(&mut self.buf).map_err(|e| self.err(what, e))?;
        self.take(n, what)
    }

    fn str(&mut self, what: &str) -> Result<&'a str, PersistenceError> {
        let n = rmp::decode::read_str_len(&mut self.buf).map_err(|e| self.err(what, e))?;
        let bytes = self.take(n, what)?;
        std::str::from_utf8(bytes).map_err(|e| self.err(what, e))
    }

    fn timestamp(&mut self) -> Result<Timestamp, PersistenceError> {
        let millis = self.uint("timestamp millis")?;
        let counter = self.uint("timestamp counter")?;
        let counter = u32::try_from(counter).map_err(|_| {
            corrupt(
                self.location,
                format!("timestamp counter {counter} does not fit in u32"),
            )
        })?;
        let node = self.str("timestamp node id")?;
        Ok(Timestamp::new(millis, counter, node))
    }

    fn ttl(&mut self) -> Result<ROption<u64>, PersistenceError> {
        if self.take_nil() {
            Ok(ROption::RNone)
        } else {
            self.uint("ttl_ms").map(ROption::RSome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::testing::gen;
    use proptest::prelude::*;

    fn lww(v: Option<i64>, ttl: Option<u64>) -> StoredEntry {
        StoredEntry::Lww(LwwRecord {
            value: v.map(|v| RawValue::encode(&v).unwrap()).into(),
            timestamp: Timestamp::new(1_700_000_000_000, 3, "n1"),
            ttl_ms: ttl.into(),
        })
    }

    #[test]
    fn t10_layout_of_an_lww_row_is_pinned() {
        let bytes = encode_entry(&lww(Some(7), Some(500))).unwrap();
        // version, kind, array(5), bin(1) [0x07], uint64 millis, 3, "n1", uint16 500
        let mut expected = vec![1, 0, 0x95, 0xc4, 0x01, 0x07, 0xcf];
        expected.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        expected.extend_from_slice(&[0x03, 0xa2, b'n', b'1', 0xcd, 0x01, 0xf4]);
        assert_eq!(bytes, expected);
        let tomb = encode_entry(&lww(None, None)).unwrap();
        assert_eq!(&tomb[..4], &[1, 0, 0x95, 0xc0]);
        assert_eq!(*tomb.last().unwrap(), 0xc0, "absent ttl is nil");
    }

    #[test]
    fn t11_layout_of_an_or_row_is_pinned() {
        let e = StoredEntry::Or {
            records: vec![OrRecord {
                value: RawValue::encode(&1).unwrap(),
                timestamp: Timestamp::new(5, 0, "a"),
                tag: "5:0:a".into(),
                ttl_ms: ROption::RNone,
            }],
        };
        let bytes = encode_entry(&e).unwrap();
        let expected = [
            1, 1, 0x91, 0x96, 0xc4, 0x01, 0x01, 0x05, 0x00, 0xa1, b'a', 0xa5, b'5', b':', b'0',
            b':', b'a', 0xc0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(encode_catalog(MapKind::Or), [1, 1]);
        assert_eq!(encode_tombstone(), [1]);
    }

    #[test]
    fn t12_unknown_version_and_kind_are_refused_not_misread() {
        let mut bytes = encode_entry(&lww(Some(1), None)).unwrap();
        bytes[0] = 2;
        let e = decode_entry(&bytes, "m/k").unwrap_err();
        assert!(
            e.to_string().contains("format version 2") && e.to_string().contains("m/k"),
            "{e}"
        );
        bytes[0] = 1;
        bytes[1] = 9;
        assert!(decode_entry(&bytes, "m/k")
            .unwrap_err()
            .to_string()
            .contains("kind byte 9"));
        assert!(decode_entry(&[], "m/k").is_err());
        assert!(decode_catalog(&[1, 7], "catalog/m").is_err());
        assert!(decode_catalog(&[1], "catalog/m").is_err());
        assert!(check_tombstone(&[1, 0], "m#t").is_err());
        check_tombstone(&[1], "m#t").unwrap();
    }

    #[test]
    fn t13_truncated_and_padded_rows_are_corrupt() {
        let bytes = encode_entry(&lww(Some(123_456), Some(9))).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode_entry(&bytes[..cut], "m/k").is_err(),
                "a row cut at {cut} bytes must not decode"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode_entry(&padded, "m/k")
            .unwrap_err()
            .to_string()
            .contains("unexpected bytes"));
    }

    #[test]
    fn t14_huge_declared_record_count_does_not_allocate_it() {
        // array32 claiming 4 billion records, followed by nothing
        let bytes = [1, 1, 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_entry(&bytes, "m/k").is_err());
    }

    proptest! {
        #[test]
        fn t20_prop_every_entry_round_trips(entry in gen::stored_entry()) {
            let bytes = encode_entry(&entry).unwrap();
            prop_assert_eq!(decode_entry(&bytes, "m/k").unwrap(), entry);
        }

        #[test]
        fn t21_prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_entry(&bytes, "m/k");
            let _ = decode_catalog(&bytes, "catalog/m");
        }
    }
}
