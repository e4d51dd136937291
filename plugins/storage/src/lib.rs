//! Hangar's default storage module, built as a plugin (`cdylib`) and as a
//! library (`rlib`) for embedding.
//!
//! # Layout
//!
//! - `module`: [`DefaultStorage`], the `StorageModule` implementation.
//! - `crdt`: the LWW and OR maps with their Merkle tries.
//! - `persistence`: the persistence backend trait, the redb and memory
//!   backends, and group commit.
//! - `search`: full-text search (tokenizer, BM25 inverted index, deferred
//!   index writer).
//! - `settings`: [`StorageSettings`], the plugin's own `[storage]` settings
//!   and the environment variables it reads.
//! - `write_ack`: the write-concern levels and their acknowledgements.
//! - `tasklet`: long work cut into slices under a time budget.
//! - `event_pool`: reusable change-event payloads.
//! - `query`: query parsing and evaluation, cursors, and the live-query
//!   registry.

pub mod crdt;
pub mod event_pool;
pub mod module;
pub mod persistence;
pub mod query;
pub mod search;
pub mod settings;
pub mod tasklet;
pub mod write_ack;

pub use module::{create, create_with_backend, BackendOpener, DefaultStorage, STORE_FAILED};
pub use settings::{StorageBackendKind, StorageSettings};

hangar_plugin_sdk::export_storage_plugin!(crate::module::create, settings: crate::settings::StorageSettings);
