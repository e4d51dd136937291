//! The default module's own behaviour beyond the trait contract (which the
//! conformance suite in `hangar-tests` checks), one concept per file:
//!
//! - `config`: configuration errors, and the memory backend across a restart
//!   (`t10`, `t11`).
//! - `loading`: lazy loading: one load for concurrent first uses, failed
//!   loads retried, loads and snapshots in tasklet slices (`t20`-`t23`).
//! - `fail_stop`: writes refused after a commit failure (`t30`).
//! - `gc`: TTL expiry, tombstone pruning and the expiry queue (`t40`-`t42`).
//! - `metrics`: what the module reports (`t50`).
//! - `convergence`: the convergence law through the whole module (`t60`).
//! - `clock`: timestamps the node's clock refuses, on writes, replicated
//!   changes and loads (`t70`-`t73`).
//! - `ownership`: partition table changes: partitions loaded and released
//!   in loaded maps (`t80`-`t86`).
//! - `merkle_share`: a map's Merkle tree restricted to some partitions
//!   (`t87`, `t88`).
//! - `damage`: a damaged embedded store refused at start, reset on purpose,
//!   and failed visibly when met at run time (`t90`-`t92`).
//! - `journal`: the event journal: what is journaled, retention, replay
//!   and live delivery, a restart on redb (`t100`-`t105`).
//! - `support`: the module builders, ops and sinks the tests share.

mod clock;
mod config;
mod convergence;
mod damage;
mod fail_stop;
mod gc;
mod journal;
mod loading;
mod merkle_share;
mod metrics;
mod ownership;
mod support;
