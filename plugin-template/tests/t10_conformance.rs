//! The template's own tests: it loads through the host's loader like any
//! plugin, passes the storage conformance suite both in-process and loaded,
//! and its own rule works.

use abi_stable::std_types::{RString, RVec};
use hangar_core::abi::PluginKind;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::types::WriteConcern;
use hangar_host::plugin::{self, Expectation};
use hangar_tests::storage_suite::{self, batch, lww};
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

#[tokio::test]
async fn t10_the_template_passes_the_conformance_suite_in_process() {
    storage_suite::run(
        "template in-process",
        std::sync::Arc::new(|c, d| hangar_plugin_template::create(c, d).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn t11_the_template_loads_through_the_host_loader_and_passes_the_suite() {
    storage_suite::run(
        "template loaded",
        std::sync::Arc::new(|c, d| load_with(&c, &d)),
    )
    .await;
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
