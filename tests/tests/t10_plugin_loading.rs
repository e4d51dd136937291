//! Loading real plugin files: the default plugins, and one negative fixture
//! per refusal, each asserting the exact error variant.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec};
use hangar_core::abi::PluginKind;
use hangar_core::module::storage::StorageModule;
use hangar_core::types::WriteConcern;
use hangar_core::ErrorKind;
use hangar_host::plugin::{self, Expectation, LoadError};
use hangar_testkit::storage::{batch, lww};
use hangar_tests::support::{hangar_bin, load, plugin_file, storage_config, storage_deps};

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

// Hostile and damaged plugin files: each is refused from its bytes, before
// the library is opened, with its own error naming the file.

#[test]
fn t40_garbage_pointers_in_a_declaration_are_refused_without_a_crash() {
    let file = plugin_file("fixture_bad_pointers");
    let e = plugin::load(&file, &storage_slot()).unwrap_err();
    match &e {
        LoadError::DeclarationPointer {
            path,
            field,
            detail,
        } => {
            assert_eq!(path, &file);
            assert_eq!(field, "name");
            assert!(detail.contains("no relocation"), "{detail}");
            assert!(detail.contains("0xdead0000beef"), "{detail}");
        }
        other => panic!("expected DeclarationPointer, got {other}"),
    }
    assert!(e.to_string().contains("libfixture_bad_pointers"), "{e}");
}

#[test]
fn t41_a_string_relocated_into_zero_filled_memory_is_refused_naming_the_field() {
    let e = load("fixture_bss_pointer", PluginKind::Storage).unwrap_err();
    match &e {
        LoadError::DeclarationPointer { field, detail, .. } => {
            assert_eq!(field, "version");
            assert!(detail.contains("zero-filled"), "{detail}");
        }
        other => panic!("expected DeclarationPointer, got {other}"),
    }
}

#[test]
fn t42_a_short_declaration_is_refused_not_read_past_its_end() {
    let e = load("fixture_short_decl", PluginKind::Storage).unwrap_err();
    match &e {
        LoadError::DeclarationSize {
            symbol,
            size,
            expected,
            ..
        } => {
            assert_eq!(symbol, "hangar_plugin_decl_fixture_short_decl");
            assert_eq!(*size, 20);
            assert_eq!(
                *expected,
                std::mem::size_of::<hangar_core::abi::PluginDeclaration>() as u64
            );
        }
        other => panic!("expected DeclarationSize, got {other}"),
    }
}

fn ctor_marker(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hangar-fixture-ctor-ran.{pid}"))
}

#[test]
fn t43_a_refused_library_never_runs_its_elf_constructors() {
    let file = plugin_file("fixture_ctor_marker");
    let marker = ctor_marker(std::process::id());
    let _ = std::fs::remove_file(&marker);
    let e = plugin::load(&file, &storage_slot()).unwrap_err();
    assert!(matches!(e, LoadError::IncompatibleAbi { .. }), "{e}");
    let report = plugin::inspect(&file, &semver::VersionReq::STAR);
    assert!(matches!(
        report.verdict,
        Err(LoadError::IncompatibleAbi { .. })
    ));
    assert_eq!(report.manifest.unwrap().name, "fixture_ctor_marker");
    assert!(
        !marker.exists(),
        "the refused library's constructor ran: {} exists",
        marker.display()
    );
}

/// Negative control for t43: the fixture's constructor does write its marker
/// when the library is loaded (here by the dynamic loader into `true`).
#[test]
fn t44_the_constructor_fixture_writes_its_marker_when_loaded() {
    let file = plugin_file("fixture_ctor_marker");
    let child = std::process::Command::new("true")
        .env("LD_PRELOAD", &file)
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    let out = child.wait_with_output().expect("true runs");
    assert!(out.status.success());
    let marker = ctor_marker(pid);
    assert!(
        marker.exists(),
        "{} missing: the fixture's constructor did not run, so t43 proves nothing",
        marker.display()
    );
    let _ = std::fs::remove_file(marker);
}

/// The offset of the declaration in a copy of a real plugin file (its magic
/// followed by layout version 1).
fn declaration_offset(bytes: &[u8]) -> usize {
    let mut needle = hangar_core::abi::DECL_MAGIC.to_vec();
    needle.extend_from_slice(&hangar_core::abi::DECL_VERSION.to_ne_bytes());
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the plugin file holds its declaration")
}

fn patched_copy(
    crate_name: &str,
    dir: &std::path::Path,
    patch: impl FnOnce(&mut [u8], usize),
) -> std::path::PathBuf {
    let mut bytes = std::fs::read(plugin_file(crate_name)).unwrap();
    let at = declaration_offset(&bytes);
    patch(&mut bytes, at);
    let out = dir.join(plugin::library_file_name(crate_name));
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn t45_damaged_manifest_values_are_refused_naming_the_field() {
    use hangar_core::abi::{PluginDeclaration, PluginManifest};
    use std::mem::offset_of;
    let m = offset_of!(PluginDeclaration, manifest);
    let dir = tempfile::tempdir().unwrap();
    // panic_unwind holds 2: not a bool
    let f = patched_copy("fixture_init_error", dir.path(), |b, at| {
        b[at + m + offset_of!(PluginManifest, panic_unwind)] = 2;
    });
    match plugin::load(&f, &storage_slot()).unwrap_err() {
        LoadError::DeclarationValue { field, detail, .. } => {
            assert_eq!(field, "panic_unwind");
            assert!(detail.contains("0x2"), "{detail}");
        }
        other => panic!("expected DeclarationValue, got {other}"),
    }
    // the description claims 2^40 bytes
    let f = patched_copy("fixture_init_error", dir.path(), |b, at| {
        let len_at = at + m + offset_of!(PluginManifest, description) + 8;
        b[len_at..len_at + 8].copy_from_slice(&(1u64 << 40).to_ne_bytes());
    });
    match plugin::load(&f, &storage_slot()).unwrap_err() {
        LoadError::DeclarationValue { field, detail, .. } => {
            assert_eq!(field, "description");
            assert!(detail.contains("at most"), "{detail}");
        }
        other => panic!("expected DeclarationValue, got {other}"),
    }
    // bad magic
    let f = patched_copy("fixture_init_error", dir.path(), |b, at| b[at] = b'X');
    assert!(matches!(
        plugin::load(&f, &storage_slot()).unwrap_err(),
        LoadError::NotAPlugin { .. } | LoadError::BadHeader { .. }
    ));
    // a 32-bit ELF is foreign to this 64-bit host
    let f = patched_copy("fixture_init_error", dir.path(), |b, _| b[4] = 1);
    match plugin::load(&f, &storage_slot()).unwrap_err() {
        LoadError::ForeignObject { detail, .. } => assert!(detail.contains("64-bit"), "{detail}"),
        other => panic!("expected ForeignObject, got {other}"),
    }
}

#[test]
fn t46_inspect_and_serve_print_the_error_and_exit_non_zero_for_each_hostile_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (fixture, expect) in [
        (
            "fixture_bad_pointers",
            "bad pointer in the plugin declaration (manifest field `name`)",
        ),
        ("fixture_bss_pointer", "manifest field `version`"),
        ("fixture_short_decl", "is 20 bytes; expected"),
        ("fixture_ctor_marker", "built against Hangar ABI 99.0.0"),
    ] {
        let file = plugin_file(fixture);
        let out = std::process::Command::new(hangar_bin())
            .args(["plugins", "inspect"])
            .arg(&file)
            .env("TMPDIR", tmp.path())
            .output()
            .expect("run hangar plugins inspect");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{fixture}: exit {:?} (a signal means a crash); stdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("loadable:    no"), "{fixture}: {stdout}");
        assert!(stdout.contains(expect), "{fixture}: {stdout}");
        assert!(
            stdout.contains(&file.display().to_string()),
            "{fixture}: {stdout}"
        );
    }
    let markers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(markers.is_empty(), "a constructor ran: {markers:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random bytes, and a real plugin with bytes flipped around its
    /// declaration and in its headers: the reader answers Ok or Err and never
    /// panics (it never dereferences what it reads).
    #[test]
    fn t47_prop_the_declaration_reader_survives_random_and_mutated_files(
        random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
        flips in proptest::collection::vec((0usize..8192, proptest::prelude::any::<u8>()), 1..16),
        header_flips in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..4),
    ) {
        let p = std::path::Path::new("fuzz.so");
        let _ = plugin::read_declaration(p, &random);
        let mut elf = b"\x7fELF".to_vec();
        elf.extend_from_slice(&random);
        let _ = plugin::read_declaration(p, &elf);
        let mut bytes = fixture_bytes().to_vec();
        let at = declaration_offset(&bytes).saturating_sub(4096);
        for (off, v) in flips {
            if let Some(b) = bytes.get_mut(at + off) {
                *b ^= v;
            }
        }
        for (off, v) in header_flips {
            bytes[off] ^= v;
        }
        let _ = plugin::read_declaration(p, &bytes);
    }
}

fn fixture_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(plugin_file("fixture_init_error")).unwrap())
}

#[test]
fn t48_a_forged_root_module_header_is_refused_before_the_library_is_opened() {
    let magic = abi_stable::library::AbiHeader::VALUE.magic_string;
    let dir = tempfile::tempdir().unwrap();
    let f = patched_copy("fixture_init_error", dir.path(), |b, _| {
        let at = b
            .windows(magic.len())
            .position(|w| w == magic)
            .expect("the root module header is in the file");
        b[at] ^= 0xff;
    });
    match plugin::load(&f, &storage_slot()).unwrap_err() {
        LoadError::AbiLayout { detail, .. } => {
            assert!(detail.contains("abi_stable's header"), "{detail}");
        }
        other => panic!("expected AbiLayout, got {other}"),
    }
}

// Plugin-owned settings through the stock `hangar` binary: the template
// plugin's own `[storage] max_key_bytes` from a TOML file, and a wrong value
// stopping start-up with a message naming the key and the plugin.
