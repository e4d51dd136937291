//! [`GroupedSink`]: the sink of a grouped live query's underlying
//! (ungrouped) subscription. It keeps the [`Groups`] and turns each row
//! change into the `QUERY_UPDATE`s of the group rows it moved.

use axum::body::Bytes;
use hangar_core::module::storage_types::{ChangeType, QueryRow, QuerySink, QueryUpdate};
use hangar_core::RawValue;
use parking_lot::Mutex;

use super::groups::Groups;
use super::spec::GroupSpec;
use crate::protocol::fast;
use crate::server::outbound::Outbound;

/// A row change held back until the snapshot is loaded.
struct Held {
    key: String,
    value: Option<RawValue>,
}

struct State {
    groups: Groups,
    /// `Some` until [`GroupedSink::go_live`]: changes that arrived after the
    /// snapshot was taken, in order.
    held: Option<Vec<Held>>,
}

/// Keeps a grouped query's groups from the row changes of its ungrouped
/// subscription, and sends the group rows that move as `QUERY_UPDATE`
/// (key = the group's `__key`; ENTER for a new group, UPDATE for a changed
/// one, LEAVE with a nil value for a group left empty).
///
/// Life cycle, mirroring [`crate::server::handlers::queries::UpdateSink`]:
/// changes are held until [`GroupedSink::load`] has taken the snapshot rows
/// and the `QUERY_RESP` is queued; [`GroupedSink::go_live`] then applies
/// the held changes (sending their updates) and applies later ones as they
/// come. Holding more than `hold_max` changes disconnects the client (it
/// is too slow anyway).
pub struct GroupedSink {
    out: Outbound,
    query_id: String,
    hold_max: usize,
    state: Mutex<State>,
}

fn decode(value: &RawValue) -> Option<rmpv::Value> {
    match value.decode() {
        Ok(v) => Some(v),
        Err(e) => {
            // Stored values are well-formed msgpack; a record that is not
            // counts as absent rather than poisoning its group.
            tracing::warn!(error = %e, "grouped query: a record is not msgpack; left out");
            None
        }
    }
}

fn encode(v: &rmpv::Value) -> RawValue {
    let mut buf = Vec::with_capacity(64);
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, v);
    RawValue::from_msgpack(buf)
}

/// Applies `rows` to `groups` and returns every group row, in `__key`
/// order (the rows of a grouped `QUERY_RESP`).
fn load_into(groups: &mut Groups, rows: &[QueryRow]) -> Vec<QueryRow> {
    for r in rows {
        let v = decode(&r.value);
        groups.apply(r.key.as_str(), v.as_ref());
    }
    groups
        .rows()
        .into_iter()
        .map(|(k, v)| QueryRow {
            key: k.into(),
            value: encode(&v),
        })
        .collect()
}

/// The group rows of `rows` (a snapshot of the ungrouped query) grouped
/// by `spec`, in `__key` order: exactly what a grouped `QUERY_SUB`
/// answers in its `QUERY_RESP` (`POST /sync` uses it).
#[must_use]
pub fn group_rows(spec: GroupSpec, rows: &[QueryRow]) -> Vec<QueryRow> {
    load_into(&mut Groups::new(spec), rows)
}

impl GroupedSink {
    /// A sink for the client query `query_id` on `out`, grouping with
    /// `groups` (normally empty), holding changes until live.
    #[must_use]
    pub fn new(out: Outbound, query_id: String, groups: Groups, hold_max: usize) -> Self {
        Self {
            out,
            query_id,
            hold_max,
            state: Mutex::new(State {
                groups,
                held: Some(Vec::new()),
            }),
        }
    }

    /// Takes the underlying query's snapshot rows and returns the group
    /// rows for the `QUERY_RESP`, in `__key` order.
    pub fn load(&self, rows: &[QueryRow]) -> Vec<QueryRow> {
        load_into(&mut self.state.lock().groups, rows)
    }

    /// Applies the held changes, sending their updates, and applies later
    /// changes as they come.
    pub fn go_live(&self) {
        let mut st = self.state.lock();
        let held = st.held.take().unwrap_or_default();
        for h in held {
            let v = h.value.as_ref().and_then(decode);
            self.apply(&mut st.groups, &h.key, v.as_ref());
        }
    }

    fn apply(&self, groups: &mut Groups, key: &str, value: Option<&rmpv::Value>) {
        for (bucket, change) in groups.apply(key, value) {
            let row = match change {
                ChangeType::Leave => None,
                ChangeType::Enter | ChangeType::Update => groups.row(&bucket).map(|v| encode(&v)),
            };
            let nil = RawValue::from_msgpack(vec![0xc0]);
            let value = row.as_ref().unwrap_or(&nil);
            let mut buf =
                Vec::with_capacity(64 + self.query_id.len() + bucket.len() + value.0.len());
            fast::write_query_update(&mut buf, &self.query_id, &bucket, value, change);
            self.out.push(Bytes::from(buf));
        }
    }
}

impl QuerySink for GroupedSink {
    fn deliver(&self, u: &QueryUpdate) {
        let mut st = self.state.lock();
        let value = match u.change {
            ChangeType::Leave => None,
            ChangeType::Enter | ChangeType::Update => u.value.clone().into_option(),
        };
        if let Some(held) = st.held.as_mut() {
            if held.len() < self.hold_max {
                held.push(Held {
                    key: u.key.to_string(),
                    value,
                });
            } else {
                tracing::warn!(
                    conn = self.out.conn(),
                    "too many updates before the snapshot was sent; disconnecting"
                );
                self.out.kill();
            }
            return;
        }
        let v = value.as_ref().and_then(decode);
        self.apply(&mut st.groups, u.key.as_str(), v.as_ref());
    }
}
