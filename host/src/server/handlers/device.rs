//! `DEVICE_HELLO` → `DEVICE_ACK`, and `CLIENT_APPLY_ACK`.
//!
//! A client without a token says `DEVICE_HELLO` once its socket opens and
//! waits (briefly) for `DEVICE_ACK` before it flushes its writes and syncs.
//! The hello binds the connection to a device identity
//! ([`crate::server::epochs::devices`]): the ack carries the `deviceId`,
//! and a `deviceToken` when one was minted. Every hello is answered (a
//! client that said it twice is not left waiting); the last one binds.
//!
//! `CLIENT_APPLY_ACK {cursor}` is the client confirming the OR tombstone
//! epoch it has durably applied: the device's cursor moves up to it,
//! clamped as [`crate::server::epochs`] describes. Nothing is answered.

use crate::protocol::messages::{ClientApplyAck, DeviceAck, DeviceHello};
use crate::protocol::Message;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// The namespace device identities of this connection live in: the
/// principal's user id, `""` without auth.
fn namespace(s: &Session) -> &str {
    s.principal.as_ref().map_or("", |p| p.user_id.as_str())
}

/// Binds the connection to the device `token` names (or a new one);
/// returns the device id and the new token, if one was minted.
pub fn bind(
    fe: &FrontEnd,
    s: &mut Session,
    token: Option<&str>,
) -> (Option<String>, Option<String>) {
    match fe.epochs.bind(namespace(s), token) {
        Some(b) => {
            s.device = Some(b.key);
            (Some(b.device_id), b.new_token)
        }
        None => (None, None),
    }
}

/// Answers `DEVICE_HELLO` with `DEVICE_ACK {deviceId, deviceToken?}`.
pub async fn hello(fe: &FrontEnd, s: &mut Session, h: DeviceHello) {
    let (device_id, device_token) = bind(fe, s, h.device_token.as_deref());
    tracing::debug!(
        conn = s.id,
        had_token = h.device_token.is_some(),
        minted = device_token.is_some(),
        "device hello"
    );
    s.reply(&Message::DeviceAck(DeviceAck {
        device_id,
        device_token,
    }))
    .await;
}

/// Records the client's confirmed epoch for its device (ignored without
/// one). No answer.
pub fn apply_ack(fe: &FrontEnd, s: &mut Session, a: ClientApplyAck) {
    s.apply_cursor = s.apply_cursor.max(a.cursor);
    let Some(device) = s.device.as_deref() else {
        tracing::debug!(conn = s.id, "CLIENT_APPLY_ACK without a device ignored");
        return;
    };
    if let Some(clamped) = fe.epochs.apply_ack(device, a.cursor, s.max_epoch_sent) {
        s.or_knowledge = Some(s.or_knowledge.map_or(clamped, |k| k.max(clamped)));
    }
}
