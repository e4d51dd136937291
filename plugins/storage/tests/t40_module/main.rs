//! The default module's own behaviour beyond the trait contract (which the
//! conformance suite in `hangar-tests` checks), one concept per file:
//!
//! - `t10_config`: configuration errors, and the memory backend across a restart
//!   (`t10`, `t11`).
//! - `t20_loading`: lazy loading: one load for concurrent first uses, failed
//!   loads retried, loads and snapshots in tasklet slices (`t20`-`t23`).
//! - `t30_commit_failure`: writes refused after a commit failure until a
//!   commit succeeds again (`t30`).
//! - `t40_gc`: TTL expiry, tombstone pruning and the expiry queue (`t40`-`t42`).
//! - `t50_metrics`: what the module reports (`t50`).
//! - `t60_convergence`: the convergence law through the whole module (`t60`).
//! - `t70_clock`: timestamps the node's clock refuses, on writes, replicated
//!   changes and loads (`t70`-`t73`).
//! - `t80_ownership`: partition table changes: partitions loaded and released
//!   in loaded maps (`t80`-`t86`).
//! - `t87_merkle_share`: a map's Merkle tree restricted to some partitions
//!   (`t87`, `t88`).
//! - `t90_damage`: a damaged embedded store refused at start, reset on purpose,
//!   and failed visibly when met at run time (`t90`-`t92`).
//! - `t93_journal`: the event journal: what is journaled, retention, replay
//!   and live delivery, a restart on redb (`t93`-`t98`).
//! - `support`: the module builders, ops and sinks the tests share.

mod support;
mod t10_config;
mod t20_loading;
mod t30_commit_failure;
mod t40_gc;
mod t50_metrics;
mod t60_convergence;
mod t70_clock;
mod t80_ownership;
mod t87_merkle_share;
mod t90_damage;
mod t93_journal;
