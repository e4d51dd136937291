//! Handling the licence's messages: accepting, collecting acceptances,
//! applying commits, publishing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{RString, RVec};
use hangar_core::hash::partition_of;
use hangar_core::module::local_node::TopicPublish;
use hangar_core::module::storage_types::RecordState;
use hangar_core::RawValue;

use super::{Licence, LicenceMessage, TOPIC};
use crate::protocol::messages::GcPrune;
use crate::protocol::Message;
use crate::server::epochs::upkeep::prune_in_storage;
use crate::server::epochs::Tombstone;
use crate::server::state::FrontEnd;

/// Learns `round` from another node: newer than this node's means it
/// missed commits.
pub(super) fn learn(fe: &FrontEnd, round: u64) {
    fe.licence.heard(round);
    if round > fe.epochs.licence_round() {
        fe.epochs.missed_round(round, || fe.node.clock.now());
    }
}

pub(super) async fn handle(fe: &Arc<FrontEnd>, msg: LicenceMessage) {
    let me = fe.licence.node_id.clone();
    match msg {
        LicenceMessage::Hello { node } if node != me => publish(
            fe,
            LicenceMessage::State {
                node: me,
                committed: fe.epochs.licence_round(),
            },
        ),
        LicenceMessage::Hello { .. } => {}
        LicenceMessage::State { node, committed } => {
            if node != me {
                learn(fe, committed);
            }
        }
        LicenceMessage::Propose {
            round,
            proposer,
            members,
            committed,
            items,
        } => {
            if proposer != me {
                learn(fe, committed);
            }
            fe.licence.see(round);
            let (mine, _) = Licence::members(fe);
            if mine != members.iter().cloned().collect::<BTreeSet<_>>() {
                tracing::debug!(round, %proposer, "OR prune proposal not accepted: its member list differs from this node's");
                return;
            }
            let items = accept(fe, &proposer, round, &items).await;
            publish(
                fe,
                LicenceMessage::Accept {
                    round,
                    proposer,
                    node: me,
                    items,
                },
            );
        }
        LicenceMessage::Accept {
            round,
            proposer,
            node,
            items,
        } if proposer == me => on_accept(fe, round, node, items),
        LicenceMessage::Accept { .. } => {}
        LicenceMessage::Abort { round, proposer } => fe.licence.resolve(&proposer, round),
        LicenceMessage::Commit {
            round,
            proposer,
            members,
            items,
        } => {
            fe.licence.see(round);
            if members.contains(&me) {
                apply(fe, round, &items).await;
                fe.licence.resolve(&proposer, round);
            } else {
                tracing::info!(round, %proposer, "the cluster pruned OR tombstones without this node (it joined meanwhile)");
                let round = round.max(fe.epochs.licence_round() + 1);
                fe.epochs.missed_round(round, || fe.node.clock.now());
            }
        }
    }
}

/// Of `items`, what this node accepts in `proposer`'s `round`; the round
/// is pending until its outcome is heard.
async fn accept(fe: &FrontEnd, proposer: &str, round: u64, items: &[u64]) -> Vec<u64> {
    let found = fe.epochs.licensed_among(items);
    // What this node pruned under an earlier commit is accepted again (its
    // promise is kept already): a member that missed that commit, and still
    // lists the items, can then prune them too.
    let mut accepted = fe.licence.recently_pruned(items);
    let view = fe.node.cluster.partition_view();
    let mut by_map: HashMap<&str, Vec<&(u64, Tombstone, u64)>> = HashMap::new();
    for f in &found {
        by_map.entry(f.1.map.as_str()).or_default().push(f);
    }
    let mut below = 0;
    for (map, list) in by_map {
        // The keys of partitions this node holds: their tags must not be
        // live here, or repair would copy them back once pruned.
        let keys: BTreeSet<&str> = list
            .iter()
            .filter_map(|f| f.1.key.as_deref())
            .filter(|k| view.is_related(partition_of(k)))
            .collect();
        let mut live: HashSet<(String, String)> = HashSet::new();
        if !keys.is_empty() {
            let keys: RVec<RString> = keys.into_iter().map(RString::from).collect();
            match fe.node.storage.read(map.into(), keys).await {
                Ok(records) => {
                    for r in records.iter() {
                        if let RecordState::Or(rs) = &r.state {
                            for o in rs.iter() {
                                live.insert((r.key.to_string(), o.tag.to_string()));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(map, error = %e, "OR prune proposal not accepted for this map: its records could not be read");
                    continue;
                }
            }
        }
        for (i, t, e) in list {
            let key = t.key.clone().unwrap_or_default();
            if !live.contains(&(key, t.tag.clone())) {
                accepted.push(*i);
                below = below.max(e + 1);
            }
        }
    }
    if below > 0 {
        fe.licence
            .inner
            .lock()
            .pending
            .insert((proposer.to_string(), round), (below, Instant::now()));
    }
    accepted
}

fn on_accept(fe: &FrontEnd, round: u64, node: String, items: Vec<u64>) {
    let mut inner = fe.licence.inner.lock();
    let Some(r) = inner.round.as_mut().filter(|r| r.round == round) else {
        return;
    };
    if !r.members.contains(&node) {
        return;
    }
    r.accepted.insert(node, items.into_iter().collect());
    if r.accepted.len() < r.members.len() {
        return;
    }
    let Some(r) = inner.round.take() else { return };
    let (items, refused): (Vec<u64>, Vec<u64>) = r
        .items
        .iter()
        .partition(|i| r.accepted.values().all(|a| a.contains(i)));
    for i in refused {
        inner.refused.insert(i, round);
    }
    drop(inner);
    tracing::debug!(
        round,
        proposed = r.items.len(),
        committed = items.len(),
        "OR tombstone prune accepted by every member"
    );
    if items.is_empty() {
        publish(
            fe,
            LicenceMessage::Abort {
                round,
                proposer: fe.licence.node_id.clone(),
            },
        );
        return;
    }
    publish(
        fe,
        LicenceMessage::Commit {
            round,
            proposer: fe.licence.node_id.clone(),
            members: r.members.into_iter().collect(),
            items,
        },
    );
}

/// Applies a commit this node accepted: storage drops the tombstones, the
/// lists forget them, clients are told `GC_PRUNE`.
async fn apply(fe: &FrontEnd, round: u64, items: &[u64]) {
    let plan = fe.epochs.plan_commit(items);
    // The promise holds before anything is pruned here.
    fe.epochs.promise(plan.below);
    // Unlisted even where storage keeps them: the other replicas pruned
    // them, and a tombstone kept here only costs space (it is never live).
    let pruned = prune_in_storage(fe, &plan.by_map, "they stay in storage")
        .await
        .unwrap_or(0);
    let older_than = fe.epochs.finish_commit(&plan, round);
    fe.licence.remember_pruned(&plan.items);
    tracing::debug!(
        round,
        pruned,
        listed = plan.items.len(),
        "OR tombstones pruned by the cluster licence"
    );
    if pruned > 0 {
        if let Some(older_than) = older_than {
            fe.broadcast(&Message::GcPrune {
                payload: GcPrune { older_than },
            });
        }
    }
}

pub(super) fn publish(fe: &FrontEnd, msg: LicenceMessage) {
    let data = match RawValue::encode(&msg) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode an OR prune licence message");
            return;
        }
    };
    let me = fe.licence.node_id.as_str();
    let message = TopicPublish {
        topic: TOPIC.into(),
        data,
        node: me.into(),
        connection: 0,
        publisher: me.into(),
        timestamp: fe.node.clock.wall_millis(),
        sequence: 0,
    };
    let cluster = fe.node.cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = cluster.publish_topic(message).await {
            tracing::debug!(error = %e, "OR prune licence message not published");
        }
    });
}
