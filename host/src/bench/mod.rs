//! The load generator behind `hangar bench`: a client that speaks only the
//! TopGun wire protocol, so it can drive any compatible server.
//!
//! N connections (spread round-robin over one or more server URLs) each send an `OP_BATCH` of B LWW puts (values of S bytes)
//! at a chosen write concern, wait for its `OP_ACK`, and repeat, for a
//! duration or until a total number of ops was sent. Latency is measured
//! from sending a batch to receiving its ack, per batch and per op (every op
//! of a batch is acknowledged when its batch is), into HDR histograms.
//!
//! Each batch may ask for a replication `consistency` (a Hangar extension
//! of `OP_BATCH`), and keys may be restricted to the partitions a node owns
//! or does not own ([`KeySelection`], from the server's `PARTITION_MAP`),
//! to compare a write sent to its owner with one the node forwards.
//!
//! # Layout
//!
//! - `mod.rs`: [`BenchConfig`], [`run`], [`Report`] and its printout.
//! - `client`: one connection's loop.
//! - `keys`: [`KeySelection`] and [`KeyFilter`], which keys are written.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::{ConsistencyLevel, WriteConcern};
use hdrhistogram::Histogram;

mod client;
mod keys;

pub use keys::{KeyFilter, KeySelection};

/// The wire name of a consistency level (`EVENTUAL`, `QUORUM`, `STRONG`),
/// as `OP_BATCH.consistency` carries it.
#[must_use]
pub fn consistency_name(c: ConsistencyLevel) -> &'static str {
    match c {
        ConsistencyLevel::Eventual => "EVENTUAL",
        ConsistencyLevel::Quorum => "QUORUM",
        ConsistencyLevel::Strong => "STRONG",
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    Duration(Duration),
    /// Once this many ops were sent (every connection finishes its batch).
    Ops(u64),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `ws://host:port/ws`, or several separated by commas: connection `i`
    /// goes to URL `i % n` (to spread the load over a cluster's nodes).
    pub url: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Ops per `OP_BATCH`.
    pub batch: usize,
    /// Bytes of each value (a msgpack binary of this length).
    pub value_size: usize,
    /// Requested write concern of every op.
    pub concern: WriteConcern,
    /// Ack timeout sent with each batch, in ms.
    pub timeout_ms: u64,
    /// When to stop.
    pub stop: Stop,
    /// JWT sent in `AUTH` when the server asks for one.
    pub token: Option<String>,
    /// Map written to.
    pub map: String,
    /// Replication consistency sent in every `OP_BATCH`; `None` sends no
    /// `consistency` field (the server's default applies).
    pub consistency: Option<ConsistencyLevel>,
    /// Which keys are written; owner-based selections read the
    /// `PARTITION_MAP` of the first URL before the run.
    pub keys: KeySelection,
}

impl BenchConfig {
    /// The server URLs, in the order connections are assigned to them.
    #[must_use]
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/ws".into(),
            connections: 1,
            batch: 100,
            value_size: 100,
            concern: WriteConcern::Memory,
            timeout_ms: 5_000,
            stop: Stop::Duration(Duration::from_secs(10)),
            token: None,
            map: "bench".into(),
            consistency: None,
            keys: KeySelection::All,
        }
    }
}

/// Why a run failed before measuring anything useful.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is out of range.
    #[error("invalid bench setting: {0}")]
    Config(String),
    /// A connection failed (connect, auth, protocol).
    #[error("connection {conn}: {message}")]
    Connection {
        /// Which connection.
        conn: usize,
        /// What happened.
        message: String,
    },
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// The settings.
    pub config: BenchConfig,
    /// Wall time from the first send to the last ack.
    pub elapsed: Duration,
    /// Ops acknowledged with `success: true`.
    pub acked_ops: u64,
    /// Ops acknowledged with `success: false`, or shed with an `ERROR`.
    pub failed_ops: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// `ERROR` frames received (429 overload, ...).
    pub errors: u64,
    /// Ack latency per batch, in microseconds.
    pub batch_latency_us: Histogram<u64>,
    /// Ack latency per op, in microseconds.
    pub op_latency_us: Histogram<u64>,
    /// How many of the 271 partitions the keys fell in (271 for `all`).
    pub key_partitions: usize,
    /// Version of the `PARTITION_MAP` the keys were chosen from, if one was
    /// read.
    pub map_version: Option<u32>,
}

impl Report {
    /// Successfully acknowledged ops per second (failed and shed ops do
    /// not count).
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        let ops = self.acked_ops as f64;
        ops / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "hangar bench")?;
        writeln!(f, "  target       {}", c.url)?;
        writeln!(
            f,
            "  machine      {} cpus, {} {}",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            std::env::consts::OS,
            std::env::consts::ARCH
        )?;
        writeln!(
            f,
            "  conditions   connections={} batch={} value_size={}B concern={} stop={}",
            c.connections,
            c.batch,
            c.value_size,
            c.concern,
            match c.stop {
                Stop::Duration(d) => format!("{:.1}s", d.as_secs_f64()),
                Stop::Ops(n) => format!("{n} ops"),
            }
        )?;
        writeln!(
            f,
            "               consistency={} keys={} ({} of {} partitions{})",
            c.consistency.map_or("server-default", consistency_name),
            c.keys,
            self.key_partitions,
            hangar_core::PARTITION_COUNT,
            self.map_version
                .map_or(String::new(), |v| format!(", map version {v}"))
        )?;
        writeln!(
            f,
            "  ran          {:.2}s, {} batches, {} ops acked, {} failed or shed, {} ERROR frames",
            self.elapsed.as_secs_f64(),
            self.batches,
            self.acked_ops,
            self.failed_ops,
            self.errors
        )?;
        writeln!(f, "  throughput   {:.0} ops/s", self.ops_per_sec())?;
        for (name, h) in [
            ("batch ack", &self.batch_latency_us),
            ("op ack", &self.op_latency_us),
        ] {
            writeln!(
                f,
                "  {name:<12} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            )?;
        }
        Ok(())
    }
}

/// Shared between the connections of a run.
pub(crate) struct Shared {
    pub config: BenchConfig,
    pub keys: KeyFilter,
    pub sent_ops: AtomicU64,
    pub stop: AtomicBool,
    pub deadline: Option<Instant>,
}

impl Shared {
    /// Claims `n` more ops to send; false once the run is over.
    pub fn claim(&self, n: u64) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return false;
        }
        if let Stop::Ops(limit) = self.config.stop {
            let before = self.sent_ops.fetch_add(n, Ordering::Relaxed);
            if before >= limit {
                self.stop.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

/// Runs the benchmark.
///
/// # Errors
/// [`BenchError::Config`] for out-of-range settings, or a `--keys` selection
/// the partition map cannot satisfy (unknown node, no matching partition);
/// [`BenchError::Connection`] when a connection cannot connect,
/// authenticate, or loses its socket.
pub async fn run(config: BenchConfig) -> Result<Report, BenchError> {
    if config.connections == 0 || config.batch == 0 {
        return Err(BenchError::Config(
            "connections and batch must be at least 1".into(),
        ));
    }
    if config.concern == WriteConcern::FireAndForget {
        return Err(BenchError::Config(
            "FIRE_AND_FORGET asks for no acknowledgement, so there is no latency to measure; pick MEMORY or higher".into(),
        ));
    }
    let urls: Vec<String> = config.urls().into_iter().map(String::from).collect();
    if urls.is_empty() {
        return Err(BenchError::Config(format!(
            "--url {:?}: expected one or more ws:// URLs separated by commas",
            config.url
        )));
    }
    // Connect (and authenticate) everyone before the clock starts.
    let mut conns = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        conns.push(client::Client::connect(i, &urls[i % urls.len()], &config).await?);
    }
    let (keys, map_version) = if config.keys.needs_partition_map() {
        let map = conns[0].fetch_partition_map().await?;
        let filter = KeyFilter::from_map(&config.keys, &map).map_err(BenchError::Config)?;
        (filter, Some(map.version))
    } else {
        (KeyFilter::all(), None)
    };
    let key_partitions = keys.partitions();
    let shared = Arc::new(Shared {
        keys,
        deadline: match config.stop {
            Stop::Duration(d) => Some(Instant::now() + d),
            Stop::Ops(_) => None,
        },
        config: config.clone(),
        sent_ops: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(c.drive(shared.clone())))
        .collect();
    let mut report = Report {
        config,
        elapsed: Duration::ZERO,
        acked_ops: 0,
        failed_ops: 0,
        batches: 0,
        errors: 0,
        batch_latency_us: client::histogram(),
        op_latency_us: client::histogram(),
        key_partitions,
        map_version,
    };
    for (i, t) in tasks.into_iter().enumerate() {
        let stats = t.await.map_err(|e| BenchError::Connection {
            conn: i,
            message: format!("task failed: {e}"),
        })??;
        report.acked_ops += stats.acked_ops;
        report.failed_ops += stats.failed_ops;
        report.batches += stats.batches;
        report.errors += stats.errors;
        let _ = report.batch_latency_us.add(&stats.batch_latency_us);
        let _ = report.op_latency_us.add(&stats.op_latency_us);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
