//! The state of a cluster of `hangar` processes as its `/metrics` and
//! `/health` show it, and bounded waits on it: every partition owned and
//! backed up again, ownership even, replication queues and transfers
//! drained. Used by `kill_checker` and the `cluster_moves` benchmark.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hangar_core::PARTITION_COUNT;
use hangar_host::protocol::messages::{PartitionMap, PartitionMapRequest};
use hangar_host::protocol::Message;

use crate::cluster_harness::{Client, Cluster};

/// A gauge node `i` of `c` reports (no labels), if it answers.
#[must_use]
pub fn gauge(c: &Cluster, i: usize, name: &str) -> Option<f64> {
    c.metrics(i)?
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// Every value of metric `name` node `i` of `c` reports (one per label
/// set), by its label text (`""` when unlabelled).
#[must_use]
pub fn series(c: &Cluster, i: usize, name: &str) -> BTreeMap<String, f64> {
    c.metrics(i)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| {
            let (head, v) = l.rsplit_once(' ')?;
            Some((
                head[name.len()..].trim().to_string(),
                v.parse::<f64>().ok()?,
            ))
        })
        .collect()
}

/// True when, on the live nodes `live` (one table, checked by the caller),
/// every partition has an owner and `min(backup_count, live - 1)` backups
/// (owned and backed-up counts summed over the nodes' metrics).
#[must_use]
pub fn backups_restored(c: &Cluster, live: &[usize], backup_count: u32) -> bool {
    let want = u64::from(backup_count).min(live.len() as u64 - 1);
    let (mut owned, mut backed) = (0.0, 0.0);
    for &i in live {
        let (Some(o), Some(b)) = (
            gauge(c, i, "hangar_cluster_partitions_owned"),
            gauge(c, i, "hangar_cluster_partitions_backed_up"),
        ) else {
            return false;
        };
        owned += o;
        backed += b;
    }
    owned as u64 == u64::from(PARTITION_COUNT) && backed as u64 == u64::from(PARTITION_COUNT) * want
}

/// True when every node of `live` owns at least its even share of the
/// partitions (rounded down).
#[must_use]
pub fn balanced(c: &Cluster, live: &[usize]) -> bool {
    let share = u64::from(PARTITION_COUNT) / live.len() as u64;
    live.iter()
        .all(|&i| gauge(c, i, "hangar_cluster_partitions_owned").is_some_and(|o| o as u64 >= share))
}

/// True when no node of `live` has replication changes queued and the
/// Raft leader (which runs transfers and publishes
/// `hangar_migration_partitions_migrating`; a former leader's gauge keeps
/// its last value) has no partition transfer running.
#[must_use]
pub fn drained(c: &Cluster, live: &[usize]) -> bool {
    let leader = live.iter().find_map(|&i| {
        let l = c.health(i)?["cluster"]["leader"].as_str()?.to_string();
        live.iter().copied().find(|&j| c.nodes[j].id == l)
    });
    let Some(leader) = leader else {
        return false;
    };
    gauge(c, leader, "hangar_migration_partitions_migrating") == Some(0.0)
        && live.iter().all(|&i| {
            series(c, i, "hangar_replication_lag_changes")
                .values()
                .all(|v| *v == 0.0)
        })
}

/// Per node of `live`: replication lag, transfers running, partitions
/// owned and backed up (what [`drained`] and [`backups_restored`] read),
/// for failure messages.
#[must_use]
pub fn gauges(c: &Cluster, live: &[usize]) -> String {
    live.iter()
        .map(|&i| {
            let g = |n| gauge(c, i, n).map_or("-".to_string(), |v| v.to_string());
            format!(
                "{}: lag {:?} migrating {} owned {} backed up {}",
                c.nodes[i].id,
                series(c, i, "hangar_replication_lag_changes"),
                g("hangar_migration_partitions_migrating"),
                g("hangar_cluster_partitions_owned"),
                g("hangar_cluster_partitions_backed_up")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits (polling, at most `limit`) until `live` form one cluster and
/// `cond` holds on it.
///
/// # Errors
/// After `limit`, naming `what` with the nodes' health and log tails.
pub fn settle(
    c: &Cluster,
    live: &[usize],
    what: &str,
    limit: Duration,
    cond: impl Fn() -> bool,
) -> Result<Duration, String> {
    let t = Instant::now();
    c.wait_formed(live, limit)
        .map_err(|e| format!("{what}: not formed: {e}"))?;
    while !cond() {
        if t.elapsed() > limit {
            let hs: Vec<_> = live.iter().map(|&i| c.health(i)).collect();
            return Err(format!(
                "{what} not reached in {limit:?} ({}){}",
                gauges(c, live),
                c.report(live, &hs)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(t.elapsed())
}

/// The partition table node `url` serves.
///
/// # Errors
/// When the node cannot be reached or does not answer within 20 s.
pub async fn partition_map(url: &str) -> Result<PartitionMap, String> {
    let mut cl = Client::connect(url).await?;
    cl.send(&Message::PartitionMapRequest {
        payload: PartitionMapRequest::default(),
    })
    .await?;
    cl.wait_for(Duration::from_secs(20), |m| match m {
        Message::PartitionMap { payload } => Some(payload.clone()),
        _ => None,
    })
    .await
}
