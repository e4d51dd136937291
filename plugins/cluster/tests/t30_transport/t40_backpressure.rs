//! Backpressure: a peer that stops reading pushes back on its senders, and
//! memory stays bounded.

use std::time::Duration;

use bytes::Bytes;
use hangar_cluster::transport::{Channel, TransportError};
use tokio::net::TcpListener;

use crate::support::{config, logs, start, HelloAck, RawPeer, HELLO, HELLO_ACK};

const QUEUE: usize = 8;
const BODY: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_peer_that_never_reads_makes_try_send_full_and_send_wait() {
    logs();
    // A peer that completes the handshake, then never reads again.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck = listener.local_addr().unwrap();
    let (handshaken_tx, handshaken) = tokio::sync::oneshot::channel();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut raw = RawPeer::new(tcp);
        let hello = raw.recv().await.unwrap();
        assert_eq!(hello.0, HELLO);
        let ack = HelloAck {
            node_id: "stuck".into(),
            addr: stuck.to_string(),
        };
        raw.send(HELLO_ACK, 0, 2, &rmp_serde::to_vec_named(&ack).unwrap())
            .await;
        let _ = handshaken_tx.send(());
        // Hold the socket open, unread, until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(raw);
    });

    let mut cfg = config("c", "a");
    cfg.peer_queue_frames = QUEUE;
    let a = start(cfg).await.unwrap();
    let body = Bytes::from(vec![7u8; BODY]);
    a.transport
        .try_send(stuck, Channel::Replication, body.clone())
        .unwrap();
    handshaken.await.unwrap();

    // Fill the socket buffers and then the queue. Each round goes until
    // Full; the writer may free room while the kernel still takes bytes,
    // so repeat until a pause frees nothing.
    let mut queued = 1usize;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(
            rounds < 100,
            "the queue never stayed full ({queued} frames queued)"
        );
        loop {
            match a
                .transport
                .try_send(stuck, Channel::Replication, body.clone())
            {
                Ok(()) => queued += 1,
                Err(TransportError::Full { addr }) => {
                    assert_eq!(addr, stuck);
                    break;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
            assert!(
                queued < 1000,
                "memory must stay bounded: {queued} frames queued"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if matches!(
            a.transport
                .try_send(stuck, Channel::Replication, body.clone()),
            Err(TransportError::Full { .. })
        ) {
            break;
        }
        queued += 1;
    }
    // What was accepted is the queue plus what the kernel buffers hold: a
    // few MiB on loopback, far from the 1,000 frames (62 MiB) bound above.
    assert!(queued >= QUEUE, "{queued}");

    // `send` waits for room that never comes.
    let waited = tokio::time::timeout(
        Duration::from_millis(200),
        a.transport.send(stuck, Channel::Replication, body.clone()),
    )
    .await;
    assert!(waited.is_err(), "send must wait while the queue is full");

    // A request times out rather than hang.
    let err = a
        .transport
        .request(
            stuck,
            Channel::Query,
            Bytes::new(),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    peer.abort();
}

#[tokio::test]
async fn t40_request_that_timed_out_in_the_queue_is_never_sent() {
    // A peer whose handshake answer comes late, then reads everything.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut raw = RawPeer::new(tcp);
        assert_eq!(raw.recv().await.unwrap().0, HELLO);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ack = HelloAck {
            node_id: "slow".into(),
            addr: slow.to_string(),
        };
        raw.send(HELLO_ACK, 0, 2, &rmp_serde::to_vec_named(&ack).unwrap())
            .await;
        raw.recv().await.unwrap()
    });
    let a = start(config("c", "a")).await.unwrap();
    let err = a
        .transport
        .request(
            slow,
            Channel::Query,
            Bytes::from_static(b"late"),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    a.transport
        .send(slow, Channel::Gossip, Bytes::from_static(b"after"))
        .await
        .unwrap();
    let first = peer.await.unwrap();
    assert_eq!(
        (first.0, &first.3[..]),
        (crate::support::MESSAGE, &b"after"[..])
    );
}

/// A backup that takes replication requests and never answers them.
struct Stalled;

impl hangar_cluster::transport::Inbound for Stalled {
    fn on_message(&self, _: &hangar_cluster::transport::PeerInfo, _: Channel, _: Bytes) {}

    fn on_request(
        &self,
        _: hangar_cluster::transport::PeerInfo,
        _: Channel,
        _: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        Box::pin(futures::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_a_backup_that_never_answers_holds_at_most_queue_size_limit_changes() {
    use std::sync::Arc;

    use hangar_cluster::replication::{Replicator, Shipment};
    use hangar_cluster::settings::ReplicationConfig;
    use hangar_cluster::transport::Transport;
    use hangar_core::types::{LwwRecord, MapOp, Timestamp};
    use hangar_core::{KeyedOp, RawValue};

    logs();
    let backup = Transport::start(
        config("c", "backup"),
        Arc::new(Stalled),
        Arc::new(crate::support::Metrics::default()),
    )
    .await
    .unwrap();
    let owner = start(config("c", "owner")).await.unwrap();
    let replicator = Replicator::new(
        owner.transport.clone(),
        ReplicationConfig {
            queue_size_limit: 100,
            batch_size: 100,
            ack_timeout_ms: 1_500,
            // Each stalled batch holds its room for two request timeouts
            // (about 3 s), well past the fourth write's 1.5 s wait.
            max_retries: 1,
            ..ReplicationConfig::default()
        },
        owner.metrics.clone(),
    );
    let write = |n: usize, tag: usize| Shipment {
        node: "backup".into(),
        addr: backup.local_addr(),
        changes: (0..n)
            .map(|i| KeyedOp {
                map: "m".into(),
                key: format!("k{tag}-{i}").into(),
                op: MapOp::Lww(LwwRecord {
                    value: abi_stable::std_types::ROption::RSome(RawValue::encode(&1).unwrap()),
                    timestamp: Timestamp::new(1, 0, "owner"),
                    ttl_ms: abi_stable::std_types::ROption::RNone,
                }),
            })
            .collect(),
        counted: true,
    };
    let dropped = || {
        owner
            .metrics
            .counter("hangar_replication_dropped_total", &[("backup", "backup")])
    };
    // Three writes of 30 changes fit in the budget of 100 (EVENTUAL: ship
    // returns once queued); the backup never answers, so they stay.
    for t in 0..3 {
        replicator.ship(vec![write(30, t)], false, false).await;
    }
    assert_eq!(dropped(), 0.0);
    // A fourth does not fit: after `ack_timeout_ms` it is dropped, not
    // queued without bound.
    replicator.ship(vec![write(30, 3)], false, false).await;
    assert_eq!(dropped(), 30.0, "the write that found no room was dropped");
    // Once the stalled batch fails (two timeouts, ~3 s after it was sent),
    // its room is given back and a later write is queued again (this one
    // starts waiting at ~2.5 s and may wait until ~4 s).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    replicator.ship(vec![write(30, 4)], false, false).await;
    assert_eq!(dropped(), 30.0, "room came back when the requests failed");
}
