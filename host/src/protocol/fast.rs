//! Hand-written encoders for the hot server-to-client frames.
//!
//! `SERVER_EVENT`, `SERVER_BATCH_EVENT`, `QUERY_UPDATE` and `OP_ACK` are sent
//! once per write per subscriber, and `QUERY_RESP` carries whole result
//! pages, so they skip serde: each writes msgpack
//! straight into the caller's buffer from borrowed core values, and record
//! values are copied in as the raw bytes they are stored as, never decoded.
//!
//! Contract: the output is byte-for-byte what [`super::Message::encode`]
//! writes for the same message when the raw values are canonically encoded
//! (tests hold the two together), and it decodes with
//! [`super::decode_frame`]. Raw values are trusted to be valid msgpack, as
//! [`hangar_core::RawValue`] promises.

use hangar_core::{KeyedOp, LwwRecord, MapOp, OrRecord, Timestamp, WriteConcern};

use hangar_core::module::storage_types::QueryRow;

use super::messages::{ChangeType, CursorStatus, OpResult, ServerEventType};

fn map_len(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=15 => out.push(0x80 | n as u8),
        16..=0xffff => {
            out.push(0xde);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdf);
            out.extend_from_slice(
                &u32::try_from(n)
                    .expect("map under 2^32 entries")
                    .to_be_bytes(),
            );
        }
    }
}

fn array_len(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=15 => out.push(0x90 | n as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(
                &u32::try_from(n)
                    .expect("array under 2^32 elements")
                    .to_be_bytes(),
            );
        }
    }
}

fn str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    match n {
        0..=31 => out.push(0xa0 | n as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, n as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&u32::try_from(n).expect("string under 4 GiB").to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

// each arm checks the range first
fn uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Writes `{"type": <ty>, "payload": ` and leaves the payload to the caller.
fn envelope(out: &mut Vec<u8>, ty: &str) {
    map_len(out, 2);
    str(out, "type");
    str(out, ty);
    str(out, "payload");
}

fn timestamp(out: &mut Vec<u8>, ts: &Timestamp) {
    map_len(out, 3);
    str(out, "millis");
    uint(out, ts.millis);
    str(out, "counter");
    uint(out, u64::from(ts.counter));
    str(out, "nodeId");
    str(out, ts.node_id.as_str());
}

fn lww_record(out: &mut Vec<u8>, r: &LwwRecord) {
    let ttl = r.ttl_ms.into_option();
    map_len(out, 2 + usize::from(ttl.is_some()));
    str(out, "value");
    match r.value.as_ref().into_option() {
        Some(v) => out.extend_from_slice(v.as_bytes()),
        None => out.push(0xc0),
    }
    str(out, "timestamp");
    timestamp(out, &r.timestamp);
    if let Some(ttl) = ttl {
        str(out, "ttlMs");
        uint(out, ttl);
    }
}

fn or_record(out: &mut Vec<u8>, r: &OrRecord) {
    let ttl = r.ttl_ms.into_option();
    map_len(out, 3 + usize::from(ttl.is_some()));
    str(out, "value");
    out.extend_from_slice(r.value.as_bytes());
    str(out, "timestamp");
    timestamp(out, &r.timestamp);
    str(out, "tag");
    str(out, r.tag.as_str());
    if let Some(ttl) = ttl {
        str(out, "ttlMs");
        uint(out, ttl);
    }
}

fn server_event_payload(out: &mut Vec<u8>, op: &KeyedOp) {
    map_len(out, 4);
    str(out, "mapName");
    str(out, op.map.as_str());
    str(out, "eventType");
    let event_type = match &op.op {
        MapOp::Lww(r) if r.is_tombstone() => ServerEventType::Remove,
        MapOp::Lww(_) => ServerEventType::Put,
        MapOp::OrAdd(_) => ServerEventType::OrAdd,
        MapOp::OrRemove(_) => ServerEventType::OrRemove,
    };
    str(out, event_type.as_str());
    str(out, "key");
    str(out, op.key.as_str());
    match &op.op {
        MapOp::Lww(r) => {
            str(out, "record");
            lww_record(out, r);
        }
        MapOp::OrAdd(r) => {
            str(out, "orRecord");
            or_record(out, r);
        }
        MapOp::OrRemove(tag) => {
            str(out, "orTag");
            str(out, tag.as_str());
        }
    }
}

/// Appends a `SERVER_EVENT` frame for an applied op to `out`: the same
/// message as [`super::messages::ServerEvent::from_keyed_op`] gives.
pub fn write_server_event(out: &mut Vec<u8>, op: &KeyedOp) {
    envelope(out, "SERVER_EVENT");
    server_event_payload(out, op);
}

/// Appends a `SERVER_BATCH_EVENT` frame carrying one event per op.
pub fn write_server_batch_event(out: &mut Vec<u8>, ops: &[KeyedOp]) {
    envelope(out, "SERVER_BATCH_EVENT");
    map_len(out, 1);
    str(out, "events");
    array_len(out, ops.len());
    for op in ops {
        server_event_payload(out, op);
    }
}

/// Appends a `QUERY_UPDATE` frame; `value` is the stored msgpack bytes.
pub fn write_query_update(
    out: &mut Vec<u8>,
    query_id: &str,
    key: &str,
    value: &hangar_core::RawValue,
    change: ChangeType,
) {
    envelope(out, "QUERY_UPDATE");
    map_len(out, 4);
    str(out, "queryId");
    str(out, query_id);
    str(out, "key");
    str(out, key);
    str(out, "value");
    out.extend_from_slice(value.as_bytes());
    str(out, "changeType");
    str(out, change.as_str());
}

/// Appends an `OP_ACK` frame. `results` is written only when given.
pub fn write_op_ack(
    out: &mut Vec<u8>,
    last_id: &str,
    achieved_level: Option<WriteConcern>,
    results: Option<&[OpResult]>,
) {
    envelope(out, "OP_ACK");
    map_len(
        out,
        1 + usize::from(achieved_level.is_some()) + usize::from(results.is_some()),
    );
    str(out, "lastId");
    str(out, last_id);
    if let Some(level) = achieved_level {
        str(out, "achievedLevel");
        str(out, level.as_str());
    }
    if let Some(results) = results {
        str(out, "results");
        array_len(out, results.len());
        for r in results {
            map_len(
                out,
                3 + usize::from(r.error.is_some()) + usize::from(r.unchanged),
            );
            str(out, "opId");
            str(out, &r.op_id);
            str(out, "success");
            out.push(if r.success { 0xc3 } else { 0xc2 });
            str(out, "achievedLevel");
            str(out, r.achieved_level.as_str());
            if let Some(e) = &r.error {
                str(out, "error");
                str(out, e);
            }
            if r.unchanged {
                str(out, "unchanged");
                out.push(0xc3);
            }
        }
    }
}

fn cursor_status(c: CursorStatus) -> &'static str {
    match c {
        CursorStatus::Valid => "valid",
        CursorStatus::Expired => "expired",
        CursorStatus::Invalid => "invalid",
        CursorStatus::None => "none",
    }
}

/// Appends a successful `QUERY_RESP` frame: the page's rows (values copied
/// as the stored msgpack bytes), `nextCursor` when given, `hasMore` and
/// `cursorStatus`.
pub fn write_query_resp(
    out: &mut Vec<u8>,
    query_id: &str,
    rows: &[QueryRow],
    next_cursor: Option<&str>,
    has_more: bool,
    status: CursorStatus,
) {
    envelope(out, "QUERY_RESP");
    map_len(out, 4 + usize::from(next_cursor.is_some()));
    str(out, "queryId");
    str(out, query_id);
    str(out, "results");
    array_len(out, rows.len());
    for r in rows {
        map_len(out, 2);
        str(out, "key");
        str(out, r.key.as_str());
        str(out, "value");
        out.extend_from_slice(r.value.as_bytes());
    }
    if let Some(c) = next_cursor {
        str(out, "nextCursor");
        str(out, c);
    }
    str(out, "hasMore");
    out.push(if has_more { 0xc3 } else { 0xc2 });
    str(out, "cursorStatus");
    str(out, cursor_status(status));
}
