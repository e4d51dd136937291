//! The cluster transport over real sockets on 127.0.0.1, numbered by theme:
//!
//! - `t10`: request/response, one-way messages, sends to self, many
//!   concurrent requests (`t11`).
//! - `t20`: the handshake: other cluster ids, frames before `Hello`.
//! - `t30`: mutual TLS: one CA talks; another CA, plain TCP and a missing
//!   client certificate are refused; bad certificate files.
//! - `t40`: backpressure against a peer that never reads, and (`t42`) the
//!   replication budget against a backup that never answers.
//! - `t50`: a peer that dies and comes back.
//! - `t60`: oversized and malformed frames.
//! - `t70`: which receivers of a replicated write are asked for durability.

mod support;
mod t10_basics;
mod t20_handshake;
mod t30_tls;
mod t40_backpressure;
mod t50_reconnect;
mod t60_frames;
mod t70_replication_durability;
