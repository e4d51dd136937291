//! The handshake: the first frame each way on every connection.
//!
//! ```text
//! dialer                                  acceptor
//!   | -- Hello {version, cluster_id, node_id, addr} --> |
//!   | <-- HelloAck {node_id, addr} -------------------- |   ids and version match
//!   | <-- Refused {code, reason}, then close ---------- |   otherwise
//! ```
//!
//! The payloads are msgpack maps with the field names below (`rmp_serde`
//! named encoding), carried as the body of a frame on [`Channel::Control`]
//! with `request_id` 0. `addr` is the sender's advertised transport address
//! as text (`"127.0.0.1:9081"`, `"[::1]:9081"`). Any first frame other than
//! `Hello` is refused. Until the handshake completes, frames are limited to
//! [`HANDSHAKE_MAX_FRAME_BYTES`];
//! the caller bounds the time to a complete handshake with
//! [`HANDSHAKE_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::codec::Framed;

use super::frame::{Frame, FrameCodec, FrameKind, HANDSHAKE_MAX_FRAME_BYTES};
use super::tls::{Io, TlsContext};
use super::{Channel, PeerInfo};

/// Version of this protocol; a peer with another version is refused.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Time from TCP connect to a complete handshake (TLS included) after which
/// either side gives up on the connection.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A framed connection, before and after the handshake.
pub(crate) type Conn = Framed<Box<dyn Io>, FrameCodec>;

/// Dialer → acceptor.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    version: u32,
    cluster_id: String,
    node_id: String,
    addr: String,
}

/// Acceptor → dialer, on success.
#[derive(Debug, Serialize, Deserialize)]
struct HelloAck {
    node_id: String,
    addr: String,
}

/// Acceptor → dialer, on failure.
#[derive(Debug, Serialize, Deserialize)]
struct Refused {
    code: String,
    reason: String,
}

/// Who this node is, as its handshake says.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub cluster_id: String,
    pub node_id: String,
    pub addr: SocketAddr,
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Metric label: `cluster_id`, `protocol_version`, `handshake`, `tls`.
    pub code: String,
    /// What was expected and what was found.
    pub reason: String,
    /// The remote node and its advertised address, when its `Hello` named
    /// them.
    pub node: Option<(String, String)>,
}

impl Refusal {
    fn new(code: &str, reason: String) -> Self {
        Self {
            code: code.to_owned(),
            reason,
            node: None,
        }
    }

    /// The text for [`TransportError::Refused`](super::TransportError::Refused).
    pub fn describe(&self) -> String {
        if self.code == "tls" {
            format!("TLS handshake failed: {}", self.reason)
        } else {
            self.reason.clone()
        }
    }

    /// The dialer's log line; `dropped` frames were queued for the peer.
    pub fn log_dialer(&self, peer: SocketAddr, dropped: usize) {
        let note = if dropped > 0 {
            format!(" (queued frames dropped: {dropped})")
        } else {
            String::new()
        };
        if self.code == "tls" {
            tracing::warn!("TLS handshake with {peer} failed: {}{note}", self.reason);
        } else {
            tracing::warn!("peer {peer} refused the handshake: {}{note}", self.reason);
        }
    }

    /// The acceptor's log line; `from` is the socket address the
    /// connection came from.
    pub fn log_acceptor(&self, from: SocketAddr) {
        match (&self.node, self.code.as_str()) {
            (_, "tls") => tracing::warn!("TLS handshake with {from} failed: {}", self.reason),
            (Some((node, addr)), _) => tracing::warn!(
                "refused peer {addr} (node {node}, connected from {from}): {}",
                self.reason
            ),
            (None, _) => tracing::warn!("refused connection from {from}: {}", self.reason),
        }
    }
}

fn control(kind: FrameKind, payload: &impl Serialize) -> Frame {
    // Serializing these plain structs of strings and ints cannot fail.
    let body = rmp_serde::to_vec_named(payload).expect("handshake payload serializes");
    Frame::new(kind, 0, Channel::Control, Bytes::from(body))
}

/// Describes a read failure during the handshake.
fn read_failure(e: &std::io::Error) -> Refusal {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Refusal::new("tls", tls.to_string());
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return Refusal::new("handshake", closed_reason());
    }
    Refusal::new("handshake", format!("handshake failed: {e}"))
}

fn closed_reason() -> String {
    "the peer closed the connection during the handshake (its TLS setting or CA may differ \
     from ours, or it is shutting down)"
        .to_owned()
}

fn tls_failure(e: &std::io::Error) -> Refusal {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return Refusal::new(
            "tls",
            "the peer closed the connection during the TLS handshake (TLS may be off on the peer)"
                .to_owned(),
        );
    }
    let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(m)) => {
            format!("received a corrupt {m:?} TLS message (the peer may have TLS off)")
        }
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    };
    Refusal::new("tls", reason)
}

fn timed_out(limit: Duration) -> Refusal {
    Refusal::new(
        "handshake",
        format!("no complete handshake within {limit:?}"),
    )
}

/// Dialer side of a new connection: TLS (when configured), then the
/// handshake, all within `limit`. On success the codec accepts frames up to
/// `max_frame` bytes.
pub(crate) async fn establish_outbound(
    io: Box<dyn Io>,
    peer: SocketAddr,
    tls: Option<&TlsContext>,
    me: &Identity,
    max_frame: usize,
    limit: Duration,
) -> Result<(Conn, PeerInfo), Refusal> {
    let work = async {
        let io = match tls {
            Some(tls) => tls.connect(peer, io).await.map_err(|e| tls_failure(&e))?,
            None => io,
        };
        let mut conn = Framed::new(io, FrameCodec::new(HANDSHAKE_MAX_FRAME_BYTES));
        let info = dial(&mut conn, me).await?;
        conn.codec_mut().set_max(max_frame);
        Ok((conn, info))
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

/// Acceptor side of a new connection: TLS (when configured), then the
/// handshake, all within `limit`. On success the codec accepts frames up to
/// `max_frame` bytes.
pub(crate) async fn establish_inbound(
    io: Box<dyn Io>,
    tls: Option<&TlsContext>,
    me: &Identity,
    max_frame: usize,
    limit: Duration,
) -> Result<(Conn, PeerInfo), Refusal> {
    let work = async {
        let io = match tls {
            Some(tls) => tls.accept(io).await.map_err(|e| tls_failure(&e))?,
            None => io,
        };
        let mut conn = Framed::new(io, FrameCodec::new(HANDSHAKE_MAX_FRAME_BYTES));
        let info = accept(&mut conn, me).await?;
        conn.codec_mut().set_max(max_frame);
        Ok((conn, info))
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

/// Dialer side: sends `Hello`, waits for the answer.
async fn dial(conn: &mut Conn, me: &Identity) -> Result<PeerInfo, Refusal> {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        cluster_id: me.cluster_id.clone(),
        node_id: me.node_id.clone(),
        addr: me.addr.to_string(),
    };
    conn.send(control(FrameKind::Hello, &hello))
        .await
        .map_err(|e| read_failure(&e))?;
    let frame = match conn.next().await {
        None => return Err(Refusal::new("handshake", closed_reason())),
        Some(Err(e)) => return Err(read_failure(&e)),
        Some(Ok(f)) => f,
    };
    match frame.kind {
        FrameKind::HelloAck => {
            let ack: HelloAck = rmp_serde::from_slice(&frame.body).map_err(|e| {
                Refusal::new(
                    "handshake",
                    format!("malformed HelloAck from the peer: {e}"),
                )
            })?;
            let addr = ack.addr.parse().map_err(|e| {
                Refusal::new(
                    "handshake",
                    format!("HelloAck address {:?} is not an ip:port ({e})", ack.addr),
                )
            })?;
            Ok(PeerInfo {
                node_id: ack.node_id,
                addr,
            })
        }
        FrameKind::Refused => {
            let r: Refused = rmp_serde::from_slice(&frame.body).map_err(|e| {
                Refusal::new("handshake", format!("malformed Refused from the peer: {e}"))
            })?;
            Err(Refusal::new(&r.code, r.reason))
        }
        other => Err(Refusal::new(
            "handshake",
            format!("expected HelloAck or Refused from the peer, got {other:?}"),
        )),
    }
}

/// Acceptor side: reads `Hello`, checks it, answers. On a refusal the
/// `Refused` frame has been sent (when the stream still worked) and the
/// caller closes the connection.
async fn accept(conn: &mut Conn, me: &Identity) -> Result<PeerInfo, Refusal> {
    let frame = match conn.next().await {
        None => {
            return Err(Refusal::new(
                "handshake",
                "closed before sending Hello".into(),
            ))
        }
        Some(Err(e)) => return Err(read_failure(&e)),
        Some(Ok(f)) => f,
    };
    let outcome = check_hello(&frame, me);
    match &outcome {
        Ok(_) => {
            let ack = HelloAck {
                node_id: me.node_id.clone(),
                addr: me.addr.to_string(),
            };
            conn.send(control(FrameKind::HelloAck, &ack))
                .await
                .map_err(|e| read_failure(&e))?;
        }
        Err(r) => {
            let msg = Refused {
                code: r.code.clone(),
                reason: r.reason.clone(),
            };
            // Best effort: the connection is closed next either way.
            let _ = conn.send(control(FrameKind::Refused, &msg)).await;
        }
    }
    outcome
}

fn check_hello(frame: &Frame, me: &Identity) -> Result<PeerInfo, Refusal> {
    if frame.kind != FrameKind::Hello {
        return Err(Refusal::new(
            "handshake",
            format!("expected a Hello frame first, got {:?}", frame.kind),
        ));
    }
    let hello: Hello = rmp_serde::from_slice(&frame.body)
        .map_err(|e| Refusal::new("handshake", format!("malformed Hello: {e}")))?;
    let named = |mut r: Refusal| {
        r.node = Some((hello.node_id.clone(), hello.addr.clone()));
        r
    };
    if hello.version != PROTOCOL_VERSION {
        return Err(named(Refusal::new(
            "protocol_version",
            format!(
                "protocol version {} of node {} differs from {PROTOCOL_VERSION} of node {}",
                hello.version, hello.node_id, me.node_id
            ),
        )));
    }
    if hello.cluster_id != me.cluster_id {
        return Err(named(Refusal::new(
            "cluster_id",
            format!(
                "cluster id {:?} of node {} differs from {:?} of node {}",
                hello.cluster_id, hello.node_id, me.cluster_id, me.node_id
            ),
        )));
    }
    let addr = hello.addr.parse().map_err(|e| {
        named(Refusal::new(
            "handshake",
            format!("Hello address {:?} is not an ip:port ({e})", hello.addr),
        ))
    })?;
    Ok(PeerInfo {
        node_id: hello.node_id,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, Conn) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let a: Box<dyn Io> = Box::new(a);
        let b: Box<dyn Io> = Box::new(b);
        (
            Framed::new(a, FrameCodec::new(1 << 16)),
            Framed::new(b, FrameCodec::new(1 << 16)),
        )
    }

    fn id(cluster: &str, node: &str) -> Identity {
        Identity {
            cluster_id: cluster.into(),
            node_id: node.into(),
            addr: "127.0.0.1:9081".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn t10_matching_ids_exchange_peer_info() {
        let (mut d, mut a) = pair();
        let (n1, n2) = (id("c", "n1"), id("c", "n2"));
        let (dialed, accepted) = tokio::join!(dial(&mut d, &n1), accept(&mut a, &n2));
        assert_eq!(dialed.unwrap().node_id, "n2");
        assert_eq!(accepted.unwrap().node_id, "n1");
    }

    #[tokio::test]
    async fn t20_other_cluster_is_refused_with_both_ids() {
        let (mut d, mut a) = pair();
        let (blue, green) = (id("blue", "n2"), id("green", "n1"));
        let (dialed, accepted) = tokio::join!(dial(&mut d, &blue), accept(&mut a, &green));
        let r = dialed.unwrap_err();
        assert_eq!(r.code, "cluster_id");
        assert!(
            r.reason.contains("\"blue\"") && r.reason.contains("\"green\""),
            "{}",
            r.reason
        );
        let named = accepted.unwrap_err().node.unwrap();
        assert_eq!(named, ("n2".to_owned(), "127.0.0.1:9081".to_owned()));
    }

    #[tokio::test]
    async fn t20_first_frame_other_than_hello_is_refused() {
        let (mut d, mut a) = pair();
        d.send(Frame::new(
            FrameKind::Request,
            1,
            Channel::Raft,
            Bytes::new(),
        ))
        .await
        .unwrap();
        let r = accept(&mut a, &id("c", "n1")).await.unwrap_err();
        assert!(r.reason.contains("expected a Hello"), "{}", r.reason);
        let answer = d.next().await.unwrap().unwrap();
        assert_eq!(answer.kind, FrameKind::Refused);
    }

    #[tokio::test]
    async fn t20_other_protocol_version_is_refused() {
        let (mut d, mut a) = pair();
        let hello = Hello {
            version: PROTOCOL_VERSION + 1,
            cluster_id: "c".into(),
            node_id: "n9".into(),
            addr: "127.0.0.1:1".into(),
        };
        d.send(control(FrameKind::Hello, &hello)).await.unwrap();
        let r = accept(&mut a, &id("c", "n1")).await.unwrap_err();
        assert_eq!(r.code, "protocol_version");
    }

    #[tokio::test(start_paused = true)]
    async fn t20_silent_peer_hits_the_handshake_timeout() {
        let (_silent, io) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        let r = establish_inbound(
            Box::new(io),
            None,
            &id("c", "n1"),
            1 << 20,
            HANDSHAKE_TIMEOUT,
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(r.reason.contains("no complete handshake"), "{}", r.reason);
        assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
    }

    #[tokio::test]
    async fn t60_limit_is_raised_only_after_the_handshake() {
        let (d, a) = tokio::io::duplex(1 << 16);
        let me = id("c", "n1");
        let (out, inb) = tokio::join!(
            establish_outbound(Box::new(d), me.addr, None, &me, 1 << 20, HANDSHAKE_TIMEOUT),
            establish_inbound(Box::new(a), None, &me, 1 << 20, HANDSHAKE_TIMEOUT)
        );
        let (mut out, _) = out.unwrap();
        let (mut inb, _) = inb.unwrap();
        let big = Frame::new(
            FrameKind::Message,
            0,
            Channel::Query,
            Bytes::from(vec![1; 100_000]),
        );
        let (sent, got) = tokio::join!(out.send(big.clone()), inb.next());
        sent.unwrap();
        assert_eq!(got.unwrap().unwrap(), big);

        // The same frame as a first frame is over the handshake limit.
        let (d, a) = tokio::io::duplex(1 << 16);
        let mut d = Framed::new(d, FrameCodec::new(1 << 20));
        let (_, refused) = tokio::join!(
            d.send(big),
            establish_inbound(Box::new(a), None, &me, 1 << 20, HANDSHAKE_TIMEOUT)
        );
        let r = refused.map(|_| ()).unwrap_err();
        assert!(r.reason.contains("frame size too big"), "{}", r.reason);
    }
}
