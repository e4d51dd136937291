//! The handshake refuses peers of other clusters and frames before `Hello`.

use std::time::Duration;

use bytes::Bytes;
use hangar_cluster::transport::{Channel, TransportError};
use tokio::net::TcpStream;

use crate::support::{eventually, logs, node, RawPeer, HELLO_ACK, REFUSED, REQUEST};

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn t20_other_cluster_id_is_refused_naming_both_ids() {
    logs();
    let green = node("green", "n1").await;
    let blue = node("blue", "n2").await;
    let started = std::time::Instant::now();
    let err = blue
        .transport
        .request(green.addr(), Channel::Raft, Bytes::from_static(b"x"), T)
        .await
        .unwrap_err();
    assert!(started.elapsed() < T, "refused, not timed out");
    let TransportError::Refused { addr, reason } = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert_eq!(*addr, green.addr());
    assert!(
        reason.contains("\"blue\"") && reason.contains("\"green\""),
        "{reason}"
    );
    // One-way messages to it are dropped the same way.
    blue.transport
        .send(green.addr(), Channel::Gossip, Bytes::from_static(b"m"))
        .await
        .unwrap();
    assert!(
        eventually(T, || {
            green.metrics.counter(
                "hangar_cluster_transport_refused_total",
                &[("reason", "cluster_id")],
            ) >= 2.0
        })
        .await
    );
    assert_eq!(green.inbound.calls(), 0, "nothing reaches the Inbound");
    assert!(green.transport.connected_peers().is_empty());
    assert!(blue.transport.connected_peers().is_empty());
    assert!(
        blue.metrics.counter(
            "hangar_cluster_transport_refused_total",
            &[("reason", "cluster_id")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn t20_a_request_before_hello_is_refused_and_not_dispatched() {
    let n = node("c", "n1").await;
    let tcp = TcpStream::connect(n.addr()).await.unwrap();
    let mut raw = RawPeer::new(tcp);
    raw.send(REQUEST, 1, Channel::Raft as u8, b"sneaky").await;
    let answer = raw.recv().await.expect("a Refused frame");
    assert_eq!(answer.0, REFUSED);
    let refused: crate::support::Refused = rmp_serde::from_slice(&answer.3).unwrap();
    assert!(
        refused.reason.contains("expected a Hello"),
        "{}",
        refused.reason
    );
    assert!(raw.closed().await);
    assert_eq!(n.inbound.calls(), 0);
}

#[tokio::test]
async fn t20_raw_peer_speaking_the_documented_layout_is_served() {
    // The layout in the module docs is enough to talk to a node.
    let n = node("c", "n1").await;
    let tcp = TcpStream::connect(n.addr()).await.unwrap();
    let mut raw = RawPeer::new(tcp);
    raw.hello("c", "raw", "127.0.0.1:1".parse().unwrap()).await;
    let ack = raw.recv().await.unwrap();
    assert_eq!(ack.0, HELLO_ACK);
    let ack: crate::support::HelloAck = rmp_serde::from_slice(&ack.3).unwrap();
    assert_eq!(
        (ack.node_id.as_str(), ack.addr),
        ("n1", n.addr().to_string())
    );
    raw.send(REQUEST, 42, Channel::Query as u8, b"hi").await;
    let resp = raw.recv().await.unwrap();
    assert_eq!(
        (resp.0, resp.1, resp.2),
        (crate::support::RESPONSE, 42, Channel::Query as u8)
    );
    assert_eq!(&resp.3[..], b"n1/query/hi");
}
