//! Cost of a map's Merkle node restricted to a partition set (the share a
//! node gives the cluster for client Merkle sync, `merkle_node_in`)
//! against the unrestricted node, which reads the trie's sums.
//!
//! A restricted inner node visits every key under its path and hashes it
//! (LWW: the item hash of `key:millis:counter:node`; OR: the stored entry
//! hash), so it is O(keys under the path): the root visits the whole map,
//! a depth-1 node 1/16 of it, a depth-2 node 1/256. This bench builds an
//! LWW map and an OR map of `KEYS` keys and times, per path depth, the
//! restricted buckets for a third of the partitions (what one owner of
//! three answers) and the unrestricted buckets. It prints the conditions
//! and p50 / p99 per call over `REPS` calls.
//!
//! Run: `cargo bench -p hangar-storage --bench merkle_share`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use hangar_core::merkle::{buckets_of_items, TriePath};
use hangar_core::{partition_of, LwwRecord, OrRecord, RawValue, Timestamp};
use hangar_storage::crdt::lww_map::LwwMap;
use hangar_storage::crdt::or_map::OrMap;

const KEYS: usize = 100_000;
const REPS: usize = 30;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    (pct(samples.clone(), 0.5), pct(samples, 0.99))
}

fn main() {
    let value = RawValue::encode(&"value-of-some-length").expect("encodes");
    let mut lww = LwwMap::new();
    let mut or = OrMap::new();
    for i in 0..KEYS {
        let key = format!("key-{i}");
        let ts = Timestamp::new(1_000 + i as u64, 0, "node-a");
        lww.merge(
            &key,
            &LwwRecord {
                value: ROption::RSome(value.clone()),
                timestamp: ts.clone(),
                ttl_ms: ROption::RNone,
            },
        );
        or.apply(
            &key,
            &OrRecord {
                value: value.clone(),
                tag: ts.to_string().into(),
                timestamp: ts,
                ttl_ms: ROption::RNone,
            },
        );
    }
    let pick = |k: &str| partition_of(k) % 3 == 0;
    println!(
        "merkle_share: {KEYS} keys per map, a third of the partitions asked, {REPS} calls per cell, \
         {} threads available, profile bench",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("| map | path | restricted p50 | restricted p99 | whole (trie) p50 |");
    println!("|---|---|---|---|---|");
    for path in ["", "4", "4f"] {
        let p = TriePath::parse(path).expect("path");
        let (r50, r99) = time(|| {
            black_box(buckets_of_items(p, lww.item_hashes_under(p, pick)));
        });
        let (w50, _) = time(|| {
            black_box(lww.merkle_buckets(path));
        });
        println!("| LWW | {path:?} | {r50:?} | {r99:?} | {w50:?} |");
        let (r50, r99) = time(|| {
            black_box(buckets_of_items(p, or.entry_hashes_under(p, pick)));
        });
        let (w50, _) = time(|| {
            black_box(or.merkle_buckets(path));
        });
        println!("| OR | {path:?} | {r50:?} | {r99:?} | {w50:?} |");
    }
}
