//! The cluster template's own tests: it loads through the host's loader
//! like any plugin and passes the cluster conformance suites, on one node
//! and on three.

use std::sync::Arc;

use hangar_core::abi::PluginKind;
use hangar_core::config::ClusterModuleConfig;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_host::plugin::{self, Expectation};
use hangar_tests::support::{cluster_config, cluster_deps, loaded_storage, plugin_file};
use hangar_tests::{cluster_multi_suite, cluster_suite};

fn load_with(config: &ClusterModuleConfig, deps: &ClusterDeps) -> Arc<dyn ClusterModule> {
    let p = plugin::load(
        &plugin_file("hangar_plugin_template_cluster"),
        &Expectation {
            kind: PluginKind::Cluster,
            version: semver::VersionReq::parse("^0.1").unwrap(),
        },
    )
    .expect("the template passes the host's checks");
    assert_eq!(p.manifest.name, "hangar-plugin-template-cluster");
    plugin::instantiate_cluster(&p, config, deps).expect("builds")
}

#[tokio::test]
async fn t10_the_loaded_template_passes_the_cluster_suite() {
    cluster_suite::run(
        "cluster template loaded",
        &|| load_with(&cluster_config("n1"), &cluster_deps("n1")),
        &|| loaded_storage("hangar_storage", "n1"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t11_the_loaded_template_passes_the_three_node_suite() {
    cluster_multi_suite::run(
        "cluster template loaded, three nodes",
        Arc::new(|c, d| Ok(load_with(&c, &d))),
    )
    .await;
}
