//! Anti-entropy repair: the owner of each partition compares its copy with
//! every backup's and exchanges the records that differ, both ways (see
//! `walk` for one exchange and its cost).
//!
//! Replication is best effort between acknowledgements: a backup that was
//! down for less than `failure_confirm_ms` (no failover), a full
//! replication queue, or a write acknowledged at EVENTUAL just before a
//! crash leave replicas apart. Repair brings them together:
//!
//! - periodically (`[cluster.repair]`: `enabled`, `interval_ms`), each run
//!   bounded by `budget_ms`: partitions whose holders changed since the
//!   last run (migration, promotion after a failure) come first, then the
//!   others round-robin from where the previous run stopped;
//! - on demand ([`Repairer::run`] with no budget: `ClusterModule::repair`,
//!   `POST /cluster/repair` on the host): every partition this node owns.
//!
//! Only the owner initiates, once per backup; partitions with a transfer
//! pending are skipped (migration is filling them). Runs never overlap.
//!
//! # Metrics
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `hangar_repair_runs_total` | counter | runs, label `trigger` (`periodic`, `on_demand`) |
//! | `hangar_repair_partitions_compared_total` | counter | (partition, backup) pairs compared |
//! | `hangar_repair_partitions_differing_total` | counter | of those, pairs that differed |
//! | `hangar_repair_records_exchanged_total` | counter | records merged, label `direction` (`pulled`, `pushed`) |
//! | `hangar_repair_bytes_total` | counter | repair message bytes, both ways |
//! | `hangar_repair_errors_total` | counter | exchanges that failed (unreachable backup, partition not loaded) |
//! | `hangar_repair_last_run_duration_seconds` | gauge | duration of the last run |

pub mod walk;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RString;
use bytes::Bytes;
use futures::future::BoxFuture;
use hangar_core::module::accessor::StorageAccessor;
use hangar_core::module::cluster_types::RepairReport;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::PARTITION_COUNT;

use crate::membership::{Membership, PeerHealth};
use crate::partition_table::{PartitionTable, Table};
use crate::settings::RepairConfig;
use crate::transport::{Channel, PeerInfo, Transport};

pub use walk::{serve, LocalLink, RepairLink, RepairMessage, RepairReply, Walk, WalkStats};

/// What a run carries from one to the next.
#[derive(Default)]
struct Progress {
    /// The table the last run saw.
    last: Option<Arc<Table>>,
    /// Partitions whose holders changed and that were not repaired since.
    recent: BTreeSet<u32>,
    /// Where the round-robin resumes.
    cursor: u32,
}

/// Runs repair for this node's partitions (module docs).
pub struct Repairer {
    node_id: String,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    table: Arc<PartitionTable>,
    storage: Arc<dyn StorageAccessor>,
    config: RepairConfig,
    metrics: Arc<dyn MetricsSink>,
    progress: tokio::sync::Mutex<Progress>,
}

/// The transport's `Repair` channel to one peer.
struct TransportLink {
    transport: Arc<Transport>,
    peer: String,
    addr: SocketAddr,
}

impl RepairLink for TransportLink {
    fn peer(&self) -> &str {
        &self.peer
    }
    fn request(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let (t, addr) = (self.transport.clone(), self.addr);
        Box::pin(async move {
            t.request(addr, Channel::Repair, body, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Partitions whose owner or backups differ between `old` and `new`.
fn changed_hands<'a>(old: &'a Table, new: &'a Table) -> impl Iterator<Item = u32> + 'a {
    (0..PARTITION_COUNT).filter(move |p| {
        let i = *p as usize;
        old.owners.get(i) != new.owners.get(i) || old.backups.get(i) != new.backups.get(i)
    })
}

/// The partitions `node` repairs in one run of table `t`, in order: those
/// in `recent` first (ascending), then the others round-robin from
/// `cursor`. Only partitions `node` owns, with at least one backup and no
/// transfer pending.
#[must_use]
pub fn run_order(t: &Table, node: &str, recent: &BTreeSet<u32>, cursor: u32) -> Vec<u32> {
    let owned = |p: u32| {
        let i = p as usize;
        t.owners.get(i).is_some_and(|o| o == node)
            && t.backups.get(i).is_some_and(|b| !b.is_empty())
            && t.pending_of(i).is_empty()
    };
    let start = cursor % PARTITION_COUNT;
    let mut order: Vec<u32> = recent.iter().copied().filter(|p| owned(*p)).collect();
    order.extend(
        (0..PARTITION_COUNT)
            .map(|i| (start + i) % PARTITION_COUNT)
            .filter(|p| owned(*p) && !recent.contains(p)),
    );
    order
}

impl Repairer {
    /// A repairer over this node's parts.
    #[must_use]
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts a repairer works with, each from the module's start-up"
    )]
    pub fn new(
        node_id: &str,
        transport: Arc<Transport>,
        membership: Arc<Membership>,
        table: Arc<PartitionTable>,
        storage: Arc<dyn StorageAccessor>,
        config: RepairConfig,
        metrics: Arc<dyn MetricsSink>,
    ) -> Arc<Self> {
        for name in [
            "hangar_repair_partitions_compared_total",
            "hangar_repair_partitions_differing_total",
            "hangar_repair_bytes_total",
            "hangar_repair_errors_total",
        ] {
            metrics.counter(name, &[], 0.0);
        }
        Arc::new(Self {
            node_id: node_id.to_string(),
            transport,
            membership,
            table,
            storage,
            config,
            metrics,
            progress: tokio::sync::Mutex::new(Progress::default()),
        })
    }

    /// Serves a `Repair` channel request from `from`.
    ///
    /// # Errors
    /// What went wrong, for the requester.
    pub async fn on_request(&self, from: &PeerInfo, body: Bytes) -> Result<Bytes, String> {
        serve(&self.storage, &from.node_id, &body).await
    }

    fn link(&self, peer: &str) -> Result<TransportLink, String> {
        let addr = self.membership.with_peers(|peers| match peers.get(peer) {
            Some(p) if p.health != PeerHealth::Failed => Ok(p.addr),
            Some(_) => Err(format!("backup {peer} is confirmed failed")),
            None => Err(format!("backup {peer} is not a known member")),
        })?;
        Ok(TransportLink {
            transport: self.transport.clone(),
            peer: peer.to_string(),
            addr,
        })
    }

    /// Periodic runs, every `interval_ms`, each within `budget_ms`.
    pub async fn keep(self: Arc<Self>) {
        if !self.config.enabled {
            tracing::info!("periodic repair is disabled ([cluster.repair] enabled = false)");
            return;
        }
        let every = Duration::from_millis(self.config.interval_ms.max(100));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let budget = Duration::from_millis(self.config.budget_ms.max(1));
            let rep = self.run(Some(budget)).await;
            if !rep.errors.is_empty() {
                tracing::warn!(errors = ?rep.errors, "periodic repair met problems");
            }
        }
    }

    /// One run: every owned partition with backups (no budget) or as many
    /// as fit in `budget`, recently moved partitions first.
    pub async fn run(&self, budget: Option<Duration>) -> RepairReport {
        let started = Instant::now();
        let mut progress = self.progress.lock().await;
        let t = self.table.current();
        if let Some(old) = progress.last.replace(t.clone()) {
            if old.version != t.version {
                let moved: Vec<u32> = changed_hands(&old, &t).collect();
                progress.recent.extend(moved);
            }
        }
        let order = run_order(&t, &self.node_id, &progress.recent, progress.cursor);
        let mut report = RepairReport::default();
        let mut stats = WalkStats::default();
        let batch = self.config.batch_partitions.max(1) as usize;
        for group in order.chunks(batch) {
            if budget.is_some_and(|b| started.elapsed() >= b) {
                break;
            }
            let mut peers: BTreeSet<&str> = BTreeSet::new();
            for p in group {
                peers.extend(t.backups[*p as usize].iter().map(String::as_str));
            }
            for peer in peers {
                let mine: Vec<u32> = group
                    .iter()
                    .copied()
                    .filter(|p| t.backups[*p as usize].iter().any(|b| b == peer))
                    .collect();
                let result = match self.link(peer) {
                    Ok(link) => {
                        let mut w = Walk {
                            local: &self.storage,
                            link: &link,
                            chunk: self.config.chunk_records.max(1) as usize,
                            stats: WalkStats::default(),
                        };
                        let r = w.run(&mine).await;
                        stats.add(&w.stats);
                        r
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    self.metrics.counter("hangar_repair_errors_total", &[], 1.0);
                    tracing::warn!(peer, partitions = ?mine, error = %e, "repair exchange failed");
                    report.errors.push(RString::from(e));
                }
            }
            for p in group {
                progress.recent.remove(p);
            }
            report.partitions_checked += u32::try_from(group.len()).unwrap_or(u32::MAX);
            if let Some(last) = group.last() {
                progress.cursor = (last + 1) % PARTITION_COUNT;
            }
        }
        report.records_repaired = stats.records_pulled + stats.records_pushed;
        let trigger = if budget.is_some() {
            "periodic"
        } else {
            "on_demand"
        };
        #[allow(
            clippy::cast_precision_loss,
            reason = "metric values are f64; counts stay far below 2^52"
        )]
        {
            let m = &self.metrics;
            m.counter("hangar_repair_runs_total", &[("trigger", trigger)], 1.0);
            m.counter(
                "hangar_repair_partitions_compared_total",
                &[],
                stats.partitions_compared as f64,
            );
            m.counter(
                "hangar_repair_partitions_differing_total",
                &[],
                stats.partitions_differing as f64,
            );
            m.counter(
                "hangar_repair_records_exchanged_total",
                &[("direction", "pulled")],
                stats.records_pulled as f64,
            );
            m.counter(
                "hangar_repair_records_exchanged_total",
                &[("direction", "pushed")],
                stats.records_pushed as f64,
            );
            m.counter("hangar_repair_bytes_total", &[], stats.bytes as f64);
            m.gauge(
                "hangar_repair_last_run_duration_seconds",
                &[],
                started.elapsed().as_secs_f64(),
            );
        }
        if stats.partitions_differing > 0 || !report.errors.is_empty() {
            tracing::info!(
                trigger,
                partitions = report.partitions_checked,
                differing = stats.partitions_differing,
                pulled = stats.records_pulled,
                pushed = stats.records_pushed,
                bytes = stats.bytes,
                errors = report.errors.len(),
                duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "repair run"
            );
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(version: u64, owner_of: impl Fn(u32) -> &'static str) -> Table {
        let members = ["a".to_string(), "b".to_string()];
        let mut t = Table::initial(&members, 1);
        t.version = version;
        for p in 0..PARTITION_COUNT as usize {
            let o = owner_of(p as u32);
            t.owners[p] = o.to_string();
            t.backups[p] = vec![if o == "a" { "b" } else { "a" }.to_string()];
        }
        t
    }

    #[test]
    fn t10_recently_moved_partitions_come_first_then_round_robin() {
        let t = table(1, |p| if p % 2 == 0 { "a" } else { "b" });
        let recent: BTreeSet<u32> = [10, 11, 200].into_iter().collect();
        let order = run_order(&t, "a", &recent, 100);
        assert_eq!(&order[..2], &[10, 200], "recent ones a owns first");
        assert_eq!(order[2], 100, "then from the cursor");
        assert!(order.iter().all(|p| p % 2 == 0), "only partitions a owns");
        let all: BTreeSet<u32> = order.iter().copied().collect();
        assert_eq!(all.len(), order.len(), "each once");
        assert_eq!(order.len(), (PARTITION_COUNT as usize).div_ceil(2));
    }

    #[test]
    fn t11_partitions_without_backups_are_skipped() {
        let mut t = table(1, |_| "a");
        t.backups[5].clear();
        let order = run_order(&t, "a", &BTreeSet::new(), 0);
        assert!(!order.contains(&5));
        assert_eq!(order.len(), PARTITION_COUNT as usize - 1);
    }

    #[test]
    fn t12_changed_hands_lists_owner_and_backup_changes() {
        let old = table(1, |_| "a");
        let mut new = table(2, |_| "a");
        new.owners[3] = "b".into();
        new.backups[7] = vec!["c".into()];
        assert_eq!(changed_hands(&old, &new).collect::<Vec<_>>(), vec![3, 7]);
    }
}
