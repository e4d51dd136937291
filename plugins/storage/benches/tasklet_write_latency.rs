//! Why tasklets exist: write latency while long work runs on the same
//! runtime.
//!
//! A ticker OS thread sends a "write request" every 100 µs (stamped with the
//! time it was sent); a writer task on the runtime receives each one and
//! writes into a small in-memory map. A request's latency is the time from
//! its sending to the end of its write: queueing behind whatever holds the
//! runtime shows up there. Three scenarios on one runtime:
//!
//! - (a) idle: nothing else runs;
//! - (b) tasklet: a tasklet loads a 1M-record map (keys and values from a
//!   generator) in slices of the 5 ms budget, yielding between slices;
//! - (c) one go: the same load as one task that never yields.
//!
//! Environment: `HANGAR_BENCH_WORKERS` (tokio workers, default 1: one
//! worker makes the effect plain; with more, another worker often picks the
//! writer up), `HANGAR_BENCH_RECORDS` (default 1 000 000).
//!
//! Run: `cargo bench -p hangar-storage --bench tasklet_write_latency`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_storage::tasklet::{reduce, SchedulerConfig, TaskletScheduler};
use tokio::runtime::Runtime;

const PERIOD: Duration = Duration::from_micros(100);
const MARGIN: Duration = Duration::from_millis(200);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The records a load produces: 1M string keys with small values.
fn generator(n: usize) -> impl Iterator<Item = (String, [u64; 4])> + Send + 'static {
    (0..n as u64).map(|i| (format!("user:{i:08}"), [i, i ^ 0x5555, i * 3, !i]))
}

type Loaded = HashMap<String, [u64; 4]>;

/// What runs beside the writer.
#[derive(Clone, Copy, Debug)]
enum Load {
    Idle,
    Tasklet,
    OneGo,
}

struct Outcome {
    latencies: Vec<Duration>,
    load_time: Duration,
    loaded: usize,
    note: String,
}

/// Runs the writer and ticker around `load` and returns the latencies.
fn scenario(rt: &Runtime, load: Load, records: usize) -> Outcome {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let writer = rt.spawn(async move {
        let mut map: HashMap<u64, [u8; 32]> = HashMap::with_capacity(16_384);
        let mut latencies = Vec::with_capacity(200_000);
        let mut i = 0u64;
        while let Some(sent) = rx.recv().await {
            map.insert(i % 10_000, [i as u8; 32]);
            i += 1;
            latencies.push(sent.elapsed());
        }
        std::hint::black_box(&map);
        latencies
    });

    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let due = start + PERIOD * k;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        })
    };

    std::thread::sleep(MARGIN);
    let t = Instant::now();
    let (loaded, note) = match load {
        Load::Idle => {
            std::thread::sleep(Duration::from_secs(1));
            (0, String::new())
        }
        Load::Tasklet => {
            let sched = TaskletScheduler::new(SchedulerConfig::default(), rt.handle());
            let task = reduce(
                "load-users",
                generator(records),
                Loaded::with_capacity(records),
                |m: &mut Loaded, (k, v)| {
                    m.insert(k, v);
                },
            )
            .max_items_per_slice(usize::MAX)
            .check_every(32);
            let handle = sched.schedule(task).expect("a free slot");
            let map = rt.block_on(handle).expect("the load completes");
            let s = sched.stats();
            let note = format!(
                "{} slices, mean {:.2?}, max {:.2?}, over 2x budget {}",
                s.iterations,
                s.total_execution / s.iterations.max(1) as u32,
                s.max_slice,
                s.overruns
            );
            let n = map.len();
            drop(map);
            (n, note)
        }
        Load::OneGo => {
            let map = rt
                .block_on(rt.spawn(async move {
                    let mut m = Loaded::with_capacity(records);
                    m.extend(generator(records));
                    m
                }))
                .expect("the load completes");
            let n = map.len();
            drop(map);
            (n, String::new())
        }
    };
    let load_time = t.elapsed();
    std::thread::sleep(MARGIN);
    stop.store(true, Ordering::Relaxed);
    ticker.join().expect("ticker");
    let latencies = rt.block_on(writer).expect("writer");
    Outcome {
        latencies,
        load_time,
        loaded,
        note,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn conditions(workers: usize, records: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("== tasklet write latency ==");
    println!(
        "machine: {cpu}, {} cpus, loadavg {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "runtime: tokio multi-thread, {workers} worker(s); build: {}; writer: 1 request / {:?} from an OS thread, \
         HashMap<u64,[u8;32]> insert; load: {records} records (String key, 32-byte value) into a pre-sized HashMap; \
         tasklet budget 5 ms, budget checked every 32 items",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        PERIOD,
    );
}

fn main() {
    let workers = env_usize("HANGAR_BENCH_WORKERS", 1);
    let records = env_usize("HANGAR_BENCH_RECORDS", 1_000_000);
    conditions(workers, records);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}  load",
        "scenario", "writes", "p50", "p99", "p99.9", "max", "load time"
    );
    for load in [Load::Idle, Load::Tasklet, Load::OneGo] {
        let mut o = scenario(&rt, load, records);
        o.latencies.sort_unstable();
        let l = &o.latencies;
        println!(
            "{:<12} {:>8} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?}  {} records{}",
            format!("{load:?}"),
            l.len(),
            percentile(l, 0.50),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l[l.len() - 1],
            o.load_time,
            o.loaded,
            if o.note.is_empty() {
                String::new()
            } else {
                format!("; {}", o.note)
            },
        );
    }
}
