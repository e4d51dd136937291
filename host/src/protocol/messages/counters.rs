//! PN counters: `COUNTER_REQUEST`, `COUNTER_SYNC` (C→S) and
//! `COUNTER_RESPONSE`, `COUNTER_UPDATE` (S→C), all with a `payload`.
//!
//! The state stays a dynamic value here: it comes in two spellings
//! (`{p, n}` and `{positive, negative}`), read and written by
//! `crate::server::pn_counter`.

use serde::{Deserialize, Serialize};

/// `COUNTER_REQUEST` payload (C→S): the counter's current state, please.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterRequest {
    /// The counter.
    pub name: String,
}

/// `COUNTER_SYNC`, `COUNTER_RESPONSE` and `COUNTER_UPDATE` payload: a
/// counter and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterState {
    /// The counter.
    pub name: String,
    /// Per-writer totals: `{p, n}` or `{positive, negative}` (both on output).
    pub state: rmpv::Value,
}
