//! Connection-level messages: the auth handshake, heartbeats and errors.
//!
//! All but `ERROR` are "flat": their fields sit beside `type`.
//!
//! Device identity (`DEVICE_HELLO` / `DEVICE_ACK`) and the client's apply
//! acknowledgements (`CLIENT_APPLY_ACK`) are decoded here too: a client
//! without a token says hello before it syncs, and waits for the ack.

use serde::{Deserialize, Serialize};

use crate::protocol::num;

/// `AUTH_REQUIRED` (S→C, flat): sent on connect when auth is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRequired {
    /// Why auth is (again) required, e.g. "token expired".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `AUTH` (C→S, flat): the client's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// A JWT.
    pub token: String,
    /// Client protocol version.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<u32>,
    /// A device token the client saved from an earlier `AUTH_ACK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// `AUTH_ACK` (S→C, flat): auth succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthAck {
    /// Server protocol version.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<u32>,
    /// The authenticated principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The device identity the server assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A token the client presents to keep that device identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// `AUTH_FAIL` (S→C, flat): auth failed; the server closes afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthFail {
    /// What was wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A status code, 401 by convention.
    #[serde(
        default,
        deserialize_with = "num::de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<u32>,
}

/// `PING` (C→S, flat): heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ping {
    /// Client clock, ms since the epoch (usually float64 on the wire).
    #[serde(deserialize_with = "num::de_u64")]
    pub timestamp: u64,
}

/// `PONG` (S→C, flat): heartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The `PING`'s timestamp, echoed.
    #[serde(deserialize_with = "num::de_u64")]
    pub timestamp: u64,
    /// Server clock, ms since the epoch.
    #[serde(deserialize_with = "num::de_u64")]
    pub server_time: u64,
}

/// `ERROR` payload (S→C): 429 overload or rate limit, 413 batch too large,
/// 500 internal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPayload {
    /// HTTP-style status code.
    #[serde(deserialize_with = "num::de_u32")]
    pub code: u32,
    /// Human-readable message.
    pub message: String,
    /// Anything else worth telling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<rmpv::Value>,
}

/// `DEVICE_HELLO` (C→S, flat): a client without a token announces itself
/// and waits (briefly) for `DEVICE_ACK` before it syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceHello {
    /// A device token saved from an earlier `DEVICE_ACK`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// `DEVICE_ACK` (S→C, flat): the answer to `DEVICE_HELLO`. Both fields are
/// optional on the wire; a node that keeps no device identities sends
/// neither, and the client then keeps whatever it had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAck {
    /// The device identity the server assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A token the client presents to keep that identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// `CLIENT_APPLY_ACK` (C→S, flat): the client confirms it durably applied
/// the data up to an OR tombstone epoch. Cumulative: it only moves up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientApplyAck {
    /// The confirmed epoch (JavaScript may send it as float64).
    #[serde(deserialize_with = "num::de_u64")]
    pub cursor: u64,
}
