//! Hangar core: what the host and every plugin agree on.
//!
//! # Layout
//!
//! - `hash`: FNV-1a over UTF-16 and the 271-partition function (wire contracts).
//! - `types`: timestamps, records, ops, write-concern and consistency levels.
//! - `hlc`: the hybrid logical clock.
//! - `merkle`: the depth-3 Merkle tries of LWW and OR maps (sync and repair digests).
//! - `error`: [`ModuleError`], the error of every module call.
//! - `config`: module configs, every default written down.
//! - `settings`: plugin-owned settings: the opaque value a plugin decodes
//!   and validates itself, and the description `hangar plugins inspect`
//!   prints.
//! - `module`: the native `StorageModule` / `ClusterModule` traits, the
//!   partition view, the storage accessor, host services, and their types;
//!   `module::wrapper` lets a module wrap another and change a few methods.
//! - `abi`: the stable plugin ABI: declaration, root module, `#[sabi_trait]`
//!   mirrors of the module traits, adapters both ways, `export_plugin!`.
//!
//! `core` never depends on tokio: module futures are executor-agnostic.

pub mod abi;
pub mod config;
pub mod error;
pub mod hash;
pub mod hlc;
pub mod merkle;
pub mod module;
pub mod settings;
pub mod types;

pub use error::{ErrorKind, ModuleError, ModuleResult};
pub use hash::{fnv1a_utf16, partition_of, PARTITION_COUNT};
pub use hlc::{Hlc, HlcError};
pub use types::{
    ConsistencyLevel, KeyedOp, LwwRecord, MapKind, MapOp, OrRecord, RawValue, Timestamp,
    WriteConcern,
};
