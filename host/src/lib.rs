//! The Hangar host library.
//!
//! # Layout
//!
//! - `protocol`: the TopGun client wire protocol (frames, messages, limits).

pub mod protocol;
