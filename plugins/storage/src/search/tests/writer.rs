//! Claims about the deferred [`IndexWriter`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hangar_core::RawValue;
use rmpv::Value;

use super::{doc, rec};
use crate::search::{
    FullTextIndex, FullTextIndexConfig, IndexWriter, SearchOptions, SearchResults, WriterOptions,
};

fn index() -> FullTextIndex {
    FullTextIndex::new(FullTextIndexConfig::new(["title", "body"])).unwrap()
}

fn keys(r: &SearchResults) -> Vec<String> {
    r.hits.iter().map(|h| h.key.clone()).collect()
}

fn all() -> SearchOptions {
    SearchOptions::default()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn t10_writes_become_visible_without_any_flush() {
    let rt = multi_thread();
    let w = IndexWriter::spawn(index(), WriterOptions::default(), rt.handle());
    w.upsert("a", doc("deferred write", "eventually visible"));
    // Eventual consistency: poll (bounded) until the background task ran.
    let mut seen = false;
    for _ in 0..500 {
        if w.search("eventually", &all()).unwrap().total_count == 1 {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen, "background task never applied the write");
    assert_eq!(w.stats().pending, 0);
}

#[test]
fn t11_nothing_is_applied_inline_below_the_pending_limit() {
    // On a current-thread runtime the background task cannot run while the
    // test thread is busy, so this shows the write path only enqueues.
    let rt = current_thread();
    let w = IndexWriter::spawn(index(), WriterOptions::default(), rt.handle());
    for i in 0..100 {
        w.upsert(format!("k{i}"), doc("queued", "text"));
    }
    let s = w.stats();
    assert_eq!((s.enqueued, s.applied, s.pending), (100, 0, 100));
    assert_eq!(w.search("queued", &all()).unwrap().total_count, 0);
    // flush() applies them on this thread: read-your-writes.
    w.flush();
    assert_eq!(w.search("queued", &all()).unwrap().total_count, 100);
    let s = w.stats();
    assert_eq!((s.applied, s.pending), (100, 0));
}

#[test]
fn t12_wait_current_gives_read_your_writes() {
    let rt = current_thread();
    let w = IndexWriter::spawn(
        index(),
        WriterOptions {
            max_batch: 7,
            ..WriterOptions::default()
        },
        rt.handle(),
    );
    for i in 0..100 {
        w.upsert(format!("k{i}"), doc("awaited", &format!("n{i}")));
    }
    w.remove("k3");
    rt.block_on(w.wait_current());
    let r = w.search("awaited", &all()).unwrap();
    assert_eq!(r.total_count, 99);
    assert!(!keys(&r).contains(&"k3".to_owned()));
    assert_eq!(w.stats().applied, 101);
    // Nothing pending: returns at once.
    rt.block_on(w.wait_current());
}

#[test]
fn t13_batches_apply_in_order_and_coalescing_keeps_the_last_change() {
    let rt = current_thread();
    let w = IndexWriter::spawn(
        index(),
        WriterOptions {
            max_batch: 16,
            ..WriterOptions::default()
        },
        rt.handle(),
    );
    let mut direct = index();
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    for i in 0..500usize {
        let key = format!("k{}", i % 13);
        if i % 11 == 0 {
            w.remove(key.clone());
            direct.remove(&key);
        } else if i % 17 == 0 {
            w.upsert(key.clone(), Value::Nil);
            direct.upsert(&key, &Value::Nil);
        } else {
            let v = doc(words[i % 5], words[(i / 5) % 5]);
            w.upsert(key.clone(), v.clone());
            direct.upsert(&key, &v);
        }
    }
    rt.block_on(w.wait_current());
    for q in words {
        assert_eq!(
            w.search(q, &all()).unwrap(),
            direct.search(q, &all()).unwrap()
        );
    }
    assert_eq!(w.read().len(), direct.len());
}

#[test]
fn t14_backpressure_applies_the_excess_on_the_write_path() {
    let rt = current_thread();
    let w = IndexWriter::spawn(
        index(),
        WriterOptions {
            max_pending: 4,
            max_batch: 256,
        },
        rt.handle(),
    );
    for i in 0..10 {
        w.upsert(format!("k{i}"), doc("pressure", "x"));
        assert!(w.stats().pending <= 4);
    }
    let s = w.stats();
    assert_eq!((s.enqueued, s.applied, s.pending), (10, 6, 4));
    // The oldest changes were applied first.
    let r = w.search("pressure", &all()).unwrap();
    assert_eq!(keys(&r), ["k0", "k1", "k2", "k3", "k4", "k5"]);
}

#[test]
fn t15_msgpack_documents_are_decoded_in_the_background() {
    let rt = current_thread();
    let w = IndexWriter::spawn(index(), WriterOptions::default(), rt.handle());
    let raw = RawValue::encode(&serde_json::json!({"title": "packed words"})).unwrap();
    w.upsert("m", raw);
    w.upsert("v", rec("body", "packed value"));
    let shared = RawValue::encode(&serde_json::json!({"body": "packed shared"})).unwrap();
    w.upsert("s", Arc::new(shared));
    rt.block_on(w.wait_current());
    assert_eq!(keys(&w.search("packed", &all()).unwrap()), ["m", "s", "v"]);
    w.upsert("m", RawValue::from_msgpack(vec![0x92, 0x01]));
    w.flush();
    assert_eq!(keys(&w.search("packed", &all()).unwrap()), ["s", "v"]);
}

#[test]
fn t16_shutdown_drains_the_queue_and_returns_the_index() {
    let rt = current_thread();
    let w = IndexWriter::spawn(index(), WriterOptions::default(), rt.handle());
    for i in 0..20 {
        w.upsert(format!("k{i}"), doc("drained", "on shutdown"));
    }
    let ix = rt.block_on(w.shutdown());
    assert_eq!(ix.len(), 20);
    assert_eq!(ix.search("drained", &all()).unwrap().total_count, 20);
}

#[test]
fn t17_wait_current_works_when_the_task_is_gone() {
    let rt = current_thread();
    let w = IndexWriter::spawn(index(), WriterOptions::default(), rt.handle());
    drop(rt); // the background task is dropped with its runtime
    w.upsert("a", doc("orphan", "write"));
    let other = current_thread();
    other.block_on(w.wait_current());
    assert_eq!(w.search("orphan", &all()).unwrap().total_count, 1);
}

#[test]
fn t20_concurrent_searches_see_a_prefix_of_the_writes() {
    let rt = multi_thread();
    let w = Arc::new(IndexWriter::spawn(
        index(),
        WriterOptions {
            max_batch: 32,
            ..WriterOptions::default()
        },
        rt.handle(),
    ));
    const N: usize = 3000;
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (w, done) = (Arc::clone(&w), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 0..N {
                w.upsert(format!("{i:05}"), doc("prefix", "check"));
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut checks = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        let r = w.search("prefix", &all()).unwrap();
        // Every key 0..m present, nothing beyond: hits sorted by key (all
        // scores equal), so the i-th hit must be key i.
        for (i, h) in r.hits.iter().enumerate() {
            assert_eq!(
                h.key,
                format!("{i:05}"),
                "not a prefix after {checks} checks"
            );
        }
        checks += 1;
        if finished {
            break;
        }
    }
    producer.join().unwrap();
    rt.block_on(w.wait_current());
    assert_eq!(w.search("prefix", &all()).unwrap().total_count, N);
}
