//! Mutual TLS: certificates from one CA talk; everything else is refused
//! with an error, never a hang.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hangar_cluster::transport::{Channel, TlsFiles, TransportError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::{config, eventually, logs, start, Node, Pki, RawPeer, HELLO_ACK};

const T: Duration = Duration::from_secs(2);

async fn tls_node(name: &str, files: TlsFiles) -> Node {
    let mut cfg = config("c", name);
    cfg.tls = Some(files);
    start(cfg).await.expect("TLS node starts")
}

/// Asserts that `from` cannot reach `to`: `Refused` quickly, nothing delivered.
async fn assert_refused(from: &Node, to: &Node) -> String {
    let started = Instant::now();
    let err = from
        .transport
        .request(to.addr(), Channel::Control, Bytes::from_static(b"x"), T)
        .await
        .unwrap_err();
    assert!(started.elapsed() < T, "an error, not a timeout: {err:?}");
    let TransportError::Refused { reason, .. } = err else {
        panic!("expected Refused, got {err:?}");
    };
    assert_eq!(to.inbound.calls(), 0);
    reason
}

#[tokio::test]
async fn t30_nodes_with_certs_from_one_ca_talk() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca1");
    let a = tls_node("a", pki.node_files(dir.path(), "a", true)).await;
    let b = tls_node("b", pki.node_files(dir.path(), "b", true)).await;
    let got = a
        .transport
        .request(b.addr(), Channel::Raft, Bytes::from_static(b"hi"), T)
        .await
        .unwrap();
    assert_eq!(&got[..], b"b/raft/hi");
    b.transport
        .send(a.addr(), Channel::Gossip, Bytes::from_static(b"m"))
        .await
        .unwrap();
    assert!(eventually(T, || a.inbound.message_count() == 1).await);
    assert_eq!(a.inbound.messages.lock()[0].from.node_id, "b");
}

#[tokio::test]
async fn t30_cert_from_another_ca_is_refused_both_ways() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let a = tls_node("a", Pki::new("ca1").node_files(dir.path(), "a", true)).await;
    let c = tls_node("c", Pki::new("ca2").node_files(dir.path(), "c", true)).await;
    let reason = assert_refused(&c, &a).await;
    assert!(reason.contains("TLS handshake failed"), "{reason}");
    let reason = assert_refused(&a, &c).await;
    assert!(reason.contains("TLS handshake failed"), "{reason}");
    assert!(
        a.metrics.counter(
            "hangar_cluster_transport_refused_total",
            &[("reason", "tls")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn t30_plain_node_and_tls_node_cannot_talk() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_node("a", Pki::new("ca1").node_files(dir.path(), "a", true)).await;
    let plain = start(config("c", "p")).await.unwrap();
    assert_refused(&plain, &tls).await;
    assert_refused(&tls, &plain).await;
}

/// Dials `to` with TLS trusting `ca_pem` but presenting no certificate, and
/// says Hello; true if the node answered `HelloAck`.
async fn hello_without_client_cert(to: &Node, ca_pem: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(to.addr()).await.unwrap();
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    // TLS 1.3 lets the client finish before the server has checked it, so
    // the refusal may show only on the first read.
    let Ok(stream) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    let mut raw = RawPeer::new(stream);
    raw.hello("c", "nocert", "127.0.0.1:1".parse().unwrap())
        .await;
    matches!(raw.recv().await, Some(f) if f.0 == HELLO_ACK)
}

#[tokio::test]
async fn t30_dialer_without_client_cert_is_refused_only_when_required() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca1");
    let strict = tls_node("a", pki.node_files(dir.path(), "a", true)).await;
    assert!(!hello_without_client_cert(&strict, &pki.ca_pem).await);
    assert!(
        eventually(T, || strict.metrics.counter(
            "hangar_cluster_transport_refused_total",
            &[("reason", "tls")]
        ) >= 1.0)
        .await
    );
    let lenient = tls_node("b", pki.node_files(dir.path(), "b", false)).await;
    assert!(hello_without_client_cert(&lenient, &pki.ca_pem).await);
}

#[tokio::test]
async fn t30_bad_cert_files_are_tls_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca1");
    let good = pki.node_files(dir.path(), "a", true);
    let other = pki.node_files(dir.path(), "b", true);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let missing = dir.path().join("missing.pem");

    let cases = [
        (
            TlsFiles {
                cert_path: missing.clone(),
                ..good.clone()
            },
            missing.display().to_string(),
        ),
        (
            TlsFiles {
                key_path: garbage.clone(),
                ..good.clone()
            },
            garbage.display().to_string(),
        ),
        (
            TlsFiles {
                ca_cert_path: garbage.clone(),
                ..good.clone()
            },
            garbage.display().to_string(),
        ),
        (
            // A key that belongs to another certificate.
            TlsFiles {
                key_path: other.key_path.clone(),
                ..good.clone()
            },
            other.key_path.display().to_string(),
        ),
    ];
    for (files, named) in cases {
        let mut cfg = config("c", "a");
        cfg.tls = Some(files);
        let err = start(cfg).await.map(|_| ()).unwrap_err();
        let TransportError::Tls(text) = &err else {
            panic!("expected Tls, got {err:?}");
        };
        assert!(text.contains(&named), "{text} should name {named}");
    }
}
