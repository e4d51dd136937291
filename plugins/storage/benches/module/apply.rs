//! Section 1: applied ops/s and apply latency for LWW puts.

use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;
use hangar_storage::StorageBackendKind;

use super::util::{config, drive, module, put, secs, summary, value};

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
            let (rate, mut lat) = drive(&m, writers, concern, secs(), move |i| {
                put("bench", &format!("key:{i:010}"), value(size, i), 1_000 + i)
            })
            .await;
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
