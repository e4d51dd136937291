//! The host's metrics registry: the [`MetricsSink`] handed to both modules,
//! rendered in the Prometheus text format at `/metrics`.
//!
//! Recording is a hash of (name, labels) and one short critical section, with
//! no allocation once a series exists.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use hangar_core::module::services::{MetricKind, MetricSample, MetricsSink};
use parking_lot::Mutex;

/// Histogram bucket bounds, in seconds (latencies) or plain units.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    kind: MetricKind,
    value: f64,
    buckets: [u64; BUCKETS.len()],
    count: u64,
}

/// Every series the node reports.
#[derive(Debug, Default)]
pub struct Registry {
    series: Mutex<HashMap<u64, Series>>,
}

fn key_of(name: &str, kind: MetricKind, labels: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    kind.hash(&mut h);
    for (k, v) in labels {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

impl Registry {
    /// Records a sample given as plain slices.
    pub fn record_parts(&self, name: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64) {
        let key = key_of(name, kind, labels);
        let mut map = self.series.lock();
        let s = map.entry(key).or_insert_with(|| Series {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            kind,
            value: 0.0,
            buckets: [0; BUCKETS.len()],
            count: 0,
        });
        match kind {
            MetricKind::Gauge => s.value = value,
            MetricKind::Counter => s.value += value.max(0.0),
            MetricKind::Histogram => {
                s.value += value;
                s.count += 1;
                for (i, b) in BUCKETS.iter().enumerate() {
                    if value <= *b {
                        s.buckets[i] += 1;
                    }
                }
            }
        }
    }

    /// The current value of a gauge or counter (sum for histograms), if the
    /// series exists.
    #[must_use]
    pub fn value(&self, name: &str, kind: MetricKind, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .lock()
            .get(&key_of(name, kind, labels))
            .map(|s| s.value)
    }

    /// Renders every series in the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let map = self.series.lock();
        let mut by_name: Vec<&Series> = map.values().collect();
        by_name.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
        let mut out = String::new();
        let mut last = "";
        for s in by_name {
            if s.name != last {
                let t = match s.kind {
                    MetricKind::Gauge => "gauge",
                    MetricKind::Counter => "counter",
                    MetricKind::Histogram => "histogram",
                };
                let _ = writeln!(out, "# TYPE {} {t}", s.name);
                last = &s.name;
            }
            let labels = |extra: Option<(&str, String)>| {
                let mut parts: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                if let Some((k, v)) = extra {
                    parts.push(format!("{k}=\"{v}\""));
                }
                if parts.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", parts.join(","))
                }
            };
            match s.kind {
                MetricKind::Gauge | MetricKind::Counter => {
                    let _ = writeln!(out, "{}{} {}", s.name, labels(None), s.value);
                }
                MetricKind::Histogram => {
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {}",
                            s.name,
                            labels(Some(("le", b.to_string()))),
                            s.buckets[i]
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {}",
                        s.name,
                        labels(Some(("le", "+Inf".to_string()))),
                        s.count
                    );
                    let _ = writeln!(out, "{}_sum{} {}", s.name, labels(None), s.value);
                    let _ = writeln!(out, "{}_count{} {}", s.name, labels(None), s.count);
                }
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl MetricsSink for Registry {
    fn record(&self, sample: MetricSample<'_>) {
        let mut labels: [(&str, &str); 8] = [("", ""); 8];
        let n = sample.labels.len().min(8);
        for (slot, pair) in labels.iter_mut().zip(sample.labels.iter()) {
            *slot = (pair.0.as_str(), pair.1.as_str());
        }
        self.record_parts(
            sample.name.as_str(),
            sample.kind,
            &labels[..n],
            sample.value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::module::services::MetricsExt;

    #[test]
    fn t10_gauges_counters_and_histograms_render_as_prometheus_text() {
        let r = Registry::default();
        r.gauge("hangar_map_size_items", &[("map", "users")], 3.0);
        r.gauge("hangar_map_size_items", &[("map", "users")], 5.0);
        r.counter("hangar_ops_total", &[("type", "PUT")], 2.0);
        r.counter("hangar_ops_total", &[("type", "PUT")], 1.0);
        r.observe("hangar_commit_seconds", &[], 0.003);
        let text = r.render();
        assert!(
            text.contains(
                "# TYPE hangar_map_size_items gauge\nhangar_map_size_items{map=\"users\"} 5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("hangar_ops_total{type=\"PUT\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("hangar_commit_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hangar_commit_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("hangar_commit_seconds_count 1\n"), "{text}");
        assert_eq!(
            r.value("hangar_ops_total", MetricKind::Counter, &[("type", "PUT")]),
            Some(3.0)
        );
    }

    #[test]
    fn t11_label_values_are_escaped() {
        let r = Registry::default();
        r.gauge("g", &[("map", "a\"b")], 1.0);
        assert!(r.render().contains("g{map=\"a\\\"b\"} 1"));
    }
}
