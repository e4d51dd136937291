//! Oversized and malformed frames.

use std::time::Duration;

use bytes::Bytes;
use hangar_cluster::transport::{Channel, TransportError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{config, logs, node, start, RawPeer, HELLO_ACK};

const T: Duration = Duration::from_secs(2);
const MAX: usize = 4096;

#[tokio::test]
async fn t60_oversized_frame_is_refused_on_send() {
    logs();
    let mut cfg = config("c", "a");
    cfg.max_frame_bytes = MAX;
    let a = start(cfg).await.unwrap();
    let mut cfg = config("c", "b");
    cfg.max_frame_bytes = MAX;
    let b = start(cfg).await.unwrap();
    let big = Bytes::from(vec![0u8; MAX]);
    let too_large = |r: Result<(), TransportError>| {
        assert!(
            matches!(r, Err(TransportError::FrameTooLarge { max: MAX, .. })),
            "{r:?}"
        );
    };
    too_large(
        a.transport
            .send(b.addr(), Channel::Forward, big.clone())
            .await,
    );
    too_large(
        a.transport
            .try_send(b.addr(), Channel::Forward, big.clone()),
    );
    too_large(
        a.transport
            .request(b.addr(), Channel::Forward, big.clone(), T)
            .await
            .map(|_| ()),
    );
    // Refused before anything was queued or dialed.
    assert!(a.transport.connected_peers().is_empty());

    // The largest request that fits goes through; its answer, 7 bytes
    // longer, does not fit and comes back as the handler-side error.
    let fits = Bytes::from(vec![b'x'; MAX - 20]);
    let err = a
        .transport
        .request(b.addr(), Channel::Raft, fits, T)
        .await
        .unwrap_err();
    let TransportError::Remote(text) = err else {
        panic!("expected Remote, got {err:?}");
    };
    assert!(text.contains("exceeds the limit"), "{text}");
}

async fn handshaken_raw(to: std::net::SocketAddr) -> RawPeer<TcpStream> {
    let mut raw = RawPeer::new(TcpStream::connect(to).await.unwrap());
    raw.hello("c", "raw", "127.0.0.1:1".parse().unwrap()).await;
    assert_eq!(raw.recv().await.unwrap().0, HELLO_ACK);
    raw
}

#[tokio::test]
async fn t60_garbage_closes_only_that_connection() {
    logs();
    let a = node("c", "a").await;
    let b = node("c", "b").await;
    let ping = || {
        a.transport
            .request(b.addr(), Channel::Raft, Bytes::from_static(b"p"), T)
    };
    ping().await.unwrap();

    // Garbage instead of a Hello.
    let mut raw = RawPeer::new(TcpStream::connect(b.addr()).await.unwrap());
    raw.send_raw(&[0xc1, 0xc1, 0xc1]).await.unwrap();
    assert!(raw.closed().await);

    // Garbage after a good handshake: a 4-array whose kind is unknown.
    let mut raw = handshaken_raw(b.addr()).await;
    raw.send_raw(&[0x94, 0x7f, 0, 0, 0xc4, 0]).await.unwrap();
    assert!(raw.closed().await);

    // An envelope that is not msgpack at all.
    let mut raw = handshaken_raw(b.addr()).await;
    raw.send_raw(b"GET / HTTP/1.1").await.unwrap();
    assert!(raw.closed().await);

    // The good connection is untouched.
    ping().await.unwrap();
    assert_eq!(b.inbound.requests.lock().len(), 2);
    assert_eq!(b.transport.connected_peers().len(), 1);
}

#[tokio::test]
async fn t60_peer_announcing_an_oversized_frame_is_disconnected() {
    logs();
    let b = node("c", "b").await;
    let mut raw = handshaken_raw(b.addr()).await;
    // Only the length prefix: the node must not wait for 16 MiB of body.
    let len = u32::try_from(16 * 1024 * 1024 + 1).unwrap();
    raw.framed
        .get_mut()
        .write_all(&len.to_be_bytes())
        .await
        .unwrap();
    assert!(raw.closed().await);
    assert_eq!(b.inbound.calls(), 0);
}
