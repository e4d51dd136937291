//! `PING` → `PONG {timestamp, serverTime}`, and `AUTH` once the connection
//! is past the handshake (a token refresh, or any `AUTH` with auth off).

use std::sync::Arc;

use super::Flow;
use crate::protocol::messages::{Auth, AuthAck, AuthFail, Ping, Pong};
use crate::protocol::Message;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Answers a heartbeat with the client's timestamp and the server clock.
pub async fn ping(fe: &FrontEnd, s: &Session, p: Ping) {
    s.reply(&Message::Pong(Pong {
        timestamp: p.timestamp,
        server_time: fe.node.clock.wall_millis(),
    }))
    .await;
}

/// An `AUTH` after the handshake. With auth off it is acknowledged as is;
/// with auth on the token is checked again: a valid one replaces the
/// principal, an invalid one gets `AUTH_FAIL` and the connection closes.
pub async fn reauth(fe: &Arc<FrontEnd>, s: &mut Session, a: Auth) -> Flow {
    let Some(v) = &fe.verifier else {
        let (device_id, device_token) = super::device::bind(fe, s, a.device_token.as_deref());
        s.reply(&Message::AuthAck(AuthAck {
            protocol_version: Some(1),
            device_id,
            device_token,
            ..AuthAck::default()
        }))
        .await;
        return Flow::Continue;
    };
    match v.verify(&a.token) {
        Ok(p) => {
            let user_id = Some(p.user_id.clone());
            s.principal = Some(p);
            let (device_id, device_token) = super::device::bind(fe, s, a.device_token.as_deref());
            let ack = Message::AuthAck(AuthAck {
                protocol_version: Some(1),
                user_id,
                device_id,
                device_token,
            });
            s.reply(&ack).await;
            Flow::Continue
        }
        Err(e) => {
            s.reply(&Message::AuthFail(AuthFail {
                error: Some(e.to_string()),
                code: Some(401),
            }))
            .await;
            Flow::Close(1008, "authentication failed")
        }
    }
}
