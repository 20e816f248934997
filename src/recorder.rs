//! The metrics recorder behind `/metrics`: two Prometheus registries, so that per-container
//! series expire and nothing else does.
//!
//! Series with a `container` label go to a registry with an idle timeout
//! ([`CONTAINER_IDLE`]): once a container is gone its series stop changing and disappear from
//! `/metrics`, so a host that runs thousands of short-lived containers does not grow its
//! scrape (or logwharf's memory) without bound. Every other series — per source, per sink —
//! lives in a registry without one: a gauge that holds still or a counter of a rare error must
//! not vanish. Handles to per-container series look their series up again on every update
//! (components keep handles for a container's lifetime; a handle to a series the idle timeout
//! removed would otherwise count into nothing). A quiet container's series come back with its
//! next update, as a counter starting over (which Prometheus' `rate` treats as a reset).

use crate::progress::{Progress, Tap};
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder};
use metrics::{SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a per-container series may go without an update before it is dropped.
pub const CONTAINER_IDLE: Duration = Duration::from_secs(600);

/// The label that marks a per-container series.
const CONTAINER_LABEL: &str = "container";

static METADATA: Metadata<'static> = Metadata::new("logwharf", metrics::Level::INFO, None);

/// The installed recorder's view for the endpoint.
#[derive(Clone)]
pub struct Metrics {
    components: PrometheusHandle,
    containers: PrometheusHandle,
}

impl Metrics {
    /// The Prometheus text of both registries, one block per metric name.
    pub fn render(&self) -> String {
        merge(&self.components.render(), &self.containers.render())
    }

    /// Housekeeping both registries need now and then.
    pub fn run_upkeep(&self) {
        self.components.run_upkeep();
        self.containers.run_upkeep();
    }
}

/// Installs the recorder globally; with `progress`, the series the progress line reads are
/// copied to it on the way.
pub fn install(progress: Option<Arc<Progress>>) -> anyhow::Result<Metrics> {
    let (recorder, metrics) = build(CONTAINER_IDLE);
    let installed = match progress {
        Some(progress) => metrics::set_global_recorder(Tap {
            inner: recorder,
            progress,
        })
        .map_err(|e| e.to_string()),
        None => metrics::set_global_recorder(recorder).map_err(|e| e.to_string()),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    Ok(metrics)
}

/// Without the API: a recorder that only feeds the progress line.
pub fn install_progress_only(progress: Arc<Progress>) -> anyhow::Result<()> {
    metrics::set_global_recorder(Tap {
        inner: metrics::NoopRecorder,
        progress,
    })
    .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

fn build(container_idle: Duration) -> (Split, Metrics) {
    let components = PrometheusBuilder::new().build_recorder();
    let containers = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::ALL, Some(container_idle))
        .build_recorder();
    let metrics = Metrics {
        components: components.handle(),
        containers: containers.handle(),
    };
    let split = Split {
        components,
        containers: Arc::new(containers),
    };
    (split, metrics)
}

/// Routes each series to its registry.
struct Split {
    components: PrometheusRecorder,
    containers: Arc<PrometheusRecorder>,
}

fn per_container(key: &Key) -> bool {
    key.labels().any(|l| l.key() == CONTAINER_LABEL)
}

impl Recorder for Split {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.components
            .describe_counter(key.clone(), unit, description.clone());
        self.containers.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.components
            .describe_gauge(key.clone(), unit, description.clone());
        self.containers.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.components
            .describe_histogram(key.clone(), unit, description.clone());
        self.containers.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if per_container(key) {
            Counter::from_arc(Arc::new(Relookup {
                key: key.clone(),
                recorder: self.containers.clone(),
            }))
        } else {
            self.components.register_counter(key, metadata)
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if per_container(key) {
            Gauge::from_arc(Arc::new(Relookup {
                key: key.clone(),
                recorder: self.containers.clone(),
            }))
        } else {
            self.components.register_gauge(key, metadata)
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        // logwharf records no per-container histograms; all go where nothing expires.
        self.components.register_histogram(key, metadata)
    }
}

/// A handle to a per-container series that finds (or re-creates) its series on every update.
struct Relookup {
    key: Key,
    recorder: Arc<PrometheusRecorder>,
}

impl CounterFn for Relookup {
    fn increment(&self, value: u64) {
        self.recorder
            .register_counter(&self.key, &METADATA)
            .increment(value);
    }

    fn absolute(&self, value: u64) {
        self.recorder
            .register_counter(&self.key, &METADATA)
            .absolute(value);
    }
}

impl GaugeFn for Relookup {
    fn increment(&self, value: f64) {
        self.recorder
            .register_gauge(&self.key, &METADATA)
            .increment(value);
    }

    fn decrement(&self, value: f64) {
        self.recorder
            .register_gauge(&self.key, &METADATA)
            .decrement(value);
    }

    fn set(&self, value: f64) {
        self.recorder
            .register_gauge(&self.key, &METADATA)
            .set(value);
    }
}

/// Joins two renderings so that each metric name has one block (one `# TYPE` line) — a name
/// can have series in both registries (`logwharf_source_read_bytes_total` per container for
/// files, per source for sockets).
fn merge(a: &str, b: &str) -> String {
    // name → (header lines, sample lines)
    let mut blocks: BTreeMap<String, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for text in [a, b] {
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut name = None;
            let mut header = Vec::new();
            let mut samples = Vec::new();
            for line in block.lines().filter(|l| !l.is_empty()) {
                if let Some(rest) = line.strip_prefix("# ") {
                    // `# HELP name …` / `# TYPE name kind`
                    name = name.or_else(|| rest.split_whitespace().nth(1).map(str::to_string));
                    header.push(line);
                } else {
                    samples.push(line);
                }
            }
            let name = name.unwrap_or_default();
            let entry = blocks.entry(name).or_default();
            if entry.0.is_empty() {
                entry.0 = header;
            }
            entry.1.extend(samples);
        }
    }
    let mut out = String::new();
    for (header, samples) in blocks.values() {
        for l in header.iter().chain(samples) {
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_container_series_expire_and_component_series_stay() {
        let (recorder, m) = build(Duration::from_millis(50));
        metrics::with_local_recorder(&recorder, || {
            let held = metrics::counter!("x_total", "source" => "s", "container" => "gone");
            held.increment(3);
            metrics::counter!("x_total", "source" => "s").increment(1);
            metrics::gauge!("idle_gauge", "source" => "s").set(2.0);
            let text = m.render();
            assert!(
                text.contains("x_total{source=\"s\",container=\"gone\"} 3"),
                "{text}"
            );
            assert_eq!(text.matches("# TYPE x_total counter").count(), 1, "{text}");

            // Renders drive the expiry; wait (generously) until the idle series is gone.
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while m.render().contains("container=\"gone\"") {
                assert!(std::time::Instant::now() < end, "never expired");
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = m.render();
            assert!(text.contains("x_total{source=\"s\"} 1"), "{text}");
            assert!(text.contains("idle_gauge{source=\"s\"} 2"), "{text}");

            // A handle kept across the expiry still counts (into a new series).
            held.increment(1);
            let text = m.render();
            assert!(
                text.contains("x_total{source=\"s\",container=\"gone\"} 1"),
                "{text}"
            );
        });
    }
}
