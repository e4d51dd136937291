//! A write that changes nothing, in a real 3-node cluster: a batch resent
//! after a reconnect (through another node, so part of it is forwarded),
//! and a stale op, both at PERSISTED with QUORUM replication. They are
//! acknowledged at once, at PERSISTED, because the owner ships the keys'
//! winning state to the backups and reports REPLICATED when the cluster
//! module says the shipment met QUORUM (see `host/src/server/write_path.rs`).
//! Before, an all-unchanged write shipped nothing and timed out at APPLIED.

use std::time::{Duration, Instant};

use hangar_core::WriteConcern;
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use serde_json::json;

const FORM: Duration = Duration::from_secs(30);
/// The write timeout the batches ask for: a resend that waited for it
/// would take at least this long.
const TIMEOUT_MS: u64 = 8_000;
/// What "at once" allows on a loaded test machine.
const FAST: Duration = Duration::from_millis(2_000);

fn fast() -> Settings {
    Settings {
        cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_resent_and_stale_writes_reach_persisted_at_quorum_at_once() {
    let mut c = Cluster::new(3, &fast());
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");

    let ops: Vec<_> = (0..60u64)
        .map(|k| {
            put(
                &(k + 1).to_string(),
                "resend",
                &format!("k{k}"),
                &json!({ "v": k }),
                1_000 + k,
                "c1",
            )
        })
        .collect();
    let mut first = Client::connect(&c.ws_url(0)).await.unwrap();
    let ack = first
        .batch(ops.clone(), "PERSISTED", Some("QUORUM"), TIMEOUT_MS)
        .await
        .expect("first ack");
    let results = ack.results.expect("results");
    assert!(
        results.iter().all(|r| r.success),
        "first write: {results:?}"
    );

    // The client reconnects to another node and resends the whole batch.
    let mut again = Client::connect(&c.ws_url(1)).await.unwrap();
    let t0 = Instant::now();
    let ack = again
        .batch(ops, "PERSISTED", Some("QUORUM"), TIMEOUT_MS)
        .await
        .expect("resent ack");
    let took = t0.elapsed();
    let results = ack.results.expect("results");
    assert!(
        took < FAST,
        "the resent batch took {took:?} (write timeout {TIMEOUT_MS} ms): {:?}",
        results.iter().find(|r| !r.success)
    );
    assert_eq!(ack.achieved_level, Some(WriteConcern::Persisted));
    assert!(
        results
            .iter()
            .all(|r| r.success && r.achieved_level == WriteConcern::Persisted),
        "{results:?}"
    );
    // Ops node 1 owns itself say so; forwarded ones come back as plain acks.
    assert!(
        results.iter().any(|r| r.unchanged),
        "no op reported unchanged: {results:?}"
    );

    // A stale op loses the merge on its owner and is still acknowledged at once.
    let newer = put("100", "resend", "s", &json!("new"), 9_000, "c1");
    let ack = first
        .batch(vec![newer], "PERSISTED", Some("QUORUM"), TIMEOUT_MS)
        .await
        .expect("newer ack");
    assert!(ack.results.expect("results")[0].success);
    let stale = put("101", "resend", "s", &json!("old"), 8_000, "c1");
    let t0 = Instant::now();
    let ack = again
        .batch(vec![stale], "PERSISTED", Some("QUORUM"), TIMEOUT_MS)
        .await
        .expect("stale ack");
    let took = t0.elapsed();
    let r = &ack.results.expect("results")[0];
    assert!(took < FAST, "the stale op took {took:?}: {r:?}");
    assert!(r.success, "{r:?}");
    assert_eq!(r.achieved_level, WriteConcern::Persisted);
}
