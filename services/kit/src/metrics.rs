//! Prometheus metrics: one registry per service instance.
//!
//! Each [`Metrics`] owns its own registry (not a process-global one) so that
//! tests can run several services in one process without mixing their
//! numbers. The kit records HTTP requests and process figures; services add
//! their own metrics with [`Metrics::register`] or a [`Collector`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Media type of what [`Metrics::render`] writes: the OpenMetrics text format 1.0.0
/// (prometheus-client's text encoder: `_total` counters, `# EOF`). Prometheus picks its parser by
/// this type, so it must not claim the older `text/plain; version=0.0.4` format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/order/{number}`), never the raw
    /// path, so that ids do not explode the label space.
    pub route: String,
    pub status: u16,
}

/// A service instance's metrics registry plus the kit's own metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Shared by the `/metrics` handler and every component that registers
    /// metrics at start; a mutex because registration needs `&mut`.
    registry: Arc<Mutex<Registry>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    /// Route → the handles of the (method, status) pairs seen on it, into
    /// the two families above. Every request of every service records
    /// itself here: looking the pair up by route and comparing two small
    /// values spares the two owned label strings and two label-set hashes
    /// per request that the families' own lookup costs. Shared by all
    /// request tasks; written only the first time a pair is seen.
    http_handles: Arc<RwLock<HashMap<String, Vec<HttpHandles>>>>,
}

/// The counter and histogram of one (method, route, status) label set
/// (prometheus-client handles share their value with the family's entry).
#[derive(Clone)]
struct HttpHandles {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

/// Methods whose handles are cached. Any other method (an extension
/// method a client made up) goes through the family lookup each time, so
/// made-up methods cannot grow the cache.
const CACHED_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the HTTP and process metrics registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests handled, by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            http_duration.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        registry.register_collector(Box::new(SpanExportCollector));
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            http_requests,
            http_duration,
            http_handles: Arc::default(),
        }
    }

    /// Registers a service's own metric.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().register(name, help, metric);
    }

    /// Registers a collector that produces metrics at scrape time.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.lock().register_collector(collector);
    }

    /// Records one finished HTTP request.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let Some(method) = CACHED_METHODS.iter().copied().find(|m| *m == method) else {
            let labels = HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            };
            self.http_requests.get_or_create(&labels).inc();
            self.http_duration.get_or_create(&labels).observe(seconds);
            return;
        };
        let find = |handles: &[HttpHandles]| {
            handles
                .iter()
                .find(|h| h.method == method && h.status == status)
                .cloned()
        };
        let cached = self.http_handles.read().get(route).and_then(|h| find(h));
        let handles = match cached {
            Some(h) => h,
            None => {
                let labels = HttpLabels {
                    method: method.to_string(),
                    route: route.to_string(),
                    status,
                };
                let fresh = HttpHandles {
                    method,
                    status,
                    requests: self.http_requests.get_or_create(&labels).clone(),
                    duration: self.http_duration.get_or_create(&labels).clone(),
                };
                let mut map = self.http_handles.write();
                let on_route = map.entry(labels.route).or_default();
                // Another request may have added the pair meanwhile.
                match find(on_route) {
                    Some(h) => h,
                    None => {
                        on_route.push(fresh.clone());
                        fresh
                    }
                }
            }
        };
        handles.requests.inc();
        handles.duration.observe(seconds);
    }

    /// The OpenMetrics text exposition of everything registered (served as [`OPENMETRICS_TEXT`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()).is_err() {
            out.clear();
            let _ = writeln!(out, "# metrics encoding failed");
        }
        out
    }
}

/// Process figures read from /proc at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(p) = process_stats() else {
            return Ok(());
        };
        let rss = ConstGauge::new(p.rss_bytes as i64);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident set size in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let threads = ConstGauge::new(p.threads as i64);
        threads.encode(encoder.encode_descriptor(
            "process_threads",
            "OS threads",
            None,
            threads.metric_type(),
        )?)?;
        if let Some(fds) = p.open_fds {
            let fds = ConstGauge::new(fds as i64);
            fds.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                fds.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The trace exporter's counters (process-wide, like the exporter).
#[derive(Debug)]
struct SpanExportCollector;

impl Collector for SpanExportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &crate::telemetry::export::EXPORT_STATS;
        for (name, help, value) in [
            (
                "tracing_spans_exported",
                "Spans sent to the trace collector",
                s.exported.load(Relaxed),
            ),
            (
                "tracing_spans_dropped",
                "Spans dropped because the export queue was full",
                s.dropped.load(Relaxed),
            ),
            (
                "tracing_span_export_failures",
                "Spans whose export failed (collector unreachable or refusing)",
                s.export_failures.load(Relaxed),
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let q = ConstGauge::new(s.queued.load(Relaxed) as i64);
        q.encode(encoder.encode_descriptor(
            "tracing_span_queue",
            "Spans waiting for export",
            None,
            q.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Resource use of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub threads: u64,
    pub open_fds: Option<u64>,
}

/// Reads this process's RSS, CPU time and threads from `/proc/self/stat`
/// (Linux only; `None` elsewhere or when /proc is not mounted).
pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11, stime (15) 12, threads (20) 17, rss (24) 21.
    let ticks = 100.0; // USER_HZ is 100 on every Linux ABI we run on.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let threads: u64 = fields.get(17)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    Some(ProcessStats {
        rss_bytes: rss_pages * 4096,
        cpu_seconds: (utime + stime) / ticks,
        threads,
        open_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTP observations appear as a counter and a histogram labelled by route, and process RSS is exported.
    #[test]
    fn renders_http_and_process_metrics() {
        let m = Metrics::new();
        m.observe_http("GET", "/api/order/{number}", 200, Duration::from_millis(3));
        m.observe_http("GET", "/api/order/{number}", 200, Duration::from_millis(5));
        let text = m.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/api/order/{number}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    /// Cached handles count into the same series as the families: every
    /// (method, route, status) keeps its own counter and histogram, and an
    /// extension method is counted without a cache entry.
    #[test]
    fn cached_handles_feed_the_same_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe_http("GET", "/a", 200, Duration::from_millis(1));
        }
        m.observe_http("GET", "/a", 404, Duration::from_millis(1));
        m.observe_http("POST", "/a", 200, Duration::from_millis(1));
        m.observe_http("GET", "/b", 200, Duration::from_millis(1));
        m.observe_http("PURGE", "/a", 200, Duration::from_millis(1));
        m.observe_http("PURGE", "/a", 200, Duration::from_millis(1));
        let text = m.render();
        for line in [
            r#"http_requests_total{method="GET",route="/a",status="200"} 3"#,
            r#"http_requests_total{method="GET",route="/a",status="404"} 1"#,
            r#"http_requests_total{method="POST",route="/a",status="200"} 1"#,
            r#"http_requests_total{method="GET",route="/b",status="200"} 1"#,
            r#"http_requests_total{method="PURGE",route="/a",status="200"} 2"#,
            r#"http_request_duration_seconds_count{method="GET",route="/a",status="200"} 3"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let cached = m.http_handles.read();
        assert_eq!(cached["/a"].len(), 3);
        assert_eq!(cached["/b"].len(), 1);
    }

    /// /proc parsing yields plausible figures for the test process.
    #[test]
    fn reads_process_stats() {
        let p = process_stats().expect("linux /proc");
        assert!(p.rss_bytes > 1024 * 1024);
        assert!(p.threads >= 1);
    }
}
