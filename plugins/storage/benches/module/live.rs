//! Section 4: live-query update latency with 1 000 subscriptions.

use std::sync::Arc;
use std::time::Instant;

use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{QueryRequest, QuerySink, QueryUpdate};
use hangar_core::{RawValue, WriteConcern};
use hangar_storage::StorageBackendKind;
use parking_lot::Mutex;
use serde_json::json;

use super::util::{config, module, put, summary, write};

/// Records when each update arrived.
#[derive(Default)]
struct Arrivals(Mutex<Vec<Instant>>);

impl QuerySink for Arrivals {
    fn deliver(&self, _u: &QueryUpdate) {
        self.0.lock().push(Instant::now());
    }
}

fn req(query: serde_json::Value) -> QueryRequest {
    QueryRequest {
        map: "scores".into(),
        query: RawValue::encode(&query).unwrap(),
        fields: abi_stable::std_types::ROption::RNone,
        consistency: abi_stable::std_types::ROption::RNone,
    }
}

async fn scenario(label: &str, subscribe: impl Fn(u64) -> serde_json::Value, writes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let m = module(config(StorageBackendKind::Memory, dir.path())).await;
    let seed: Vec<_> = (0..10_000u64)
        .map(|i| {
            put(
                "scores",
                &format!("p{i:05}"),
                RawValue::encode(&json!({"g": i % 1000, "score": i})).unwrap(),
                1,
            )
        })
        .collect();
    write(&m, seed, WriteConcern::Memory).await;
    let sink = Arc::new(Arrivals::default());
    for s in 0..1_000u64 {
        m.subscribe(s + 1, req(subscribe(s)), sink.clone())
            .await
            .unwrap();
    }
    let mut first = Vec::with_capacity(writes);
    let mut last = Vec::with_capacity(writes);
    let mut fanout = 0usize;
    for w in 0..writes as u64 {
        sink.0.lock().clear();
        let key = format!("p{:05}", (w * 7919) % 10_000);
        let value =
            RawValue::encode(&json!({"g": (w * 7919) % 1000, "score": 20_000 + w})).unwrap();
        let t = Instant::now();
        write(
            &m,
            vec![put("scores", &key, value, 10 + w)],
            WriteConcern::Memory,
        )
        .await;
        let got = sink.0.lock().clone();
        if let (Some(a), Some(b)) = (got.iter().min(), got.iter().max()) {
            first.push(a.duration_since(t));
            last.push(b.duration_since(t));
            fanout += got.len();
        }
    }
    println!(
        "{label:<44} updates/write {:>6.1}\n{:<44} apply->first delivery {}\n{:<44} apply->last delivery  {}",
        fanout as f64 / first.len().max(1) as f64,
        "",
        summary(&mut first),
        "",
        summary(&mut last)
    );
    m.shutdown().await.unwrap();
}

pub async fn run() {
    println!("\n-- 4. live queries: 10 000 records, 1 000 subscriptions, 2 000 writes (each changes one record) --");
    scenario(
        "1 000 x where {g: k} (1 affected per write)",
        |s| json!({"where": {"g": s}}),
        2_000,
    )
    .await;
    scenario(
        "1 000 x top-10 by score desc (all affected)",
        |_| json!({"sort": {"score": "desc"}, "limit": 10}),
        2_000,
    )
    .await;
}
