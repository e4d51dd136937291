//! Section 7: the event journal's cost on the write path: the same writes
//! with the journal off (`journal_capacity = 0`) and on (the default
//! capacity, so pruning runs once it is full). Writes update 10 000 keys
//! over and over, so each journal entry carries a previous value as well.

use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;

use hangar_storage::settings::DEFAULT_JOURNAL_CAPACITY;
use hangar_storage::{StorageBackendKind, StorageSettings};

use super::util::{drive, module, put, secs, summary, value, with_settings};

pub async fn run() {
    println!(
        "\n-- 7. journal: LWW updates of 10 000 keys, journal off vs on ({} entries kept), {:?} per row --",
        DEFAULT_JOURNAL_CAPACITY,
        secs()
    );
    println!(
        "{:<44} {:>7} {:>10}  latency of apply (+ await_acks for PERSISTED)",
        "backend / concern / journal", "writers", "ops/s"
    );
    let dir = tempfile::tempdir().unwrap();
    for (label, concern) in [
        ("redb / MEMORY", WriteConcern::Memory),
        ("redb / PERSISTED (fsync)", WriteConcern::Persisted),
    ] {
        for size in [100usize, 1024] {
            for capacity in [0, DEFAULT_JOURNAL_CAPACITY] {
                let state = if capacity == 0 { "off" } else { "on" };
                let sub = dir
                    .path()
                    .join(format!("{label}-{size}-{state}").replace([' ', '/', '(', ')'], "_"));
                let settings = StorageSettings {
                    backend: StorageBackendKind::Embedded,
                    journal_capacity: capacity,
                    ..StorageSettings::default()
                };
                let m = module(with_settings(settings, &sub)).await;
                let (rate, mut lat) = drive(&m, 16, concern, secs(), move |i| {
                    put(
                        "bench",
                        &format!("key:{:05}", i % 10_000),
                        value(size, i),
                        1_000 + i,
                    )
                })
                .await;
                println!(
                    "{:<44} {:>7} {:>10.0}  {}",
                    format!("{label}, {size} B, journal {state}"),
                    16,
                    rate,
                    summary(&mut lat)
                );
                m.shutdown().await.unwrap();
            }
        }
    }
}
