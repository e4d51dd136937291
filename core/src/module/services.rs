//! Services the host owns and hands to the modules: the hybrid logical clock
//! and metrics.

use abi_stable::std_types::{RStr, RString, Tuple2};
use abi_stable::StableAbi;

use crate::error::{ErrorKind, ModuleError, ModuleResult};
use crate::hlc::{Hlc, UpdateReport};
use crate::types::Timestamp;

/// The node's hybrid logical clock as a service.
///
/// # Contract
/// - `now()` MUST return a timestamp strictly greater than every timestamp it
///   returned before and than every remote accepted by `update` before it.
/// - `update` MUST NOT move the clock backwards; an `Err` leaves it unchanged.
pub trait ClockService: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// A new timestamp from this node.
    fn now(&self) -> Timestamp;
    /// Folds a remote timestamp in; returns the drift beyond the bound (ms),
    /// 0 when within it.
    ///
    /// # Errors
    /// [`ErrorKind::INVALID_INPUT`] when the clock is strict and `remote` is
    /// beyond the drift bound.
    fn update(&self, remote: &Timestamp) -> ModuleResult<u64>;
    /// Wall-clock milliseconds as this clock reads them (for TTL checks).
    fn wall_millis(&self) -> u64;
    /// The node id this clock stamps.
    fn node_id(&self) -> RString;
}

impl ClockService for Hlc {
    fn now(&self) -> Timestamp {
        Hlc::now(self)
    }

    fn update(&self, remote: &Timestamp) -> ModuleResult<u64> {
        Hlc::update(self, remote)
            .map(|UpdateReport { excess_drift_ms }| excess_drift_ms)
            .map_err(|e| ModuleError::new(ErrorKind::INVALID_INPUT, e.to_string()))
    }

    fn wall_millis(&self) -> u64 {
        Hlc::wall_millis(self)
    }

    fn node_id(&self) -> RString {
        Hlc::node_id(self).into()
    }
}

/// Kind of a metric sample.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Set a gauge to the value.
    Gauge,
    /// Add the value to a counter (MUST be >= 0).
    Counter,
    /// Observe the value in a histogram (latencies in seconds).
    Histogram,
}

/// One metric sample: a name (Prometheus style, `hangar_` prefix), labels,
/// and a value.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct MetricSample<'a> {
    /// Metric name.
    pub name: RStr<'a>,
    /// What to do with the value.
    pub kind: MetricKind,
    /// Label pairs.
    pub labels: abi_stable::std_types::RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>,
    /// The value.
    pub value: f64,
}

/// Where modules report metrics; the host exports them at `/metrics`.
///
/// # Contract
/// `record` MUST be cheap and MUST NOT block: it is called on hot paths.
pub trait MetricsSink: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Records one sample.
    fn record(&self, sample: MetricSample<'_>);
}

/// Convenience calls over a [`MetricsSink`].
pub trait MetricsExt {
    /// Sets a gauge.
    fn gauge(&self, name: &str, labels: &[(&str, &str)], value: f64);
    /// Adds to a counter.
    fn counter(&self, name: &str, labels: &[(&str, &str)], value: f64);
    /// Observes a histogram value.
    fn observe(&self, name: &str, labels: &[(&str, &str)], value: f64);
}

impl<M: MetricsSink + ?Sized> MetricsExt for M {
    fn gauge(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        emit(self, MetricKind::Gauge, name, labels, value);
    }
    fn counter(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        emit(self, MetricKind::Counter, name, labels, value);
    }
    fn observe(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        emit(self, MetricKind::Histogram, name, labels, value);
    }
}

fn emit<M: MetricsSink + ?Sized>(
    sink: &M,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
    value: f64,
) {
    let mut buf: [Tuple2<RStr<'_>, RStr<'_>>; 8] = [Tuple2(RStr::from(""), RStr::from("")); 8];
    let n = labels.len().min(buf.len());
    for (slot, (k, v)) in buf.iter_mut().zip(labels) {
        *slot = Tuple2(RStr::from(*k), RStr::from(*v));
    }
    sink.record(MetricSample {
        name: RStr::from(name),
        kind,
        labels: buf[..n].into(),
        value,
    });
}

/// A metrics sink that drops everything (for tests and embedding without
/// metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn record(&self, _sample: MetricSample<'_>) {}
}
