//! One benchmark connection: connect, authenticate if asked, then
//! OP_BATCH → wait for OP_ACK → record → repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::keys::KeyFilter;
use super::{BenchConfig, BenchError, Shared};
use crate::protocol::messages::{Auth, PartitionMap, PartitionMapRequest, Ping};
use crate::protocol::{decode_frame, Decoded, Message};

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
    pub async fn connect(
        index: usize,
        url: &str,
        config: &BenchConfig,
    ) -> Result<Self, BenchError> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| conn_err(index, format!("cannot connect to {url}: {e}")))?;
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

    /// Asks for the server's `PARTITION_MAP` (`PARTITION_MAP_REQUEST`) and
    /// returns it, skipping anything else the server sends meanwhile.
    pub async fn fetch_partition_map(&mut self) -> Result<PartitionMap, BenchError> {
        self.send(&Message::PartitionMapRequest {
            payload: PartitionMapRequest::default(),
        })
        .await?;
        loop {
            match self.next().await? {
                Message::PartitionMap { payload } => return Ok(payload),
                Message::Error { payload } => {
                    return Err(conn_err(
                        self.index,
                        format!(
                            "PARTITION_MAP_REQUEST refused ({}): {}",
                            payload.code, payload.message
                        ),
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

    /// Sends batches until the run stops; returns what it measured.
    pub async fn drive(mut self, shared: Arc<Shared>) -> Result<Stats, BenchError> {
        let config = &shared.config;
        let keys = &shared.keys;
        let mut value = Vec::with_capacity(config.value_size + 5);
        rmp::encode::write_bin(&mut value, &vec![0x5a; config.value_size])
            .expect("writing to a Vec cannot fail");
        let mut buf = Vec::new();
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
            encode_batch(self.index, config, keys, &mut seq, &value, &mut buf);
            let sent = Instant::now();
            self.socket
                .send(WsMessage::Binary(buf.clone().into()))
                .await
                .map_err(|e| conn_err(self.index, format!("send failed: {e}")))?;
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

/// Encodes one `OP_BATCH` frame straight into `buf` with `rmp` (the
/// generator must cost the server's machine as little CPU as it can):
/// `{type, payload: {ops: [{id, mapName, key, record: {value,
/// timestamp}}], writeConcern, timeout, consistency?}}`, with keys that
/// `keys` allows.
fn encode_batch(
    index: usize,
    config: &BenchConfig,
    keys: &KeyFilter,
    seq: &mut u64,
    value: &[u8],
    buf: &mut Vec<u8>,
) {
    use rmp::encode::{write_array_len, write_map_len, write_str, write_u32, write_u64};
    let node = format!("bench-{}", index);
    let millis = hangar_core::hlc::system_millis();
    buf.clear();
    let w = &mut *buf;
    // Writing to a Vec cannot fail.
    let _ = write_map_len(w, 2);
    let _ = write_str(w, "type");
    let _ = write_str(w, "OP_BATCH");
    let _ = write_str(w, "payload");
    let _ = write_map_len(w, if config.consistency.is_some() { 4 } else { 3 });
    let _ = write_str(w, "ops");
    let _ = write_array_len(w, u32::try_from(config.batch).unwrap_or(u32::MAX));
    let mut key = String::new();
    for _ in 0..config.batch {
        keys.next_key(index, seq, &mut key);
        let _ = write_map_len(w, 4);
        let _ = write_str(w, "id");
        let _ = write_str(w, itoa(*seq).as_str());
        let _ = write_str(w, "mapName");
        let _ = write_str(w, &config.map);
        let _ = write_str(w, "key");
        let _ = write_str(w, &key);
        let _ = write_str(w, "record");
        let _ = write_map_len(w, 2);
        let _ = write_str(w, "value");
        w.extend_from_slice(value);
        let _ = write_str(w, "timestamp");
        let _ = write_map_len(w, 3);
        let _ = write_str(w, "millis");
        let _ = write_u64(w, millis);
        let _ = write_str(w, "counter");
        let _ = write_u32(w, u32::try_from(*seq % u64::from(u32::MAX)).unwrap_or(0));
        let _ = write_str(w, "nodeId");
        let _ = write_str(w, &node);
    }
    let _ = write_str(w, "writeConcern");
    let _ = write_str(w, config.concern.as_str());
    let _ = write_str(w, "timeout");
    let _ = write_u64(w, config.timeout_ms);
    if let Some(c) = config.consistency {
        let _ = write_str(w, "consistency");
        let _ = write_str(w, super::consistency_name(c));
    }
}

/// Decimal digits of `n` without going through `format!`.
fn itoa(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&digits[i..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::OpBatch;

    #[test]
    fn t10_the_hand_encoded_batch_decodes_as_the_op_batch_it_claims_to_be() {
        let config = BenchConfig {
            batch: 3,
            map: "m".into(),
            concern: hangar_core::WriteConcern::Persisted,
            timeout_ms: 1234,
            ..BenchConfig::default()
        };
        let mut value = Vec::new();
        rmp::encode::write_bin(&mut value, b"abc").unwrap();
        let mut buf = Vec::new();
        let mut seq = 41;
        encode_batch(7, &config, &KeyFilter::all(), &mut seq, &value, &mut buf);
        let Ok(Decoded::Message(Message::OpBatch { payload })) = decode_frame(&buf) else {
            panic!("not an OP_BATCH")
        };
        let OpBatch {
            ops,
            write_concern,
            timeout,
            ..
        } = payload;
        assert_eq!(write_concern.as_deref(), Some("PERSISTED"));
        assert_eq!(timeout, Some(1234));
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[2].id.as_deref(), Some("44"));
        assert_eq!(ops[2].key, "k7-44");
        let rec = ops[0].record.clone().flatten().unwrap();
        assert_eq!(rec.value.unwrap().as_bytes(), value.as_slice());
        assert_eq!(rec.timestamp.node_id.as_str(), "bench-7");
        assert_eq!(itoa(0), "0");
        assert_eq!(itoa(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn t20_consistency_is_sent_when_set_and_keys_follow_the_filter() {
        use crate::bench::KeySelection;
        use crate::protocol::messages::{
            NodeEndpoints, NodeInfo, NodeStatus, PartitionInfo, PartitionMap,
        };
        let mut config = BenchConfig {
            batch: 50,
            ..BenchConfig::default()
        };
        let mut value = Vec::new();
        rmp::encode::write_bin(&mut value, b"v").unwrap();
        let decode = |buf: &[u8]| match decode_frame(buf) {
            Ok(Decoded::Message(Message::OpBatch { payload })) => payload,
            _ => panic!("not an OP_BATCH"),
        };
        let mut buf = Vec::new();
        encode_batch(0, &config, &KeyFilter::all(), &mut 0, &value, &mut buf);
        assert_eq!(decode(&buf).consistency, None, "absent unless asked for");

        config.consistency = Some(hangar_core::ConsistencyLevel::Quorum);
        // n1 owns the even partitions, n2 the odd ones.
        let map = PartitionMap {
            version: 3,
            partition_count: hangar_core::PARTITION_COUNT,
            nodes: ["n1", "n2"]
                .iter()
                .map(|n| NodeInfo {
                    node_id: (*n).into(),
                    endpoints: NodeEndpoints {
                        websocket: String::new(),
                        http: None,
                    },
                    status: NodeStatus::Active,
                })
                .collect(),
            partitions: (0..hangar_core::PARTITION_COUNT)
                .map(|p| PartitionInfo {
                    partition_id: p,
                    owner_node_id: if p % 2 == 0 { "n1" } else { "n2" }.into(),
                    backup_node_ids: vec![],
                })
                .collect(),
            generated_at: 0,
        };
        let keys = KeyFilter::from_map(&KeySelection::OwnedBy("n2".into()), &map).unwrap();
        encode_batch(0, &config, &keys, &mut 0, &value, &mut buf);
        let b = decode(&buf);
        assert_eq!(b.consistency.as_deref(), Some("QUORUM"));
        assert_eq!(b.ops.len(), 50);
        for op in &b.ops {
            assert_eq!(hangar_core::partition_of(&op.key) % 2, 1, "{}", op.key);
        }
    }
}
