//! What moving partitions costs: (a) a join that moves partitions with
//! their data, in records/s and bytes/s, and the latency of client writes
//! while it runs against before it and after it, in the same run; (b) the
//! time from a `kill -9` until every partition has `backup_count` backups
//! again (the survivors copy the partitions the dead node held).
//!
//! Run (the runner starts `hangar` processes of the same profile through
//! `hangar_tests::cluster_harness`):
//!
//!     cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster
//!     cargo bench -p hangar-tests --bench cluster_moves
//!     # debug binaries: cargo bench --profile dev -p hangar-tests --bench cluster_moves
//!
//! Settings (environment): `HANGAR_BENCH_RECORDS` (records loaded before
//! the join and before the kills, default 40 000), `HANGAR_BENCH_VALUE`
//! (value bytes, default 500), `HANGAR_BENCH_SECS` (seconds of the
//! baseline cells, default 10), `HANGAR_BENCH_RESTORES` (kills, default
//! 5), `HANGAR_BENCH_ONLY` (`migration` or `restore`),
//! `HANGAR_BENCH_THROTTLES` (the join's `max_bytes_per_sec` values, one run
//! each, default `4194304,0`), `HANGAR_BENCH_FACTORS` (the join's
//! `commit_budget_factor` values, one run per throttle and factor, default
//! `0,2`: chunks committed whole against the target's pacing by client
//! commit latency), `HANGAR_BENCH_LOGS` (a directory: each join's node logs
//! are copied there, with the migration's per-chunk timing lines, and
//! `probe.tsv`, every probe batch's send time and latency).
//!
//! Every figure line carries the 1-minute load average, because the
//! machine may be shared.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_tests::cluster_harness::{load1, loadavg, put, Client, Cluster, Settings};
use hangar_tests::cluster_state::{backups_restored, balanced, drained, gauge, series, settle};
use hangar_tests::support::target_dir;
use parking_lot::Mutex;
use serde_json::json;

const STEP: Duration = Duration::from_secs(600);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
    }
}

fn settings(extra: &str) -> Settings {
    Settings {
        cluster_id: "bench-moves".into(),
        cluster_toml: format!("backup_count = 1\n{extra}"),
        ..Settings::default()
    }
}

/// Loads `n` records of `value` bytes into map `m` through node 0, at
/// QUORUM + APPLIED, in batches of 500.
async fn load(c: &Cluster, n: u64, value: usize) {
    let mut cl = Client::connect(&c.ws_url(0)).await.expect("connect");
    let pad = "v".repeat(value);
    for start in (0..n).step_by(500) {
        let ops = (start..(start + 500).min(n))
            .map(|k| {
                let key = format!("load{k}");
                put(&key, "m", &key, &json!({ "pad": pad }), 1_000 + k, "loader")
            })
            .collect();
        let ack = cl
            .batch(ops, "APPLIED", Some("QUORUM"), 60_000)
            .await
            .expect("load ack");
        assert!(
            ack.results.expect("results").iter().all(|r| r.success),
            "a load write failed"
        );
    }
}

/// Sums counter `name` over the running nodes of `c`.
fn total(c: &Cluster, name: &str) -> f64 {
    (0..c.nodes.len())
        .map(|i| series(c, i, name).values().sum::<f64>())
        .sum()
}

/// Batch latencies (µs) a probe measured, with when each batch was sent.
type Samples = Arc<Mutex<Vec<(Instant, u64)>>>;

/// A closed-loop probe: one connection to node 0 writing batches of 10
/// unique 100-byte values at QUORUM + PERSISTED until `stop`.
fn probe(url: String, stop: Arc<AtomicBool>, samples: Samples) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut cl = Client::connect(&url).await.expect("probe connects");
        let mut k = 0u64;
        let mut failed = 0u64;
        let pad = "p".repeat(100);
        while !stop.load(Ordering::Acquire) {
            let ops = (0..10)
                .map(|j| {
                    let key = format!("probe{}", k + j);
                    put(
                        &key,
                        "probe",
                        &key,
                        &json!({ "pad": pad }),
                        1_000 + k + j,
                        "probe",
                    )
                })
                .collect();
            k += 10;
            let t = Instant::now();
            match cl.batch(ops, "PERSISTED", Some("QUORUM"), 10_000).await {
                Ok(ack)
                    if ack
                        .results
                        .as_ref()
                        .is_some_and(|r| r.iter().all(|r| r.success)) =>
                {
                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    samples.lock().push((t, us));
                }
                _ => failed += 1,
            }
        }
        failed
    })
}

/// p50, p99 and max (ms) of the samples sent within `from..to`, and their
/// count.
fn window(samples: &Samples, from: Instant, to: Instant) -> (f64, f64, f64, usize) {
    let mut v: Vec<u64> = samples
        .lock()
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, us)| *us)
        .collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0);
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    (q(0.5), q(0.99), q(1.0), v.len())
}

fn row(name: &str, w: (f64, f64, f64, usize), secs: f64) {
    println!(
        "| {name:<34} | {:>7} | {:>9.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>5} |",
        w.3,
        w.3 as f64 / secs.max(1e-9),
        w.0,
        w.1,
        w.2,
        load1()
    );
}

/// Part a: two nodes hold `records` records; a third joins and receives
/// its share by transfer while a probe writes through node 0.
async fn migration(records: u64, value: usize, secs: u64, throttle: &str, factor: &str) {
    println!(
        "\n## a. join: migration throughput and write latency (`max_bytes_per_sec = {throttle}`, \
         `commit_budget_factor = {factor}`)\n"
    );
    let mut c = Cluster::new(
        3,
        &settings(&format!(
            "[cluster.migration]\nmax_bytes_per_sec = {throttle}\ncommit_budget_factor = {factor}\n"
        )),
    );
    let logs = std::env::var("HANGAR_BENCH_LOGS").ok();
    if logs.is_some() {
        for i in 0..3 {
            c.set_env(
                i,
                "HANGAR_LOG",
                "info,openraft=warn,chitchat=warn,hangar_cluster::migration=debug,hangar_cluster::formation=debug,hangar_cluster::replication=debug",
            );
        }
    }
    c.start(0);
    c.start(1);
    settle(&c, &[0, 1], "two nodes", STEP, || {
        backups_restored(&c, &[0, 1], 1)
    })
    .expect("formed");
    load(&c, records, value).await;
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let task = probe(c.ws_url(0), stop.clone(), samples.clone());
    let base_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let joined = Instant::now();
    let (r0, b0) = (
        total(&c, "hangar_migration_records_sent_total"),
        total(&c, "hangar_migration_bytes_sent_total"),
    );
    c.start(2);
    let all = [0, 1, 2];
    tokio::task::block_in_place(|| c.wait_formed(&all, STEP)).expect("n3 admitted");
    let admitted = Instant::now();
    tokio::task::block_in_place(|| {
        settle(&c, &all, "the joined node holding its share", STEP, || {
            backups_restored(&c, &all, 1) && balanced(&c, &all) && drained(&c, &all)
        })
    })
    .expect("migration finished");
    let moved = Instant::now();
    let (r1, b1) = (
        total(&c, "hangar_migration_records_sent_total"),
        total(&c, "hangar_migration_bytes_sent_total"),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = Instant::now();
    stop.store(true, Ordering::Release);
    let failed = task.await.expect("probe");
    let took = (moved - joined).as_secs_f64();
    let moving = (moved - admitted).as_secs_f64();
    let (records_moved, bytes_moved) = (r1 - r0, b1 - b0);
    println!(
        "{records} records of {value}-byte values loaded on 2 nodes (backup_count 1); n3 joins and \
         receives its share. Start of n3 → admitted (one table on the 3 nodes): {:.1} s; admitted → every \
         node owns its share, backups restored, no transfer running and replication drained: \
         **{moving:.1} s**; moved **{records_moved:.0} records, {bytes_moved:.0} bytes** \
         (`hangar_migration_*_sent_total`, probe writes included): **{:.0} records/s, {:.0} bytes/s** \
         over that time ({:.0} records/s counting from the start of n3). Load {}.\n",
        (admitted - joined).as_secs_f64(),
        records_moved / moving,
        bytes_moved / moving,
        records_moved / took,
        load1()
    );
    println!("Probe: 1 connection on n1, closed loop, `OP_BATCH` of 10 × 100-byte puts, QUORUM + PERSISTED; per-batch latency. {failed} batches failed.\n");
    println!("| phase                              | batches | batches/s | p50 (ms) | p99 (ms) | max (ms) | load1 |");
    println!("|------------------------------------|---------|-----------|----------|----------|----------|-------|");
    row(
        "before the join (no migration)",
        window(&samples, base_from, joined),
        (joined - base_from).as_secs_f64(),
    );
    row(
        "n3 starting and being admitted",
        window(&samples, joined, admitted),
        (admitted - joined).as_secs_f64(),
    );
    row(
        "while partitions move",
        window(&samples, admitted, moved),
        moving,
    );
    row(
        "after (no migration)",
        window(&samples, moved, after),
        (after - moved).as_secs_f64(),
    );
    if let Some(dir) = logs {
        let dir = std::path::Path::new(&dir).join(format!("join-{throttle}-{factor}"));
        std::fs::create_dir_all(&dir).expect("log directory");
        for n in &c.nodes {
            let name = format!("{}.log", n.id);
            std::fs::copy(c.dir.join(&name), dir.join(&name)).expect("copy a node log");
        }
        // Each probe batch with the UTC time it was sent, to line slow
        // batches up with the node logs' lines.
        let (now_i, now_s) = (Instant::now(), std::time::SystemTime::now());
        let mut tsv = String::from("sent_unix_us\tlatency_us\n");
        for (t, us) in samples.lock().iter() {
            let sent = now_s - (now_i - *t);
            let unix = sent
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            tsv.push_str(&format!("{unix}\t{us}\n"));
        }
        std::fs::write(dir.join("probe.tsv"), tsv).expect("write probe.tsv");
        println!(
            "\nnode logs and the probe's batches (probe.tsv) copied to {}",
            dir.display()
        );
    }
}

/// Part b: 3 nodes hold `records` records; `kills` times, `kill -9` a
/// node and time until the two survivors hold every partition as owner
/// and backup again; restart it and wait for even ownership.
async fn restore(records: u64, value: usize, kills: u64) {
    println!("\n## b. kill -9 → backup counts restored\n");
    let mut c = Cluster::new(3, &settings(""));
    c.start_all();
    let all = [0usize, 1, 2];
    settle(&c, &all, "three nodes", STEP, || {
        backups_restored(&c, &all, 1)
    })
    .expect("formed");
    load(&c, records, value).await;
    println!(
        "{records} records of {value}-byte values, 3 nodes, backup_count 1, default settings. Time from SIGKILL \
         until the two survivors agree on a table in which every partition has an owner and 1 backup \
         (`hangar_cluster_partitions_owned` and `_backed_up` summed = 271 each: failure detection, \
         promotion, then transfers of the partitions whose backup or owner died). Then the node restarts \
         and the run waits for even ownership before the next kill.\n"
    );
    println!("| kill | victim | restored (ms) | records moved | re-balanced after restart (ms) | load1 |");
    println!("|------|--------|---------------|---------------|--------------------------------|-------|");
    let mut took = Vec::new();
    for k in 0..kills {
        let victim = usize::try_from(k % 3).expect("small");
        let live: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
        let r0: f64 = live
            .iter()
            .map(|&i| gauge(&c, i, "hangar_migration_records_sent_total").unwrap_or(0.0))
            .sum();
        c.kill9(victim);
        let killed = Instant::now();
        tokio::task::block_in_place(|| {
            // The survivors must first see the victim gone (a table
            // without it), then restore.
            settle(&c, &live, "backups restored", STEP, || {
                backups_restored(&c, &live, 1)
            })
        })
        .expect("restored");
        let t = killed.elapsed();
        let r1: f64 = live
            .iter()
            .map(|&i| gauge(&c, i, "hangar_migration_records_sent_total").unwrap_or(0.0))
            .sum();
        c.start(victim);
        let restarted = Instant::now();
        tokio::task::block_in_place(|| {
            settle(&c, &all, "re-balanced", STEP, || {
                backups_restored(&c, &all, 1) && balanced(&c, &all) && drained(&c, &all)
            })
        })
        .expect("re-balanced");
        println!(
            "| {:>4} | {:>6} | {:>13} | {:>13.0} | {:>30} | {:>5} |",
            k + 1,
            c.nodes[victim].id,
            t.as_millis(),
            r1 - r0,
            restarted.elapsed().as_millis(),
            load1()
        );
        took.push(t);
    }
    took.sort();
    println!(
        "\nkill -9 → backups restored over {} kills: p50 {} ms, max {} ms (load average {})",
        took.len(),
        took[(took.len() - 1) / 2].as_millis(),
        took.last().map_or(0, Duration::as_millis),
        loadavg()
    );
}

fn main() {
    let records = env_u64("HANGAR_BENCH_RECORDS", 40_000);
    let value = usize::try_from(env_u64("HANGAR_BENCH_VALUE", 500)).expect("value size");
    let secs = env_u64("HANGAR_BENCH_SECS", 10);
    let kills = env_u64("HANGAR_BENCH_RESTORES", 5);
    let only = std::env::var("HANGAR_BENCH_ONLY").unwrap_or_default();
    let throttles =
        std::env::var("HANGAR_BENCH_THROTTLES").unwrap_or_else(|_| "4194304,0".to_string());
    let factors = std::env::var("HANGAR_BENCH_FACTORS").unwrap_or_else(|_| "0,2".to_string());
    assert!(
        factors.split(',').all(|t| t.trim().parse::<u32>().is_ok()),
        "HANGAR_BENCH_FACTORS={factors:?}: expected whole numbers, comma-separated (0: chunks committed whole)"
    );
    assert!(
        throttles.split(',').all(|t| t.trim().parse::<u64>().is_ok()),
        "HANGAR_BENCH_THROTTLES={throttles:?}: expected bytes per second, comma-separated (0: unthrottled)"
    );
    assert!(
        ["", "migration", "restore"].contains(&only.as_str()),
        "HANGAR_BENCH_ONLY={only:?}: expected migration or restore"
    );
    let bin = target_dir().join("hangar");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build [--release] -p hangar-host -p hangar-storage -p hangar-cluster)",
        bin.display()
    );
    println!("# hangar partition moves benchmark\n");
    println!(
        "binary {}, {} cpus, load average {} at start, client and nodes on one machine (loopback)",
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
        if only.is_empty() || only == "migration" {
            for throttle in throttles.split(',').map(str::trim) {
                for factor in factors.split(',').map(str::trim) {
                    migration(records, value, secs, throttle, factor).await;
                }
            }
        }
        if only.is_empty() || only == "restore" {
            restore(records, value, kills).await;
        }
    });
    println!("\nload average at the end: {}", loadavg());
}
