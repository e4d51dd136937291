//! Default storage module (filled in by the storage work).
//!
//! # Layout
//!
//! - `persistence`: the persistence backend trait, the redb and memory
//!   backends, and group commit.

pub mod persistence;
