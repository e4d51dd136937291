//! Which receivers of a replicated write are asked for durability: the
//! partition's holders when the write is PERSISTED, never a pending holder
//! (it is asked to apply; see `Shipment::counted`).

use std::sync::Arc;

use bytes::Bytes;
use hangar_cluster::replication::{Replicator, Shipment};
use hangar_cluster::settings::ReplicationConfig;
use hangar_cluster::transport::{Channel, Inbound, PeerInfo, Transport};
use hangar_cluster::wire::{self, Replicate, ReplicateReply};
use hangar_core::types::{LwwRecord, MapOp, Timestamp};
use hangar_core::{KeyedOp, RawValue};
use parking_lot::Mutex;

use crate::support::{config, logs, start};

/// A backup that records the `durable` flag of every replication request
/// and answers as asked.
#[derive(Default)]
struct Flags(Mutex<Vec<bool>>);

impl Inbound for Flags {
    fn on_message(&self, _: &PeerInfo, _: Channel, _: Bytes) {}

    fn on_request(
        &self,
        _: PeerInfo,
        channel: Channel,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        assert_eq!(channel, Channel::Replication);
        let r: Replicate = wire::decode(&body, "replicate").expect("a Replicate");
        self.0.lock().push(r.durable);
        let reply = wire::encode(&ReplicateReply {
            applied: u32::try_from(r.changes.len()).expect("small"),
            durable: r.durable,
        });
        Box::pin(async move { Ok(reply) })
    }
}

fn change(key: &str) -> KeyedOp {
    KeyedOp {
        map: "m".into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: abi_stable::std_types::ROption::RSome(RawValue::encode(&1).unwrap()),
            timestamp: Timestamp::new(1, 0, "owner"),
            ttl_ms: abi_stable::std_types::ROption::RNone,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_a_persisted_write_asks_holders_for_durability_and_pending_holders_to_apply() {
    logs();
    let metrics = Arc::new(crate::support::Metrics::default());
    let backup_flags = Arc::new(Flags::default());
    let pending_flags = Arc::new(Flags::default());
    let backup = Transport::start(config("c", "backup"), backup_flags.clone(), metrics.clone())
        .await
        .unwrap();
    let pending = Transport::start(
        config("c", "pending"),
        pending_flags.clone(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let owner = start(config("c", "owner")).await.unwrap();
    let replicator = Replicator::new(
        owner.transport.clone(),
        ReplicationConfig::default(),
        owner.metrics.clone(),
    );
    let shipments = |round: usize| {
        vec![
            Shipment {
                node: "backup".into(),
                addr: backup.local_addr(),
                changes: vec![change(&format!("a{round}"))],
                counted: true,
            },
            Shipment {
                node: "pending".into(),
                addr: pending.local_addr(),
                changes: vec![change(&format!("a{round}"))],
                counted: false,
            },
        ]
    };
    // PERSISTED, waiting: the holder persists, the pending holder applies;
    // both answers are waited for.
    let results = replicator.ship(shipments(0), true, true).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(*backup_flags.0.lock(), vec![true]);
    assert_eq!(*pending_flags.0.lock(), vec![false]);
    // Not PERSISTED: nobody is asked for durability.
    let results = replicator.ship(shipments(1), true, false).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(*backup_flags.0.lock(), vec![true, false]);
    assert_eq!(*pending_flags.0.lock(), vec![false, false]);
}
