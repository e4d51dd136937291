//! The cluster template's own tests: it loads through the host's loader
//! like any plugin and passes the cluster conformance suites, on one node
//! and on three.

use std::sync::Arc;

use hangar_core::abi::PluginKind;
use hangar_core::config::ClusterModuleConfig;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_host::plugin::{self, Expectation};
use hangar_tests::support::plugin_file;

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

/// The lone-node contract suite against the loaded template.
mod t10_loaded {
    hangar_testkit::cluster_suite!(|c, d| Ok(super::load_with(&c, &d)), hangar_storage::create);
}

/// The three-node contract suite against the loaded template.
mod t11_loaded_three_nodes {
    hangar_testkit::cluster_multi_suite!(
        |c, d| Ok(super::load_with(&c, &d)),
        hangar_storage::create
    );
}
