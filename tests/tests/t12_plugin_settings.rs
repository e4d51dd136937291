//! Plugin settings through the stock binary: a wrong setting stops the
//! start naming the key and the plugin, `plugins inspect` prints each
//! plugin's settings with their defaults and variables, the TOML file's
//! values reach the plugin, flags for variables a plugin does not read are
//! refused, and log directives reach the plugin module that wrote an event.

use hangar_core::abi::PluginKind;
use hangar_host::plugin;
use hangar_tests::support::{load, plugin_file, storage_config, storage_deps};

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
