//! [`Window`]: what one live subscription currently holds, and how one
//! change moves it.
//!
//! Two shapes:
//!
//! - `All` (no limit): the window is every matching record; a set of keys.
//! - `Top` (a limit `n`): an ordered set of ALL matching records by
//!   [`SortKey`], plus a pointer to the last row inside the window (rank
//!   `min(n, len) - 1`). A row is visible iff it is `<=` that pointer. Every
//!   change costs O(log m) for m matching rows: removing a visible row
//!   promotes the successor of the pointer; inserting a row before the
//!   pointer into a full window displaces the pointer's row. There is never a
//!   re-execution over the map.
//!
//! The invariant checked by the tests: after any sequence of changes, the
//! visible rows equal the first `n` rows of a from-scratch execution.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use super::sort::SortKey;

/// How one change moved a window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Delta {
    /// The changed key was in the matching set before / after.
    pub was_member: bool,
    pub is_member: bool,
    /// The changed key was visible to the client before / after.
    pub was_visible: bool,
    pub is_visible: bool,
    /// Another key that became visible (promoted into a top-N window).
    pub promoted: Option<Arc<str>>,
    /// Another key that stopped being visible (displaced from a top-N window).
    pub displaced: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) enum Window {
    All {
        members: HashSet<Arc<str>>,
    },
    Top {
        limit: usize,
        set: BTreeSet<SortKey>,
        entries: HashMap<Arc<str>, SortKey>,
        last: Option<SortKey>,
    },
}

impl Window {
    /// An empty window; `limit` of `None` means unlimited.
    pub(crate) fn new(limit: Option<usize>) -> Self {
        match limit {
            None => Self::All {
                members: HashSet::new(),
            },
            Some(limit) => Self::Top {
                limit: limit.max(1),
                set: BTreeSet::new(),
                entries: HashMap::new(),
                last: None,
            },
        }
    }

    /// Builds a window from matching rows in any order (keys distinct).
    pub(crate) fn build(limit: Option<usize>, rows: impl IntoIterator<Item = SortKey>) -> Self {
        let mut w = Self::new(limit);
        match &mut w {
            Self::All { members } => members.extend(rows.into_iter().map(|sk| sk.key().clone())),
            Self::Top {
                limit,
                set,
                entries,
                last,
            } => {
                for sk in rows {
                    entries.insert(sk.key().clone(), sk.clone());
                    set.insert(sk);
                }
                let n = (*limit).min(set.len());
                *last = n.checked_sub(1).and_then(|i| set.iter().nth(i).cloned());
            }
        }
        w
    }

    /// Every key of the matching set.
    pub(crate) fn member_keys(&self) -> Box<dyn Iterator<Item = &Arc<str>> + '_> {
        match self {
            Self::All { members } => Box::new(members.iter()),
            Self::Top { entries, .. } => Box::new(entries.keys()),
        }
    }

    /// The keys the client holds (window order for `Top`, any order for `All`).
    pub(crate) fn visible_keys(&self) -> Vec<Arc<str>> {
        match self {
            Self::All { members } => members.iter().cloned().collect(),
            Self::Top { set, last, .. } => match last {
                None => Vec::new(),
                Some(l) => set.range(..=l.clone()).map(|sk| sk.key().clone()).collect(),
            },
        }
    }

    /// Number of matching rows (visible or not).
    pub(crate) fn member_count(&self) -> usize {
        match self {
            Self::All { members } => members.len(),
            Self::Top { entries, .. } => entries.len(),
        }
    }

    /// Applies a change of `key`: `now` is its new position when it now
    /// belongs to the matching set, `None` when it does not.
    pub(crate) fn apply(&mut self, key: &Arc<str>, now: Option<SortKey>) -> Delta {
        match self {
            Self::All { members } => {
                let was = members.contains(&**key);
                let is = now.is_some();
                if was && !is {
                    members.remove(&**key);
                } else if is && !was {
                    members.insert(key.clone());
                }
                Delta {
                    was_member: was,
                    is_member: is,
                    was_visible: was,
                    is_visible: is,
                    promoted: None,
                    displaced: None,
                }
            }
            Self::Top {
                limit,
                set,
                entries,
                last,
            } => {
                // Still matching at the same position: the window is unchanged
                // (the common case of a change to a field the sort ignores).
                if let (Some(old), Some(n)) = (entries.get(&**key), &now) {
                    if old == n {
                        let vis = visible(last, old);
                        return Delta {
                            was_member: true,
                            is_member: true,
                            was_visible: vis,
                            is_visible: vis,
                            promoted: None,
                            displaced: None,
                        };
                    }
                }
                let old = entries.remove(&**key);
                let was_visible = old.as_ref().is_some_and(|o| visible(last, o));
                let mut promoted = old.as_ref().and_then(|o| remove(set, last, o));
                let mut displaced = now.as_ref().and_then(|n| {
                    entries.insert(key.clone(), n.clone());
                    insert(set, last, *limit, n.clone())
                });
                let is_visible = now.as_ref().is_some_and(|n| visible(last, n));
                if promoted.is_some() && promoted == displaced {
                    promoted = None;
                    displaced = None;
                }
                Delta {
                    was_member: old.is_some(),
                    is_member: now.is_some(),
                    was_visible,
                    is_visible,
                    promoted: promoted.map(|p| p.key().clone()),
                    displaced: displaced.map(|d| d.key().clone()),
                }
            }
        }
    }
}

fn visible(last: &Option<SortKey>, sk: &SortKey) -> bool {
    last.as_ref().is_some_and(|l| sk <= l)
}

/// Removes `sk` (a member); returns the row promoted into the window, if any.
fn remove(
    set: &mut BTreeSet<SortKey>,
    last: &mut Option<SortKey>,
    sk: &SortKey,
) -> Option<SortKey> {
    let was_visible = visible(last, sk);
    set.remove(sk);
    if !was_visible {
        return None;
    }
    let l = last.clone()?;
    if *sk == l {
        let succ = set
            .range((Bound::Excluded(sk), Bound::Unbounded))
            .next()
            .cloned();
        match succ {
            Some(s) => {
                *last = Some(s.clone());
                Some(s)
            }
            None => {
                *last = set.range(..sk).next_back().cloned();
                None
            }
        }
    } else {
        let succ = set
            .range((Bound::Excluded(&l), Bound::Unbounded))
            .next()
            .cloned();
        if let Some(s) = &succ {
            *last = Some(s.clone());
        }
        succ
    }
}

/// Inserts `sk` (not a member); returns the row displaced from the window, if any.
fn insert(
    set: &mut BTreeSet<SortKey>,
    last: &mut Option<SortKey>,
    limit: usize,
    sk: SortKey,
) -> Option<SortKey> {
    let full = set.len() >= limit;
    set.insert(sk.clone());
    let Some(l) = last.clone() else {
        *last = Some(sk);
        return None;
    };
    if !full {
        if sk > l {
            *last = Some(sk);
        }
        None
    } else if sk < l {
        *last = set.range(..&l).next_back().cloned();
        Some(l)
    } else {
        None
    }
}
