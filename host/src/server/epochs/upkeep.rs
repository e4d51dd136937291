//! The epochs' background task: writes dirty state every
//! [`super::FLUSH_EVERY`] and runs a prune round every
//! `sync.prune_interval_ms`, until the node shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec};
use hangar_core::ErrorKind;
use tokio::sync::watch;

use super::licence::Licence;
use crate::protocol::messages::GcPrune;
use crate::protocol::Message;
use crate::server::state::FrontEnd;

/// Runs until `stopped` turns true or the front end is gone.
pub async fn run(fe: Weak<FrontEnd>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(super::FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => {}
        }
        let Some(fe) = fe.upgrade() else { return };
        fe.epochs.flush();
        if *stopped.borrow() {
            return;
        }
        Licence::tick(&fe);
        let every = Duration::from_millis(fe.epochs.config().prune_interval_ms);
        if last_prune.elapsed() >= every {
            last_prune = Instant::now();
            prune_round(&fe).await;
        }
    }
}

/// One prune round: the tombstones of every epoch all remembered devices
/// confirmed leave storage, then clients are told `GC_PRUNE`. A storage
/// module that cannot prune on request keeps them (logged once a round);
/// the epochs stay listed and are tried again next round.
///
/// While the cluster module lists any other member (in any state), this
/// node's devices license nothing alone: the round proposes its licensed
/// tombstones to every member instead ([`Licence::propose`], see
/// [`super::licence`]). Devices are forgotten either way.
pub async fn prune_round(fe: &Arc<FrontEnd>) {
    let plan = fe.epochs.plan_prune();
    let every = Duration::from_millis(fe.epochs.config().prune_interval_ms);
    if Licence::propose(fe, every) {
        return;
    }
    let Some(plan) = plan else {
        return;
    };
    fe.epochs.begin_prune(&plan);
    let Some(pruned) = prune_in_storage(fe, &plan.by_map, "retried next round").await else {
        return;
    };
    fe.epochs.finish_prune(&plan);
    if pruned > 0 {
        if let Some(older_than) = plan.older_than.clone() {
            let sent = fe.broadcast(&Message::GcPrune {
                payload: GcPrune { older_than },
            });
            tracing::debug!(below = plan.below, pruned, sent, "OR tombstones pruned");
        }
    }
}

/// Drops the tombstoned tags of `by_map` from storage, every map in turn:
/// how many were dropped, or `None` when storage refused a map (logged,
/// with `then` saying what happens to the refused ones: at info when the
/// module does not prune on request, else at warn).
pub async fn prune_in_storage(
    fe: &FrontEnd,
    by_map: &HashMap<String, Vec<String>>,
    then: &str,
) -> Option<u64> {
    let mut pruned = 0u64;
    let mut refused = false;
    for (map, tags) in by_map {
        let tags: RVec<RString> = tags.iter().map(|t| RString::from(t.as_str())).collect();
        match fe
            .node
            .storage
            .prune_or_tombstones(map.as_str().into(), tags)
            .await
        {
            Ok(n) => pruned += n,
            Err(e) if e.kind == ErrorKind::UNSUPPORTED => {
                tracing::info!(error = %e, "OR tombstones are kept: the storage module does not prune on request");
                return None;
            }
            Err(e) => {
                tracing::warn!(map = %map, error = %e, "pruning OR tombstones failed; {then}");
                refused = true;
            }
        }
    }
    (!refused).then_some(pruned)
}
