//! Loading real plugin files: the default plugins, and one negative fixture
//! per refusal, each asserting the exact error variant.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec};
use hangar_core::abi::PluginKind;
use hangar_core::module::storage::StorageModule;
use hangar_core::types::WriteConcern;
use hangar_core::ErrorKind;
use hangar_host::plugin::{self, Expectation, LoadError};
use hangar_tests::storage_suite::{batch, lww};
use hangar_tests::support::{load, plugin_file, storage_config, storage_deps};

fn storage_slot() -> Expectation {
    Expectation {
        kind: PluginKind::Storage,
        version: semver::VersionReq::STAR,
    }
}

#[test]
fn t10_the_default_plugins_load_and_report_their_manifests() {
    let s = load("hangar_storage", PluginKind::Storage).expect("storage plugin");
    assert_eq!(s.manifest.name, "hangar-storage");
    assert_eq!(s.manifest.kind, Some(PluginKind::Storage));
    assert_eq!(s.manifest.abi_version, hangar_core::abi::ABI_VERSION);
    assert!(s.manifest.panic_unwind);
    let c = load("hangar_cluster", PluginKind::Cluster).expect("cluster plugin");
    assert_eq!(c.manifest.name, "hangar-cluster");
}

#[tokio::test]
async fn t11_two_storage_plugins_with_the_same_abi_do_not_alias() {
    let a = load("hangar_storage", PluginKind::Storage).unwrap();
    let b = load("fixture_method_panic", PluginKind::Storage).unwrap();
    let ma = plugin::instantiate_storage(&a, &storage_config("n"), &storage_deps("n")).unwrap();
    let mb = plugin::instantiate_storage(&b, &storage_config("n"), &storage_deps("n")).unwrap();
    assert_eq!(ma.info().name.as_str(), "hangar-storage");
    assert_eq!(mb.info().name.as_str(), "fixture_method_panic");
}

#[test]
fn t20_a_plain_shared_library_is_not_a_plugin() {
    let e = load("fixture_not_a_plugin", PluginKind::Storage).unwrap_err();
    assert!(matches!(e, LoadError::NotAPlugin { .. }), "{e}");
    assert!(e.to_string().contains("hangar_plugin_decl_"), "{e}");
}

#[test]
fn t21_a_declaration_without_a_root_module_is_refused() {
    let e = load("fixture_no_root", PluginKind::Storage).unwrap_err();
    match &e {
        LoadError::MissingRootSymbol { symbol, .. } => {
            assert_eq!(symbol, "hangar_plugin_root_fixture_no_root");
        }
        other => panic!("expected MissingRootSymbol, got {other}"),
    }
}

#[test]
fn t22_a_plugin_built_against_another_abi_is_refused_before_it_runs() {
    let e = load("fixture_wrong_abi", PluginKind::Storage).unwrap_err();
    match &e {
        LoadError::IncompatibleAbi { found, host, .. } => {
            assert_eq!(found, "99.0.0");
            assert_eq!(host, hangar_core::abi::ABI_VERSION);
        }
        other => panic!("expected IncompatibleAbi, got {other}"),
    }
}

#[test]
fn t23_a_plugin_of_the_wrong_kind_is_refused() {
    let e = load("hangar_cluster", PluginKind::Storage).unwrap_err();
    match &e {
        LoadError::WrongKind {
            expected, found, ..
        } => {
            assert_eq!((expected.as_str(), found.as_str()), ("storage", "cluster"));
        }
        other => panic!("expected WrongKind, got {other}"),
    }
}

#[test]
fn t24_a_plugin_version_outside_the_requirement_is_refused() {
    let e = plugin::load(
        &plugin_file("hangar_storage"),
        &Expectation {
            kind: PluginKind::Storage,
            version: semver::VersionReq::parse(">=99.0.0").unwrap(),
        },
    )
    .unwrap_err();
    match &e {
        LoadError::VersionRejected {
            required, found, ..
        } => {
            assert_eq!(required, ">=99.0.0");
            assert_eq!(found, "0.1.0");
        }
        other => panic!("expected VersionRejected, got {other}"),
    }
}

#[test]
fn t25_an_init_error_is_reported_with_the_plugins_message() {
    let p = plugin::load(&plugin_file("fixture_init_error"), &storage_slot()).unwrap();
    let Err(e) = plugin::instantiate_storage(&p, &storage_config("n"), &storage_deps("n")) else {
        panic!("the constructor must fail");
    };
    match &e {
        LoadError::InitFailed { message, .. } => {
            assert!(message.contains("the backend refused to open"), "{message}");
        }
        other => panic!("expected InitFailed, got {other}"),
    }
}

#[test]
fn t26_an_init_panic_is_caught_and_reported() {
    let p = plugin::load(&plugin_file("fixture_init_panic"), &storage_slot()).unwrap();
    let Err(e) = plugin::instantiate_storage(&p, &storage_config("n"), &storage_deps("n")) else {
        panic!("the constructor must fail");
    };
    match &e {
        LoadError::InitPanicked { message, .. } => {
            assert!(message.contains("constructor panics"), "{message}");
        }
        other => panic!("expected InitPanicked, got {other}"),
    }
}

#[tokio::test]
async fn t27_a_panicking_method_is_an_error_and_the_host_keeps_answering() {
    let p = plugin::load(&plugin_file("fixture_method_panic"), &storage_slot()).unwrap();
    let m: Arc<dyn StorageModule> =
        plugin::instantiate_storage(&p, &storage_config("n"), &storage_deps("n")).unwrap();
    // panics before returning its future
    let e = m
        .apply(batch(
            vec![lww("m", "k", None, 1, "n")],
            WriteConcern::Memory,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PANICKED, "{e}");
    assert!(e.message.contains("apply panics"), "{e}");
    // panics while its future is polled
    let e = m
        .read("m".into(), RVec::from(vec![RString::from("k")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PANICKED, "{e}");
    assert!(e.message.contains("read panics while polled"), "{e}");
    // panics in a call with no result: reported, not propagated
    m.notify_acks(RVec::from(vec![1u64]), WriteConcern::Replicated);
    // and the module, like the host, still answers
    assert_eq!(m.info().name.as_str(), "fixture_method_panic");
    let maps = m.list_maps().await.expect("list_maps still works");
    assert_eq!(maps[0].name.as_str(), "still-here");
}

#[test]
fn t28_missing_and_garbage_files_cannot_be_opened() {
    let e = plugin::load(
        std::path::Path::new("/nonexistent/libnothing.so"),
        &storage_slot(),
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::Open { .. }), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("libgarbage.so");
    std::fs::write(&f, b"this is not an ELF file").unwrap();
    let e = plugin::load(&f, &storage_slot()).unwrap_err();
    assert!(matches!(e, LoadError::Open { .. }), "{e}");
    assert!(e.to_string().contains("not a shared library"), "{e}");
}

#[test]
fn t29_a_name_is_resolved_in_the_search_dirs_or_the_error_lists_them() {
    let dir = plugin_file("hangar_storage")
        .parent()
        .unwrap()
        .to_path_buf();
    let found = plugin::resolve("hangar_storage", std::slice::from_ref(&dir)).unwrap();
    assert_eq!(found, plugin_file("hangar_storage"));
    let e = plugin::resolve("no_such_plugin", &[dir]).unwrap_err();
    assert!(e.to_string().contains("searched"), "{e}");
}

#[test]
fn t30_inspect_reports_the_manifest_and_the_verdict() {
    let ok = plugin::inspect(&plugin_file("hangar_cluster"), &semver::VersionReq::STAR);
    assert!(ok.verdict.is_ok());
    assert_eq!(ok.manifest.unwrap().kind, Some(PluginKind::Cluster));
    let bad = plugin::inspect(&plugin_file("fixture_wrong_abi"), &semver::VersionReq::STAR);
    assert!(matches!(
        bad.verdict,
        Err(LoadError::IncompatibleAbi { .. })
    ));
    assert_eq!(bad.manifest.unwrap().abi_version, "99.0.0");
    let too_new = plugin::inspect(
        &plugin_file("hangar_storage"),
        &semver::VersionReq::parse("^2").unwrap(),
    );
    assert!(matches!(
        too_new.verdict,
        Err(LoadError::VersionRejected { .. })
    ));
    let none = plugin::inspect(
        &plugin_file("fixture_not_a_plugin"),
        &semver::VersionReq::STAR,
    );
    assert!(none.manifest.is_none());
}
