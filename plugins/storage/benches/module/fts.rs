//! Section 5: what full-text indexing costs the write path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use abi_stable::std_types::RVec;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::SearchRequest;
use hangar_core::{KeyedOp, RawValue, WriteConcern};
use hangar_storage::settings::FullTextSettings;
use hangar_storage::StorageSettings;
use serde_json::json;

use super::util::{drive, module, put, secs, summary, with_settings};

const WORDS: &[&str] = &[
    "storage",
    "replica",
    "cluster",
    "merkle",
    "tombstone",
    "snapshot",
    "latency",
    "commit",
    "partition",
    "gossip",
    "quorum",
    "ledger",
    "cursor",
    "window",
    "ranking",
    "search",
    "index",
    "token",
    "stemmer",
    "query",
    "engine",
    "buffer",
    "page",
    "durable",
    "fsync",
    "network",
    "frame",
    "socket",
    "client",
    "server",
    "vector",
    "matrix",
    "graph",
    "stream",
];

fn doc(i: u64) -> RawValue {
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut body = String::with_capacity(1024);
    while body.len() < 1000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        body.push_str(WORDS[(s % WORDS.len() as u64) as usize]);
        body.push(' ');
    }
    RawValue::encode(&json!({"title": format!("document {i}"), "body": body})).unwrap()
}

/// The op of document `i` in `map`, for [`drive`].
fn doc_put(map: &'static str) -> impl Fn(u64) -> KeyedOp + Send + Sync + 'static {
    move |i| put(map, &format!("d{i:09}"), doc(i), 1_000 + i)
}

pub async fn run() {
    println!(
        "\n-- 5. full-text search: 1 KiB text documents (title + body), MEMORY concern, memory backend, {:?} per row --",
        secs()
    );
    for writers in [1usize, 4] {
        let mut rates = Vec::new();
        for with_fts in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut fts = BTreeMap::new();
            fts.insert(
                "docs".to_string(),
                FullTextSettings {
                    fields: vec!["title".into(), "body".into()],
                    ..FullTextSettings::default()
                },
            );
            let c = with_settings(
                StorageSettings {
                    full_text_search: fts,
                    ..StorageSettings::memory()
                },
                dir.path(),
            );
            let m = module(c).await;
            let map = if with_fts { "docs" } else { "plain" };
            let (rate, mut lat) =
                drive(&m, writers, WriteConcern::Memory, secs(), doc_put(map)).await;
            let mut note = String::new();
            if with_fts {
                let t = Instant::now();
                let hits = m
                    .search(SearchRequest {
                        map: "docs".into(),
                        query: "merkle".into(),
                        limit: 5,
                        min_score: 0.0,
                        boost: RVec::new(),
                        consistency: abi_stable::std_types::ROption::RNone,
                    })
                    .await
                    .unwrap();
                assert!(!hits.is_empty());
                note = format!("; indexing caught up {:.1?} after the run", t.elapsed());
            }
            println!(
                "{:<10} writers {writers:>2}: {rate:>8.0} ops/s  {}{note}",
                if with_fts { "with FTS" } else { "no FTS" },
                summary(&mut lat)
            );
            rates.push(rate);
            m.shutdown().await.unwrap();
        }
        println!(
            "           writers {writers:>2}: throughput with FTS / without = {:.2}",
            rates[1] / rates[0]
        );
    }
    // Sustained: long enough for the deferred queue (65 536 documents) to
    // fill, after which writers index the excess themselves.
    let long =
        Duration::from_secs(super::util::env_usize("HANGAR_BENCH_FTS_SUSTAINED_SECS", 20) as u64);
    let mut rates = Vec::new();
    for map in ["plain", "docs"] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StorageSettings::memory();
        s.full_text_search.insert(
            "docs".to_string(),
            FullTextSettings {
                fields: vec!["title".into(), "body".into()],
                ..FullTextSettings::default()
            },
        );
        let c = with_settings(s, dir.path());
        let m = module(c).await;
        let (rate, mut lat) = drive(&m, 1, WriteConcern::Memory, long, doc_put(map)).await;
        println!(
            "{:<10} writers  1, sustained {long:?}: {rate:>8.0} ops/s  {}",
            if map == "docs" { "with FTS" } else { "no FTS" },
            summary(&mut lat)
        );
        rates.push(rate);
        m.shutdown().await.unwrap();
    }
    println!(
        "           writers  1, sustained: throughput with FTS / without = {:.2}",
        rates[1] / rates[0]
    );
}
