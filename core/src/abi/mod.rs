//! The stable plugin ABI.
//!
//! # The pattern
//!
//! Every native trait that crosses the plugin boundary (`StorageModule`,
//! `ClusterModule`, `PartitionView`, `StorageAccessor`, `ClockService`,
//! `MetricsSink`, `QuerySink`, `ChangeSink`, `PeerResolver`, `LocalNode`) has one file
//! here holding:
//!
//! - its `#[sabi_trait]` mirror `FfiX` (abi_stable checks its layout when a
//!   plugin loads; methods are only ever appended);
//! - `XExport`, which implements the mirror over a native object with every
//!   call under a panic guard ([`guard`]);
//! - `ForeignX`, which implements the native trait over a received mirror;
//! - conversions both ways that never stack layers (see [`convert`]).
//!
//! Async methods return `async_ffi::FfiFuture`s: the implementing side boxes
//! its native future (which MUST be executor-agnostic: a plugin spawns on its
//! own runtime and awaits the task) and the calling side polls it with its own
//! wakers. No tokio or tracing type crosses; data crosses as the `StableAbi`
//! domain types, configs as msgpack bytes.
//!
//! A plugin exports a plain [`PluginDeclaration`] (magic, ABI version,
//! manifest) readable before any of its code runs, and an abi_stable root
//! module ([`PluginRoot`]) whose constructors build the modules. Both
//! symbols carry the plugin crate's name (see [`manifest`]).

pub mod accessor;
pub mod cluster;
pub mod convert;
pub mod guard;
pub mod local_node;
pub mod manifest;
pub mod partition;
pub mod root;
pub mod services;
pub mod sinks;
pub mod storage;

pub use accessor::*;
pub use cluster::*;
pub use guard::{
    await_foreign, guard, guard_future, report, set_boundary_error_hook, FfiFut, FfiResult,
};
pub use local_node::*;
pub use manifest::*;
pub use partition::*;
pub use root::*;
pub use services::*;
pub use sinks::*;
pub use storage::*;

/// Crates the export macro refers to, so plugins need not depend on them.
#[doc(hidden)]
pub mod __reexports {
    pub use abi_stable;
    pub use async_ffi;
}

use semver::{Version, VersionReq};

/// The ABI versions a host of ABI `host` accepts from a plugin.
///
/// Before 1.0 every minor may break the ABI, so the plugin's major.minor must
/// equal the host's. From 1.0 the plugin's major must equal the host's and its
/// minor must not be newer (a host knows every field an older plugin has;
/// abi_stable prefix types make the plugin's shorter prefix acceptable).
/// Patch versions never change the ABI.
#[must_use]
pub fn accepted_abi_versions(host: &Version) -> VersionReq {
    let req = if host.major == 0 {
        format!(">={}.{}.0, <{}.{}.0", 0, host.minor, 0, host.minor + 1)
    } else {
        format!(">={}.0.0, <{}.{}.0", host.major, host.major, host.minor + 1)
    };
    VersionReq::parse(&req).expect("the ABI requirement is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_pre_1_0_requires_the_same_minor() {
        let req = accepted_abi_versions(&Version::parse("0.3.2").unwrap());
        assert!(req.matches(&Version::parse("0.3.0").unwrap()));
        assert!(req.matches(&Version::parse("0.3.9").unwrap()));
        assert!(!req.matches(&Version::parse("0.2.9").unwrap()));
        assert!(!req.matches(&Version::parse("0.4.0").unwrap()));
        assert!(!req.matches(&Version::parse("1.3.0").unwrap()));
    }

    #[test]
    fn t11_post_1_0_accepts_older_minors_of_the_same_major() {
        let req = accepted_abi_versions(&Version::parse("1.4.0").unwrap());
        assert!(req.matches(&Version::parse("1.0.0").unwrap()));
        assert!(req.matches(&Version::parse("1.4.7").unwrap()));
        assert!(!req.matches(&Version::parse("1.5.0").unwrap()));
        assert!(!req.matches(&Version::parse("2.0.0").unwrap()));
    }
}
