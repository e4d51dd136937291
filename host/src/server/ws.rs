//! The WebSocket endpoint: upgrade, then one task per connection.
//!
//! ```text
//! socket ─┬─ reader (this task): auth phase → frames → limits → handlers
//!         └─ writer task: bounded queue (Outbound) → socket, bursts flushed together
//! ```
//!
//! The reader applies the hostile-input limits in order: the 2 MiB message
//! cap (in the WebSocket layer, before any byte is buffered past it), the
//! decoder's depth / length pre-scan, `BATCH` unpacking with its 8,192-item
//! cap (`ERROR 413`), then the connection's token bucket charged by the real
//! item count (`ERROR 429`). A bad frame, or one of a type this node does
//! not handle, is dropped and answered with an `ERROR` that says what was
//! wrong (naming the type); the connection stays open. A connection's
//! errors are logged here and never reach the accept loop.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hangar_core::module::services::MetricsExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};

use super::handlers::{self, Flow};
use super::outbound::{Out, Outbound};
use super::session::Session;
use super::state::{ConnectionSlot, FrontEnd};
use crate::metrics::Registry;
use crate::protocol::messages::{AuthAck, AuthFail, AuthRequired};
use crate::protocol::{
    decode_batch_item, decode_frame, unpack_batch, Decoded, FrameError, Message, MAX_FRAME_BYTES,
};

/// Frames written before one flush.
const FLUSH_BURST: usize = 64;
/// Protocol version announced in `AUTH_ACK`.
const PROTOCOL_VERSION: u32 = 1;
/// Longest wait for a client's close reply after the node closed.
const LINGER: Duration = Duration::from_secs(2);
/// How long a connection closed for an oversized frame keeps its socket
/// open after sending the close frame (see the end of the connection task).
const TOO_BIG_HOLD: Duration = Duration::from_millis(500);
/// Stands for "never" where a connection has no token to expire.
const NO_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `GET /ws` (and `GET /`): upgrades to WebSocket, or refuses with 503 when the node is
/// shutting down or at its connection cap.
///
/// The connection keeps the [`ConnectionSlot`] the accept loop took for it
/// (a request extension); served by another loop (no slot), it takes one
/// here.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(fe): State<Arc<FrontEnd>>,
    slot: Option<Extension<Arc<ConnectionSlot>>>,
) -> Response {
    let metrics = &fe.node.metrics;
    if fe.is_shutting_down() {
        metrics.counter(
            "hangar_ws_connections_rejected_total",
            &[("reason", "shutdown")],
            1.0,
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "node is shutting down").into_response();
    }
    let slot = match slot {
        Some(Extension(slot)) => slot,
        None => match fe.connection_slot() {
            Some(slot) => Arc::new(slot),
            None => {
                metrics.counter(
                    "hangar_ws_connections_rejected_total",
                    &[("reason", "max_connections")],
                    1.0,
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many connections; retry later",
                )
                    .into_response();
            }
        },
    };
    let guard = fe.drain.guard();
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(socket, fe).await;
            drop(slot);
            drop(guard);
        })
}

/// Why a connection's reader stopped.
#[derive(Debug)]
enum End {
    ClientClosed,
    Error(String),
    Idle,
    AuthTimeout,
    AuthFailed,
    TooBig,
    Killed,
    Shutdown,
    TokenExpired,
    Handler(u16, &'static str),
}

async fn run(socket: WebSocket, fe: Arc<FrontEnd>) {
    let id = fe.next_connection_id();
    let metrics = fe.node.metrics.clone();
    metrics.counter("hangar_ws_connections_accepted_total", &[], 1.0);
    let (out, rx, killed) = Outbound::new(
        id,
        fe.net.outbound_queue,
        fe.net.outbound_queue_bytes,
        metrics.clone(),
    );
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        out.clone(),
        killed.clone(),
        metrics,
        Duration::from_millis(fe.net.write_timeout_ms),
    ));
    let mut session = Session::new(&fe, id, out.clone());
    tracing::debug!(conn = id, "client connected");

    // Authenticate, serve until the token expires, and again: a connection
    // never outlives its token (see `auth.rs`).
    let mut reason = None;
    let end = loop {
        if fe.verifier.is_some() {
            if let Some(end) =
                authenticate(&fe, &mut session, &mut stream, killed.clone(), reason).await
            {
                break end;
            }
        }
        fe.register_client(&out);
        match read_loop(&fe, &mut session, &mut stream, killed.clone()).await {
            End::TokenExpired => {
                fe.unregister_client(id);
                tracing::info!(conn = id, "token expired; authentication required again");
                fe.node
                    .metrics
                    .counter("hangar_ws_tokens_expired_total", &[], 1.0);
                session.principal = None;
                // Nothing flows to a connection without a valid token; the
                // client subscribes again after its next AUTH_ACK.
                session.drop_subscriptions(&fe);
                reason = Some("token expired".to_string());
            }
            end => break end,
        }
    };
    fe.unregister_client(id);
    match &end {
        End::Error(e) => tracing::debug!(conn = id, error = %e, "connection error"),
        End::Killed => tracing::info!(conn = id, "connection closed: too slow"),
        other => tracing::debug!(conn = id, reason = ?other, "connection ending"),
    }

    session.close(&fe).await;
    // Let this connection's pending acknowledgements finish and be sent.
    let slots = u32::try_from(fe.net.max_in_flight_per_connection).unwrap_or(u32::MAX);
    let grace = Duration::from_millis(fe.node.config.shutdown_grace_ms);
    if timeout(grace, session.ack_slots.acquire_many(slots))
        .await
        .is_err()
    {
        tracing::warn!(conn = id, "pending acknowledgements did not finish in time");
    }
    let close = match end {
        End::Idle => Some((1000, "idle timeout")),
        End::AuthTimeout => Some((1008, "authentication timeout")),
        End::AuthFailed => Some((1008, "authentication failed")),
        End::Shutdown => Some((1001, "server shutting down")),
        End::Handler(code, reason) => Some((code, reason)),
        End::TooBig => Some((1009, "message exceeds the 2 MiB limit")),
        End::ClientClosed => Some((1000, "")),
        End::TokenExpired => Some((1008, "token expired")),
        End::Error(_) | End::Killed => None,
    };
    let lingering = close.is_some();
    let too_big = matches!(end, End::TooBig);
    match close {
        Some((code, reason)) => out.close(code, reason).await,
        None => out.kill(),
    }
    drop(session);
    drop(out);
    if lingering {
        linger(&mut stream).await;
    }
    if let Err(e) = writer.await {
        tracing::error!(conn = id, error = %e, "connection writer task failed");
    }
    if too_big {
        // The oversized frame's payload is still unread in the socket and
        // the stream cannot be read past the error, so `linger` returned at
        // once: closing now would reset the connection (TCP RST) and the
        // client could lose the 1009 close frame the writer just sent. Hold
        // the socket open briefly so the client reads it first.
        tokio::time::sleep(TOO_BIG_HOLD).await;
    }
    tracing::debug!(conn = id, "client disconnected");
}

/// After the close frame was queued: reads, and drops, whatever the client
/// still sends until its close reply (or the end of the stream), for at
/// most [`LINGER`].
///
/// Without this, the frames the client sent after the reader stopped (on
/// shutdown, its next writes) stay unread in the socket, and closing a
/// socket with unread bytes resets it (TCP RST): the client's kernel then
/// discards what it received but had not read yet, the acknowledgements of
/// writes already made durable and the close frame included. Frames read
/// here are not served: the client learns from the close that they were
/// not acknowledged.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = timeout(LINGER, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Sends `AUTH_REQUIRED {reason}` and waits for a valid `AUTH`; every
/// other frame is dropped. `None` when the client authenticated.
async fn authenticate(
    fe: &Arc<FrontEnd>,
    session: &mut Session,
    stream: &mut SplitStream<WebSocket>,
    mut killed: watch::Receiver<bool>,
    reason: Option<String>,
) -> Option<End> {
    let verifier = fe.verifier.as_ref()?;
    session
        .reply(&Message::AuthRequired(AuthRequired { reason }))
        .await;
    let deadline = Instant::now() + Duration::from_millis(fe.net.auth_timeout_ms);
    let mut shutdown = fe.shutdown.clone();
    loop {
        let next = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => return Some(End::Killed),
            _ = shutdown.wait_for(|s| *s) => return Some(End::Shutdown),
            r = timeout_at(deadline, stream.next()) => r,
        };
        let frame = match next {
            Err(_) => {
                fail_auth(fe, session, "authentication timed out").await;
                return Some(End::AuthTimeout);
            }
            Ok(None) => return Some(End::ClientClosed),
            Ok(Some(Err(e))) => return Some(read_error(fe, e)),
            Ok(Some(Ok(WsMessage::Binary(b)))) => b,
            Ok(Some(Ok(WsMessage::Close(_)))) => return Some(End::ClientClosed),
            Ok(Some(Ok(_))) => continue,
        };
        fe.node
            .metrics
            .counter("hangar_ws_frames_in_total", &[], 1.0);
        match decode_frame(&frame) {
            Ok(Decoded::Message(Message::Auth(auth))) => match verifier.verify(&auth.token) {
                Ok(p) => {
                    tracing::debug!(conn = session.id, user = %p.user_id, "authenticated");
                    let user_id = Some(p.user_id.clone());
                    session.principal = Some(p);
                    let (device_id, device_token) =
                        super::handlers::device::bind(fe, session, auth.device_token.as_deref());
                    let ack = Message::AuthAck(AuthAck {
                        protocol_version: Some(PROTOCOL_VERSION),
                        user_id,
                        device_id,
                        device_token,
                    });
                    session.reply(&ack).await;
                    return None;
                }
                Err(e) => {
                    fail_auth(fe, session, &e.to_string()).await;
                    return Some(End::AuthFailed);
                }
            },
            _ => tracing::debug!(conn = session.id, "frame before authentication dropped"),
        }
    }
}

async fn fail_auth(fe: &FrontEnd, session: &Session, error: &str) {
    tracing::info!(conn = session.id, error, "authentication failed");
    fe.node.metrics.counter(
        "hangar_ws_connections_rejected_total",
        &[("reason", "auth")],
        1.0,
    );
    session
        .reply(&Message::AuthFail(AuthFail {
            error: Some(error.to_string()),
            code: Some(401),
        }))
        .await;
}

async fn read_loop(
    fe: &Arc<FrontEnd>,
    session: &mut Session,
    stream: &mut SplitStream<WebSocket>,
    mut killed: watch::Receiver<bool>,
) -> End {
    let idle = Duration::from_millis(fe.net.idle_timeout_ms);
    let mut shutdown = fe.shutdown.clone();
    // The token's expiry, re-armed when an AUTH refresh replaced it.
    let expires_at = |s: &Session| s.principal.as_ref().map(|p| p.expires_at);
    let mut armed = expires_at(session);
    let deadline = |s: &Session| {
        s.principal
            .as_ref()
            .map_or(Instant::now() + NO_EXPIRY, |p| {
                Instant::now() + p.remaining(fe.node.clock.wall_millis())
            })
    };
    let expiry = tokio::time::sleep_until(deadline(session));
    tokio::pin!(expiry);
    loop {
        if expires_at(session) != armed {
            armed = expires_at(session);
            expiry.as_mut().reset(deadline(session));
        }
        let next = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => return End::Killed,
            _ = shutdown.wait_for(|s| *s) => return End::Shutdown,
            () = &mut expiry, if armed.is_some() => return End::TokenExpired,
            r = timeout(idle, stream.next()) => r,
        };
        match next {
            Err(_) => return End::Idle,
            Ok(None) | Ok(Some(Ok(WsMessage::Close(_)))) => return End::ClientClosed,
            Ok(Some(Err(e))) => return read_error(fe, e),
            Ok(Some(Ok(WsMessage::Binary(b)))) => {
                if let Flow::Close(code, reason) = intake(fe, session, &b).await {
                    return End::Handler(code, reason);
                }
            }
            Ok(Some(Ok(WsMessage::Text(_)))) => {
                fe.node
                    .metrics
                    .counter("hangar_ws_frames_dropped_total", &[], 1.0);
                session.error(
                    fe,
                    400,
                    "text frame dropped: every message is one msgpack map in a binary frame",
                );
            }
            // Pings are answered by the WebSocket layer. Any frame keeps the
            // connection alive.
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A socket read error: an oversized message (over the 2 MiB cap) is
/// answered with close code 1009; anything else just ends the connection.
fn read_error(fe: &FrontEnd, e: axum::Error) -> End {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let text = e.to_string();
    match e.into_inner().downcast::<WsError>() {
        Ok(inner)
            if matches!(
                *inner,
                WsError::Capacity(CapacityError::MessageTooLong { .. })
            ) =>
        {
            fe.node
                .metrics
                .counter("hangar_ws_frames_too_large_total", &[], 1.0);
            End::TooBig
        }
        _ => End::Error(text),
    }
}

/// Cost of a message against the token bucket: its real item count.
fn cost(m: &Message) -> usize {
    match m {
        Message::OpBatch { payload } => payload.ops.len().max(1),
        _ => 1,
    }
}

/// One message of a frame (the frame itself, or one item of a `BATCH`),
/// as decoding left it.
#[allow(
    clippy::large_enum_variant,
    reason = "transient: built and served within one frame"
)]
enum Item {
    /// A message of a type this node handles.
    Message(Message),
    /// A well-formed message of a type it does not (`index`: the `BATCH` item).
    Unknown {
        index: Option<usize>,
        type_name: String,
    },
    /// A frame or item that failed its limits or decoding.
    Refused(FrameError),
}

impl Item {
    /// What the item costs against the token bucket: its real item count
    /// (the ops of an `OP_BATCH`), and 1 for anything that cannot be served
    /// (it still costs an answer).
    fn cost(&self) -> usize {
        match self {
            Item::Message(m) => cost(m),
            Item::Unknown { .. } | Item::Refused(_) => 1,
        }
    }
}

/// Decodes a frame into its items: one, or one per item of a `BATCH`.
fn items_of(frame: &Bytes) -> Vec<Item> {
    match decode_frame(frame) {
        Ok(Decoded::Message(Message::Batch(batch))) => match unpack_batch(&batch) {
            Ok(items) => items
                .enumerate()
                .map(|(i, item)| match decode_batch_item(i, item) {
                    Ok(Decoded::Message(m)) => Item::Message(m),
                    Ok(Decoded::Unknown { type_name }) => Item::Unknown {
                        index: Some(i),
                        type_name,
                    },
                    Err(e) => Item::Refused(e),
                })
                .collect(),
            Err(e) => vec![Item::Refused(e)],
        },
        Ok(Decoded::Message(m)) => vec![Item::Message(m)],
        Ok(Decoded::Unknown { type_name }) => vec![Item::Unknown {
            index: None,
            type_name,
        }],
        Err(e) => vec![Item::Refused(e)],
    }
}

/// One inbound frame: decode under the limits, charge, dispatch.
///
/// The whole frame is charged before any of it is served: every message it
/// carries counts (a `BATCH` by its real items, never its claimed `count`;
/// an `OP_BATCH` by its ops), an item that cannot be served counts 1, and
/// a frame at least 1. So a `BATCH` of N messages exhausts the bucket as N
/// single frames would, and an envelope of garbage or unknown types buys
/// no free answers.
async fn intake(fe: &Arc<FrontEnd>, session: &mut Session, frame: &Bytes) -> Flow {
    let metrics = &fe.node.metrics;
    metrics.counter("hangar_ws_frames_in_total", &[], 1.0);
    let items = items_of(frame);
    let total: usize = items.iter().map(Item::cost).sum::<usize>().max(1);
    if !session.bucket.charge(total) {
        metrics.counter("hangar_ws_rate_limited_total", &[], 1.0);
        session.error(
            fe,
            429,
            format!(
                "rate limit exceeded: {total} items refused (limit {} per second, burst {})",
                fe.net.rate_limit_per_sec, fe.net.rate_limit_burst
            ),
        );
        return Flow::Continue;
    }
    for item in items {
        match item {
            Item::Message(m) => {
                if let Flow::Close(code, reason) = handlers::dispatch(fe, session, m).await {
                    return Flow::Close(code, reason);
                }
            }
            Item::Unknown { index, type_name } => unknown(fe, session, index, &type_name),
            Item::Refused(e) => refuse(fe, session, &e),
        }
    }
    Flow::Continue
}

/// Longest part of an unknown type name quoted back in an `ERROR`.
const MAX_QUOTED_TYPE: usize = 64;

/// A message of a type this node does not handle: dropped, and the client
/// is told which type (`ERROR 400`); the connection stays open.
fn unknown(fe: &FrontEnd, session: &Session, index: Option<usize>, type_name: &str) {
    fe.node
        .metrics
        .counter("hangar_ws_frames_dropped_total", &[], 1.0);
    tracing::debug!(conn = session.id, type_name, "unknown message type dropped");
    let quoted: String = type_name.chars().take(MAX_QUOTED_TYPE).collect();
    let cut = if quoted.len() < type_name.len() {
        "…"
    } else {
        ""
    };
    let place = index.map_or(String::new(), |i| format!(" (BATCH item {i})"));
    session.error(
        fe,
        400,
        format!(
            "unknown message type {quoted:?}{cut}{place}: this node does not handle it; the message was dropped"
        ),
    );
}

/// A frame that failed its limits or decoding: dropped, and the client is
/// told what was wrong (`ERROR 400`, or `413` for an oversized `BATCH`);
/// the connection stays open.
fn refuse(fe: &FrontEnd, session: &Session, e: &FrameError) {
    fe.node
        .metrics
        .counter("hangar_ws_frames_dropped_total", &[], 1.0);
    tracing::debug!(conn = session.id, error = %e, "frame refused");
    session.error(fe, e.client_error_code(), e.to_string());
}

/// Drains the outbound queue into the socket, flushing bursts together,
/// until a close is asked for, the connection is killed, or a write fails
/// or stalls.
async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Out>,
    out: Outbound,
    mut killed: watch::Receiver<bool>,
    metrics: Arc<Registry>,
    write_timeout: Duration,
) {
    let mut burst = Vec::with_capacity(FLUSH_BURST);
    loop {
        let first = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => break,
            m = rx.recv() => m,
        };
        let Some(first) = first else { break };
        burst.push(first);
        while burst.len() < FLUSH_BURST {
            match rx.try_recv() {
                Ok(m) => burst.push(m),
                Err(_) => break,
            }
        }
        let mut frames = 0u32;
        let mut closing = false;
        let work = async {
            for m in burst.drain(..) {
                match m {
                    Out::Frame(b) => {
                        out.taken(b.len());
                        sink.feed(WsMessage::Binary(b)).await?;
                        frames += 1;
                    }
                    Out::Close(code, reason) => {
                        sink.feed(WsMessage::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await?;
                        closing = true;
                        break;
                    }
                }
            }
            sink.flush().await
        };
        let result = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => break,
            r = timeout(write_timeout, work) => r,
        };
        burst.clear();
        metrics.counter("hangar_ws_frames_out_total", &[], f64::from(frames));
        match result {
            Ok(Ok(())) if closing => break,
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(conn = out.conn(), error = %e, "write to client failed");
                out.kill();
                break;
            }
            Err(_) => {
                tracing::warn!(conn = out.conn(), "write to client stalled; disconnecting");
                out.kill();
                break;
            }
        }
    }
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
}
