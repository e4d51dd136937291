//! Wire conformance against real TopGun client frames.
//!
//! `tests/fixtures/wire/` holds frames produced by the TypeScript client
//! (msgpackr: map16 headers, float64 timestamps) with a `.json` twin showing
//! each decoded structure. For every fixture whose `type` this node handles,
//! the test decodes the frame, converts the typed message back to a dynamic
//! value and compares it with the twin, re-encodes it, and checks the
//! re-encoded frame decodes to the same value. Fixtures of other types must
//! decode to `Decoded::Unknown`, never to an error.
//!
//! Honesty note: the comparison is structural (JSON values). JSON cannot
//! tell an integer from a whole float, and msgpackr sends large integers as
//! float64, so whole floats inside dynamic values are compared as integers.
//! Typed integer fields need no such allowance: they re-encode as integers.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hangar_host::protocol::{decode_frame, unpack_batch, Decoded, FrameError, Message};
use serde_json::{json, Value as Json};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
}

/// msgpack → JSON the way the fixture twins were written (Node's
/// `JSON.stringify` of the decoded object, Buffers as `{type, data}`).
fn to_json(v: &rmpv::Value) -> Json {
    use rmpv::Value as V;
    match v {
        V::Nil => Json::Null,
        V::Boolean(b) => json!(b),
        V::Integer(i) => i.as_u64().map_or_else(|| json!(i.as_i64()), |u| json!(u)),
        V::F32(f) => float(f64::from(*f)),
        V::F64(f) => float(*f),
        V::String(s) => json!(s.as_str().expect("fixture strings are UTF-8")),
        V::Binary(b) => json!({"type": "Buffer", "data": b}),
        V::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        V::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), to_json(v)))
                .collect(),
        ),
        V::Ext(..) => panic!("no fixture carries an ext value"),
    }
}

fn float(f: f64) -> Json {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn message_json(m: &Message) -> Json {
    let bytes = m.encode().expect("decoded messages re-encode");
    let v = rmpv::decode::read_value(&mut bytes.as_slice()).expect("encoder writes msgpack");
    to_json(&v)
}

#[test]
fn t10_every_handled_fixture_round_trips_to_its_json_twin() {
    let mut handled = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut names: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msgpack"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 60,
        "expected the full fixture set, found {}",
        names.len()
    );

    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let frame = std::fs::read(&path).unwrap();
        let twin: Json =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let Some(twin_type) = twin["type"].as_str().map(str::to_owned) else {
            // HTTP_SYNC_* are `/sync` bodies, not tagged frames.
            assert_eq!(decode_frame(&frame), Err(FrameError::MissingType), "{name}");
            continue;
        };
        match decode_frame(&frame) {
            Ok(Decoded::Message(m)) => {
                assert_eq!(m.type_name(), twin_type, "{name}");
                let first = message_json(&m);
                assert_eq!(
                    first, twin,
                    "{name}: decoded message differs from its JSON twin"
                );
                let again = m.encode().unwrap();
                let Ok(Decoded::Message(m2)) = decode_frame(&again) else {
                    panic!("{name}: re-encoded frame does not decode");
                };
                assert_eq!(message_json(&m2), twin, "{name}: second round trip differs");
                // After one pass the encoding is canonical: encoding is stable.
                assert_eq!(
                    m2.encode().unwrap(),
                    again,
                    "{name}: re-encoding is not stable"
                );
                handled.insert(twin_type);
            }
            Ok(Decoded::Unknown { type_name }) => {
                assert_eq!(type_name, twin_type, "{name}");
                assert!(
                    !Message::TYPE_NAMES.contains(&type_name.as_str()),
                    "{name}: handled type {type_name} decoded as unknown"
                );
                unknown.insert(type_name);
            }
            Err(e) => panic!("{name}: fixture failed to decode: {e}"),
        }
    }

    // Every type the brief lists that has a fixture was really checked.
    let expected: BTreeSet<String> = [
        "AUTH",
        "AUTH_ACK",
        "AUTH_FAIL",
        "AUTH_REQUIRED",
        "BATCH",
        "CLIENT_OP",
        "COUNTER_REQUEST",
        "COUNTER_SYNC",
        "ENTRY_PROCESS",
        "ENTRY_PROCESS_RESPONSE",
        "ERROR",
        "GC_PRUNE",
        "JOURNAL_EVENT",
        "JOURNAL_SUBSCRIBE",
        "LIST_RESOLVERS",
        "LIST_RESOLVERS_RESPONSE",
        "LOCK_GRANTED",
        "LOCK_RELEASE",
        "LOCK_RELEASED",
        "LOCK_REQUEST",
        "MERKLE_REQ_BUCKET",
        "OP_ACK",
        "OP_BATCH",
        "OP_REJECTED",
        "ORMAP_SYNC_INIT",
        "PARTITION_MAP",
        "PARTITION_MAP_REQUEST",
        "PING",
        "PONG",
        "QUERY_RESP",
        "QUERY_SUB",
        "QUERY_UNSUB",
        "QUERY_UPDATE",
        "REGISTER_RESOLVER",
        "SEARCH",
        "SEARCH_RESP",
        "SEARCH_SUB",
        "SEARCH_UNSUB",
        "SEARCH_UPDATE",
        "SERVER_BATCH_EVENT",
        "SERVER_EVENT",
        "SYNC_INIT",
        "SYNC_RESET_REQUIRED",
        "SYNC_RESP_BUCKETS",
        "SYNC_RESP_ROOT",
        "TOPIC_MESSAGE",
        "TOPIC_PUB",
        "TOPIC_SUB",
        "TOPIC_UNSUB",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(handled, expected);
    assert!(unknown.contains("CLUSTER_SEARCH_REQ") && unknown.contains("CLUSTER_SUB_REGISTER"));
}

#[test]
fn t11_fixture_float64_timestamps_decode_as_integers() {
    let frame = std::fs::read(fixtures_dir().join("PING.msgpack")).unwrap();
    // msgpackr wrote Date.now()-sized numbers as float64 (0xcb)
    assert!(frame.windows(1).any(|w| w[0] == 0xcb));
    let Ok(Decoded::Message(Message::Ping(p))) = decode_frame(&frame) else {
        panic!("PING fixture");
    };
    assert_eq!(p.timestamp, 1_700_000_000_000);
}

#[test]
fn t12_batch_fixture_decodes_but_its_junk_data_does_not_unpack() {
    let frame = std::fs::read(fixtures_dir().join("BATCH.msgpack")).unwrap();
    let Ok(Decoded::Message(Message::Batch(b))) = decode_frame(&frame) else {
        panic!("BATCH fixture");
    };
    assert_eq!(
        (b.count, b.data.as_slice()),
        (3, [0xde, 0xad, 0xbe, 0xef].as_slice())
    );
    // 0xdeadbeef is neither a valid length prefix nor 3 items: refused whole.
    assert!(matches!(
        unpack_batch(&b),
        Err(FrameError::BatchFraming { index: 0, .. })
    ));
}
