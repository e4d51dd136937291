//! Default storage module (filled in by the storage work).
//!
//! # Layout
//!
//! - `crdt`: the LWW and OR maps with their Merkle tries.

pub mod crdt;
