//! A starting point for a third-party Hangar plugin.
//!
//! This template is a storage plugin that shows the two usual ways to make
//! Hangar's storage your own:
//!
//! - **Swap the store.** It runs Hangar's default storage module (maps,
//!   live queries, search, acks...) over a persistence backend of its own,
//!   [`append_log::AppendLogBackend`] (one append-only, fsynced log file in
//!   the data directory), through `hangar_storage::create_with_backend`.
//!   Any type implementing `hangar_storage::persistence::PersistenceBackend`
//!   that passes its conformance suite works the same way
//!   (`tests/t20_append_log_conformance.rs` runs it for this one).
//! - **Add behaviour.** It wraps the module and adds one rule of its own:
//!   keys longer than `max_key_bytes` bytes (a setting of its own, default
//!   [`MAX_KEY_LEN`]) are rejected with a clear error.
//!   As a `StorageWrapper` it writes only the methods it changes (`info`
//!   and `apply`); every other one goes to the wrapped module.
//!
//! - **Take a setting.** [`TemplateSettings`] is its own `[storage]` key,
//!   `max_key_bytes` (or `HANGAR_TEMPLATE_MAX_KEY_BYTES`); it takes that key
//!   out and passes the rest of `[storage]` to the default module, which
//!   validates them. Both refuse an unknown key or a wrong type by name, so
//!   the host stops at start-up (`hangar_core::settings`).
//!
//! Replace either (or the whole delegate) with your own.
//!
//! What makes it a plugin:
//! - `crate-type = ["cdylib", "rlib"]` in `Cargo.toml`;
//! - a constructor `fn(StorageModuleConfig, StorageDeps) ->
//!   ModuleResult<Arc<dyn StorageModule>>`;
//! - `hangar_plugin_sdk::export_storage_plugin!(constructor)` (or
//!   `export_cluster_plugin!` for a cluster module), which writes the
//!   manifest from this crate's name, version and description, exports the
//!   declaration and root module, and forwards `tracing` events to the host.
//!
//! Rules your module must keep: never let a panic escape on purpose (the
//! boundary catches it, but the call fails); return executor-agnostic futures
//! (spawn on your own runtime, see `hangar_plugin_sdk::PluginRuntime`); pass
//! the conformance suite (`tests/t10_conformance.rs`).

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::StorageModuleConfig;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{ApplyBatch, OpOutcome, OpStatus};
use hangar_core::module::wrapper::StorageWrapper;
use hangar_core::module::{ModuleFuture, ModuleInfo};
use hangar_core::settings::{Settings, SettingsDescription};
use hangar_core::{ModuleError, ModuleResult};
use hangar_storage::persistence::PersistenceBackend;

/// Longest key this plugin accepts by default, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// The template's own settings: `[storage] max_key_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateSettings {
    /// Longest key accepted, in bytes ([`MAX_KEY_LEN`]); at least 1.
    pub max_key_bytes: usize,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        Self {
            max_key_bytes: MAX_KEY_LEN,
        }
    }
}

impl Settings for TemplateSettings {
    fn keys() -> &'static [(&'static str, &'static str)] {
        &[(
            "max_key_bytes",
            "longest key accepted, in bytes; longer keys are rejected",
        )]
    }

    fn env() -> &'static [(&'static str, &'static str)] {
        &[("HANGAR_TEMPLATE_MAX_KEY_BYTES", "max_key_bytes")]
    }

    // Its own key, then the default module's, which it passes the rest to.
    fn describe() -> ModuleResult<SettingsDescription> {
        Ok(SettingsDescription::of::<Self>()?
            .merged(SettingsDescription::of::<hangar_storage::StorageSettings>()?))
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_key_bytes == 0 {
            return Err("max_key_bytes = 0: expected at least 1".into());
        }
        Ok(())
    }
}

/// The template's storage module: the default module plus a key-length rule.
pub struct TemplateStorage {
    inner: Arc<dyn StorageModule>,
    max_key_bytes: usize,
}

pub mod append_log;

/// The plugin's constructor: the default module over the append-only log
/// backend in `config.data_dir` (opened when the module starts), wrapped
/// with the key-length rule.
///
/// # Errors
/// [`hangar_core::ErrorKind::CONFIG`] for a `max_key_bytes` that is not a
/// positive integer, and whatever the wrapped default module refuses (an
/// unknown `[storage]` key, an invalid node id or full-text configuration).
pub fn create(
    mut config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    let own: TemplateSettings = config.settings.split_off(&["max_key_bytes"]).decode()?;
    let max_key_bytes = own.max_key_bytes;
    tracing::info!(max_key_bytes, "template storage plugin created");
    let label = format!("append-only log ({})", config.data_dir.display());
    let inner = hangar_storage::create_with_backend(
        config,
        deps,
        &label,
        Arc::new(|c: &StorageModuleConfig| {
            let backend: Arc<dyn PersistenceBackend> =
                Arc::new(append_log::AppendLogBackend::open(&c.data_dir)?);
            Ok(backend)
        }),
    )?;
    Ok(Arc::new(TemplateStorage {
        inner,
        max_key_bytes,
    }))
}

fn rejected(key: &RString, max: usize) -> OpOutcome {
    OpOutcome {
        status: OpStatus::Rejected,
        ack: 0,
        change: ROption::RNone,
        error: ROption::RSome(ModuleError::invalid(format!(
            "key of {} bytes is too long: this store accepts keys of at most {max} bytes",
            key.len()
        ))),
    }
}

// Only the methods this plugin changes; `StorageWrapper` forwards every
// other one to `inner`.
impl StorageWrapper for TemplateStorage {
    fn inner(&self) -> &dyn StorageModule {
        &*self.inner
    }

    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
        )
    }
    fn apply(&self, mut batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        // Split off the ops this plugin refuses, apply the rest, and put the
        // outcomes back in batch order.
        let max = self.max_key_bytes;
        let too_long: Vec<bool> = batch.ops.iter().map(|w| w.op.key.len() > max).collect();
        if !too_long.contains(&true) {
            return self.inner.apply(batch);
        }
        let refused: Vec<OpOutcome> = batch
            .ops
            .iter()
            .filter(|w| w.op.key.len() > max)
            .map(|w| rejected(&w.op.key, max))
            .collect();
        batch.ops.retain(|w| w.op.key.len() <= max);
        let inner = self.inner.apply(batch);
        Box::pin(async move {
            let mut applied = inner.await?.into_iter();
            let mut refused = refused.into_iter();
            Ok(too_long
                .into_iter()
                .filter_map(|long| if long { refused.next() } else { applied.next() })
                .collect())
        })
    }
}

hangar_plugin_sdk::export_storage_plugin!(crate::create, settings: crate::TemplateSettings);
