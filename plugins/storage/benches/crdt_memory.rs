//! Memory and speed of the CRDT maps at scale: heap bytes per record for 1M
//! small LWW records (~20-byte keys, ~10-byte msgpack values), the same for
//! an OR map, and merge/get latency. The counting global allocator of
//! `hangar-testkit` measures heap bytes exactly as requested, plus an
//! estimate of what glibc malloc really hands out (8-byte header, 16-byte
//! granularity, 32-byte minimum).
//!
//! Run: `cargo bench -p hangar-storage --bench crdt_memory [-- N]`.

use std::time::Instant;

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, OrRecord, RawValue, Timestamp};
use hangar_storage::crdt::{LwwMap, OrMap};

#[path = "common/machine.rs"]
mod machine;

use machine::{cpu_model, load_average, rss_kb};

#[global_allocator]
static GLOBAL: hangar_testkit::alloc::Counting = hangar_testkit::alloc::Counting;

/// Heap bytes requested and held, and the same as glibc malloc chunks.
fn heap() -> (isize, isize) {
    let as_isize = |v: i64| isize::try_from(v).unwrap_or(isize::MAX);
    (
        as_isize(hangar_testkit::alloc::live_bytes()),
        as_isize(hangar_testkit::alloc::live_chunk_bytes()),
    )
}

fn key(i: usize) -> String {
    format!("user:{i:015}") // 20 bytes
}

fn value(i: usize) -> RawValue {
    RawValue::encode(&format!("v{:08}", i % 100_000_000)).unwrap() // 1 + 9 = 10 bytes
}

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const BASE_MS: u64 = 1_700_000_000_000;

/// p50 and p99 of per-op nanoseconds, measured over batches of `batch` ops.
fn percentiles(mut per_op_ns: Vec<f64>) -> (f64, f64) {
    per_op_ns.sort_by(f64::total_cmp);
    let at = |q: f64| per_op_ns[((per_op_ns.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch = 1000;
    println!("# crdt_memory");
    println!(
        "conditions: cpu={:?} cores={} loadavg=[{}] profile=bench(release) records={n} key=20B value=10B msgpack nodes={} os={}",
        cpu_model().unwrap_or_else(|| "unknown".into()),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        load_average(),
        NODES.len(),
        std::env::consts::OS,
    );

    // Inputs are built before measuring, so only the map is counted.
    let keys: Vec<String> = (0..n).map(key).collect();
    let records: Vec<LwwRecord> = (0..n)
        .map(|i| LwwRecord {
            value: ROption::RSome(value(i)),
            timestamp: Timestamp::new(BASE_MS + i as u64, 0, NODES[i % 3]),
            ttl_ms: ROption::RNone,
        })
        .collect();

    let (r0, c0) = heap();
    let rss0 = rss_kb();
    let mut map = LwwMap::new();
    let mut merge_ns = Vec::with_capacity(n / batch + 1);
    for (kc, rc) in keys.chunks(batch).zip(records.chunks(batch)) {
        let t = Instant::now();
        for (k, r) in kc.iter().zip(rc) {
            map.merge(k, r);
        }
        merge_ns.push(t.elapsed().as_nanos() as f64 / kc.len() as f64);
    }
    let (r1, c1) = heap();
    let rss1 = rss_kb();
    assert_eq!(map.len(), n);
    let per = |d: isize| d as f64 / n as f64;
    println!(
        "lww: heap requested {:.1} B/record, est. malloc chunks {:.1} B/record, RSS delta {} B/record",
        per(r1 - r0),
        per(c1 - c0),
        match (rss0, rss1) {
            (Some(a), Some(b)) => format!("{:.1}", (b.saturating_sub(a) * 1024) as f64 / n as f64),
            _ => "n/a".into(),
        }
    );
    let (p50, p99) = percentiles(merge_ns);
    println!(
        "lww merge (insert), per op over batches of {batch}: p50 {p50:.0} ns, p99 {p99:.0} ns"
    );

    let mut get_ns = Vec::new();
    let mut found = 0usize;
    for kc in keys.chunks(batch) {
        let t = Instant::now();
        for k in kc {
            found += usize::from(map.get(k, BASE_MS).is_some());
        }
        get_ns.push(t.elapsed().as_nanos() as f64 / kc.len() as f64);
    }
    assert_eq!(found, n);
    let (p50, p99) = percentiles(get_ns);
    println!("lww get, per op over batches of {batch}: p50 {p50:.0} ns, p99 {p99:.0} ns");

    let mut upd_ns = Vec::new();
    for (i, kc) in keys.chunks(batch).enumerate() {
        let t = Instant::now();
        for (j, k) in kc.iter().enumerate() {
            let r = LwwRecord {
                value: ROption::RSome(value(j)),
                timestamp: Timestamp::new(BASE_MS + n as u64 + (i * batch + j) as u64, 0, "node-1"),
                ttl_ms: ROption::RNone,
            };
            map.merge(k, &r);
        }
        upd_ns.push(t.elapsed().as_nanos() as f64 / kc.len() as f64);
    }
    let (p50, p99) = percentiles(upd_ns);
    println!("lww merge (overwrite, incl. building the record), per op: p50 {p50:.0} ns, p99 {p99:.0} ns");
    println!("lww merkle root {:#010x}", map.merkle_root());
    drop(map);
    drop(records);

    // OR map: one tagged record per key, tag = the timestamp string.
    let or_records: Vec<OrRecord> = (0..n)
        .map(|i| {
            let ts = Timestamp::new(BASE_MS + i as u64, 0, NODES[i % 3]);
            OrRecord {
                value: value(i),
                tag: ts.to_string().into(),
                timestamp: ts,
                ttl_ms: ROption::RNone,
            }
        })
        .collect();
    let (r0, c0) = heap();
    let mut or = OrMap::new();
    let t = Instant::now();
    for (k, r) in keys.iter().zip(&or_records) {
        or.apply(k, r);
    }
    let elapsed = t.elapsed();
    let (r1, c1) = heap();
    println!(
        "or: heap requested {:.1} B/record, est. malloc chunks {:.1} B/record, apply avg {:.0} ns",
        per(r1 - r0),
        per(c1 - c0),
        elapsed.as_nanos() as f64 / n as f64
    );
}
