//! Write-path cost of full-text indexing.
//!
//! The issue: "indexing must not slow the write path by more than half".
//! This bench runs one write loop of LWW-like puts of 1 KB text documents
//! (a `HashMap` insert of the record stands in for the map apply; the real
//! CRDT map does more work per write, so the ratios here are pessimistic)
//! and compares it with the same loop plus indexing:
//!
//! - `baseline`: map insert only;
//! - `sync`: map insert + `FullTextIndex::upsert_raw` inline (decode + index);
//! - `deferred/copy`: map insert + `IndexWriter::upsert` of a copy of the
//!   value (the background task decodes and indexes);
//! - `deferred/shared`: the map stores `Arc<RawValue>` and the writer gets a
//!   clone of the `Arc` (the baseline of this pair stores the `Arc` too);
//! - `deferred/bounded`: `deferred/copy` with `max_pending` = 1024, the
//!   sustained case where the queue is full and writers apply the excess;
//! - `enqueue only`: `deferred/copy` with the background task idle during
//!   the loop (it drains afterwards): the enqueue's own cost, without the
//!   interference of a thread indexing at the same time.
//!
//! It prints ops/s, p50 / p99 / p99.9 per-op latency, the ratios to the
//! baseline, and for deferred runs the time the background task needed to
//! catch up. Each scenario runs `REPS` times, interleaved; the run with the
//! median ops/s is reported. Run: `cargo bench -p hangar-storage --bench fts`
//! (add `-- --quick` for a short run).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::RawValue;
use hangar_storage::search::{FullTextIndex, FullTextIndexConfig, IndexWriter, WriterOptions};
use rmpv::Value;

/// Deterministic PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pseudo-English text: a 20 000-word vocabulary of syllable words with
/// English suffixes, drawn by a Zipf law (s = 1), plus 30 % stopwords.
struct TextGen {
    vocab: Vec<String>,
    cdf: Vec<f64>,
    rng: Rng,
}

impl TextGen {
    fn new(seed: u64) -> Self {
        const SYL: &[&str] = &[
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "gi", "zu", "ba", "fe",
            "ho", "ja", "ster", "bran", "quil", "morn",
        ];
        const SUF: &[&str] = &[
            "", "", "", "s", "ing", "ed", "er", "ly", "tion", "ness", "ment", "able",
        ];
        let mut rng = Rng(seed);
        let mut vocab = Vec::with_capacity(20_000);
        while vocab.len() < 20_000 {
            let n = 2 + rng.below(3);
            let mut w: String = (0..n).map(|_| SYL[rng.below(SYL.len())]).collect();
            w.push_str(SUF[rng.below(SUF.len())]);
            vocab.push(w);
        }
        let mut cdf = Vec::with_capacity(vocab.len());
        let mut acc = 0.0;
        for r in 1..=vocab.len() {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        Self { vocab, cdf, rng }
    }

    fn word(&mut self) -> &str {
        const STOP: &[&str] = &[
            "the", "of", "and", "to", "in", "is", "that", "for", "it", "as",
        ];
        if self.rng.unit() < 0.3 {
            return STOP[self.rng.below(STOP.len())];
        }
        let x = self.rng.unit() * self.cdf[self.cdf.len() - 1];
        let i = self
            .cdf
            .partition_point(|&c| c < x)
            .min(self.vocab.len() - 1);
        &self.vocab[i]
    }

    fn text(&mut self, min_bytes: usize) -> String {
        let mut s = String::new();
        while s.len() < min_bytes {
            if !s.is_empty() {
                s.push(if self.rng.below(12) == 0 { '.' } else { ' ' });
                s.push(' ');
            }
            let w = self.word().to_owned();
            s.push_str(&w);
        }
        s
    }
}

/// `docs` distinct encoded records `{title, body}` of about 1 KB.
fn documents(count: usize) -> Vec<RawValue> {
    let mut g = TextGen::new(42);
    (0..count)
        .map(|_| {
            let title = g.text(40);
            let body = g.text(1000 - title.len());
            let v = Value::Map(vec![
                (Value::from("title"), Value::from(title)),
                (Value::from("body"), Value::from(body)),
            ]);
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &v).expect("encode");
            RawValue::from_msgpack(buf)
        })
        .collect()
}

/// The record the stand-in map stores.
#[allow(
    dead_code,
    reason = "the fields model a stored record; the bench only builds it"
)]
struct Record<V> {
    value: V,
    millis: u64,
    counter: u32,
}

#[derive(Clone, Copy)]
enum Scenario {
    Baseline,
    Sync,
    DeferredCopy,
    SharedBaseline,
    DeferredShared,
    DeferredBounded,
    EnqueueOnly,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline (map insert)",
            Scenario::Sync => "sync index inline",
            Scenario::DeferredCopy => "deferred/copy",
            Scenario::SharedBaseline => "baseline, Arc values",
            Scenario::DeferredShared => "deferred/shared (Arc)",
            Scenario::DeferredBounded => "deferred/bounded 1024",
            Scenario::EnqueueOnly => "enqueue only (idle task)",
        }
    }
}

struct Run {
    ops_per_s: f64,
    /// CPU time of the writing thread per op: unlike wall time, not inflated
    /// when other processes take the cores.
    cpu_ns: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    /// Time after the loop until the index had caught up (deferred only).
    catch_up: Option<Duration>,
}

struct Workload {
    keys: Vec<String>,
    docs: Vec<RawValue>,
    ops: usize,
}

fn config() -> FullTextIndexConfig {
    FullTextIndexConfig::new(["title", "body"])
}

fn run(s: Scenario, w: &Workload, multi: &tokio::runtime::Runtime) -> Run {
    // The enqueue-only case puts the writer on a current-thread runtime that
    // nobody drives during the loop: the cost of the enqueue alone, without
    // a concurrently draining thread.
    let idle = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let rt = if matches!(s, Scenario::EnqueueOnly) {
        &idle
    } else {
        multi
    };
    let mut lat = Vec::with_capacity(w.ops);
    let mut map_copy: HashMap<String, Record<RawValue>> = HashMap::new();
    let mut map_arc: HashMap<String, Record<Arc<RawValue>>> = HashMap::new();
    let mut index = FullTextIndex::new(config()).expect("config");
    let opts = match s {
        Scenario::DeferredBounded => WriterOptions {
            max_pending: 1024,
            ..WriterOptions::default()
        },
        _ => WriterOptions {
            max_pending: usize::MAX,
            ..WriterOptions::default()
        },
    };
    let writer = IndexWriter::spawn(
        FullTextIndex::new(config()).expect("config"),
        opts,
        rt.handle(),
    );
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    for i in 0..w.ops {
        // What arrives with a write: an owned key and owned value bytes.
        let key = w.keys[i % w.keys.len()].clone();
        let value = w.docs[i % w.docs.len()].clone();
        let t0 = Instant::now();
        match s {
            Scenario::Baseline => {
                map_copy.insert(key, rec(value, i));
            }
            Scenario::Sync => {
                let _ = index.upsert_raw(&key, &value);
                map_copy.insert(key, rec(value, i));
            }
            Scenario::DeferredCopy | Scenario::DeferredBounded | Scenario::EnqueueOnly => {
                writer.upsert(key.clone(), value.clone());
                map_copy.insert(key, rec(value, i));
            }
            Scenario::SharedBaseline => {
                map_arc.insert(key, rec(Arc::new(value), i));
            }
            Scenario::DeferredShared => {
                let value = Arc::new(value);
                writer.upsert(key.clone(), Arc::clone(&value));
                map_arc.insert(key, rec(value, i));
            }
        }
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu_ns() - cpu_start;
    let catch_up = matches!(
        s,
        Scenario::DeferredCopy
            | Scenario::DeferredShared
            | Scenario::DeferredBounded
            | Scenario::EnqueueOnly
    )
    .then(|| {
        let t = Instant::now();
        rt.block_on(writer.wait_current());
        t.elapsed()
    });
    black_box((&map_copy, &map_arc, &index));
    let index = rt.block_on(writer.shutdown());
    if catch_up.is_some() {
        assert_eq!(index.len(), w.keys.len().min(w.ops), "all keys indexed");
    }
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Run {
        ops_per_s: w.ops as f64 / elapsed.as_secs_f64(),
        cpu_ns: cpu as f64 / w.ops as f64,
        p50: q(0.50),
        p99: q(0.99),
        p999: q(0.999),
        catch_up,
    }
}

/// CPU time consumed by the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call, and CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn rec<V>(value: V, i: usize) -> Record<V> {
    Record {
        value,
        millis: 1_700_000_000_000 + i as u64,
        counter: 0,
    }
}

fn conditions(w: &Workload, reps: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg_len = w.docs.iter().map(|d| d.as_bytes().len()).sum::<usize>() / w.docs.len();
    println!("# fts write-path bench");
    println!(
        "cpu: {cpu}; cores: {}; loadavg: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    println!(
        "profile: {}; ops: {}; keys: {} (updates after the first pass); distinct docs: {}; \
         msgpack doc size: {avg_len} B; fields: title, body; reps: {reps} (median shown)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        w.ops,
        w.keys.len(),
        w.docs.len()
    );
    println!("writer runtime: tokio multi-thread, 1 worker (background drain on its own thread)");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (ops, keys, ndocs, reps) = if quick && !std::env::args().any(|a| a == "--full-size") {
        (8_000, 2_000, 1_000, 1)
    } else {
        (40_000, 10_000, 4_000, 3)
    };
    let w = Workload {
        keys: (0..keys).map(|i| format!("article-{i:06}")).collect(),
        docs: documents(ndocs),
        ops,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    conditions(&w, reps);
    let scenarios = [
        Scenario::Baseline,
        Scenario::Sync,
        Scenario::DeferredCopy,
        Scenario::SharedBaseline,
        Scenario::DeferredShared,
        Scenario::DeferredBounded,
        Scenario::EnqueueOnly,
    ];
    // `--profile-sync`: only the inline-indexing loop, for a profiler.
    if std::env::args().any(|a| a == "--profile-sync") {
        let r = run(Scenario::Sync, &w, &rt);
        println!("sync: {:.0} ops/s, p50 {} ns", r.ops_per_s, r.p50);
        return;
    }
    // Warm-up (allocator, page faults, caches).
    run(Scenario::Baseline, &w, &rt);
    let mut results: Vec<Vec<Run>> = scenarios.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (i, &s) in scenarios.iter().enumerate() {
            results[i].push(run(s, &w, &rt));
        }
    }
    let median: Vec<Run> = results
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
            v.swap_remove(v.len() / 2)
        })
        .collect();
    println!(
        "{:<24} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>9}",
        "scenario",
        "ops/s",
        "cpu ns",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "cpu ratio",
        "wall ratio",
        "catch-up"
    );
    for (i, (&s, r)) in scenarios.iter().zip(&median).enumerate() {
        // Ratio of mean time per write to the matching baseline.
        let base = if (3..=4).contains(&i) {
            &median[3]
        } else {
            &median[0]
        };
        println!(
            "{:<24} {:>10.0} {:>8.0} {:>8} {:>8} {:>9} {:>8.2}x {:>9.2}x {:>9}",
            s.name(),
            r.ops_per_s,
            r.cpu_ns,
            r.p50,
            r.p99,
            r.p999,
            r.cpu_ns / base.cpu_ns,
            base.ops_per_s / r.ops_per_s,
            r.catch_up
                .map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis())),
        );
    }
    let idx_rate = |r: &Run| {
        ops as f64 / (ops as f64 / r.ops_per_s + r.catch_up.map_or(0.0, |d| d.as_secs_f64()))
    };
    println!(
        "end-to-end (write loop + catch-up) ops/s: deferred/copy {:.0}, deferred/shared {:.0}",
        idx_rate(&median[2]),
        idx_rate(&median[4])
    );
    println!(
        "cpu ratio = write-thread CPU per op / baseline's; wall ratio = baseline ops/s / \
         scenario ops/s (1.50x = writes 50 % slower); 'Arc' rows compare with the Arc baseline"
    );
}
