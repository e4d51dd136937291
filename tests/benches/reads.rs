//! What read replicas save: on three nodes with `backup_count = 2` (every
//! node holds every partition), the latency of a live query's first page
//! over a whole map and of a Merkle root (`SYNC_INIT`) on one node, read at
//! EVENTUAL (answered from the node's own replicas) against STRONG (each
//! partition from its owner, two thirds of them over the cluster port).
//!
//! Run (the runner starts the `hangar` processes of its own profile
//! through `hangar_tests::cluster_harness`):
//!
//!     cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster
//!     cargo bench -p hangar-tests --bench reads
//!
//! or, with debug binaries, `cargo bench --profile dev -p hangar-tests
//! --bench reads`. Settings (environment): `HANGAR_BENCH_READS` (reads per
//! cell, default 200), `HANGAR_BENCH_KEYS` (keys in the map, default 2000).
//!
//! Every figure line carries the 1-minute load average read when its cell
//! finished, because the machine may be shared. The cells run back to back
//! on the same cluster.

use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{PartitionMapRequest, QuerySub, QueryUnsub, SyncInit};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{load1, loadavg, put, Client, Cluster, Settings};
use hangar_tests::support::target_dir;
use serde_json::json;

const MAP: &str = "bench-reads";
const ANSWER: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(what: &str, level: &str, mut t: Vec<Duration>) {
    t.sort();
    println!(
        "| {what} | {level} | {} | {:.2} | {:.2} | {:.2} | {} |",
        t.len(),
        pct(&t, 0.5).as_secs_f64() * 1e3,
        pct(&t, 0.99).as_secs_f64() * 1e3,
        t.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        load1()
    );
}

/// Waits until every partition in node 0's map has all three nodes as
/// owner or backup (no pending holder left).
async fn wait_full_copies(c: &Cluster) {
    let mut cl = Client::connect(&c.ws_url(0)).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        cl.send(&Message::PartitionMapRequest {
            payload: PartitionMapRequest::default(),
        })
        .await
        .expect("send");
        let m = cl
            .wait_for(ANSWER, |m| match m {
                Message::PartitionMap { payload } => Some(payload.clone()),
                _ => None,
            })
            .await
            .expect("PARTITION_MAP");
        if m.partitions.len() == 271 && m.partitions.iter().all(|p| p.backup_node_ids.len() == 2) {
            return;
        }
        assert!(Instant::now() < deadline, "partitions never got 3 copies");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn write(c: &Cluster, keys: u64) {
    let mut cl = Client::connect(&c.ws_url(0)).await.expect("connect");
    for start in (0..keys).step_by(250) {
        let ops = (start..(start + 250).min(keys))
            .map(|i| {
                let id = cl.next_id();
                put(&id, MAP, &format!("k{i}"), &json!({ "v": i }), 1 + i, "w")
            })
            .collect();
        let ack = cl
            .batch(ops, "PERSISTED", Some("STRONG"), 10_000)
            .await
            .expect("ack");
        assert!(ack.results.expect("results").iter().all(|r| r.success));
    }
}

/// First pages of a whole-map live query at `level`, `n` times.
async fn live_pages(cl: &mut Client, level: &str, n: u64, keys: u64) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("{level}-{i}");
        let start = Instant::now();
        cl.send(&Message::QuerySub {
            payload: QuerySub {
                query_id: id.clone(),
                map_name: MAP.into(),
                query: rmpv::Value::Map(vec![]),
                fields: None,
                consistency: Some(level.into()),
            },
        })
        .await
        .expect("send");
        let rows = cl
            .wait_for(ANSWER, |m| match m {
                Message::QueryResp { payload } if payload.query_id == id => {
                    Some(payload.results.len())
                }
                _ => None,
            })
            .await
            .expect("QUERY_RESP");
        out.push(start.elapsed());
        assert_eq!(rows as u64, keys, "a first page missed keys");
        cl.send(&Message::QueryUnsub {
            payload: QueryUnsub { query_id: id },
        })
        .await
        .expect("send");
        cl.other.clear();
    }
    out
}

/// Merkle roots (`SYNC_INIT`) at `level`, `n` times.
async fn roots(cl: &mut Client, level: &str, n: u64) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        cl.send(&Message::SyncInit(SyncInit {
            map_name: MAP.into(),
            last_sync_timestamp: None,
            root_hash: None,
            bucket_hashes: None,
            consistency: Some(level.into()),
        }))
        .await
        .expect("send");
        cl.wait_for(ANSWER, |m| match m {
            Message::SyncRespRoot { payload } => Some(payload.root_hash),
            Message::Error { payload } => panic!("SYNC_INIT: {}", payload.message),
            _ => None,
        })
        .await
        .expect("SYNC_RESP_ROOT");
        out.push(start.elapsed());
    }
    out
}

fn main() {
    let reads = env_u64("HANGAR_BENCH_READS", 200);
    let keys = env_u64("HANGAR_BENCH_KEYS", 2_000);
    let bin = target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster)",
        bin.display()
    );
    let profile = target_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("# hangar read-replica benchmark\n");
    println!(
        "binary {} ({profile} profile), {} cpus, load average {} at start, client and 3 nodes \
         on one machine (loopback), backup_count 2, {keys} keys",
        bin.display(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        loadavg()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = Cluster::new(
            3,
            &Settings {
                cluster_id: "bench-reads".into(),
                cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n\
                               backup_count = 2\n"
                    .into(),
                ..Settings::default()
            },
        );
        c.start_all();
        c.wait_formed(&[0, 1, 2], Duration::from_secs(60))
            .expect("formed");
        wait_full_copies(&c).await;
        write(&c, keys).await;
        let mut cl = Client::connect(&c.ws_url(1)).await.expect("connect");
        // Warm up both paths (connections, round-trip estimates).
        live_pages(&mut cl, "STRONG", 5, keys).await;
        live_pages(&mut cl, "EVENTUAL", 5, keys).await;
        println!("\n| read on n2 | consistency | reads | p50 ms | p99 ms | max ms | load1 |");
        println!("|---|---|---|---|---|---|---|");
        for level in ["EVENTUAL", "STRONG"] {
            let t = live_pages(&mut cl, level, reads, keys).await;
            line(&format!("live query first page ({keys} rows)"), level, t);
        }
        for level in ["EVENTUAL", "STRONG"] {
            let t = roots(&mut cl, level, reads).await;
            line("Merkle root (SYNC_INIT)", level, t);
        }
        let served: Vec<String> = c
            .metrics(1)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("hangar_cluster_reads_total{"))
            .map(ToString::to_string)
            .collect();
        println!("\nreads served, as n2 counted them:\n{}", served.join("\n"));
        for i in 0..3 {
            c.kill9(i);
        }
    });
    println!("\nload average at the end: {}", loadavg());
}
