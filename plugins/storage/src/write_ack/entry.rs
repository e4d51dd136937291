//! The state of one pending acknowledgement: which levels were notified, what
//! was requested, until when, and who waits; plus the layout of ack ids and
//! the wording of results.
//!
//! # Ack id layout
//!
//! ```text
//! bit  63      1 = resolved at registration (FIRE_AND_FORGET / MEMORY target):
//!                  no entry is kept, waiting on it succeeds at once
//! bits 60..=62 the requested level of such an id (0..=1)
//! bits 0..=59  sequence number from one counter, starting at 1
//! ```
//!
//! Ids are therefore never 0 and never repeat (2^60 registrations). Ids of
//! entries that are kept have bits 60..=63 clear, and their shard is the low
//! bits of the sequence number, which spreads consecutive registrations over
//! all shards.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString};
use hangar_core::module::storage_types::{AckId, AckResult};
use hangar_core::types::WriteConcern;
use tokio::time::Instant;

use super::waiter::Batch;

/// Set on ids that were resolved at registration.
pub(crate) const IMMEDIATE_BIT: u64 = 1 << 63;
const LEVEL_SHIFT: u32 = 60;
/// The sequence-number part of an id.
pub(crate) const SEQ_MASK: u64 = (1 << LEVEL_SHIFT) - 1;

/// Builds the id of an ack resolved at registration.
pub(crate) fn immediate_id(seq: u64, target: WriteConcern) -> AckId {
    IMMEDIATE_BIT | ((target as u64) << LEVEL_SHIFT) | (seq & SEQ_MASK)
}

/// The requested level of an immediate id, or `None` for a kept one.
pub(crate) fn immediate_target(id: AckId) -> Option<WriteConcern> {
    if id & IMMEDIATE_BIT == 0 {
        return None;
    }
    let idx = ((id >> LEVEL_SHIFT) & 0b111) as usize;
    Some(WriteConcern::ALL[idx.min(WriteConcern::ALL.len() - 1)])
}

/// The set of levels notified so far, one bit per level.
///
/// The achieved level is the highest level `L` such that every level from
/// FIRE_AND_FORGET up to `L` is in the set: a gap (PERSISTED notified but
/// REPLICATED not) caps it below the gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reached(u8);

impl Reached {
    /// What registration records: FIRE_AND_FORGET and MEMORY.
    pub(crate) const AT_REGISTRATION: Self =
        Self((1 << WriteConcern::FireAndForget as u8) | (1 << WriteConcern::Memory as u8));

    /// Adds a level; returns true if it was new.
    pub(crate) fn insert(&mut self, level: WriteConcern) -> bool {
        let bit = 1u8 << (level as u8);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// The highest level with every level below it present.
    pub(crate) fn achieved(self) -> WriteConcern {
        // The run of ones from bit 0 has length `trailing_ones`; registration
        // always sets bits 0 and 1, so the run is at least 2 long.
        let run = self.0.trailing_ones() as usize;
        WriteConcern::ALL[run.clamp(1, WriteConcern::ALL.len()) - 1]
    }
}

/// How an entry was resolved while nobody waited for it yet. A timeout is not
/// recorded here until it is observed (by `wait`, a notification or a sweep).
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The requested level was reached before the deadline.
    Reached,
    /// The deadline passed first.
    Timeout,
    /// `fail` was called with this message.
    Failed(RString),
    /// The manager shut down first.
    Shutdown,
}

/// Who, if anyone, is interested in an entry.
#[derive(Debug)]
pub(crate) enum EntryState {
    /// Unresolved, nobody waits yet.
    Pending,
    /// Unresolved; slot `slot` of `batch` waits for it.
    Waiting {
        /// The wait call's shared results.
        batch: Arc<Batch>,
        /// Index of this ack in that call.
        slot: u32,
    },
    /// Resolved before anyone waited; the first `wait` takes it.
    Resolved(Outcome),
}

/// One kept acknowledgement.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The requested level.
    pub(crate) target: WriteConcern,
    /// Levels notified before the deadline.
    pub(crate) reached: Reached,
    /// When the wait gives up.
    pub(crate) deadline: Instant,
    /// Waiter or resolution.
    pub(crate) state: EntryState,
}

impl Entry {
    /// True when a wait call that is still alive waits for this entry.
    pub(crate) fn has_live_waiter(&self) -> bool {
        matches!(&self.state, EntryState::Waiting { batch, .. } if !batch.is_abandoned())
    }

    /// The result an outcome gives for this entry.
    pub(crate) fn result(&self, ack: AckId, outcome: &Outcome) -> AckResult {
        let achieved = self.reached.achieved();
        match outcome {
            Outcome::Reached => success(ack, achieved),
            Outcome::Timeout => failure(
                ack,
                achieved,
                format!("Timeout: achieved {achieved}, requested {}", self.target),
            ),
            Outcome::Failed(msg) => failure(ack, achieved, msg.as_str()),
            Outcome::Shutdown if achieved >= self.target => success(ack, achieved),
            Outcome::Shutdown => failure(
                ack,
                achieved,
                format!("Shutdown: achieved {achieved}, requested {}", self.target),
            ),
        }
    }
}

/// A successful result.
pub(crate) fn success(ack: AckId, achieved: WriteConcern) -> AckResult {
    AckResult {
        ack,
        success: true,
        achieved,
        error: ROption::RNone,
    }
}

/// A failed result with `error`.
pub(crate) fn failure(ack: AckId, achieved: WriteConcern, error: impl Into<RString>) -> AckResult {
    AckResult {
        ack,
        success: false,
        achieved,
        error: ROption::RSome(error.into()),
    }
}

/// The result for an id the manager does not hold.
pub(crate) fn unknown(ack: AckId) -> AckResult {
    if ack == 0 {
        return failure(
            ack,
            WriteConcern::FireAndForget,
            "Ack id 0 names no acknowledgement (the op was rejected); expected an id returned by register",
        );
    }
    failure(
        ack,
        WriteConcern::FireAndForget,
        format!(
            "Unknown ack {ack}: never registered, already awaited, or forgotten after its deadline"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_achieved_is_the_top_of_the_unbroken_run_of_levels() {
        let mut r = Reached::AT_REGISTRATION;
        assert_eq!(r.achieved(), WriteConcern::Memory);
        r.insert(WriteConcern::Persisted);
        assert_eq!(r.achieved(), WriteConcern::Memory, "a gap caps the level");
        r.insert(WriteConcern::Applied);
        assert_eq!(r.achieved(), WriteConcern::Applied);
        assert!(r.insert(WriteConcern::Replicated));
        assert!(
            !r.insert(WriteConcern::Replicated),
            "second insert is not new"
        );
        assert_eq!(r.achieved(), WriteConcern::Persisted);
    }

    #[test]
    fn t11_immediate_ids_carry_their_level_and_are_never_zero() {
        for target in [WriteConcern::FireAndForget, WriteConcern::Memory] {
            let id = immediate_id(1, target);
            assert_ne!(id, 0);
            assert_eq!(immediate_target(id), Some(target));
        }
        assert_eq!(immediate_target(7), None);
    }
}
