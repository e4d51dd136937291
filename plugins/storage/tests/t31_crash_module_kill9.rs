//! Crash test of the whole storage module: every write acknowledged as
//! PERSISTED survives SIGKILL, with its timestamp (`INVARIANTS.md` I4), and the
//! checker catches a writer that reports APPLIED acks as persisted
//! (the negative control).
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
//! they were PERSISTED: the checker must find lost acknowledged writes. The
//! protocol itself is shared with `t30_crash_kill9.rs`: `crash_harness`.

mod crash_harness;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString};
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::services::NoMetrics;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{Origin, RecordState};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_testkit::storage::helpers::batch_from;
use hangar_testkit::support::storage_deps_with;

use crash_harness::{map_name, ChildArgs, Model, Protocol, Rng, CHILD_MAX_RUN};

const MAPS: u64 = 3;
const KEYS_PER_MAP: u64 = 200;
const WRITERS: u64 = 48;
const NODE: &str = "crash-node";

const PROTOCOL: Protocol = Protocol {
    child: "child_module_writer",
    label: "module crash",
    warm_up: Duration::from_secs(40),
    check,
};

fn module(dir: &Path) -> Arc<dyn StorageModule> {
    let config = StorageModuleConfig {
        write_ack_timeout_ms: 30_000,
        ..StorageModuleConfig::new(
            NODE,
            dir,
            PluginSettings::default().with("backend", "embedded"),
        )
    };
    hangar_storage::create(config, storage_deps_with(NODE, Arc::new(NoMetrics)))
        .expect("the module builds")
}

fn value_for(map: &str, key: &str, ts: u64) -> RawValue {
    RawValue::encode(&format!("{map}/{key}@{ts}:{}", "v".repeat(64))).expect("encodes")
}

// ---------------------------------------------------------------- child side

#[test]
#[ignore = "child process of the module crash tests; they start it with --ignored --exact"]
fn child_module_writer() {
    let args = ChildArgs::from_env();
    let lie = args.mode == "applied-reported-as-persisted";
    crash_harness::run_child(async move {
        let m = module(&args.dir);
        m.start()
            .await
            .expect("the module starts on the crashed directory");
        let seed = args.seed;
        let clock = Arc::new(AtomicU64::new(args.ts_base));
        let started = Instant::now();
        let concern = if lie {
            WriteConcern::Applied
        } else {
            WriteConcern::Persisted
        };
        crash_harness::spawn_writers(WRITERS, |w| {
            let (m, clock) = (m.clone(), clock.clone());
            async move {
                let mut rng = Rng::for_writer(seed, w);
                while started.elapsed() < CHILD_MAX_RUN {
                    let map = map_name(rng.below(MAPS));
                    let key = format!("k{:04}", rng.below(KEYS_PER_MAP));
                    let ts = clock.fetch_add(1, Ordering::SeqCst);
                    crash_harness::issued(&map, &key, ts);
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
                        .apply(batch_from(vec![op], concern, Origin::client(w, NODE), None))
                        .await
                        .expect("apply");
                    let ack = out[0].ack;
                    m.notify_acks(vec![ack].into(), WriteConcern::Replicated);
                    let r = m.await_acks(vec![ack].into()).await.expect("await_acks");
                    if r[0].success {
                        crash_harness::acked(&map, &key, ts);
                    }
                }
            }
        })
        .await;
    });
}

// --------------------------------------------------------------- parent side

/// Restarts a module on the directory and compares its maps with the model.
fn check(dir: &Path, model: &Model) -> Vec<String> {
    crash_harness::block_on(2, async {
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
                let stored = match &rec.state {
                    RecordState::Missing => None,
                    RecordState::Lww(r) => Some(r),
                    RecordState::Or(_) => panic!("{map}/{}: OR records in an LWW map", rec.key),
                };
                violations.extend(model.judge(&slot, stored, value_for));
            }
        }
        m.shutdown().await.expect("clean shutdown");
        violations
    })
}

#[test]
fn t10_persisted_acks_of_the_module_survive_sigkill() {
    PROTOCOL.assert_survives("t10", "persisted", 4);
}

#[test]
fn t11_negative_control_applied_acks_reported_as_persisted_are_caught() {
    PROTOCOL.assert_caught(
        "t11",
        "applied-reported-as-persisted",
        "the checker must catch APPLIED acks passed off as PERSISTED",
    );
}
