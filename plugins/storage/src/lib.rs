//! Default storage module (filled in by the storage work).
//!
//! # Layout
//!
//! - `query`: query engine and live-query registry (filter, sort, cursor,
//!   projection; ENTER / UPDATE / LEAVE fan-out).

pub mod query;
