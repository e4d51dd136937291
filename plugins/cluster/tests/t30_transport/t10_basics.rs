//! Request/response, one-way messages, sends to self, correlation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hangar_cluster::transport::{Channel, PeerInfo, TransportError};

use crate::support::{eventually, logs, node};

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn t10_request_response_round_trip_on_two_channels() {
    logs();
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let raft = a
        .transport
        .request(b.addr(), Channel::Raft, Bytes::from_static(b"vote"), T)
        .await
        .unwrap();
    assert_eq!(&raft[..], b"b/raft/vote");
    let query = a
        .transport
        .request(b.addr(), Channel::Query, Bytes::from_static(b"q1"), T)
        .await
        .unwrap();
    assert_eq!(&query[..], b"b/query/q1");
    // And the other way, on b's own dialed connection.
    let back = b
        .transport
        .request(a.addr(), Channel::Control, Bytes::from_static(b"ping"), T)
        .await
        .unwrap();
    assert_eq!(&back[..], b"a/control/ping");

    let seen = b.inbound.requests.lock().clone();
    assert_eq!(seen.len(), 2);
    let a_info = PeerInfo {
        node_id: "a".into(),
        addr: a.addr(),
    };
    assert!(seen.iter().all(|s| s.from == a_info), "{seen:?}");
    assert_eq!(
        b.metrics.counter(
            "hangar_cluster_transport_frames_total",
            &[("direction", "received"), ("channel", "query")]
        ),
        1.0
    );
    assert!(
        a.metrics.counter(
            "hangar_cluster_transport_bytes_total",
            &[("direction", "sent")]
        ) > 0.0
    );
}

#[tokio::test]
async fn t10_handler_error_arrives_as_remote() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let err = a
        .transport
        .request(b.addr(), Channel::Forward, Bytes::from_static(b"fail"), T)
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::Remote("failed on purpose".into()));
}

#[tokio::test]
async fn t10_one_way_message_arrives_with_sender_info() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    a.transport
        .send(b.addr(), Channel::Gossip, Bytes::from_static(b"m1"))
        .await
        .unwrap();
    a.transport
        .try_send(b.addr(), Channel::Replication, Bytes::from_static(b"m2"))
        .unwrap();
    assert!(eventually(T, || b.inbound.message_count() == 2).await);
    let seen = b.inbound.messages.lock().clone();
    let from = PeerInfo {
        node_id: "a".into(),
        addr: a.addr(),
    };
    assert_eq!(seen[0].from, from);
    assert_eq!(
        (seen[0].channel, &seen[0].body[..]),
        (Channel::Gossip, &b"m1"[..])
    );
    assert_eq!(
        (seen[1].channel, &seen[1].body[..]),
        (Channel::Replication, &b"m2"[..])
    );

    // Both ends list each other once the connection is up.
    assert_eq!(
        a.transport.connected_peers(),
        vec![PeerInfo {
            node_id: "b".into(),
            addr: b.addr(),
        }]
    );
    assert_eq!(b.transport.connected_peers(), vec![from]);
    assert_eq!(
        a.metrics.gauge("hangar_cluster_transport_connections"),
        Some(1.0)
    );
}

#[tokio::test]
async fn t10_request_and_message_to_self_skip_the_socket() {
    let a = node("c", "a").await;
    let me = PeerInfo {
        node_id: "a".into(),
        addr: a.addr(),
    };
    let answer = a
        .transport
        .request(a.addr(), Channel::Control, Bytes::from_static(b"self"), T)
        .await
        .unwrap();
    assert_eq!(&answer[..], b"a/control/self");
    // Delivered before `send` returns: no queue, no connection.
    a.transport
        .send(a.addr(), Channel::Gossip, Bytes::from_static(b"m"))
        .await
        .unwrap();
    assert_eq!(a.inbound.messages.lock()[0].from, me);
    assert_eq!(a.inbound.requests.lock()[0].from, me);
    assert!(a.transport.connected_peers().is_empty());
    assert_eq!(
        a.metrics
            .counter("hangar_cluster_transport_frames_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn t10_calls_after_shutdown_fail_and_shutdown_is_idempotent() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    a.transport.shutdown();
    a.transport.shutdown();
    let err = a
        .transport
        .request(b.addr(), Channel::Raft, Bytes::new(), T)
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::ShutDown);
    assert_eq!(
        a.transport.try_send(b.addr(), Channel::Raft, Bytes::new()),
        Err(TransportError::ShutDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_thousand_concurrent_requests_get_their_own_answers() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let a = Arc::new(a);
    let to = b.addr();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let channel = Channel::ALL[i as usize % Channel::ALL.len()];
            let body = Bytes::from(format!("req-{i}"));
            let got = a.transport.request(to, channel, body, T).await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                format!("b/{}/req-{i}", channel.name())
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.inbound.requests.lock().len(), 1000);
}

#[tokio::test]
async fn t10_handler_panics_are_answered_and_keep_the_connection() {
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    for body in [&b"panic"[..], &b"panic now"[..]] {
        let err = a
            .transport
            .request(b.addr(), Channel::Raft, Bytes::from_static(body), T)
            .await
            .unwrap_err();
        let TransportError::Remote(text) = err else {
            panic!("expected Remote, got {err:?}");
        };
        assert!(text.contains("panicked"), "{text}");
    }
    a.transport
        .send(b.addr(), Channel::Gossip, Bytes::from_static(b"panic now"))
        .await
        .unwrap();
    a.transport
        .send(b.addr(), Channel::Gossip, Bytes::from_static(b"after"))
        .await
        .unwrap();
    assert!(eventually(T, || b.inbound.message_count() == 1).await);
    let got = a
        .transport
        .request(b.addr(), Channel::Raft, Bytes::from_static(b"ok"), T)
        .await
        .unwrap();
    assert_eq!(&got[..], b"b/raft/ok");
    assert_eq!(
        b.transport.connected_peers().len(),
        1,
        "one connection all along"
    );
}
