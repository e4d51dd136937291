//! What clustering costs: one node against a 3-node cluster at each
//! replication consistency, a write sent to its partition's owner against
//! one the connected node forwards, and how long a `kill -9` leaves
//! partitions refusing writes.
//!
//! Run (release binaries; the runner starts `target/release/hangar`
//! processes through `hangar_tests::cluster_harness`):
//!
//!     cargo build --release -p hangar-host -p hangar-storage -p hangar-cluster
//!     cargo bench -p hangar-tests --bench cluster
//!
//! Settings (environment): `HANGAR_BENCH_SECS` (seconds per cell, default
//! 10), `HANGAR_BENCH_FAILOVERS` (kills, default 10), `HANGAR_BENCH_ONLY`
//! (`throughput`, `forward` or `failover`: run one part).
//!
//! Every figure line carries the 1-minute load average read when its cell
//! finished, because the machine may be shared. Cells that are compared are
//! run back to back on the same binaries.

use std::time::{Duration, Instant};

use hangar_core::{ConsistencyLevel, WriteConcern, PARTITION_COUNT};
use hangar_host::bench::{self, consistency_name, BenchConfig, KeySelection, Report, Stop};
use hangar_tests::cluster_harness::{
    formed, load1, loadavg, one_key_per_partition, put, Client, Cluster,
};
use hangar_tests::support::target_dir;

const FORM: Duration = Duration::from_secs(60);
const CONNECTIONS: usize = 16;
const BATCH: usize = 100;
const VALUE_SIZE: usize = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// CPU time (user + system) the running nodes of `c` used so far, in
/// clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(c: &Cluster) -> u64 {
    (0..c.nodes.len())
        .filter_map(|i| c.pid(i))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|st| {
            // Fields after the parenthesised command name.
            let rest = st.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // rest starts at field 3 (state): utime is field 14, stime 15.
            num(11) + num(12)
        })
        .sum()
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Changes queued for backups and not yet shipped, summed over `c`'s nodes
/// (`hangar_replication_lag_changes`).
fn replication_lag(c: &Cluster) -> u64 {
    (0..c.nodes.len())
        .filter_map(|i| c.metrics(i))
        .flat_map(|m| {
            m.lines()
                .filter(|l| l.starts_with("hangar_replication_lag_changes"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum::<f64>() as u64
}

/// One measured cell: a name and its report.
struct Cell {
    name: String,
    report: Report,
    load: String,
    /// Node CPU time per acknowledged op, in microseconds.
    cpu_us_per_op: f64,
    /// Replication backlog right after the cell, and how long it took to
    /// drain (the next cell starts once it has, so cells do not pay for
    /// each other's backlog).
    lag: u64,
    drain: Duration,
}

impl Cell {
    fn row(&self, baseline: Option<f64>) -> String {
        let r = &self.report;
        let h = &r.batch_latency_us;
        let ratio = baseline.map_or(String::from("-"), |b| {
            format!("{:.2}x", r.ops_per_sec() / b.max(1e-9))
        });
        format!(
            "| {:<44} | {:>8.0} | {:>6} | {:>8.2} | {:>8.2} | {:>8.2} | {:>6} | {:>9.1} | {:>14} | {:>5} |",
            self.name,
            r.ops_per_sec(),
            ratio,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            r.failed_ops,
            self.cpu_us_per_op,
            if self.lag == 0 {
                "0".to_string()
            } else {
                format!("{}/{}ms", self.lag, self.drain.as_millis())
            },
            self.load
        )
    }
}

const HEADER: &str = "| cell                                         |    ops/s |  ratio | p50 (ms) | p99 (ms) | max (ms) | failed | CPU µs/op | repl lag/drain | load1 |\n|----------------------------------------------|----------|--------|----------|----------|----------|--------|-----------|----------------|-------|";

async fn measure(
    name: String,
    nodes: &Cluster,
    urls: &[String],
    concern: WriteConcern,
    consistency: Option<ConsistencyLevel>,
    keys: KeySelection,
    secs: u64,
) -> Cell {
    let config = BenchConfig {
        url: urls.join(","),
        connections: CONNECTIONS,
        batch: BATCH,
        value_size: VALUE_SIZE,
        concern,
        timeout_ms: 10_000,
        stop: Stop::Duration(Duration::from_secs(secs)),
        token: None,
        map: "bench".into(),
        consistency,
        keys,
    };
    let cpu_before = cpu_ticks(nodes);
    let report = bench::run(config)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let cpu = (cpu_ticks(nodes) - cpu_before) as f64 / ticks_per_sec();
    let load = load1();
    let lag = replication_lag(nodes);
    let drained = Instant::now();
    if lag > 0 {
        while replication_lag(nodes) > 0 && drained.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let cell = Cell {
        name,
        cpu_us_per_op: cpu * 1e6 / (report.acked_ops.max(1) as f64),
        lag,
        drain: drained.elapsed(),
        report,
        load,
    };
    // Progress on stderr, so a long run shows it is alive.
    eprintln!("{}", cell.row(None));
    cell
}

/// Partitions node `i` owns, as its `/metrics` says.
fn owned(c: &Cluster, i: usize) -> Option<u64> {
    c.metrics(i)?
        .lines()
        .find(|l| l.starts_with("hangar_cluster_partitions_owned"))?
        .split_whitespace()
        .last()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// Waits until every node owns its even share (within one) of the 271
/// partitions.
fn wait_balanced(c: &Cluster, timeout: Duration) -> Result<(), String> {
    let n = c.nodes.len() as u64;
    let share = u64::from(PARTITION_COUNT) / n;
    let deadline = Instant::now() + timeout;
    loop {
        let owned: Vec<Option<u64>> = (0..c.nodes.len()).map(|i| owned(c, i)).collect();
        if owned.iter().all(|o| o.is_some_and(|v| v >= share)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("partitions owned per node: {owned:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Part a: single node against the 3-node cluster, per concern and
/// consistency, connections on one node and spread over the three.
async fn throughput(single: &Cluster, three: &Cluster, secs: u64) {
    println!("\n## a. single node vs 3-node cluster\n");
    println!(
        "{CONNECTIONS} connections, batch {BATCH}, {VALUE_SIZE}-byte values, {secs} s per cell; \
         ratio = ops/s against the single node at the same concern; \
         latency per batch ack; CPU µs/op = user + system CPU time of the node processes per acknowledged op \
         (the load generator's own CPU not counted); repl lag/drain = changes still queued for backups when the \
         cell ended and how long they took to ship (the next cell waits for them).\n"
    );
    println!("{HEADER}");
    let one = vec![single.ws_url(0)];
    let spread: Vec<String> = (0..3).map(|i| three.ws_url(i)).collect();
    let on_n1 = vec![three.ws_url(0)];
    for concern in [WriteConcern::Persisted, WriteConcern::Applied] {
        let base = measure(
            format!("single node, {concern}"),
            single,
            &one,
            concern,
            None,
            KeySelection::All,
            secs,
        )
        .await;
        let b = base.report.ops_per_sec();
        println!("{}", base.row(Some(b)));
        for level in [
            ConsistencyLevel::Eventual,
            ConsistencyLevel::Quorum,
            ConsistencyLevel::Strong,
        ] {
            for (how, urls) in [("spread", &spread), ("all on n1", &on_n1)] {
                let c = measure(
                    format!("3 nodes, {concern}, {}, {how}", consistency_name(level)),
                    three,
                    urls,
                    concern,
                    Some(level),
                    KeySelection::All,
                    secs,
                )
                .await;
                println!("{}", c.row(Some(b)));
            }
        }
        // The baseline again, to show how much the machine drifted.
        let again = measure(
            format!("single node, {concern} (again)"),
            single,
            &one,
            concern,
            None,
            KeySelection::All,
            secs,
        )
        .await;
        println!("{}", again.row(Some(b)));
    }
    counters(
        three,
        "3-node cluster counters after part a (cumulative since the cluster started)",
    );
}

/// The replication and forwarding counters of each node of `c` (to see how
/// many changes a replication request carried, and what was forwarded).
fn counters(c: &Cluster, title: &str) {
    println!("\n{title}:\n");
    println!("```");
    for i in 0..c.nodes.len() {
        let m = c.metrics(i).unwrap_or_default();
        for line in m.lines().filter(|l| {
            !l.starts_with('#')
                && (l.contains("replication") || l.contains("forward") || l.contains("hangar_ops"))
        }) {
            println!("{} {line}", c.nodes[i].id);
        }
    }
    println!("```");
}

/// Part b: every connection on n1; keys n1 owns against keys it forwards.
async fn forwarding(three: &Cluster, secs: u64) {
    println!("\n## b. write sent to the owner vs forwarded\n");
    println!(
        "All {CONNECTIONS} connections on n1; keys owned-by:n1 (applied locally, replicated) \
         vs not-owned-by:n1 (forwarded to n2/n3). ratio = ops/s against owned-by at the same settings.\n"
    );
    println!("{HEADER}");
    let on_n1 = vec![three.ws_url(0)];
    for concern in [WriteConcern::Persisted, WriteConcern::Applied] {
        for level in [ConsistencyLevel::Eventual, ConsistencyLevel::Quorum] {
            let mut base = None;
            // Interleaved: owner, forwarded, owner, forwarded.
            for round in 0..2 {
                for keys in [
                    KeySelection::OwnedBy("n1".into()),
                    KeySelection::NotOwnedBy("n1".into()),
                ] {
                    let c = measure(
                        format!(
                            "{concern}, {}, keys {keys} #{}",
                            consistency_name(level),
                            round + 1
                        ),
                        three,
                        &on_n1,
                        concern,
                        Some(level),
                        keys,
                        secs,
                    )
                    .await;
                    let b = *base.get_or_insert(c.report.ops_per_sec());
                    println!("{}", c.row(Some(b)));
                }
            }
        }
    }
    counters(
        three,
        "3-node cluster counters after part b (cumulative since the cluster started)",
    );
}

/// Writes one key per partition through `cl` until every partition has
/// accepted one (refused ones retried every 50 ms) or `limit` passes.
/// Returns the rounds it took, or the partitions still refusing.
async fn write_every_partition(
    cl: &mut Client,
    prefix: &str,
    limit: Duration,
) -> Result<u32, String> {
    let started = Instant::now();
    let mut pending = one_key_per_partition(prefix);
    let mut round = 0u32;
    loop {
        round += 1;
        let ops = pending
            .values()
            .map(|k| {
                put(
                    &format!("{round}-{k}"),
                    "failover",
                    k,
                    &serde_json::json!(round),
                    1_000 + u64::from(round),
                    "bench",
                )
            })
            .collect();
        let ack = cl.batch(ops, "APPLIED", None, 2_000).await?;
        let ok: Vec<String> = ack
            .results
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.success)
            .filter_map(|r| r.op_id.split_once('-').map(|(_, k)| k.to_string()))
            .collect();
        pending.retain(|_, k| !ok.contains(k));
        if pending.is_empty() {
            return Ok(round);
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{} partitions still refuse writes after {limit:?}",
                pending.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn leader_of(c: &Cluster, alive: &[usize]) -> Option<String> {
    alive.iter().find_map(|&i| {
        c.health(i)?["cluster"]["leader"]
            .as_str()
            .map(ToString::to_string)
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Part c: `kills` times, `kill -9` a node (every third kill the Raft
/// leader, otherwise rotating n1, n2, n3), time until all 271 partitions
/// accept a write through a survivor, restart it, wait for the re-formed
/// cluster with ownership even again (the node gets its partitions back by
/// transfer).
async fn failover(kills: u64) {
    println!("\n## c. failover after kill -9 (default settings: gossip 200 ms, failure_confirm_ms 1000)\n");
    println!("Time from SIGKILL until a write to each of the 271 partitions (one batch of the still-refused keys, APPLIED, retried 50 ms after a refusal) has been accepted through a surviving node.\n");
    println!("| kill | victim | was leader | writable again (ms) | rounds | re-formed, balanced (ms)     | load1 |");
    println!("|------|--------|------------|---------------------|--------|------------------------------|-------|");
    let mut c = formed(3, "bench-failover");
    let mut took = Vec::new();
    for k in 0..kills {
        let all = [0usize, 1, 2];
        // A clean start: every partition writable before the kill.
        let mut probe = Client::connect(&c.ws_url(0)).await.expect("connect n1");
        write_every_partition(&mut probe, &format!("pre{k}"), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("kill {k}: before the kill: {e}"));
        drop(probe);
        let leader = leader_of(&c, &all).expect("a leader");
        let victim = if k % 3 == 0 {
            c.nodes
                .iter()
                .position(|n| n.id == leader)
                .expect("leader is a node")
        } else {
            (k as usize) % 3
        };
        let survivor = (victim + 1) % 3;
        let mut cl = Client::connect(&c.ws_url(survivor))
            .await
            .expect("connect survivor");
        c.kill9(victim);
        let killed = Instant::now();
        let rounds = write_every_partition(&mut cl, &format!("fo{k}"), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("kill {k} ({}): {e}", c.nodes[victim].id));
        let t = killed.elapsed();
        drop(cl);
        c.start(victim);
        let restarted = Instant::now();
        c.wait_formed(&all, FORM)
            .unwrap_or_else(|e| panic!("kill {k}: did not re-form:{e}"));
        // The restarted node gets partitions back only through transfers:
        // wait until ownership is even again, so that the next kill has
        // partitions to take over.
        wait_balanced(&c, FORM).unwrap_or_else(|e| panic!("kill {k}: not balanced again: {e}"));
        let reformed = restarted.elapsed();
        println!(
            "| {:>4} | {:>6} | {:>10} | {:>19} | {:>6} | {:>28} | {:>5} |",
            k + 1,
            c.nodes[victim].id,
            if c.nodes[victim].id == leader {
                "yes"
            } else {
                "no"
            },
            t.as_millis(),
            rounds,
            reformed.as_millis(),
            load1()
        );
        took.push(t);
    }
    took.sort();
    println!(
        "\nfailover over {} kills: p50 {} ms, max {} ms (load average {})",
        took.len(),
        pct(&took, 0.5).as_millis(),
        took.last().map_or(0, Duration::as_millis),
        loadavg()
    );
}

fn main() {
    let secs = env_u64("HANGAR_BENCH_SECS", 10);
    let kills = env_u64("HANGAR_BENCH_FAILOVERS", 10);
    let only = std::env::var("HANGAR_BENCH_ONLY").unwrap_or_default();
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
    println!("# hangar cluster benchmark\n");
    println!(
        "binary {} ({profile} profile), {} cpus, load average {} at start, client and nodes on one machine (loopback)",
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
        if only.is_empty() || only == "throughput" || only == "forward" {
            let three = formed(3, "bench-three");
            if only.is_empty() || only == "throughput" {
                let single = formed(1, "bench-single");
                throughput(&single, &three, secs).await;
            }
            if only.is_empty() || only == "forward" {
                forwarding(&three, secs).await;
            }
        }
        if only.is_empty() || only == "failover" {
            failover(kills).await;
        }
    });
    println!("\nload average at the end: {}", loadavg());
}
