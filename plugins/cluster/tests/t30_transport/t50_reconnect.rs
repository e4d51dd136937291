//! A peer that dies fails what waits on it at once; one that comes back on
//! the same port is reached again.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hangar_cluster::transport::{Channel, TransportError};

use crate::support::{config, eventually, logs, node, start, Node};

const LONG: Duration = Duration::from_secs(10);
const T: Duration = Duration::from_secs(2);

/// Starts a node on `addr`, retrying while the old listener is closing.
async fn restart_on(addr: std::net::SocketAddr, id: &str) -> Node {
    let mut cfg = config("c", id);
    cfg.bind = addr;
    let deadline = Instant::now() + T;
    loop {
        match start(cfg.clone()).await {
            Ok(n) => return n,
            Err(TransportError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("restart on {addr}: {e}"),
        }
    }
}

#[tokio::test]
async fn t50_peer_death_fails_pending_request_fast_then_reconnects() {
    logs();
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let b_addr = b.addr();
    let transport = a.transport.clone();
    let pending = tokio::spawn(async move {
        transport
            .request(b_addr, Channel::Raft, Bytes::from_static(b"sleep"), LONG)
            .await
    });
    assert!(eventually(T, || b.inbound.requests.lock().len() == 1).await);

    let died = Instant::now();
    b.transport.shutdown();
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err, TransportError::Disconnected { addr: b_addr });
    assert!(
        died.elapsed() < Duration::from_secs(1),
        "{:?}",
        died.elapsed()
    );
    assert!(eventually(T, || a.transport.connected_peers().is_empty()).await);

    let b2 = restart_on(b_addr, "b2").await;
    a.transport
        .send(b_addr, Channel::Gossip, Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert!(eventually(T, || b2.inbound.message_count() == 1).await);
    let got = a
        .transport
        .request(b_addr, Channel::Raft, Bytes::from_static(b"r"), T)
        .await
        .unwrap();
    assert_eq!(&got[..], b"b2/raft/r");
}

#[tokio::test]
async fn t50_local_shutdown_fails_pending_request_with_shut_down() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let (transport, to) = (a.transport.clone(), b.addr());
    let pending = tokio::spawn(async move {
        transport
            .request(to, Channel::Query, Bytes::from_static(b"sleep"), LONG)
            .await
    });
    assert!(eventually(T, || b.inbound.requests.lock().len() == 1).await);
    let stopped = Instant::now();
    a.transport.shutdown();
    assert_eq!(
        pending.await.unwrap().unwrap_err(),
        TransportError::ShutDown
    );
    assert!(stopped.elapsed() < Duration::from_secs(1));
    // b's handler, whose answer can no longer be delivered, is dropped.
    assert!(eventually(T, || b.inbound.abandoned.load(Ordering::SeqCst) == 1).await);
}

#[tokio::test]
async fn t50_request_to_nothing_fails_at_the_first_dial() {
    // A port nobody listens on (bound, then released).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = node("c", "a").await;
    let started = Instant::now();
    let err = a
        .transport
        .request(addr, Channel::Control, Bytes::new(), LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < T);
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn t50_messages_queued_while_the_peer_is_down_arrive_when_it_starts() {
    logs();
    let later = free_port();
    let a = node("c", "a").await;
    a.transport
        .send(later, Channel::Gossip, Bytes::from_static(b"early"))
        .await
        .unwrap();
    // A few dials fail and back off meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = restart_on(later, "b").await;
    // The next dial comes within the backoff step then (at most 800 ms).
    assert!(eventually(2 * T, || b.inbound.message_count() == 1).await);
}

#[tokio::test(start_paused = true)]
async fn t50_unreachable_peer_has_its_queue_dropped_after_repeated_failures() {
    let nobody = free_port();
    let mut cfg = config("c", "a");
    cfg.peer_queue_frames = 2;
    let a = start(cfg).await.unwrap();
    let send = || {
        a.transport
            .try_send(nobody, Channel::Gossip, Bytes::from_static(b"m"))
    };
    // One frame taken for the first dial, two in the queue, then full.
    let mut accepted = 0;
    while send().is_ok() {
        accepted += 1;
        assert!(accepted <= 3, "the queue bound holds");
        tokio::task::yield_now().await;
    }
    assert!(matches!(send(), Err(TransportError::Full { .. })));
    // Ten failed dials with backoff take about 12 s; then the frames go.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(send(), Ok(()), "the queue was emptied");
}
