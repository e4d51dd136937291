//! The stock release binary with the plugin named in its TOML file, as an
//! operator runs it: a client writes at PERSISTED, the node stops and
//! starts again, and the client reads back everything it wrote, values
//! included.
//!
//! Needs the release build of the host, its default cluster plugin and
//! this plugin, built together (`scripts/test` runs it before the tests):
//! `cargo build --release -p hangar-host -p hangar-cluster -p
//! hangar-storage-postgres`.
//! Without it the test fails saying so, unless `HANGAR_RELEASE_TESTS=skip`
//! is set, which skips it with a loud message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hangar_host::plugin::library_file_name;
use hangar_host::protocol::messages::QuerySub;
use hangar_host::protocol::Message;
use hangar_storage_postgres::test_server::PgTestServer;
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use hangar_tests::support::target_dir;
use serde_json::json;

const MAP: &str = "release";

/// `target/release`, next to the tests' own profile directory.
fn release_dir() -> PathBuf {
    target_dir()
        .parent()
        .expect("the profile directory has a parent")
        .join("release")
}

/// Every key of `MAP` with its value, through a live query.
async fn read_all(url: &str) -> BTreeMap<String, serde_json::Value> {
    let mut cl = Client::connect(url).await.expect("the node answers");
    cl.send(&Message::QuerySub {
        payload: QuerySub {
            query_id: "all".into(),
            map_name: MAP.into(),
            query: rmpv::Value::Map(vec![]),
            fields: None,
            consistency: None,
        },
    })
    .await
    .unwrap();
    cl.wait_for(Duration::from_secs(10), |m| match m {
        Message::QueryResp { payload } if payload.query_id == "all" => Some(
            payload
                .results
                .iter()
                .map(|r| {
                    let v = r.value.to_value().expect("the value is msgpack");
                    let v: serde_json::Value =
                        rmpv::ext::from_value(v).expect("the value reads as JSON");
                    (r.key.clone(), v)
                })
                .collect(),
        ),
        _ => None,
    })
    .await
    .expect("the query answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_the_release_binary_on_the_plugin_reads_back_its_writes_after_a_restart() {
    let (bin, plugin, cluster) = (
        release_dir().join("hangar"),
        release_dir().join(library_file_name("hangar_storage_postgres")),
        release_dir().join(library_file_name("hangar_cluster")),
    );
    if !bin.is_file() || !plugin.is_file() || !cluster.is_file() {
        if std::env::var("HANGAR_RELEASE_TESTS").is_ok_and(|v| v == "skip") {
            eprintln!(
                "\n!!!!! SKIPPED t10_the_release_binary_on_the_plugin_reads_back_its_writes_after_a_restart: \
                 HANGAR_RELEASE_TESTS=skip is set, so the release binary was NOT tested !!!!!\n"
            );
            return;
        }
        panic!(
            "{}, {} or {} is missing: build them with `cargo build --release -p hangar-host -p \
             hangar-cluster -p hangar-storage-postgres` (scripts/test does), or set \
             HANGAR_RELEASE_TESTS=skip",
            bin.display(),
            plugin.display(),
            cluster.display()
        );
    }
    let s = PgTestServer::shared().fresh_settings();
    let mut c = Cluster::new(
        1,
        &Settings {
            top_toml: format!(
                "[plugins]\nstorage = {:?}\n[storage]\nurl = {:?}\nschema = {:?}\npool_size = 2\n",
                plugin.display().to_string(),
                s.url(),
                s.schema
            ),
            ..Settings::default()
        },
    );
    c.use_binary(bin);
    c.start(0);
    c.wait_formed(&[0], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the release node did not become ready: {e}"));
    let health = c.health(0).unwrap();
    assert_eq!(
        health["storage"]["name"], "hangar-storage-postgres",
        "{health}"
    );

    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let written: BTreeMap<String, serde_json::Value> = (0..40)
        .map(|i| {
            (
                format!("k{i:02}"),
                json!({ "n": i, "text": format!("value {i}") }),
            )
        })
        .collect();
    let ops = written
        .iter()
        .enumerate()
        .map(|(i, (k, v))| put(k, MAP, k, v, 1_000 + i as u64, "release"))
        .collect();
    let ack = cl.batch(ops, "PERSISTED", None, 15_000).await.unwrap();
    let results = ack.results.unwrap_or_default();
    assert_eq!(results.len(), written.len());
    assert!(results.iter().all(|r| r.success), "{results:?}");
    drop(cl);

    assert!(
        c.stop(0, Duration::from_secs(30)),
        "the node stops cleanly; log:\n{}",
        c.log_tail(0, 30)
    );
    c.start(0);
    c.wait_formed(&[0], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the release node did not come back: {e}"));
    assert_eq!(read_all(&c.ws_url(0)).await, written);
    c.stop(0, Duration::from_secs(30));
}
