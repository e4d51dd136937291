//! The Hangar plugin SDK: what a plugin needs beside `hangar-core`.
//!
//! # Layout
//!
//! - `runtime`: [`PluginRuntime`], the tokio runtime a plugin owns, and the
//!   bridge that turns work spawned on it into executor-agnostic
//!   `ModuleFuture`s the host can poll.
//! - `logging`: forwards the plugin's `tracing` events to the host's log sink
//!   (a loaded plugin has its own copy of `tracing`, which the host's
//!   subscriber cannot see).
//! - `export_storage_plugin!` / `export_cluster_plugin!`: export a module
//!   constructor as a Hangar plugin.
//! - [`StorageWrapper`] / [`ClusterWrapper`]: wrap a module and change only
//!   the methods you need.
//!
//! Statically linked into a host (embedding), a plugin crate uses the host's
//! `tracing` directly and the forwarding is never installed.

pub mod logging;
pub mod runtime;

pub use runtime::PluginRuntime;

/// Wrap a module and change only some of its methods (the rest are
/// forwarded): see `hangar_core::module::wrapper`.
pub use hangar_core::module::wrapper::{ClusterWrapper, StorageWrapper};

#[doc(hidden)]
pub use hangar_core as __core;

/// Exports a storage-module constructor as a Hangar plugin, with the crate's
/// name, version and description as its manifest and `tracing` forwarding.
///
/// The constructor has the signature
/// `fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>`.
/// With `, settings: MySettings` (a `hangar_core::settings::Settings`
/// type) the plugin describes its settings to the host, which then passes
/// the environment variables it declares.
#[macro_export]
macro_rules! export_storage_plugin {
    ($ctor:expr) => {
        $crate::__core::export_plugin! {
            kind: Storage,
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            storage: $ctor,
            log_sink: $crate::logging::install_log_sink,
        }
    };
    ($ctor:expr, settings: $settings:ty) => {
        $crate::__core::export_plugin! {
            kind: Storage,
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            storage: $ctor,
            log_sink: $crate::logging::install_log_sink,
            settings: $settings,
        }
    };
}

/// Exports a cluster-module constructor as a Hangar plugin, with the crate's
/// name, version and description as its manifest and `tracing` forwarding.
///
/// The constructor has the signature
/// `fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>`.
/// `, settings: MySettings` as for `export_storage_plugin!`.
#[macro_export]
macro_rules! export_cluster_plugin {
    ($ctor:expr) => {
        $crate::__core::export_plugin! {
            kind: Cluster,
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            cluster: $ctor,
            log_sink: $crate::logging::install_log_sink,
        }
    };
    ($ctor:expr, settings: $settings:ty) => {
        $crate::__core::export_plugin! {
            kind: Cluster,
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            cluster: $ctor,
            log_sink: $crate::logging::install_log_sink,
            settings: $settings,
        }
    };
}
