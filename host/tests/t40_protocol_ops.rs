//! The write path and the hot encoders.
//!
//! t10 how a CLIENT_OP becomes a core op, t20 write concerns, t30 the
//! hand-written encoders agree with the serde encoder byte for byte.

use abi_stable::std_types::ROption;
use hangar_core::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp, WriteConcern};
use hangar_host::protocol::messages::{
    ChangeType, ClientOp, OpAck, OpResult, QueryUpdatePayload, ServerEvent,
};
use hangar_host::protocol::{
    decode_frame, fast, parse_write_concern, ClientOpKind, Decoded, Message, RawMsgpack,
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

fn ts_v(millis: u64) -> V {
    map(vec![
        ("millis", millis.into()),
        ("counter", 0u64.into()),
        ("nodeId", "c".into()),
    ])
}

/// Decodes a CLIENT_OP frame whose payload has the given fields.
fn op(fields: Vec<(&str, V)>) -> ClientOp {
    let mut payload = vec![("mapName", V::from("m")), ("key", V::from("k"))];
    payload.extend(fields);
    let frame = enc(&map(vec![
        ("type", "CLIENT_OP".into()),
        ("payload", map(payload)),
    ]));
    match decode_frame(&frame) {
        Ok(Decoded::Message(Message::ClientOp { payload })) => payload,
        other => panic!("{other:?}"),
    }
}

fn server_now() -> Timestamp {
    Timestamp::new(999, 9, "server")
}

fn lww(value: Option<V>, millis: u64) -> V {
    map(vec![
        ("value", value.unwrap_or(V::Nil)),
        ("timestamp", ts_v(millis)),
    ])
}

fn or_rec(tag: &str) -> V {
    map(vec![
        ("value", 1u64.into()),
        ("timestamp", ts_v(5)),
        ("tag", tag.into()),
    ])
}

#[test]
fn t10_kind_follows_topgun_order() {
    type Case = (Vec<(&'static str, V)>, Result<ClientOpKind, ()>);
    let cases: Vec<Case> = vec![
        (
            vec![("record", lww(Some(1u64.into()), 1))],
            Ok(ClientOpKind::Put),
        ),
        (vec![("record", V::Nil)], Ok(ClientOpKind::Remove)),
        (vec![("opType", "REMOVE".into())], Ok(ClientOpKind::Remove)),
        (
            vec![("opType", "REMOVE".into()), ("orRecord", or_rec("t"))],
            Ok(ClientOpKind::Remove),
        ),
        (
            vec![
                ("orRecord", or_rec("t")),
                ("record", lww(Some(1u64.into()), 1)),
            ],
            Ok(ClientOpKind::OrAdd),
        ),
        (
            vec![("orTag", "t".into()), ("record", lww(None, 1))],
            Ok(ClientOpKind::OrRemove),
        ),
        (
            vec![("orRecord", V::Nil), ("orTag", "t".into())],
            Ok(ClientOpKind::OrRemove),
        ),
        (vec![("opType", "OR_ADD".into())], Err(())),
        (vec![("orTag", V::Nil)], Err(())),
        (vec![], Err(())),
    ];
    for (fields, want) in cases {
        let desc = format!("{fields:?}");
        let o = op(fields);
        assert_eq!(o.kind().map_err(|_| ()), want, "{desc}");
        // into_keyed_op agrees with kind()
        let got = o.into_keyed_op(server_now).map(|k| match k.op {
            MapOp::Lww(r) if r.is_tombstone() && want == Ok(ClientOpKind::Remove) => {
                ClientOpKind::Remove
            }
            MapOp::Lww(_) => ClientOpKind::Put,
            MapOp::OrAdd(_) => ClientOpKind::OrAdd,
            MapOp::OrRemove(_) => ClientOpKind::OrRemove,
        });
        assert_eq!(got.map_err(|_| ()), want, "{desc}");
    }
}

#[test]
fn t11_absent_and_null_differ() {
    assert_eq!(op(vec![]).record, None);
    assert_eq!(op(vec![("record", V::Nil)]).record, Some(None));
    assert_eq!(op(vec![("orTag", V::Nil)]).or_tag, Some(None));
    assert_eq!(
        op(vec![("orTag", "x".into())]).or_tag,
        Some(Some("x".into()))
    );
    // inside a record, value null is a tombstone; absent reads the same
    let tomb = op(vec![("record", lww(None, 3))]).record.unwrap().unwrap();
    assert_eq!(tomb.value, None);
    let absent = op(vec![("record", map(vec![("timestamp", ts_v(3))]))])
        .record
        .unwrap()
        .unwrap();
    assert_eq!(absent.value, None);
    // null re-encodes as null, not as a missing key
    let m = Message::ClientOp {
        payload: op(vec![("record", V::Nil)]),
    };
    let back = rmpv::decode::read_value(&mut m.encode().unwrap().as_slice()).unwrap();
    assert!(back.to_string().contains("\"record\": nil"), "{back}");
}

#[test]
fn t12_removes_use_the_client_timestamp_or_now() {
    let k = op(vec![("record", V::Nil)])
        .into_keyed_op(server_now)
        .unwrap();
    assert_eq!(
        k.op,
        MapOp::Lww(LwwRecord {
            value: ROption::RNone,
            timestamp: server_now(),
            ttl_ms: ROption::RNone
        })
    );
    let k = op(vec![
        ("opType", "REMOVE".into()),
        ("record", lww(Some(7u64.into()), 42)),
    ])
    .into_keyed_op(|| panic!("the op carries a timestamp"))
    .unwrap();
    let MapOp::Lww(r) = k.op else { panic!() };
    assert!(r.is_tombstone());
    assert_eq!(r.timestamp.millis, 42);
}

#[test]
fn t13_record_values_reach_the_core_op_byte_for_byte() {
    // map16 header and a float64 whole number: a re-encode would change both
    let mut value = vec![0xde, 0x00, 0x01, 0xa1, b'n', 0xcb];
    value.extend_from_slice(&3.0f64.to_bits().to_be_bytes());
    let mut frame = enc(&map(vec![
        ("type", "CLIENT_OP".into()),
        (
            "payload",
            map(vec![
                ("mapName", "m".into()),
                ("key", "k".into()),
                (
                    "record",
                    map(vec![
                        ("value", V::from("PLACEHOLDER")),
                        ("timestamp", ts_v(1)),
                        ("ttlMs", 9u64.into()),
                    ]),
                ),
            ]),
        ),
    ]));
    let at = frame
        .windows(12)
        .position(|w| w == b"\xabPLACEHOLDER")
        .unwrap();
    frame.splice(at..at + 12, value.iter().copied());
    let Ok(Decoded::Message(Message::ClientOp { payload })) = decode_frame(&frame) else {
        panic!()
    };
    let keyed = payload.into_keyed_op(server_now).unwrap();
    assert_eq!((keyed.map.as_str(), keyed.key.as_str()), ("m", "k"));
    let MapOp::Lww(r) = keyed.op else { panic!() };
    assert_eq!(r.value.into_option().unwrap().as_bytes(), value.as_slice());
    assert_eq!(r.ttl_ms, ROption::RSome(9));

    let or = op(vec![("orRecord", or_rec("1:0:c"))])
        .into_keyed_op(server_now)
        .unwrap();
    let MapOp::OrAdd(r) = or.op else { panic!() };
    assert_eq!(
        (r.value.as_bytes(), r.tag.as_str()),
        (&[0x01u8][..], "1:0:c")
    );
}

#[test]
fn t20_write_concern_parsing_defaults_to_memory() {
    assert_eq!(parse_write_concern(None), WriteConcern::Memory);
    assert_eq!(
        parse_write_concern(Some("PERSISTED")),
        WriteConcern::Persisted
    );
    assert_eq!(
        parse_write_concern(Some("FIRE_AND_FORGET")),
        WriteConcern::FireAndForget
    );
    assert_eq!(
        parse_write_concern(Some("EVENTUALLY")),
        WriteConcern::Memory
    );
    assert_eq!(parse_write_concern(Some("applied")), WriteConcern::Memory);

    let frame = enc(&map(vec![
        ("type", "OP_BATCH".into()),
        (
            "payload",
            map(vec![
                (
                    "ops",
                    V::Array(vec![
                        map(vec![
                            ("mapName", "m".into()),
                            ("key", "a".into()),
                            ("record", lww(Some(1u64.into()), 1)),
                        ]),
                        map(vec![
                            ("mapName", "m".into()),
                            ("key", "b".into()),
                            ("record", lww(Some(1u64.into()), 1)),
                            ("writeConcern", "PERSISTED".into()),
                        ]),
                        map(vec![
                            ("mapName", "m".into()),
                            ("key", "c".into()),
                            ("record", lww(Some(1u64.into()), 1)),
                            ("writeConcern", "NONSENSE".into()),
                        ]),
                    ]),
                ),
                ("writeConcern", "REPLICATED".into()),
            ]),
        ),
    ]));
    let Ok(Decoded::Message(Message::OpBatch { payload })) = decode_frame(&frame) else {
        panic!()
    };
    let levels: Vec<_> = payload
        .ops
        .iter()
        .map(|o| payload.write_concern_for(o))
        .collect();
    assert_eq!(
        levels,
        [
            WriteConcern::Replicated,
            WriteConcern::Persisted,
            WriteConcern::Memory
        ]
    );
    // the unknown name survives re-encoding untouched
    assert_eq!(payload.ops[2].write_concern.as_deref(), Some("NONSENSE"));
}

fn raw(v: &V) -> RawValue {
    RawMsgpack::from_value(v).into_raw_value()
}

fn sample_ops() -> Vec<KeyedOp> {
    let long = "k".repeat(300);
    let huge = "v".repeat(70_000);
    vec![
        KeyedOp {
            map: "users".into(),
            key: "u1".into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(raw(&map(vec![
                    ("name", "Ann".into()),
                    ("age", 30u64.into()),
                ]))),
                timestamp: Timestamp::new(1_700_000_000_000, 3, "node-1"),
                ttl_ms: ROption::RNone,
            }),
        },
        KeyedOp {
            map: "users".into(),
            key: long.as_str().into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RNone,
                timestamp: Timestamp::new(u64::MAX, u32::MAX, "n"),
                ttl_ms: ROption::RSome(70_000),
            }),
        },
        KeyedOp {
            map: "x".repeat(40).as_str().into(),
            key: "k".into(),
            op: MapOp::OrAdd(OrRecord {
                value: raw(&V::from(huge.as_str())),
                timestamp: Timestamp::new(200, 0, "n2"),
                tag: "200:0:n2".into(),
                ttl_ms: ROption::RSome(5),
            }),
        },
        KeyedOp {
            map: "tags".into(),
            key: "k".into(),
            op: MapOp::OrAdd(OrRecord {
                value: raw(&V::Array((0..20).map(V::from).collect())),
                timestamp: Timestamp::new(65_536, 256, "n2"),
                tag: "65536:256:n2".into(),
                ttl_ms: ROption::RNone,
            }),
        },
        KeyedOp {
            map: "tags".into(),
            key: "k".into(),
            op: MapOp::OrRemove("200:0:n2".into()),
        },
    ]
}

#[test]
fn t30_fast_server_event_equals_the_serde_encoding() {
    for k in sample_ops() {
        let mut fast_bytes = Vec::new();
        fast::write_server_event(&mut fast_bytes, &k);
        let msg = Message::ServerEvent {
            payload: ServerEvent::from_keyed_op(&k),
        };
        assert_eq!(fast_bytes, msg.encode().unwrap(), "{k:?}");
        assert_eq!(decode_frame(&fast_bytes), Ok(Decoded::Message(msg)));
    }
    let ops = sample_ops();
    let mut fast_bytes = Vec::new();
    fast::write_server_batch_event(&mut fast_bytes, &ops);
    let msg = Message::ServerBatchEvent {
        payload: hangar_host::protocol::messages::ServerBatchEvent {
            events: ops.iter().map(ServerEvent::from_keyed_op).collect(),
        },
    };
    assert_eq!(fast_bytes, msg.encode().unwrap());
}

#[test]
fn t31_server_event_types_follow_the_op() {
    let types: Vec<_> = sample_ops()
        .iter()
        .map(|k| ServerEvent::from_keyed_op(k).event_type.as_str())
        .collect();
    assert_eq!(types, ["PUT", "REMOVE", "OR_ADD", "OR_ADD", "OR_REMOVE"]);
    let tomb = ServerEvent::from_keyed_op(&sample_ops()[1]);
    assert_eq!(tomb.record.unwrap().value, None);
}

#[test]
fn t32_fast_query_update_and_op_ack_equal_the_serde_encoding() {
    let value = raw(&map(vec![("name", "Charlie".into())]));
    for change in [ChangeType::Enter, ChangeType::Update, ChangeType::Leave] {
        let mut b = Vec::new();
        fast::write_query_update(&mut b, "q-1", "user-3", &value, change);
        let msg = Message::QueryUpdate {
            payload: QueryUpdatePayload {
                query_id: "q-1".into(),
                key: "user-3".into(),
                value: RawMsgpack::from_raw_value(value.clone()),
                change_type: change,
            },
        };
        assert_eq!(b, msg.encode().unwrap());
    }

    let results: Vec<OpResult> = (0..20)
        .map(|i| OpResult {
            op_id: i.to_string(),
            success: i % 3 != 0,
            achieved_level: WriteConcern::ALL[i % 5],
            error: (i % 3 == 0).then(|| format!("op {i} timed out")),
            unchanged: i % 4 == 1,
        })
        .collect();
    let cases: Vec<(Option<WriteConcern>, Option<&[OpResult]>)> = vec![
        (None, None),
        (Some(WriteConcern::Applied), None),
        (Some(WriteConcern::Persisted), Some(&results[..])),
        (None, Some(&results[..1])),
    ];
    for (level, res) in cases {
        let mut b = Vec::new();
        fast::write_op_ack(&mut b, "op-1", level, res);
        let msg = Message::OpAck {
            payload: OpAck {
                last_id: "op-1".into(),
                achieved_level: level,
                results: res.map(<[OpResult]>::to_vec),
            },
        };
        assert_eq!(b, msg.encode().unwrap());
        assert_eq!(decode_frame(&b), Ok(Decoded::Message(msg)));
    }
}

#[test]
fn t33_fast_query_resp_equals_the_serde_encoding() {
    use hangar_core::module::storage_types::QueryRow;
    use hangar_host::protocol::messages::{CursorStatus, QueryResp, QueryResultEntry};
    let rows: Vec<QueryRow> = (0..40)
        .map(|i| QueryRow {
            key: format!("user-{i}").into(),
            value: raw(&map(vec![
                ("n", V::from(i)),
                ("name", "x".repeat(i).into()),
            ])),
        })
        .collect();
    for (n, cursor, more, status) in [
        (0, None, false, CursorStatus::None),
        (3, Some("abc"), true, CursorStatus::Valid),
        (40, None, false, CursorStatus::Expired),
        (1, Some("c"), true, CursorStatus::Invalid),
    ] {
        let mut b = Vec::new();
        fast::write_query_resp(&mut b, "q-9", &rows[..n], cursor, more, status);
        let msg = Message::QueryResp {
            payload: QueryResp {
                query_id: "q-9".into(),
                results: rows[..n]
                    .iter()
                    .map(|r| QueryResultEntry {
                        key: r.key.to_string(),
                        value: RawMsgpack::from_raw_value(r.value.clone()),
                    })
                    .collect(),
                next_cursor: cursor.map(str::to_string),
                has_more: Some(more),
                cursor_status: Some(status),
                merkle_root_hash: None,
                error: None,
                code: None,
            },
        };
        assert_eq!(b, msg.encode().unwrap());
        assert_eq!(decode_frame(&b), Ok(Decoded::Message(msg)));
    }
}
