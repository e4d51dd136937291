//! A Hangar storage plugin that keeps the maps in PostgreSQL.
//!
//! It runs Hangar's default storage module (maps, live queries, search,
//! write acks, group commit) over [`backend::PostgresBackend`], through
//! `hangar_storage::create_with_backend`, the way `plugin-template/` runs it
//! over its append-only log. The stock `hangar` binary loads it as the
//! storage plugin `hangar-storage-postgres` (see the README's "Plugins").
//!
//! Settings: [`settings::PostgresSettings`], the plugin's own keys in the
//! `[storage]` section (`url`, `pool_size`, `schema`, ...) or their
//! environment variables (`HANGAR_POSTGRES_URL`, else `DATABASE_URL`, ...);
//! the section's other keys are the default module's
//! (`hangar_storage::StorageSettings`), passed on to it.
//!
//! # Layout
//!
//! - `settings`: the settings struct, its keys and variables.
//! - `schema`: tables and versioned migrations.
//! - `rows`: one entry as one row (partition, HLC columns, msgpack value).
//! - `backend`: the `PersistenceBackend`: commits, reads, retries, metrics.
//! - `sql`: the statements' text and the upsert's column arrays.
//! - `errors`: operator-facing messages for connection failures.
//! - `test_server`: a throwaway PostgreSQL server for tests
//!   (`scripts/pg-test-server`).

use std::sync::Arc;

use hangar_core::config::StorageModuleConfig;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::wrapper::StorageWrapper;
use hangar_core::module::ModuleInfo;
use hangar_core::{ModuleError, ModuleResult};
use hangar_storage::persistence::PersistenceBackend;

pub mod backend;
pub mod errors;
pub mod rows;
pub mod schema;
pub mod settings;
mod sql;
pub mod test_server;

pub use backend::PostgresBackend;
pub use settings::PostgresSettings;

/// The plugin's storage module: the default module over PostgreSQL, named
/// after this crate (so `/health` shows `hangar-storage-postgres`).
pub struct PostgresStorage {
    inner: Arc<dyn StorageModule>,
}

/// The plugin's constructor: takes its own settings out of
/// `config.settings` ([`PostgresSettings::from_plugin`]) and builds the
/// default module, with the rest, over a [`PostgresBackend`] (connected
/// when the module starts).
///
/// # Errors
/// [`hangar_core::ErrorKind::CONFIG`] for missing or malformed settings,
/// the plugin's or the default module's (the message names the key, the
/// variable that set it and what was expected).
pub fn create(
    mut config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    let settings = PostgresSettings::from_plugin(&mut config.settings)?;
    build(config, deps, settings)
}

/// [`create`] with the plugin's settings given by the caller as a struct
/// (tests, embedding); `config.settings` holds only the default module's.
///
/// # Errors
/// [`hangar_core::ErrorKind::CONFIG`] for settings [`PostgresSettings::check`]
/// refuses; as [`create`] for the default module's.
pub fn create_with_settings(
    config: StorageModuleConfig,
    deps: StorageDeps,
    settings: PostgresSettings,
) -> ModuleResult<Arc<dyn StorageModule>> {
    settings
        .check()
        .map_err(|e| ModuleError::new(hangar_core::ErrorKind::CONFIG, e))?;
    build(config, deps, settings)
}

fn build(
    config: StorageModuleConfig,
    deps: StorageDeps,
    settings: PostgresSettings,
) -> ModuleResult<Arc<dyn StorageModule>> {
    let label = format!(
        "PostgreSQL ({}, schema {})",
        settings.redacted_url(),
        settings.schema
    );
    let metrics = deps.metrics.clone();
    let inner = hangar_storage::create_with_backend(
        config,
        deps,
        &label,
        Arc::new(move |_: &StorageModuleConfig| {
            let backend: Arc<dyn PersistenceBackend> = Arc::new(PostgresBackend::open_blocking(
                settings.clone(),
                metrics.clone(),
            )?);
            Ok(backend)
        }),
    )?;
    Ok(Arc::new(PostgresStorage { inner }))
}

impl StorageWrapper for PostgresStorage {
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
}

hangar_plugin_sdk::export_storage_plugin!(crate::create, settings: crate::settings::PostgresSettings);
