//! What the plugin boundary costs on the hot path: the same calls made on
//! the in-process module and on the module loaded from its shared library.
//!
//! Run: `cargo build --release --workspace && cargo bench -p hangar-tests --bench boundary`
//!
//! Prints per-call p50 / p99 for each path and the loaded/in-process ratio,
//! with the machine's conditions. Sync calls are timed in blocks of 64 calls
//! (a clock read costs more than the call); async calls one by one.

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::cluster::ClusterModule;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{ApplyBatch, Origin, WriteOp};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_tests::support::{
    cluster_config, cluster_deps, loaded_cluster, loaded_storage, storage_config, storage_deps,
};

const BLOCK: usize = 64;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Stats {
    p50: f64,
    p99: f64,
}

fn stats(mut ns: Vec<f64>) -> Stats {
    ns.sort_by(f64::total_cmp);
    Stats {
        p50: percentile(&ns, 0.50),
        p99: percentile(&ns, 0.99),
    }
}

fn sync_calls(c: &Arc<dyn ClusterModule>, rounds: usize) -> Stats {
    let view = c.partition_view();
    let mut out = Vec::with_capacity(rounds);
    let mut sink = 0u32;
    for r in 0..rounds {
        let t = Instant::now();
        for i in 0..BLOCK {
            sink += u32::from(view.is_related(((r + i) % 271) as u32));
        }
        out.push(t.elapsed().as_nanos() as f64 / BLOCK as f64);
    }
    std::hint::black_box(sink);
    stats(out)
}

fn put(i: u64) -> ApplyBatch {
    ApplyBatch {
        ops: RVec::from(vec![WriteOp {
            op: KeyedOp {
                map: "bench".into(),
                key: format!("k{}", i % 1000).into(),
                op: MapOp::Lww(LwwRecord {
                    value: ROption::RSome(RawValue::from_msgpack(vec![
                        0xa4, b'v', b'a', b'l', b'u',
                    ])),
                    timestamp: Timestamp::new(1_000_000 + i, 0, "bench"),
                    ttl_ms: ROption::RNone,
                }),
            },
            concern: WriteConcern::Memory,
            timeout_ms: ROption::RNone,
        }]),
        origin: Origin::client(1, "bench"),
        consistency: abi_stable::std_types::ROption::RNone,
    }
}

async fn apply_calls(s: &Arc<dyn StorageModule>, rounds: usize) -> Stats {
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds as u64 {
        let t = Instant::now();
        let r = s.apply(put(i)).await.expect("apply");
        std::hint::black_box(&r);
        out.push(t.elapsed().as_nanos() as f64);
    }
    stats(out)
}

async fn read_calls(s: &Arc<dyn StorageModule>, rounds: usize) -> Stats {
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let keys = RVec::from(vec![RString::from(format!("k{}", i % 1000))]);
        let t = Instant::now();
        let r = s.read("bench".into(), keys).await.expect("read");
        std::hint::black_box(&r);
        out.push(t.elapsed().as_nanos() as f64);
    }
    stats(out)
}

fn conditions() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpu}, {} cores, load average {}, profile {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

fn row(name: &str, native: &Stats, loaded: &Stats) {
    println!(
        "{name:<28} in-process p50 {:>8.0} ns  p99 {:>8.0} ns | loaded p50 {:>8.0} ns  p99 {:>8.0} ns | ratio p50 {:.2}x  p99 {:.2}x",
        native.p50,
        native.p99,
        loaded.p50,
        loaded.p99,
        loaded.p50 / native.p50,
        loaded.p99 / native.p99
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    println!("plugin boundary cost — {}", conditions());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let native_c = hangar_cluster::create(cluster_config("n1"), cluster_deps("n1")).unwrap();
        let loaded_c = loaded_cluster("hangar_cluster", "n1");
        let native_s = hangar_storage::create(storage_config("n1"), storage_deps("n1")).unwrap();
        let loaded_s = loaded_storage("hangar_storage", "n1");
        native_s.start().await.unwrap();
        loaded_s.start().await.unwrap();
        // warm up
        sync_calls(&native_c, 10_000);
        sync_calls(&loaded_c, 10_000);
        apply_calls(&native_s, 5_000).await;
        apply_calls(&loaded_s, 5_000).await;
        let (a, b) = (
            sync_calls(&native_c, 200_000),
            sync_calls(&loaded_c, 200_000),
        );
        row("partition_view.is_related", &a, &b);
        let (a, b) = (
            apply_calls(&native_s, 50_000).await,
            apply_calls(&loaded_s, 50_000).await,
        );
        row("storage.apply (1 LWW put)", &a, &b);
        let (a, b) = (
            read_calls(&native_s, 50_000).await,
            read_calls(&loaded_s, 50_000).await,
        );
        row("storage.read (1 key)", &a, &b);
    });
}
