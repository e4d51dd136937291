//! Live full-text search: `SEARCH_SUB` → `SEARCH_RESP` (its `requestId` is
//! the `subscriptionId`), then `SEARCH_UPDATE` as documents enter, change
//! score in, or leave the top results; `SEARCH_UNSUB` ends it (no answer).
//!
//! # How it stays live: a change feed plus a re-run search
//!
//! A live search holds an unfiltered live query on its map, through the
//! cluster module like any other, so it hears of a change on any partition
//! whichever node holds it (only the fact of a change is used; values are
//! not projected away, since an unchanged projection sends no update). Each change wakes the search's task, which runs
//! the search again (the storage module answers a search only once its
//! index has taken every applied change) and sends the differences against
//! the results it sent before. Changes that arrive while a search runs are
//! coalesced into one more run. BM25 scores depend on the whole corpus, so
//! any change can move every score: re-running the top-N search is what a
//! correct answer costs here; a search costs what a `SEARCH` does, once
//! per burst of changes, never once per change queued behind it.
//!
//! No plugin ABI change: the change feed is a live query, the search is the
//! cluster module's `search`.

use std::collections::HashMap;
use std::sync::Arc;

use hangar_core::module::storage_types::{
    ChangeType, QueryRequest, QuerySink, QueryUpdate, SearchHit, SubscriptionId,
};
use hangar_core::RawValue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::queries::{search_request, search_results};
use super::status_of;
use crate::protocol::messages::{SearchResp, SearchSub, SearchUpdatePayload};
use crate::protocol::{parse_consistency, Message, RawMsgpack};
use crate::server::session::{reply, Session};
use crate::server::state::FrontEnd;

/// Most live searches one connection may hold.
pub const MAX_SEARCHES_PER_CONNECTION: usize = 256;

/// One live search of a connection.
#[derive(Debug)]
pub struct LiveSearch {
    subscription: SubscriptionId,
    task: JoinHandle<()>,
}

impl LiveSearch {
    /// Stops the change feed and the re-running task.
    pub fn stop(self, fe: &FrontEnd) {
        fe.node.cluster.unsubscribe(self.subscription);
        self.task.abort();
    }
}

/// Wakes the search's task on any change of the map.
struct ChangeFeed(Arc<Notify>);

impl QuerySink for ChangeFeed {
    fn deliver(&self, _: &QueryUpdate) {
        // Stores one permit when the task is busy: bursts coalesce.
        self.0.notify_one();
    }
}

/// What the client holds of one result: score and matched terms.
type Held = HashMap<String, (f64, Vec<String>)>;

/// The updates that take a client holding `held` to `hits` (best first),
/// and `held` updated to match: ENTER for a new key, UPDATE for a changed
/// score or matched terms, LEAVE (score 0, nil value) for a key no longer
/// among the hits.
#[must_use]
pub fn diff(
    held: &mut Held,
    hits: Vec<SearchHit>,
    subscription_id: &str,
) -> Vec<SearchUpdatePayload> {
    let mut out = Vec::new();
    let mut now: Held = HashMap::with_capacity(hits.len());
    for h in hits {
        let key = h.key.into_string();
        let terms: Vec<String> = h
            .matched_terms
            .into_iter()
            .map(|t| t.into_string())
            .collect();
        let change = match held.get(&key) {
            None => Some(ChangeType::Enter),
            Some((score, t)) if *score != h.score || *t != terms => Some(ChangeType::Update),
            Some(_) => None,
        };
        if let Some(change) = change {
            out.push(SearchUpdatePayload {
                subscription_id: subscription_id.to_string(),
                key: key.clone(),
                value: RawMsgpack::from_raw_value(h.value),
                score: h.score,
                matched_terms: terms.clone(),
                change_type: change.as_str().to_string(),
            });
        }
        now.insert(key, (h.score, terms));
    }
    let mut gone: Vec<&String> = held.keys().filter(|k| !now.contains_key(*k)).collect();
    gone.sort();
    for key in gone {
        out.push(SearchUpdatePayload {
            subscription_id: subscription_id.to_string(),
            key: key.clone(),
            value: RawMsgpack::nil(),
            score: 0.0,
            matched_terms: Vec::new(),
            change_type: ChangeType::Leave.as_str().to_string(),
        });
    }
    *held = now;
    out
}

fn failed(subscription_id: String, error: String) -> Message {
    Message::SearchResp {
        payload: SearchResp {
            request_id: subscription_id,
            results: Vec::new(),
            total_count: 0,
            error: Some(error),
        },
    }
}

/// `SEARCH_SUB`: registers (or replaces) a live search and answers with its
/// first results.
pub async fn subscribe(fe: &Arc<FrontEnd>, s: &mut Session, q: SearchSub) {
    let Some(_permit) = super::admit(fe, s) else {
        return;
    };
    unsubscribe(fe, s, &q.subscription_id);
    if s.searches.len() >= MAX_SEARCHES_PER_CONNECTION {
        let e =
            format!("too many live searches: at most {MAX_SEARCHES_PER_CONNECTION} per connection");
        s.reply(&failed(q.subscription_id, e)).await;
        return;
    }
    let consistency = match parse_consistency(q.consistency.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            s.reply(&failed(q.subscription_id, e)).await;
            return;
        }
    };
    let request = search_request(&q.map_name, &q.query, q.options, consistency);
    let notify = Arc::new(Notify::new());
    let sub = fe.next_subscription_id();
    let feed = QueryRequest {
        map: q.map_name.as_str().into(),
        query: RawValue::from_msgpack(vec![0xc0]),
        // Whole values: a projection would hide changes (the storage module
        // sends no UPDATE when the projected value stays the same).
        fields: abi_stable::std_types::ROption::RNone,
        consistency: consistency.into(),
    };
    // The feed first: a change after this point wakes the task, so none
    // between the first search and going live is missed.
    if let Err(e) = fe
        .node
        .cluster
        .subscribe(sub, feed, Arc::new(ChangeFeed(notify.clone())))
        .await
    {
        fe.node.cluster.unsubscribe(sub);
        let msg = format!(
            "cannot follow changes of map {}: {} ({})",
            q.map_name,
            e.message,
            status_of(&e)
        );
        s.reply(&failed(q.subscription_id, msg)).await;
        return;
    }
    let hits = match fe.node.cluster.search(request.clone()).await {
        Ok(hits) => hits.into_vec(),
        Err(e) => {
            fe.node.cluster.unsubscribe(sub);
            s.reply(&failed(q.subscription_id, e.message.to_string()))
                .await;
            return;
        }
    };
    let mut held = Held::new();
    for h in &hits {
        let terms = h.matched_terms.iter().map(|t| t.to_string()).collect();
        held.insert(h.key.to_string(), (h.score, terms));
    }
    let resp = SearchResp {
        request_id: q.subscription_id.clone(),
        total_count: u32::try_from(hits.len()).unwrap_or(u32::MAX),
        results: search_results(hits.into()),
        error: None,
    };
    s.reply(&Message::SearchResp { payload: resp }).await;

    let fe2 = Arc::clone(fe);
    let out = s.out.clone();
    let id = q.subscription_id.clone();
    let task = tokio::spawn(async move {
        loop {
            notify.notified().await;
            let hits = match fe2.node.cluster.search(request.clone()).await {
                Ok(h) => h.into_vec(),
                Err(e) => {
                    // The next change tries again; the client keeps what it has.
                    tracing::debug!(conn = out.conn(), error = %e, "live search: re-run failed");
                    continue;
                }
            };
            for u in diff(&mut held, hits, &id) {
                if !reply(&out, &Message::SearchUpdate { payload: u }).await {
                    return;
                }
            }
        }
    });
    s.searches.insert(
        q.subscription_id,
        LiveSearch {
            subscription: sub,
            task,
        },
    );
}

/// `SEARCH_UNSUB`: no answer.
pub fn unsubscribe(fe: &FrontEnd, s: &mut Session, subscription_id: &str) {
    if let Some(old) = s.searches.remove(subscription_id) {
        old.stop(fe);
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RVec;

    use super::*;

    fn hit(key: &str, score: f64, terms: &[&str]) -> SearchHit {
        SearchHit {
            key: key.into(),
            score,
            matched_terms: terms.iter().map(|t| (*t).into()).collect::<RVec<_>>(),
            value: RawValue::from_msgpack(vec![0xc0]),
        }
    }

    fn changes(u: &[SearchUpdatePayload]) -> Vec<(&str, &str, f64)> {
        u.iter()
            .map(|u| (u.key.as_str(), u.change_type.as_str(), u.score))
            .collect()
    }

    #[test]
    fn t10_diff_sends_enter_update_leave_and_nothing_for_the_unchanged() {
        let mut held = Held::new();
        let u = diff(
            &mut held,
            vec![hit("a", 2.0, &["x"]), hit("b", 1.0, &["x"])],
            "s",
        );
        assert_eq!(changes(&u), [("a", "ENTER", 2.0), ("b", "ENTER", 1.0)]);
        assert!(u.iter().all(|u| u.subscription_id == "s"));
        // Same results: nothing.
        let u = diff(
            &mut held,
            vec![hit("a", 2.0, &["x"]), hit("b", 1.0, &["x"])],
            "s",
        );
        assert!(u.is_empty());
        // b rescored, a gone, c new; a LEAVE has score 0 and a nil value.
        let u = diff(
            &mut held,
            vec![hit("c", 3.0, &["x"]), hit("b", 1.5, &["x"])],
            "s",
        );
        assert_eq!(
            changes(&u),
            [
                ("c", "ENTER", 3.0),
                ("b", "UPDATE", 1.5),
                ("a", "LEAVE", 0.0)
            ]
        );
        assert_eq!(u[2].value.as_bytes(), [0xc0]);
        assert!(u[2].matched_terms.is_empty());
        // Matched terms changing alone is an UPDATE.
        let u = diff(
            &mut held,
            vec![hit("c", 3.0, &["x", "y"]), hit("b", 1.5, &["x"])],
            "s",
        );
        assert_eq!(changes(&u), [("c", "UPDATE", 3.0)]);
    }
}
