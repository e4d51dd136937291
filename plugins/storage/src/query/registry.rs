//! [`QueryRegistry`]: live queries. Subscriptions, their windows, and the
//! ENTER / UPDATE / LEAVE stream that keeps each client's copy equal to a
//! fresh execution of its query.
//!
//! # Contract
//!
//! - **Atomic registration.** [`QueryRegistry::subscribe`] computes the
//!   initial page from the records it is given and registers the
//!   subscription under the map's lock. A writer that applies a change to the
//!   map and *then* calls [`QueryRegistry::on_change`] can never be missed:
//!   either the snapshot already saw the change, or the call arrives after
//!   registration. A change seen by both is harmless: events are decided by
//!   comparing against the registry's own state, never by trusting `old`.
//! - **Order.** For one map, `on_change` calls MUST be made in the order the
//!   changes were applied (e.g. under the map's write lock).
//! - **Pruning.** A change reaches only the subscriptions the reverse index
//!   names (see `index`); unrelated maps and records cost a hash lookup.
//! - **Events.** Per subscription and change: LEAVE(s) first, then ENTER(s),
//!   then UPDATE. UPDATE only when the projected value really changed. A
//!   top-N window slides: a displaced row gets LEAVE, a promoted one ENTER.
//! - **Sinks** are called while the map's lock is held, in event order. A
//!   sink MUST NOT block and MUST NOT call back into the registry (queue the
//!   update and return).
//! - **Visibility.** The caller passes `None` for a tombstone or a
//!   TTL-expired value (GC expiry is a change to `None`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rmpv::Value;

use super::cursor::{encode_cursor, DEFAULT_CURSOR_MAX_AGE_MS};
use super::execute::{resolve_cursor, Page, ResultRow};
use super::index::{Member, Members, Registration, ReverseIndex};
use super::matcher::Row;
use super::sort::SortKey;
use super::spec::{Projection, Query};
use super::subscription::{IdMap, Subscription};
use super::update::{ChangeType, LiveSink, LiveUpdate, RegistryId};
use super::value::{identical, is_truthy};
use super::window::Window;

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Cursors older than this are `expired` (default 10 minutes).
    pub cursor_max_age_ms: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            cursor_max_age_ms: DEFAULT_CURSOR_MAX_AGE_MS,
        }
    }
}

/// A new subscription and its initial page.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// The id to unsubscribe with.
    pub id: RegistryId,
    /// The initial results (`QUERY_RESP`).
    pub page: Page,
}

#[derive(Default)]
struct MapState {
    subs: IdMap<Subscription>,
    index: ReverseIndex,
    members: Members,
}

/// The live-query registry of one node. Thread-safe; one lock per map.
pub struct QueryRegistry {
    maps: RwLock<HashMap<String, Arc<Mutex<MapState>>>>,
    owners: Mutex<IdMap<String>>,
    next_id: AtomicU64,
    options: RegistryOptions,
}

impl Default for QueryRegistry {
    fn default() -> Self {
        Self::new(RegistryOptions::default())
    }
}

impl std::fmt::Debug for QueryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRegistry")
            .field("subscriptions", &self.subscription_count())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl QueryRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new(options: RegistryOptions) -> Self {
        Self {
            maps: RwLock::new(HashMap::new()),
            owners: Mutex::new(IdMap::default()),
            next_id: AtomicU64::new(1),
            options,
        }
    }

    /// Registers a live query on `map` and returns its initial page.
    ///
    /// `rows` are the map's records now, read during this call (see the
    /// module contract): keys SHOULD be distinct; a repeated key keeps its
    /// last matching version. The page honours `query`'s cursor and limit; the
    /// live window is exactly the page's rows and then follows every change:
    /// with a limit it stays the first `limit` rows after the cursor, without
    /// one it is every matching row after the cursor.
    pub fn subscribe<'a>(
        &self,
        map: &str,
        query: Query,
        projection: Projection,
        sink: Arc<dyn LiveSink>,
        rows: impl IntoIterator<Item = Row<'a>>,
        now_ms: u64,
    ) -> Subscribed {
        let id = RegistryId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.subscribe_as(id, map, query, projection, sink, rows, now_ms)
    }

    /// [`Self::subscribe`] under an id the caller chose (the storage module
    /// takes host-assigned ids). Subscribing an id that is live replaces
    /// that subscription: it is stopped first, and none of its updates is
    /// delivered after this returns.
    ///
    /// A registry MUST be used either with caller-chosen ids or with
    /// [`Self::subscribe`]'s own, not both: the two ranges may collide.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one independent input; a struct would only be built to be taken apart"
    )]
    pub fn subscribe_as<'a>(
        &self,
        id: RegistryId,
        map: &str,
        query: Query,
        projection: Projection,
        sink: Arc<dyn LiveSink>,
        rows: impl IntoIterator<Item = Row<'a>>,
        now_ms: u64,
    ) -> Subscribed {
        self.unsubscribe(id);
        let mut maps = self.maps.write();
        let state = maps.entry(map.to_string()).or_default().clone();
        let mut guard = state.lock();
        drop(maps);
        let st = &mut *guard;

        let (after, cursor_status) = resolve_cursor(&query, now_ms, self.options.cursor_max_age_ms);
        // Matching rows; a repeated key keeps its last matching version.
        let mut hits: Vec<(&str, &Value)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for r in rows {
            if let Some(v) = r
                .visible_value(now_ms)
                .filter(|v| query.matcher().matches(v))
            {
                match seen.entry(r.key) {
                    Entry::Occupied(e) => hits[*e.get()].1 = v,
                    Entry::Vacant(e) => {
                        e.insert(hits.len());
                        hits.push((r.key, v));
                    }
                }
            }
        }
        drop(seen);
        let mut placed: Vec<(SortKey, &Value)> = Vec::with_capacity(hits.len());
        for (k, v) in hits {
            let key = st
                .members
                .get_key_value(k)
                .map_or_else(|| Arc::from(k), |(ka, _)| ka.clone());
            let sk = query.sort().key_of(key, v);
            if after.as_ref().is_none_or(|a| sk > *a) {
                placed.push((sk, v));
            }
        }
        placed.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let limit = query.limit();
        let shown = limit.map_or(placed.len(), |l| l.min(placed.len()));
        let has_more = limit.is_some_and(|l| placed.len() > l);
        let next_cursor = has_more.then(|| {
            encode_cursor(
                &placed[shown - 1].0,
                query.filter_hash(),
                query.sort_hash(),
                now_ms,
            )
        });
        let page = Page {
            rows: placed[..shown]
                .iter()
                .map(|(sk, v)| ResultRow {
                    key: sk.key().clone(),
                    value: projection.apply(v).into_owned(),
                })
                .collect(),
            next_cursor,
            has_more,
            cursor_status,
        };

        for (sk, v) in &placed {
            st.members
                .entry(sk.key().clone())
                .or_insert_with(|| Member {
                    subs: Vec::new(),
                    value: Arc::new((*v).clone()),
                })
                .subs
                .push(id);
        }
        let window = Window::build(limit, placed.into_iter().map(|(sk, _)| sk));
        let sort_interest = if after.is_some() {
            query
                .sort()
                .fields()
                .iter()
                .map(|f| f.path.top().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let registration = Registration::new(
            query.matcher().index_terms(),
            sort_interest,
            query.matcher().matches_empty_record(),
        );
        st.index.add(id, &registration);
        let positional = limit.is_some() || after.is_some();
        st.subs.insert(
            id,
            Subscription {
                query,
                projection,
                after,
                window,
                sink,
                registration,
                positional,
                no_bytes: Arc::from(Vec::new()),
            },
        );
        self.owners.lock().insert(id, map.to_string());
        Subscribed { id, page }
    }

    /// Stops a subscription. Returns `false` when `id` is unknown. No update
    /// for `id` is delivered after this returns.
    pub fn unsubscribe(&self, id: RegistryId) -> bool {
        let Some(map) = self.owners.lock().remove(&id) else {
            return false;
        };
        let Some(state) = self.maps.read().get(&map).cloned() else {
            return false;
        };
        let now_empty = {
            let mut guard = state.lock();
            let st = &mut *guard;
            let Some(sub) = st.subs.remove(&id) else {
                return false;
            };
            st.index.remove(id, &sub.registration);
            for k in sub.window.member_keys() {
                if let Some(m) = st.members.get_mut(&**k) {
                    m.subs.retain(|s| *s != id);
                    if m.subs.is_empty() {
                        st.members.remove(&**k);
                    }
                }
            }
            st.subs.is_empty()
        };
        if now_empty {
            let mut maps = self.maps.write();
            if let Some(s) = maps.get(&map) {
                if Arc::ptr_eq(s, &state) && s.lock().subs.is_empty() {
                    maps.remove(&map);
                }
            }
        }
        true
    }

    /// Stops every subscription in `ids` (a client's, on disconnect).
    /// Returns how many existed.
    pub fn unsubscribe_all(&self, ids: impl IntoIterator<Item = RegistryId>) -> usize {
        ids.into_iter().filter(|id| self.unsubscribe(*id)).count()
    }

    /// Reflects one applied change of `map[key]` into every affected
    /// subscription. `old` / `new` are the values before and after; `None`
    /// means absent, tombstoned or expired.
    pub fn on_change(&self, map: &str, key: &str, old: Option<&Value>, new: Option<&Value>) {
        let Some(state) = self.maps.read().get(map).cloned() else {
            return;
        };
        let mut guard = state.lock();
        let st = &mut *guard;
        let new = new.filter(|v| is_truthy(v));
        let stored = st
            .members
            .get_key_value(key)
            .map(|(k, m)| (k.clone(), m.value.clone(), m.subs.clone()));
        if let (Some((_, sv, _)), Some(n)) = (&stored, new) {
            if identical(sv, n) {
                return;
            }
        }

        let mut cands: Vec<RegistryId> = stored.as_ref().map(|s| s.2.clone()).unwrap_or_default();
        if let Some(n) = new {
            let prev = match &stored {
                Some((_, sv, _)) => Some(&**sv),
                None => old.filter(|v| is_truthy(v)),
            };
            if !st.index.candidates(prev, n, &mut cands) {
                cands.extend(st.subs.keys().copied());
            }
        }
        if cands.is_empty() {
            return;
        }
        cands.sort_unstable();
        cands.dedup();

        let key_arc = stored
            .as_ref()
            .map_or_else(|| Arc::from(key), |s| s.0.clone());
        let old_value = stored.map(|s| s.1);
        let new_value = new.map(|v| Arc::new(v.clone()));
        let mut joined = Vec::new();
        let mut left = Vec::new();
        for id in cands {
            let Some(sub) = st.subs.get_mut(&id) else {
                continue;
            };
            let d = sub.apply(
                id,
                &key_arc,
                old_value.as_ref(),
                new_value.as_ref(),
                &st.members,
            );
            if d.was_member && !d.is_member {
                left.push(id);
            } else if d.is_member && !d.was_member {
                joined.push(id);
            }
        }

        match st.members.get_mut(key) {
            Some(m) => {
                if !left.is_empty() {
                    m.subs.retain(|s| left.binary_search(s).is_err());
                }
                m.subs.extend_from_slice(&joined);
                match (&new_value, m.subs.is_empty()) {
                    (Some(n), false) => m.value = n.clone(),
                    _ => {
                        st.members.remove(key);
                    }
                }
            }
            None => {
                if let (Some(n), false) = (new_value, joined.is_empty()) {
                    st.members.insert(
                        key_arc,
                        Member {
                            subs: joined,
                            value: n,
                        },
                    );
                }
            }
        }
    }

    /// Forgets `keys` of `map` without telling the clients that hold them:
    /// no LEAVE is sent for them. For keys this node released from memory
    /// (its partitions moved to other nodes): the records still exist in
    /// the cluster, so they did not leave any query's result; cluster-wide
    /// queries are the cluster module's business. A top-N window that loses
    /// a visible row promotes the next matching row, which gets its ENTER
    /// as usual. Later changes and refreshes treat a forgotten key as one
    /// no subscription holds (a returning key gets an ENTER).
    pub fn forget<'a>(&self, map: &str, keys: impl IntoIterator<Item = &'a str>) {
        let Some(state) = self.maps.read().get(map).cloned() else {
            return;
        };
        let mut guard = state.lock();
        let st = &mut *guard;
        for key in keys {
            let Some((key_arc, member)) = st.members.remove_entry(key) else {
                continue;
            };
            for id in member.subs {
                let Some(sub) = st.subs.get_mut(&id) else {
                    continue;
                };
                let d = sub.window.apply(&key_arc, None);
                if let Some(p) = &d.promoted {
                    if let Some(m) = st.members.get(&**p) {
                        sub.sink.deliver(LiveUpdate {
                            subscription: id,
                            key: p.clone(),
                            change: ChangeType::Enter,
                            value: Some(sub.shown(&m.value)),
                        });
                    }
                }
            }
        }
    }

    /// Re-evaluates every subscription of `map` against `rows` (the map's
    /// records after a load) and sends each client the difference between
    /// what it holds and the fresh result: LEAVE for rows gone, ENTER for
    /// rows new, UPDATE for rows whose projected value changed. Nothing is
    /// sent for rows that did not change.
    pub fn refresh<'a>(&self, map: &str, rows: impl IntoIterator<Item = Row<'a>>, now_ms: u64) {
        let Some(state) = self.maps.read().get(map).cloned() else {
            return;
        };
        let mut guard = state.lock();
        let st = &mut *guard;
        let mut latest: HashMap<&str, &Value> = HashMap::new();
        for r in rows {
            match r.visible_value(now_ms).filter(|v| is_truthy(v)) {
                Some(v) => latest.insert(r.key, v),
                None => latest.remove(r.key),
            };
        }
        let mut shared: HashMap<&str, (Arc<str>, Arc<Value>)> = HashMap::new();
        let mut members: Members = HashMap::new();
        for (id, sub) in &mut st.subs {
            let before = sub.window.visible_keys();
            let mut placed = Vec::new();
            for (k, v) in &latest {
                if !sub.query.matcher().matches(v) {
                    continue;
                }
                let (ka, _) = shared
                    .entry(k)
                    .or_insert_with(|| (Arc::from(*k), Arc::new((*v).clone())));
                let sk = sub.query.sort().key_of(ka.clone(), v);
                if sub.after.as_ref().is_none_or(|a| sk > *a) {
                    placed.push(sk);
                }
            }
            placed.sort_unstable();
            let shown = sub
                .query
                .limit()
                .map_or(placed.len(), |l| l.min(placed.len()));
            let now_visible: HashSet<&str> = placed[..shown].iter().map(|sk| &**sk.key()).collect();
            let was_visible: HashSet<&str> = before.iter().map(|k| &**k).collect();
            let send = |change: ChangeType, key: &Arc<str>, value: Option<Arc<Value>>| {
                sub.sink.deliver(LiveUpdate {
                    subscription: *id,
                    key: key.clone(),
                    change,
                    value,
                });
            };
            for k in &before {
                if !now_visible.contains(&**k) {
                    send(ChangeType::Leave, k, None);
                }
            }
            for sk in &placed[..shown] {
                let new_v = &shared[&**sk.key()].1;
                if was_visible.contains(&**sk.key()) {
                    if let Some(old) = st.members.get(&**sk.key()) {
                        let (po, pn) = (
                            sub.projection.apply(&old.value),
                            sub.projection.apply(new_v),
                        );
                        if !identical(&po, &pn) {
                            send(ChangeType::Update, sk.key(), Some(sub.shown(new_v)));
                        }
                    }
                } else {
                    send(ChangeType::Enter, sk.key(), Some(sub.shown(new_v)));
                }
            }
            for sk in &placed {
                members
                    .entry(sk.key().clone())
                    .or_insert_with(|| Member {
                        subs: Vec::new(),
                        value: shared[&**sk.key()].1.clone(),
                    })
                    .subs
                    .push(*id);
            }
            sub.window = Window::build(sub.query.limit(), placed);
        }
        st.members = members;
    }

    /// Number of live subscriptions.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.owners.lock().len()
    }

    /// True when `map` has at least one live subscription (a writer may skip
    /// decoding values for `on_change` otherwise).
    #[must_use]
    pub fn has_subscriptions(&self, map: &str) -> bool {
        self.maps
            .read()
            .get(map)
            .is_some_and(|s| !s.lock().subs.is_empty())
    }

    /// The live subscriptions of `map`, in id order.
    #[must_use]
    pub fn subscriptions_of(&self, map: &str) -> Vec<RegistryId> {
        let Some(state) = self.maps.read().get(map).cloned() else {
            return Vec::new();
        };
        let mut ids: Vec<_> = state.lock().subs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The keys subscription `id`'s client currently holds, in query order
    /// for a limited query (any order otherwise), and how many rows match in
    /// total (visible or not). For diagnostics and tests.
    #[must_use]
    pub fn window_of(&self, id: RegistryId) -> Option<(Vec<Arc<str>>, usize)> {
        let map = self.owners.lock().get(&id).cloned()?;
        let state = self.maps.read().get(&map).cloned()?;
        let st = state.lock();
        let sub = st.subs.get(&id)?;
        Some((sub.window.visible_keys(), sub.window.member_count()))
    }
}
