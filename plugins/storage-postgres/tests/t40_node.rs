//! The stock `hangar` binary on the PostgreSQL plugin (multi-process):
//! acknowledged PERSISTED writes survive `kill -9` of the node at random
//! moments; PostgreSQL stopped and started under load loses nothing
//! acknowledged and the node carries on by itself; down past the retry
//! window (`[storage] retry_ms`), writes fail with the reason and `/health`
//! says failed until the database is back, then the node recovers by
//! itself; an unreachable database stops the start with a non-zero exit and
//! a message naming the URL without its password. The node's settings are
//! in its TOML file (`[storage]`), the unreachable case's in the
//! environment.
//!
//! Needs `target/debug/hangar` (`cargo build -p hangar-host`), like the
//! other multi-process tests.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_storage::persistence::PersistenceBackend;
use hangar_storage_postgres::test_server::PgTestServer;
use hangar_storage_postgres::PostgresSettings;
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use hangar_tests::support::{plugin_file, target_dir};
use serde_json::json;

const MAP: &str = "crash";

/// A node whose TOML file names the plugin by path and holds its settings
/// in `[storage]` (the plugin's keys next to the default module's), with
/// `extra` lines added to that section.
fn node_on(s: &PostgresSettings, extra: &str) -> Cluster {
    let plugin = plugin_file("hangar_storage_postgres");
    Cluster::new(
        1,
        &Settings {
            top_toml: format!(
                "[plugins]\nstorage = {:?}\n[storage]\nurl = {:?}\nschema = {:?}\n\
                 journal_capacity = 100\n{extra}\n",
                plugin.display().to_string(),
                s.url(),
                s.schema
            ),
            ..Settings::default()
        },
    )
}

#[derive(Default)]
struct Tally {
    acked: Mutex<BTreeSet<String>>,
    failed: Mutex<u64>,
    /// The first reason a write was refused.
    first_error: Mutex<Option<String>>,
}

/// Writes batches of 4 unique keys at PERSISTED until `stop` or until the
/// connection breaks; records the keys acknowledged as persisted.
async fn writer(url: String, prefix: String, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    let Ok(mut cl) = Client::connect(&url).await else {
        return;
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let ops = (0..4)
            .map(|_| {
                n += 1;
                let key = format!("{prefix}-{n}");
                put(&key, MAP, &key, &json!({ "n": n }), 1_000 + n, "w")
            })
            .collect::<Vec<_>>();
        match cl.batch(ops, "PERSISTED", None, 15_000).await {
            Ok(ack) => {
                let mut refused = false;
                for r in ack.results.unwrap_or_default() {
                    if r.success {
                        t.acked.lock().unwrap().insert(r.op_id);
                    } else {
                        refused = true;
                        *t.failed.lock().unwrap() += 1;
                        t.first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(r.error.unwrap_or_default());
                    }
                }
                if refused {
                    // Refusals come fast: do not spin on them.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(_) => return,
        }
    }
}

fn start_ready(c: &mut Cluster) {
    c.start(0);
    c.wait_formed(&[0], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the node on PostgreSQL did not become ready: {e}"));
}

async fn stored_keys(s: &PostgresSettings) -> BTreeSet<String> {
    let b = common::open(s).await;
    let keys = b.list_keys(MAP).await.unwrap().into_iter().collect();
    b.close().await.unwrap();
    keys
}

/// The whole HTTP response to `GET path` (status line included).
fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the node answers");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn missing(acked: &BTreeSet<String>, stored: &BTreeSet<String>) -> Vec<String> {
    acked.difference(stored).take(10).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_acknowledged_writes_survive_kill_9_of_the_node() {
    let s = PgTestServer::shared().fresh_settings();
    let mut c = node_on(&s, "");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("t10 kill -9 seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t = Arc::new(Tally::default());
    for round in 0..3 {
        start_ready(&mut c);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                tokio::spawn(writer(
                    c.ws_url(0),
                    format!("r{round}w{w}"),
                    stop.clone(),
                    t.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400 + next() % 1_200)).await;
        c.kill9(0);
        stop.store(true, Ordering::Release);
        for w in writers {
            w.await.unwrap();
        }
    }
    // The node starts again over what PostgreSQL kept.
    start_ready(&mut c);
    let health = c.health(0).unwrap();
    assert_eq!(
        health["storage"]["name"], "hangar-storage-postgres",
        "{health}"
    );
    c.kill9(0);
    let acked = t.acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 12,
        "too few writes acknowledged to test anything: {}",
        acked.len()
    );
    let stored = stored_keys(&s).await;
    eprintln!(
        "t10: {} writes acknowledged over 3 kills, {} stored, {} failed",
        acked.len(),
        stored.len(),
        t.failed.lock().unwrap()
    );
    assert_eq!(
        missing(&acked, &stored),
        Vec::<String>::new(),
        "acknowledged writes lost (seed {seed}); {} acked, {} stored",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_postgres_stopped_and_started_under_load_loses_nothing_acknowledged() {
    // A server of its own: this test stops it.
    let server = PgTestServer::start();
    let s = server.fresh_settings();
    let mut c = node_on(&s, "");
    start_ready(&mut c);
    let t = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            tokio::spawn(writer(
                c.ws_url(0),
                format!("w{w}"),
                stop.clone(),
                t.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.halt();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_while_down = t.acked.lock().unwrap().len();
    server.resume();
    // Writes are acknowledged again once the database is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.acked.lock().unwrap().len() < acked_while_down + 40 {
        assert!(
            Instant::now() < deadline,
            "no progress after PostgreSQL came back; log:\n{}",
            c.log_tail(0, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    let health = c.health(0).unwrap();
    assert_eq!(health["storage"]["status"], "ok", "{health}");
    let metrics = c.metrics(0).unwrap();
    for name in [
        "hangar_postgres_commit_seconds",
        "hangar_postgres_retries_total",
        "hangar_postgres_errors_total",
        "hangar_postgres_pool_connections",
        "hangar_postgres_pool_max",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    c.stop(0, Duration::from_secs(30));
    let acked = t.acked.lock().unwrap().clone();
    let stored = stored_keys(&s).await;
    eprintln!(
        "t20: {} acknowledged ({acked_while_down} before PostgreSQL came back), {} stored, {} failed",
        acked.len(),
        stored.len(),
        t.failed.lock().unwrap()
    );
    assert_eq!(missing(&acked, &stored), Vec::<String>::new());
    server.destroy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_postgres_down_past_the_retry_window_fails_writes_then_the_node_recovers_by_itself() {
    let server = PgTestServer::start();
    let s = server.fresh_settings();
    let mut c = node_on(&s, "retry_ms = 1000");
    start_ready(&mut c);
    let t = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(c.ws_url(0), "w".into(), stop.clone(), t.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.halt();
    let deadline = Instant::now() + Duration::from_secs(30);
    while *t.failed.lock().unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "no write failed; log:\n{}",
            c.log_tail(0, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = t.first_error.lock().unwrap().clone().unwrap_or_default();
    eprintln!("t21: first refused write: {reason}");
    assert!(reason.contains("unreachable; gave up retrying"), "{reason}");
    let health = raw_get(c.nodes[0].port, "/health");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains(r#""status":"failed""#), "{health}");
    // Down well past the window: the node keeps retrying, writes keep
    // failing with the reason.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_while_down = t.acked.lock().unwrap().len();
    server.resume();
    // Back: writes are acknowledged again and /health is ok, with no
    // restart of the node.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let progressed = t.acked.lock().unwrap().len() >= acked_while_down + 40;
        if progressed && raw_get(c.nodes[0].port, "/health").starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not recover after PostgreSQL came back; log:\n{}",
            c.log_tail(0, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Release);
    w.await.unwrap();
    let health = c.health(0).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    c.kill9(0);
    let acked = t.acked.lock().unwrap().clone();
    eprintln!(
        "t21: {} acknowledged ({acked_while_down} before PostgreSQL came back), {} failed",
        acked.len(),
        t.failed.lock().unwrap()
    );
    assert_eq!(
        missing(&acked, &stored_keys(&s).await),
        Vec::<String>::new()
    );
    server.destroy();
}

#[test]
fn t30_an_unreachable_database_stops_the_binary_with_the_url_and_cause() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(target_dir().join("hangar"))
        .args(["--port", "0", "--data-dir"])
        .arg(data.path())
        .env_remove("HANGAR_PORT")
        .env_remove("JWT_SECRET")
        .env("HANGAR_NO_AUTH", "1")
        .env("HANGAR_LOG", "warn")
        .env(
            "HANGAR_STORAGE_PLUGIN",
            plugin_file("hangar_storage_postgres"),
        )
        .env(
            "HANGAR_POSTGRES_URL",
            format!("postgres://hangar:s3cret@127.0.0.1:{port}/hangar"),
        )
        .env("HANGAR_POSTGRES_CONNECT_TIMEOUT_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/debug/hangar (cargo build -p hangar-host)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hangar still runs with an unreachable database");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach PostgreSQL at postgres://hangar:***@127.0.0.1:{port}/hangar"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
