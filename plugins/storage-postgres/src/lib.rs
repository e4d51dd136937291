//! A Hangar storage plugin that keeps the maps in PostgreSQL.
//!
//! It runs Hangar's default storage module (maps, live queries, search,
//! write acks, group commit) over [`backend::PostgresBackend`], through
//! `hangar_storage::create_with_backend`, the way `plugin-template/` runs it
//! over its append-only log. The stock `hangar` binary loads it as the
//! storage plugin `hangar-storage-postgres` (see the README's "Plugins").
//!
//! Settings: [`settings::PostgresSettings`], read from environment
//! variables for now (a plugin cannot yet get a configuration section of
//! its own): `HANGAR_POSTGRES_URL` (else `DATABASE_URL`),
//! `HANGAR_POSTGRES_POOL_SIZE`, `HANGAR_POSTGRES_SCHEMA`,
//! `HANGAR_POSTGRES_CONNECT_TIMEOUT_MS`, `HANGAR_POSTGRES_RETRY_MS`.
//!
//! # Layout
//!
//! - `settings`: the settings struct and the one function that reads it.
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

/// The plugin's constructor: reads the settings from the environment and
/// builds the default module over a [`PostgresBackend`] (connected when the
/// module starts).
///
/// # Errors
/// [`hangar_core::ErrorKind::INVALID_INPUT`] for missing or malformed
/// settings (the message names the variable); whatever the default module
/// refuses in `config`.
pub fn create(
    config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    let settings = PostgresSettings::load(|k| std::env::var(k).ok())
        .map_err(|e| ModuleError::invalid(e.to_string()))?;
    create_with_settings(config, deps, settings)
}

/// [`create`] with settings given by the caller (tests, embedding).
///
/// # Errors
/// As [`create`].
pub fn create_with_settings(
    config: StorageModuleConfig,
    deps: StorageDeps,
    settings: PostgresSettings,
) -> ModuleResult<Arc<dyn StorageModule>> {
    settings
        .validate()
        .map_err(|e| ModuleError::invalid(e.to_string()))?;
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

hangar_plugin_sdk::export_storage_plugin!(crate::create);
