//! A checker for acknowledged writes under node failure: several writers,
//! each through its own node, write unique LWW keys at QUORUM + PERSISTED
//! over the client protocol while, round after round, a node is `kill -9`ed
//! and restarted at random moments (a seeded RNG; the seed is printed), one
//! node joins and one leaves gracefully (SIGTERM). Between two failures the
//! run waits until every partition has its owner and `backup_count` backups
//! again, and ownership is even, so no failure takes more than one copy of
//! a partition (a minority of its replicas with `backup_count` 1).
//!
//! At the end, with the cluster settled (one table on every node, backups
//! restored, replication queues and migrations drained), it checks:
//!
//! 1. **Nothing acknowledged is lost**: a live query on every live node
//!    returns every acknowledged key.
//! 2. **Replicas agree**: the nodes are stopped and each one's store is
//!    opened (`<data dir>/<node id>/storage`); for every partition, the
//!    owner and each backup of the final partition table hold every
//!    acknowledged key of it, no key no writer sent, and the same records
//!    of the acknowledged keys (equal Merkle roots over their LWW item
//!    hashes, `hangar_core::merkle`). Full roots may still differ by writes
//!    that reached one replica and were never acknowledged (a QUORUM write
//!    that timed out); those partitions are counted apart
//!    ([`Outcome::diverged`]), since only anti-entropy repair brings such
//!    replicas in line.
//!
//! `tests/t48_cluster_kill_checker.rs` runs it in CI, and runs it with
//! `backup_count = 0` as a negative control (the checker must report lost
//! writes); `scripts/soak-cluster` runs it for as long as asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::cluster_harness::{keys_on, put, Client, Cluster, Settings};
use crate::cluster_state::{backups_restored, balanced, drained, partition_map, settle};
use crate::replica_check::{compare_replicas, read_store, Items};

/// The map the writers write.
pub const MAP: &str = "kc";

/// What one run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// RNG seed: the same seed picks the same victims and delays.
    pub seed: u64,
    /// Nodes started at the beginning (3 to 5); one more joins mid-run.
    pub nodes: usize,
    /// Rounds: one is the join, one the graceful leave, the others kills.
    pub rounds: usize,
    /// Writers, each connected to its own node (`writer % nodes`).
    pub writers: usize,
    /// Keys per write batch.
    pub batch: usize,
    /// Pause between a writer's batches.
    pub pause: Duration,
    /// `backup_count` of the cluster (0 is the negative control).
    pub backup_count: u32,
    /// Longest wait for any one step (forming, restoring backups, draining).
    pub step_timeout: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            seed: 1,
            nodes: 3,
            rounds: 10,
            writers: 3,
            batch: 10,
            pause: Duration::from_millis(100),
            backup_count: 1,
            step_timeout: Duration::from_secs(60),
        }
    }
}

impl Plan {
    /// `self` with what the environment overrides: `HANGAR_KILL_SEED`,
    /// `HANGAR_KILL_ROUNDS` (at least 3), `HANGAR_KILL_NODES` (3 to 5),
    /// `HANGAR_KILL_WRITERS` (at least 1). `scripts/soak-cluster` sets them.
    ///
    /// # Errors
    /// A variable that is set but is not a number in its range, named with
    /// what was expected.
    pub fn with_env(mut self) -> Result<Self, String> {
        fn var(name: &str, lo: u64, hi: u64) -> Result<Option<u64>, String> {
            let Ok(v) = std::env::var(name) else {
                return Ok(None);
            };
            match v.trim().parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "{name}={v:?}: expected a whole number from {lo} to {hi}"
                )),
            }
        }
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(v) = var("HANGAR_KILL_SEED", 0, u64::MAX)? {
            self.seed = v;
        }
        if let Some(v) = var("HANGAR_KILL_ROUNDS", 3, 1_000_000)? {
            self.rounds = size(v);
        }
        if let Some(v) = var("HANGAR_KILL_NODES", 3, 5)? {
            self.nodes = size(v);
        }
        if let Some(v) = var("HANGAR_KILL_WRITERS", 1, 64)? {
            self.writers = size(v);
        }
        Ok(self)
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Keys acknowledged as written (every op of an `OP_ACK` with `success`).
    pub acked: usize,
    /// Ops sent that were not acknowledged (refused, or the ack never came).
    pub unacked: usize,
    /// Per live node: acknowledged keys its live query did not return.
    pub lost: BTreeMap<String, Vec<String>>,
    /// Per-replica findings: a replica missing acknowledged keys of its
    /// partition, or replicas of one partition with different roots.
    pub replica_faults: Vec<String>,
    /// Partitions whose replicas agree on every acknowledged key but whose
    /// full roots differ by writes that were never acknowledged.
    pub diverged: Vec<String>,
    /// Partitions whose replicas were compared.
    pub partitions_compared: usize,
    /// One line per round: what was done and how long the cluster took.
    pub log: Vec<String>,
}

impl Outcome {
    /// `Ok` when nothing acknowledged was lost and every partition's
    /// replicas agree.
    ///
    /// # Errors
    /// A text naming what was lost where, and which replicas differ.
    pub fn verdict(&self) -> Result<(), String> {
        let mut e = String::new();
        for (node, keys) in &self.lost {
            if !keys.is_empty() {
                e.push_str(&format!(
                    "{node}: {} of {} acknowledged writes lost, e.g. {:?}\n",
                    keys.len(),
                    self.acked,
                    &keys[..keys.len().min(5)]
                ));
            }
        }
        for f in self.replica_faults.iter().take(10) {
            e.push_str(f);
            e.push('\n');
        }
        if self.replica_faults.len() > 10 {
            e.push_str(&format!(
                "... {} replica faults in all\n",
                self.replica_faults.len()
            ));
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// SplitMix64: a small seeded generator, so a failing seed replays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
}

/// Shared between the writers and the run.
#[derive(Default)]
struct Tally {
    acked: Mutex<BTreeSet<String>>,
    sent: Mutex<BTreeSet<String>>,
    unacked: AtomicU64,
}

/// One writer: writes batches of unique keys `w<me>-<n>` through node
/// `me % urls.len()` (the next one when it cannot connect) until `stop`.
async fn writer(urls: Vec<String>, me: usize, plan: Plan, stop: Arc<AtomicBool>, t: Arc<Tally>) {
    let mut at = me;
    let mut n = 0u64;
    'connect: while !stop.load(Ordering::Acquire) {
        let Ok(mut cl) = Client::connect(&urls[at % urls.len()]).await else {
            at += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !stop.load(Ordering::Acquire) {
            let ops = (0..plan.batch)
                .map(|_| {
                    n += 1;
                    let key = format!("w{me}-{n}");
                    put(
                        &key,
                        MAP,
                        &key,
                        &json!({ "n": n }),
                        1_000 + n,
                        &format!("w{me}"),
                    )
                })
                .collect::<Vec<_>>();
            let sent = ops.len() as u64;
            t.sent.lock().extend(ops.iter().map(|o| o.key.clone()));
            match cl.batch(ops, "PERSISTED", Some("QUORUM"), 5_000).await {
                Ok(ack) => {
                    let mut ok = 0;
                    let mut a = t.acked.lock();
                    for r in ack.results.unwrap_or_default() {
                        if r.success {
                            ok += 1;
                            a.insert(r.op_id);
                        }
                    }
                    t.unacked.fetch_add(sent - ok, Ordering::Relaxed);
                }
                Err(_) => {
                    t.unacked.fetch_add(sent, Ordering::Relaxed);
                    at += 1;
                    continue 'connect;
                }
            }
            tokio::time::sleep(plan.pause).await;
        }
    }
}

/// Runs `plan` on fresh `hangar` processes and returns what it found;
/// [`Outcome::verdict`] judges it.
///
/// # Errors
/// When the cluster does not settle within the plan's step timeout (the
/// text carries the nodes' health and log tails), or the stores cannot be
/// read at the end: the run could not check anything.
///
/// # Panics
/// If the plan asks for fewer than 3 or more than 5 starting nodes, or
/// fewer than 3 rounds.
pub fn run(plan: &Plan) -> Result<Outcome, String> {
    assert!(
        (3..=5).contains(&plan.nodes),
        "nodes must be 3 to 5, got {}",
        plan.nodes
    );
    assert!(
        plan.rounds >= 3,
        "rounds must be at least 3 (join, leave, a kill), got {}",
        plan.rounds
    );
    eprintln!("kill checker: seed {} plan {plan:?}", plan.seed);
    let mut rng = Rng::new(plan.seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut c = Cluster::new(
        plan.nodes + 1,
        &Settings {
            cluster_id: "kill-checker".into(),
            cluster_toml: format!(
                "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\nbackup_count = {}\n",
                plan.backup_count
            ),
            ..Settings::default()
        },
    );
    let joiner = plan.nodes;
    let mut live: Vec<usize> = (0..plan.nodes).collect();
    for &i in &live {
        c.start(i);
    }
    let limit = plan.step_timeout;
    settle(&c, &live, "first forming", limit, || {
        backups_restored(&c, &live, plan.backup_count)
    })?;

    let urls: Vec<String> = (0..=plan.nodes).map(|i| c.ws_url(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| {
            rt.spawn(writer(
                urls[..plan.nodes].to_vec(),
                w,
                plan.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();

    let mut out = Outcome::default();
    let join_at = plan.rounds / 3;
    let leave_at = 2 * plan.rounds / 3;
    let started = Instant::now();
    for round in 0..plan.rounds {
        std::thread::sleep(Duration::from_millis(rng.range(200, 1_500)));
        let t = Instant::now();
        let what = if round == join_at {
            c.start(joiner);
            live.push(joiner);
            format!("{} joins", c.nodes[joiner].id)
        } else if round == leave_at {
            let k = live[usize::try_from(rng.range(0, live.len() as u64)).unwrap_or(0)];
            let clean = c.stop(k, Duration::from_secs(60));
            live.retain(|&i| i != k);
            format!("{} leaves (SIGTERM, clean exit {clean})", c.nodes[k].id)
        } else {
            let k = live[usize::try_from(rng.range(0, live.len() as u64)).unwrap_or(0)];
            c.kill9(k);
            let down = rng.range(0, 3_000);
            std::thread::sleep(Duration::from_millis(down));
            c.start(k);
            format!("{} kill -9, restarted after {down} ms", c.nodes[k].id)
        };
        settle(&c, &live, &format!("round {round} ({what})"), limit, || {
            backups_restored(&c, &live, plan.backup_count) && balanced(&c, &live)
        })
        .map_err(|e| format!("seed {}: {e}", plan.seed))?;
        let line = format!(
            "round {round} at {:.1}s: {what}; backups restored and balanced {} ms after the event ({} acked so far)",
            started.elapsed().as_secs_f64(),
            t.elapsed().as_millis(),
            tally.acked.lock().len()
        );
        eprintln!("{line}");
        out.log.push(line);
    }
    stop.store(true, Ordering::Release);
    rt.block_on(async {
        for w in writers {
            let _ = w.await;
        }
    });
    let acked = tally.acked.lock().clone();
    out.acked = acked.len();
    out.unacked = usize::try_from(tally.unacked.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
    settle(&c, &live, "settling at the end", limit, || {
        backups_restored(&c, &live, plan.backup_count) && drained(&c, &live)
    })?;

    // 1. Every acknowledged key is readable through every live node.
    for &i in &live {
        let got = rt.block_on(keys_on(&c, i, MAP))?;
        let lost: Vec<String> = acked.difference(&got).cloned().collect();
        out.lost.insert(c.nodes[i].id.clone(), lost);
    }

    // 2. Every replica of every partition holds the same records.
    let table = rt.block_on(partition_map(&c.ws_url(live[0])))?;
    // Group commit has made every acknowledged write durable; give
    // background replication of anything else a moment, then stop.
    std::thread::sleep(Duration::from_millis(500));
    for &i in &live {
        c.kill9(i);
    }
    let mut stores: BTreeMap<String, BTreeMap<u32, Items>> = BTreeMap::new();
    for &i in &live {
        let id = c.nodes[i].id.clone();
        let parts = rt.block_on(read_store(c.data_dir(), &id, MAP))?;
        stores.insert(id, parts);
    }
    let sent = tally.sent.lock().clone();
    let r = compare_replicas(&table, &stores, &acked, &sent);
    out.replica_faults = r.faults;
    out.diverged = r.diverged;
    out.partitions_compared = r.compared;
    eprintln!(
        "kill checker: seed {}: {} acknowledged, {} not; {} partitions' replicas compared, \
         {} differ only by unacknowledged writes",
        plan.seed,
        out.acked,
        out.unacked,
        out.partitions_compared,
        out.diverged.len()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t15_bad_environment_values_are_refused_by_name() {
        // Only this test sets these variables in this test binary.
        std::env::set_var("HANGAR_KILL_NODES", "7");
        let e = Plan::default().with_env().unwrap_err();
        std::env::remove_var("HANGAR_KILL_NODES");
        assert!(
            e.contains("HANGAR_KILL_NODES=\"7\": expected a whole number from 3 to 5"),
            "{e}"
        );
    }
}
