//! Graceful leave: a stopping node hands its partitions off before it
//! exits.

use std::path::Path;
use std::time::Duration;

use crate::membership::{Membership, PeerHealth};
use crate::raft::ClusterRaft;

/// Graceful leave: waits (at most `limit`) until a committed table no
/// longer lists this node `me` (the leader moved its partitions, with
/// their data, to the other members), then leaves the Raft membership and
/// writes `left_marker` (so the next start joins as a new member). A node
/// with no other live member to hand off to leaves at once; one whose
/// partitions are not handed off within `limit` stays a voter (as a
/// failed member would).
pub async fn hand_off(
    membership: &Membership,
    raft: &ClusterRaft,
    me: &str,
    left_marker: &Path,
    limit: Duration,
    gossip_interval: Duration,
) {
    let started = std::time::Instant::now();
    let mut first = true;
    loop {
        let others = {
            let peers = membership.peers();
            raft.members().into_iter().any(|(a, voter)| {
                voter
                    && a.node_id != me
                    && peers
                        .get(&a.node_id)
                        .is_some_and(|p| p.health != PeerHealth::Failed && !p.leaving)
            })
        };
        if !others {
            tracing::info!("no other live member to hand partitions to; leaving as is");
            return;
        }
        if std::mem::take(&mut first) {
            // Let the leader hear of the leave before the table is read.
            tokio::time::sleep(gossip_interval * 2).await;
            continue;
        }
        let held = raft.state().borrow().table.as_ref().map_or(0, |t| {
            (0..hangar_core::PARTITION_COUNT as usize)
                .filter(|&p| {
                    t.owners[p] == me
                        || t.backups[p].iter().any(|b| b == me)
                        || t.pending_of(p).iter().any(|b| b == me)
                })
                .count()
        });
        if held == 0 {
            tracing::info!(
                waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "partitions handed off"
            );
            break;
        }
        if started.elapsed() >= limit {
            tracing::warn!(
                still_held = held,
                "partitions not all handed off within the leave timeout; leaving anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match tokio::time::timeout(Duration::from_secs(10), raft.remove_member(me)).await {
        Ok(Ok(())) => {
            if let Err(e) = std::fs::write(left_marker, b"left\n") {
                tracing::warn!(error = %e, "could not mark the Raft directory as left");
            }
            tracing::info!("left the Raft membership");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the Raft membership"),
        Err(_) => tracing::warn!("leaving the Raft membership timed out"),
    }
}
