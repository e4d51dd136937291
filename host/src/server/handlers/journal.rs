//! The event journal (`JOURNAL_SUBSCRIBE`, `JOURNAL_UNSUBSCRIBE`,
//! `JOURNAL_READ`): this node's change log, kept by the storage module (see
//! `StorageModule::journal_read`).
//!
//! Unlike the TopGun server, `fromSequence` replays: the handler first
//! sends the durable entries from there page by page (waiting for room in
//! the connection's queue, so a long replay does not overrun it), then
//! subscribes from just after the last page, which replays whatever was
//! committed meanwhile and continues live. Each entry reaches the client
//! once, in order. A `fromSequence` that retention pruned is answered with
//! `ERROR 404` naming the oldest sequence kept (a read: a
//! `JOURNAL_READ_RESPONSE` carrying `error` and `code`), never with a
//! silent gap. Bad input (a sequence that is not a decimal number, an
//! unknown type) is refused with 400 naming the field.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use axum::body::Bytes;
use hangar_core::module::journal::{
    JournalEvent, JournalEventType, JournalFilter, JournalReadRequest, JournalSink,
};
use hangar_core::{ErrorKind, ModuleError};

use super::status_of;
use crate::protocol::messages::{
    JournalEventData, JournalEventMessage, JournalRead, JournalReadResponse, JournalSubscribe,
    JournalUnsubscribe,
};
use crate::protocol::{Message, RawMsgpack};
use crate::server::outbound::Outbound;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Entries per `JOURNAL_READ` when the client gives no `limit`.
pub const DEFAULT_READ_LIMIT: u32 = 100;
/// Entries per page of a subscription's replay.
const REPLAY_PAGE: u32 = 500;
/// Most journal subscriptions one connection may hold.
pub const MAX_JOURNAL_SUBSCRIPTIONS: usize = 64;

/// A journal entry as the wire carries it.
#[must_use]
pub fn to_wire(e: &JournalEvent) -> JournalEventData {
    JournalEventData {
        sequence: e.sequence.to_string(),
        kind: e.kind.as_str().to_string(),
        map_name: e.map.to_string(),
        key: e.key.to_string(),
        value: e
            .value
            .as_ref()
            .into_option()
            .map(|v| RawMsgpack::from_raw_value(v.clone())),
        previous_value: e
            .previous
            .as_ref()
            .into_option()
            .map(|v| RawMsgpack::from_raw_value(v.clone())),
        timestamp: e.timestamp.clone(),
        node_id: e.node_id.to_string(),
    }
}

/// Reads a sequence field: a decimal string (the client's form) or a
/// non-negative whole number; absent is `None`.
fn parse_sequence(v: Option<&rmpv::Value>, field: &str) -> Result<Option<u64>, ModuleError> {
    let bad = |what: String| {
        ModuleError::invalid(format!(
            "{field} {what}; expected a decimal sequence number such as \"42\""
        ))
    };
    match v {
        None | Some(rmpv::Value::Nil) => Ok(None),
        Some(rmpv::Value::String(s)) => {
            let s = s.as_str().unwrap_or_default();
            s.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("is {s:?}")))
        }
        Some(rmpv::Value::Integer(i)) => i.as_u64().map(Some).ok_or_else(|| bad(format!("is {i}"))),
        Some(rmpv::Value::F64(f)) if *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(53) => {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked whole, non-negative and below 2^53 just above"
            )]
            let n = *f as u64;
            Ok(Some(n))
        }
        Some(other) => Err(bad(format!("is {other}"))),
    }
}

fn filter_of(
    map: Option<String>,
    types: Option<Vec<String>>,
) -> Result<JournalFilter, ModuleError> {
    let types = types
        .unwrap_or_default()
        .iter()
        .map(|t| {
            JournalEventType::parse(t).map_err(|e| ModuleError::invalid(format!("types: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JournalFilter {
        map: map.map(Into::into).into(),
        types: RVec::from(types),
    })
}

/// Turns a subscription's entries into `JOURNAL_EVENT` frames.
struct FrameSink {
    out: Outbound,
}

impl JournalSink for FrameSink {
    fn deliver(&self, event: &JournalEvent) {
        let msg = Message::JournalEvent(JournalEventMessage {
            event: to_wire(event),
        });
        match msg.encode() {
            Ok(f) => {
                self.out.push(Bytes::from(f));
            }
            Err(e) => {
                tracing::error!(conn = self.out.conn(), error = %e, "cannot encode a journal event");
            }
        }
    }
}

fn drop_subscription(fe: &FrontEnd, s: &mut Session, request_id: &str) {
    if let Some(id) = s.journals.remove(request_id) {
        fe.node.storage.journal_unsubscribe(id);
    }
}

/// `JOURNAL_SUBSCRIBE`: replays from `fromSequence` (when given), then
/// follows live. No answer on success; `ERROR` on failure.
pub async fn subscribe(fe: &FrontEnd, s: &mut Session, m: JournalSubscribe) {
    drop_subscription(fe, s, &m.request_id);
    if s.journals.len() >= MAX_JOURNAL_SUBSCRIPTIONS {
        s.error(
            fe,
            400,
            format!(
                "too many journal subscriptions: at most {MAX_JOURNAL_SUBSCRIPTIONS} per connection"
            ),
        );
        return;
    }
    let started = async {
        let from = parse_sequence(m.from_sequence.as_ref(), "JOURNAL_SUBSCRIBE.fromSequence")?;
        let filter = filter_of(m.map_name.clone(), m.types.clone())?;
        let from = match from {
            Some(f) => Some(replay_pages(fe, s, f, &filter).await?),
            None => None,
        };
        let id = fe.next_subscription_id();
        let sink = Arc::new(FrameSink { out: s.out.clone() });
        fe.node
            .storage
            .journal_subscribe(id, ROption::from(from), filter, sink)
            .await?;
        Ok::<_, ModuleError>(id)
    }
    .await;
    match started {
        Ok(id) => {
            s.journals.insert(m.request_id, id);
        }
        Err(e) => {
            tracing::debug!(conn = s.id, error = %e, "journal subscribe refused");
            s.error(
                fe,
                status_of(&e),
                format!("JOURNAL_SUBSCRIBE {}: {}", m.request_id, e.message),
            );
        }
    }
}

/// Sends the durable entries from `from` in pages, waiting for room;
/// returns the sequence the live subscription starts at.
async fn replay_pages(
    fe: &FrontEnd,
    s: &Session,
    from: u64,
    filter: &JournalFilter,
) -> Result<u64, ModuleError> {
    let mut cursor = from;
    loop {
        let page = fe
            .node
            .storage
            .journal_read(JournalReadRequest {
                from_sequence: cursor,
                limit: REPLAY_PAGE,
                filter: filter.clone(),
            })
            .await?;
        for e in page.events.iter() {
            let msg = Message::JournalEvent(JournalEventMessage { event: to_wire(e) });
            if !s.reply(&msg).await {
                return Err(ModuleError::new(
                    ErrorKind::UNAVAILABLE,
                    "the connection closed during the journal replay",
                ));
            }
            cursor = e.sequence + 1;
        }
        if !page.has_more {
            // Entries after the last one sent (filtered out, or committed
            // since) are the subscription's own replay.
            return Ok(cursor);
        }
    }
}

/// `JOURNAL_UNSUBSCRIBE`: stops a subscription. No answer.
pub fn unsubscribe(fe: &FrontEnd, s: &mut Session, m: &JournalUnsubscribe) {
    drop_subscription(fe, s, &m.subscription_id);
}

/// `JOURNAL_READ` → `JOURNAL_READ_RESPONSE`.
pub async fn read(fe: &FrontEnd, s: &Session, m: JournalRead) {
    let result = async {
        let from =
            parse_sequence(m.from_sequence.as_ref(), "JOURNAL_READ.fromSequence")?.unwrap_or(0);
        let filter = filter_of(m.map_name.clone(), m.types.clone())?;
        fe.node
            .storage
            .journal_read(JournalReadRequest {
                from_sequence: from,
                limit: m.limit.unwrap_or(DEFAULT_READ_LIMIT),
                filter,
            })
            .await
    }
    .await;
    let seq = |n: u64| (n > 0).then(|| n.to_string());
    let resp = match result {
        Ok(page) => JournalReadResponse {
            request_id: m.request_id,
            events: page.events.iter().map(to_wire).collect(),
            has_more: page.has_more,
            oldest_sequence: seq(page.oldest),
            latest_sequence: seq(page.latest),
            error: None,
            code: None,
        },
        Err(e) => JournalReadResponse {
            request_id: m.request_id,
            events: Vec::new(),
            has_more: false,
            oldest_sequence: None,
            latest_sequence: None,
            code: Some(status_of(&e)),
            error: Some(e.message.to_string()),
        },
    };
    s.reply(&Message::JournalReadResponse(resp)).await;
}
