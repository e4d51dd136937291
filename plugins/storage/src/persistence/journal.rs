//! What a backend stores for the event journal: one [`JournalRecord`] per
//! sequence number, and its byte layout.
//!
//! Journal rows travel in the same [`super::WriteBatch`] as the map rows of
//! the write that produced them ([`super::StoreOp::JournalAppend`]), so a
//! journal entry is durable exactly when its write is. The group committer
//! numbers them at enqueue (see [`super::group_commit`]), so sequence order
//! is commit order and numbers are dense. Retention removes the oldest rows
//! with [`super::StoreOp::JournalPrune`].
//!
//! # Row layout
//!
//! ```text
//! key:   sequence (u64)
//! value: [version: u8 = 1] msgpack array [kind: u8, map: str, key: str,
//!        value: bin | nil, previous: bin | nil,
//!        millis: uint, counter: uint, timestamp node: str, node id: str]
//! ```

use hangar_core::module::journal::{JournalEvent, JournalEventType};
use hangar_core::{RawValue, Timestamp};
use rmpv::Value;

use super::error::PersistenceError;

/// The version byte of journal rows.
const JOURNAL_FORMAT: u8 = 1;
const FIELDS: usize = 9;

/// One journal entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// Position in the journal; 0 until the group committer numbers it at
    /// enqueue.
    pub seq: u64,
    /// What happened to the key.
    pub kind: JournalEventType,
    /// The map.
    pub map: String,
    /// The key.
    pub key: String,
    /// The visible value after the change (msgpack), `None` for a delete.
    pub value: Option<RawValue>,
    /// The visible value before the change, `None` for a put.
    pub previous: Option<RawValue>,
    /// The write's timestamp.
    pub timestamp: Timestamp,
    /// The node that journaled it.
    pub node_id: String,
}

impl JournalRecord {
    /// The module-boundary form of the entry.
    #[must_use]
    pub fn to_event(&self) -> JournalEvent {
        JournalEvent {
            sequence: self.seq,
            kind: self.kind,
            map: self.map.as_str().into(),
            key: self.key.as_str().into(),
            value: self.value.clone().into(),
            previous: self.previous.clone().into(),
            timestamp: self.timestamp.clone(),
            node_id: self.node_id.as_str().into(),
        }
    }
}

fn kind_byte(k: JournalEventType) -> u8 {
    match k {
        JournalEventType::Put => 0,
        JournalEventType::Update => 1,
        JournalEventType::Delete => 2,
    }
}

fn bin(v: Option<&RawValue>) -> Value {
    v.map_or(Value::Nil, |v| Value::Binary(v.as_bytes().to_vec()))
}

/// Encodes a journal row's value.
#[must_use]
pub fn encode_journal(r: &JournalRecord) -> Vec<u8> {
    let v = Value::Array(vec![
        Value::from(kind_byte(r.kind)),
        Value::from(r.map.as_str()),
        Value::from(r.key.as_str()),
        bin(r.value.as_ref()),
        bin(r.previous.as_ref()),
        Value::from(r.timestamp.millis),
        Value::from(r.timestamp.counter),
        Value::from(r.timestamp.node_id.as_str()),
        Value::from(r.node_id.as_str()),
    ]);
    let mut out = Vec::with_capacity(64);
    out.push(JOURNAL_FORMAT);
    rmpv::encode::write_value(&mut out, &v).expect("writing msgpack into a Vec cannot fail");
    out
}

/// Decodes the journal row of sequence `seq`.
///
/// # Errors
/// [`PersistenceError::Corrupt`] naming the row and what was wrong.
pub fn decode_journal(seq: u64, bytes: &[u8]) -> Result<JournalRecord, PersistenceError> {
    let bad = |reason: String| PersistenceError::Corrupt {
        location: format!("journal#{seq}"),
        reason,
    };
    match bytes.first() {
        Some(&JOURNAL_FORMAT) => {}
        Some(v) => {
            return Err(bad(format!(
                "journal format version {v}, but this build reads only version {JOURNAL_FORMAT}"
            )))
        }
        None => return Err(bad("empty journal row, expected a version byte".into())),
    }
    let v = rmpv::decode::read_value(&mut &bytes[1..])
        .map_err(|e| bad(format!("journal row is not msgpack: {e}")))?;
    let Value::Array(f) = v else {
        return Err(bad("journal row is not an array".into()));
    };
    if f.len() != FIELDS {
        return Err(bad(format!(
            "journal row has {} fields, expected {FIELDS}",
            f.len()
        )));
    }
    let s = |i: usize, what: &str| {
        f[i].as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("field {i} ({what}) is not a string")))
    };
    let raw = |i: usize, what: &str| match &f[i] {
        Value::Nil => Ok(None),
        Value::Binary(b) => Ok(Some(RawValue::from_msgpack(b.clone()))),
        _ => Err(bad(format!("field {i} ({what}) is neither bytes nor nil"))),
    };
    let u = |i: usize, what: &str| {
        f[i].as_u64()
            .ok_or_else(|| bad(format!("field {i} ({what}) is not an unsigned integer")))
    };
    let kind = match u(0, "kind")? {
        0 => JournalEventType::Put,
        1 => JournalEventType::Update,
        2 => JournalEventType::Delete,
        k => {
            return Err(bad(format!(
                "kind {k}, expected 0 (put), 1 (update) or 2 (delete)"
            )))
        }
    };
    let counter = u32::try_from(u(6, "counter")?)
        .map_err(|_| bad("field 6 (counter) does not fit in u32".into()))?;
    Ok(JournalRecord {
        seq,
        kind,
        map: s(1, "map")?,
        key: s(2, "key")?,
        value: raw(3, "value")?,
        previous: raw(4, "previous")?,
        timestamp: Timestamp::new(u(5, "millis")?, counter, s(7, "timestamp node")?),
        node_id: s(8, "node id")?,
    })
}
