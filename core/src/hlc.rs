//! The hybrid logical clock every node owns and both modules use.
//!
//! `now()` never goes backwards; `update(remote)` folds a timestamp seen from
//! elsewhere into the clock so that later local timestamps order after it.
//! The branch order of `update` is the TypeScript client's, so that the two
//! stay comparable.
//!
//! # Refusing hostile clocks
//!
//! A remote timestamp further ahead of this node's wall clock than the drift
//! bound is refused and leaves the clock untouched (the default; see
//! [`HlcOptions::strict`]). Accepting it would move the clock there for good:
//! every later local timestamp (server-stamped tombstones included) would
//! carry that time, so honest writers could never again win a merge against
//! it. A remote node id containing `:` is refused too: timestamps travel as
//! `millis:counter:nodeId` strings (OR tags) and such an id cannot be parsed
//! back.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::types::Timestamp;

/// Default bound on how far a remote timestamp may run ahead of this node's
/// wall clock (60 s).
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A source of wall-clock milliseconds; injectable for tests.
pub type ClockSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system wall clock in milliseconds since the Unix epoch.
#[must_use]
pub fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a clock could not be built or a remote timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// Node ids end up in `millis:counter:nodeId` strings, so `:` is refused.
    #[error("invalid node id {0:?}: node ids must be non-empty and must not contain ':'")]
    InvalidNodeId(String),
    /// The remote clock is too far ahead of ours (strict mode, the default).
    #[error("clock drift: remote timestamp {remote} is {drift_ms} ms ahead of this node's clock; the bound is {max_drift_ms} ms (is the writer's clock wrong?)")]
    DriftExceeded {
        /// The refused timestamp, in string form.
        remote: String,
        /// How far ahead it was.
        drift_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

/// Checks that a node id can appear in a timestamp string.
///
/// # Errors
/// [`HlcError::InvalidNodeId`] when it is empty or contains `:`.
pub fn validate_node_id(node_id: &str) -> Result<(), HlcError> {
    if node_id.is_empty() || node_id.contains(':') {
        return Err(HlcError::InvalidNodeId(node_id.to_string()));
    }
    Ok(())
}

/// What `update` observed, so the caller can log or count drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateReport {
    /// Milliseconds the remote was ahead of the wall clock beyond the bound;
    /// 0 when within the bound.
    pub excess_drift_ms: u64,
}

/// Configuration of an [`Hlc`].
#[derive(Clone)]
pub struct HlcOptions {
    /// Bound on remote drift ahead of the wall clock.
    pub max_drift_ms: u64,
    /// Refuse timestamps beyond the bound, leaving the clock untouched (the
    /// default). `false` accepts them, jumps the clock and only reports the
    /// excess in [`UpdateReport`]: for tests and tools, never for a node
    /// that takes timestamps from clients or peers.
    pub strict: bool,
    /// Wall clock.
    pub clock: ClockSource,
}

impl Default for HlcOptions {
    fn default() -> Self {
        Self {
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            strict: true,
            clock: Arc::new(system_millis),
        }
    }
}

impl std::fmt::Debug for HlcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlcOptions")
            .field("max_drift_ms", &self.max_drift_ms)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

/// A hybrid logical clock.
///
/// Invariant: every timestamp `now()` returns is strictly greater than every
/// timestamp it returned before and than every remote timestamp accepted by
/// `update` before it.
pub struct Hlc {
    node_id: String,
    opts: HlcOptions,
    state: Mutex<(u64, u32)>,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, c) = *self.state.lock();
        f.debug_struct("Hlc")
            .field("node_id", &self.node_id)
            .field("last", &(m, c))
            .finish()
    }
}

impl Hlc {
    /// A clock for `node_id` with default options (60 s drift bound, strict).
    ///
    /// # Errors
    /// [`HlcError::InvalidNodeId`] when the node id contains `:`.
    pub fn new(node_id: &str) -> Result<Self, HlcError> {
        Self::with_options(node_id, HlcOptions::default())
    }

    /// A clock with explicit options.
    ///
    /// # Errors
    /// [`HlcError::InvalidNodeId`] when the node id contains `:`.
    pub fn with_options(node_id: &str, opts: HlcOptions) -> Result<Self, HlcError> {
        validate_node_id(node_id)?;
        Ok(Self {
            node_id: node_id.to_string(),
            opts,
            state: Mutex::new((0, 0)),
        })
    }

    /// This clock's node id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The wall clock this HLC reads (also used for TTL checks).
    #[must_use]
    pub fn wall_millis(&self) -> u64 {
        (self.opts.clock)()
    }

    /// A new timestamp, strictly greater than any before it.
    pub fn now(&self) -> Timestamp {
        let physical = self.wall_millis();
        let mut st = self.state.lock();
        if physical > st.0 {
            *st = (physical, 0);
        } else {
            st.1 = st.1.wrapping_add(1);
            if st.1 == 0 {
                // Counter overflow within one millisecond: borrow the next ms.
                st.0 += 1;
            }
        }
        Timestamp::new(st.0, st.1, self.node_id.as_str())
    }

    /// Folds a remote timestamp into the clock.
    ///
    /// # Errors
    /// The clock is unchanged after any error.
    /// - [`HlcError::InvalidNodeId`] when `remote.node_id` contains `:`.
    /// - In strict mode (the default), [`HlcError::DriftExceeded`] when
    ///   `remote` is more than the drift bound ahead of the wall clock.
    pub fn update(&self, remote: &Timestamp) -> Result<UpdateReport, HlcError> {
        // Only `:` makes an id unparseable in `millis:counter:nodeId`; an
        // empty remote id is harmless and older clients may send one.
        if remote.node_id.contains(':') {
            return Err(HlcError::InvalidNodeId(remote.node_id.to_string()));
        }
        let physical = self.wall_millis();
        let drift = remote.millis.saturating_sub(physical);
        let mut report = UpdateReport::default();
        if drift > self.opts.max_drift_ms {
            if self.opts.strict {
                return Err(HlcError::DriftExceeded {
                    remote: remote.to_string(),
                    drift_ms: drift,
                    max_drift_ms: self.opts.max_drift_ms,
                });
            }
            report.excess_drift_ms = drift - self.opts.max_drift_ms;
        }
        let mut st = self.state.lock();
        let (last_m, last_c) = *st;
        let max = last_m.max(physical).max(remote.millis);
        let next = if max == last_m && max == remote.millis {
            last_c.max(remote.counter).checked_add(1)
        } else if max == last_m {
            last_c.checked_add(1)
        } else if max == remote.millis {
            remote.counter.checked_add(1)
        } else {
            Some(0)
        };
        // Counter overflow: borrow the next millisecond, as `now` does, so
        // that later timestamps still order after `remote`.
        *st = next.map_or((max.saturating_add(1), 0), |c| (max, c));
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn fixed_clock(start: u64) -> (Arc<AtomicU64>, HlcOptions) {
        let t = Arc::new(AtomicU64::new(start));
        let t2 = t.clone();
        let opts = HlcOptions {
            clock: Arc::new(move || t2.load(Ordering::SeqCst)),
            ..HlcOptions::default()
        };
        (t, opts)
    }

    #[test]
    fn t10_node_ids_with_colons_are_refused() {
        assert_eq!(
            Hlc::new("a:b").unwrap_err(),
            HlcError::InvalidNodeId("a:b".into())
        );
        assert!(Hlc::new("").is_err());
        assert!(Hlc::new("node-1").is_ok());
    }

    #[test]
    fn t11_now_is_monotonic_when_the_wall_clock_stalls_or_goes_back() {
        let (t, opts) = fixed_clock(1000);
        let h = Hlc::with_options("n", opts).unwrap();
        let a = h.now();
        let b = h.now();
        t.store(900, Ordering::SeqCst);
        let c = h.now();
        assert_eq!((a.millis, a.counter), (1000, 0));
        assert_eq!((b.millis, b.counter), (1000, 1));
        assert_eq!((c.millis, c.counter), (1000, 2));
        t.store(2000, Ordering::SeqCst);
        assert_eq!(h.now().counter, 0);
    }

    #[test]
    fn t12_update_branches_follow_the_reference_order() {
        let (t, opts) = fixed_clock(1000);
        let h = Hlc::with_options("n", opts).unwrap();
        h.now(); // last = (1000, 0)
                 // remote equal to last millis: max(counters) + 1
        h.update(&Timestamp::new(1000, 5, "r")).unwrap();
        assert_eq!(*h.state.lock(), (1000, 6));
        // last wins alone: counter + 1
        h.update(&Timestamp::new(10, 50, "r")).unwrap();
        assert_eq!(*h.state.lock(), (1000, 7));
        // remote ahead: remote counter + 1
        h.update(&Timestamp::new(1500, 3, "r")).unwrap();
        assert_eq!(*h.state.lock(), (1500, 4));
        // wall clock ahead of both: counter 0
        t.store(3000, Ordering::SeqCst);
        h.update(&Timestamp::new(10, 3, "r")).unwrap();
        assert_eq!(*h.state.lock(), (3000, 0));
        // and the next local timestamp orders after everything seen
        assert!(h.now() > Timestamp::new(1500, 3, "r"));
    }

    #[test]
    fn t14_update_with_a_saturated_counter_borrows_the_next_millisecond() {
        let (_t, opts) = fixed_clock(0);
        let h = Hlc::with_options("n", opts).unwrap();
        let remote = Timestamp::new(5, u32::MAX, "r");
        h.update(&remote).unwrap();
        assert_eq!(*h.state.lock(), (6, 0));
        assert!(h.now() > remote);
    }

    #[test]
    fn t13_drift_beyond_the_bound_is_refused_by_default_and_only_reported_when_lax() {
        let (_t, opts) = fixed_clock(1000);
        let strict = Hlc::with_options("n", opts.clone()).unwrap();
        let e = strict
            .update(&Timestamp::new(1000 + 70_000, 0, "r"))
            .unwrap_err();
        assert!(matches!(
            e,
            HlcError::DriftExceeded {
                drift_ms: 70_000,
                ..
            }
        ));
        assert_eq!(
            *strict.state.lock(),
            (0, 0),
            "refused update leaves the clock"
        );
        assert!(strict
            .update(&Timestamp::new(1000 + 60_000, 0, "r"))
            .is_ok());
        let lax = Hlc::with_options(
            "n",
            HlcOptions {
                strict: false,
                ..opts
            },
        )
        .unwrap();
        let r = lax.update(&Timestamp::new(1000 + 70_000, 0, "r")).unwrap();
        assert_eq!(r.excess_drift_ms, 10_000);
    }

    #[test]
    fn t15_a_far_future_remote_never_moves_the_clock() {
        let (_t, opts) = fixed_clock(1_000_000);
        let h = Hlc::with_options("n", opts).unwrap();
        let before = h.now();
        for millis in [u64::MAX, 1_000_000 + 3_600_000] {
            let e = h
                .update(&Timestamp::new(millis, u32::MAX, "evil"))
                .unwrap_err();
            assert!(e.to_string().contains("ahead of this node's clock"), "{e}");
        }
        let after = h.now();
        assert_eq!(
            (after.millis, after.counter),
            (before.millis, before.counter + 1)
        );
    }

    #[test]
    fn t16_a_remote_node_id_with_a_colon_is_refused_and_leaves_the_clock() {
        let (_t, opts) = fixed_clock(1000);
        let h = Hlc::with_options("n", opts).unwrap();
        assert_eq!(
            h.update(&Timestamp::new(1500, 0, "a:b")).unwrap_err(),
            HlcError::InvalidNodeId("a:b".into())
        );
        assert_eq!(*h.state.lock(), (0, 0));
        assert!(
            h.update(&Timestamp::new(1500, 0, "")).is_ok(),
            "an empty id parses back"
        );
    }
}
