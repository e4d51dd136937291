//! Helpers for the transport tests: a recording `Inbound`, a recording
//! metrics sink, a peer that speaks the wire protocol from a raw socket
//! (encoded independently of the crate, from the documented layout), and
//! a test PKI made with rcgen.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use hangar_cluster::transport::{
    Channel, Inbound, PeerInfo, TlsFiles, Transport, TransportConfig, TransportError,
};
use hangar_core::module::services::{MetricKind, MetricSample, MetricsSink};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Routes test logs to the test's output.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("hangar_cluster=debug")
        .try_init();
}

/// What an [`Recorder`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub from: PeerInfo,
    pub channel: Channel,
    pub body: Bytes,
}

/// An `Inbound` that records messages and answers requests:
/// - body `fail` → `Err("failed on purpose")`;
/// - body `sleep` → answers after 30 s (a request left pending); if the
///   future is dropped before, `abandoned` counts it;
/// - body `panic` → the future panics; `panic now` → `on_request` panics
///   (and `on_message` too, for a message `panic now`);
/// - anything else → `"<node>/<channel>/<body>"`.
pub struct Recorder {
    pub node: String,
    pub messages: Mutex<Vec<Seen>>,
    pub requests: Mutex<Vec<Seen>>,
    pub abandoned: Arc<AtomicUsize>,
}

/// Counts a handler future dropped before it finished.
struct Abandon(Option<Arc<AtomicUsize>>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Recorder {
    pub fn new(node: &str) -> Arc<Self> {
        Arc::new(Self {
            node: node.to_owned(),
            messages: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            abandoned: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn message_count(&self) -> usize {
        self.messages.lock().len()
    }

    pub fn calls(&self) -> usize {
        self.messages.lock().len() + self.requests.lock().len()
    }
}

impl Inbound for Recorder {
    fn on_message(&self, from: &PeerInfo, channel: Channel, body: Bytes) {
        assert!(&body[..] != b"panic now", "on_message panics on purpose");
        self.messages.lock().push(Seen {
            from: from.clone(),
            channel,
            body,
        });
    }

    fn on_request(
        &self,
        from: PeerInfo,
        channel: Channel,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        self.requests.lock().push(Seen {
            from,
            channel,
            body: body.clone(),
        });
        assert!(&body[..] != b"panic now", "on_request panics on purpose");
        let node = self.node.clone();
        let abandoned = self.abandoned.clone();
        async move {
            match &body[..] {
                b"fail" => Err("failed on purpose".to_owned()),
                b"panic" => panic!("the handler future panics on purpose"),
                b"sleep" => {
                    let mut guard = Abandon(Some(abandoned));
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    guard.0 = None;
                    Ok(Bytes::new())
                }
                _ => Ok(Bytes::from(format!(
                    "{node}/{}/{}",
                    channel.name(),
                    String::from_utf8_lossy(&body)
                ))),
            }
        }
        .boxed()
    }
}

/// One recorded sample: kind, name, labels, value.
type Sample = (MetricKind, String, Vec<(String, String)>, f64);

/// A metrics sink that keeps every sample.
#[derive(Default)]
pub struct Metrics {
    samples: Mutex<Vec<Sample>>,
}

impl Metrics {
    /// Sum of a counter over the samples whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .lock()
            .iter()
            .filter(|(k, n, l, _)| {
                *k == MetricKind::Counter
                    && n == name
                    && labels
                        .iter()
                        .all(|(lk, lv)| l.iter().any(|(k, v)| k == lk && v == lv))
            })
            .map(|s| s.3)
            .sum()
    }

    /// The last value of a gauge.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.samples
            .lock()
            .iter()
            .rev()
            .find(|(k, n, _, _)| *k == MetricKind::Gauge && n == name)
            .map(|s| s.3)
    }
}

impl MetricsSink for Metrics {
    fn record(&self, sample: MetricSample<'_>) {
        let labels = sample
            .labels
            .iter()
            .map(|t| (t.0.as_str().to_owned(), t.1.as_str().to_owned()))
            .collect();
        self.samples.lock().push((
            sample.kind,
            sample.name.as_str().to_owned(),
            labels,
            sample.value,
        ));
    }
}

/// A started node with its recorder and metrics.
pub struct Node {
    pub transport: Arc<Transport>,
    pub inbound: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }
}

pub fn config(cluster: &str, node: &str) -> TransportConfig {
    TransportConfig {
        cluster_id: cluster.to_owned(),
        node_id: node.to_owned(),
        ..TransportConfig::default()
    }
}

pub async fn start(cfg: TransportConfig) -> Result<Node, TransportError> {
    let inbound = Recorder::new(&cfg.node_id);
    let metrics = Arc::new(Metrics::default());
    let transport = Transport::start(cfg, inbound.clone(), metrics.clone()).await?;
    Ok(Node {
        transport,
        inbound,
        metrics,
    })
}

pub async fn node(cluster: &str, id: &str) -> Node {
    start(config(cluster, id)).await.expect("transport starts")
}

/// Polls `cond` every 5 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- the wire protocol from a raw socket ---------------------------------

pub const HELLO: u8 = 0;
pub const HELLO_ACK: u8 = 1;
pub const REFUSED: u8 = 2;
pub const MESSAGE: u8 = 3;
pub const REQUEST: u8 = 4;
pub const RESPONSE: u8 = 5;

/// A frame as the module docs describe it: `[kind, request_id, channel, bin]`.
pub type RawFrame = (u8, u64, u8, serde_bytes::ByteBuf);

#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub cluster_id: String,
    pub node_id: String,
    pub addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HelloAck {
    pub node_id: String,
    pub addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Refused {
    pub code: String,
    pub reason: String,
}

/// A peer speaking the protocol by hand over any byte stream.
pub struct RawPeer<S> {
    pub framed: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawPeer<S> {
    pub fn new(io: S) -> Self {
        Self {
            framed: Framed::new(io, LengthDelimitedCodec::new()),
        }
    }

    pub async fn send(&mut self, kind: u8, id: u64, channel: u8, body: &[u8]) {
        let frame: RawFrame = (kind, id, channel, serde_bytes::ByteBuf::from(body.to_vec()));
        let bytes = rmp_serde::to_vec(&frame).unwrap();
        self.framed.send(Bytes::from(bytes)).await.unwrap();
    }

    /// Sends bytes as one length-delimited frame, whatever they are.
    pub async fn send_raw(&mut self, envelope: &[u8]) -> std::io::Result<()> {
        self.framed.send(Bytes::copy_from_slice(envelope)).await
    }

    /// The next frame, `None` at end of stream or on an error, within 2 s.
    pub async fn recv(&mut self) -> Option<RawFrame> {
        let next = tokio::time::timeout(Duration::from_secs(2), self.framed.next())
            .await
            .expect("a frame or the end of the stream within 2 s");
        match next {
            Some(Ok(b)) => Some(rmp_serde::from_slice(&BytesMut::freeze(b)).unwrap()),
            _ => None,
        }
    }

    pub async fn hello(&mut self, cluster: &str, node: &str, addr: SocketAddr) {
        let hello = Hello {
            version: 1,
            cluster_id: cluster.to_owned(),
            node_id: node.to_owned(),
            addr: addr.to_string(),
        };
        self.send(
            HELLO,
            0,
            Channel::Control as u8,
            &rmp_serde::to_vec_named(&hello).unwrap(),
        )
        .await;
    }

    /// True when the other side closes the stream (or resets it) within 2 s.
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(2), self.framed.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

// ---- a test PKI ------------------------------------------------------------

/// A CA that signs node certificates for 127.0.0.1.
pub struct Pki {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let ca_pem = issuer.pem();
        Self { issuer, ca_pem }
    }

    /// Writes `<name>.crt`, `<name>.key` and `<name>-ca.crt` under `dir`.
    pub fn node_files(&self, dir: &Path, name: &str, require_client_cert: bool) -> TlsFiles {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            cert_path: dir.join(format!("{name}.crt")),
            key_path: dir.join(format!("{name}.key")),
            ca_cert_path: dir.join(format!("{name}-ca.crt")),
            require_client_cert,
        };
        std::fs::write(&files.cert_path, cert.pem()).unwrap();
        std::fs::write(&files.key_path, key.serialize_pem()).unwrap();
        std::fs::write(&files.ca_cert_path, &self.ca_pem).unwrap();
        files
    }
}
