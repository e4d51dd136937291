//! The plugin loaded through the host's loader, as the stock `hangar`
//! binary loads it, passes the storage module suite; its settings come
//! from the environment (`HANGAR_POSTGRES_URL`, `HANGAR_POSTGRES_SCHEMA`).
//! Alone in its file because it sets environment variables.

mod common;

use std::sync::Arc;

use hangar_core::abi::PluginKind;
use hangar_host::plugin::{self, Expectation};
use hangar_tests::storage_suite;
use hangar_tests::support::plugin_file;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_the_loaded_plugin_passes_the_storage_module_suite() {
    let p = Arc::new(
        plugin::load(
            &plugin_file("hangar_storage_postgres"),
            &Expectation {
                kind: PluginKind::Storage,
                version: semver::VersionReq::parse("^0.1").unwrap(),
            },
        )
        .expect("the plugin passes the host's checks"),
    );
    assert_eq!(p.manifest.name, "hangar-storage-postgres");
    storage_suite::run(
        "postgres loaded",
        Arc::new(move |c, d| {
            let s = common::settings_for_dir(&c.data_dir);
            // The only test of this binary, so nothing else reads the
            // environment while it changes.
            std::env::set_var("HANGAR_POSTGRES_URL", s.url());
            std::env::set_var("HANGAR_POSTGRES_SCHEMA", &s.schema);
            plugin::instantiate_storage(&p, &c, &d).expect("the plugin builds its module")
        }),
    )
    .await;
}
