//! Crash test: acknowledged writes survive SIGKILL (`INVARIANTS.md` I4), and the
//! checker catches a committer that acknowledges before committing
//! (the negative control).
//!
//! The test binary re-executes itself as a child process (the ignored test
//! `child_process_writer`, selected by `--exact`). The child opens a
//! [`RedbBackend`] in the given directory and runs many concurrent writers
//! through a [`GroupCommitter`]: each writer takes a key's lock, takes the
//! next timestamp, prints `@crash@ W map key ts`, enqueues the record, releases the
//! lock, awaits the durability future and prints `@crash@ A map key ts`. Taking the
//! timestamp and enqueueing under the key's lock is what the storage manager
//! does too, so a key's states are enqueued in timestamp order.
//!
//! The parent reads the lines, kills the child with SIGKILL after a random
//! delay, opens the database again and checks, for every key:
//! - an acknowledged key is present, with a timestamp >= the greatest
//!   acknowledged one, and equal unless a later write was issued (a write
//!   may be durable without its ack having been printed);
//! - every stored record was issued, and its value is the one written with
//!   its timestamp (nothing is invented or mixed up).
//!
//! Several rounds run against the same directory, so the database is also
//! recovered after a crash repeatedly. The kill does not model a power loss:
//! the OS page cache survives it (as TopGun's harness also notes). The
//! protocol itself is shared with `t31_crash_module_kill9.rs`: `crash_harness`.

mod crash_harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, RawValue, Timestamp};
use hangar_storage::persistence::{
    AckMode, GroupCommitConfig, GroupCommitter, PersistenceBackend, RedbBackend, StoredEntry,
    WriteBatch,
};

use crash_harness::{map_name, ChildArgs, Model, Protocol, Rng, CHILD_MAX_RUN};

const MAPS: u64 = 4;
const KEYS_PER_MAP: u64 = 300;
const WRITERS: usize = 64;

const PROTOCOL: Protocol = Protocol {
    child: "child_process_writer",
    label: "crash",
    warm_up: Duration::from_secs(30),
    check,
};

fn value_for(map: &str, key: &str, ts: u64) -> RawValue {
    // ~100 bytes of msgpack, derived from the write so the checker can verify it
    let s = format!("{map}/{key}@{ts}:");
    RawValue::encode(&format!(
        "{s}{}",
        "v".repeat(100usize.saturating_sub(s.len()))
    ))
    .expect("a string encodes")
}

// ---------------------------------------------------------------- child side

#[test]
#[ignore = "child process of the crash tests; they start it with --ignored --exact"]
fn child_process_writer() {
    let args = ChildArgs::from_env();
    let mode = match args.mode.as_str() {
        "ack-before-commit" => AckMode::UnsafeBeforeCommit,
        _ => AckMode::AfterCommit,
    };
    crash_harness::run_child(async move {
        let backend: Arc<dyn PersistenceBackend> = Arc::new(RedbBackend::open(&args.dir).unwrap());
        let gc = GroupCommitter::start(
            backend,
            GroupCommitConfig {
                ack_mode: mode,
                ..GroupCommitConfig::default()
            },
        )
        .await
        .unwrap();
        let seed = args.seed;
        let clock = Arc::new(AtomicU64::new(args.ts_base));
        let locks: Arc<Vec<Mutex<()>>> =
            Arc::new((0..MAPS * KEYS_PER_MAP).map(|_| Mutex::new(())).collect());
        let started = Instant::now();
        crash_harness::spawn_writers(WRITERS as u64, |w| {
            let (gc, clock, locks) = (gc.clone(), clock.clone(), locks.clone());
            async move {
                let mut rng = Rng::for_writer(seed, w);
                while started.elapsed() < CHILD_MAX_RUN {
                    let m = rng.below(MAPS);
                    let k = rng.below(KEYS_PER_MAP);
                    let (map, key) = (map_name(m), format!("k{k:04}"));
                    let (ts, durable) = {
                        let _key_lock = locks[(m * KEYS_PER_MAP + k) as usize].lock().unwrap();
                        let ts = clock.fetch_add(1, Ordering::SeqCst);
                        crash_harness::issued(&map, &key, ts);
                        let record = LwwRecord {
                            value: ROption::RSome(value_for(&map, &key, ts)),
                            timestamp: Timestamp::new(ts, 0, "crash"),
                            ttl_ms: ROption::RNone,
                        };
                        let batch = WriteBatch::new().put(&map, &key, StoredEntry::Lww(record));
                        (ts, gc.enqueue(batch).unwrap())
                    };
                    durable.await.unwrap();
                    crash_harness::acked(&map, &key, ts);
                }
            }
        })
        .await;
    });
}

// --------------------------------------------------------------- parent side

/// Opens the database as a restarted node would and compares it with the model.
fn check(dir: &Path, model: &Model) -> Vec<String> {
    crash_harness::block_on(1, async {
        let b = RedbBackend::open(dir).expect("the database opens after a crash");
        let mut stored: BTreeMap<(String, String), LwwRecord> = BTreeMap::new();
        for m in 0..MAPS {
            let map = map_name(m);
            for (key, entry) in b.load_map(&map).await.unwrap().entries {
                let StoredEntry::Lww(r) = entry else {
                    panic!("{map}/{key}: an OR row in an LWW-only test");
                };
                stored.insert((map.clone(), key), r);
            }
        }
        b.close().await.unwrap();
        // Every acknowledged key, and every stored one.
        let mut violations = Vec::new();
        for slot in model.acked.keys().filter(|s| !stored.contains_key(*s)) {
            violations.extend(model.judge(slot, None, value_for));
        }
        for (slot, r) in &stored {
            violations.extend(model.judge(slot, Some(r), value_for));
        }
        violations
    })
}

#[test]
fn t10_acked_writes_survive_sigkill() {
    PROTOCOL.assert_survives("t10", "durable", 5);
}

#[test]
fn t11_negative_control_ack_before_commit_is_caught() {
    PROTOCOL.assert_caught(
        "t11",
        "ack-before-commit",
        "the checker must catch a committer that acks before committing",
    );
}
