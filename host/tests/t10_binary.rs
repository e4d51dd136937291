//! The `hangar` binary as operators run it: a child process on loopback.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn hangar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
    c.env_remove("HANGAR_PORT")
        .env_remove("JWT_SECRET")
        .env("HANGAR_LOG", "info");
    c
}

/// Starts the node with `--port 0` and returns it with the port it printed.
fn start(extra: &[&str], data: &std::path::Path) -> (Child, u16) {
    let mut child = hangar()
        .args(["--port", "0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hangar");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(p) = l.strip_prefix("PORT=") {
                    break p.trim().parse::<u16>().expect("PORT=<n>");
                }
            }
            _ => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("hangar exited before printing PORT=; stderr:\n{err}");
            }
        }
    };
    (child, port)
}

/// GET `path` on the node at `port`: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let a = hangar_testkit::http::get(port, path, Duration::from_secs(5)).expect("GET");
    (a.status, a.body)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hangar did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn t10_starts_on_an_ephemeral_port_answers_health_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start(&[], dir.path());
    assert_ne!(port, 0);
    let (status, body) = http_get(port, "/health");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["storage"]["name"], "hangar-storage");
    assert_eq!(v["cluster"]["name"], "hangar-cluster");
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert!(st.success(), "clean exit on SIGTERM, got {st:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    for step in [
        "step 1",
        "step 2",
        "step 3",
        "step 4",
        "step 5",
        "shutdown complete",
    ] {
        assert!(err.contains(step), "log mentions {step:?}:\n{err}");
    }
}

#[test]
fn t11_help_describes_the_commands() {
    let out = hangar().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for w in ["serve", "plugins", "--port", "--data-dir", "--config"] {
        assert!(text.contains(w), "--help mentions {w}:\n{text}");
    }
}

#[test]
fn t12_a_failing_start_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_BIN_EXE_hangar"))
        .parent()
        .unwrap()
        .join("deps")
        .join(libloading_name("fixture_init_error"));
    let out = hangar()
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .arg("--storage-plugin")
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    if fixture.exists() {
        assert!(err.contains("step 3 (storage module)"), "{err}");
        assert!(err.contains("the backend refused to open"), "{err}");
    } else {
        // Built alone (`cargo test -p hangar-host`) the fixture may be
        // missing: then the failure must still name step 3 and the file.
        assert!(
            err.contains("step 3 (storage module)") && err.contains("cannot open"),
            "{err}"
        );
    }
}

#[test]
fn t13_bad_configuration_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hangar.toml");
    std::fs::write(&cfg, "port = \"eighty\"\n").unwrap();
    let out = hangar().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port"), "{err}");
    let out = hangar().args(["--node-id", "a:b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node_id"));
}

#[test]
fn t14_plugins_inspect_prints_the_manifest_and_verdict() {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_hangar"))
        .parent()
        .unwrap();
    let file = [dir.join("deps"), dir.to_path_buf()]
        .into_iter()
        .map(|d| d.join(libloading_name("hangar_storage")))
        .find(|p| p.exists())
        .expect("the storage plugin is built");
    let out = hangar()
        .args(["plugins", "inspect"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("name:        hangar-storage"), "{text}");
    assert!(text.contains("loadable:    yes"), "{text}");
    let out = hangar()
        .args(["plugins", "inspect", "--require", ">=9"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("loadable:    no") && text.contains("requires >=9"),
        "{text}"
    );
}

fn libloading_name(crate_name: &str) -> String {
    format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The binary defines and exports `malloc`/`free` (jemalloc, unprefixed), so
/// by ELF symbol interposition the plugins' libc allocations go to it too.
/// Without the `jemalloc` feature the binary only imports them from glibc.
#[cfg(all(feature = "jemalloc", target_os = "linux", not(target_env = "musl")))]
#[test]
fn t15_the_binary_exports_its_allocator_to_the_plugins() {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_hangar")).expect("read the binary");
    let file = object::File::parse(&*bytes).expect("an object file");
    for name in ["malloc", "free", "calloc", "realloc", "posix_memalign"] {
        let sym = file
            .dynamic_symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{name} is not in the dynamic symbol table"));
        assert!(
            sym.is_definition(),
            "{name} is imported, not defined: plugins would use glibc's allocator"
        );
    }
}
