//! `DEVICE_HELLO` → `DEVICE_ACK`, and `CLIENT_APPLY_ACK`.
//!
//! A client without a token says `DEVICE_HELLO` once its socket opens and
//! waits (briefly) for `DEVICE_ACK` before it flushes its writes and syncs.
//! This node keeps no device identities, so the ack carries no `deviceId`
//! or `deviceToken`; it is an answer, so the client proceeds at once.
//!
//! `CLIENT_APPLY_ACK {cursor}` is the client confirming the OR tombstone
//! epoch it has durably applied. The connection keeps the highest cursor
//! it was told (cumulative: it only moves up); nothing is answered.

use crate::protocol::messages::{ClientApplyAck, DeviceAck, DeviceHello};
use crate::protocol::Message;
use crate::server::session::Session;

/// Answers `DEVICE_HELLO` with an empty `DEVICE_ACK` (every hello is
/// answered, so a client that said it twice is not left waiting).
pub async fn hello(s: &Session, h: DeviceHello) {
    tracing::debug!(
        conn = s.id,
        has_token = h.device_token.is_some(),
        "device hello"
    );
    s.reply(&Message::DeviceAck(DeviceAck::default())).await;
}

/// Records the client's confirmed epoch: the highest one seen on this
/// connection. No answer.
pub fn apply_ack(s: &mut Session, a: ClientApplyAck) {
    s.apply_cursor = s.apply_cursor.max(a.cursor);
}
