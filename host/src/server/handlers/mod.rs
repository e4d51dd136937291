//! One handler per message family; [`dispatch`] routes a decoded message
//! to it.
//!
//! - `ping`: `PING` → `PONG`, and `AUTH` after the handshake.
//! - `writes`: `CLIENT_OP`, `OP_BATCH` → `OP_ACK` / `OP_REJECTED`.
//! - `queries`: `QUERY_SUB` / `QUERY_UNSUB` live queries, `SEARCH`.
//! - `live_search`: `SEARCH_SUB` / `SEARCH_UNSUB` live searches.
//! - `sync`: Merkle sync of LWW maps and OR maps.
//! - `locks`: `LOCK_REQUEST` / `LOCK_RELEASE`.
//! - `topics`: `TOPIC_SUB` / `TOPIC_UNSUB` / `TOPIC_PUB`.
//! - `partition`: `PARTITION_MAP_REQUEST`.
//! - `counters`: `COUNTER_REQUEST` / `COUNTER_SYNC` PN counters.
//! - `device`: `DEVICE_HELLO` → `DEVICE_ACK`, `CLIENT_APPLY_ACK`.
//! - `journal`: `JOURNAL_SUBSCRIBE` / `JOURNAL_UNSUBSCRIBE` /
//!   `JOURNAL_READ`, the node's event journal.
//! - `unsupported`: entry processors and conflict resolvers, answered with
//!   their response types saying they are not supported.
//!
//! A server-to-client type sent by a client is answered with `ERROR 400`
//! naming it; the connection stays open.
//!
//! Handlers run in the connection's reader, in frame order. Work that waits
//! on other parties (write acknowledgements) is spawned so that the next
//! frame is not held up, within the connection's in-flight slots.

use std::sync::Arc;

use hangar_core::module::services::MetricsExt;
use hangar_core::{ErrorKind, ModuleError};

use super::session::Session;
use super::state::FrontEnd;
use crate::protocol::Message;

mod counters;
pub mod device;
pub(crate) mod journal;
pub mod live_search;
mod locks;
mod partition;
mod ping;
pub(crate) mod queries;
mod sync;
mod topics;
mod unsupported;
mod writes;

pub use partition::to_wire as partition_to_wire;
pub use queries::UpdateSink;
pub(crate) use writes::{convert, Converted};

/// What the connection does after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close with this WebSocket close code and reason.
    Close(u16, &'static str),
}

/// Routes one decoded client message to its handler.
pub async fn dispatch(fe: &Arc<FrontEnd>, s: &mut Session, msg: Message) -> Flow {
    let ty = msg.type_name();
    fe.node
        .metrics
        .counter("hangar_ws_messages_total", &[("type", ty)], 1.0);
    match msg {
        Message::Ping(p) => ping::ping(fe, s, p).await,
        Message::Auth(a) => return ping::reauth(fe, s, a).await,
        Message::ClientOp { payload } => writes::client_op(fe, s, payload).await,
        Message::OpBatch { payload } => writes::op_batch(fe, s, payload).await,
        Message::QuerySub { payload } => queries::subscribe(fe, s, payload).await,
        Message::QueryUnsub { payload } => queries::unsubscribe(fe, s, &payload.query_id),
        Message::Search { payload } => queries::search(fe, s, payload).await,
        Message::SearchSub { payload } => live_search::subscribe(fe, s, payload).await,
        Message::SearchUnsub { payload } => {
            live_search::unsubscribe(fe, s, &payload.subscription_id)
        }
        // Every QUERY_SUB gets its full first page, so the client's root
        // hash of a projected query saves nothing: accepted, no answer.
        Message::QuerySyncInit { .. } => {}
        Message::SyncInit(m) => sync::init(fe, s, m.map_name, m.consistency, None).await,
        Message::OrMapSyncInit(m) => {
            sync::init(fe, s, m.map_name, m.consistency, Some(m.claimed_epoch)).await;
        }
        Message::MerkleReqBucket { payload } => sync::bucket(fe, s, payload, false).await,
        Message::OrMapMerkleReqBucket { payload } => sync::bucket(fe, s, payload, true).await,
        Message::OrMapDiffRequest { payload } => sync::diff(fe, s, payload).await,
        Message::OrMapPushDiff { payload } => sync::push_diff(fe, s, payload).await,
        Message::LockRequest { payload } => locks::request(fe, s, payload).await,
        Message::LockRelease { payload } => locks::release(fe, s, payload).await,
        Message::TopicSub { payload } => topics::subscribe(fe, s, payload.topic),
        Message::TopicUnsub { payload } => topics::unsubscribe(fe, s, &payload.topic),
        Message::TopicPub { payload } => topics::publish(fe, s, payload).await,
        Message::PartitionMapRequest { payload } => partition::request(fe, s, payload).await,
        Message::CounterRequest { payload } => counters::request(fe, s, payload).await,
        Message::CounterSync { payload } => counters::sync(fe, s, payload).await,
        Message::DeviceHello(h) => device::hello(fe, s, h).await,
        Message::ClientApplyAck(a) => device::apply_ack(fe, s, a),
        Message::EntryProcess(r) => unsupported::entry_process(s, r).await,
        Message::EntryProcessBatch(r) => unsupported::entry_process_batch(s, r).await,
        Message::RegisterResolver(r) => unsupported::register(s, r).await,
        Message::UnregisterResolver(r) => unsupported::unregister(s, r).await,
        Message::ListResolvers(r) => unsupported::list(s, r).await,
        Message::JournalSubscribe(m) => journal::subscribe(fe, s, m).await,
        Message::JournalUnsubscribe(m) => journal::unsubscribe(fe, s, &m),
        Message::JournalRead(m) => journal::read(fe, s, m).await,
        other => {
            let ty = other.type_name();
            tracing::debug!(
                conn = s.id,
                type_name = ty,
                "server-to-client message type sent by a client; dropped"
            );
            s.error(
                fe,
                400,
                format!(
                    "message type {ty} is sent by the server, not by clients; the frame was dropped"
                ),
            );
        }
    }
    Flow::Continue
}

/// The HTTP-style status code a module error is reported with.
#[must_use]
pub fn status_of(e: &ModuleError) -> u32 {
    match e.kind {
        ErrorKind::INVALID_INPUT => 400,
        ErrorKind::NOT_FOUND => 404,
        ErrorKind::CONFLICT => 409,
        ErrorKind::OVERLOADED => 429,
        ErrorKind::UNSUPPORTED => 501,
        ErrorKind::UNAVAILABLE | ErrorKind::SHUT_DOWN => 503,
        ErrorKind::TIMEOUT => 504,
        _ => 500,
    }
}

/// Takes a node-wide in-flight permit, or answers `ERROR 429` and returns
/// `None` when the node is overloaded.
fn admit(fe: &FrontEnd, s: &Session) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let p = fe.in_flight.try_acquire();
    if p.is_none() {
        fe.node
            .metrics
            .counter("hangar_ws_overload_shed_total", &[], 1.0);
        s.error(
            fe,
            429,
            format!(
                "server overloaded: {} requests in flight; retry later",
                fe.net.max_in_flight
            ),
        );
    }
    p
}
