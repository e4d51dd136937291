//! Section 1: applied ops/s and apply latency for LWW puts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::config::StorageBackendKind;
use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;
use hangar_storage::DefaultStorage;

use super::util::{config, module, put, secs, summary, value, write};

/// Runs `writers` tasks that each apply one put at a time to distinct keys
/// for `dur`; returns ops/s and every latency.
pub async fn drive(
    m: &DefaultStorage,
    map: &str,
    size: usize,
    writers: usize,
    concern: WriteConcern,
    dur: Duration,
) -> (f64, Vec<Duration>) {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (m, next, map) = (m.clone(), next.clone(), map.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while started.elapsed() < dur {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let op = put(&map, &format!("key:{i:010}"), value(size, i), 1_000 + i);
                    let t = Instant::now();
                    write(&m, vec![op], concern).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, all)
}

pub async fn run() {
    println!(
        "\n-- 1. apply: LWW puts, one op per apply call, distinct keys, {:?} per row --",
        secs()
    );
    println!(
        "{:<34} {:>7} {:>10}  latency of apply (+ await_acks for PERSISTED)",
        "backend / concern", "writers", "ops/s"
    );
    let dir = tempfile::tempdir().unwrap();
    for (label, backend, concern, writers) in [
        (
            "memory / MEMORY",
            StorageBackendKind::Memory,
            WriteConcern::Memory,
            1,
        ),
        (
            "memory / MEMORY",
            StorageBackendKind::Memory,
            WriteConcern::Memory,
            16,
        ),
        (
            "redb / MEMORY",
            StorageBackendKind::Embedded,
            WriteConcern::Memory,
            16,
        ),
        (
            "redb / PERSISTED (fsync)",
            StorageBackendKind::Embedded,
            WriteConcern::Persisted,
            16,
        ),
        (
            "redb / PERSISTED (fsync)",
            StorageBackendKind::Embedded,
            WriteConcern::Persisted,
            64,
        ),
    ] {
        for size in [100usize, 1024] {
            let sub = dir
                .path()
                .join(format!("{label}-{writers}-{size}").replace([' ', '/', '(', ')'], "_"));
            let m = module(config(backend, &sub)).await;
            let (rate, mut lat) = drive(&m, "bench", size, writers, concern, secs()).await;
            println!(
                "{:<34} {:>7} {:>10.0}  {}",
                format!("{label}, {size} B"),
                writers,
                rate,
                summary(&mut lat)
            );
            m.shutdown().await.unwrap();
        }
    }
}
