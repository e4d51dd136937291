//! One benchmark connection: connect, authenticate if asked, then
//! OP_BATCH → wait for OP_ACK → record → repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hangar_core::Timestamp;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{BenchConfig, BenchError, Shared};
use crate::protocol::messages::{Auth, ClientOp, OpBatch, Ping, WireLwwRecord};
use crate::protocol::{decode_frame, Decoded, Message, RawMsgpack};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for any one answer before calling the server stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What one connection measured.
pub(super) struct Stats {
    pub acked_ops: u64,
    pub failed_ops: u64,
    pub batches: u64,
    pub errors: u64,
    pub batch_latency_us: Histogram<u64>,
    pub op_latency_us: Histogram<u64>,
}

pub(super) struct Client {
    index: usize,
    socket: Socket,
}

fn conn_err(conn: usize, message: impl Into<String>) -> BenchError {
    BenchError::Connection {
        conn,
        message: message.into(),
    }
}

impl Client {
    /// Connects, and authenticates when the server asks (`AUTH_REQUIRED`) or
    /// a token was given. A PING/PONG round trip proves the session is up.
    pub async fn connect(index: usize, config: &BenchConfig) -> Result<Self, BenchError> {
        let (socket, _) = tokio_tungstenite::connect_async(config.url.as_str())
            .await
            .map_err(|e| conn_err(index, format!("cannot connect to {}: {e}", config.url)))?;
        let mut c = Self { index, socket };
        if let Some(token) = &config.token {
            c.send(&Message::Auth(Auth {
                token: token.clone(),
                protocol_version: Some(1),
                device_token: None,
            }))
            .await?;
        }
        c.send(&Message::Ping(Ping { timestamp: 1 })).await?;
        loop {
            match c.next().await? {
                Message::Pong(_) => return Ok(c),
                Message::AuthRequired(_) if config.token.is_none() => {
                    return Err(conn_err(
                        index,
                        "the server requires authentication; pass --token",
                    ))
                }
                Message::AuthFail(f) => {
                    return Err(conn_err(
                        index,
                        format!("authentication failed: {}", f.error.unwrap_or_default()),
                    ))
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, m: &Message) -> Result<(), BenchError> {
        let bytes = m
            .encode()
            .map_err(|e| conn_err(self.index, e.to_string()))?;
        self.socket
            .send(WsMessage::Binary(bytes.into()))
            .await
            .map_err(|e| conn_err(self.index, format!("send failed: {e}")))
    }

    /// The next message this client understands.
    async fn next(&mut self) -> Result<Message, BenchError> {
        loop {
            let frame = tokio::time::timeout(ANSWER_TIMEOUT, self.socket.next())
                .await
                .map_err(|_| conn_err(self.index, "no answer from the server within 60 s"))?
                .ok_or_else(|| conn_err(self.index, "the server closed the connection"))?
                .map_err(|e| conn_err(self.index, format!("receive failed: {e}")))?;
            let WsMessage::Binary(b) = frame else {
                continue;
            };
            if let Ok(Decoded::Message(m)) = decode_frame(&b) {
                return Ok(m);
            }
        }
    }

    fn batch(&self, config: &BenchConfig, seq: &mut u64, value: &RawMsgpack) -> Message {
        let node = format!("bench-{}", self.index);
        let millis = hangar_core::hlc::system_millis();
        let ops = (0..config.batch)
            .map(|_| {
                *seq += 1;
                ClientOp {
                    id: Some(seq.to_string()),
                    map_name: config.map.clone(),
                    key: format!("k{}-{}", self.index, *seq),
                    op_type: None,
                    record: Some(Some(WireLwwRecord {
                        value: Some(value.clone()),
                        timestamp: Timestamp::new(
                            millis,
                            u32::try_from(*seq % u64::from(u32::MAX)).unwrap_or(0),
                            node.as_str(),
                        ),
                        ttl_ms: None,
                    })),
                    or_record: None,
                    or_tag: None,
                    write_concern: None,
                    timeout: None,
                }
            })
            .collect();
        Message::OpBatch {
            payload: OpBatch {
                ops,
                write_concern: Some(config.concern.as_str().to_string()),
                timeout: Some(config.timeout_ms),
            },
        }
    }

    /// Sends batches until the run stops; returns what it measured.
    pub async fn drive(mut self, shared: Arc<Shared>) -> Result<Stats, BenchError> {
        let config = &shared.config;
        let value = {
            let mut v = Vec::with_capacity(config.value_size + 5);
            rmp::encode::write_bin(&mut v, &vec![0x5a; config.value_size])
                .expect("writing to a Vec cannot fail");
            RawMsgpack::from_raw_value(hangar_core::RawValue::from_msgpack(v))
        };
        let mut stats = Stats {
            acked_ops: 0,
            failed_ops: 0,
            batches: 0,
            errors: 0,
            batch_latency_us: histogram(),
            op_latency_us: histogram(),
        };
        let mut seq = 0u64;
        let batch = config.batch as u64;
        while shared.claim(batch) {
            let msg = self.batch(config, &mut seq, &value);
            let sent = Instant::now();
            self.send(&msg).await?;
            loop {
                match self.next().await? {
                    Message::OpAck { payload } => {
                        let us = u64::try_from(sent.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1);
                        let _ = stats.batch_latency_us.record(us);
                        let _ = stats.op_latency_us.record_n(us, batch);
                        stats.batches += 1;
                        match payload.results {
                            Some(rs) => {
                                let ok = rs.iter().filter(|r| r.success).count() as u64;
                                stats.acked_ops += ok;
                                stats.failed_ops += rs.len() as u64 - ok;
                            }
                            None => stats.acked_ops += batch,
                        }
                        break;
                    }
                    Message::Error { payload } => {
                        // Shed (429): the batch was not taken; count and go on.
                        stats.errors += 1;
                        stats.failed_ops += batch;
                        tracing::debug!(
                            conn = self.index,
                            code = payload.code,
                            "{}",
                            payload.message
                        );
                        break;
                    }
                    _ => {}
                }
            }
        }
        let _ = self.socket.close(None).await;
        Ok(stats)
    }
}
