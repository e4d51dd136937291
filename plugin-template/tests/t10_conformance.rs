//! The template's own tests: it loads through the host's loader like any
//! plugin, passes the storage contract suite of `hangar-testkit` (one test
//! per case) both in-process and loaded, and its own rule works.

use abi_stable::std_types::{RString, RVec};
use hangar_core::abi::PluginKind;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::types::WriteConcern;
use hangar_host::plugin::{self, Expectation};
use hangar_testkit::storage::{batch, lww};
use hangar_tests::support::{embedded_storage_config, plugin_file, storage_deps};

fn load_with(
    config: &hangar_core::config::StorageModuleConfig,
    deps: &hangar_core::module::storage::StorageDeps,
) -> std::sync::Arc<dyn StorageModule> {
    let p = plugin::load(
        &plugin_file("hangar_plugin_template"),
        &Expectation {
            kind: PluginKind::Storage,
            version: semver::VersionReq::parse("^0.1").unwrap(),
        },
    )
    .expect("the template passes the host's checks");
    assert_eq!(p.manifest.name, "hangar-plugin-template");
    plugin::instantiate_storage(&p, config, deps).expect("builds")
}

/// The contract suite against the template in-process.
mod t10_in_process {
    hangar_testkit::storage_suite!(hangar_plugin_template::create);
}

/// The contract suite against the template loaded through the host's
/// loader.
mod t11_loaded {
    hangar_testkit::storage_suite!(|c, d| Ok(super::load_with(&c, &d)));
}

#[tokio::test]
async fn t20_oversized_keys_are_rejected_in_place_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let m = load_with(
        &embedded_storage_config("t1", dir.path()),
        &storage_deps("t1"),
    );
    m.start().await.unwrap();
    let long = "k".repeat(hangar_plugin_template::MAX_KEY_LEN + 1);
    let out = m
        .apply(batch(
            vec![
                lww("m", "a", Some(serde_json::json!(1)), 10, "n"),
                lww("m", &long, Some(serde_json::json!(2)), 10, "n"),
                lww("m", "b", Some(serde_json::json!(3)), 10, "n"),
            ],
            WriteConcern::Applied,
        ))
        .await
        .unwrap();
    let st: Vec<OpStatus> = out.iter().map(|o| o.status).collect();
    assert_eq!(
        st,
        [OpStatus::Applied, OpStatus::Rejected, OpStatus::Applied]
    );
    let msg = out[1]
        .error
        .as_ref()
        .into_option()
        .unwrap()
        .message
        .to_string();
    assert!(
        msg.contains("too long") && msg.contains("at most 256"),
        "{msg}"
    );
    let r = m
        .read("m".into(), RVec::from(vec![RString::from(long.as_str())]))
        .await
        .unwrap();
    assert_eq!(r[0].state, RecordState::Missing);
    m.shutdown().await.unwrap();
}
