//! The module conformance suites, run against the in-process
//! implementations, the loaded plugins, and with the foreign path forced
//! inside one binary; plus the no-stacking guarantees of the adapters.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use hangar_core::abi::{
    cluster_from_ffi_forced, cluster_to_ffi_forced, partition_view_to_ffi, storage_from_ffi,
    storage_from_ffi_forced, storage_to_ffi, storage_to_ffi_forced, PartitionViewExport,
};
use hangar_core::module::cluster::ClusterModule;
use hangar_core::module::cluster_types::{ReplicationOutcome, ReplicationRequest};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::wrapper::ClusterWrapper;
use hangar_core::module::{ready, ModuleFuture};
use hangar_tests::support::{
    cluster_config, cluster_deps, loaded_cluster, loaded_cluster_with, loaded_storage,
    loaded_storage_with, storage_config, storage_deps,
};
use hangar_tests::{cluster_multi_suite, cluster_suite, storage_suite};

fn in_process_storage() -> Arc<dyn StorageModule> {
    hangar_storage::create(storage_config("n1"), storage_deps("n1")).unwrap()
}

#[tokio::test]
async fn t10_storage_suite_in_process() {
    storage_suite::run(
        "in-process",
        Arc::new(|c, d| hangar_storage::create(c, d).expect("builds")),
    )
    .await;
}

#[tokio::test]
async fn t11_storage_suite_through_the_loaded_plugin() {
    storage_suite::run(
        "loaded plugin",
        Arc::new(|c, d| loaded_storage_with("hangar_storage", &c, &d)),
    )
    .await;
}

#[tokio::test]
async fn t12_storage_suite_with_the_foreign_path_forced() {
    storage_suite::run(
        "forced foreign",
        Arc::new(|c, d| {
            storage_from_ffi_forced(storage_to_ffi_forced(
                hangar_storage::create(c, d).expect("builds"),
            ))
        }),
    )
    .await;
}

#[tokio::test]
async fn t13_cluster_suite_in_process() {
    cluster_suite::run(
        "in-process",
        &|| hangar_cluster::create(cluster_config("n1"), cluster_deps("n1")).unwrap(),
        &in_process_storage,
    )
    .await;
}

#[tokio::test]
async fn t14_cluster_suite_through_the_loaded_plugin() {
    cluster_suite::run(
        "loaded plugin",
        &|| loaded_cluster("hangar_cluster", "n1"),
        &|| loaded_storage("hangar_storage", "n1"),
    )
    .await;
}

#[tokio::test]
async fn t14b_cluster_suite_through_the_loaded_zones_plugin() {
    cluster_suite::run(
        "loaded zones plugin",
        &|| loaded_cluster("hangar_cluster_zones", "n1"),
        &|| loaded_storage("hangar_storage", "n1"),
    )
    .await;
}

#[tokio::test]
async fn t15_cluster_suite_with_the_foreign_path_forced() {
    cluster_suite::run(
        "forced foreign",
        &|| {
            cluster_from_ffi_forced(cluster_to_ffi_forced(
                hangar_cluster::create(cluster_config("n1"), cluster_deps("n1")).unwrap(),
            ))
        },
        &in_process_storage,
    )
    .await;
}

#[test]
fn t20_a_module_coming_back_to_its_own_library_is_unwrapped_not_stacked() {
    let native = in_process_storage();
    let back = storage_from_ffi(storage_to_ffi(native.clone()));
    assert!(
        Arc::ptr_eq(&native, &back),
        "round trip returns the very same object"
    );
    let forced = storage_from_ffi_forced(storage_to_ffi_forced(native.clone()));
    assert!(
        !Arc::ptr_eq(&native, &forced),
        "the forced path really wraps"
    );
    // exporting a foreign wrapper passes its inner object on: one layer only
    let again = storage_to_ffi(forced.clone());
    let unwrapped = storage_from_ffi(again);
    assert!(
        Arc::ptr_eq(&native, &unwrapped),
        "no second layer was added"
    );
}

#[test]
fn t21_a_plugins_partition_view_reaches_another_plugin_without_a_host_layer() {
    let cluster = loaded_cluster("hangar_cluster", "n1");
    let view = cluster.partition_view(); // a host-side wrapper over the plugin's object
    let ffi = partition_view_to_ffi(view);
    // If the host had wrapped it again, the object would be a host-made
    // export and would downcast here; it must be the plugin's own.
    assert!(
        ffi.obj.downcast_as::<PartitionViewExport>().is_err(),
        "the view crosses as the cluster plugin's object, not a host wrapper"
    );
    assert!(ffi.is_related(95).into_result().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t16_cluster_suite_on_three_nodes() {
    cluster_multi_suite::run("three nodes", Arc::new(hangar_cluster::create)).await;
}

/// The three-node suite through the loaded zones plugin, n1 and n2 in zone
/// `a`, n3 in zone `b`, so its zone-aware placement and QUORUM rule run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t16b_cluster_suite_on_three_nodes_through_the_loaded_zones_plugin() {
    cluster_multi_suite::run(
        "zones plugin, three nodes",
        Arc::new(|mut c, d| {
            c.zone = if c.node_id == "n3" { "b" } else { "a" }.to_string();
            loaded_cluster_with("hangar_cluster_zones", &c, &d)
        }),
    )
    .await;
}

/// A cluster module that reports every replication as done without
/// shipping anything: the three-node suite must catch it.
struct NoCopies(Arc<dyn ClusterModule>);

// Only `replicate` changes; `ClusterWrapper` forwards the rest.
impl ClusterWrapper for NoCopies {
    fn inner(&self) -> &dyn ClusterModule {
        &*self.0
    }
    fn replicate(&self, _r: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        ready(Ok(ReplicationOutcome {
            success: true,
            acked_by: RVec::new(),
            error: ROption::RNone,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t17_a_module_that_claims_quorum_without_copies_fails_the_three_node_suite() {
    let run = tokio::spawn(cluster_multi_suite::run(
        "no copies",
        Arc::new(|c, d| {
            Ok(Arc::new(NoCopies(hangar_cluster::create(c, d)?)) as Arc<dyn ClusterModule>)
        }),
    ))
    .await;
    let msg = hangar_tests::support::join_error_message(run.expect_err("the suite must fail"));
    assert!(
        msg.contains("m20") && msg.contains("does not hold"),
        "it fails on the missing copy: {msg}"
    );
}
