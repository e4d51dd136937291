//! `COUNTER_REQUEST` → `COUNTER_RESPONSE`, and `COUNTER_SYNC` → the merged
//! state as `COUNTER_UPDATE` (to the syncing connection and to the
//! counter's other listeners). Both make the connection a listener of the
//! counter. A bad name or state gets `ERROR 400` saying what was wrong.
//! The counters themselves are `crate::server::counters`.

use std::sync::Arc;

use crate::protocol::messages::{CounterRequest, CounterState};
use crate::protocol::Message;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// `COUNTER_REQUEST {name}` → `COUNTER_RESPONSE {name, state}`.
pub async fn request(fe: &Arc<FrontEnd>, s: &mut Session, r: CounterRequest) {
    match fe.counters.serve(&fe.node, &r.name, None, &s.out).await {
        Ok(state) => {
            s.counters.insert(r.name.clone());
            s.reply(&Message::CounterResponse {
                payload: CounterState {
                    name: r.name,
                    state: state.to_wire(),
                },
            })
            .await;
        }
        Err(e) => s.error(fe, 400, e.to_string()),
    }
}

/// `COUNTER_SYNC {name, state}` → `COUNTER_UPDATE {name, merged state}`.
pub async fn sync(fe: &Arc<FrontEnd>, s: &mut Session, r: CounterState) {
    match fe
        .counters
        .serve(&fe.node, &r.name, Some(&r.state), &s.out)
        .await
    {
        Ok(state) => {
            s.counters.insert(r.name.clone());
            s.reply(&Message::CounterUpdate {
                payload: CounterState {
                    name: r.name,
                    state: state.to_wire(),
                },
            })
            .await;
        }
        Err(e) => s.error(fe, 400, e.to_string()),
    }
}
