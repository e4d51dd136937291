//! Multi-process tests of reads that cover the whole cluster: live queries,
//! one-shot query pages, top-N windows and full-text search on any node see
//! every partition, wherever it is held; `SERVER_EVENT`s and topic messages
//! reach clients on every node; a live query survives `kill -9` of a node
//! without missing or doubling a key.
//!
//! Real `hangar` processes on loopback (see `hangar_tests::cluster_harness`);
//! they need the debug binary and plugins that `cargo test --workspace`
//! builds. Each test bounds its waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{
    ChangeType, QuerySub, QueryUnsub, Search, SearchOptions, TopicPub, TopicRef,
};
use hangar_host::protocol::{Message, RawMsgpack};
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use serde_json::{json, Value};

const FORM: Duration = Duration::from_secs(30);

fn settings(top: &str) -> Settings {
    Settings {
        cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
        top_toml: top.into(),
        ..Settings::default()
    }
}

fn formed(top: &str) -> Cluster {
    let mut c = Cluster::new(3, &settings(top));
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    c
}

fn mp(v: &Value) -> rmpv::Value {
    rmpv::ext::to_value(v).expect("json to msgpack")
}

/// Writes `{"v": i}` at `prefix{i}` for `range` through `cl`, at QUORUM.
async fn write_range(cl: &mut Client, map: &str, prefix: &str, range: std::ops::Range<u64>) {
    let ops = range
        .map(|i| {
            let id = cl.next_id();
            put(
                &id,
                map,
                &format!("{prefix}{i}"),
                &json!({ "v": i }),
                1_000 + i,
                "w",
            )
        })
        .collect();
    let ack = cl
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .expect("ack");
    let failed = ack
        .results
        .expect("results")
        .iter()
        .filter(|r| !r.success)
        .count();
    assert_eq!(failed, 0, "writes failed");
}

/// Sends `QUERY_SUB` with `query` and returns the first page's keys.
async fn subscribe_with(cl: &mut Client, id: &str, map: &str, query: &Value) -> Vec<String> {
    cl.send(&Message::QuerySub {
        payload: QuerySub {
            query_id: id.into(),
            map_name: map.into(),
            query: mp(query),
            fields: None,
            consistency: None,
        },
    })
    .await
    .expect("send");
    let q = id.to_string();
    cl.wait_for(Duration::from_secs(15), |m| match m {
        Message::QueryResp { payload } if payload.query_id == q => {
            assert!(
                payload.error.is_none(),
                "query refused: {:?}",
                payload.error
            );
            Some(payload.results.iter().map(|r| r.key.clone()).collect())
        }
        _ => None,
    })
    .await
    .expect("QUERY_RESP")
}

/// A client's view of one live query, built from its updates; an ENTER for
/// a key already in the view, or a LEAVE for one not in it, is a duplicate.
#[derive(Default)]
struct View {
    keys: BTreeSet<String>,
    duplicates: Vec<String>,
}

impl View {
    fn apply(&mut self, key: &str, change: ChangeType) {
        match change {
            ChangeType::Enter => {
                if !self.keys.insert(key.to_string()) {
                    self.duplicates.push(format!("ENTER {key}"));
                }
            }
            ChangeType::Leave => {
                if !self.keys.remove(key) {
                    self.duplicates.push(format!("LEAVE {key}"));
                }
            }
            ChangeType::Update => {
                if !self.keys.contains(key) {
                    self.duplicates.push(format!("UPDATE {key} not in view"));
                }
            }
        }
    }

    /// Reads `cl`'s updates for `query_id` until `done` holds or `timeout`.
    async fn follow(
        &mut self,
        cl: &mut Client,
        query_id: &str,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        for m in std::mem::take(&mut cl.other) {
            if let Message::QueryUpdate { payload } = &m {
                if payload.query_id == query_id {
                    self.apply(&payload.key, payload.change_type);
                }
            }
        }
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match cl.recv(left).await {
                Ok(Message::QueryUpdate { payload }) if payload.query_id == query_id => {
                    self.apply(&payload.key, payload.change_type);
                }
                Ok(_) => {}
                Err(_) => return done(self),
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_live_queries_pages_and_top_n_on_any_node_cover_every_partition() {
    let c = formed("");
    let mut on_c = Client::connect(&c.ws_url(2)).await.unwrap();
    let first = subscribe_with(&mut on_c, "live", "m", &json!({})).await;
    assert!(first.is_empty(), "nothing written yet: {first:?}");

    let mut on_a = Client::connect(&c.ws_url(0)).await.unwrap();
    write_range(&mut on_a, "m", "k", 0..1_000).await;

    let mut view = View::default();
    let all = view
        .follow(&mut on_c, "live", Duration::from_secs(20), |v| {
            v.keys.len() >= 1_000
        })
        .await;
    assert!(
        all,
        "a live query on n3 saw {} of 1000 keys written through n1",
        view.keys.len()
    );
    assert!(
        view.duplicates.is_empty(),
        "{:?}",
        &view.duplicates[..view.duplicates.len().min(10)]
    );

    // The dead coordinator's registration on n1 expires; n1 keeps its own.
    wait_registrations(&c, 0, 1).await;

    let mut on_b = Client::connect(&c.ws_url(1)).await.unwrap();
    let page = subscribe_with(&mut on_b, "fresh", "m", &json!({})).await;
    let distinct: BTreeSet<&String> = page.iter().collect();
    assert_eq!(page.len(), 1_000, "first page on n2 has every key once");
    assert_eq!(distinct.len(), 1_000);

    let top = subscribe_with(
        &mut on_b,
        "top",
        "m",
        &json!({"sort": {"v": "desc"}, "limit": 10}),
    )
    .await;
    let want: Vec<String> = (990..1_000).rev().map(|i| format!("k{i}")).collect();
    assert_eq!(top, want, "the global top 10, in order");

    // A write that enters the window displaces its last key on n2's top-N.
    let id = on_a.next_id();
    let ack = on_a
        .batch(
            vec![put(&id, "m", "kbig", &json!({"v": 5_000}), 9_000, "w")],
            "PERSISTED",
            Some("QUORUM"),
            10_000,
        )
        .await
        .unwrap();
    assert!(ack.results.unwrap()[0].success);
    let mut changes: BTreeMap<String, ChangeType> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while changes.len() < 2 && Instant::now() < deadline {
        if let Ok(Message::QueryUpdate { payload }) = on_b
            .recv(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            if payload.query_id == "top" {
                changes.insert(payload.key.clone(), payload.change_type);
            }
        }
    }
    assert_eq!(changes.get("kbig"), Some(&ChangeType::Enter), "{changes:?}");
    assert_eq!(changes.get("k990"), Some(&ChangeType::Leave), "{changes:?}");
}

/// Keys of `SERVER_EVENT`s (single or batched) for `map` among `msgs`.
fn event_keys(msgs: &[Message], map: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in msgs {
        match m {
            Message::ServerEvent { payload } if payload.map_name == map => {
                out.insert(payload.key.clone());
            }
            Message::ServerBatchEvent { payload } => {
                for e in &payload.events {
                    if e.map_name == map {
                        out.insert(e.key.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_server_events_for_a_write_through_one_node_reach_subscribers_on_every_node() {
    let c = formed("");
    let mut subs = Vec::new();
    for i in 0..3 {
        let mut cl = Client::connect(&c.ws_url(i)).await.unwrap();
        subscribe_with(&mut cl, "ev", "ev", &json!({})).await;
        subs.push(cl);
    }
    let mut on_a = Client::connect(&c.ws_url(0)).await.unwrap();
    write_range(&mut on_a, "ev", "e", 0..60).await;
    let want: BTreeSet<String> = (0..60).map(|i| format!("e{i}")).collect();
    for (i, cl) in subs.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = event_keys(&cl.other, "ev");
        while seen != want && Instant::now() < deadline {
            if let Ok(m) = cl
                .recv(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                seen.extend(event_keys(std::slice::from_ref(&m), "ev"));
            }
        }
        let missing: Vec<_> = want.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "node n{} missed SERVER_EVENTs for {missing:?}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_topic_messages_published_on_one_node_reach_other_nodes_in_publish_order() {
    let c = formed("");
    let mut subs = Vec::new();
    for i in [1, 2] {
        let mut cl = Client::connect(&c.ws_url(i)).await.unwrap();
        cl.send(&Message::TopicSub {
            payload: TopicRef {
                topic: "news".into(),
            },
        })
        .await
        .unwrap();
        subs.push(cl);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut on_a = Client::connect(&c.ws_url(0)).await.unwrap();
    for i in 0..50 {
        on_a.send(&Message::TopicPub {
            payload: TopicPub {
                topic: "news".into(),
                data: RawMsgpack::from_value(&rmpv::Value::from(i)),
            },
        })
        .await
        .unwrap();
    }
    for (n, cl) in subs.iter_mut().enumerate() {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 50 && Instant::now() < deadline {
            if let Ok(Message::TopicMessage { payload }) = cl
                .recv(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                if payload.topic == "news" {
                    got.push(payload.data.to_value().unwrap().as_i64().unwrap());
                }
            }
        }
        let want: Vec<i64> = (0..50).collect();
        assert_eq!(
            got,
            want,
            "subscriber on n{} got the messages in publish order",
            n + 2
        );
    }
}

fn registrations(c: &Cluster, i: usize) -> Option<u64> {
    c.metrics(i)?
        .lines()
        .find(|l| l.starts_with("hangar_cluster_live_query_registrations"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Waits (at most 10 s) until node `i` reports `want` live-query
/// registrations (the gauge is refreshed once a second).
async fn wait_registrations(c: &Cluster, i: usize, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = registrations(c, i);
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node n{} reports {now:?} live-query registrations, expected {want}",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_after_kill9_a_live_query_still_covers_every_surviving_key_once() {
    // Reads at STRONG go to every partition's owner, so each coordinator
    // registers on every node that owns partitions (at EVENTUAL it would
    // register only on the replicas it chooses; see t47).
    let mut c = Cluster::new(
        3,
        &Settings {
            cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n\
                           default_read_consistency = \"STRONG\"\n"
                .into(),
            ..Settings::default()
        },
    );
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    let mut on_a = Client::connect(&c.ws_url(0)).await.unwrap();
    write_range(&mut on_a, "m", "k", 0..300).await;
    let mut live = Client::connect(&c.ws_url(0)).await.unwrap();
    let first = subscribe_with(&mut live, "live", "m", &json!({})).await;
    assert_eq!(first.len(), 300);
    let mut view = View {
        keys: first.into_iter().collect(),
        ..View::default()
    };
    // A live query coordinated by the node about to die: its registrations
    // on the survivors must expire.
    let mut doomed = Client::connect(&c.ws_url(2)).await.unwrap();
    subscribe_with(&mut doomed, "d", "m", &json!({})).await;
    // n1 holds two registrations: its own query's and n3's.
    wait_registrations(&c, 0, 2).await;

    c.kill9(2);
    live.wait_for(Duration::from_secs(15), |m| {
        matches!(m, Message::PartitionMap { .. }).then_some(())
    })
    .await
    .expect("a new partition map after the kill");
    // The coordinator re-gathers after its table changes; then new writes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_range(&mut on_a, "m", "n", 0..100).await;
    let want: BTreeSet<String> = (0..300)
        .map(|i| format!("k{i}"))
        .chain((0..100).map(|i| format!("n{i}")))
        .collect();
    let ok = view
        .follow(&mut live, "live", Duration::from_secs(15), |v| {
            v.keys == want
        })
        .await;
    let missing: Vec<_> = want.difference(&view.keys).take(10).collect();
    assert!(ok, "view has {} keys, missing {missing:?}", view.keys.len());
    assert!(view.duplicates.is_empty(), "{:?}", view.duplicates);

    // The dead coordinator's registration on n1 expires; n1 keeps its own.
    wait_registrations(&c, 0, 1).await;

    let mut on_b = Client::connect(&c.ws_url(1)).await.unwrap();
    let page = subscribe_with(&mut on_b, "fresh", "m", &json!({})).await;
    let distinct: BTreeSet<String> = page.iter().cloned().collect();
    assert_eq!(page.len(), distinct.len(), "no key twice");
    assert_eq!(distinct, want);

    // n1 now holds n2's registration and its own; QUERY_UNSUB on n1 tears
    // its own down everywhere.
    wait_registrations(&c, 0, 2).await;
    live.send(&Message::QueryUnsub {
        payload: QueryUnsub {
            query_id: "live".into(),
        },
    })
    .await
    .unwrap();
    wait_registrations(&c, 0, 1).await;
    wait_registrations(&c, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t45_a_live_query_keeps_covering_every_key_once_across_a_node_joining() {
    let mut c = Cluster::new(3, &settings(""));
    c.start(0);
    c.start(1);
    c.wait_formed(&[0, 1], FORM).expect("two nodes formed");
    let mut live = Client::connect(&c.ws_url(0)).await.unwrap();
    assert!(subscribe_with(&mut live, "live", "m", &json!({}))
        .await
        .is_empty());
    // n3 joins: the table changes and the live query is gathered again
    // (n3 included); later writes still arrive exactly once.
    c.start(2);
    c.wait_formed(&[0, 1, 2], FORM).expect("n3 joined");
    let mut on_b = Client::connect(&c.ws_url(1)).await.unwrap();
    write_range(&mut on_b, "m", "j", 0..200).await;
    let want: BTreeSet<String> = (0..200).map(|i| format!("j{i}")).collect();
    let mut view = View::default();
    let ok = view
        .follow(&mut live, "live", Duration::from_secs(15), |v| {
            v.keys == want
        })
        .await;
    let missing: Vec<_> = want.difference(&view.keys).take(10).collect();
    assert!(
        ok,
        "view has {} of 200 keys, missing {missing:?}",
        view.keys.len()
    );
    assert!(view.duplicates.is_empty(), "{:?}", view.duplicates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_search_on_any_node_finds_documents_held_by_other_nodes() {
    let c = formed("[storage.full_text_search.docs]\nfields = [\"text\"]\n");
    let mut on_a = Client::connect(&c.ws_url(0)).await.unwrap();
    let mut ops = Vec::new();
    for i in 0..90u64 {
        let text = if i % 10 == 0 {
            format!("needle number {i}")
        } else {
            format!("hay stack {i}")
        };
        let id = on_a.next_id();
        ops.push(put(
            &id,
            "docs",
            &format!("d{i}"),
            &json!({ "text": text }),
            1 + i,
            "w",
        ));
    }
    let ack = on_a
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .unwrap();
    assert!(ack.results.unwrap().iter().all(|r| r.success));
    let want: BTreeSet<String> = (0..90).step_by(10).map(|i| format!("d{i}")).collect();
    for i in 0..3 {
        let mut cl = Client::connect(&c.ws_url(i)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            cl.send(&Message::Search {
                payload: Search {
                    request_id: "s".into(),
                    map_name: "docs".into(),
                    query: "needle".into(),
                    options: Some(SearchOptions {
                        limit: Some(50),
                        ..SearchOptions::default()
                    }),
                    consistency: None,
                },
            })
            .await
            .unwrap();
            let resp = cl
                .wait_for(Duration::from_secs(10), |m| match m {
                    Message::SearchResp { payload } => Some(payload.clone()),
                    _ => None,
                })
                .await
                .unwrap();
            assert!(resp.error.is_none(), "{:?}", resp.error);
            let keys: Vec<String> = resp.results.iter().map(|r| r.key.clone()).collect();
            let got: BTreeSet<String> = keys.iter().cloned().collect();
            assert_eq!(keys.len(), got.len(), "no hit twice: {keys:?}");
            if got == want {
                break;
            }
            // The index catches up with replicated writes asynchronously.
            assert!(
                Instant::now() < deadline,
                "search on n{} found {got:?}, want {want:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
