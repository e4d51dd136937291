//! Hangar's default storage module, built as a plugin (`cdylib`) and as a
//! library (`rlib`) for embedding.
//!
//! # Layout
//!
//! - `module`: [`DefaultStorage`], the `StorageModule` implementation.
//! - `crdt`: the LWW and OR maps with their Merkle tries.

pub mod crdt;
pub mod module;

pub use module::{create, DefaultStorage};

hangar_plugin_sdk::export_storage_plugin!(crate::module::create);
