//! Multi-process tests of client Merkle sync over the whole cluster: on
//! every node, a client that walks the tree from `SYNC_INIT` down to every
//! leaf (LWW and OR maps) ends with every key of the cluster, every node
//! answers the same root, and that root is the one a lone tree over all
//! the records has; after `kill -9` of a node the walk from a survivor
//! still collects every key; with two of three nodes gone (no majority to
//! move their partitions) the walk gets `ERROR`, not part of the tree.
//! `ORMAP_DIFF_REQUEST` on any node answers every asked key's records,
//! wherever its partition is held.
//!
//! The negative control is the partition table itself: each node holds
//! (owns or backs up) only part of the partitions, so the keys of the
//! others, which a walk over the node's own storage could not return, are
//! listed and must be in the walk. (Run against the host's former
//! local-only answers, `t10` found 351 of 500 LWW keys on a node.)
//!
//! Real `hangar` processes on loopback (see `hangar_tests::cluster_harness`);
//! they need the debug binary and plugins that `cargo test --workspace`
//! builds. Each test bounds its waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hangar_core::{partition_of, Timestamp};
use hangar_host::protocol::messages::{
    ClientOp, OrMapDiffRequest, PartitionMap, PartitionMapRequest, WireOrRecord,
};
use hangar_host::protocol::{Message, RawMsgpack};
use hangar_tests::cluster_harness::{put, Client, Cluster, Settings};
use hangar_tests::merkle_walk::{walk, Walk};
use serde_json::json;

const FORM: Duration = Duration::from_secs(30);
const ANSWER: Duration = Duration::from_secs(20);
const LWW: &str = "sync-lww";
const OR: &str = "sync-or";

fn formed() -> Cluster {
    let mut c = Cluster::new(
        3,
        &Settings {
            cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
            ..Settings::default()
        },
    );
    c.start_all();
    c.wait_formed(&[0, 1, 2], FORM).expect("formed");
    c
}

fn or_record(i: u64, millis: u64, node: &str) -> WireOrRecord {
    let timestamp = Timestamp::new(millis, 0, node);
    WireOrRecord {
        value: RawMsgpack::from_value(&rmpv::Value::from(i)),
        tag: timestamp.to_string(),
        timestamp,
        ttl_ms: None,
    }
}

fn or_op(
    id: String,
    key: &str,
    op: &str,
    rec: Option<WireOrRecord>,
    tag: Option<String>,
) -> ClientOp {
    ClientOp {
        id: Some(id),
        map_name: OR.into(),
        key: key.into(),
        op_type: Some(op.into()),
        record: None,
        or_record: rec.map(Some),
        or_tag: tag.map(Some),
        write_concern: None,
        timeout: None,
        consistency: None,
    }
}

async fn write(cl: &mut Client, ops: Vec<ClientOp>) {
    let ack = cl
        .batch(ops, "PERSISTED", Some("QUORUM"), 10_000)
        .await
        .expect("ack");
    let failed: Vec<_> = ack
        .results
        .expect("results")
        .into_iter()
        .filter(|r| !r.success)
        .collect();
    assert!(failed.is_empty(), "writes failed: {failed:?}");
}

/// What was written: LWW keys with their millis, OR keys with their tags.
#[derive(Default)]
struct Written {
    lww: BTreeMap<String, u64>,
    or: BTreeMap<String, BTreeSet<String>>,
    removed: BTreeSet<String>,
}

/// Writes `lww` LWW keys and `or` OR keys, spread over the nodes' clients
/// by key index: every third OR key gets a second record, then one record
/// of each of the first three such keys is removed.
async fn write_all(clients: &mut [Client], lww: u64, or: u64) -> Written {
    let mut w = Written::default();
    let n = clients.len() as u64;
    for (c, cl) in clients.iter_mut().enumerate() {
        let ops: Vec<ClientOp> = (0..lww)
            .filter(|i| i % n == c as u64)
            .map(|i| {
                let k = format!("k{i}");
                w.lww.insert(k.clone(), 1_000 + i);
                put(&cl.next_id(), LWW, &k, &json!({ "v": i }), 1_000 + i, "w")
            })
            .collect();
        write(cl, ops).await;
        let mut ops = Vec::new();
        for i in (0..or).filter(|i| i % n == c as u64) {
            let k = format!("o{i}");
            let mut recs = vec![or_record(i, 2_000 + i, "w")];
            if i % 3 == 0 {
                recs.push(or_record(i + 1_000, 3_000 + i, "x"));
            }
            for r in recs {
                w.or.entry(k.clone()).or_default().insert(r.tag.clone());
                ops.push(or_op(cl.next_id(), &k, "OR_ADD", Some(r), None));
            }
        }
        write(cl, ops).await;
    }
    let cl = &mut clients[0];
    for i in [0u64, 3, 6].into_iter().filter(|i| *i < or) {
        let k = format!("o{i}");
        let tag = Timestamp::new(3_000 + i, 0, "x").to_string();
        w.or.get_mut(&k).expect("written").remove(&tag);
        w.removed.insert(tag.clone());
        let op = or_op(cl.next_id(), &k, "OR_REMOVE", None, Some(tag));
        write(cl, vec![op]).await;
    }
    w
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

/// Walks both maps on `cl`'s node and checks the walk against `w`.
async fn walk_node(cl: &mut Client, node: &str, w: &Written) -> (Walk, Walk) {
    let lww = walk(cl, LWW, false, ANSWER)
        .await
        .unwrap_or_else(|e| panic!("{node}: {e}"));
    let or = walk(cl, OR, true, ANSWER)
        .await
        .unwrap_or_else(|e| panic!("{node}: {e}"));
    let got: BTreeMap<String, u64> = lww
        .lww
        .iter()
        .map(|(k, r)| (k.clone(), r.timestamp.millis))
        .collect();
    let missing: Vec<_> = w
        .lww
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(10)
        .collect();
    assert_eq!(
        got.len(),
        w.lww.len(),
        "{node}: the LWW walk has {} keys of {}, missing {missing:?}",
        got.len(),
        w.lww.len()
    );
    assert_eq!(got, w.lww, "{node}: every LWW key with its write");
    let tags: BTreeMap<String, BTreeSet<String>> = or
        .or
        .iter()
        .map(|(k, rs)| (k.clone(), rs.iter().map(|r| r.tag.clone()).collect()))
        .collect();
    assert_eq!(tags, w.or, "{node}: every OR key with its live tags");
    assert!(
        w.removed.is_subset(&or.tombstones),
        "{node}: the removed tags come as tombstones: {:?}",
        or.tombstones
    );
    assert_eq!(
        lww.root,
        lww.computed_root(),
        "{node}: LWW root of all records"
    );
    assert_eq!(
        or.root,
        or.computed_root(),
        "{node}: OR root of all records"
    );
    (lww, or)
}

/// `ORMAP_DIFF_REQUEST` for every written OR key and one never written, on
/// `cl`'s node: each key comes back with its live tags, the unknown one
/// with none, and the removed tags as tombstones.
async fn diff_node(cl: &mut Client, node: &str, w: &Written) {
    let mut keys: Vec<String> = w.or.keys().cloned().collect();
    keys.push("never-written".into());
    cl.send(&Message::OrMapDiffRequest {
        payload: OrMapDiffRequest {
            map_name: OR.into(),
            keys: keys.clone(),
        },
    })
    .await
    .expect("send");
    let entries = cl
        .wait_for(ANSWER, |m| match m {
            Message::OrMapDiffResponse { payload } if payload.map_name == OR => {
                Some(Ok(payload.entries.clone()))
            }
            Message::Error { payload } => Some(Err(payload.message.clone())),
            _ => None,
        })
        .await
        .expect("ORMAP_DIFF_RESPONSE")
        .unwrap_or_else(|e| panic!("{node}: ORMAP_DIFF_REQUEST refused: {e}"));
    let got: BTreeMap<String, BTreeSet<String>> = entries
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                e.records.iter().map(|r| r.tag.clone()).collect(),
            )
        })
        .collect();
    let mut want = w.or.clone();
    want.insert("never-written".into(), BTreeSet::new());
    assert_eq!(got, want, "{node}: the diff has every key's live tags");
    let with_removed = entries.iter().find(|e| e.key == "o0").expect("o0 asked");
    assert!(
        w.removed
            .iter()
            .all(|t| with_removed.tombstones.contains(t)),
        "{node}: tombstones {:?}",
        with_removed.tombstones
    );
}

/// Keys of `keys` whose partition `node` neither owns nor backs up in `pm`.
fn not_held_by<'a>(
    pm: &PartitionMap,
    node: &str,
    keys: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let held: BTreeSet<u32> = pm
        .partitions
        .iter()
        .filter(|p| p.owner_node_id == node || p.backup_node_ids.iter().any(|b| b == node))
        .map(|p| p.partition_id)
        .collect();
    keys.filter(|k| !held.contains(&partition_of(k)))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_merkle_walk_on_any_node_collects_every_key_of_the_cluster() {
    let c = formed();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::connect(&c.ws_url(i)).await.unwrap());
    }
    let w = write_all(&mut clients, 500, 60).await;
    let pm = partition_map(&mut clients[0]).await;
    let mut roots = BTreeSet::new();
    for (i, cl) in clients.iter_mut().enumerate() {
        let node = c.nodes[i].id.clone();
        // The control: keys this node's storage does not hold at all.
        let lww_elsewhere = not_held_by(&pm, &node, w.lww.keys());
        let or_elsewhere = not_held_by(&pm, &node, w.or.keys());
        assert!(
            !lww_elsewhere.is_empty() && !or_elsewhere.is_empty(),
            "{node} holds every partition; the test shows nothing"
        );
        let started = Instant::now();
        let (lww, or) = walk_node(cl, &node, &w).await;
        diff_node(cl, &node, &w).await;
        assert!(lww_elsewhere.iter().all(|k| lww.lww.contains_key(k)));
        assert!(or_elsewhere.iter().all(|k| or.or.contains_key(k)));
        eprintln!(
            "{node}: walked {} + {} requests in {} ms; {} LWW and {} OR keys are held only elsewhere",
            lww.requests,
            or.requests,
            started.elapsed().as_millis(),
            lww_elsewhere.len(),
            or_elsewhere.len()
        );
        roots.insert((lww.root, or.root));
    }
    assert_eq!(
        roots.len(),
        1,
        "every node answers the same roots: {roots:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_after_kill9_the_walk_from_a_survivor_still_collects_every_key() {
    let mut c = formed();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::connect(&c.ws_url(i)).await.unwrap());
    }
    let w = write_all(&mut clients, 300, 30).await;
    clients.truncate(2);
    c.kill9(2);
    let dead = c.nodes[2].id.clone();
    // Wait (bounded) for a table that gives the dead node nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pm = partition_map(&mut clients[0]).await;
        if pm.partitions.iter().all(|p| p.owner_node_id != dead) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead node still owns partitions after 30 s (version {})",
            pm.version
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut roots = BTreeSet::new();
    for (i, cl) in clients.iter_mut().enumerate() {
        let node = c.nodes[i].id.clone();
        let (lww, or) = walk_node(cl, &node, &w).await;
        roots.insert((lww.root, or.root));
    }
    assert_eq!(
        roots.len(),
        1,
        "both survivors answer the same roots: {roots:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_with_owners_gone_and_no_quorum_to_move_them_the_walk_fails_instead_of_answering_part()
{
    let mut c = formed();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::connect(&c.ws_url(i)).await.unwrap());
    }
    write_all(&mut clients, 90, 9).await;
    clients.truncate(1);
    // Two of three gone: no Raft majority, so the table never moves their
    // partitions; the survivor cannot gather their shares.
    c.kill9(1);
    c.kill9(2);
    let started = Instant::now();
    let err = walk(&mut clients[0], LWW, false, Duration::from_secs(30))
        .await
        .expect_err("a tree without two thirds of the partitions must not be answered");
    assert!(
        err.contains("ERROR") && err.contains("could not be gathered"),
        "a clear error: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "within the deadline: {:?}",
        started.elapsed()
    );
}
