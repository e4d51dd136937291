//! ABI mirrors of the host services: clock, metrics, peer resolver, and the
//! log sink that carries plugin log events to the host's subscriber.

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, RStr, RString, RVec};
use abi_stable::StableAbi;

use super::convert::conversions;
use super::guard::{guard, report, FfiResult};
use crate::error::ModuleResult;
use crate::module::cluster::PeerResolver;
use crate::module::services::{ClockService, MetricSample, MetricsSink};
use crate::types::Timestamp;

/// ABI mirror of [`ClockService`].
#[sabi_trait]
pub trait FfiClock: Send + Sync + Clone {
    /// See [`ClockService::now`].
    fn now(&self) -> FfiResult<Timestamp>;
    /// See [`ClockService::update`].
    fn update(&self, remote: &Timestamp) -> FfiResult<u64>;
    /// See [`ClockService::wall_millis`].
    fn wall_millis(&self) -> FfiResult<u64>;
    /// See [`ClockService::node_id`].
    #[sabi(last_prefix_field)]
    fn node_id(&self) -> FfiResult<RString>;
}

/// A clock as it crosses the boundary.
pub type FfiClockBox = FfiClock_TO<'static, RArc<()>>;

/// Exports a native clock.
#[derive(Clone)]
pub struct ClockExport(pub std::sync::Arc<dyn ClockService>);

impl FfiClock for ClockExport {
    fn now(&self) -> FfiResult<Timestamp> {
        guard("clock.now", || Ok(self.0.now()))
    }
    fn update(&self, remote: &Timestamp) -> FfiResult<u64> {
        guard("clock.update", || self.0.update(remote))
    }
    fn wall_millis(&self) -> FfiResult<u64> {
        guard("clock.wall_millis", || Ok(self.0.wall_millis()))
    }
    fn node_id(&self) -> FfiResult<RString> {
        guard("clock.node_id", || Ok(self.0.node_id()))
    }
}

/// A clock received through the boundary.
pub struct ForeignClock(pub FfiClockBox);

impl ClockService for ForeignClock {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn now(&self) -> Timestamp {
        // A clock that cannot answer is a broken host; fall back to the wall
        // clock so the caller still gets a usable, if weaker, timestamp.
        report(self.0.now(), || {
            Timestamp::new(crate::hlc::system_millis(), 0, "unknown")
        })
    }
    fn update(&self, remote: &Timestamp) -> ModuleResult<u64> {
        self.0.update(remote).into()
    }
    fn wall_millis(&self) -> u64 {
        report(self.0.wall_millis(), crate::hlc::system_millis)
    }
    fn node_id(&self) -> RString {
        report(self.0.node_id(), || RString::from("unknown"))
    }
}

conversions! {
    native: ClockService,
    ffi_box: FfiClockBox,
    ffi_to: FfiClock_TO,
    export: ClockExport,
    foreign: ForeignClock,
    to_ffi: clock_to_ffi,
    from_ffi: clock_from_ffi,
    to_ffi_forced: clock_to_ffi_forced,
    from_ffi_forced: clock_from_ffi_forced,
}

/// ABI mirror of [`MetricsSink`].
#[sabi_trait]
pub trait FfiMetrics: Send + Sync + Clone {
    /// See [`MetricsSink::record`].
    #[sabi(last_prefix_field)]
    fn record(&self, sample: MetricSample<'_>) -> FfiResult<()>;
}

/// A metrics sink as it crosses the boundary.
pub type FfiMetricsBox = FfiMetrics_TO<'static, RArc<()>>;

/// Exports a native metrics sink.
#[derive(Clone)]
pub struct MetricsExport(pub std::sync::Arc<dyn MetricsSink>);

impl FfiMetrics for MetricsExport {
    fn record(&self, sample: MetricSample<'_>) -> FfiResult<()> {
        guard("metrics.record", || {
            self.0.record(sample);
            Ok(())
        })
    }
}

/// A metrics sink received through the boundary.
pub struct ForeignMetrics(pub FfiMetricsBox);

impl MetricsSink for ForeignMetrics {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn record(&self, sample: MetricSample<'_>) {
        report(self.0.record(sample), || ());
    }
}

conversions! {
    native: MetricsSink,
    ffi_box: FfiMetricsBox,
    ffi_to: FfiMetrics_TO,
    export: MetricsExport,
    foreign: ForeignMetrics,
    to_ffi: metrics_to_ffi,
    from_ffi: metrics_from_ffi,
    to_ffi_forced: metrics_to_ffi_forced,
    from_ffi_forced: metrics_from_ffi_forced,
}

/// ABI mirror of [`PeerResolver`].
#[sabi_trait]
pub trait FfiPeerResolver: Send + Sync + Clone {
    /// See [`PeerResolver::resolve`].
    #[sabi(last_prefix_field)]
    fn resolve(&self) -> FfiResult<RVec<RString>>;
}

/// A peer resolver as it crosses the boundary.
pub type FfiPeerResolverBox = FfiPeerResolver_TO<'static, RArc<()>>;

/// Exports a native peer resolver.
#[derive(Clone)]
pub struct PeerResolverExport(pub std::sync::Arc<dyn PeerResolver>);

impl FfiPeerResolver for PeerResolverExport {
    fn resolve(&self) -> FfiResult<RVec<RString>> {
        guard("peer_resolver.resolve", || Ok(self.0.resolve()))
    }
}

/// A peer resolver received through the boundary.
pub struct ForeignPeerResolver(pub FfiPeerResolverBox);

impl PeerResolver for ForeignPeerResolver {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn resolve(&self) -> RVec<RString> {
        report(self.0.resolve(), RVec::new)
    }
}

conversions! {
    native: PeerResolver,
    ffi_box: FfiPeerResolverBox,
    ffi_to: FfiPeerResolver_TO,
    export: PeerResolverExport,
    foreign: ForeignPeerResolver,
    to_ffi: peer_resolver_to_ffi,
    from_ffi: peer_resolver_from_ffi,
    to_ffi_forced: peer_resolver_to_ffi_forced,
    from_ffi_forced: peer_resolver_from_ffi_forced,
}

/// Severity of a log record: 1 = error, 2 = warn, 3 = info, 4 = debug,
/// 5 = trace (tracing's order). 0 means "off" as a maximum level.
pub type LogLevel = u8;

/// One log event of a plugin, flattened for the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct LogRecord<'a> {
    /// Severity, see [`LogLevel`].
    pub level: LogLevel,
    /// Name of the plugin that logged.
    pub plugin: RStr<'a>,
    /// The event's target (module path inside the plugin).
    pub target: RStr<'a>,
    /// The message.
    pub message: RStr<'a>,
    /// Other fields as `key=value` pairs separated by spaces.
    pub fields: RStr<'a>,
}

/// Where a plugin sends its log events; implemented by the host.
///
/// # Contract
/// `log` MUST NOT block and MUST NOT call into any plugin. `max_level` is
/// read often and MUST be cheap; the plugin drops events above it.
#[sabi_trait]
pub trait FfiLogSink: Send + Sync + Clone {
    /// The most verbose level the host wants.
    fn max_level(&self) -> LogLevel;
    /// One event.
    #[sabi(last_prefix_field)]
    fn log(&self, record: LogRecord<'_>);
}

/// A log sink as it crosses the boundary.
pub type FfiLogSinkBox = FfiLogSink_TO<'static, RArc<()>>;
