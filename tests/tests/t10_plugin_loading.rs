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

/// The `hangar` binary next to the test executables (`cargo build` or
/// `cargo test --workspace` builds it).
fn hangar_bin() -> std::path::PathBuf {
    let bin = hangar_tests::support::target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found; build it first (cargo build -p hangar-host)",
        bin.display()
    );
    bin
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

/// Runs the stock binary with `args` until it exits (killed after `limit`):
/// its exit code (`None` when killed) and its stdout and stderr.
fn run_hangar(
    args: &[&std::ffi::OsStr],
    limit: std::time::Duration,
) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(hangar_tests::support::target_dir().join("hangar"))
        .args(args)
        .env_remove("JWT_SECRET")
        .env_remove("STORAGE_BACKEND")
        .env("HANGAR_NO_AUTH", "1")
        .env("HANGAR_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hangar");
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, out, err)
}

fn template_toml(storage: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hangar.toml");
    std::fs::write(
        &file,
        format!(
            "host = \"127.0.0.1\"\nport = 0\n[plugins]\nstorage = {:?}\n[cluster]\nhost = \"127.0.0.1\"\n[storage]\n{storage}\n",
            plugin_file("hangar_plugin_template").display().to_string()
        ),
    )
    .unwrap();
    (dir, file)
}

#[test]
fn t60_a_wrong_plugin_setting_stops_start_up_naming_the_key_and_the_plugin() {
    for (section, key, expected) in [
        (
            "max_key_bytes = \"big\"",
            "storage.max_key_bytes",
            "expected usize",
        ),
        (
            "max_key_byte = 8",
            "storage.max_key_byte",
            "unknown field `max_key_byte`",
        ),
        // a key the template passes on to the default module it wraps
        (
            "tasklet_budget_ms = true",
            "storage.tasklet_budget_ms",
            "expected u64",
        ),
    ] {
        let (dir, file) = template_toml(section);
        let (code, _, err) = run_hangar(
            &[
                "--config".as_ref(),
                file.as_os_str(),
                "--data-dir".as_ref(),
                dir.path().as_os_str(),
            ],
            std::time::Duration::from_secs(60),
        );
        assert!(
            code.is_some_and(|c| c != 0),
            "{section}: exit {code:?}\n{err}"
        );
        assert!(
            err.contains("hangar-plugin-template")
                && err.contains(&format!("setting {key}"))
                && err.contains(expected),
            "{section}:\n{err}"
        );
    }
}

#[test]
fn t61_inspect_prints_the_plugins_settings_with_defaults_and_variables() {
    let (code, out, err) = run_hangar(
        &[
            "plugins".as_ref(),
            "inspect".as_ref(),
            plugin_file("hangar_plugin_template").as_os_str(),
        ],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    for want in [
        "settings:",
        "[storage]",
        "# longest key accepted, in bytes",
        "max_key_bytes = 256",
        "backend = \"embedded\"",
        "tasklet_budget_ms = 5",
        "HANGAR_TEMPLATE_MAX_KEY_BYTES -> storage.max_key_bytes",
        "STORAGE_BACKEND -> storage.backend",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, out, _) = run_hangar(
        &[
            "plugins".as_ref(),
            "inspect".as_ref(),
            plugin_file("hangar_cluster").as_os_str(),
        ],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "[cluster]",
        "# cluster transport port",
        "cluster_port = 0",
        "cluster_id = \"hangar\"",
        "backup_count = 1",
        "default_read_consistency = \"EVENTUAL\"",
        "# service_name = (not set by default)",
        "# map_consistency = {} (none by default)",
        "[cluster.migration]",
        "max_bytes_per_sec = 4194304",
        "[cluster.repair]",
        "HANGAR_CLUSTER_PORT -> cluster.cluster_port",
        "HANGAR_SEED_NODES -> cluster.seed_nodes",
        "HANGAR_ZONE -> cluster.zone",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The tables come after every plain key, so the text reads as TOML.
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let at = |want: &str| lines.iter().position(|l| l.starts_with(want)).unwrap();
    let tables = at("[cluster.");
    for plain in [
        "backup_count = 1",
        "replication_enabled = true",
        "default_read_consistency",
    ] {
        assert!(at(plain) < tables, "{plain} after a table:\n{out}");
    }
}

/// A node config on loopback with the given `[cluster]` lines.
fn cluster_toml(cluster: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hangar.toml");
    std::fs::write(
        &file,
        format!("host = \"127.0.0.1\"\nport = 0\n[cluster]\nhost = \"127.0.0.1\"\n{cluster}\n"),
    )
    .unwrap();
    (dir, file)
}

#[test]
fn t63_a_wrong_cluster_setting_stops_start_up_naming_the_key_and_the_plugin() {
    for (cluster, key, expected) in [
        (
            "backup_count = \"two\"",
            "setting cluster.backup_count",
            "expected u32",
        ),
        (
            "gossip_interval = 100",
            "setting cluster.gossip_interval",
            "unknown field `gossip_interval`",
        ),
        (
            "[cluster.migration]\nmax_bytes_per_second = 1",
            "setting cluster.migration.max_bytes_per_second",
            "unknown field `max_bytes_per_second`",
        ),
        (
            "gossip_interval_ms = 0",
            "[cluster]: gossip_interval_ms = 0",
            "expected at least 1",
        ),
    ] {
        let (dir, file) = cluster_toml(cluster);
        let args: Vec<&std::ffi::OsStr> = vec![
            "--config".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ];
        let (code, _, err) = run_hangar(&args, std::time::Duration::from_secs(60));
        assert!(
            code.is_some_and(|c| c != 0),
            "{cluster}: exit {code:?}\n{err}"
        );
        assert!(
            err.contains("plugin hangar-cluster") && err.contains(key) && err.contains(expected),
            "{cluster}:\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_the_stock_binary_gives_the_template_its_max_key_bytes_from_the_toml_file() {
    use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
    let mut c = Cluster::new(
        1,
        &Settings {
            top_toml: format!(
                "plugins.storage = {:?}",
                plugin_file("hangar_plugin_template").display().to_string()
            ),
            cluster_toml: "\n[storage]\nmax_key_bytes = 8\n".into(),
            ..Settings::default()
        },
    );
    c.start_with_seeds(0, "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c.health(0).is_none() {
        assert!(c.is_running(0), "the node exited:\n{}", c.log_tail(0, 30));
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            c.log_tail(0, 30)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let v = serde_json::json!({"v": 1});
    let ops = vec![
        put("a", "m", "12345678", &v, 1, "w"),
        put("b", "m", "123456789", &v, 1, "w"),
    ];
    let ack = cl.batch(ops, "APPLIED", None, 5_000).await.unwrap();
    let results = ack.results.expect("per-op results");
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.op_id == id)
            .expect("a result per op")
    };
    assert!(by_id("a").success, "{results:?}");
    let refused = by_id("b");
    assert!(!refused.success, "{results:?}");
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.contains("at most 8 bytes")),
        "{results:?}"
    );
    assert!(c.stop(0, std::time::Duration::from_secs(10)));
}

#[test]
fn t64_a_flag_setting_a_variable_the_plugin_does_not_read_is_refused_by_name() {
    // The cluster flags reach a plugin as the variables they set; a plugin
    // that does not declare one refuses to start instead of ignoring it.
    let p = load("hangar_storage", PluginKind::Storage).unwrap();
    let mut config = storage_config("n");
    config
        .settings
        .env
        .insert("HANGAR_CLUSTER_PORT".into(), "9000".into());
    let Err(e) = plugin::instantiate_storage(&p, &config, &storage_deps("n")) else {
        panic!("an undeclared variable set by a flag must be refused")
    };
    let m = e.to_string();
    assert!(
        m.contains("hangar-storage")
            && m.contains(
                "--cluster-port sets HANGAR_CLUSTER_PORT, which this plugin does not read"
            )
            && m.contains("STORAGE_BACKEND"),
        "{m}"
    );
    // A declared one is taken.
    let mut config = storage_config("n");
    config
        .settings
        .env
        .insert("HANGAR_STORAGE_WORKER_THREADS".into(), "0".into());
    let Err(e) = plugin::instantiate_storage(&p, &config, &storage_deps("n")) else {
        panic!("worker_threads = 0 must be refused")
    };
    assert!(e.to_string().contains("worker_threads = 0"), "{e}");
}

// Log directives for a plugin's modules: a plugin's events reach the host
// under target `plugin`, and the host applies the operator's directives to
// the module that wrote them (`host/src/logging.rs`).

#[test]
fn t65_log_directives_apply_to_the_plugin_module_that_wrote_the_event() {
    let data = tempfile::tempdir().unwrap();
    let serve = |log: &str| {
        let (_, _, err) = run_hangar(
            &[
                "--host".as_ref(),
                "127.0.0.1".as_ref(),
                "--port".as_ref(),
                "0".as_ref(),
                "--data-dir".as_ref(),
                data.path().as_os_str(),
                "--log".as_ref(),
                log.as_ref(),
            ],
            std::time::Duration::from_secs(8),
        );
        err
    };
    // The storage plugin's start line is info from
    // `hangar_storage::module::core`; "node ready" is the host's own info.
    let err = serve("warn,hangar_storage::module::core=info");
    assert!(
        err.contains("storage module started"),
        "a directive naming the plugin's module lets its info through:\n{err}"
    );
    assert!(
        !err.contains("node ready"),
        "the host stays at warn:\n{err}"
    );
    let err = serve("info,hangar_storage=warn");
    assert!(err.contains("node ready"), "{err}");
    assert!(
        !err.contains("storage module started"),
        "a directive naming the plugin's crate holds its info back:\n{err}"
    );
}
