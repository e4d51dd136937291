//! Default storage module (filled in by the storage work).
//!
//! # Layout
//!
//! - `search`: full-text search, BM25 over the fields configured per map.

pub mod search;
