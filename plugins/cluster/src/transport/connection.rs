//! Driving one established connection: a reader that dispatches what the
//! peer sends, and a writer that sends answers (and, on a dialed connection,
//! the peer's outgoing queue).
//!
//! Both directions run the same code. The reader hands one-way messages to
//! [`Inbound::on_message`](super::Inbound::on_message) in place, runs each
//! request's handler in its own task (at most `peer_queue_frames` at once per
//! connection, after which reading stops and TCP pushes back on the peer),
//! and completes waiting requests from `Response`/`Failure` frames. The
//! connection ends at the first read or write error, at end of stream, at a
//! frame that breaks the protocol, or at shutdown; whatever ended it is
//! returned for the owner's log line. The handlers still running for it
//! are dropped then: their answers could not be delivered.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::endpoint::Shared;
use super::frame::{Frame, FrameKind};
use super::handshake::Conn;
use super::metrics::Direction;
use super::peer::Pending;
use super::{Channel, PeerInfo};

/// Most frames written between two flushes.
const WRITE_BATCH: usize = 64;

/// The dialer's side of a connection: the peer's queue and its waiting
/// requests.
pub(crate) struct Outbound<'a> {
    pub queue: &'a mut mpsc::Receiver<Frame>,
    /// A frame taken from the queue before the connection existed.
    pub carry: &'a mut Option<Frame>,
    pub pending: &'a Pending,
}

/// Runs `conn` until it ends; returns why it ended.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    conn: Conn,
    peer: &PeerInfo,
    outbound: Option<Outbound<'_>>,
) -> String {
    let cap = shared.cfg.peer_queue_frames;
    let (answers_tx, answers_rx) = mpsc::channel(cap);
    let pending = outbound.as_ref().map(|o| o.pending);
    let (sink, stream) = conn.split();
    // Cancelled when this function returns, for whatever reason: the
    // handlers of this connection's requests stop with it.
    let scope = shared.shutdown.child_token();
    let _stop_handlers = scope.clone().drop_guard();
    tokio::select! {
        why = read_loop(shared, peer, stream, answers_tx, pending, scope) => why,
        why = write_loop(shared, sink, answers_rx, outbound) => why,
        () = shared.shutdown.cancelled() => "this node is shutting down".to_owned(),
    }
}

async fn read_loop(
    shared: &Arc<Shared>,
    peer: &PeerInfo,
    mut stream: SplitStream<Conn>,
    answers: mpsc::Sender<Frame>,
    pending: Option<&Pending>,
    scope: CancellationToken,
) -> String {
    let handlers = Arc::new(Semaphore::new(shared.cfg.peer_queue_frames));
    loop {
        let frame = match stream.next().await {
            None => return "closed by the peer".to_owned(),
            Some(Err(e)) => {
                tracing::warn!(
                    "closing connection with peer {} (node {}): {e}",
                    peer.addr,
                    peer.node_id
                );
                return format!("read failed: {e}");
            }
            Some(Ok(f)) => f,
        };
        shared
            .metrics
            .frame(Direction::Received, frame.channel, frame.wire_len());
        match frame.kind {
            FrameKind::Message => {
                let inbound = &shared.inbound;
                let call = AssertUnwindSafe(|| inbound.on_message(peer, frame.channel, frame.body));
                if std::panic::catch_unwind(call).is_err() {
                    tracing::error!(
                        "Inbound::on_message panicked on a {:?} message from {} (node {}); \
                         the message is lost",
                        frame.channel,
                        peer.addr,
                        peer.node_id
                    );
                }
            }
            FrameKind::Request => {
                let Ok(permit) = handlers.clone().acquire_owned().await else {
                    return "handler limit closed".to_owned();
                };
                let inbound = &shared.inbound;
                let (id, channel) = (frame.request_id, frame.channel);
                let made = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    inbound.on_request(peer.clone(), channel, frame.body)
                }));
                let answers = answers.clone();
                let max = shared.cfg.max_frame_bytes;
                let scope = scope.clone();
                tokio::spawn(async move {
                    let outcome = match made {
                        Ok(fut) => tokio::select! {
                            // Nobody can receive the answer any more.
                            () = scope.cancelled() => return,
                            o = AssertUnwindSafe(fut).catch_unwind() => o,
                        },
                        Err(panic) => Err(panic),
                    };
                    if outcome.is_err() {
                        tracing::error!(
                            "Inbound::on_request panicked on a {channel:?} request; \
                             answered with an error"
                        );
                    }
                    let answer = answer_frame(id, channel, outcome, max);
                    // The connection may be gone; then the answer is dropped.
                    let _ = answers.send(answer).await;
                    drop(permit);
                });
            }
            FrameKind::Response | FrameKind::Failure => {
                let Some(pending) = pending else {
                    return protocol_violation(peer, frame.kind);
                };
                let result = if frame.kind == FrameKind::Response {
                    Ok(frame.body)
                } else {
                    Err(super::TransportError::Remote(
                        String::from_utf8_lossy(&frame.body).into_owned(),
                    ))
                };
                // An unknown id is a request that timed out here: drop it.
                pending.complete(frame.request_id, result);
            }
            FrameKind::Hello | FrameKind::HelloAck | FrameKind::Refused => {
                return protocol_violation(peer, frame.kind);
            }
        }
    }
}

fn protocol_violation(peer: &PeerInfo, kind: FrameKind) -> String {
    let why = format!("unexpected {kind:?} frame on an established connection");
    tracing::warn!(
        "closing connection with peer {} (node {}): {why}",
        peer.addr,
        peer.node_id
    );
    why
}

/// The frame answering request `id` with a handler's outcome.
fn answer_frame(
    id: u64,
    channel: Channel,
    outcome: std::thread::Result<Result<Bytes, String>>,
    max: usize,
) -> Frame {
    let failure = |text: String| Frame::new(FrameKind::Failure, id, channel, Bytes::from(text));
    match outcome {
        Ok(Ok(body)) => match super::frame::check_size(body.len(), max) {
            Ok(()) => Frame::new(FrameKind::Response, id, channel, body),
            Err(e) => failure(format!("the response could not be sent: {e}")),
        },
        Ok(Err(text)) => {
            // Cut an error text that would not fit, at a char boundary.
            let mut text = text;
            let room = max.saturating_sub(32);
            if text.len() > room {
                let mut cut = room;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            failure(text)
        }
        Err(_) => failure(format!("the {channel:?} request handler panicked")),
    }
}

/// Takes the next frame to write, waiting for one. `None`: the peer's queue
/// closed (the transport is gone).
async fn next_frame(
    answers: &mut mpsc::Receiver<Frame>,
    outbound: &mut Option<Outbound<'_>>,
) -> Option<Frame> {
    match outbound {
        None => answers.recv().await,
        Some(o) => {
            if let Some(f) = o.carry.take() {
                return Some(f);
            }
            tokio::select! {
                biased;
                Some(f) = answers.recv() => Some(f),
                f = o.queue.recv() => f,
            }
        }
    }
}

/// Takes a frame that is ready now, without waiting.
fn ready_frame(
    answers: &mut mpsc::Receiver<Frame>,
    outbound: &mut Option<Outbound<'_>>,
) -> Option<Frame> {
    if let Ok(f) = answers.try_recv() {
        return Some(f);
    }
    outbound.as_mut().and_then(|o| o.queue.try_recv().ok())
}

/// False for a request nobody waits for any more (timed out, or failed when
/// an earlier connection broke): sending it would only waste the peer's work.
fn still_wanted(frame: &Frame, outbound: &Option<Outbound<'_>>) -> bool {
    match (frame.kind, outbound) {
        (FrameKind::Request, Some(o)) => o.pending.contains(frame.request_id),
        _ => true,
    }
}

async fn write_loop(
    shared: &Arc<Shared>,
    mut sink: SplitSink<Conn, Frame>,
    mut answers: mpsc::Receiver<Frame>,
    mut outbound: Option<Outbound<'_>>,
) -> String {
    loop {
        let Some(first) = next_frame(&mut answers, &mut outbound).await else {
            return "the outgoing queue closed".to_owned();
        };
        let mut frame = Some(first);
        let mut written = 0;
        while let Some(f) = frame.take() {
            if still_wanted(&f, &outbound) {
                let (channel, len) = (f.channel, f.wire_len());
                if let Err(e) = sink.feed(f).await {
                    return format!("write failed: {e}");
                }
                shared.metrics.frame(Direction::Sent, channel, len);
                written += 1;
            }
            if written < WRITE_BATCH {
                frame = ready_frame(&mut answers, &mut outbound);
            }
        }
        if let Err(e) = sink.flush().await {
            return format!("write failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t60_answers_that_do_not_fit_become_failures() {
        let big = answer_frame(7, Channel::Query, Ok(Ok(Bytes::from(vec![0; 500]))), 100);
        assert_eq!(big.kind, FrameKind::Failure);
        assert_eq!(big.request_id, 7);
        assert!(big.envelope_len() <= 100);

        let long_err = answer_frame(7, Channel::Query, Ok(Err("é".repeat(300))), 100);
        assert_eq!(long_err.kind, FrameKind::Failure);
        assert!(long_err.envelope_len() <= 100);
        assert!(std::str::from_utf8(&long_err.body).is_ok());

        let panicked = answer_frame(7, Channel::Raft, Err(Box::new("boom")), 100);
        assert!(String::from_utf8_lossy(&panicked.body).contains("panicked"));
    }
}
