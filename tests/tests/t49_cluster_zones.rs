//! The zone-aware cluster plugin (`plugins/cluster-zones`), loaded by name
//! by the stock `hangar` binary (`[plugins] cluster =
//! "hangar_cluster_zones"`): three real processes, n1 and n2 in zone `a`,
//! n3 in zone `b` (`HANGAR_ZONE`).
//!
//! - every partition gets a backup in the other zone (read from the
//!   PARTITION_MAP a client receives);
//! - `kill -9` of zone `b`'s only node loses no QUORUM-acknowledged write;
//! - with zone `b` unreachable (SIGSTOP), a QUORUM write of a partition
//!   owned in zone `a` is refused, though owner and a backup in zone `a` are
//!   a majority;
//! - `hangar plugins inspect` shows its manifest and that it loads;
//! - negative controls: the default plugin, same zones, leaves partitions
//!   with every copy in zone `a`, and acknowledges those QUORUM writes.
//!
//! They need the debug binary and plugins that `cargo test --workspace`
//! builds. Each test bounds its waits.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{PartitionMap, PartitionMapRequest};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{
    keys_on, one_key_per_partition, put, Client, Cluster, Settings,
};
use serde_json::json;

const FORM: Duration = Duration::from_secs(40);

fn zone(node: &str) -> &'static str {
    if node == "n3" {
        "b"
    } else {
        "a"
    }
}

/// Three nodes loading cluster plugin `plugin`, zones set, formed.
fn three_in_two_zones(plugin: &str) -> Cluster {
    three_in_two_zones_with(
        plugin,
        "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\nbackup_count = 1\n",
    )
}

/// As [`three_in_two_zones`], with `cluster_toml` as the `[cluster]` lines.
fn three_in_two_zones_with(plugin: &str, cluster_toml: &str) -> Cluster {
    let mut c = Cluster::new(
        3,
        &Settings {
            cluster_toml: cluster_toml.into(),
            top_toml: format!("[plugins]\ncluster = \"{plugin}\"\n"),
            ..Settings::default()
        },
    );
    for i in 0..3 {
        let id = c.nodes[i].id.clone();
        c.set_env(i, "HANGAR_ZONE", zone(&id));
    }
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    c
}

async fn partition_map(cl: &mut Client) -> PartitionMap {
    cl.send(&Message::PartitionMapRequest {
        payload: PartitionMapRequest::default(),
    })
    .await
    .expect("send");
    cl.wait_for(Duration::from_secs(5), |m| match m {
        Message::PartitionMap { payload } => Some(payload.clone()),
        _ => None,
    })
    .await
    .expect("PARTITION_MAP")
}

/// Partitions of `map` whose backups are all in the owner's zone.
fn single_zone(map: &PartitionMap) -> Vec<u32> {
    map.partitions
        .iter()
        .filter(|p| {
            p.backup_node_ids
                .iter()
                .all(|b| zone(b) == zone(&p.owner_node_id))
        })
        .map(|p| p.partition_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_partition_has_a_backup_in_the_other_zone_and_losing_a_zone_loses_no_quorum_write(
) {
    let mut c = three_in_two_zones("hangar_cluster_zones");
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    // Transfers may still run after formation (a node that joined late gets
    // its copies by transfer): wait for the property, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let map = partition_map(&mut cl).await;
        let bad = single_zone(&map);
        let all_backed = map.partitions.iter().all(|p| !p.backup_node_ids.is_empty());
        if bad.is_empty() && all_backed && map.partitions.len() == 271 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} partitions still have no backup in the other zone (map v{}): {bad:?}{}",
            bad.len(),
            map.version,
            c.report(&[0, 1, 2], &[c.health(0), c.health(1), c.health(2)])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let keys = one_key_per_partition("z");
    let ops = keys
        .values()
        .enumerate()
        .map(|(i, k)| put(&i.to_string(), "m", k, &json!({ "i": i }), 10, "c1"))
        .collect();
    let ack = cl
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .unwrap();
    let results = ack.results.unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !r.success).collect();
    assert!(failed.is_empty(), "QUORUM writes refused: {failed:?}");

    // Zone b's only node dies; every acknowledged write must be on the
    // survivors once they took over its partitions.
    c.kill9(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let want: BTreeSet<String> = keys.values().cloned().collect();
    loop {
        let mut held = keys_on(&c, 0, "m").await.unwrap_or_default();
        held.extend(keys_on(&c, 1, "m").await.unwrap_or_default());
        let lost: Vec<&String> = want.difference(&held).collect();
        if lost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} QUORUM-acknowledged writes missing 30 s after zone b died: {:?}",
            lost.len(),
            lost.iter().take(10).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_negative_control_the_default_plugin_leaves_partitions_in_one_zone() {
    let c = three_in_two_zones("hangar_cluster");
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let map = partition_map(&mut cl).await;
    let bad = single_zone(&map);
    assert!(
        !bad.is_empty(),
        "the default placement ignores zones, so some partition has every copy in zone a"
    );
}

/// Writes at QUORUM, through n1, one key per partition not owned by n3,
/// while n3 (zone b's only node) is stopped (SIGSTOP: alive to gossip's
/// failure confirmation, which is set to two minutes, so the table does
/// not change) with two backups per partition (every partition on every
/// node). Returns (acknowledged, refused).
async fn quorum_writes_with_zone_b_stopped(plugin: &str) -> (usize, usize) {
    let c = three_in_two_zones_with(
        plugin,
        "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\nbackup_count = 2\n\
         failure_confirm_ms = 120000\n[cluster.replication]\nack_timeout_ms = 1000\nmax_retries = 0\n",
    );
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let map = loop {
        let map = partition_map(&mut cl).await;
        if map.partitions.len() == 271
            && map.partitions.iter().all(|p| p.backup_node_ids.len() == 2)
        {
            break map;
        }
        assert!(
            Instant::now() < deadline,
            "{plugin}: partitions never got two backups"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid = i32::try_from(c.pid(2).expect("n3 runs")).expect("pid");
    // SAFETY: signalling a child process this test spawned and owns.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let keys = one_key_per_partition("q");
    let ops = keys
        .iter()
        .filter(|(p, _)| map.partitions[**p as usize].owner_node_id != "n3")
        .enumerate()
        .map(|(i, (_, k))| put(&i.to_string(), "m", k, &json!(i), 10, "c1"))
        .collect();
    let ack = cl.batch(ops, "PERSISTED", Some("QUORUM"), 8_000).await;
    // SAFETY: as above; let it go so the harness stops it normally.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let results = ack.expect("an OP_ACK").results.unwrap();
    let ok = results.iter().filter(|r| r.success).count();
    (ok, results.len() - ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_quorum_waits_for_a_copy_in_the_other_zone() {
    let (ok, refused) = quorum_writes_with_zone_b_stopped("hangar_cluster_zones").await;
    assert!(
        refused > 150,
        "every partition owned in zone a has n3 as a backup: {ok} acknowledged, {refused} refused"
    );
    assert_eq!(
        ok, 0,
        "with zone b unreachable no QUORUM write of a zone-a partition may be acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_negative_control_the_default_quorum_accepts_a_majority_within_one_zone() {
    let (ok, refused) = quorum_writes_with_zone_b_stopped("hangar_cluster").await;
    assert_eq!(
        refused, 0,
        "owner and one backup in zone a are a majority of three"
    );
    assert!(ok > 150);
}

#[test]
fn t30_plugins_inspect_shows_the_zones_plugins_manifest_and_that_it_loads() {
    let file = hangar_tests::support::plugin_file("hangar_cluster_zones");
    let out = std::process::Command::new(hangar_tests::support::target_dir().join("hangar"))
        .args(["plugins", "inspect"])
        .arg(&file)
        .output()
        .expect("run hangar plugins inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("name:        hangar-cluster-zones"), "{text}");
    assert!(text.contains("zone-aware"), "the description: {text}");
    assert!(text.contains("loadable:    yes"), "{text}");
}
