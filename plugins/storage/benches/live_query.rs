//! Live-query fan-out cost: per-change processing latency of
//! `QueryRegistry::on_change` with 1,000 subscriptions on a 100k-record map.
//!
//! Subscriptions (all on map `items`):
//! - 300 equality queries `where {category: c}` (~100 matching rows each);
//! - 100 equality queries `where {hot: true}` (the same 100 "hot" rows: a
//!   dashboard many clients watch);
//! - 300 range queries `and(gte score a, lt score a+200)` (~200 rows each);
//! - 300 sorted top-10 queries `where {region: r}, sort score desc, limit 10`
//!   (2,000 matching rows each, kept in the sliding-window set).
//!
//! Change scenarios, each toggling a record between two precomputed values:
//! - `few`: a field no query references (`note`) changes on a random
//!   record: only the subscriptions whose matching set holds the key are
//!   touched (~8: its category, its score range, its region's six top-10s);
//! - `score`: `score` changes on a random record: 300 range queries read it
//!   (the range index narrows them to those whose span holds the new score)
//!   and the record moves inside its region's six top-10 sets;
//! - `many`: `note` changes on a hot record: 100+ subscriptions hold it and
//!   each gets an UPDATE;
//! - `other_map`: a write to a map nobody subscribes to.
//!
//! First prints p50 / p99 / max from 20,000 timed changes per scenario, with
//! the machine's conditions, then runs the criterion benchmarks.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hangar_storage::query::{LiveUpdate, Projection, Query, QueryRegistry, Row};
use rmpv::Value;

const RECORDS: usize = 100_000;
const MAP: &str = "items";
const HOT: usize = 100;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn record(i: usize, score: u64, note: u64) -> Value {
    Value::Map(vec![
        ("category".into(), Value::from(i % 1000)),
        ("hot".into(), Value::from(i < HOT)),
        ("region".into(), Value::from(i % 50)),
        ("score".into(), Value::from(score)),
        ("name".into(), Value::from(format!("item-{i}"))),
        ("note".into(), Value::from(note)),
    ])
}

fn parse(j: &str) -> Query {
    let v: serde_json::Value = serde_json::from_str(j).unwrap();
    let bytes = rmp_serde::to_vec_named(&v).unwrap();
    Query::parse(&rmpv::decode::read_value(&mut bytes.as_slice()).unwrap()).unwrap()
}

struct Fixture {
    reg: QueryRegistry,
    keys: Vec<String>,
    /// Per record: base value, `note` changed, `score` changed.
    base: Vec<Value>,
    note: Vec<Value>,
    score: Vec<Value>,
    events: Arc<AtomicU64>,
}

fn build() -> Fixture {
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("r{i:06}")).collect();
    let scores: Vec<u64> = (0..RECORDS).map(|i| mix(i as u64) % 100_000).collect();
    let base: Vec<Value> = (0..RECORDS).map(|i| record(i, scores[i], 0)).collect();
    let note: Vec<Value> = (0..RECORDS).map(|i| record(i, scores[i], 1)).collect();
    let score: Vec<Value> = (0..RECORDS)
        .map(|i| record(i, mix(i as u64 + 7_777_777) % 100_000, 0))
        .collect();

    let reg = QueryRegistry::default();
    let events = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let subscribe = |q: Query| {
        let events = events.clone();
        let sink = Arc::new(move |_u: LiveUpdate| {
            events.fetch_add(1, Ordering::Relaxed);
        });
        let rows = keys.iter().zip(&base).map(|(k, v)| Row::live(k, v));
        reg.subscribe(MAP, q, Projection::all(), sink, rows, 0);
    };
    for c in 0..300 {
        subscribe(parse(&format!(r#"{{"where": {{"category": {c}}}}}"#)));
    }
    for _ in 0..100 {
        subscribe(parse(r#"{"where": {"hot": true}}"#));
    }
    for i in 0..300 {
        let a = i * 333;
        subscribe(parse(&format!(
            r#"{{"predicate": {{"op": "and", "children": [
                {{"op": "gte", "attribute": "score", "value": {a}}},
                {{"op": "lt", "attribute": "score", "value": {}}}]}}}}"#,
            a + 200
        )));
    }
    for i in 0..300 {
        subscribe(parse(&format!(
            r#"{{"where": {{"region": {}}}, "sort": [{{"field": "score", "direction": "desc"}}], "limit": 10}}"#,
            i % 50
        )));
    }
    eprintln!(
        "setup: {} records, {} subscriptions in {:.1?}",
        RECORDS,
        reg.subscription_count(),
        started.elapsed()
    );
    Fixture {
        reg,
        keys,
        base,
        note,
        score,
        events,
    }
}

/// Toggles records (among the first `pool`) between base value and `alt`.
struct Toggler {
    flipped: Vec<bool>,
    next: usize,
    pool: usize,
}

impl Toggler {
    fn new(pool: usize) -> Self {
        Self {
            flipped: vec![false; RECORDS],
            next: 0,
            pool,
        }
    }

    fn step(&mut self, f: &Fixture, alt: &[Value], map: &str) {
        let i = (mix(self.next as u64) % self.pool as u64) as usize;
        self.next += 1;
        let (old, new) = if self.flipped[i] {
            (&alt[i], &f.base[i])
        } else {
            (&f.base[i], &alt[i])
        };
        self.flipped[i] = !self.flipped[i];
        f.reg.on_change(map, &f.keys[i], Some(old), Some(new));
    }
}

fn conditions() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "conditions: cpu {cpu}, {cores} cores (shared), profile {}, single thread, in-memory \
         registry, counting sink (no I/O), 1000 subscriptions (300 eq category / 100 eq hot / \
         300 range / 300 top-10 sorted) on a {RECORDS}-record map",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}

fn scenarios(f: &Fixture) -> [(&'static str, &[Value], &'static str); 4] {
    [
        ("few", &f.note, MAP),
        ("score", &f.score, MAP),
        ("many", &f.note, MAP),
        ("other_map", &f.note, "elsewhere"),
    ]
}

fn togglers() -> [Toggler; 4] {
    [
        Toggler::new(RECORDS),
        Toggler::new(RECORDS),
        Toggler::new(HOT),
        Toggler::new(RECORDS),
    ]
}

fn percentiles(f: &Fixture, togglers: &mut [Toggler; 4]) {
    conditions();
    for ((name, alt, map), t) in scenarios(f).into_iter().zip(togglers.iter_mut()) {
        for _ in 0..2_000 {
            t.step(f, alt, map);
        }
        let before = f.events.load(Ordering::Relaxed);
        let n = 20_000;
        let mut samples: Vec<Duration> = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Instant::now();
            t.step(f, alt, map);
            samples.push(s.elapsed());
        }
        let events = f.events.load(Ordering::Relaxed) - before;
        samples.sort_unstable();
        let pick = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
        let mean = samples.iter().sum::<Duration>() / n as u32;
        println!(
            "{name:10} p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}  mean {:>9.2?}  events/change {:.2}",
            pick(0.50),
            pick(0.99),
            samples[n - 1],
            mean,
            events as f64 / n as f64
        );
    }
}

fn main() {
    let f = build();
    // LIVE_QUERY_REPEAT=n repeats the timed phase (for profiling it).
    let repeat: usize = std::env::var("LIVE_QUERY_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut togglers = togglers();
    for _ in 0..repeat {
        percentiles(&f, &mut togglers);
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(50)
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("on_change");
    for ((name, alt, map), t) in scenarios(&f).into_iter().zip(togglers.iter_mut()) {
        g.bench_function(name, |b| b.iter(|| t.step(black_box(&f), alt, map)));
    }
    g.finish();
    c.final_summary();
}
