//! The collector's Prometheus metrics, registered in the kit's registry.
//!
//! The ingest counters keep Zipkin's own metric names
//! (`zipkin_collector_messages_total`, `..._bytes_total`, `..._spans_total`,
//! `..._messages_dropped_total`, `..._spans_dropped_total`), so dashboards
//! built for Zipkin read them; the store's figures are ours.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::store::{InsertOutcome, StoreStats};

/// Counters and gauges; cheap to clone (each metric is an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct CollectorMetrics {
    pub messages: Counter,
    pub messages_dropped: Counter,
    pub bytes: Counter,
    pub spans: Counter,
    pub spans_dropped: Counter,
    pub spans_duplicate: Counter,
    pub spans_evicted: Counter,
    pub traces_evicted: Counter,
    pub spans_stored: Gauge,
    pub traces_stored: Gauge,
    pub services_stored: Gauge,
    pub span_bytes: Gauge,
}

impl CollectorMetrics {
    /// Creates the metrics and registers them with the service's registry.
    pub fn register(registry: &kit::metrics::Metrics) -> CollectorMetrics {
        let m = CollectorMetrics::default();
        registry.register(
            "zipkin_collector_messages",
            "Span upload messages received",
            m.messages.clone(),
        );
        registry.register(
            "zipkin_collector_messages_dropped",
            "Upload messages refused (undecodable or invalid)",
            m.messages_dropped.clone(),
        );
        registry.register(
            "zipkin_collector_bytes",
            "Bytes of span uploads received, after gunzip",
            m.bytes.clone(),
        );
        registry.register(
            "zipkin_collector_spans",
            "Spans received in decodable messages",
            m.spans.clone(),
        );
        registry.register(
            "zipkin_collector_spans_dropped",
            "Spans refused because their message held an invalid span",
            m.spans_dropped.clone(),
        );
        registry.register(
            "trace_collector_spans_duplicate",
            "Spans received that were already stored (retried uploads)",
            m.spans_duplicate.clone(),
        );
        registry.register(
            "trace_collector_spans_evicted",
            "Spans evicted to stay within --max-spans",
            m.spans_evicted.clone(),
        );
        registry.register(
            "trace_collector_traces_evicted",
            "Traces evicted to stay within --max-spans",
            m.traces_evicted.clone(),
        );
        registry.register(
            "trace_collector_spans_stored",
            "Spans in memory",
            m.spans_stored.clone(),
        );
        registry.register(
            "trace_collector_traces_stored",
            "Traces in memory",
            m.traces_stored.clone(),
        );
        registry.register(
            "trace_collector_services_stored",
            "Local service names in memory",
            m.services_stored.clone(),
        );
        registry.register(
            "trace_collector_span_bytes_estimated",
            "Estimated heap bytes of stored spans, excluding shared interned strings",
            m.span_bytes.clone(),
        );
        m
    }

    /// Records a stored message and the store's new size.
    pub fn stored(&self, outcome: &InsertOutcome, stats: &StoreStats) {
        self.spans_duplicate.inc_by(outcome.duplicates as u64);
        self.spans_evicted.inc_by(outcome.evicted_spans as u64);
        self.traces_evicted.inc_by(outcome.evicted_traces as u64);
        self.set_stats(stats);
    }

    pub fn set_stats(&self, stats: &StoreStats) {
        self.spans_stored.set(stats.spans as i64);
        self.traces_stored.set(stats.traces as i64);
        self.services_stored.set(stats.services as i64);
        self.span_bytes.set(stats.span_bytes as i64);
    }
}
