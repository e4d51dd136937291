//! Tests of the query engine, numbered by theme:
//!
//! - `t10_parse`: query parsing and refusals.
//! - `t20_predicate`: every predicate op, `where`, visibility rules.
//! - `t30_sort_cursor`: the comparator, paging, cursor statuses, projection.
//! - `t50_registry`: live queries: ENTER / UPDATE / LEAVE scenarios.
//! - `t60_concurrency`: subscribing while a writer runs.
//! - `t70_props`: property tests (sort encoding vs a reference comparator;
//!   incremental windows vs re-execution).

mod t10_parse;
mod t20_predicate;
mod t30_sort_cursor;
mod t50_registry;
mod t60_concurrency;
mod t70_props;

use std::sync::Arc;

use parking_lot::Mutex;
use rmpv::Value;

use super::{ChangeType, LiveSink, LiveUpdate, Query, Row};

/// A msgpack value from JSON (integers stay integers, other numbers are f64).
pub(super) fn v(j: serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap())
            }
        }
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(v).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.into_iter().map(|(k, x)| (Value::from(k), v(x))).collect())
        }
    }
}

/// Parses a query from JSON, panicking with the error.
pub(super) fn q(j: serde_json::Value) -> Query {
    Query::parse(&v(j)).unwrap_or_else(|e| panic!("query refused: {e}"))
}

/// A predicate-only query.
pub(super) fn pq(pred: serde_json::Value) -> Query {
    q(serde_json::json!({ "predicate": pred }))
}

/// Owned records, from `(key, json)` pairs.
pub(super) fn records(pairs: &[(&str, serde_json::Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, j)| ((*k).to_string(), v(j.clone())))
        .collect()
}

/// Live rows borrowing `recs`.
pub(super) fn rows(recs: &[(String, Value)]) -> Vec<Row<'_>> {
    recs.iter().map(|(k, v)| Row::live(k, v)).collect()
}

/// A sink that records every update.
#[derive(Default)]
pub(super) struct Recorder {
    pub events: Mutex<Vec<LiveUpdate>>,
}

impl Recorder {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes the recorded updates as `(change, key, value)`.
    pub(super) fn take(&self) -> Vec<(ChangeType, String, Option<Value>)> {
        std::mem::take(&mut *self.events.lock())
            .into_iter()
            .map(|u| (u.change, u.key.to_string(), u.value.map(|v| (*v).clone())))
            .collect()
    }
}

impl LiveSink for Recorder {
    fn deliver(&self, update: LiveUpdate) {
        self.events.lock().push(update);
    }
}

/// Keys of a page, as strings.
pub(super) fn keys(page: &super::Page) -> Vec<String> {
    page.rows.iter().map(|r| r.key.to_string()).collect()
}
