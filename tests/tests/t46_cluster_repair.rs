//! Multi-process tests of anti-entropy repair: replicas that diverged
//! (a backup down for less than `failure_confirm_ms`, so no failover,
//! while writes at EVENTUAL went on; a node whose store was lost) are
//! brought together by `POST /cluster/repair`, in both directions: records
//! the owner has reach the backup, records only backups have reach the
//! owner.
//!
//! Convergence is checked through `GET /cluster/digests` on every node:
//! for each partition, every node that holds it (owner or backup) reports
//! the same (hash, count) for every map. Before repair the same check must
//! fail (the tests assert that first), so they cannot pass without
//! divergence having been injected; without the repair call they fail
//! (negative control: the digests stay apart).
//!
//! Periodic repair is disabled (`[cluster.repair] enabled = false`) so that
//! only the on-demand call repairs; `failure_confirm_ms` is long so that a
//! killed node is not failed over while it is down; the replication ack
//! timeout is short so that owners give up shipping to the dead backup
//! before it comes back (otherwise the transport delivers the batch late
//! and nothing diverges).
//!
//! Real `hangar` processes on loopback (see `hangar_tests::cluster_harness`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hangar_core::partition_of;
use hangar_host::protocol::messages::{PartitionMap, PartitionMapRequest};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{keys_on, put, Client, Cluster, Settings};
use serde_json::{json, Value};

const FORM: Duration = Duration::from_secs(30);
const MAP: &str = "repair-lww";

/// Three nodes formed; `repair` is the `[cluster.repair]` table's body.
fn formed_with(repair: &str) -> Cluster {
    let mut c = Cluster::new(
        3,
        &Settings {
            cluster_id: "repair".into(),
            cluster_toml: format!(
                "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n\
                 failure_confirm_ms = 30000\n[cluster.repair]\n{repair}\n\
                 [cluster.replication]\nack_timeout_ms = 300\n"
            ),
            ..Settings::default()
        },
    );
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    c
}

fn formed() -> Cluster {
    formed_with("enabled = false")
}

/// POST `path` on loopback `port`: (status line, body).
fn http_post(port: u16, path: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// Runs on-demand repair on every node (each repairs what it owns).
fn repair_all(c: &Cluster) -> Vec<Value> {
    (0..c.nodes.len())
        .map(|i| {
            let (status, body) = http_post(c.nodes[i].port, "/cluster/repair")
                .unwrap_or_else(|e| panic!("{}: POST /cluster/repair: {e}", c.nodes[i].id));
            assert!(status.contains("200"), "{}: {status} {body}", c.nodes[i].id);
            let v: Value = serde_json::from_str(&body).expect("json report");
            assert_eq!(v["errors"], json!([]), "{}: {v}", c.nodes[i].id);
            v
        })
        .collect()
}

/// One node's digests of one partition: map -> (hash, count).
type PartitionDigests = BTreeMap<String, (u64, u64)>;
/// Per node: partition -> its digests, for the partitions the node holds.
type Digests = Vec<BTreeMap<u32, PartitionDigests>>;

fn digests(c: &Cluster) -> Result<Digests, String> {
    let mut out = Vec::new();
    for n in &c.nodes {
        let body = hangar_tests::cluster_harness::http_get(n.port, "/cluster/digests")
            .ok_or_else(|| format!("{}: /cluster/digests did not answer 200", n.id))?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let mut held: BTreeMap<u32, PartitionDigests> = v["held"]
            .as_array()
            .ok_or("no held")?
            .iter()
            .map(|p| {
                (
                    u32::try_from(p.as_u64().unwrap_or(0)).unwrap_or(0),
                    BTreeMap::new(),
                )
            })
            .collect();
        for d in v["digests"].as_array().ok_or("no digests")? {
            let p = u32::try_from(d["partition"].as_u64().unwrap_or(0)).unwrap_or(0);
            held.entry(p).or_default().insert(
                d["map"].as_str().unwrap_or("").to_string(),
                (
                    d["hash"].as_u64().unwrap_or(0),
                    d["count"].as_u64().unwrap_or(0),
                ),
            );
        }
        out.push(held);
    }
    Ok(out)
}

/// The partitions whose holders disagree, with what each holder reports.
fn disagreements(d: &Digests) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..hangar_core::PARTITION_COUNT {
        let holders: Vec<(usize, &PartitionDigests)> = d
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.get(&p).map(|m| (i, m)))
            .collect();
        if holders.windows(2).any(|w| w[0].1 != w[1].1) {
            out.push(format!("partition {p}: {holders:?}"));
        }
    }
    out
}

/// Waits until every holder of every partition agrees (or `timeout`).
fn wait_agreed(c: &Cluster, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match digests(c) {
            Ok(d) => {
                let bad = disagreements(&d);
                if bad.is_empty() {
                    return Ok(());
                }
                format!("{} partitions disagree, first: {}", bad.len(), bad[0])
            }
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn partition_map(c: &Cluster, i: usize) -> PartitionMap {
    let mut cl = Client::connect(&c.ws_url(i)).await.expect("connect");
    cl.send(&Message::PartitionMapRequest {
        payload: PartitionMapRequest::default(),
    })
    .await
    .expect("send");
    cl.wait_for(Duration::from_secs(20), |m| match m {
        Message::PartitionMap { payload } => Some(payload.clone()),
        _ => None,
    })
    .await
    .expect("PARTITION_MAP")
}

/// Keys `prefix-i`, `per` in each partition that `pick` accepts.
fn keys_in(prefix: &str, per: usize, pick: impl Fn(u32) -> bool) -> Vec<String> {
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut i = 0u64;
    while i < 200_000 {
        let k = format!("{prefix}-{i}");
        let p = partition_of(&k);
        if pick(p) && count.get(&p).copied().unwrap_or(0) < per {
            *count.entry(p).or_default() += 1;
            out.push(k);
        }
        i += 1;
    }
    out
}

async fn write(c: &Cluster, via: usize, keys: &[String], concern: &str, consistency: &str) {
    let mut cl = Client::connect(&c.ws_url(via)).await.expect("connect");
    let millis = 1_700_000_000_000u64;
    for chunk in keys.chunks(200) {
        let ops = chunk
            .iter()
            .map(|k| put(&cl.next_id(), MAP, k, &json!({ "k": k }), millis, "writer"))
            .collect();
        let ack = cl
            .batch(ops, concern, Some(consistency), 10_000)
            .await
            .expect("ack");
        let results = ack.results.expect("results");
        assert!(results.iter().all(|r| r.success), "{results:?}");
    }
}

fn wait_ready(c: &Cluster, i: usize) {
    let deadline = Instant::now() + FORM;
    loop {
        let ok = (0..c.nodes.len()).all(|j| {
            c.health(j).is_some_and(|h| {
                h["cluster"]["ready"] == json!(true) && h["cluster"]["membersAlive"] == json!(3)
            })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not come back: {}",
            c.nodes[i].id,
            c.log_tail(i, 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the backup `victim` (`kill -9`), writes at EVENTUAL to partitions
/// it backs up (owned elsewhere) until the owners gave up shipping to it,
/// restarts it: returns (partitions it backs up, keys written before,
/// keys it missed).
async fn miss_writes(c: &mut Cluster, victim: usize) -> (BTreeSet<u32>, Vec<String>, Vec<String>) {
    let map = partition_map(c, 0).await;
    let vid = c.nodes[victim].id.clone();
    // Partitions owned elsewhere and backed up by the victim.
    let backed: BTreeSet<u32> = map
        .partitions
        .iter()
        .filter(|p| p.owner_node_id != vid && p.backup_node_ids.contains(&vid))
        .map(|p| p.partition_id)
        .collect();
    assert!(!backed.is_empty(), "{vid} backs up no partition: {map:?}");
    // Some records everywhere first, so that partitions are not empty.
    let base = keys_in("base", 1, |_| true);
    write(c, 0, &base, "PERSISTED", "QUORUM").await;
    wait_agreed(c, Duration::from_secs(10)).expect("replicas agree after QUORUM writes");

    c.kill9(victim);
    let missed = keys_in("missed", 3, |p| backed.contains(&p));
    write(c, 0, &missed, "APPLIED", "EVENTUAL").await;
    // Stay down until the owners gave up shipping (4 attempts of 300 ms).
    std::thread::sleep(Duration::from_millis(2_500));
    c.start(victim);
    wait_ready(c, victim);
    (backed, base, missed)
}

/// A backup killed (`kill -9`) for less than `failure_confirm_ms` misses
/// the EVENTUAL writes its owners acknowledged meanwhile; after it is back,
/// repair brings every missed record to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_backup_that_missed_writes_gets_them_from_the_owner() {
    let started = Instant::now();
    let mut c = formed();
    let victim = 2usize;
    let vid = c.nodes[victim].id.clone();
    let (backed, base, missed) = miss_writes(&mut c, victim).await;

    let before = disagreements(&digests(&c).expect("digests"));
    assert!(
        !before.is_empty(),
        "the backup was expected to have missed writes; every replica already agrees"
    );
    let reports = repair_all(&c);
    let repaired: u64 = reports
        .iter()
        .map(|r| r["recordsRepaired"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        repaired >= missed.len() as u64,
        "repaired {repaired} of {} missed: {reports:?}",
        missed.len()
    );
    wait_agreed(&c, Duration::from_secs(5)).expect("every replica agrees after repair");
    let d = digests(&c).expect("digests");
    let on_victim: u64 = d[victim]
        .iter()
        .filter(|(p, _)| backed.contains(p))
        .map(|(_, m)| m.get(MAP).map_or(0, |v| v.1))
        .sum();
    let expected = base
        .iter()
        .chain(&missed)
        .filter(|k| backed.contains(&partition_of(k)))
        .count();
    assert_eq!(
        on_victim, expected as u64,
        "records of {vid}'s backed-up partitions"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// A node whose store was lost (killed, its storage directory removed,
/// restarted before failover) holds nothing; repair brings its owned
/// partitions' records from their backups (backup to owner) and its
/// backed-up partitions' records from their owners (owner to backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_records_only_on_backups_reach_the_owner() {
    let started = Instant::now();
    let mut c = formed();
    let keys = keys_in("all", 2, |_| true);
    write(&c, 0, &keys, "PERSISTED", "QUORUM").await;
    wait_agreed(&c, Duration::from_secs(10)).expect("replicas agree after QUORUM writes");
    let victim = 1usize;
    let vid = c.nodes[victim].id.clone();
    let all: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(keys_on(&c, victim, MAP).await.expect("query"), all);

    c.kill9(victim);
    let store = c.data_dir().join(&vid).join("storage");
    std::fs::remove_dir_all(&store).unwrap_or_else(|e| panic!("{}: {e}", store.display()));
    c.start(victim);
    wait_ready(&c, victim);
    let seen = keys_on(&c, victim, MAP).await.expect("query");
    assert!(
        seen.len() < all.len(),
        "{vid} lost its store; the keys it owns were expected to be missing"
    );

    repair_all(&c);
    wait_agreed(&c, Duration::from_secs(5)).expect("every replica agrees after repair");
    // The owner serves its partitions again: the whole map is back.
    assert_eq!(keys_on(&c, victim, MAP).await.expect("query"), all);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// With periodic repair on (every 500 ms), the missed records reach the
/// backup without anyone asking, and `/metrics` counts the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_periodic_repair_needs_no_request() {
    let started = Instant::now();
    // Runs may also come while the backup is down (they fail and count an
    // error); the records exchanged, counted in /metrics, show that a run
    // after its return moved the missed records.
    let mut c = formed_with("enabled = true\ninterval_ms = 2000\nbudget_ms = 10000");
    let (_, _, missed) = miss_writes(&mut c, 2).await;
    wait_agreed(&c, Duration::from_secs(20)).expect("periodic repair made the replicas agree");
    let exchanged: f64 = (0..3)
        .filter_map(|i| c.metrics(i))
        .flat_map(|m| {
            m.lines()
                .filter(|l| l.starts_with("hangar_repair_records_exchanged_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(
        exchanged >= missed.len() as f64,
        "records exchanged per /metrics: {exchanged}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// OR maps, in process (two storage modules, the exchange through
/// `LocalLink`): a tag removed on the owner only leaves the backup, a tag
/// added on the backup only reaches the owner, and keys held by one side
/// reach the other; afterwards both hold the same records and digests.
/// Without the tombstone exchange the backup keeps the removed tag (the
/// records alone cannot remove it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_or_maps_exchange_records_and_tombstones() {
    use abi_stable::std_types::{ROption, RString, RVec};
    use hangar_cluster::repair::{LocalLink, Walk, WalkStats};
    use hangar_core::module::accessor::StorageAccessor;
    use hangar_core::module::digest::{DigestLevel, DigestRequest};
    use hangar_core::module::storage_types::{Origin, OriginKind, RecordState};
    use hangar_core::{KeyedOp, MapOp, OrRecord, RawValue, Timestamp};
    use hangar_tests::support::{storage_config, storage_deps};

    const OR: &str = "repair-or";
    async fn node(name: &str) -> std::sync::Arc<dyn StorageAccessor> {
        let m = hangar_storage::create(storage_config(name), storage_deps(name)).expect("storage");
        m.start().await.expect("start");
        m.accessor()
    }
    fn add(key: &str, tag: &str, v: i64) -> KeyedOp {
        KeyedOp {
            map: OR.into(),
            key: key.into(),
            op: MapOp::OrAdd(OrRecord {
                value: RawValue::encode(&v).expect("encodes"),
                timestamp: Timestamp::new(1_000, 0, "w"),
                tag: tag.into(),
                ttl_ms: ROption::RNone,
            }),
        }
    }
    fn remove(key: &str, tag: &str) -> KeyedOp {
        KeyedOp {
            map: OR.into(),
            key: key.into(),
            op: MapOp::OrRemove(tag.into()),
        }
    }
    async fn apply(s: &std::sync::Arc<dyn StorageAccessor>, ops: Vec<KeyedOp>) {
        let origin = Origin {
            kind: OriginKind::Replication,
            connection: 0,
            node: RString::from("test"),
        };
        s.apply_replicated(ops.into(), origin).await.expect("apply");
    }
    async fn tags(s: &std::sync::Arc<dyn StorageAccessor>, key: &str) -> BTreeSet<String> {
        let r = s
            .read(OR.into(), RVec::from(vec![RString::from(key)]))
            .await
            .expect("read");
        match &r[0].state {
            RecordState::Or(rs) => rs.iter().map(|x| x.tag.to_string()).collect(),
            _ => BTreeSet::new(),
        }
    }
    async fn roots(s: &std::sync::Arc<dyn StorageAccessor>) -> Vec<(u32, u32, u32)> {
        s.partition_digests(DigestRequest {
            level: DigestLevel::Partitions,
            map: RString::new(),
            partitions: (0..hangar_core::PARTITION_COUNT).collect::<Vec<_>>().into(),
            under: RVec::new(),
        })
        .await
        .expect("digests")
        .iter()
        .map(|i| (i.partition, i.hash, i.count))
        .collect()
    }

    let owner = node("o").await;
    let backup = node("b").await;
    let both = vec![add("k", "t1", 1), add("k", "t2", 2)];
    apply(&owner, both.clone()).await;
    apply(&backup, both).await;
    apply(&owner, vec![remove("k", "t1"), add("only-o", "t5", 5)]).await;
    apply(&backup, vec![add("k", "t3", 3), add("only-b", "t4", 4)]).await;
    assert_ne!(
        roots(&owner).await,
        roots(&backup).await,
        "replicas diverged"
    );

    let link = LocalLink {
        peer: "b".into(),
        from: "o".into(),
        storage: backup.clone(),
    };
    let mut w = Walk {
        local: &owner,
        link: &link,
        chunk: 100,
        stats: WalkStats::default(),
    };
    let all: Vec<u32> = (0..hangar_core::PARTITION_COUNT).collect();
    w.run(&all).await.expect("repair");

    let want: BTreeSet<String> = ["t2", "t3"].iter().map(|s| s.to_string()).collect();
    assert_eq!(tags(&owner, "k").await, want, "owner");
    assert_eq!(
        tags(&backup, "k").await,
        want,
        "backup: t1 removed, t3 kept"
    );
    for s in [&owner, &backup] {
        assert_eq!(tags(s, "only-o").await.len(), 1);
        assert_eq!(tags(s, "only-b").await.len(), 1);
    }
    assert_eq!(roots(&owner).await, roots(&backup).await, "digests agree");
    assert!(w.stats.tombstones_exchanged >= 1, "{:?}", w.stats);
}
