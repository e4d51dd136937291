//! Test support for persistence backends: entry builders (also used by the
//! backend contract suite in `hangar-testkit`, feature `persistence`) and
//! [`InstrumentedBackend`] for fault injection.

mod instrumented;

#[cfg(test)]
pub(crate) mod gen;

use hangar_core::{LwwRecord, OrRecord, RawValue, Timestamp};

pub use instrumented::{FailureStyle, InstrumentedBackend};

use super::entry::StoredEntry;

/// An LWW entry with an integer value (or a tombstone for `None`), written
/// by `node-a` at `millis`.
///
/// # Panics
/// Never: an integer always encodes.
#[must_use]
pub fn lww(value: Option<i64>, millis: u64, ttl_ms: Option<u64>) -> StoredEntry {
    StoredEntry::Lww(LwwRecord {
        value: value
            .map(|v| RawValue::encode(&v).expect("an integer encodes"))
            .into(),
        timestamp: Timestamp::new(millis, 0, "node-a"),
        ttl_ms: ttl_ms.into(),
    })
}

/// An OR record with a string value written by `node-b` at `millis`; its
/// tag is its timestamp.
///
/// # Panics
/// Never: a string always encodes.
#[must_use]
pub fn or_record(value: &str, millis: u64, ttl_ms: Option<u64>) -> OrRecord {
    let timestamp = Timestamp::new(millis, 1, "node-b");
    OrRecord {
        value: RawValue::encode(value).expect("a string encodes"),
        tag: timestamp.to_string().into(),
        timestamp,
        ttl_ms: ttl_ms.into(),
    }
}
