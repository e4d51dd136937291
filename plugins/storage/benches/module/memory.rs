//! Section 2: bytes of memory per record, through the module.

use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;
use hangar_storage::StorageBackendKind;

use super::util::{batch, config, env_usize, null_module, put, rss_kb};
use hangar_testkit::alloc;

pub async fn run() {
    let n = env_usize("HANGAR_BENCH_RECORDS", 1_000_000);
    println!("\n-- 2. memory: {n} LWW records, key \"user:<10 digits>\" (15 B), value msgpack int (1-5 B), null backend --");
    let dir = tempfile::tempdir().unwrap();
    let m = null_module(config(StorageBackendKind::Memory, dir.path())).await;
    // Warm up the module's one-time allocations with another map.
    m.apply(batch(
        vec![put(
            "warm",
            "k",
            hangar_core::RawValue::encode(&1).unwrap(),
            1,
        )],
        WriteConcern::Memory,
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (live0, rss0) = (alloc::live_bytes(), rss_kb());
    for start in (0..n).step_by(10_000) {
        let ops = (start..(start + 10_000).min(n))
            .map(|i| {
                put(
                    "mem",
                    &format!("user:{i:010}"),
                    hangar_core::RawValue::encode(&(i as u32)).unwrap(),
                    1_000,
                )
            })
            .collect();
        m.apply(batch(ops, WriteConcern::Memory)).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (live1, rss1) = (alloc::live_bytes(), rss_kb());
    let per = (live1 - live0) as f64 / n as f64;
    let rss_per = (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64;
    println!(
        "heap (counting allocator): {:.1} B/record ({:.1} MiB for {n}); RSS delta: {:.1} B/record",
        per,
        (live1 - live0) as f64 / 1048576.0,
        rss_per
    );
    let maps = m.list_maps().await.unwrap();
    assert!(maps
        .iter()
        .any(|i| i.name.as_str() == "mem" && i.entries == n as u64));
    m.shutdown().await.unwrap();
}
