//! Multi-process cluster tests: real `hangar` processes on loopback (see
//! `hangar_tests::cluster_harness`), formed, written to through any node,
//! killed with `kill -9` and restarted.
//!
//! They need the release-less debug binary and plugins that
//! `cargo test --workspace` builds. Each test bounds its waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hangar_core::PARTITION_COUNT;
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{
    keys_on, one_key_per_partition, put, Client, Cluster, Settings,
};
use serde_json::json;

fn fast() -> Settings {
    Settings {
        cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
        ..Settings::default()
    }
}

const FORM: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_writes_through_any_node_land_on_owner_and_backup_at_quorum() {
    let mut c = Cluster::new(3, &fast());
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let n = 300;
    let mut ops = Vec::new();
    for k in 0..n {
        let id = cl.next_id();
        ops.push(put(
            &id,
            "m",
            &format!("k{k}"),
            &json!({"v": k}),
            1_000 + k,
            "c1",
        ));
    }
    let ack = cl
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .expect("ack");
    let results = ack.results.expect("results");
    let failed: Vec<_> = results.iter().filter(|r| !r.success).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    // Every node's live query sees every key once.
    for i in 0..3 {
        let keys = keys_on(&c, i, "m").await.expect("query");
        assert_eq!(keys.len(), n as usize, "node {i} sees every key");
    }
    // Every key is on exactly two nodes: its owner and its backup (the map
    // sizes the nodes report add up to two copies of each key).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sizes: Vec<Option<u64>> = (0..3).map(|i| map_size(&c, i, "m")).collect();
        let total: u64 = sizes.iter().flatten().sum();
        if total == 2 * n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "map sizes {sizes:?} do not add up to owner + backup of {n} keys"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `hangar_map_size_items` node `i` reports for `map`.
fn map_size(c: &Cluster, i: usize, map: &str) -> Option<u64> {
    let label = format!("hangar_map_size_items{{map=\"{map}\"}}");
    c.metrics(i)?
        .lines()
        .find(|l| l.starts_with(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_after_kill9_every_partition_takes_writes_within_5s_and_no_quorum_write_is_lost() {
    let mut c = Cluster::new(3, &fast());
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    let keys = one_key_per_partition("before");
    let ops = keys
        .values()
        .enumerate()
        .map(|(i, k)| put(&i.to_string(), "m", k, &json!({ "i": i }), 10, "c1"))
        .collect();
    let ack = cl
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .unwrap();
    assert!(ack.results.unwrap().iter().all(|r| r.success));

    // Kill the node that is not the client's; then write to every partition
    // until each is accepted.
    c.kill9(2);
    let killed = Instant::now();
    let probe = one_key_per_partition("after");
    let mut pending: BTreeMap<u32, String> = probe;
    let mut round = 0u64;
    while !pending.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{} partitions still refuse writes 20 s after the kill",
            pending.len()
        );
        round += 1;
        let ops = pending
            .values()
            .map(|k| {
                put(
                    &format!("{round}-{k}"),
                    "m",
                    k,
                    &json!(round),
                    20 + round,
                    "c1",
                )
            })
            .collect();
        let ack = cl.batch(ops, "APPLIED", None, 2_000).await.unwrap();
        let ok: Vec<String> = ack
            .results
            .unwrap()
            .into_iter()
            .filter(|r| r.success)
            .map(|r| r.op_id.split_once('-').unwrap().1.to_string())
            .collect();
        pending.retain(|_, k| !ok.contains(k));
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let took = killed.elapsed();
    eprintln!("all {PARTITION_COUNT} partitions writable {took:?} after kill -9");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Nothing acknowledged at QUORUM before the kill is missing.
    let mut held = keys_on(&c, 0, "m").await.expect("query");
    held.extend(keys_on(&c, 1, "m").await.expect("query"));
    let lost: Vec<_> = keys.values().filter(|k| !held.contains(*k)).collect();
    assert!(lost.is_empty(), "lost QUORUM writes: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_clients_get_the_new_partition_map_unasked_and_a_restarted_node_rejoins() {
    let mut c = Cluster::new(3, &fast());
    c.start_all();
    let v = c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    let mut cl = Client::connect(&c.ws_url(0)).await.unwrap();
    // Any request authenticates the session (auth is off) and lists it.
    cl.batch(
        vec![put("1", "m", "a", &json!(1), 5, "c")],
        "APPLIED",
        None,
        5_000,
    )
    .await
    .unwrap();
    c.kill9(1);
    let map = cl
        .wait_for(Duration::from_secs(10), |m| match m {
            Message::PartitionMap { payload } if u64::from(payload.version) > v => {
                Some(payload.clone())
            }
            _ => None,
        })
        .await
        .expect("a PARTITION_MAP pushed after the kill");
    assert!(
        map.partitions
            .iter()
            .all(|p| p.owner_node_id != "n2" && !p.backup_node_ids.contains(&"n2".to_string())),
        "the new map assigns nothing to the dead node"
    );
    let n1 = map
        .nodes
        .iter()
        .find(|n| n.node_id == "n1")
        .expect("n1 listed");
    assert_eq!(n1.endpoints.websocket, c.ws_url(0));
    c.start(1);
    c.wait_formed(&[0, 1, 2], FORM).expect("n2 rejoined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_clusters_with_different_ids_never_merge() {
    let mut a = Cluster::new(
        2,
        &Settings {
            cluster_id: "blue".into(),
            ..fast()
        },
    );
    a.start_all();
    a.wait_formed(&[0, 1], FORM).expect("blue formed");
    // A green node whose seeds are blue's nodes.
    let mut b = Cluster::new(
        1,
        &Settings {
            cluster_id: "green".into(),
            ..fast()
        },
    );
    let seeds = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        a.nodes[0].cluster_port, a.nodes[1].cluster_port
    );
    b.start_with_seeds(0, &seeds);
    b.wait_formed(&[0], FORM).expect("green formed alone");
    a.wait_formed(&[0, 1], FORM)
        .expect("blue still has its two members");
    let logs = format!(
        "{}{}{}",
        a.log_tail(0, 200),
        a.log_tail(1, 200),
        b.log_tail(0, 200)
    );
    assert!(
        logs.contains("\"green\"") && logs.contains("\"blue\""),
        "a refusal naming both cluster ids is logged:\n{logs}"
    );
}

/// Writes a CA and one node certificate for 127.0.0.1 signed by it under
/// `dir` (`<name>-ca.crt`, `<name>.crt`, `<name>.key`); returns the TOML
/// section that turns cluster TLS on with them.
fn tls_files(dir: &std::path::Path, name: &str) -> String {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let mut node = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    node.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = node.signed_by(&key, &issuer).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join(format!("{name}-ca.crt")),
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&ca_path, issuer.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    format!(
        "[cluster.cluster_tls]\nenabled = true\ncert_path = {cert_path:?}\nkey_path = {key_path:?}\nca_cert_path = {ca_path:?}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_with_mutual_tls_members_talk_and_a_node_with_a_foreign_certificate_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let mut ok = Cluster::new(
        2,
        &Settings {
            cluster_toml: format!("{}{}", fast().cluster_toml, tls_files(pki.path(), "good")),
            ..fast()
        },
    );
    ok.start_all();
    ok.wait_formed(&[0, 1], FORM)
        .expect("two TLS nodes form a cluster");
    let mut cl = Client::connect(&ok.ws_url(0)).await.unwrap();
    let ops: Vec<_> = (0..50)
        .map(|k| {
            put(
                &k.to_string(),
                "m",
                &format!("k{k}"),
                &json!({"k": k}),
                5,
                "c",
            )
        })
        .collect();
    let ack = cl
        .batch(ops, "PERSISTED", Some("STRONG"), 10_000)
        .await
        .unwrap();
    assert!(
        ack.results.unwrap().iter().all(|r| r.success),
        "STRONG over TLS"
    );

    // Same cluster id, but a certificate from another CA.
    let mut rogue = Cluster::new(
        1,
        &Settings {
            cluster_toml: format!("{}{}", fast().cluster_toml, tls_files(pki.path(), "rogue")),
            ..fast()
        },
    );
    let seeds = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        ok.nodes[0].cluster_port, ok.nodes[1].cluster_port
    );
    rogue.start_with_seeds(0, &seeds);
    rogue
        .wait_formed(&[0], FORM)
        .expect("the rogue forms alone");
    ok.wait_formed(&[0, 1], FORM)
        .expect("the TLS cluster keeps its two members");
    std::thread::sleep(Duration::from_millis(500));
    let logs = format!("{}{}", ok.log_tail(0, 300), rogue.log_tail(0, 300));
    assert!(
        logs.contains("TLS handshake"),
        "a failed TLS handshake is logged:\n{logs}"
    );
}

#[test]
fn t70_seeds_given_as_host_names_are_resolved() {
    let mut c = Cluster::new(3, &fast());
    for i in 0..3 {
        let seeds: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("localhost:{}", c.nodes[j].cluster_port))
            .collect();
        c.start_with_seeds(i, &seeds.join(","));
    }
    c.wait_formed(&[0, 1, 2], FORM)
        .expect("nodes seeded by host name form one cluster");
}

#[test]
fn t71_nodes_started_one_by_one_with_pauses_form_one_cluster() {
    let mut c = Cluster::new(3, &fast());
    c.start(2);
    std::thread::sleep(Duration::from_millis(4_000));
    c.start(0);
    std::thread::sleep(Duration::from_millis(1_500));
    c.start(1);
    c.wait_formed(&[0, 1, 2], FORM)
        .expect("a late first node and a later second one join the cluster n3 formed");
}
