//! Write-ack manager throughput and latency.
//!
//! Criterion part: the cost of one register + notify + wait cycle on the
//! main paths (immediate MEMORY ack, APPLIED ack, a batch of 100 PERSISTED
//! acks). Then a report printed by this binary: throughput with 1 and 2
//! threads, a run with 1 000 000 acks in flight at once, and latency
//! percentiles (per cycle, and notify-to-wake across threads).
//!
//! Run: `cargo bench -p hangar-storage --bench write_ack`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use futures::FutureExt;
use hangar_core::module::services::NoMetrics;
use hangar_core::types::WriteConcern;
use hangar_storage::write_ack::{AckConfig, WriteAckManager};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn manager(rt: &Runtime) -> Arc<WriteAckManager> {
    Arc::new(WriteAckManager::new(
        AckConfig::default(),
        Arc::new(NoMetrics),
        rt.handle(),
    ))
}

/// One full cycle for an APPLIED ack; the wait is ready on its first poll.
fn cycle_applied(m: &WriteAckManager) {
    let id = m.register(WriteConcern::Applied, None).unwrap();
    m.notify(id, WriteConcern::Applied);
    let r = m.wait(&[id]).now_or_never().expect("resolved");
    assert!(r[0].success);
}

fn bench_cycles(c: &mut Criterion) {
    let rt = runtime();
    let m = manager(&rt);
    let mut g = c.benchmark_group("write_ack");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);

    g.throughput(Throughput::Elements(1));
    g.bench_function("memory/register+wait", |b| {
        b.iter(|| {
            let id = m.register(WriteConcern::Memory, None).unwrap();
            let r = m.wait(&[id]).now_or_never().unwrap();
            assert!(r[0].success);
        });
    });
    g.bench_function("applied/register+notify+wait", |b| {
        b.iter(|| cycle_applied(&m))
    });
    g.bench_function("applied/register+wait(pending)+notify", |b| {
        b.iter(|| {
            let id = m.register(WriteConcern::Applied, None).unwrap();
            let w = m.wait(&[id]);
            m.notify(id, WriteConcern::Applied);
            assert!(w.now_or_never().unwrap()[0].success);
        });
    });

    {
        let n = 100usize;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("persisted/batch", n), &n, |b, &n| {
            let mut ids = Vec::with_capacity(n);
            b.iter(|| {
                ids.clear();
                for _ in 0..n {
                    ids.push(m.register(WriteConcern::Persisted, None).unwrap());
                }
                m.notify_many(&ids, WriteConcern::Applied);
                m.notify_many(&ids, WriteConcern::Persisted);
                m.notify_many(&ids, WriteConcern::Replicated);
                let r = m.wait(&ids).now_or_never().unwrap();
                assert!(r.iter().all(|r| r.success));
            });
        });
    }
    g.finish();
    assert_eq!(m.tracked(), 0);
}

criterion_group!(benches, bench_cycles);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn show(label: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    println!(
        "  {label:<44} n={:<8} p50={:>8.2?} p99={:>8.2?} p99.9={:>8.2?} max={:>8.2?}",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.99),
        percentile(&v, 0.999),
        v[v.len() - 1],
    );
}

/// `threads` threads each run `per_thread` APPLIED cycles; returns cycles/s.
fn throughput(m: &Arc<WriteAckManager>, threads: usize, per_thread: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    cycle_applied(&m);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn report() {
    let rt = runtime();
    let m = manager(&rt);
    println!("\n== write-ack report ==");
    println!(
        "  machine: {} cpus, load {}, profile={}, tokio test-util on (dev build)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );

    // Throughput, APPLIED register+notify+wait cycles.
    let _ = throughput(&m, 1, 200_000); // warm-up
    for threads in [1, 2] {
        let rate = throughput(&m, threads, 1_000_000);
        println!("  cycles/s, {threads} thread(s): {:>12.0}", rate);
    }

    // One million PERSISTED acks in flight at once.
    let n = 1_000_000;
    let t = Instant::now();
    let ids: Vec<u64> = (0..n)
        .map(|_| m.register(WriteConcern::Persisted, None).unwrap())
        .collect();
    let reg = t.elapsed();
    let t = Instant::now();
    for level in [
        WriteConcern::Applied,
        WriteConcern::Replicated,
        WriteConcern::Persisted,
    ] {
        for chunk in ids.chunks(1_000) {
            m.notify_many(chunk, level);
        }
    }
    let notify = t.elapsed();
    let t = Instant::now();
    let mut ok = 0;
    for chunk in ids.chunks(1_000) {
        ok += m
            .wait(chunk)
            .now_or_never()
            .unwrap()
            .iter()
            .filter(|r| r.success)
            .count();
    }
    let wait = t.elapsed();
    assert_eq!(ok, n);
    println!(
        "  1M in flight: register {:.0}/s, notify (3 levels) {:.0} acks/s, wait {:.0}/s, total {:.0} acks/s",
        n as f64 / reg.as_secs_f64(),
        n as f64 / notify.as_secs_f64(),
        n as f64 / wait.as_secs_f64(),
        n as f64 / (reg + notify + wait).as_secs_f64(),
    );

    // Latency of one cycle, measured per cycle.
    let mut lat = Vec::with_capacity(1_000_000);
    for _ in 0..1_000_000 {
        let t = Instant::now();
        cycle_applied(&m);
        lat.push(t.elapsed());
    }
    show("cycle latency (APPLIED, 1 thread)", lat);

    // Notify-to-wake: a task on the runtime waits; this thread notifies.
    let mut lat = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let id = m.register(WriteConcern::Persisted, None).unwrap();
        m.notify_many(&[id], WriteConcern::Applied);
        m.notify_many(&[id], WriteConcern::Replicated);
        let (tx, rx) = std::sync::mpsc::channel();
        let wait = m.wait(&[id]);
        rt.spawn(async move {
            let r = wait.await;
            tx.send((Instant::now(), r[0].success)).unwrap();
        });
        std::thread::sleep(Duration::from_micros(20));
        let t = Instant::now();
        m.notify(id, WriteConcern::Persisted);
        let (woke, success) = rx.recv().unwrap();
        assert!(success);
        lat.push(woke.saturating_duration_since(t));
    }
    show("notify-to-wake (task on runtime, 2 workers)", lat);
    assert_eq!(m.tracked(), 0);
}

fn main() {
    benches();
    report();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
