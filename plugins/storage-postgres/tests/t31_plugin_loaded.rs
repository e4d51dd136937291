//! The plugin loaded through the host's loader, as the stock `hangar`
//! binary loads it, passes the storage module suite with its settings in
//! the `[storage]` section next to the default module's; `hangar plugins
//! inspect` prints both.

mod common;

use std::sync::{Arc, LazyLock};

use hangar_core::abi::PluginKind;
use hangar_host::plugin::{self, Expectation, LoadedPlugin};
use hangar_tests::support::{plugin_file, target_dir};

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

/// The storage module suite through the loaded plugin, one test per case,
/// each on its own schema given in the settings the host passes.
mod t10_loaded_plugin_storage_suite {
    hangar_testkit::storage_suite!(|mut c: hangar_core::config::StorageModuleConfig, d| {
        let s = crate::common::settings_for_dir(&c.data_dir);
        // The suite's settings choose the default module's embedded
        // backend, which this plugin refuses.
        let _ = c.settings.split_off(&["backend"]);
        c.settings = c
            .settings
            .with("url", s.url())
            .with("schema", s.schema.as_str());
        hangar_host::plugin::instantiate_storage(&crate::PLUGIN, &c, &d)
            .map_err(|e| hangar_core::ModuleError::internal(e.to_string()))
    });
}

/// A config whose `[storage]` section holds `values` (and the defaults of
/// the test support's config otherwise).
fn config_with(values: &[(&str, rmpv::Value)]) -> hangar_core::config::StorageModuleConfig {
    let dir = std::env::temp_dir();
    let mut c = hangar_tests::support::embedded_storage_config("n1", &dir);
    c.settings.section = "storage".into();
    let _ = c.settings.split_off(&["backend"]);
    for (k, v) in values {
        c.settings = c.settings.clone().with(k, v.clone());
    }
    c
}

#[test]
fn t20_settings_the_loaded_plugin_refuses_name_the_plugin_key_and_expectation() {
    let deps = hangar_tests::support::storage_deps("n1");
    let err = |values: &[(&str, rmpv::Value)]| match plugin::instantiate_storage(
        &PLUGIN,
        &config_with(values),
        &deps,
    ) {
        Ok(_) => panic!("{values:?} was accepted"),
        Err(e) => e.to_string(),
    };
    let e = err(&[
        ("url", "postgres://h/db".into()),
        ("pool_size", "four".into()),
    ]);
    assert!(
        e.contains(
            "plugin hangar-storage-postgres: setting storage.pool_size: invalid type: \
             string \"four\", expected usize"
        ),
        "{e}"
    );
    let e = err(&[("url", "postgres://h/db".into()), ("pool_sise", 4.into())]);
    assert!(
        e.contains("plugin hangar-storage-postgres: setting storage.pool_sise: unknown field"),
        "{e}"
    );
    // The default module's own keys are still checked, in the same section.
    let e = err(&[
        ("url", "postgres://h/db".into()),
        ("journal_capacity", "lots".into()),
    ]);
    assert!(
        e.contains("setting storage.journal_capacity: invalid type: string \"lots\""),
        "{e}"
    );
    // The default module's backend choice is refused by name.
    let e = err(&[
        ("url", "postgres://h/db".into()),
        ("backend", "embedded".into()),
    ]);
    assert!(
        e.contains("plugin hangar-storage-postgres")
            && e.contains(
                "setting storage.backend: it belongs to the default storage plugin's own backends"
            )
            && e.contains("remove storage.backend"),
        "{e}"
    );
    // And both kinds of keys are accepted together.
    plugin::instantiate_storage(
        &PLUGIN,
        &config_with(&[
            ("url", "postgres://h/db".into()),
            ("pool_size", 2.into()),
            ("journal_capacity", 5.into()),
        ]),
        &deps,
    )
    .unwrap_or_else(|e| panic!("the plugin's and the module's keys together: {e}"));
}

#[test]
fn t21_plugins_inspect_prints_the_plugins_keys_and_the_modules() {
    let out = std::process::Command::new(target_dir().join("hangar"))
        .args(["plugins", "inspect"])
        .arg(plugin_file("hangar_storage_postgres"))
        .output()
        .expect("run target/debug/hangar (cargo build -p hangar-host)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "url = \"\"",
        "pool_size = 8",
        "schema = \"hangar\"",
        "retry_ms = 30000",
        "journal_capacity = 10000",
        "DATABASE_URL -> storage.url",
        "HANGAR_POSTGRES_URL -> storage.url",
        "HANGAR_POSTGRES_POOL_SIZE -> storage.pool_size",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    // The default module's own backends are not this plugin's to choose.
    for absent in [
        "backend =",
        "STORAGE_BACKEND",
        "reset_damaged_store",
        "check_integrity_on_start",
    ] {
        assert!(!text.contains(absent), "{absent:?} listed in:\n{text}");
    }
}
