//! Fuzzes the inbound frame decoder with arbitrary bytes.
//!
//! Oracles, beyond "never panic, never abort, never allocate without bound":
//! - whatever decodes re-encodes, the re-encoded frame decodes, and encoding
//!   is stable from then on (decode∘encode is a fixed point after one pass);
//! - a BATCH is unpacked and every item decoded under the same rules;
//! - a decoded CLIENT_OP / OP_BATCH converts to core ops exactly when
//!   `kind()` says it can.
#![no_main]

use hangar_host::protocol::{decode_batch, decode_frame, Decoded, Message};
use libfuzzer_sys::fuzz_target;

fn check_ops(m: &Message) {
    let ops = match m {
        Message::ClientOp { payload } => vec![payload.clone()],
        Message::OpBatch { payload } => payload.ops.clone(),
        _ => return,
    };
    for op in ops {
        let kind = op.kind();
        let keyed = op.into_keyed_op(|| hangar_core::Timestamp::new(0, 0, "fuzz"));
        assert_eq!(kind.is_ok(), keyed.is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Decoded::Message(m)) = decode_frame(data) else {
        return;
    };
    check_ops(&m);
    if let Message::Batch(b) = &m {
        if let Ok(items) = decode_batch(b) {
            for item in items.into_iter().flatten() {
                if let Decoded::Message(inner) = item {
                    check_ops(&inner);
                }
            }
        }
    }
    let once = m.encode().expect("a decoded message re-encodes");
    let Ok(Decoded::Message(again)) = decode_frame(&once) else {
        panic!("re-encoded {} frame does not decode", m.type_name());
    };
    assert_eq!(again.encode().expect("re-encodes"), once, "encoding is not stable");
});
