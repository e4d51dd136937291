//! Multi-process tests of read replicas: with `backup_count = 2` on three
//! nodes every node holds every partition, so an EVENTUAL read (live query,
//! search, Merkle sync) on a node is answered from its own replicas alone,
//! while a STRONG read (asked per request, or configured per map with
//! `[cluster.map_read_consistency]`) is answered by each partition's owner;
//! after `kill -9` of a node, reads at both levels still return every key.
//!
//! Who served is read from the coordinator's
//! `hangar_cluster_reads_total{replica, role}`: at EVENTUAL the other nodes'
//! counters stay 0 and the rows are all there; at STRONG the other nodes
//! serve as owners, never as backups.
//!
//! Negative control: with reads sent to owners only (`backups_may_serve`
//! in `plugins/cluster/src/scatter/replicas.rs` returning false), `t10`
//! fails at its first EVENTUAL check: n1 and n3 served reads as owners.
//!
//! Real `hangar` processes on loopback (see `hangar_tests::cluster_harness`);
//! they need the debug binary and plugins that `cargo test --workspace`
//! builds. Each test bounds its waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{
    PartitionMap, PartitionMapRequest, QuerySub, Search, SearchOptions,
};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use hangar_tests::merkle_walk::walk_at;
use serde_json::json;

const FORM: Duration = Duration::from_secs(30);
const ANSWER: Duration = Duration::from_secs(15);
const KEYS: u64 = 300;
/// Read at EVENTUAL unless a request asks otherwise.
const MAP: &str = "m";
/// Read at STRONG by configuration.
const STRONG_MAP: &str = "strong";
const DOCS: &str = "docs";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn formed() -> Cluster {
    let mut c = Cluster::new(
        3,
        &Settings {
            cluster_toml: format!(
                "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\nbackup_count = 2\n\
                 [cluster.map_read_consistency]\n{STRONG_MAP} = \"STRONG\"\n"
            ),
            top_toml: format!("[storage.full_text_search.{DOCS}]\nfields = [\"text\"]\n"),
            ..Settings::default()
        },
    );
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    c
}

async fn partition_map(cl: &mut Client) -> PartitionMap {
    cl.send(&Message::PartitionMapRequest {
        payload: PartitionMapRequest::default(),
    })
    .await
    .expect("send");
    cl.wait_for(ANSWER, |m| match m {
        Message::PartitionMap { payload } => Some(payload.clone()),
        _ => None,
    })
    .await
    .expect("PARTITION_MAP")
}

/// Waits until node `i`'s map lists every partition with `holders` (owner
/// and backups; pending holders are not listed) and no other node.
async fn wait_holders(c: &Cluster, i: usize, holders: &[&str]) {
    let want: BTreeSet<String> = holders.iter().map(ToString::to_string).collect();
    let mut cl = Client::connect(&c.ws_url(i)).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = partition_map(&mut cl).await;
        let bad = m
            .partitions
            .iter()
            .filter(|p| {
                let got: BTreeSet<String> = std::iter::once(p.owner_node_id.clone())
                    .chain(p.backup_node_ids.iter().cloned())
                    .collect();
                got != want
            })
            .count();
        if bad == 0 && m.partitions.len() == 271 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i}: {bad} partitions are not held by exactly {want:?} (map version {})",
            m.version
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The owners of node `i`'s map, by partition.
async fn owners(c: &Cluster, i: usize) -> BTreeMap<u32, String> {
    let mut cl = Client::connect(&c.ws_url(i)).await.expect("connect");
    partition_map(&mut cl)
        .await
        .partitions
        .into_iter()
        .map(|p| (p.partition_id, p.owner_node_id))
        .collect()
}

/// Writes `KEYS` keys to `map` through node 0 at STRONG (every backup has
/// them when acknowledged); every tenth document mentions "needle".
async fn write(c: &Cluster, map: &str) -> BTreeSet<String> {
    let mut cl = Client::connect(&c.ws_url(0)).await.expect("connect");
    let mut ops = Vec::new();
    let mut keys = BTreeSet::new();
    for i in 0..KEYS {
        let key = format!("{map}-{i}");
        let text = if i % 10 == 0 { "needle" } else { "hay" };
        let id = cl.next_id();
        ops.push(put(
            &id,
            map,
            &key,
            &json!({ "v": i, "text": format!("{text} {i}") }),
            1 + i,
            "w",
        ));
        keys.insert(key);
    }
    let ack = cl
        .batch(ops, "PERSISTED", Some("STRONG"), 10_000)
        .await
        .expect("ack");
    let failed = ack
        .results
        .expect("results")
        .iter()
        .filter(|r| !r.success)
        .count();
    assert_eq!(failed, 0, "writes to {map} failed");
    keys
}

/// `hangar_cluster_reads_total` on node `i`, by (replica, role).
fn reads(c: &Cluster, i: usize) -> BTreeMap<(String, String), f64> {
    let text = c.metrics(i).expect("metrics");
    let label = |l: &str, name: &str| -> Option<String> {
        let start = l.find(&format!("{name}=\""))? + name.len() + 2;
        Some(l[start..].split('"').next()?.to_string())
    };
    text.lines()
        .filter(|l| l.starts_with("hangar_cluster_reads_total{"))
        .filter_map(|l| {
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some(((label(l, "replica")?, label(l, "role")?), v))
        })
        .collect()
}

/// How many more reads `replica` served in `role` between two readings.
fn served(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
    replica: &str,
    role: &str,
) -> f64 {
    let k = (replica.to_string(), role.to_string());
    after.get(&k).copied().unwrap_or(0.0) - before.get(&k).copied().unwrap_or(0.0)
}

/// Reads served by nodes other than `me`, any role.
fn by_others(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
    me: &str,
) -> f64 {
    NODES
        .iter()
        .filter(|n| **n != me)
        .flat_map(|n| [(*n, "owner"), (*n, "backup")])
        .map(|(n, r)| served(before, after, n, r))
        .sum()
}

/// The keys of the first page of a live query on all of `map`.
async fn live_keys(
    cl: &mut Client,
    id: &str,
    map: &str,
    consistency: Option<&str>,
) -> BTreeSet<String> {
    cl.send(&Message::QuerySub {
        payload: QuerySub {
            query_id: id.into(),
            map_name: map.into(),
            query: rmpv::Value::Map(vec![]),
            fields: None,
            consistency: consistency.map(ToString::to_string),
        },
    })
    .await
    .expect("send");
    let q = id.to_string();
    let rows: Vec<String> = cl
        .wait_for(ANSWER, |m| match m {
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
        .expect("QUERY_RESP");
    let set: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(set.len(), rows.len(), "a key came twice");
    set
}

/// The keys a search for "needle" in `DOCS` finds.
async fn search(cl: &mut Client, consistency: Option<&str>) -> BTreeSet<String> {
    cl.send(&Message::Search {
        payload: Search {
            request_id: "s".into(),
            map_name: DOCS.into(),
            query: "needle".into(),
            options: Some(SearchOptions {
                limit: Some(100),
                ..SearchOptions::default()
            }),
            consistency: consistency.map(ToString::to_string),
        },
    })
    .await
    .expect("send");
    let resp = cl
        .wait_for(ANSWER, |m| match m {
            Message::SearchResp { payload } => Some(payload.clone()),
            _ => None,
        })
        .await
        .expect("SEARCH_RESP");
    assert!(resp.error.is_none(), "{:?}", resp.error);
    let keys: Vec<String> = resp.results.iter().map(|r| r.key.clone()).collect();
    let set: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "a hit came twice: {keys:?}");
    set
}

/// Searches until every needle is found (the index follows replicated
/// writes asynchronously), at most 10 s.
async fn search_all(cl: &mut Client, consistency: Option<&str>, want: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = search(cl, consistency).await;
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "search at {consistency:?} found {} of {} needles",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn needles(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| {
            k.rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n % 10 == 0)
        })
        .cloned()
        .collect()
}

/// Fails unless `got` is `want`, naming how many keys are missing or extra
/// and the first few of each.
#[track_caller]
fn same_keys(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = want.difference(got).collect();
    let extra: Vec<&String> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} of {} keys; missing {} (first {:?}), extra {} (first {:?})",
        got.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

fn walked(w: &hangar_tests::merkle_walk::Walk) -> BTreeSet<String> {
    w.lww.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_eventual_reads_stay_on_local_replicas_and_strong_reads_go_to_owners() {
    let c = formed();
    for i in 0..3 {
        wait_holders(&c, i, &NODES).await;
    }
    let m_keys = write(&c, MAP).await;
    let strong_keys = write(&c, STRONG_MAP).await;
    let docs = write(&c, DOCS).await;
    let want_needles = needles(&docs);
    let me = "n2";
    let mut cl = Client::connect(&c.ws_url(1)).await.expect("connect");

    // EVENTUAL (the default): n2 answers from its own replicas.
    let before = reads(&c, 1);
    same_keys(
        &live_keys(&mut cl, "e1", MAP, None).await,
        &m_keys,
        "live query e1",
    );
    search_all(&mut cl, None, &want_needles).await;
    let w = walk_at(&mut cl, MAP, false, None, ANSWER)
        .await
        .expect("walk");
    same_keys(&walked(&w), &m_keys, "Merkle walk");
    // The per-map STRONG setting is overridden by the request's EVENTUAL.
    same_keys(
        &live_keys(&mut cl, "e2", STRONG_MAP, Some("EVENTUAL")).await,
        &strong_keys,
        "live query e2",
    );
    let after = reads(&c, 1);
    assert_eq!(
        by_others(&before, &after, me),
        0.0,
        "EVENTUAL reads on n2 went to other replicas: {after:?}"
    );
    assert!(served(&before, &after, me, "owner") >= 4.0, "{after:?}");
    assert!(served(&before, &after, me, "backup") >= 4.0, "{after:?}");

    // STRONG per request: the owners serve, never a backup.
    let owned_by: BTreeSet<String> = owners(&c, 1).await.into_values().collect();
    assert_eq!(owned_by.len(), 3, "every node owns partitions");
    let before = reads(&c, 1);
    same_keys(
        &live_keys(&mut cl, "s1", MAP, Some("STRONG")).await,
        &m_keys,
        "live query s1",
    );
    search_all(&mut cl, Some("STRONG"), &want_needles).await;
    let w = walk_at(&mut cl, MAP, false, Some("STRONG"), ANSWER)
        .await
        .expect("walk");
    same_keys(&walked(&w), &m_keys, "Merkle walk");
    let after = reads(&c, 1);
    for n in NODES {
        assert!(
            served(&before, &after, n, "owner") >= 3.0,
            "{n} served no STRONG read as owner: {after:?}"
        );
        assert_eq!(
            served(&before, &after, n, "backup"),
            0.0,
            "{n} served a STRONG read as backup: {after:?}"
        );
    }

    // STRONG by the map's configuration, with no field on the request.
    let before = reads(&c, 1);
    same_keys(
        &live_keys(&mut cl, "s2", STRONG_MAP, None).await,
        &strong_keys,
        "live query s2",
    );
    let w = walk_at(&mut cl, STRONG_MAP, false, None, ANSWER)
        .await
        .expect("walk");
    same_keys(&walked(&w), &strong_keys, "Merkle walk");
    let after = reads(&c, 1);
    for n in ["n1", "n3"] {
        assert!(served(&before, &after, n, "owner") >= 2.0, "{after:?}");
        assert_eq!(served(&before, &after, n, "backup"), 0.0, "{after:?}");
    }

    // A consistency that does not exist is refused, naming it.
    cl.send(&Message::QuerySub {
        payload: QuerySub {
            query_id: "bad".into(),
            map_name: MAP.into(),
            query: rmpv::Value::Map(vec![]),
            fields: None,
            consistency: Some("SOMETIMES".into()),
        },
    })
    .await
    .expect("send");
    let err = cl
        .wait_for(ANSWER, |m| match m {
            Message::QueryResp { payload } if payload.query_id == "bad" => payload.error.clone(),
            _ => None,
        })
        .await
        .expect("QUERY_RESP");
    assert!(
        err.contains("SOMETIMES") && err.contains("EVENTUAL, QUORUM, STRONG"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_reads_complete_after_kill_9_of_a_node() {
    let mut c = formed();
    for i in 0..3 {
        wait_holders(&c, i, &NODES).await;
    }
    let keys = write(&c, MAP).await;
    let docs = write(&c, DOCS).await;
    let want_needles = needles(&docs);
    c.kill9(2);
    let mut cl = Client::connect(&c.ws_url(0)).await.expect("connect");

    // EVENTUAL: n1 holds every partition; the dead node is never asked.
    let before = reads(&c, 0);
    same_keys(
        &live_keys(&mut cl, "e", MAP, None).await,
        &keys,
        "live query e",
    );
    search_all(&mut cl, None, &want_needles).await;
    let w = walk_at(&mut cl, MAP, false, None, ANSWER)
        .await
        .expect("walk");
    same_keys(&walked(&w), &keys, "Merkle walk");
    assert_eq!(by_others(&before, &reads(&c, 0), "n1"), 0.0);

    // STRONG: the dead owner's partitions are served once the table moves
    // them to a survivor (the Merkle gather waits for that by itself).
    let w = walk_at(&mut cl, MAP, false, Some("STRONG"), ANSWER)
        .await
        .expect("STRONG walk after kill -9");
    same_keys(&walked(&w), &keys, "Merkle walk");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    loop {
        round += 1;
        let got = live_keys(&mut cl, &format!("s{round}"), MAP, Some("STRONG")).await;
        if got == keys {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "STRONG live query after kill -9 has {} of {} keys",
            got.len(),
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    search_all(&mut cl, Some("STRONG"), &want_needles).await;
    let after = owners(&c, 0).await;
    assert!(
        after.values().all(|o| o != "n3"),
        "the dead node still owns partitions"
    );
}
