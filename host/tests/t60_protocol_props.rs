//! Properties of the codec over generated input.
//!
//! t10 no input makes the decoder panic (arbitrary bytes, arbitrary msgpack
//! under real message types, mutated real frames); t20 decode∘encode is the
//! identity on typed messages and encoding is stable after one pass.

use hangar_host::protocol::messages::{ClientOp, OpBatch, WireLwwRecord, WireOrRecord};
use hangar_host::protocol::{
    decode_batch, decode_frame, split_batch_data, Decoded, Message, RawMsgpack,
};
use proptest::prelude::*;
use rmpv::Value as V;

fn enc(v: &V) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    buf
}

/// Any msgpack value, small and shallow enough for quick cases.
fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Boolean),
        any::<u64>().prop_map(V::from),
        any::<i64>().prop_map(V::from),
        any::<f64>().prop_map(V::F64),
        any::<f32>().prop_map(V::F32),
        "[a-zA-Z]{0,12}".prop_map(V::from),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(V::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..5)).prop_map(|(t, d)| V::Ext(t, d)),
        // field names the schema knows, so generated maps hit real fields
        prop::sample::select(vec![
            "type",
            "payload",
            "mapName",
            "key",
            "record",
            "value",
            "timestamp",
            "millis",
            "counter",
            "nodeId",
            "ops",
            "orTag",
            "data",
            "count",
            "CLIENT_OP",
            "PING",
        ])
        .prop_map(V::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(V::Array),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(V::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn t10_arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame(&bytes);
        if let Ok(items) = split_batch_data(&bytes) {
            for item in items {
                let _ = decode_frame(item);
            }
        }
    }

    #[test]
    fn t11_arbitrary_values_under_real_types_never_panic(
        ty in prop::sample::select(Message::TYPE_NAMES.to_vec()),
        fields in prop::collection::vec(("[a-z]{1,8}|payload|timestamp|data|count", value()), 0..5),
    ) {
        let mut pairs = vec![(V::from("type"), V::from(ty))];
        pairs.extend(fields.into_iter().map(|(k, v)| (V::from(k), v)));
        let frame = enc(&V::Map(pairs));
        if let Ok(Decoded::Message(m)) = decode_frame(&frame) {
            // whatever decodes re-encodes, and encoding is stable
            let once = m.encode().unwrap();
            let Ok(Decoded::Message(m2)) = decode_frame(&once) else { panic!("re-encoded frame must decode") };
            prop_assert_eq!(m2.encode().unwrap(), once);
            if let Message::Batch(b) = &m {
                let _ = decode_batch(b);
            }
        }
    }

    #[test]
    fn t12_mutated_real_frames_never_panic(
        fixture in prop::sample::select(vec!["CLIENT_OP", "OP_BATCH", "SYNC_INIT", "PARTITION_MAP", "QUERY_SUB", "SERVER_BATCH_EVENT"]),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/wire")
            .join(format!("{fixture}.msgpack"));
        let mut frame = std::fs::read(path).unwrap();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let _ = decode_frame(&frame);
        let _ = decode_frame(&frame[..cut.index(frame.len())]);
    }
}

fn timestamp() -> impl Strategy<Value = hangar_core::Timestamp> {
    (any::<u64>(), any::<u32>(), "[a-z0-9-]{1,10}")
        .prop_map(|(m, c, n)| hangar_core::Timestamp::new(m, c, n))
}

fn raw() -> impl Strategy<Value = RawMsgpack> {
    // canonical encodings, as the encoder would write them
    value().prop_map(|v| RawMsgpack::from_value(&v))
}

fn lww() -> impl Strategy<Value = WireLwwRecord> {
    // A value that is msgpack nil is a tombstone on the wire: `Some(nil)` and
    // `None` encode alike, so only `None` stands for it here.
    let non_nil = raw().prop_filter("nil is the tombstone", |r| r.as_bytes() != [0xc0]);
    (
        prop::option::of(non_nil),
        timestamp(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(value, timestamp, ttl_ms)| WireLwwRecord {
            value,
            timestamp,
            ttl_ms,
        })
}

fn or_record() -> impl Strategy<Value = WireOrRecord> {
    (
        raw(),
        timestamp(),
        "[0-9:a-z]{1,20}",
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(value, timestamp, tag, ttl_ms)| WireOrRecord {
            value,
            timestamp,
            tag,
            ttl_ms,
        })
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    (
        prop::option::of("[0-9]{1,6}"),
        "[a-z]{1,8}",
        "\\PC{0,12}",
        prop::option::of(
            prop::sample::select(vec!["PUT", "REMOVE", "OR_ADD", "OR_REMOVE"])
                .prop_map(String::from),
        ),
        prop::option::of(prop::option::of(lww())),
        prop::option::of(prop::option::of(or_record())),
        prop::option::of(prop::option::of("[0-9:a-z]{1,20}")),
        prop::option::of("[A-Z_]{3,16}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(id, map_name, key, op_type, record, or_record, or_tag, write_concern, timeout)| {
                ClientOp {
                    id,
                    map_name,
                    key,
                    op_type,
                    record,
                    or_record,
                    or_tag,
                    write_concern,
                    timeout,
                    consistency: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn t20_op_batches_round_trip_exactly(ops in prop::collection::vec(client_op(), 0..8), wc in prop::option::of("[A-Z_]{3,16}"), timeout in prop::option::of(any::<u64>())) {
        let msg = Message::OpBatch { payload: OpBatch { ops, write_concern: wc, timeout, consistency: None } };
        let frame = msg.encode().unwrap();
        prop_assert_eq!(decode_frame(&frame), Ok(Decoded::Message(msg.clone())));
        // and every op converts exactly when kind() says it can
        let Message::OpBatch { payload } = msg else { unreachable!() };
        for op in payload.ops {
            let kind = op.kind();
            let keyed = op.into_keyed_op(|| hangar_core::Timestamp::new(0, 0, "s"));
            prop_assert_eq!(kind.is_ok(), keyed.is_ok());
        }
    }
}
