//! Builders of ops, queries and requests, value conversions, and recording
//! sinks shared by the storage suite's cases (and by plugin tests that
//! reuse them).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{
    AckResult, ApplyBatch, ChangeEvent, ChangeSink, ChangeType, KeyRecord, OpOutcome, Origin,
    QueryRequest, QuerySink, QueryUpdate, RecordState, WriteOp,
};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp, WriteConcern};
use parking_lot::Mutex;
use serde_json::Value as Json;

/// Encodes a JSON value as a msgpack [`RawValue`].
#[must_use]
pub fn raw(v: &Json) -> RawValue {
    RawValue::encode(v).expect("json encodes as msgpack")
}

/// Decodes a msgpack [`RawValue`] as JSON.
#[must_use]
pub fn json_of(v: &RawValue) -> Json {
    let bytes = v.as_bytes();
    let value = rmpv::decode::read_value(&mut &bytes[..]).expect("value decodes");
    serde_json::to_value(value).expect("msgpack to json")
}

/// An LWW put (or remove, with `value == None`) of a JSON value.
#[must_use]
pub fn lww(map: &str, key: &str, value: Option<Json>, millis: u64, node: &str) -> KeyedOp {
    lww_ttl(map, key, value, millis, node, None)
}

/// An LWW put with a TTL.
#[must_use]
pub fn lww_ttl(
    map: &str,
    key: &str,
    value: Option<Json>,
    millis: u64,
    node: &str,
    ttl_ms: Option<u64>,
) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: value.map(|v| raw(&v)).into(),
            timestamp: Timestamp::new(millis, 0, node),
            ttl_ms: ttl_ms.into(),
        }),
    }
}

/// The tag an OR add at `(millis, counter, node)` carries.
#[must_use]
pub fn tag(millis: u64, counter: u32, node: &str) -> String {
    Timestamp::new(millis, counter, node).to_string()
}

/// An OR add of a JSON value, tagged with its timestamp.
#[must_use]
pub fn or_add(map: &str, key: &str, value: Json, millis: u64, counter: u32, node: &str) -> KeyedOp {
    or_add_ttl(map, key, value, millis, counter, node, None)
}

/// An OR add with a TTL.
#[must_use]
pub fn or_add_ttl(
    map: &str,
    key: &str,
    value: Json,
    millis: u64,
    counter: u32,
    node: &str,
    ttl_ms: Option<u64>,
) -> KeyedOp {
    let timestamp = Timestamp::new(millis, counter, node);
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::OrAdd(OrRecord {
            value: raw(&value),
            tag: timestamp.to_string().into(),
            timestamp,
            ttl_ms: ttl_ms.into(),
        }),
    }
}

/// An OR remove of one tag.
#[must_use]
pub fn or_remove(map: &str, key: &str, tag: &str) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::OrRemove(tag.into()),
    }
}

/// A batch from client connection 7 at one write concern (300 ms timeout).
#[must_use]
pub fn batch(ops: Vec<KeyedOp>, concern: WriteConcern) -> ApplyBatch {
    batch_within(ops, concern, SHORT_ACK_TIMEOUT_MS)
}

/// Per-op ack timeout of [`batch`] and [`apply`]: short, because the cases
/// that expect a level NOT to be reached wait it out.
pub const SHORT_ACK_TIMEOUT_MS: u64 = 300;

/// Per-op ack timeout for cases that expect a durable commit to succeed: a
/// loaded CI machine's fsync can take longer than [`SHORT_ACK_TIMEOUT_MS`],
/// and such a case only waits as long as the commit really takes.
pub const DURABLE_ACK_TIMEOUT_MS: u64 = 20_000;

/// [`batch`] with every op's ack timeout set to `timeout_ms`.
#[must_use]
pub fn batch_within(ops: Vec<KeyedOp>, concern: WriteConcern, timeout_ms: u64) -> ApplyBatch {
    batch_from(ops, concern, Origin::client(7, "suite"), Some(timeout_ms))
}

/// A batch of `ops` from `origin`, every op at `concern` with the ack
/// timeout `timeout_ms` (`None`: the module's default), no consistency
/// asked.
#[must_use]
pub fn batch_from(
    ops: Vec<KeyedOp>,
    concern: WriteConcern,
    origin: Origin,
    timeout_ms: Option<u64>,
) -> ApplyBatch {
    ApplyBatch {
        ops: ops
            .into_iter()
            .map(|op| WriteOp {
                op,
                concern,
                timeout_ms: timeout_ms.into(),
            })
            .collect(),
        origin,
        consistency: ROption::RNone,
    }
}

/// Applies `ops` at `concern` and returns the outcomes.
pub async fn apply(
    m: &Arc<dyn StorageModule>,
    ops: Vec<KeyedOp>,
    concern: WriteConcern,
) -> Vec<OpOutcome> {
    apply_batch(m, batch(ops, concern)).await
}

async fn apply_batch(m: &Arc<dyn StorageModule>, batch: ApplyBatch) -> Vec<OpOutcome> {
    m.apply(batch).await.expect("apply works").into_vec()
}

/// Applies `ops` at PERSISTED with [`DURABLE_ACK_TIMEOUT_MS`], for cases
/// that expect the commit to become durable.
pub async fn apply_durable(m: &Arc<dyn StorageModule>, ops: Vec<KeyedOp>) -> Vec<OpOutcome> {
    apply_batch(
        m,
        batch_within(ops, WriteConcern::Persisted, DURABLE_ACK_TIMEOUT_MS),
    )
    .await
}

/// Waits for the acks of `outcomes`.
pub async fn acks_of(m: &Arc<dyn StorageModule>, outcomes: &[OpOutcome]) -> Vec<AckResult> {
    m.await_acks(outcomes.iter().map(|o| o.ack).collect())
        .await
        .expect("await_acks works")
        .into_vec()
}

/// Reads one key.
pub async fn read_one(m: &Arc<dyn StorageModule>, map: &str, key: &str) -> RecordState {
    let mut r = read(m, map, &[key]).await;
    assert_eq!(r.len(), 1, "one record per key asked");
    r.remove(0).state
}

/// Reads keys.
pub async fn read(m: &Arc<dyn StorageModule>, map: &str, keys: &[&str]) -> Vec<KeyRecord> {
    m.read(map.into(), keys.iter().map(|k| RString::from(*k)).collect())
        .await
        .expect("read works")
        .into_vec()
}

/// The JSON value of an LWW record state (`None` for a tombstone).
///
/// # Panics
/// If the state is not an LWW record.
#[must_use]
pub fn lww_value(s: &RecordState) -> Option<Json> {
    match s {
        RecordState::Lww(r) => r.value.as_ref().into_option().map(json_of),
        other => panic!("expected an LWW record, got {other:?}"),
    }
}

/// The values of an OR record state, sorted by their JSON text; empty for
/// `Missing`.
///
/// # Panics
/// If the state is an LWW record.
#[must_use]
pub fn or_values(s: &RecordState) -> Vec<Json> {
    let mut v: Vec<Json> = match s {
        RecordState::Missing => Vec::new(),
        RecordState::Or(recs) => recs.iter().map(|r| json_of(&r.value)).collect(),
        other => panic!("expected OR records, got {other:?}"),
    };
    v.sort_by_key(ToString::to_string);
    v
}

/// A query request on `map` from a JSON query and optional fields.
#[must_use]
pub fn qreq(map: &str, query: Json, fields: Option<&[&str]>) -> QueryRequest {
    QueryRequest {
        map: map.into(),
        query: raw(&query),
        fields: fields
            .map(|f| f.iter().map(|s| RString::from(*s)).collect::<RVec<_>>())
            .into(),
        consistency: ROption::RNone,
    }
}

/// Records change events.
#[derive(Default)]
pub struct ChangeRecorder(pub Mutex<Vec<ChangeEvent>>);

impl ChangeSink for ChangeRecorder {
    fn on_change(&self, event: &ChangeEvent) {
        self.0.lock().push(event.clone());
    }
}

/// One live-query update as the suite compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Subscription id.
    pub sub: u64,
    /// ENTER / UPDATE / LEAVE.
    pub change: ChangeType,
    /// Key.
    pub key: String,
    /// Value as JSON, `None` on LEAVE.
    pub value: Option<Json>,
}

/// Builds a [`Seen`].
#[must_use]
pub fn seen(sub: u64, change: ChangeType, key: &str, value: Option<Json>) -> Seen {
    Seen {
        sub,
        change,
        key: key.to_string(),
        value,
    }
}

/// Records live-query updates.
#[derive(Default)]
pub struct UpdateRecorder(Mutex<Vec<Seen>>);

impl UpdateRecorder {
    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl QuerySink for UpdateRecorder {
    fn deliver(&self, u: &QueryUpdate) {
        self.0.lock().push(Seen {
            sub: u.subscription,
            change: u.change,
            key: u.key.to_string(),
            value: u.value.as_ref().into_option().map(json_of),
        });
    }
}

/// Wall-clock milliseconds now.
#[must_use]
pub fn now_ms() -> u64 {
    hangar_core::hlc::system_millis()
}
