//! A plugin built outside this workspace, as its author would build it:
//! `tests/fixtures/external_plugin` (a storage plugin depending on
//! `hangar-core`, the SDK and the default storage module it wraps, with
//! `hangar-testkit` for its tests) is copied to a temporary folder, its
//! tests (the storage contract suite, one test per case) run there with
//! cargo, and the stock `hangar` binary loads the library it built with
//! its own setting (`[storage] label`) from a TOML file; a wrong value for
//! that setting stops start-up naming it.
//!
//! Cost: the copy is a workspace of its own, so cargo builds its
//! dependencies once more. The copy uses this workspace's `Cargo.lock`
//! (the same versions, nothing to resolve) and a target directory of its
//! own under this workspace's (`target/external-plugin`, kept between runs,
//! so a rerun only checks freshness); never this workspace's running
//! target directory, whose lock the outer `cargo test` holds. Bounded in
//! time: the build and the suite together by [`BUILD_LIMIT`], each node
//! start by [`START_LIMIT`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangar_tests::support::target_dir;

/// Longest the copy's build and test run may take (a first build on a
/// loaded two-core machine included).
const BUILD_LIMIT: Duration = Duration::from_secs(40 * 60);

/// Longest a node start (or its refusal) may take.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The repository's root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Copies the fixture to `to`, pointing its path dependencies (relative to
/// the fixture inside the repository) at the repository, and gives it this
/// workspace's lock file.
fn copy_fixture(to: &Path) {
    let from = repo_root().join("tests/fixtures/external_plugin");
    for sub in ["src", "tests"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(from.join("Cargo.toml")).unwrap();
    let root = repo_root().display().to_string();
    let rewritten = manifest.replace("path = \"../../../", &format!("path = \"{root}/"));
    assert_ne!(manifest, rewritten, "the fixture's path dependencies moved");
    std::fs::write(to.join("Cargo.toml"), rewritten).unwrap();
    std::fs::copy(repo_root().join("Cargo.lock"), to.join("Cargo.lock")).unwrap();
}

/// Runs `cmd` to its end or until `limit` (then kills it), returning its
/// exit code (none when killed) and its output.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        })
    })
    .collect();
    drop(tx);
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in readers {
        let _ = r.join();
    }
    (code, rx.into_iter().collect::<Vec<_>>().join("\n"))
}

/// `cargo` for the copy: the toolchain running this test, without the
/// variables cargo sets for this test's own package.
fn cargo(dir: &Path, target: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_TARGET_DIR",
            ]
            .contains(&k.as_str())
        {
            cmd.env_remove(&k);
        }
    }
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_INCREMENTAL", "0");
    cmd
}

/// Starts the stock `hangar` with `toml` as its config file; returns the
/// exit code (none: still running at the limit, or stopped by us once
/// `ready_line` was logged) and what it wrote.
fn start_hangar(toml: &str, ready_line: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hangar.toml");
    std::fs::write(&file, toml).unwrap();
    let mut child = Command::new(target_dir().join("hangar"))
        .args(["--config".as_ref(), file.as_os_str()])
        .args(["--data-dir".as_ref(), dir.path().as_os_str()])
        .env_remove("JWT_SECRET")
        .env_remove("STORAGE_BACKEND")
        .env("HANGAR_NO_AUTH", "1")
        .env("HANGAR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hangar");
    let (tx, rx) = mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut log = Vec::new();
    let code = loop {
        while let Ok(line) = rx.try_recv() {
            log.push(line);
        }
        if log.iter().any(|l| l.contains(ready_line)) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > START_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    log.extend(rx.try_iter());
    (code, log.join("\n"))
}

#[test]
fn t10_a_plugin_built_outside_the_workspace_passes_the_suite_and_loads_with_its_setting() {
    let copy = tempfile::tempdir().unwrap();
    copy_fixture(copy.path());
    let target = target_dir()
        .parent()
        .expect("the target directory")
        .join("external-plugin");

    let started = Instant::now();
    let (code, out) = run_bounded(
        cargo(copy.path(), &target).args(["test", "--no-fail-fast"]),
        BUILD_LIMIT,
    );
    let took = started.elapsed();
    eprintln!(
        "t11: the external plugin's build and tests took {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(code, Some(0), "cargo test of the copy failed:\n{out}");
    let passed: usize = out
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 50 && out.contains("t10_storage_contract::"),
        "the storage contract suite did not run ({passed} tests passed):\n{out}"
    );

    // `cargo test` leaves the plugin file in `deps/` (`cargo build` would
    // also copy it up).
    let file = hangar_host::plugin::library_file_name("hangar_external_plugin");
    let so = [
        target.join("debug").join("deps").join(&file),
        target.join("debug").join(&file),
    ]
    .into_iter()
    .find(|f| f.is_file())
    .unwrap_or_else(|| panic!("{file} was not built under {}", target.display()));
    let toml = |storage: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = 0\n[plugins]\nstorage = {:?}\n[cluster]\nhost = \"127.0.0.1\"\n[storage]\nbackend = \"memory\"\n{storage}\n",
            so.display().to_string()
        )
    };

    // The setting from the file reaches the plugin: its description, which
    // the host logs once the module is built, carries the label.
    let ready = "storage module: external plugin, store labelled \"from the toml file\"";
    let (code, log) = start_hangar(&toml("label = \"from the toml file\""), ready);
    assert!(
        code.is_none() && log.contains(ready),
        "exit {code:?}, expected {ready:?} in:\n{log}"
    );

    // A wrong value stops start-up, naming the plugin, the key and what
    // was expected.
    for (line, expected) in [
        ("label = 5", "expected a string"),
        ("label = \"\"", "label has 0 characters: expected 1 to 64"),
        ("lable = \"x\"", "unknown field `lable`"),
    ] {
        let (code, log) = start_hangar(&toml(line), "node ready");
        assert!(code.is_some_and(|c| c != 0), "{line}: exit {code:?}\n{log}");
        assert!(
            log.contains("hangar-external-plugin") && log.contains(expected),
            "{line}:\n{log}"
        );
        if line.starts_with("label =") && !line.contains("\"\"") {
            assert!(log.contains("setting storage.label"), "{line}:\n{log}");
        }
    }
}
