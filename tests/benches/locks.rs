//! Cluster-wide lock round trips: `LOCK_REQUEST` → `LOCK_GRANTED` then
//! `LOCK_RELEASE` → `LOCK_RELEASED`, each decided through Raft, with the
//! client on the Raft leader and on a follower (whose commands are
//! forwarded to the leader), for 1 and 8 connections (each its own lock
//! name, so none is refused), plus a lone node for scale.
//!
//! Run (release binaries):
//!
//!     cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster
//!     cargo bench -p hangar-tests --bench locks
//!
//! `HANGAR_BENCH_SECS` sets the seconds per cell (default 5). Figures are
//! round trips per second and the p50 / p99 / max of one round trip.

use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{LockRelease, LockRequest};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{formed, loadavg, Client, Cluster};
use hangar_tests::support::target_dir;

fn leader(c: &Cluster) -> usize {
    let h = c.health(0).expect("health");
    let id = h["cluster"]["leader"].as_str().expect("leader").to_string();
    c.nodes
        .iter()
        .position(|n| n.id == id)
        .expect("leader is a node")
}

/// One connection: round trips on its own name until `until`.
async fn run(url: String, name: String, until: Instant) -> Vec<u64> {
    let mut cl = Client::connect(&url).await.expect("connect");
    let mut lat = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let rid = format!("{name}-{n}");
        let t0 = Instant::now();
        cl.send(&Message::LockRequest {
            payload: LockRequest {
                request_id: rid.clone(),
                name: name.clone(),
                ttl: Some(10_000),
            },
        })
        .await
        .expect("send");
        let token = cl
            .wait_for(Duration::from_secs(10), |m| match m {
                Message::LockGranted { payload } if payload.request_id == rid => {
                    Some(payload.fencing_token)
                }
                Message::LockReleased { payload } if payload.request_id == rid => {
                    panic!("{name}: refused although nobody else uses it")
                }
                _ => None,
            })
            .await
            .expect("grant");
        let rrid = format!("{rid}-r");
        cl.send(&Message::LockRelease {
            payload: LockRelease {
                request_id: Some(rrid.clone()),
                name: name.clone(),
                fencing_token: token,
            },
        })
        .await
        .expect("send");
        cl.wait_for(Duration::from_secs(10), |m| match m {
            Message::LockReleased { payload } if payload.request_id == rrid => Some(()),
            _ => None,
        })
        .await
        .expect("released");
        lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    lat
}

async fn cell(label: &str, url: &str, connections: usize, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|k| tokio::spawn(run(url.to_string(), format!("{label}-{k}"), until)))
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let q = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "| {label:<34} | {connections:>5} | {:>13.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>5} |",
        lat.len() as f64 / took,
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        loadavg().split_whitespace().next().unwrap_or("?")
    );
}

fn main() {
    let secs = std::env::var("HANGAR_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let bin = target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster)",
        bin.display()
    );
    println!("# hangar lock benchmark\n");
    println!(
        "binary {}, {} cpus, load average {} at start, client and nodes on one machine (loopback), {secs} s per cell\n",
        bin.display(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        loadavg()
    );
    println!("| cell                               | conns | round trips/s | p50 (ms) | p99 (ms) | max (ms) | load1 |");
    println!("|------------------------------------|-------|---------------|----------|----------|----------|-------|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let single = formed(1, "locks-single");
        for conns in [1, 8] {
            cell("lone node", &single.ws_url(0), conns, secs).await;
        }
        drop(single);
        let three = formed(3, "locks-three");
        let l = leader(&three);
        let f = (l + 1) % 3;
        for conns in [1, 8] {
            cell(
                "3 nodes, client on the leader",
                &three.ws_url(l),
                conns,
                secs,
            )
            .await;
            cell(
                "3 nodes, client on a follower",
                &three.ws_url(f),
                conns,
                secs,
            )
            .await;
        }
    });
    println!("\nload average at the end: {}", loadavg());
}
