//! Deps and plugin files for tests.

use std::path::PathBuf;
use std::sync::Arc;

use hangar_core::abi::PluginKind;
use hangar_core::config::{ClusterModuleConfig, PluginSettings, StorageModuleConfig};
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::ModuleResult;
use hangar_host::plugin::{self, Expectation, LoadError, LoadedPlugin};

pub use hangar_testkit::support::{cluster_deps, join_error_message, storage_deps, AllLocal};

/// A storage config for node `node` on the embedded (redb) backend in
/// `dir`, with a 500 ms write-ack timeout.
#[must_use]
pub fn embedded_storage_config(node: &str, dir: &std::path::Path) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 500,
        ..StorageModuleConfig::new(
            node,
            dir,
            PluginSettings::default().with("backend", "embedded"),
        )
    }
}

/// An in-memory storage config for node `node`.
#[must_use]
pub fn storage_config(node: &str) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 500,
        ..StorageModuleConfig::new(
            node,
            "./data",
            PluginSettings::default().with("backend", "memory"),
        )
    }
}

/// A cluster config for a lone node `node`: loopback transport on a free
/// port, its own fresh state directory (kept after the test, under the
/// system temp dir).
///
/// # Panics
/// If no temporary directory can be made.
#[must_use]
pub fn cluster_config(node: &str) -> ClusterModuleConfig {
    let dir = tempfile::Builder::new()
        .prefix("hangar-cluster-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    ClusterModuleConfig {
        client_endpoint: Some("ws://127.0.0.1:1/ws".to_string()),
        ..ClusterModuleConfig::new(
            node,
            dir,
            PluginSettings::default().with("host", "127.0.0.1"),
        )
    }
}

/// The directory cargo builds this workspace's artifacts into
/// (`target/<profile>`), found from the running test executable.
///
/// # Panics
/// If the test executable's location is unknown.
#[must_use]
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("exe dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The `hangar` binary next to the test executables (`cargo build` or
/// `cargo test --workspace` builds it); panics naming the command to run
/// when it is missing.
#[must_use]
pub fn hangar_bin() -> PathBuf {
    let bin = target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found; build it first (cargo build -p hangar-host)",
        bin.display()
    );
    bin
}

/// The shared library of a plugin crate of this workspace.
///
/// # Panics
/// If cargo has not built it (it is a workspace member, so `cargo test
/// --workspace` builds it before any test runs).
#[must_use]
pub fn plugin_file(crate_name: &str) -> PathBuf {
    let file = plugin::library_file_name(crate_name);
    let dir = target_dir();
    for candidate in [dir.join("deps").join(&file), dir.join(&file)] {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{file} not found under {}; build the workspace first (cargo test --workspace builds it)",
        dir.display()
    )
}

/// Loads a workspace plugin for a slot of `kind` with any version.
///
/// # Errors
/// The loader's refusal.
pub fn load(crate_name: &str, kind: PluginKind) -> Result<LoadedPlugin, LoadError> {
    plugin::load(
        &plugin_file(crate_name),
        &Expectation {
            kind,
            version: semver::VersionReq::STAR,
        },
    )
}

/// Loads a storage plugin and builds its module (in-memory config).
///
/// # Panics
/// If loading or construction fails.
#[must_use]
pub fn loaded_storage(crate_name: &str, node: &str) -> Arc<dyn StorageModule> {
    loaded_storage_with(crate_name, &storage_config(node), &storage_deps(node))
}

/// Loads a storage plugin and builds its module from `config` and `deps`.
///
/// # Panics
/// If loading or construction fails.
#[must_use]
pub fn loaded_storage_with(
    crate_name: &str,
    config: &StorageModuleConfig,
    deps: &StorageDeps,
) -> Arc<dyn StorageModule> {
    let p = load(crate_name, PluginKind::Storage).expect("storage plugin loads");
    plugin::instantiate_storage(&p, config, deps).expect("storage plugin builds its module")
}

/// Loads a cluster plugin and builds its module.
///
/// # Panics
/// If loading or construction fails.
#[must_use]
pub fn loaded_cluster(crate_name: &str, node: &str) -> Arc<dyn ClusterModule> {
    let p = load(crate_name, PluginKind::Cluster).expect("cluster plugin loads");
    plugin::instantiate_cluster(&p, &cluster_config(node), &cluster_deps(node))
        .expect("cluster plugin builds its module")
}

/// Loads a cluster plugin and builds its module with `config` and `deps`
/// (as the host would).
///
/// # Errors
/// What the plugin's constructor refuses, as a `CONFIG` error with the
/// loader's text.
///
/// # Panics
/// If the plugin cannot be loaded.
pub fn loaded_cluster_with(
    crate_name: &str,
    config: &ClusterModuleConfig,
    deps: &ClusterDeps,
) -> ModuleResult<Arc<dyn ClusterModule>> {
    let p = load(crate_name, PluginKind::Cluster).expect("cluster plugin loads");
    plugin::instantiate_cluster(&p, config, deps)
        .map_err(|e| hangar_core::ModuleError::new(hangar_core::ErrorKind::CONFIG, e.to_string()))
}
