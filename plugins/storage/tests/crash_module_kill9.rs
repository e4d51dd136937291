//! Crash test of the whole storage module: every write acknowledged as
//! PERSISTED survives SIGKILL, with its timestamp (HG-PER-010), and the
//! checker catches a writer that reports APPLIED acks as persisted
//! (HG-PER-011, the negative control).
//!
//! The test binary re-executes itself as a child (the ignored test
//! `child_module_writer`). The child builds the default module in-process
//! (`hangar_storage::create`, embedded redb backend in the given directory),
//! starts it, and runs many concurrent writer tasks. Each picks a key,
//! takes the next timestamp, prints `@crash@ W map key ts`, applies the
//! write with PERSISTED concern, reports REPLICATED (as the host does on a
//! lone node), awaits the ack and, when it succeeded, prints
//! `@crash@ A map key ts`.
//!
//! The parent kills the child with SIGKILL at a random moment, starts a
//! module on the same directory as a restarted node would, reads every key
//! it saw written, and checks:
//! - an acknowledged key is present with a timestamp >= the greatest
//!   acknowledged one (greater only if a later write was issued);
//! - every stored record was issued and carries the value written with its
//!   timestamp.
//!
//! Several rounds run on the same directory. In the negative-control mode
//! the child writes with APPLIED concern and prints its APPLIED acks as if
//! they were PERSISTED: the checker must find lost acknowledged writes.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::{StorageBackendKind, StorageModuleConfig};
use hangar_core::hlc::Hlc;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::NoMetrics;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{ApplyBatch, Origin, RecordState, WriteOp};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};

const ENV_DIR: &str = "HANGAR_MODULE_CRASH_DIR";
const ENV_MODE: &str = "HANGAR_MODULE_CRASH_MODE";
const ENV_SEED: &str = "HANGAR_MODULE_CRASH_SEED";
const ENV_TS_BASE: &str = "HANGAR_MODULE_CRASH_TS_BASE";
const TAG: &str = "@crash@ ";
const MAPS: u64 = 3;
const KEYS_PER_MAP: u64 = 200;
const WRITERS: u64 = 48;
const CHILD_MAX_RUN: Duration = Duration::from_secs(60);
const NODE: &str = "crash-node";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct AllLocal;

impl PartitionView for AllLocal {
    fn local_node(&self) -> RString {
        NODE.into()
    }
    fn version(&self) -> u64 {
        1
    }
    fn owner(&self, _p: u32) -> ROption<RString> {
        ROption::RSome(NODE.into())
    }
    fn backups(&self, _p: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, _p: u32) -> bool {
        true
    }
    fn is_related(&self, _p: u32) -> bool {
        true
    }
}

fn module(dir: &Path) -> Arc<dyn StorageModule> {
    let config = StorageModuleConfig {
        node_id: NODE.into(),
        backend: StorageBackendKind::Embedded,
        data_dir: dir.to_path_buf(),
        write_ack_timeout_ms: 30_000,
        ..StorageModuleConfig::default()
    };
    let deps = StorageDeps {
        clock: Arc::new(Hlc::new(NODE).unwrap()),
        metrics: Arc::new(NoMetrics),
        partitions: Arc::new(AllLocal),
    };
    hangar_storage::create(config, deps).expect("the module builds")
}

fn value_for(map: &str, key: &str, ts: u64) -> RawValue {
    RawValue::encode(&format!("{map}/{key}@{ts}:{}", "v".repeat(64))).expect("encodes")
}

fn map_name(m: u64) -> String {
    format!("crash-{m}")
}

// ---------------------------------------------------------------- child side

#[test]
#[ignore = "child process of the module crash tests; they start it with --ignored --exact"]
fn child_module_writer() {
    let dir = std::env::var(ENV_DIR).expect("started by the crash tests with a directory");
    let lie = std::env::var(ENV_MODE).as_deref() == Ok("applied-reported-as-persisted");
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let ts_base: u64 = std::env::var(ENV_TS_BASE).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let m = module(Path::new(&dir));
        m.start()
            .await
            .expect("the module starts on the crashed directory");
        let clock = Arc::new(AtomicU64::new(ts_base));
        let started = Instant::now();
        let concern = if lie {
            WriteConcern::Applied
        } else {
            WriteConcern::Persisted
        };
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (m, clock) = (m.clone(), clock.clone());
                tokio::spawn(async move {
                    let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                    while started.elapsed() < CHILD_MAX_RUN {
                        let map = map_name(rng.below(MAPS));
                        let key = format!("k{:04}", rng.below(KEYS_PER_MAP));
                        let ts = clock.fetch_add(1, Ordering::SeqCst);
                        println!("{TAG}W {map} {key} {ts}");
                        let op = KeyedOp {
                            map: map.as_str().into(),
                            key: key.as_str().into(),
                            op: MapOp::Lww(LwwRecord {
                                value: ROption::RSome(value_for(&map, &key, ts)),
                                timestamp: Timestamp::new(ts, 0, "writer"),
                                ttl_ms: ROption::RNone,
                            }),
                        };
                        let out = m
                            .apply(ApplyBatch {
                                ops: vec![WriteOp {
                                    op,
                                    concern,
                                    timeout_ms: ROption::RNone,
                                }]
                                .into(),
                                origin: Origin::client(w, NODE),
                            })
                            .await
                            .expect("apply");
                        let ack = out[0].ack;
                        m.notify_acks(vec![ack].into(), WriteConcern::Replicated);
                        let r = m.await_acks(vec![ack].into()).await.expect("await_acks");
                        if r[0].success {
                            println!("{TAG}A {map} {key} {ts}");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    std::io::stdout().flush().unwrap();
}

// --------------------------------------------------------------- parent side

#[derive(Default)]
struct Model {
    issued: HashMap<(String, String), BTreeSet<u64>>,
    acked: HashMap<(String, String), u64>,
}

struct Round {
    acks: usize,
    writes: usize,
    violations: Vec<String>,
}

fn run_round(dir: &Path, mode: &str, round: u64, rng: &mut Rng, model: &mut Model) -> Round {
    let seed = rng.next() | 1;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_module_writer",
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
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("@crash@ A ") {
                    acks_seen.fetch_add(1, Ordering::Relaxed);
                }
                lines.lock().unwrap().push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while acks_seen.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "round {round}: no 200 acks in 40 s"
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
        "round {round}: still running at the kill"
    );
    child.kill().expect("SIGKILL the child");
    assert!(
        !child.wait().unwrap().success(),
        "round {round}: killed, not finished"
    );
    reader.join().unwrap();

    let (mut acks, mut writes) = (0, 0);
    for line in std::mem::take(&mut *lines.lock().unwrap()) {
        let Some(at) = line.find(TAG) else { continue };
        let parts: Vec<&str> = line[at + TAG.len()..].split(' ').collect();
        let [kind @ ("W" | "A"), map, key, ts] = parts[..] else {
            continue;
        };
        let Ok(ts) = ts.parse::<u64>() else { continue };
        let slot = (map.to_string(), key.to_string());
        if kind == "W" {
            writes += 1;
            model.issued.entry(slot).or_default().insert(ts);
        } else {
            acks += 1;
            let e = model.acked.entry(slot).or_insert(0);
            *e = (*e).max(ts);
        }
    }
    let violations = check(dir, model);
    eprintln!(
        "module crash round {round} ({mode}, seed {seed}, kill {delay:?} after 200 acks): \
         {writes} writes, {acks} acks, {} violations",
        violations.len()
    );
    Round {
        acks,
        writes,
        violations,
    }
}

/// Restarts a module on the directory and compares its maps with the model.
fn check(dir: &Path, model: &Model) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = module(dir);
        m.start().await.expect("the module starts after a crash");
        let mut violations = Vec::new();
        for mi in 0..MAPS {
            let map = map_name(mi);
            let keys: Vec<String> = model
                .issued
                .keys()
                .filter(|(mp, _)| *mp == map)
                .map(|(_, k)| k.clone())
                .collect();
            let records = m
                .read(
                    map.as_str().into(),
                    keys.iter().map(|k| RString::from(k.as_str())).collect(),
                )
                .await
                .expect("read after restart");
            for rec in records.iter() {
                let slot = (map.clone(), rec.key.to_string());
                let acked = model.acked.get(&slot).copied();
                let stored = match &rec.state {
                    RecordState::Missing => None,
                    RecordState::Lww(r) => Some(r),
                    RecordState::Or(_) => panic!("{map}/{}: OR records in an LWW map", rec.key),
                };
                match (acked, stored) {
                    (Some(a), None) => {
                        violations.push(format!(
                            "{map}/{}: acked ts {a} but the key is missing",
                            rec.key
                        ));
                    }
                    (Some(a), Some(r)) if r.timestamp.millis < a => violations.push(format!(
                        "{map}/{}: acked ts {a} but stored ts {} is older",
                        rec.key, r.timestamp.millis
                    )),
                    _ => {}
                }
                if let Some(r) = stored {
                    let ts = r.timestamp.millis;
                    let issued = model.issued.get(&slot).is_some_and(|s| s.contains(&ts));
                    if !issued {
                        violations.push(format!(
                            "{map}/{}: stored ts {ts} was never issued",
                            rec.key
                        ));
                    } else if r.value != ROption::RSome(value_for(&map, &rec.key, ts)) {
                        violations.push(format!(
                            "{map}/{}: the value does not match ts {ts}",
                            rec.key
                        ));
                    }
                    if let Some(a) = acked {
                        let later = model
                            .issued
                            .get(&slot)
                            .is_some_and(|s| s.range(a + 1..).next().is_some());
                        if ts > a && !later {
                            violations.push(format!(
                                "{map}/{}: stored ts {ts} > acked {a} with no later write issued",
                                rec.key
                            ));
                        }
                    }
                }
            }
        }
        m.shutdown().await.expect("clean shutdown");
        violations
    })
}

fn seed_from_clock() -> u64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64)
        | 1
}

#[test]
fn t10_persisted_acks_of_the_module_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_from_clock();
    eprintln!("module crash t10 seed {seed}");
    let mut rng = Rng(seed);
    let mut model = Model::default();
    for round in 0..4 {
        let r = run_round(dir.path(), "persisted", round, &mut rng, &mut model);
        assert!(
            r.acks >= 200 && r.writes >= r.acks,
            "round {round} did real work"
        );
        assert!(
            r.violations.is_empty(),
            "round {round}: PERSISTED writes lost or damaged after SIGKILL:\n{}",
            r.violations.join("\n")
        );
    }
}

#[test]
fn t11_negative_control_applied_acks_reported_as_persisted_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_from_clock();
    eprintln!("module crash t11 seed {seed}");
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut caught = None;
    for round in 0..10 {
        let r = run_round(
            dir.path(),
            "applied-reported-as-persisted",
            round,
            &mut rng,
            &mut model,
        );
        if !r.violations.is_empty() {
            caught = Some((round, r.violations));
            break;
        }
    }
    let (round, violations) =
        caught.expect("the checker must catch APPLIED acks passed off as PERSISTED");
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
