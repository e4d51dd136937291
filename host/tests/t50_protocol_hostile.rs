//! Hostile and sloppy input: what a frame may not do, and what it may.
//!
//! t10 numbers from JavaScript, t20 unknown and malformed shapes, t30 depth,
//! size, lying lengths and truncation, t40 BATCH envelopes.

use hangar_host::protocol::{
    decode_batch, decode_frame, pack_batch_data, Decoded, FrameError, Message, MAX_BATCH_ITEMS,
    MAX_DEPTH, MAX_FRAME_BYTES,
};
use rmpv::Value as V;

fn map(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (V::from(k), v)).collect())
}

fn enc(v: &V) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    buf
}

fn payload_msg(ty: &str, payload: V) -> Vec<u8> {
    enc(&map(vec![("type", V::from(ty)), ("payload", payload)]))
}

fn ts(millis: V) -> V {
    map(vec![
        ("millis", millis),
        ("counter", V::F64(2.0)),
        ("nodeId", V::from("n1")),
    ])
}

fn client_op(value: V) -> V {
    map(vec![
        ("id", V::from("1")),
        ("mapName", V::from("m")),
        ("key", V::from("k")),
        (
            "record",
            map(vec![("value", value), ("timestamp", ts(V::from(1u64)))]),
        ),
    ])
}

fn nested(depth: usize) -> V {
    let mut v = V::Nil;
    for _ in 0..depth {
        v = V::Array(vec![v]);
    }
    v
}

fn decoded(frame: &[u8]) -> Message {
    match decode_frame(frame) {
        Ok(Decoded::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn invalid_reason(frame: &[u8], ty: &str) -> String {
    match decode_frame(frame) {
        Err(FrameError::Invalid { msg_type, reason }) => {
            assert_eq!(msg_type, ty);
            reason
        }
        other => panic!("expected Invalid for {ty}, got {other:?}"),
    }
}

#[test]
fn t10_float64_integers_are_accepted_wherever_integers_are_expected() {
    let ping = enc(&map(vec![
        ("type", "PING".into()),
        ("timestamp", V::F64(1.7e12)),
    ]));
    assert!(matches!(decoded(&ping), Message::Ping(p) if p.timestamp == 1_700_000_000_000));

    let op = map(vec![
        ("mapName", V::from("m")),
        ("key", V::from("k")),
        (
            "record",
            map(vec![
                ("value", V::from(1u64)),
                ("timestamp", ts(V::F64(1_700_000_000_001.0))),
                ("ttlMs", V::F64(60_000.0)),
            ]),
        ),
        ("timeout", V::F64(5000.0)),
    ]);
    let Message::ClientOp { payload } = decoded(&payload_msg("CLIENT_OP", op)) else {
        panic!()
    };
    let rec = payload.record.clone().unwrap().unwrap();
    assert_eq!(
        (rec.timestamp.millis, rec.timestamp.counter),
        (1_700_000_000_001, 2)
    );
    assert_eq!((rec.ttl_ms, payload.timeout), (Some(60_000), Some(5000)));

    let lock = map(vec![
        ("requestId", V::from("r")),
        ("name", V::from("l")),
        ("fencingToken", V::F64(4_294_967_296.0)),
    ]);
    let Message::LockGranted { payload } = decoded(&payload_msg("LOCK_GRANTED", lock)) else {
        panic!()
    };
    assert_eq!(payload.fencing_token, 1 << 32);

    // u32 hashes above 2^31 arrive as float64 from msgpackr
    let buckets = map(vec![
        ("mapName", V::from("m")),
        ("path", V::from("")),
        ("buckets", map(vec![("a", V::F64(3_000_000_000.0))])),
    ]);
    let Message::SyncRespBuckets { payload } = decoded(&payload_msg("SYNC_RESP_BUCKETS", buckets))
    else {
        panic!()
    };
    assert_eq!(payload.buckets["a"], 3_000_000_000);
}

#[test]
fn t11_nan_infinite_and_fractional_integers_are_clear_errors() {
    for (bad, shows) in [
        (V::F64(1.5), "1.5"),
        (V::F64(f64::NAN), "NaN"),
        (V::F64(f64::INFINITY), "inf"),
    ] {
        let ping = enc(&map(vec![("type", "PING".into()), ("timestamp", bad)]));
        let reason = invalid_reason(&ping, "PING");
        assert!(
            reason.contains(shows) && reason.contains("whole number"),
            "{reason}"
        );
    }
    let op = payload_msg("CLIENT_OP", client_op(V::Nil));
    // a fractional counter deep inside a record
    let op2 = map(vec![
        ("mapName", V::from("m")),
        ("key", V::from("k")),
        (
            "record",
            map(vec![
                ("value", V::Nil),
                (
                    "timestamp",
                    map(vec![
                        ("millis", V::from(1u64)),
                        ("counter", V::F64(0.25)),
                        ("nodeId", V::from("n")),
                    ]),
                ),
            ]),
        ),
    ]);
    assert!(matches!(decoded(&op), Message::ClientOp { .. }));
    let reason = invalid_reason(&payload_msg("CLIENT_OP", op2), "CLIENT_OP");
    assert!(reason.contains("0.25"), "{reason}");
}

#[test]
fn t20_unknown_type_is_a_distinct_outcome_not_an_error() {
    let f = enc(&map(vec![
        ("type", "HYBRID_SEARCH".into()),
        ("payload", map(vec![("x", 1u64.into())])),
    ]));
    assert_eq!(
        decode_frame(&f),
        Ok(Decoded::Unknown {
            type_name: "HYBRID_SEARCH".into()
        })
    );
}

#[test]
fn t21_unknown_fields_are_ignored_at_every_level() {
    let f = enc(&map(vec![
        ("extra", nested(20)),
        ("type", "PING".into()),
        ("timestamp", 5u64.into()),
        ("more", map(vec![("deep", V::Binary(vec![1, 2]))])),
    ]));
    assert!(matches!(decoded(&f), Message::Ping(p) if p.timestamp == 5));

    let op = map(vec![
        ("mapName", V::from("m")),
        ("key", V::from("k")),
        ("futureField", V::from(true)),
        (
            "record",
            map(vec![
                ("value", 1u64.into()),
                ("timestamp", ts(1u64.into())),
                ("hint", "x".into()),
            ]),
        ),
    ]);
    let Message::ClientOp { payload } = decoded(&payload_msg("CLIENT_OP", op)) else {
        panic!()
    };
    assert_eq!(payload.key, "k");
}

#[test]
fn t22_frames_that_are_not_tagged_maps_are_refused() {
    assert_eq!(
        decode_frame(&enc(&nested(2))),
        Err(FrameError::NotAMap { found: "an array" })
    );
    assert_eq!(
        decode_frame(&enc(&V::from("PING"))),
        Err(FrameError::NotAMap { found: "a string" })
    );
    assert_eq!(
        decode_frame(&enc(&map(vec![("timestamp", 1u64.into())]))),
        Err(FrameError::MissingType)
    );
    assert_eq!(
        decode_frame(&enc(&map(vec![("type", 7u64.into())]))),
        Err(FrameError::TypeNotString)
    );
    // a map key that is itself a container is skipped whole while looking
    // for `type` (its inner "type" string is not mistaken for the key); the
    // message is then refused because struct keys must be strings
    let f = enc(&V::Map(vec![
        (V::Array(vec![V::from("type")]), V::from("X")),
        (V::from("type"), V::from("PING")),
        (V::from("timestamp"), V::from(1u64)),
    ]));
    let reason = invalid_reason(&f, "PING");
    assert!(reason.contains("sequence"), "{reason}");
    // missing required field names the field
    let reason = invalid_reason(&enc(&map(vec![("type", "PING".into())])), "PING");
    assert!(reason.contains("timestamp"), "{reason}");
}

/// `{type: TOPIC_PUB, payload: {topic, data: <arrays>}}`: the envelope map
/// is level 1, the payload level 2, so `arrays` arrays reach 2 + arrays.
fn topic_pub_with_depth(total: usize) -> Vec<u8> {
    payload_msg(
        "TOPIC_PUB",
        map(vec![("topic", "t".into()), ("data", nested(total - 2))]),
    )
}

#[test]
fn t30_depth_256_is_accepted_and_257_rejected() {
    assert_eq!(MAX_DEPTH, 256);
    let Message::TopicPub { payload } = decoded(&topic_pub_with_depth(256)) else {
        panic!()
    };
    assert_eq!(payload.data.as_bytes().len(), 254 + 1);
    assert!(matches!(
        decode_frame(&topic_pub_with_depth(257)),
        Err(FrameError::TooDeep { max: 256, .. })
    ));
}

#[test]
fn t31_a_value_nested_300_deep_inside_an_op_batch_is_rejected() {
    let batch = |depth| {
        payload_msg(
            "OP_BATCH",
            map(vec![(
                "ops",
                V::Array(vec![client_op(1u64.into()), client_op(nested(depth))]),
            )]),
        )
    };
    assert!(matches!(
        decode_frame(&batch(300)),
        Err(FrameError::TooDeep { .. })
    ));
    // negative control: the same frame at a legal depth decodes, value intact
    let Message::OpBatch { payload } = decoded(&batch(200)) else {
        panic!()
    };
    let v = payload.ops[1]
        .record
        .clone()
        .unwrap()
        .unwrap()
        .value
        .unwrap();
    assert_eq!(v.to_value().unwrap(), nested(200));
}

#[test]
fn t32_frames_over_2_mib_are_rejected_and_2_mib_is_fine() {
    let with_data = |n: usize| {
        payload_msg(
            "TOPIC_PUB",
            map(vec![("topic", "t".into()), ("data", V::Binary(vec![7; n]))]),
        )
    };
    let base = with_data(0).len();
    // bin32 header: 5 bytes instead of bin8's 2
    let exact = with_data(MAX_FRAME_BYTES - base - 3);
    assert_eq!(exact.len(), MAX_FRAME_BYTES);
    assert!(matches!(decoded(&exact), Message::TopicPub { .. }));
    let over = with_data(MAX_FRAME_BYTES - base - 2);
    assert_eq!(
        decode_frame(&over),
        Err(FrameError::TooLarge {
            len: MAX_FRAME_BYTES + 1,
            max: MAX_FRAME_BYTES
        })
    );
}

#[test]
fn t33_lying_length_prefixes_are_rejected_before_decoding() {
    // a record value that claims 2^32-1 array elements in a 60-byte frame
    let mut f = payload_msg("CLIENT_OP", client_op(V::from("marker")));
    let at = f.windows(7).position(|w| w == b"\xa6marker").unwrap();
    f.splice(at..at + 7, [0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        decode_frame(&f),
        Err(FrameError::LengthExceedsInput {
            declared: 0xffff_ffff,
            unit: "array elements",
            ..
        })
    ));
    // a map16 header claiming more entries than bytes remain
    let mut g = payload_msg("CLIENT_OP", client_op(1u64.into()));
    let payload_at = g.windows(8).position(|w| w == b"\xa7payload").unwrap() + 8;
    g[payload_at] = 0xde;
    g.splice(payload_at + 1..payload_at + 1, [0x7f, 0xff]);
    assert!(matches!(
        decode_frame(&g),
        Err(FrameError::LengthExceedsInput {
            unit: "map entries",
            ..
        })
    ));
    // str32 / bin32 / ext32 lengths far past the end
    for header in [
        [0xdb, 0x7f, 0xff, 0xff, 0xff],
        [0xc6, 0x7f, 0xff, 0xff, 0xff],
        [0xc9, 0x7f, 0xff, 0xff, 0xff],
    ] {
        let mut h = payload_msg(
            "TOPIC_PUB",
            map(vec![("topic", "t".into()), ("data", V::from("marker"))]),
        );
        let at = h.windows(7).position(|w| w == b"\xa6marker").unwrap();
        h.splice(at..at + 1, header);
        assert!(
            matches!(decode_frame(&h), Err(FrameError::LengthExceedsInput { .. })),
            "{header:02x?}"
        );
    }
}

#[test]
fn t34_every_truncation_of_a_valid_frame_is_an_error() {
    let full = payload_msg(
        "OP_BATCH",
        map(vec![
            (
                "ops",
                V::Array(vec![client_op(map(vec![("x", V::F64(0.5))])); 3]),
            ),
            ("writeConcern", "APPLIED".into()),
        ]),
    );
    assert!(decode_frame(&full).is_ok());
    for cut in 0..full.len() {
        assert!(
            decode_frame(&full[..cut]).is_err(),
            "a {cut}-byte prefix decoded"
        );
    }
}

fn ping(ts: u64) -> Vec<u8> {
    enc(&map(vec![
        ("type", "PING".into()),
        ("timestamp", ts.into()),
    ]))
}

fn batch_frame(count: u64, items: &[Vec<u8>]) -> Vec<u8> {
    let data = pack_batch_data(items.iter().map(Vec::as_slice));
    enc(&map(vec![
        ("type", "BATCH".into()),
        ("count", count.into()),
        ("data", V::Binary(data)),
    ]))
}

fn batch_of(frame: &[u8]) -> hangar_host::protocol::messages::Batch {
    match decoded(frame) {
        Message::Batch(b) => b,
        other => panic!("expected BATCH, got {other:?}"),
    }
}

#[test]
fn t40_a_batch_of_8192_items_decodes_and_8193_is_error_413() {
    assert_eq!(MAX_BATCH_ITEMS, 8192);
    let items: Vec<Vec<u8>> = (0..8193).map(ping).collect();
    let ok = batch_of(&batch_frame(8192, &items[..8192]));
    let results = decode_batch(&ok).unwrap();
    assert_eq!(results.len(), 8192);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(Decoded::Message(Message::Ping(_))))));

    // the claimed count is not trusted: it says 1, there are 8193
    let over = batch_of(&batch_frame(1, &items));
    let err = decode_batch(&over).unwrap_err();
    assert_eq!(err, FrameError::BatchTooLarge { max: 8192 });
    assert_eq!(err.client_error_code(), 413);
    assert_eq!(FrameError::MissingType.client_error_code(), 400);
}

#[test]
fn t41_batch_items_get_every_frame_check_and_cannot_nest() {
    let deep = payload_msg(
        "TOPIC_PUB",
        map(vec![("topic", "t".into()), ("data", nested(300))]),
    );
    let inner_batch = batch_frame(1, &[ping(1)]);
    let items = vec![
        ping(1),
        deep,
        inner_batch,
        vec![],
        enc(&map(vec![("type", "NEW_THING".into())])),
        ping(2),
    ];
    let results = decode_batch(&batch_of(&batch_frame(6, &items))).unwrap();
    assert!(matches!(results[0], Ok(Decoded::Message(Message::Ping(_)))));
    assert!(
        matches!(&results[1], Err(FrameError::InBatchItem { index: 1, source }) if matches!(**source, FrameError::TooDeep { .. }))
    );
    assert_eq!(results[2], Err(FrameError::NestedBatch { index: 2 }));
    assert!(
        matches!(&results[3], Err(FrameError::InBatchItem { index: 3, source }) if **source == FrameError::Empty)
    );
    assert!(matches!(results[4], Ok(Decoded::Unknown { .. })));
    assert!(matches!(results[5], Ok(Decoded::Message(Message::Ping(p))) if p.timestamp == 2));
}

#[test]
fn t42_a_lying_item_length_prefix_refuses_the_whole_batch() {
    let mut data = pack_batch_data([ping(1).as_slice(), ping(2).as_slice()]);
    let second = 4 + ping(1).len();
    data[second..second + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let f = enc(&map(vec![
        ("type", "BATCH".into()),
        ("count", 2u64.into()),
        ("data", V::Binary(data.clone())),
    ]));
    assert!(matches!(
        decode_batch(&batch_of(&f)),
        Err(FrameError::BatchFraming { index: 1, .. })
    ));
    // a prefix cut short
    data.truncate(second + 2);
    let g = enc(&map(vec![
        ("type", "BATCH".into()),
        ("count", 2u64.into()),
        ("data", V::Binary(data)),
    ]));
    assert!(matches!(
        decode_batch(&batch_of(&g)),
        Err(FrameError::BatchFraming { index: 1, .. })
    ));
    // an empty envelope is an empty batch
    assert!(decode_batch(&batch_of(&batch_frame(0, &[])))
        .unwrap()
        .is_empty());
}
