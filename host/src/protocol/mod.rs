//! The TopGun client wire protocol: typed messages, hostile-input limits,
//! and the codec between them and WebSocket frames.
//!
//! Each binary WebSocket frame is one msgpack map tagged by a string `type`
//! with camelCase fields, as the TopGun client encodes it (the messages are
//! typed in `messages/`). The connection handler uses this module so:
//!
//! ```text
//! frame ──decode_frame──▶ Decoded::Message(m)    handle m
//!                         Decoded::Unknown{..}   answer ERROR 400 naming the type
//!                         Err(e)                 drop; answer ERROR {e.client_error_code(),
//!                                                e.to_string()}
//! Message::Batch(b) ──unpack_batch(b)──▶ items ──decode_batch_item──▶ as above
//! Message::ClientOp{payload} ──payload.into_keyed_op(|| hlc.now())──▶ KeyedOp
//! server → client: fast::write_* for SERVER_EVENT, QUERY_UPDATE, OP_ACK;
//!                  Message::encode for everything else
//! ```
//!
//! # Layout
//!
//! - `scan`: size, depth and length limits, checked iteratively before decoding.
//! - `de`: the serde deserializer over msgpack bytes, with raw-value capture.
//! - `num`: serde helpers reading integers that JavaScript sent as float64.
//! - `raw`: [`RawMsgpack`], dynamic values kept as their wire bytes.
//! - `messages`: the typed payload of every message, by domain.
//! - `message`: the [`Message`] enum, [`decode_frame`], [`Message::encode`].
//! - `batch`: unpacking the `BATCH` envelope.
//! - `convert`: wire writes to core ops, write-concern parsing.
//! - `fast`: hand-written encoders for the hot server-to-client frames.
//! - `error`: [`FrameError`], [`EncodeError`].

mod batch;
mod convert;
mod de;
mod error;
pub mod fast;
mod message;
pub mod messages;
pub mod num;
mod raw;
mod scan;

// Re-exports: the flat public API.
pub use batch::{
    decode_batch, decode_batch_item, pack_batch_data, split_batch_data, unpack_batch, BatchItems,
    MAX_BATCH_ITEMS,
};
pub use convert::{parse_consistency, parse_write_concern, ClientOpKind, EmptyOpError};
pub use error::{EncodeError, FrameError};
pub use message::{decode_frame, Decoded, Message};
pub use raw::RawMsgpack;
pub use scan::{check_frame, ScanReport, MAX_DEPTH, MAX_FRAME_BYTES};
