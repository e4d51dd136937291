//! A damaged embedded store, as an operator meets it: the `hangar` binary
//! refuses to start and says what to do; `--reset-damaged-store` starts it
//! empty with the damaged file kept aside; and damage met while the node
//! runs turns `/health` to `503 failed`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RString;
use hangar_core::types::WriteConcern;
use hangar_host::{HangarConfig, Modules};
use hangar_storage::persistence::{PersistenceBackend, RedbBackend, RedbOptions, DB_FILE_NAME};

fn hangar_bin() -> PathBuf {
    let bin = hangar_tests::support::target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found; build it first (cargo build -p hangar-host)",
        bin.display()
    );
    bin
}

fn hangar(data: &Path) -> Command {
    let mut c = Command::new(hangar_bin());
    c.args(["--port", "0", "--data-dir"])
        .arg(data)
        .env_remove("HANGAR_PORT")
        .env_remove("JWT_SECRET")
        .env("HANGAR_NO_AUTH", "1")
        .env("HANGAR_LOG", "warn");
    c
}

/// Runs `cmd` to its end, killing it (and failing) after `limit`: a node
/// that wrongly starts would otherwise never exit.
fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hangar");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "hangar was expected to exit but still ran after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn t10_the_binary_refuses_a_damaged_store_then_starts_empty_only_on_purpose() {
    let data = tempfile::tempdir().unwrap();
    // The default node id's state directory (`<data_dir>/<node_id>`).
    let store_dir = data.path().join("node-1").join("storage");
    std::fs::create_dir_all(&store_dir).unwrap();
    std::fs::write(store_dir.join(DB_FILE_NAME), b"").unwrap();

    let out = output_within(hangar(data.path()), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    for part in [
        "hangar.redb is damaged",
        "empty (0 bytes)",
        "Restore the file from a backup",
        "--reset-damaged-store",
    ] {
        assert!(
            stderr.contains(part),
            "{part:?} missing from stderr:\n{stderr}"
        );
    }
    assert_eq!(
        std::fs::metadata(store_dir.join(DB_FILE_NAME))
            .unwrap()
            .len(),
        0,
        "the refused store is left as found"
    );

    let mut child = hangar(data.path())
        .arg("--reset-damaged-store")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hangar");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(p) = l.strip_prefix("PORT=") {
                    break p.trim().parse::<u16>().unwrap();
                }
            }
            _ => {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("hangar exited before printing PORT=; stderr:\n{err}");
            }
        }
    };
    let (status, body) = http_get(port, "/health");
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
    let aside: Vec<_> = std::fs::read_dir(&store_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hangar.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept aside");
}

/// GET `path` on the node at `port`: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let a = hangar_testkit::http::get(port, path, Duration::from_secs(5)).expect("GET");
    (a.status, a.body)
}

/// A node on `config` whose embedded store has no page cache, so that a
/// page going bad on disk is read from the file.
async fn node_without_page_cache(config: &HangarConfig) -> hangar_host::Running {
    let store_dir = config.storage_module_config().data_dir;
    let storage = move |c, d| {
        let dir = store_dir.clone();
        hangar_storage::create_with_backend(
            c,
            d,
            "redb without cache",
            Arc::new(move |_| {
                let opts = RedbOptions {
                    cache_size_bytes: Some(0),
                    ..RedbOptions::default()
                };
                Ok(Arc::new(RedbBackend::open_with(&dir, &opts)?) as Arc<dyn PersistenceBackend>)
            }),
        )
    };
    hangar_host::start(
        config.clone(),
        Modules::embedded(storage, hangar_cluster::create),
    )
    .await
    .expect("the node starts")
}

async fn health(port: u16) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(port, "/health"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_health_reports_a_store_that_failed_at_run_time() {
    let data = tempfile::tempdir().unwrap();
    let mut config = HangarConfig {
        port: 0,
        data_dir: data.path().to_path_buf(),
        ..HangarConfig::default()
    };
    config.storage.set("backend", "embedded");
    // No event journal: its rows repeat the keys, and the page to damage is
    // found below by a key's bytes, which must be an entries page.
    config.storage.set("journal_capacity", 0);
    config.finish().unwrap();

    // a first run stores 2,000 records
    let first = node_without_page_cache(&config).await;
    let ops = (0..2_000)
        .map(|i| hangar_testkit::storage::lww("m", &format!("key-{i:05}"), Some(i.into()), 10, "w"))
        .collect();
    let out = first
        .node
        .storage
        .apply(hangar_testkit::storage::batch(ops, WriteConcern::Persisted))
        .await
        .unwrap();
    let acks: Vec<_> = out.iter().map(|o| o.ack).collect();
    first
        .node
        .storage
        .notify_acks(acks.clone().into(), WriteConcern::Replicated);
    first.node.storage.await_acks(acks.into()).await.unwrap();
    first.shutdown().await;

    // the second has not loaded the map when one of its pages goes bad
    let running = node_without_page_cache(&config).await;
    let port = running.addr.port();
    let (status, body) = health(port).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let file = config.storage_module_config().data_dir.join(DB_FILE_NAME);
    let bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"key-01500")
        .expect("the key is stored") as u64
        & !4095;
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0xa5; 4096]).unwrap();
    }
    let e = running
        .node
        .storage
        .read("m".into(), vec![RString::from("key-01500")].into())
        .await
        .unwrap_err();
    assert!(e.message.contains("is damaged"), "{e}");
    let (status, body) = health(port).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"status\":\"failed\""), "{body}");
    running.shutdown().await;
}
