//! The kill -9 protocol shared by `t30_crash_kill9.rs` (a group committer over
//! redb) and `t31_crash_module_kill9.rs` (the whole module).
//!
//! The test binary re-executes itself as a child: an ignored test, selected
//! with `--ignored --exact`, reads its [`ChildArgs`] from the environment
//! and runs concurrent writers that print `@crash@ W map key ts` before a
//! write and `@crash@ A map key ts` once it is acknowledged ([`issued`],
//! [`acked`]). The parent ([`Protocol::run_round`]) waits for 200 acks,
//! kills the child with SIGKILL after a random delay, folds the printed lines
//! into a [`Model`] and hands the directory to the test's own check, which
//! judges every key with [`Model::judge`].
//!
//! Several rounds run against the same directory, so the store is also
//! recovered after a crash repeatedly. The kill does not model a power loss:
//! the OS page cache survives it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, RawValue};

const ENV_DIR: &str = "HANGAR_CRASH_CHILD_DIR";
const ENV_MODE: &str = "HANGAR_CRASH_CHILD_MODE";
const ENV_SEED: &str = "HANGAR_CRASH_CHILD_SEED";
const ENV_TS_BASE: &str = "HANGAR_CRASH_CHILD_TS_BASE";

/// Prefix of the child's report lines; libtest may print on the same line
/// before it ("test child_process_writer ... "), so the parser looks for it.
const TAG: &str = "@crash@ ";

/// Acks the child must have printed before the parent picks its moment.
const WARM_ACKS: u64 = 200;

/// The child stops by itself after this long; the parent treats that as a
/// failure (the kill must come first).
pub const CHILD_MAX_RUN: Duration = Duration::from_secs(60);

/// A small xorshift generator: no dependency, and the seed is printed so
/// that a failing round can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// The generator of writer `w` in a child started with `seed`.
    pub fn for_writer(seed: u64, w: u64) -> Self {
        Self(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The name of map number `m`.
pub fn map_name(m: u64) -> String {
    format!("crash-{m}")
}

/// Reports a write about to be issued: from here on it may be durable.
pub fn issued(map: &str, key: &str, ts: u64) {
    println!("{TAG}W {map} {key} {ts}");
}

/// Reports a write as acknowledged: it must survive the kill.
pub fn acked(map: &str, key: &str, ts: u64) {
    println!("{TAG}A {map} {key} {ts}");
}

// ---------------------------------------------------------------- child side

/// What the parent tells a child through its environment.
pub struct ChildArgs {
    /// The store's directory, shared by every round.
    pub dir: PathBuf,
    /// The test's mode (a safe one, or its negative control).
    pub mode: String,
    /// Seeds the writers' generators ([`Rng::for_writer`]).
    pub seed: u64,
    /// The first timestamp; each round starts a billion higher.
    pub ts_base: u64,
}

impl ChildArgs {
    /// Reads the arguments; panics if the child was not started by
    /// [`Protocol::run_round`].
    pub fn from_env() -> Self {
        let dir = std::env::var(ENV_DIR).expect("started by the crash tests with a directory");
        Self {
            dir: dir.into(),
            mode: std::env::var(ENV_MODE).unwrap_or_default(),
            seed: std::env::var(ENV_SEED).unwrap().parse().unwrap(),
            ts_base: std::env::var(ENV_TS_BASE).unwrap().parse().unwrap(),
        }
    }
}

/// Runs the child's writers on a two-worker runtime, then flushes stdout.
pub fn run_child(writers: impl Future<Output = ()>) {
    block_on(2, writers);
    std::io::stdout().flush().unwrap();
}

/// Spawns writer tasks `0..writers`, each the future `writer(w)`, and waits
/// for all of them.
pub async fn spawn_writers<F>(writers: u64, writer: impl Fn(u64) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..writers).map(|w| tokio::spawn(writer(w))).collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Runs `work` to completion on a fresh runtime with `workers` threads.
pub fn block_on<T>(workers: usize, work: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

// --------------------------------------------------------------- parent side

/// What the parent learnt from the children's output, across rounds.
#[derive(Default)]
pub struct Model {
    /// Every issued timestamp per (map, key).
    pub issued: HashMap<(String, String), BTreeSet<u64>>,
    /// The greatest acknowledged timestamp per (map, key).
    pub acked: HashMap<(String, String), u64>,
}

impl Model {
    /// The violations of one key, given what the restarted store holds for
    /// it and the value each timestamp wrote:
    /// - an acknowledged key is present, with a timestamp >= the greatest
    ///   acknowledged one, and equal unless a later write was issued (a
    ///   write may be durable without its ack having been printed);
    /// - a stored record was issued, and its value is the one written with
    ///   its timestamp (nothing is invented or mixed up).
    pub fn judge(
        &self,
        slot: &(String, String),
        stored: Option<&LwwRecord>,
        value_for: fn(&str, &str, u64) -> RawValue,
    ) -> Vec<String> {
        let (map, key) = slot;
        let acked = self.acked.get(slot).copied();
        let issued = self.issued.get(slot);
        let mut violations = Vec::new();
        match (acked, stored) {
            (Some(a), None) => {
                violations.push(format!("{map}/{key}: acked ts {a} but the key is missing"));
            }
            (Some(a), Some(r)) if r.timestamp.millis < a => violations.push(format!(
                "{map}/{key}: acked ts {a} but stored ts {} is older",
                r.timestamp.millis
            )),
            _ => {}
        }
        let Some(r) = stored else {
            return violations;
        };
        let ts = r.timestamp.millis;
        if !issued.is_some_and(|s| s.contains(&ts)) {
            violations.push(format!("{map}/{key}: stored ts {ts} was never issued"));
        } else if r.value != ROption::RSome(value_for(map, key, ts)) {
            violations.push(format!("{map}/{key}: stored value does not match ts {ts}"));
        }
        if let Some(a) = acked {
            let later_issued = issued.is_some_and(|s| s.range(a + 1..).next().is_some());
            if ts > a && !later_issued {
                violations.push(format!(
                    "{map}/{key}: stored ts {ts} > acked {a} with no later write issued"
                ));
            }
        }
        violations
    }

    /// Folds a child's report lines in; returns (writes, acks) seen.
    fn learn(&mut self, lines: &[String]) -> (usize, usize) {
        let (mut writes, mut acks) = (0, 0);
        for line in lines {
            let Some(at) = line.find(TAG) else { continue };
            let parts: Vec<&str> = line[at + TAG.len()..].split(' ').collect();
            let [kind @ ("W" | "A"), map, key, ts] = parts[..] else {
                continue; // libtest chatter, or a line cut by the kill
            };
            let Ok(ts) = ts.parse::<u64>() else { continue };
            let slot = (map.to_string(), key.to_string());
            if kind == "W" {
                writes += 1;
                self.issued.entry(slot).or_default().insert(ts);
            } else {
                acks += 1;
                let e = self.acked.entry(slot).or_insert(0);
                *e = (*e).max(ts);
            }
        }
        (writes, acks)
    }
}

/// What one round saw.
pub struct RoundReport {
    pub acks: usize,
    pub writes: usize,
    pub violations: Vec<String>,
}

/// One crash test: its child, its patience and its check.
pub struct Protocol {
    /// The ignored test that is the child's entry point.
    pub child: &'static str,
    /// Names the test in the parent's log lines.
    pub label: &'static str,
    /// How long the parent waits for the child's first 200 acks.
    pub warm_up: Duration,
    /// Opens the store in the directory as a restarted node would and
    /// returns what [`Model::judge`] finds wrong.
    pub check: fn(&Path, &Model) -> Vec<String>,
}

impl Protocol {
    /// Starts a child in `mode`, kills it with SIGKILL at a random moment
    /// past 200 acks, learns its lines into `model` and checks the store.
    pub fn run_round(
        &self,
        dir: &Path,
        mode: &str,
        round: u64,
        rng: &mut Rng,
        model: &mut Model,
    ) -> RoundReport {
        let seed = rng.next() | 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                self.child,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir)
            .env(ENV_MODE, mode)
            .env(ENV_SEED, seed.to_string())
            .env(ENV_TS_BASE, ((round + 1) * 1_000_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test binary re-executes itself");
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let acks_seen = Arc::new(AtomicU64::new(0));
        let reader = {
            let (lines, acks_seen) = (lines.clone(), acks_seen.clone());
            let ack_tag = format!("{TAG}A ");
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains(&ack_tag) {
                        acks_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Wait for the writers to be in full swing, then kill at a random moment.
        let deadline = Instant::now() + self.warm_up;
        while acks_seen.load(Ordering::Relaxed) < WARM_ACKS {
            assert!(
                Instant::now() < deadline,
                "round {round}: no {WARM_ACKS} acks in {:?}",
                self.warm_up
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the child exited early"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = Duration::from_millis(rng.below(400));
        std::thread::sleep(delay);
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the child must still run when it is killed"
        );
        child.kill().expect("SIGKILL the child"); // std sends SIGKILL on Unix
        assert!(
            !child.wait().unwrap().success(),
            "round {round}: the child was killed, not finished"
        );
        reader.join().unwrap();

        let lines = std::mem::take(&mut *lines.lock().unwrap());
        let (writes, acks) = model.learn(&lines);
        let violations = (self.check)(dir, model);
        eprintln!(
            "{} round {round} ({mode}, seed {seed}, kill after {delay:?} past {WARM_ACKS} acks): \
             {writes} writes, {acks} acks, {} violations",
            self.label,
            violations.len()
        );
        RoundReport {
            acks,
            writes,
            violations,
        }
    }

    /// Runs `rounds` rounds in a safe `mode` on one directory and asserts
    /// that each did real work and lost or damaged no acknowledged write.
    pub fn assert_survives(&self, test: &str, mode: &str, rounds: u64) {
        let dir = tempfile::tempdir().unwrap();
        let seed = seed_from_clock();
        eprintln!("{} {test} seed {seed}", self.label);
        let mut rng = Rng(seed);
        let mut model = Model::default();
        for round in 0..rounds {
            let r = self.run_round(dir.path(), mode, round, &mut rng, &mut model);
            assert!(
                r.acks >= 200 && r.writes >= r.acks,
                "round {round} did real work"
            );
            assert!(
                r.violations.is_empty(),
                "round {round}: acknowledged writes lost or damaged after SIGKILL ({mode}):\n{}",
                r.violations.join("\n")
            );
        }
    }

    /// The negative control: runs up to ten rounds in an unsafe `mode` and
    /// asserts that the checker finds a lost acknowledged write in one.
    pub fn assert_caught(&self, test: &str, mode: &str, expectation: &str) {
        let dir = tempfile::tempdir().unwrap();
        let seed = seed_from_clock();
        eprintln!("{} {test} seed {seed}", self.label);
        let mut rng = Rng(seed);
        let mut model = Model::default();
        let mut caught = None;
        for round in 0..10 {
            let r = self.run_round(dir.path(), mode, round, &mut rng, &mut model);
            if !r.violations.is_empty() {
                caught = Some((round, r.violations));
                break;
            }
        }
        let (round, violations) = caught.expect(expectation);
        eprintln!(
            "negative control caught in round {round}: {} violations, e.g. {}",
            violations.len(),
            violations[0]
        );
        assert!(
            violations.iter().any(|v| v.contains("acked")),
            "the catch is a lost ack"
        );
    }
}

fn seed_from_clock() -> u64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64)
        | 1
}
