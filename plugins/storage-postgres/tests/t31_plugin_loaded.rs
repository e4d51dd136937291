//! The plugin loaded through the host's loader, as the stock `hangar`
//! binary loads it, passes the storage module suite; its settings come
//! from the environment (`HANGAR_POSTGRES_URL`, `HANGAR_POSTGRES_SCHEMA`).
//! Alone in its file because it sets environment variables.

mod common;

use std::sync::{Arc, LazyLock, Mutex};

use hangar_core::abi::PluginKind;
use hangar_host::plugin::{self, Expectation, LoadedPlugin};
use hangar_tests::support::plugin_file;

/// The plugin, loaded once through the host's checks.
static PLUGIN: LazyLock<Arc<LoadedPlugin>> = LazyLock::new(|| {
    let p = plugin::load(
        &plugin_file("hangar_storage_postgres"),
        &Expectation {
            kind: PluginKind::Storage,
            version: semver::VersionReq::parse("^0.1").unwrap(),
        },
    )
    .expect("the plugin passes the host's checks");
    assert_eq!(p.manifest.name, "hangar-storage-postgres");
    Arc::new(p)
});

/// Held while the environment is set and the plugin reads it, so cases
/// running at once each build their module on their own schema.
static ENV: Mutex<()> = Mutex::new(());

/// The storage module suite through the loaded plugin, one test per case.
mod t10_loaded_plugin_storage_suite {
    hangar_testkit::storage_suite!(|c: hangar_core::config::StorageModuleConfig, d| {
        let s = crate::common::settings_for_dir(&c.data_dir);
        let _env = crate::ENV
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::env::set_var("HANGAR_POSTGRES_URL", s.url());
        std::env::set_var("HANGAR_POSTGRES_SCHEMA", &s.schema);
        hangar_host::plugin::instantiate_storage(&crate::PLUGIN, &c, &d)
            .map_err(|e| hangar_core::ModuleError::internal(e.to_string()))
    });
}
