//! The event journal: entries for changes of visible values (PUT, UPDATE,
//! DELETE with the value before), none for changes that change nothing,
//! replicated changes journaled like client ones, retention pruning with a
//! clear refusal of pruned sequences, replay then live delivery each once,
//! and sequences that continue across a restart on redb.

use std::path::Path;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::journal::{
    JournalEvent, JournalEventType, JournalFilter, JournalPage, JournalReadRequest, JournalSink,
};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{OpStatus, Origin, OriginKind};
use hangar_core::{ErrorKind, KeyedOp, ModuleResult, RawValue, WriteConcern};
use hangar_storage::persistence::MemoryStore;
use hangar_storage::DefaultStorage;
use parking_lot::Mutex;

use super::support::{apply, config, deps, module_on, or_add, put, tombstone, v, NODE};

/// Applies `ops` at PERSISTED and waits until they are durable (so their
/// journal entries are readable and published).
async fn durable(m: &DefaultStorage, ops: Vec<KeyedOp>) -> Vec<OpStatus> {
    let out = apply(m, ops, WriteConcern::Persisted).await;
    let acks: RVec<u64> = out.iter().map(|o| o.ack).collect();
    m.notify_acks(acks.clone(), WriteConcern::Replicated);
    for r in m.await_acks(acks).await.unwrap().iter() {
        assert!(r.success, "write not durable: {r:?}");
    }
    out.into_iter().map(|o| o.status).collect()
}

async fn read_from(m: &DefaultStorage, from: u64) -> ModuleResult<JournalPage> {
    m.journal_read(JournalReadRequest {
        from_sequence: from,
        limit: 1_000,
        filter: JournalFilter::default(),
    })
    .await
}

fn seqs(events: &[JournalEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

fn val(e: &ROption<RawValue>) -> Option<RawValue> {
    e.as_ref().into_option().cloned()
}

#[derive(Default)]
struct Collect(Mutex<Vec<JournalEvent>>);

impl JournalSink for Collect {
    fn deliver(&self, event: &JournalEvent) {
        self.0.lock().push(event.clone());
    }
}

impl Collect {
    fn seqs(&self) -> Vec<u64> {
        seqs(&self.0.lock())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_changes_are_journaled_with_previous_values_and_no_ops_are_not() {
    let (m, _) = module_on(&MemoryStore::new(), config(), Arc::default());
    m.start().await.unwrap();
    durable(&m, vec![put("m", "k", 1, 10)]).await;
    durable(&m, vec![put("m", "k", 2, 20)]).await;
    // Stale (older timestamp): changes nothing, so no entry.
    let st = durable(&m, vec![put("m", "k", 9, 15)]).await;
    assert_eq!(st, vec![OpStatus::Unchanged]);
    durable(&m, vec![tombstone("m", "k", 30)]).await;
    // A tombstone over a tombstone, and one over a key never written:
    // nothing visible changed.
    durable(
        &m,
        vec![tombstone("m", "k", 40), tombstone("m", "ghost", 40)],
    )
    .await;
    let page = read_from(&m, 0).await.unwrap();
    let e = &page.events;
    assert_eq!(seqs(e), vec![1, 2, 3], "dense, and no entry for no-ops");
    assert_eq!(
        e.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![
            JournalEventType::Put,
            JournalEventType::Update,
            JournalEventType::Delete
        ]
    );
    assert_eq!((val(&e[0].previous), val(&e[0].value)), (None, Some(v(1))));
    assert_eq!(
        (val(&e[1].previous), val(&e[1].value)),
        (Some(v(1)), Some(v(2)))
    );
    assert_eq!((val(&e[2].previous), val(&e[2].value)), (Some(v(2)), None));
    assert_eq!(e[1].timestamp.millis, 20, "the write's timestamp");
    assert_eq!(e[1].node_id.as_str(), NODE);
    assert_eq!((page.oldest, page.latest, page.has_more), (1, 3, false));
    // Filters: map and type.
    durable(&m, vec![put("other", "x", 5, 50)]).await;
    let only = m
        .journal_read(JournalReadRequest {
            from_sequence: 0,
            limit: 10,
            filter: JournalFilter {
                map: ROption::RSome("other".into()),
                types: RVec::new(),
            },
        })
        .await
        .unwrap();
    assert_eq!(seqs(&only.events), vec![4]);
    let deletes = m
        .journal_read(JournalReadRequest {
            from_sequence: 0,
            limit: 10,
            filter: JournalFilter {
                map: ROption::RNone,
                types: vec![JournalEventType::Delete].into(),
            },
        })
        .await
        .unwrap();
    assert_eq!(seqs(&deletes.events), vec![3]);
    let limited = m
        .journal_read(JournalReadRequest {
            from_sequence: 2,
            limit: 2,
            filter: JournalFilter::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        (seqs(&limited.events), limited.has_more),
        (vec![2, 3], true)
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_or_maps_and_replicated_changes_are_journaled() {
    let (m, _) = module_on(&MemoryStore::new(), config(), Arc::default());
    m.start().await.unwrap();
    durable(&m, vec![or_add("s", "k", 1, 10, None)]).await;
    durable(&m, vec![or_add("s", "k", 2, 11, None)]).await;
    let acc = m.accessor();
    let origin = Origin {
        kind: OriginKind::Replication,
        connection: 0,
        node: "peer".into(),
    };
    let st = acc
        .apply_replicated(vec![put("r", "k", 7, 10)].into(), origin.clone())
        .await
        .unwrap();
    assert_eq!(st[0], OpStatus::Applied);
    // The same replicated change again changes nothing.
    let st = acc
        .apply_replicated(vec![put("r", "k", 7, 10)].into(), origin)
        .await
        .unwrap();
    assert_eq!(st[0], OpStatus::Unchanged);
    acc.durable_barrier().await.unwrap();
    let e = read_from(&m, 0).await.unwrap().events;
    assert_eq!(seqs(&e), vec![1, 2, 3]);
    let arr = |xs: &[i64]| RawValue::encode(&xs.to_vec()).unwrap();
    assert_eq!(e[0].kind, JournalEventType::Put);
    assert_eq!(val(&e[0].value), Some(arr(&[1])));
    assert_eq!(e[1].kind, JournalEventType::Update);
    assert_eq!(val(&e[1].previous), Some(arr(&[1])));
    assert_eq!(
        val(&e[1].value).map(|r| r.decode().unwrap().as_array().unwrap().len()),
        Some(2),
        "an OR key's value is the array of its live values"
    );
    assert_eq!((e[2].map.as_str(), e[2].kind), ("r", JournalEventType::Put));
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_retention_prunes_and_a_pruned_sequence_is_refused_naming_the_oldest() {
    let mut cfg = config();
    cfg.settings = cfg.settings.with("journal_capacity", 5);
    let (m, _) = module_on(&MemoryStore::new(), cfg, Arc::default());
    m.start().await.unwrap();
    for i in 0..8 {
        durable(&m, vec![put("m", &format!("k{i}"), i, 10)]).await;
    }
    let page = read_from(&m, 0).await.unwrap();
    assert_eq!(seqs(&page.events), vec![4, 5, 6, 7, 8]);
    assert_eq!((page.oldest, page.latest), (4, 8));
    let e = read_from(&m, 2).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NOT_FOUND);
    assert!(
        e.message.contains("sequence 2 was pruned") && e.message.contains("oldest available is 4"),
        "{e}"
    );
    let sink = Arc::new(Collect::default());
    let e = m
        .journal_subscribe(1, ROption::RSome(3), JournalFilter::default(), sink.clone())
        .await
        .unwrap_err();
    assert!(e.message.contains("oldest available is 4"), "{e}");
    assert_eq!(m.stats().journal_subscriptions, 0, "nothing registered");
    assert_eq!(
        seqs(&read_from(&m, 4).await.unwrap().events),
        vec![4, 5, 6, 7, 8]
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_subscribe_replays_then_follows_live_each_once_until_unsubscribed() {
    let (m, _) = module_on(&MemoryStore::new(), config(), Arc::default());
    m.start().await.unwrap();
    for i in 1..=3 {
        durable(&m, vec![put("m", "k", i, i as u64 * 10)]).await;
    }
    let replayed = Arc::new(Collect::default());
    let latest = m
        .journal_subscribe(
            7,
            ROption::RSome(2),
            JournalFilter::default(),
            replayed.clone(),
        )
        .await
        .unwrap();
    assert_eq!(latest, 3);
    assert_eq!(
        replayed.seqs(),
        vec![2, 3],
        "replayed before the call returned"
    );
    let live = Arc::new(Collect::default());
    m.journal_subscribe(8, ROption::RNone, JournalFilter::default(), live.clone())
        .await
        .unwrap();
    let deletes = Arc::new(Collect::default());
    m.journal_subscribe(
        9,
        ROption::RSome(1),
        JournalFilter {
            map: ROption::RNone,
            types: vec![JournalEventType::Delete].into(),
        },
        deletes.clone(),
    )
    .await
    .unwrap();
    durable(&m, vec![put("m", "k", 4, 40)]).await;
    durable(&m, vec![tombstone("m", "k", 50)]).await;
    assert_eq!(replayed.seqs(), vec![2, 3, 4, 5]);
    assert_eq!(live.seqs(), vec![4, 5], "live only: no replay");
    assert_eq!(deletes.seqs(), vec![5]);
    assert!(m.journal_unsubscribe(7));
    assert!(!m.journal_unsubscribe(7));
    durable(&m, vec![put("m", "k", 6, 60)]).await;
    assert_eq!(
        replayed.seqs(),
        vec![2, 3, 4, 5],
        "nothing after unsubscribe"
    );
    assert_eq!(live.seqs(), vec![4, 5, 6]);
    m.shutdown().await.unwrap();
}

fn embedded(dir: &Path) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 2_000,
        ..StorageModuleConfig::new(
            NODE,
            dir,
            PluginSettings::default()
                .with("backend", "embedded")
                .with("journal_capacity", 4),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_on_redb_the_journal_survives_a_restart_and_its_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let m = DefaultStorage::new(embedded(dir.path()), deps(Arc::default())).unwrap();
    m.start().await.unwrap();
    for i in 1..=3 {
        durable(&m, vec![put("m", "k", i, i as u64 * 10)]).await;
    }
    m.shutdown().await.unwrap();
    drop(m);

    let m = DefaultStorage::new(embedded(dir.path()), deps(Arc::default())).unwrap();
    m.start().await.unwrap();
    let page = read_from(&m, 1).await.unwrap();
    assert_eq!(seqs(&page.events), vec![1, 2, 3]);
    assert_eq!(val(&page.events[2].previous), Some(v(2)));
    let sink = Arc::new(Collect::default());
    m.journal_subscribe(1, ROption::RSome(2), JournalFilter::default(), sink.clone())
        .await
        .unwrap();
    durable(&m, vec![put("m", "k", 4, 40)]).await;
    durable(&m, vec![put("m", "k", 5, 50)]).await;
    assert_eq!(
        sink.seqs(),
        vec![2, 3, 4, 5],
        "replay, then live after the restart"
    );
    // Capacity 4: the fifth entry pruned the first, on disk too.
    let page = read_from(&m, 0).await.unwrap();
    assert_eq!((seqs(&page.events), page.oldest), (vec![2, 3, 4, 5], 2));
    m.shutdown().await.unwrap();
    drop(m);

    let m = DefaultStorage::new(embedded(dir.path()), deps(Arc::default())).unwrap();
    m.start().await.unwrap();
    let e = read_from(&m, 1).await.unwrap_err();
    assert!(e.message.contains("oldest available is 2"), "{e}");
    durable(&m, vec![put("m", "k", 6, 60)]).await;
    assert_eq!(
        seqs(&read_from(&m, 0).await.unwrap().events),
        vec![3, 4, 5, 6]
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_with_capacity_zero_the_journal_is_off_and_says_so() {
    let mut cfg = config();
    cfg.settings = cfg.settings.with("journal_capacity", 0);
    let (m, _) = module_on(&MemoryStore::new(), cfg, Arc::default());
    m.start().await.unwrap();
    durable(&m, vec![put("m", "k", 1, 10)]).await;
    let e = read_from(&m, 0).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::UNSUPPORTED);
    assert!(e.message.contains("journal_capacity = 0"), "{e}");
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_a_replay_that_falls_behind_its_buffer_reads_the_rest_from_the_store() {
    let mut cfg = config();
    cfg.settings = cfg.settings.with("journal_replay_buffer", 4);
    let metrics = Arc::new(super::support::Metrics::default());
    let (m, b) = module_on(&MemoryStore::new(), cfg, metrics.clone());
    m.start().await.unwrap();
    for i in 1..=300u64 {
        durable(&m, vec![put("m", &format!("k{i}"), i as i64, i * 10)]).await;
    }
    // The replay stops at its first read while 20 more entries are
    // published: five times what it may hold.
    let gate = b.hold_journal_reads().await;
    let sub = Arc::new(Collect::default());
    let m = Arc::new(m);
    let subscribing = {
        let (m, sub) = (m.clone(), sub.clone());
        tokio::spawn(async move {
            m.journal_subscribe(1, ROption::RSome(1), JournalFilter::default(), sub)
                .await
        })
    };
    b.wait_journal_reads_started(1).await;
    for i in 301..=320u64 {
        durable(&m, vec![put("m", &format!("k{i}"), i as i64, i * 10)]).await;
    }
    drop(gate);
    assert_eq!(subscribing.await.unwrap().unwrap(), 300);
    durable(&m, vec![put("m", "k321", 321, 3_210)]).await;
    assert_eq!(
        sub.seqs(),
        (1..=321).collect::<Vec<u64>>(),
        "every entry once, in order: the store's, the ones read again, then live"
    );
    assert_eq!(
        metrics
            .named("hangar_storage_journal_replay_rereads_total")
            .len(),
        1,
        "the held entries overflowed once and were read from the store"
    );
    m.shutdown().await.unwrap();
}
