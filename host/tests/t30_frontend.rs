//! The client front end in-process: the load generator against a node,
//! writes forwarded to a partition's owner, and draining on shutdown.
//!
//! The full protocol is covered black-box by the JavaScript suite in
//! `tests/js`; these tests need things only Rust can do (a stand-in
//! cluster module, the node's shutdown from inside).

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use futures::{SinkExt, StreamExt};
use hangar_core::config::ClusterModuleConfig;
use hangar_core::config::StorageModuleConfig;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::partition::PartitionView;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{AckId, AckResult, ApplyBatch};
use hangar_core::module::wrapper::{ClusterWrapper, StorageWrapper};
use hangar_core::module::{ready, ModuleFuture};
use hangar_core::{partition_of, ConsistencyLevel, WriteConcern};
use hangar_host::bench::{self, BenchConfig, Stop};
use hangar_host::protocol::messages::{ClientOp, OpBatch, WireLwwRecord};
use hangar_host::protocol::{decode_frame, Decoded, Message, RawMsgpack};
use hangar_host::{HangarConfig, Modules, Running};
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message as Ws;

fn config(dir: &std::path::Path) -> HangarConfig {
    let mut c = HangarConfig {
        port: 0,
        data_dir: dir.to_path_buf(),
        shutdown_grace_ms: 5_000,
        ..HangarConfig::default()
    };
    c.storage.set("backend", "memory");
    c.finish().unwrap();
    c
}

async fn node(dir: &std::path::Path, modules: Modules) -> Running {
    hangar_host::start(config(dir), modules)
        .await
        .expect("node starts")
}

async fn node_with(c: HangarConfig, modules: Modules) -> Running {
    hangar_host::start(c, modules).await.expect("node starts")
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(r: &Running) -> Client {
    let (c, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", r.addr))
        .await
        .expect("connect");
    c
}

async fn next_message(c: &mut Client) -> Option<Message> {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("an answer within 10 s")?;
        match f.ok()? {
            Ws::Binary(b) => {
                if let Ok(Decoded::Message(m)) = decode_frame(&b) {
                    return Some(m);
                }
            }
            Ws::Close(_) => return None,
            _ => {}
        }
    }
}

fn put(id: &str, key: &str) -> ClientOp {
    ClientOp {
        id: Some(id.into()),
        map_name: "m".into(),
        key: key.into(),
        op_type: None,
        record: Some(Some(WireLwwRecord {
            value: Some(RawMsgpack::from_value(&rmpv::Value::from("v"))),
            timestamp: hangar_core::Timestamp::new(1_700_000_000_000, 0, "client"),
            ttl_ms: None,
        })),
        or_record: None,
        or_tag: None,
        write_concern: None,
        timeout: None,
        consistency: None,
    }
}

#[tokio::test]
async fn t10_the_load_generator_drives_a_node_and_every_op_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let r = node(
        dir.path(),
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
    )
    .await;
    let report = bench::run(BenchConfig {
        url: format!("ws://{}/ws", r.addr),
        connections: 4,
        batch: 25,
        value_size: 64,
        concern: WriteConcern::Applied,
        stop: Stop::Ops(1_000),
        ..BenchConfig::default()
    })
    .await
    .expect("bench runs");
    assert!(report.acked_ops >= 1_000, "{report}");
    assert_eq!(report.failed_ops, 0, "{report}");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.batches * 25, report.acked_ops);
    assert_eq!(report.op_latency_us.len(), report.acked_ops);
    let text = report.to_string();
    assert!(
        text.contains("connections=4 batch=25 value_size=64B concern=APPLIED"),
        "{text}"
    );
    assert!(text.contains("ops/s") && text.contains("p99"), "{text}");
    r.shutdown().await;
}

#[tokio::test]
async fn t11_the_load_generator_refuses_fire_and_forget_and_reports_connect_errors() {
    let e = bench::run(BenchConfig {
        concern: WriteConcern::FireAndForget,
        ..BenchConfig::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("FIRE_AND_FORGET"), "{e}");
    let e = bench::run(BenchConfig {
        url: "ws://127.0.0.1:1/ws".into(),
        stop: Stop::Ops(1),
        ..BenchConfig::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[tokio::test]
async fn t12_the_load_generator_picks_keys_by_owner_from_the_partition_map_and_sends_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let me = config(dir.path()).node_id;
    let r = node(
        dir.path(),
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
    )
    .await;
    let url = format!("ws://{}/ws", r.addr);
    // Two URLs (the same node twice): connections are spread over both.
    let report = bench::run(BenchConfig {
        url: format!("{url}, {url}"),
        connections: 2,
        batch: 10,
        concern: WriteConcern::Applied,
        stop: Stop::Ops(200),
        consistency: Some(ConsistencyLevel::Quorum),
        keys: bench::KeySelection::OwnedBy(me.clone()),
        ..BenchConfig::default()
    })
    .await
    .expect("bench runs");
    assert!(report.acked_ops >= 200, "{report}");
    assert_eq!(report.failed_ops, 0, "{report}");
    assert_eq!(
        report.key_partitions, 271,
        "a lone node owns every partition"
    );
    assert!(report.map_version.is_some(), "the map was read");
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "consistency=QUORUM keys=owned-by:{me} (271 of 271 partitions, map version"
        )),
        "{text}"
    );
    // Nothing is owned by another node, and an unknown node is a mistake.
    for (keys, expected) in [
        (
            bench::KeySelection::NotOwnedBy(me.clone()),
            "no partition matches",
        ),
        (
            bench::KeySelection::OwnedBy("nobody".into()),
            "\"nobody\" is not in the partition map",
        ),
    ] {
        let e = bench::run(BenchConfig {
            url: url.clone(),
            stop: Stop::Ops(10),
            keys,
            ..BenchConfig::default()
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
    }
    r.shutdown().await;
}

/// A cluster module that says `remote` owns one partition and records what
/// is forwarded to it; everything else is delegated to the default module.
struct SplitCluster {
    inner: Arc<dyn ClusterModule>,
    view: Arc<SplitView>,
    forwarded: Arc<Mutex<Vec<(String, ApplyBatch)>>>,
}

struct SplitView {
    inner: Arc<dyn PartitionView>,
    remote_partition: u32,
}

impl PartitionView for SplitView {
    fn local_node(&self) -> RString {
        self.inner.local_node()
    }
    fn version(&self) -> u64 {
        self.inner.version()
    }
    fn owner(&self, p: u32) -> ROption<RString> {
        if p == self.remote_partition {
            ROption::RSome("node-2".into())
        } else {
            self.inner.owner(p)
        }
    }
    fn backups(&self, p: u32) -> RVec<RString> {
        self.inner.backups(p)
    }
    fn is_local_owner(&self, p: u32) -> bool {
        p != self.remote_partition && self.inner.is_local_owner(p)
    }
    fn is_related(&self, p: u32) -> bool {
        self.inner.is_related(p)
    }
}

// Only the partition view and `forward` change; `ClusterWrapper` forwards
// the rest to `inner`.
impl ClusterWrapper for SplitCluster {
    fn inner(&self) -> &dyn ClusterModule {
        &*self.inner
    }
    fn partition_view(&self) -> Arc<dyn PartitionView> {
        self.view.clone()
    }
    fn forward(&self, node: RString, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        let results: RVec<AckResult> = batch
            .ops
            .iter()
            .map(|o| AckResult {
                ack: 0,
                success: true,
                achieved: o.concern.max(WriteConcern::Applied),
                error: ROption::RNone,
            })
            .collect();
        self.forwarded.lock().push((node.to_string(), batch));
        ready(Ok(results))
    }
}

#[tokio::test]
async fn t20_writes_for_a_partition_owned_elsewhere_are_forwarded_to_its_owner() {
    let remote_key = "elsewhere";
    let local_key = (0..)
        .map(|i| format!("here-{i}"))
        .find(|k| partition_of(k) != partition_of(remote_key))
        .unwrap();
    let forwarded = Arc::new(Mutex::new(Vec::new()));
    let f2 = forwarded.clone();
    let remote_partition = partition_of(remote_key);
    let modules = Modules::embedded(
        hangar_storage::create,
        move |c: ClusterModuleConfig, d: ClusterDeps| {
            let inner = hangar_cluster::create(c, d)?;
            let view = Arc::new(SplitView {
                inner: inner.partition_view(),
                remote_partition,
            });
            Ok(Arc::new(SplitCluster {
                inner,
                view,
                forwarded: f2.clone(),
            }) as Arc<dyn ClusterModule>)
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let r = node(dir.path(), modules).await;
    let mut c = connect(&r).await;
    let batch = Message::OpBatch {
        payload: OpBatch {
            ops: vec![put("1", &local_key), put("2", remote_key)],
            write_concern: Some("REPLICATED".into()),
            timeout: Some(2_000),
            consistency: None,
        },
    };
    c.send(Ws::Binary(batch.encode().unwrap().into()))
        .await
        .unwrap();
    let ack = loop {
        match next_message(&mut c).await.expect("connection open") {
            Message::OpAck { payload } => break payload,
            _ => continue,
        }
    };
    assert_eq!(ack.last_id, "2");
    let results = ack.results.expect("results");
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.success), "{results:?}");
    assert_eq!(results[1].achieved_level, WriteConcern::Replicated);
    let fwd = forwarded.lock().clone();
    assert_eq!(fwd.len(), 1, "one sub-batch for the one remote owner");
    assert_eq!(fwd[0].0, "node-2");
    assert_eq!(fwd[0].1.ops.len(), 1);
    assert_eq!(fwd[0].1.ops[0].op.key.as_str(), remote_key);
    assert_eq!(fwd[0].1.ops[0].concern, WriteConcern::Replicated);
    // The local op reached the local storage; the forwarded one did not.
    let read = r
        .node
        .storage
        .read(
            "m".into(),
            vec![RString::from(local_key.as_str()), RString::from(remote_key)].into(),
        )
        .await
        .unwrap();
    assert!(!matches!(
        read[0].state,
        hangar_core::module::storage_types::RecordState::Missing
    ));
    assert!(matches!(
        read[1].state,
        hangar_core::module::storage_types::RecordState::Missing
    ));
    r.shutdown().await;
}

#[tokio::test]
async fn t30_shutdown_closes_connections_with_1001_and_then_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let r = node(
        dir.path(),
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
    )
    .await;
    let addr = r.addr;
    let mut c = connect(&r).await;
    let fe = r.front_end().clone();
    let stopping = tokio::spawn(r.shutdown());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Ws::Close(f))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame").code), 1001);
    stopping.await.unwrap();
    assert_eq!(fe.drain.live(), 0, "every connection task ended");
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .is_err(),
        "the port no longer accepts"
    );
}

/// The default storage module with a gate in front of `await_acks`: the
/// acknowledgements of a write stay pending until the test opens the gate.
struct GatedStorage {
    inner: Arc<dyn StorageModule>,
    gate: Arc<tokio::sync::Semaphore>,
}

// Only `await_acks` changes; `StorageWrapper` forwards the rest to `inner`.
impl StorageWrapper for GatedStorage {
    fn inner(&self) -> &dyn StorageModule {
        &*self.inner
    }
    fn await_acks(&self, a: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        let gate = self.gate.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let _pass = gate.acquire().await.expect("gate open");
            inner.await_acks(a).await
        })
    }
}

async fn next_of(c: &mut Client, ty: &str) -> Message {
    loop {
        let m = next_message(c).await.expect("connection open");
        if m.type_name() == ty {
            return m;
        }
    }
}

fn batch_of(id: &str) -> Ws {
    Ws::Binary(
        Message::OpBatch {
            payload: OpBatch {
                ops: vec![put(id, &format!("key-{id}"))],
                write_concern: Some("APPLIED".into()),
                timeout: None,
                consistency: None,
            },
        }
        .encode()
        .unwrap()
        .into(),
    )
}

#[tokio::test]
async fn t40_an_overloaded_node_sheds_requests_with_error_429_and_recovers() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g2 = gate.clone();
    let modules = Modules::embedded(
        move |c: StorageModuleConfig, d: StorageDeps| {
            Ok(Arc::new(GatedStorage {
                inner: hangar_storage::create(c, d)?,
                gate: g2.clone(),
            }) as Arc<dyn StorageModule>)
        },
        hangar_cluster::create,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.network.max_in_flight = 1;
    let r = node_with(c, modules).await;
    let mut a = connect(&r).await;
    let mut b = connect(&r).await;
    a.send(batch_of("1")).await.unwrap();
    // Wait until a's write holds the one in-flight permit (its ack is gated).
    let fe = r.front_end().clone();
    for _ in 0..500 {
        if fe.in_flight.available() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fe.in_flight.available(), 0, "the first write is in flight");
    b.send(batch_of("2")).await.unwrap();
    let Message::Error { payload } = next_of(&mut b, "ERROR").await else {
        unreachable!()
    };
    assert_eq!(payload.code, 429, "{}", payload.message);
    gate.add_permits(1_000);
    let Message::OpAck { payload } = next_of(&mut a, "OP_ACK").await else {
        unreachable!()
    };
    assert_eq!(payload.last_id, "1");
    // The permit is back: b's next write goes through.
    b.send(batch_of("3")).await.unwrap();
    let Message::OpAck { payload } = next_of(&mut b, "OP_ACK").await else {
        unreachable!()
    };
    assert_eq!(payload.last_id, "3");
    let metrics = r.node.metrics.render();
    assert!(
        metrics.contains("hangar_ws_overload_shed_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hangar_ws_errors_sent_total{code=\"429\"} 1"),
        "{metrics}"
    );
    r.shutdown().await;
}
