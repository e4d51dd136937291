//! Plugins: finding, loading and instantiating module plugins, and carrying
//! their log events into the host's `tracing` subscriber.
//!
//! - `loader`: every check before plugin code runs ([`load`], [`inspect`]).
//! - `decl_file`: the declaration read and checked from the file, before
//!   the library is opened ([`read_declaration`]).
//! - `error`: [`LoadError`], one variant per refusal.
//! - `log_sink`: the host's side of plugin log forwarding.

mod decl_file;
mod error;
mod loader;
mod log_sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::std_types::RVec;
use hangar_core::abi::{
    cluster_from_ffi, storage_from_ffi, FfiClusterDeps, FfiStorageDeps, PluginKind,
};
use hangar_core::config::{decode_config, encode_config, ClusterModuleConfig, StorageModuleConfig};
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::settings::{PluginSettings, SettingsDescription};
use hangar_core::ModuleError;

pub use decl_file::{read_declaration, FileDeclaration, RootSymbol, MAX_MANIFEST_STRING};
pub use error::LoadError;
pub use loader::{inspect, load, Expectation, Inspection, LoadedPlugin, Manifest};
pub use log_sink::HostLogSink;

fn init_error(plugin: &LoadedPlugin, kind: PluginKind, e: ModuleError) -> LoadError {
    if e.is_panic() {
        LoadError::InitPanicked {
            path: plugin.path.clone(),
            plugin: plugin.manifest.name.clone(),
            kind: kind.to_string(),
            message: e.message.to_string(),
        }
    } else {
        LoadError::InitFailed {
            path: plugin.path.clone(),
            plugin: plugin.manifest.name.clone(),
            kind: kind.to_string(),
            message: e.to_string(),
        }
    }
}

fn install_log_sink(plugin: &LoadedPlugin) -> Result<(), LoadError> {
    let sink = HostLogSink::boxed();
    (plugin.root.set_log_sink())(sink)
        .into_result()
        .map_err(|e| {
            init_error(
                plugin,
                plugin.manifest.kind.unwrap_or(PluginKind::Storage),
                e,
            )
        })
}

/// What a loaded plugin says about its settings (its root module's
/// `describe_settings`): defaults, one line per key, the environment
/// variables it reads.
///
/// # Errors
/// [`LoadError::InitFailed`] / [`LoadError::InitPanicked`] when the plugin
/// fails or panics describing them, or answers with something that is not a
/// description.
pub fn describe_settings(plugin: &LoadedPlugin) -> Result<SettingsDescription, LoadError> {
    let kind = plugin.manifest.kind.unwrap_or(PluginKind::Storage);
    let bytes: RVec<u8> = (plugin.root.describe_settings())()
        .into_result()
        .map_err(|e| init_error(plugin, kind, e))?;
    decode_config(bytes.as_slice()).map_err(|e| init_error(plugin, kind, e))
}

/// Fills the settings' plugin name and the environment variables the
/// plugin declared (read through `get`), for its constructor. Variables
/// already in `settings.env` were set by command-line flags: they win over
/// the environment, and each must be one the plugin declared.
///
/// # Errors
/// As [`describe_settings`]; [`LoadError::InitFailed`] naming a variable a
/// flag set that the plugin does not read.
fn settings_for(
    plugin: &LoadedPlugin,
    settings: &PluginSettings,
    get: impl Fn(&str) -> Option<String>,
) -> Result<PluginSettings, LoadError> {
    let description = describe_settings(plugin)?;
    let mut settings = settings.clone();
    settings.plugin.clone_from(&plugin.manifest.name);
    if let Some(var) = settings
        .env
        .keys()
        .find(|k| !description.env.iter().any(|v| v.name == **k))
    {
        let kind = plugin.manifest.kind.unwrap_or(PluginKind::Storage);
        let declared: Vec<&str> = description.env.iter().map(|v| v.name.as_str()).collect();
        let flag = crate::config::CLUSTER_FLAGS
            .iter()
            .find(|(_, v)| v == var)
            .map_or_else(String::new, |(f, _)| format!("{f} sets "));
        return Err(init_error(
            plugin,
            kind,
            ModuleError::new(
                hangar_core::ErrorKind::CONFIG,
                format!(
                    "{flag}{var}, which this plugin does not read (it reads {}); set its [{}] settings instead",
                    if declared.is_empty() { "no variables".to_string() } else { declared.join(", ") },
                    settings.section,
                ),
            ),
        ));
    }
    for var in description.env {
        if let Some(v) = get(&var.name) {
            settings.env.entry(var.name).or_insert(v);
        }
    }
    Ok(settings)
}

/// Renders a settings description as TOML text for `hangar plugins
/// inspect`: each key's line as a comment above its default, under the
/// slot's `[section]` (keys with a table of defaults last, under
/// `[section.key]`), then the environment variables.
#[must_use]
pub fn render_settings(section: &str, description: &SettingsDescription) -> String {
    let mut out = format!("[{section}]\n");
    let defaults: Vec<(String, rmpv::Value)> = match &description.defaults {
        rmpv::Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
            .collect(),
        _ => Vec::new(),
    };
    if defaults.is_empty() && description.keys.is_empty() {
        return "(this plugin takes no settings)\n".to_string();
    }
    let is_table = |v: &rmpv::Value| matches!(v, rmpv::Value::Map(m) if !m.is_empty());
    let mut tables = String::new();
    for (key, value) in &defaults {
        let to = if is_table(value) {
            &mut tables
        } else {
            &mut out
        };
        if let Some(doc) = description.keys.iter().find(|d| d.key == *key) {
            to.push_str(&format!("# {}\n", doc.doc));
        }
        if value.is_nil() {
            // No default (an optional setting): TOML has no null.
            to.push_str(&format!("# {key} = (not set by default)\n"));
            continue;
        }
        if matches!(value, rmpv::Value::Map(m) if m.is_empty()) {
            // An empty table (no entries by default): name it.
            to.push_str(&format!("# {key} = {{}} (none by default)\n"));
            continue;
        }
        let mut one = toml::Table::new();
        let v: toml::Value = rmpv::ext::from_value(value.clone())
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
        one.insert(key.clone(), v);
        match toml::to_string(&one) {
            Ok(t) if !t.trim().is_empty() => {
                // A table's headers name it under the section.
                for line in t.lines() {
                    if let Some(rest) = line.strip_prefix("[[") {
                        to.push_str(&format!("[[{section}.{rest}\n"));
                    } else if let Some(rest) = line.strip_prefix('[') {
                        to.push_str(&format!("[{section}.{rest}\n"));
                    } else {
                        to.push_str(line);
                        to.push('\n');
                    }
                }
            }
            _ => to.push_str(&format!("# {key} = {value}\n")),
        }
    }
    out.push_str(&tables);
    if !description.env.is_empty() {
        out.push_str("\n# environment variables (override the file):\n");
        for var in &description.env {
            out.push_str(&format!("#   {} -> {section}.{}\n", var.name, var.key));
        }
    }
    out
}

/// Builds the storage module of a loaded storage plugin, with the
/// environment variables its settings description declares.
///
/// # Errors
/// [`LoadError::InitFailed`] / [`LoadError::InitPanicked`] when the plugin's
/// constructor fails or panics (the host keeps running); its settings
/// refused come back this way, naming the key.
pub fn instantiate_storage(
    plugin: &LoadedPlugin,
    config: &StorageModuleConfig,
    deps: &StorageDeps,
) -> Result<Arc<dyn StorageModule>, LoadError> {
    install_log_sink(plugin)?;
    let config = StorageModuleConfig {
        settings: settings_for(plugin, &config.settings, |n| std::env::var(n).ok())?,
        ..config.clone()
    };
    let bytes = encode_config(&config).map_err(|e| init_error(plugin, PluginKind::Storage, e))?;
    let ffi = (plugin.root.create_storage())(bytes.into(), FfiStorageDeps::from_native(deps))
        .into_result()
        .map_err(|e| init_error(plugin, PluginKind::Storage, e))?;
    Ok(storage_from_ffi(ffi))
}

/// Builds the cluster module of a loaded cluster plugin, with the
/// environment variables its settings description declares (those the
/// host's flags set win).
///
/// # Errors
/// [`LoadError::InitFailed`] / [`LoadError::InitPanicked`] when the plugin's
/// constructor fails or panics (the host keeps running); its settings
/// refused come back this way, naming the key; so does a flag that sets a
/// variable the plugin does not read.
pub fn instantiate_cluster(
    plugin: &LoadedPlugin,
    config: &ClusterModuleConfig,
    deps: &ClusterDeps,
) -> Result<Arc<dyn ClusterModule>, LoadError> {
    install_log_sink(plugin)?;
    let config = ClusterModuleConfig {
        settings: settings_for(plugin, &config.settings, |n| std::env::var(n).ok())?,
        ..config.clone()
    };
    let bytes = encode_config(&config).map_err(|e| init_error(plugin, PluginKind::Cluster, e))?;
    let ffi = (plugin.root.create_cluster())(bytes.into(), FfiClusterDeps::from_native(deps))
        .into_result()
        .map_err(|e| init_error(plugin, PluginKind::Cluster, e))?;
    Ok(cluster_from_ffi(ffi))
}

/// The platform file name of a plugin crate (`libhangar_storage.so` on Linux).
#[must_use]
pub fn library_file_name(crate_name: &str) -> String {
    libloading::library_filename(crate_name.replace('-', "_"))
        .to_string_lossy()
        .into_owned()
}

/// Where plugins are looked for when none is given by path: the configured
/// directory first, then the executable's `plugins/`, its own directory, and `deps/`
/// (where `cargo test` leaves workspace plugins).
#[must_use]
pub fn search_dirs(plugin_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = plugin_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("deps"));
    }
    dirs
}

/// Resolves a plugin reference: a path (anything with a `/` or an extension)
/// is used as is; a bare name is looked up as a library file in `dirs`.
///
/// # Errors
/// [`LoadError::Open`] naming every place that was searched.
pub fn resolve(reference: &str, dirs: &[PathBuf]) -> Result<PathBuf, LoadError> {
    let p = Path::new(reference);
    if reference.contains(std::path::MAIN_SEPARATOR) || p.extension().is_some() {
        return Ok(p.to_path_buf());
    }
    let file = library_file_name(reference);
    for d in dirs {
        let candidate = d.join(&file);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(LoadError::Open {
        path: PathBuf::from(&file),
        reason: format!(
            "plugin {reference:?} not found; searched {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}
