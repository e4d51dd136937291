//! Section 3: lazy load of a large map from redb, and write latency while
//! it loads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RString;
use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;
use hangar_storage::DefaultStorage;
use hangar_storage::StorageBackendKind;

use super::util::{config, env_usize, module, put, seed, summary, value, write};

/// Writes one put every `period` to `map` until `stop`, recording each
/// apply's latency.
fn writer(
    m: DefaultStorage,
    map: &'static str,
    stop: Arc<AtomicBool>,
    period: Duration,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut lat = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let op = put(map, &format!("w:{i:08}"), value(100, i), 10_000 + i);
            let t = Instant::now();
            write(&m, vec![op], WriteConcern::Memory).await;
            lat.push(t.elapsed());
            i += 1;
        }
        lat
    })
}

pub async fn run() {
    let n = env_usize("HANGAR_BENCH_RECORDS", 1_000_000);
    let budget_ms = 5;
    println!(
        "\n-- 3. load: {n} records (32 B values) from redb; tasklet budget {budget_ms} ms; \
         writers: 1 put/ms to the loading map and 1 put/ms to another map --"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(StorageBackendKind::Embedded, dir.path());
    {
        let m = module(cfg.clone()).await;
        let t = Instant::now();
        seed(&m, "big", n, 32).await;
        m.shutdown().await.unwrap();
        println!("seeded in {:.2?}", t.elapsed());
    }
    let period = Duration::from_millis(1);

    // Idle: the map is loaded first; then the same writers for 3 s.
    let m = module(cfg.clone()).await;
    let _ = m
        .read("big".into(), vec![RString::from("user:0000000000")].into())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (
        writer(m.clone(), "big", stop.clone(), period),
        writer(m.clone(), "side", stop.clone(), period),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut la, mut lb) = (a.await.unwrap(), b.await.unwrap());
    println!(
        "idle     same map : {} writes  {}",
        la.len(),
        summary(&mut la)
    );
    println!(
        "idle     other map: {} writes  {}",
        lb.len(),
        summary(&mut lb)
    );
    m.shutdown().await.unwrap();

    // Loading: a fresh module; the first read starts the load.
    let m = module(cfg.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (
        writer(m.clone(), "big", stop.clone(), period),
        writer(m.clone(), "side", stop.clone(), period),
    );
    let t = Instant::now();
    let r = m
        .read("big".into(), vec![RString::from("user:0000000001")].into())
        .await
        .unwrap();
    let load_time = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(r[0].state != hangar_core::module::storage_types::RecordState::Missing);
    let (mut la, mut lb) = (a.await.unwrap(), b.await.unwrap());
    let stats = m.stats().tasklets;
    println!(
        "load of {n} records: {load_time:.2?} ({:.0} records/s), {} slices, longest slice {:.2?}, {} over 2x budget",
        n as f64 / load_time.as_secs_f64(),
        stats.iterations,
        stats.max_slice,
        stats.overruns
    );
    println!(
        "loading  same map : {} writes  {}",
        la.len(),
        summary(&mut la)
    );
    println!(
        "loading  other map: {} writes  {}",
        lb.len(),
        summary(&mut lb)
    );
    m.shutdown().await.unwrap();
}
