//! Codec micro-benchmarks: the inbound write path and the hot outbound frames.
//!
//! - `decode_op_batch_100`: one `OP_BATCH` frame of 100 ops, each with a
//!   100-byte map value and msgpackr-style float64 timestamps, through
//!   `decode_frame` (pre-scan + typed decode, values captured raw); then the
//!   same plus conversion of every op to a core `KeyedOp`; and, for scale,
//!   `rmpv::decode::read_value` of the same bytes into a dynamic tree.
//! - `encode_op_ack` / `encode_server_event`: the hand-written `fast`
//!   encoders against `Message::encode` (serde) for the same message.
//!
//! Run: `cargo bench -p hangar-host --bench codec`. Criterion prints its
//! estimates (mean with confidence interval); state the machine alongside.

use std::hint::black_box;

use abi_stable::std_types::ROption;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_host::protocol::messages::{OpAck, ServerEvent};
use hangar_host::protocol::{decode_frame, fast, Decoded, Message};
use rmpv::Value as V;

fn map(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (V::from(k), v)).collect())
}

fn enc(v: &V) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).expect("Vec write");
    buf
}

/// A record value of exactly 100 encoded bytes.
fn value_100() -> V {
    let v = map(vec![
        ("name", V::from("x".repeat(83))),
        ("age", 30u64.into()),
        ("ok", true.into()),
    ]);
    assert_eq!(enc(&v).len(), 100);
    v
}

fn op_batch_frame(n: usize) -> Vec<u8> {
    let ops = (0..n)
        .map(|i| {
            map(vec![
                ("id", V::from(i.to_string())),
                ("mapName", "users".into()),
                ("key", V::from(format!("user-{i}"))),
                (
                    "record",
                    map(vec![
                        ("value", value_100()),
                        (
                            "timestamp",
                            map(vec![
                                ("millis", V::F64(1_700_000_000_000.0 + i as f64)),
                                ("counter", 0u64.into()),
                                ("nodeId", "client-7".into()),
                            ]),
                        ),
                    ]),
                ),
            ])
        })
        .collect();
    enc(&map(vec![
        ("type", "OP_BATCH".into()),
        (
            "payload",
            map(vec![
                ("ops", V::Array(ops)),
                ("writeConcern", "APPLIED".into()),
            ]),
        ),
    ]))
}

fn bench_decode(c: &mut Criterion) {
    let frame = op_batch_frame(100);
    let mut g = c.benchmark_group("decode_op_batch_100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode_frame", |b| {
        b.iter(|| decode_frame(black_box(&frame)).expect("valid"));
    });
    g.bench_function("decode_frame+into_keyed_ops", |b| {
        b.iter(|| {
            let Ok(Decoded::Message(Message::OpBatch { payload })) =
                decode_frame(black_box(&frame))
            else {
                unreachable!("the frame is an OP_BATCH")
            };
            let now = || Timestamp::new(0, 0, "server");
            payload
                .ops
                .into_iter()
                .map(|op| op.into_keyed_op(now).expect("puts"))
                .collect::<Vec<KeyedOp>>()
        });
    });
    g.bench_function("rmpv_tree_for_scale", |b| {
        b.iter(|| rmpv::decode::read_value(&mut black_box(frame.as_slice())).expect("valid"));
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let ack = OpAck {
        last_id: "12345".into(),
        achieved_level: Some(WriteConcern::Applied),
        results: None,
    };
    let ack_msg = Message::OpAck {
        payload: ack.clone(),
    };
    let mut g = c.benchmark_group("encode_op_ack");
    g.bench_function("fast", |b| {
        let mut buf = Vec::with_capacity(64);
        b.iter(|| {
            buf.clear();
            fast::write_op_ack(&mut buf, black_box(&ack.last_id), ack.achieved_level, None);
            buf.len()
        });
    });
    g.bench_function("serde", |b| {
        b.iter(|| black_box(&ack_msg).encode().expect("encodes"))
    });
    g.finish();

    let op = KeyedOp {
        map: "users".into(),
        key: "user-42".into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RSome(RawValue::from_msgpack(enc(&value_100()))),
            timestamp: Timestamp::new(1_700_000_000_000, 3, "node-1"),
            ttl_ms: ROption::RNone,
        }),
    };
    let ev_msg = Message::ServerEvent {
        payload: ServerEvent::from_keyed_op(&op),
    };
    let mut g = c.benchmark_group("encode_server_event_100B");
    g.bench_function("fast", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            buf.clear();
            fast::write_server_event(&mut buf, black_box(&op));
            buf.len()
        });
    });
    g.bench_function("serde", |b| {
        b.iter(|| black_box(&ev_msg).encode().expect("encodes"))
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
