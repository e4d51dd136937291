//! Cluster-wide locks under failure: clients on every node of a 3-node
//! cluster contend for two lock names while nodes, the Raft leader first,
//! are `kill -9`ed and restarted. Every grant is recorded (when its holder
//! learned of it and when it stopped holding) and the history goes through
//! `hangar_tests::lock_checker` (tokens only grow per name; never two
//! holders at once). The run must also keep granting: at least 20 grants,
//! both names, and grants after the last kill. Each holder writes its token
//! under the lock into the grid at QUORUM + PERSISTED; at the end (the killed nodes
//! back and their partitions moved to them with their data) every
//! acknowledged write is there.
//!
//! Bounded: about 30 s of contention, 4 kills.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_host::protocol::messages::{LockRelease, LockRequest};
use hangar_host::protocol::Message;
use hangar_tests::cluster_harness::{keys_on, put, Client, Cluster, Settings};
use hangar_tests::lock_checker::{check, Held};
use parking_lot::Mutex;
use serde_json::json;

const NAMES: [&str; 2] = ["alpha", "beta"];
const TTL_MS: u64 = 3_000;

#[derive(Default)]
struct Record {
    history: Vec<Held>,
    /// Keys written under a lock and acknowledged at QUORUM + PERSISTED.
    written: BTreeSet<String>,
    refused: u64,
    failed_requests: u64,
}

/// One client: connects to node `home` (or the next live one), and until
/// `until` takes a lock, writes its token, holds briefly and releases.
async fn contend(
    urls: Vec<String>,
    home: usize,
    me: String,
    start: Instant,
    until: Instant,
    rec: Arc<Mutex<Record>>,
) {
    let mut at = home;
    let mut n = 0u64;
    'connect: while Instant::now() < until {
        let Ok(mut cl) = Client::connect(&urls[at % urls.len()]).await else {
            at += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while Instant::now() < until {
            n += 1;
            let name = NAMES[usize::try_from(n).unwrap_or(0) % NAMES.len()];
            let rid = format!("{me}-{n}");
            // The lease starts no earlier than the request is sent.
            let requested = start.elapsed();
            if cl
                .send(&Message::LockRequest {
                    payload: LockRequest {
                        request_id: rid.clone(),
                        name: name.into(),
                        ttl: Some(TTL_MS),
                    },
                })
                .await
                .is_err()
            {
                at += 1;
                continue 'connect;
            }
            let answer = cl
                .wait_for(Duration::from_secs(15), |m| match m {
                    Message::LockGranted { payload } if payload.request_id == rid => {
                        Some(Some(payload.fencing_token))
                    }
                    Message::LockReleased { payload } if payload.request_id == rid => Some(None),
                    _ => None,
                })
                .await;
            let token = match answer {
                Ok(Some(t)) => t,
                Ok(None) => {
                    rec.lock().refused += 1;
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    continue;
                }
                Err(_) => {
                    // The node died (or never answered): whatever that
                    // request decided, this client never learned of it.
                    rec.lock().failed_requests += 1;
                    at += 1;
                    continue 'connect;
                }
            };
            let acquired = start.elapsed();
            // Under the lock: write the token at QUORUM + PERSISTED.
            let key = format!("{name}-{token}");
            let id = cl.next_id();
            let op = put(
                &id,
                "lockhist",
                &key,
                &json!({"holder": me, "token": token}),
                hangar_core::hlc::system_millis(),
                &me,
            );
            let wrote = cl.batch(vec![op], "PERSISTED", Some("QUORUM"), 5_000).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sent = cl
                .send(&Message::LockRelease {
                    payload: LockRelease {
                        request_id: Some(format!("{rid}-r")),
                        name: name.into(),
                        fencing_token: token,
                    },
                })
                .await;
            // Holding ends when the release is sent, or now if the
            // connection is gone (the node died under us), and at the
            // latest when the lease runs out (a slow write under the lock
            // can outlast it: the next holder's higher token is what
            // fences this one off). The lease began between the request
            // and the grant's arrival, so it ran out at the earliest
            // `requested + TTL`; a grant that took longer than the TTL to
            // arrive (the leader was killed meanwhile) may have lapsed
            // before its holder learned of it: an empty hold.
            let released = start
                .elapsed()
                .min(requested + Duration::from_millis(TTL_MS))
                .max(acquired);
            {
                let mut r = rec.lock();
                r.history.push(Held {
                    name: name.into(),
                    client: me.clone(),
                    token,
                    acquired,
                    released,
                });
                if wrote.is_ok_and(|a| a.results.is_some_and(|rs| rs.iter().all(|x| x.success))) {
                    r.written.insert(key);
                }
            }
            if sent.is_err() {
                at += 1;
                continue 'connect;
            }
            let rrid = format!("{rid}-r");
            if cl
                .wait_for(Duration::from_secs(15), |m| match m {
                    Message::LockReleased { payload } if payload.request_id == rrid => Some(()),
                    _ => None,
                })
                .await
                .is_err()
            {
                at += 1;
                continue 'connect;
            }
        }
    }
}

fn leader_index(c: &Cluster) -> Option<usize> {
    (0..c.nodes.len()).find_map(|i| {
        let h = c.health(i)?;
        let leader = h["cluster"]["leader"].as_str()?.to_string();
        c.nodes.iter().position(|n| n.id == leader)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t43_locks_hold_cluster_wide_while_nodes_and_the_leader_are_killed() {
    let settings = Settings {
        cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
        ..Settings::default()
    };
    let mut c = Cluster::new(3, &settings);
    c.start_all();
    c.wait_formed(&[0, 1, 2], Duration::from_secs(30))
        .expect("formed");
    let urls: Vec<String> = (0..3).map(|i| c.ws_url(i)).collect();
    let rec = Arc::new(Mutex::new(Record::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(28);
    let clients: Vec<_> = (0..6)
        .map(|k| {
            tokio::spawn(contend(
                urls.clone(),
                k % 3,
                format!("c{k}"),
                start,
                until,
                rec.clone(),
            ))
        })
        .collect();

    let mut kills = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let victim = if round % 2 == 0 {
            leader_index(&c).unwrap_or(round % 3)
        } else {
            (round + 1) % 3
        };
        let was = rec.lock().history.len();
        c.kill9(victim);
        kills.push((victim, start.elapsed(), was));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        c.start(victim);
        c.wait_formed(&[0, 1, 2], Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: not re-formed: {e}"));
    }
    for t in clients {
        t.await.expect("client task");
    }

    let rec = std::mem::take(&mut *rec.lock());
    eprintln!(
        "t43: {} grants, {} refused, {} requests lost with their node; kills (node, at, grants before): {kills:?}",
        rec.history.len(),
        rec.refused,
        rec.failed_requests
    );
    check(&rec.history).unwrap_or_else(|e| panic!("lock history broken: {e}"));
    assert!(
        rec.history.len() >= 20,
        "too few grants to mean anything: {}",
        rec.history.len()
    );
    let last_kill = kills.last().map_or(Duration::ZERO, |k| k.1);
    assert!(
        rec.history.iter().any(|h| h.acquired > last_kill),
        "no lock was granted after the last kill"
    );
    for name in NAMES {
        assert!(
            rec.history.iter().any(|h| h.name == name),
            "{name} never granted"
        );
    }

    // Every acknowledged write made under a lock is in the grid.
    let have = keys_on(&c, 0, "lockhist").await.expect("query");
    let missing: Vec<&String> = rec.written.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing: {missing:?}",
        missing.len(),
        rec.written.len()
    );
}
