//! Anti-entropy repair of diverged replicas: time and bytes moved against
//! the bytes of the records that diverged.
//!
//! Two default storage modules (memory backend, every partition held) play
//! a partition's owner and its backup. Both get the same `N` LWW records
//! (key `key-i`, a 100-byte value); then 1% of the keys diverge: half of
//! them are written again (newer) on the owner only, half on the backup
//! only, so repair has to move records both ways. One repair run (the
//! cluster module's `repair::Walk` over every partition, with the peer's
//! side answered by `repair::serve` through a direct call instead of a
//! socket: every request and answer body is still msgpack-encoded and
//! counted) then makes the replicas equal; the bench checks that their
//! per-partition digests agree afterwards.
//!
//! Printed: conditions (N, diverged records, profile, load), per run the
//! repair time, bytes moved (both ways, digests included), and the ratio
//! of bytes moved to the bytes of the diverged records (each record's
//! `KeyedOp` as msgpack: what shipping exactly the diverged records would
//! cost), then min / median over the runs.
//!
//! Run: `cargo bench -p hangar-tests --bench repair` (1,000,000 keys);
//! `REPAIR_KEYS=20000 cargo bench ...` or `cargo bench ... -- 20000` for
//! another N; `REPAIR_RUNS` (default 3) runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_cluster::repair::{LocalLink, Walk, WalkStats};
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::digest::{DigestLevel, DigestRequest};
use hangar_core::module::storage_types::{OpStatus, Origin, OriginKind};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, PARTITION_COUNT};
use hangar_tests::cluster_harness::loadavg;
use hangar_tests::support::{storage_config, storage_deps};

const MAP: &str = "bench";

fn op(key: &str, value: &RawValue, millis: u64, node: &str) -> KeyedOp {
    KeyedOp {
        map: MAP.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RSome(value.clone()),
            timestamp: Timestamp::new(millis, 0, node),
            ttl_ms: ROption::RNone,
        }),
    }
}

async fn apply(s: &Arc<dyn StorageAccessor>, ops: Vec<KeyedOp>) {
    let origin = Origin {
        kind: OriginKind::Replication,
        connection: 0,
        node: RString::from("loader"),
    };
    for chunk in ops.chunks(10_000) {
        let st = s
            .apply_replicated(RVec::from(chunk.to_vec()), origin.clone())
            .await
            .expect("apply");
        let applied = st.iter().filter(|x| **x == OpStatus::Applied).count();
        assert_eq!(
            applied,
            chunk.len(),
            "every op of the setup changes the map"
        );
    }
}

async fn roots(s: &Arc<dyn StorageAccessor>) -> Vec<(u32, u32, u32)> {
    let items = s
        .partition_digests(DigestRequest {
            level: DigestLevel::Partitions,
            map: RString::new(),
            partitions: (0..PARTITION_COUNT).collect::<Vec<_>>().into(),
            under: RVec::new(),
        })
        .await
        .expect("digests");
    items
        .iter()
        .map(|i| (i.partition, i.hash, i.count))
        .collect()
}

async fn node(name: &str) -> Arc<dyn StorageAccessor> {
    let m = hangar_storage::create(storage_config(name), storage_deps(name)).expect("storage");
    m.start().await.expect("start");
    m.accessor()
}

struct Run {
    took: Duration,
    stats: WalkStats,
    diverged_bytes: u64,
    diverged: usize,
}

async fn one_run(n: usize, run: usize) -> Run {
    let value = RawValue::encode(&"v".repeat(100)).expect("encodes");
    let owner = node(&format!("owner{run}")).await;
    let backup = node(&format!("backup{run}")).await;
    let base: Vec<KeyedOp> = (0..n)
        .map(|i| op(&format!("key-{i}"), &value, 1_000, "w"))
        .collect();
    apply(&owner, base.clone()).await;
    apply(&backup, base).await;
    // 1% diverged: every 100th key newer on one side, alternating sides.
    let mut on_owner = Vec::new();
    let mut on_backup = Vec::new();
    for (j, i) in (0..n).step_by(100).enumerate() {
        let o = op(&format!("key-{i}"), &value, 2_000, "w");
        if j % 2 == 0 {
            on_owner.push(o);
        } else {
            on_backup.push(o);
        }
    }
    let diverged = on_owner.len() + on_backup.len();
    let diverged_bytes: u64 = on_owner
        .iter()
        .chain(&on_backup)
        .map(|o| hangar_cluster::wire::encode(o).len() as u64)
        .sum();
    apply(&owner, on_owner).await;
    apply(&backup, on_backup).await;
    assert_ne!(
        roots(&owner).await,
        roots(&backup).await,
        "replicas diverged"
    );

    let link = LocalLink {
        peer: "backup".into(),
        from: "owner".into(),
        storage: backup.clone(),
    };
    let partitions: Vec<u32> = (0..PARTITION_COUNT).collect();
    let started = Instant::now();
    let mut walk = Walk {
        local: &owner,
        link: &link,
        chunk: 1_000,
        stats: WalkStats::default(),
    };
    for group in partitions.chunks(16) {
        walk.run(group).await.expect("repair");
    }
    let took = started.elapsed();
    // The digests agreeing is what repair aims at; the records of the
    // diverged keys agreeing is what it is for.
    let keys: RVec<RString> = (0..n)
        .step_by(100)
        .map(|i| RString::from(format!("key-{i}")))
        .collect();
    let a = owner.read(MAP.into(), keys.clone()).await.expect("read");
    let b = backup.read(MAP.into(), keys).await.expect("read");
    let apart = a.iter().zip(b.iter()).filter(|(x, y)| x != y).count();
    assert_eq!(apart, 0, "diverged keys still apart after repair");
    assert_eq!(
        roots(&owner).await,
        roots(&backup).await,
        "replicas agree after repair"
    );
    Run {
        took,
        stats: walk.stats,
        diverged_bytes,
        diverged,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("REPAIR_KEYS").ok())
        .map_or(1_000_000, |s| {
            s.parse()
                .unwrap_or_else(|_| panic!("N (keys) must be a positive integer, got {s:?}"))
        });
    let runs: usize = std::env::var("REPAIR_RUNS").ok().map_or(3, |s| {
        s.parse().expect("REPAIR_RUNS must be a positive integer")
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "repair: {n} LWW keys (100-byte values), 1% diverged (half newer on each side), \
         {runs} runs, profile {}, {} threads available, load {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
    );
    println!(
        "| run | diverged | compared | differing | pulled | pushed | time | bytes moved | diverged bytes | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut times = Vec::new();
    let mut ratios = Vec::new();
    for r in 0..runs.max(1) {
        let run = rt.block_on(one_run(n, r));
        #[allow(
            clippy::cast_precision_loss,
            reason = "a ratio for display; byte counts stay far below 2^52"
        )]
        let ratio = run.stats.bytes as f64 / run.diverged_bytes.max(1) as f64;
        println!(
            "| {r} | {} | {} | {} | {} | {} | {:?} | {} | {} | {ratio:.2} |",
            run.diverged,
            run.stats.partitions_compared,
            run.stats.partitions_differing,
            run.stats.records_pulled,
            run.stats.records_pushed,
            run.took,
            run.stats.bytes,
            run.diverged_bytes,
        );
        times.push(run.took);
        ratios.push(ratio);
    }
    times.sort();
    ratios.sort_by(f64::total_cmp);
    println!(
        "time min {:?} median {:?}; bytes moved / diverged bytes min {:.2} median {:.2}; load after {}",
        times[0],
        times[times.len() / 2],
        ratios[0],
        ratios[ratios.len() / 2],
        loadavg()
    );
}
