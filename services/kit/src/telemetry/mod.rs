//! Logs and distributed traces.
//!
//! [`init`] installs the process-wide `tracing` subscriber with two layers:
//! - the log layer: level from `RUST_LOG` (default `info`), pretty or JSON
//!   lines (`LOG_FORMAT`); every line written inside a span carries that
//!   span's `trace_id` and `span_id`, so a request's log lines can be found
//!   from its trace and the other way round;
//! - the OpenTelemetry layer: every `info`-level span becomes an
//!   OpenTelemetry span, sampled parent-based with a ratio for new traces
//!   (`TRACE_SAMPLE_RATIO`), exported to Zipkin (`ZIPKIN_ENDPOINT`) through a
//!   bounded queue that drops (and counts) rather than block a request.
//!   Without an endpoint, trace ids are still made, for `X-Trace-Id` and logs.
//!
//! Propagation in and out accepts and writes W3C `traceparent` and B3 (single
//! `b3` header and the multi-header `X-B3-*` form): see [`extract_headers`],
//! [`inject_headers`] and the map forms used for Kafka headers and the outbox.
//!
//! Call [`init`] before starting the tokio runtime: the Zipkin exporter's
//! blocking HTTP client must be built outside of it (NOTES.md).

// opentelemetry-zipkin is deprecated upstream in favour of OTLP, but Zipkin
// v2 JSON is what our collector and the official Zipkin image speak and the
// issue asks for this exporter: allow its deprecation warnings here only.
#![allow(deprecated)]

pub mod export;
mod format;
pub mod output;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use clap::Args;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_zipkin::{B3Encoding, Propagator as B3Propagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};
use url::Url;

use crate::config::{CommonArgs, LogFormat, ServiceSpec, parse_duration, parse_http_url};
use export::{BatchOptions, BoundedBatchProcessor, NamingClient};

/// Trace export options, part of every service's [`CommonArgs`].
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Zipkin v2 span endpoint, e.g. http://trace-collector:9411/api/v2/spans; spans are not exported when unset
    #[arg(long, env = "ZIPKIN_ENDPOINT", value_parser = parse_http_url)]
    pub zipkin_endpoint: Option<Url>,

    /// Share of new traces sampled, 0.0 to 1.0; a caller's sampling decision is always followed
    #[arg(long, env = "TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,

    /// Finished spans waiting for export beyond this many are dropped (and counted in /metrics)
    #[arg(long, env = "TRACE_QUEUE_SIZE", default_value_t = 4096)]
    pub trace_queue_size: usize,

    /// Longest a finished span waits before it is exported
    #[arg(long, env = "TRACE_EXPORT_DELAY", default_value = "500ms", value_parser = parse_duration)]
    pub trace_export_delay: Duration,
}

impl Default for TraceArgs {
    fn default() -> Self {
        TraceArgs {
            zipkin_endpoint: None,
            trace_sample_ratio: 1.0,
            trace_queue_size: 4096,
            trace_export_delay: Duration::from_millis(500),
        }
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio between 0.0 and 1.0")),
    }
}

/// Failure to install telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("cannot build the Zipkin exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
}

/// How long log lines below WARN may wait to be written with others ([`output`]).
pub const DEFAULT_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// What [`init`] needs: the log format and batching, and trace export settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub format: LogFormat,
    pub log_flush_interval: Duration,
    pub trace: TraceArgs,
}

impl From<LogFormat> for Settings {
    fn from(format: LogFormat) -> Settings {
        Settings {
            format,
            log_flush_interval: DEFAULT_LOG_FLUSH_INTERVAL,
            trace: TraceArgs::default(),
        }
    }
}

impl From<&CommonArgs> for Settings {
    fn from(c: &CommonArgs) -> Settings {
        Settings {
            format: c.log_format,
            log_flush_interval: c.log_flush_interval,
            trace: c.tracing.clone(),
        }
    }
}

/// Keeps telemetry alive; dropping it writes the log lines still collected and flushes the spans
/// still queued.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now (tests use it before reading the collector).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        output::flush();
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(Duration::from_secs(3));
        }
    }
}

/// The filter from `RUST_LOG`, or `info` by default.
fn filter() -> Result<EnvFilter, TelemetryError> {
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(s).map_err(|e| TelemetryError::Filter(e.to_string()))
        }
        _ => Ok(EnvFilter::new("info")),
    }
}

/// The tracer provider: sampler, and the exporter when an endpoint is set.
fn provider(spec: &ServiceSpec, trace: &TraceArgs) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(spec.name)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        trace.trace_sample_ratio,
    )));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource);
    if let Some(endpoint) = &trace.zipkin_endpoint {
        let err = |detail: String| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            detail,
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| err(e.to_string()))?;
        let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
            .with_collector_endpoint(endpoint.as_str())
            .with_http_client(NamingClient {
                inner: http,
                service: spec.name.to_string(),
            })
            .build()
            .map_err(|e| err(e.to_string()))?;
        let options = BatchOptions {
            max_queue: trace.trace_queue_size,
            max_batch: 512,
            delay: trace.trace_export_delay,
        };
        builder = builder.with_span_processor(BoundedBatchProcessor::start(exporter, options));
    }
    Ok(builder.build())
}

/// Installs the global subscriber (logs + traces) for a service binary.
/// Call it before the tokio runtime starts.
pub fn init(
    spec: &ServiceSpec,
    settings: impl Into<Settings>,
) -> Result<TelemetryGuard, TelemetryError> {
    let settings = settings.into();
    let provider = provider(spec, &settings.trace)?;
    // Context activation (making each entered span the current
    // OpenTelemetry context too) is off: nothing here reads
    // `opentelemetry::Context::current()` (propagation and log ids read the
    // tracing span's own context), a new span finds its parent through the
    // current tracing span all the same, and attaching and detaching a
    // context on every enter and exit cost every request a few thousand
    // instructions.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(spec.name))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(LevelFilter::INFO);
    let out = output::Batched::stdout(settings.log_flush_interval);
    tracing_subscriber::registry()
        .with(format::layer::<Registry>(settings.format, out).with_filter(filter()?))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    // The lines logged before a panic come out before its message.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        output::try_flush();
        previous(info);
    }));
    if let Some(e) = &settings.trace.zipkin_endpoint {
        tracing::info!(endpoint = %e, ratio = settings.trace.trace_sample_ratio, "exporting traces to Zipkin");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// For tests: logs to the test writer only when `TEST_LOG` is set, so test
/// output stays quiet unless asked. Safe to call many times.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter().unwrap_or_else(|_| EnvFilter::new("info")))
            .with_test_writer()
            .try_init();
    }
}

// ---- propagation ------------------------------------------------------------

/// W3C trace context and B3 (single and multi-header), in and out.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(B3Propagator::with_encoding(
            B3Encoding::SingleAndMultiHeader,
        )),
        // Last, so that when a caller sends both, W3C's traceparent wins.
        Box::new(TraceContextPropagator::new()),
    ])
});

/// The trace context a caller sent in HTTP headers (empty when none).
pub fn extract_headers(headers: &http::HeaderMap) -> opentelemetry::Context {
    PROPAGATOR.extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// Whether `headers` carry a trace id in any form we read (`traceparent`,
/// `b3`, `x-b3-traceid`). Without one, extraction cannot yield a valid
/// parent, so the server span skips it: most requests from outside carry
/// none, and the propagators' lookups cost more than this check.
fn may_carry_trace(headers: &http::HeaderMap) -> bool {
    headers.contains_key(&H_TRACEPARENT)
        || headers.contains_key(&H_B3)
        || headers.contains_key(&H_X_B3_TRACEID)
}

/// Makes `span` a child of the trace context in `headers`, when they carry
/// a valid one (W3C or B3): [`set_parent`] of [`extract_headers`], without
/// the propagators' work for requests that carry no trace id.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if may_carry_trace(headers) {
        set_parent(span, extract_headers(headers));
    }
}

/// Writes the current span's context into outgoing HTTP headers.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    inject_headers_from(&tracing::Span::current(), headers);
}

use http::header::{HeaderName, HeaderValue};

static H_TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static H_TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static H_B3: HeaderName = HeaderName::from_static("b3");
static H_X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
static H_X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
static H_X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static H_X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static H_X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Propagation headers of every form we read, including the B3 ones we
/// never write (`x-b3-parentspanid`, `x-b3-flags`).
static TRACE_HEADERS: [&HeaderName; 8] = [
    &H_TRACEPARENT,
    &H_TRACESTATE,
    &H_B3,
    &H_X_B3_TRACEID,
    &H_X_B3_SPANID,
    &H_X_B3_PARENTSPANID,
    &H_X_B3_SAMPLED,
    &H_X_B3_FLAGS,
];

/// Writes `span`'s context into outgoing HTTP headers, replacing whatever
/// trace headers they carried: a proxy forwarding a caller's headers must
/// not pass on the caller's span as the parent, nor a stale B3 parent id
/// beside the new context.
pub fn inject_headers_from(span: &tracing::Span, headers: &mut http::HeaderMap) {
    for name in TRACE_HEADERS {
        headers.remove(name);
    }
    let cx = span.context();
    inject_span_context(cx.span().span_context(), headers);
}

/// B3 flag bits the B3 propagator reads and writes besides "sampled".
const B3_DEFERRED: TraceFlags = TraceFlags::new(0x02);
const B3_DEBUG: TraceFlags = TraceFlags::new(0x04);

/// Writes exactly what [`PROPAGATOR`] writes into a `HeaderMap` (B3 single
/// and multi-header, then W3C; same names, values and order; a test holds
/// the two together), without its per-header `format!`, header-name
/// parsing and string copies: this runs for every proxied request and
/// every call to a peer, and the generic path cost more than the rest of
/// the gateway's own request handling.
fn inject_span_context(sc: &SpanContext, headers: &mut http::HeaderMap) {
    let zero_one = |yes: bool| HeaderValue::from_static(if yes { "1" } else { "0" });
    if !sc.is_valid() {
        // B3 still says whether to sample; W3C writes nothing.
        headers.insert(H_B3.clone(), zero_one(sc.is_sampled()));
        headers.insert(H_X_B3_SAMPLED.clone(), zero_one(sc.is_sampled()));
        return;
    }
    let flags = sc.trace_flags();
    let deferred = flags & B3_DEFERRED == B3_DEFERRED;
    let debug = flags & B3_DEBUG == B3_DEBUG;
    let mut trace = [0u8; 32];
    hex_into(&sc.trace_id().to_bytes(), &mut trace);
    let mut span = [0u8; 16];
    hex_into(&sc.span_id().to_bytes(), &mut span);

    // b3: {trace}-{span}[-{1|0|d}]
    let mut b3 = [0u8; 32 + 1 + 16 + 2];
    b3[..32].copy_from_slice(&trace);
    b3[32] = b'-';
    b3[33..49].copy_from_slice(&span);
    let b3_len = if deferred {
        49
    } else {
        b3[49] = b'-';
        b3[50] = if debug {
            b'd'
        } else if sc.is_sampled() {
            b'1'
        } else {
            b'0'
        };
        51
    };
    insert_ascii(headers, &H_B3, &b3[..b3_len]);
    insert_ascii(headers, &H_X_B3_TRACEID, &trace);
    insert_ascii(headers, &H_X_B3_SPANID, &span);
    if debug {
        headers.insert(H_X_B3_FLAGS.clone(), HeaderValue::from_static("1"));
    } else if !deferred {
        headers.insert(H_X_B3_SAMPLED.clone(), zero_one(sc.is_sampled()));
    }

    // traceparent: 00-{trace}-{span}-{flags & sampled, 2 hex digits}
    let mut tp = [0u8; 2 + 1 + 32 + 1 + 16 + 1 + 2];
    tp[..3].copy_from_slice(b"00-");
    tp[3..35].copy_from_slice(&trace);
    tp[35] = b'-';
    tp[36..52].copy_from_slice(&span);
    tp[52] = b'-';
    hex_into(&[(flags & TraceFlags::SAMPLED).to_u8()], &mut tp[53..55]);
    insert_ascii(headers, &H_TRACEPARENT, &tp);
    // Like the W3C propagator: written even when empty.
    if let Ok(v) = HeaderValue::from_str(&sc.trace_state().header()) {
        headers.insert(H_TRACESTATE.clone(), v);
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
}

fn insert_ascii(headers: &mut http::HeaderMap, name: &HeaderName, value: &[u8]) {
    // Hex digits and dashes are always a valid header value.
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(name.clone(), v);
    }
}

/// The trace id of `span` as an `X-Trace-Id` header value (32 lower-case
/// hex digits, as [`ids`] gives it), when tracing is installed.
pub fn trace_id_header(span: &tracing::Span) -> Option<HeaderValue> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let mut hex = [0u8; 32];
    hex_into(&sc.trace_id().to_bytes(), &mut hex);
    HeaderValue::from_bytes(&hex).ok()
}

/// The current span's context as a string map (Kafka headers, outbox rows).
pub fn current_context_map() -> HashMap<String, String> {
    context_map_of(&tracing::Span::current())
}

/// A trace context read back from a string map.
pub fn context_from_map(map: &HashMap<String, String>) -> opentelemetry::Context {
    PROPAGATOR.extract(map)
}

/// Makes `span` a child of `parent` (a no-op when `parent` carries no trace).
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Trace and span id of `span`, when tracing is installed.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The trace id of the current span, when there is one.
pub fn current_trace_id() -> Option<String> {
    ids(&tracing::Span::current()).map(|(t, _)| t)
}

// ---- spans for outgoing work ------------------------------------------------
//
// Span names and attributes follow OpenTelemetry's semantic conventions, so
// Zipkin shows them well: `peer.service` becomes the remote endpoint (the
// dependency graph), `db.system`/`db.statement` describe database calls,
// `messaging.*` the Kafka hop.

/// A CLIENT span for an HTTP call to `peer` (a registry service name).
/// Enter it (or `.instrument` the call with it) and inject its context
/// into the request with [`inject_headers_from`].
/// Record its status with [`record_status`].
pub fn client_span(peer: &str, method: &str, url: &str) -> tracing::Span {
    tracing::info_span!(
        "http.client",
        otel.name = space_joined(method, peer).as_str(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        // Every field a `&str` (or an `i64`): see [`space_joined`].
        peer.service = peer,
        http.request.method = method,
        url.full = url,
        http.response.status_code = tracing::field::Empty,
    )
}

/// `"{a} {b}"`, a span's name such as `GET /api/order`, for its `otel.name` field as a `&str`.
///
/// The OpenTelemetry layer copies a `&str` field into its span; a field given as a `Display`
/// value (`%`) or an unsigned integer (which it records through `Debug`) goes through
/// `format!` instead, about a thousand instructions each, per span.
pub fn space_joined(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + 1 + b.len());
    s.push_str(a);
    s.push(' ');
    s.push_str(b);
    s
}

/// Records an HTTP status on `span`'s `http.response.status_code` field, as an `i64`: the
/// OpenTelemetry layer records a `u16` or `u64` through `format!` (see [`space_joined`]).
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
}

/// A span for one database statement. `statement` must be the SQL text
/// with placeholders (never values), `operation` e.g. `SELECT orders`.
pub fn db_span(system: &str, operation: &str, statement: &str) -> tracing::Span {
    tracing::info_span!(
        "db.query",
        otel.name = operation,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = system,
        db.statement = statement,
        peer.service = system,
    )
}

/// A span for one database transaction, named `operation` (e.g.
/// `TRANSACTION reserve`), with the statements it may run listed in
/// `db.statement` (placeholders only, one per line). One span per
/// transaction keeps the waterfall readable: the lock waits and the commit
/// are inside it, and a five-line order does not become a dozen bars.
pub fn db_transaction_span(system: &str, operation: &str, statements: &[&str]) -> tracing::Span {
    db_span(system, operation, &statements.join(";\n"))
}

/// Runs `work` inside `span` and marks the span failed when `work`
/// returns an error: the usual wrapping of a database call or a publish.
pub async fn traced<T, E, F>(span: tracing::Span, work: F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    use tracing::Instrument;
    let result = work.instrument(span.clone()).await;
    if result.is_err() {
        mark_error(&span);
    }
    result
}

/// A PRODUCER span for publishing to `topic`; inject its context into the
/// message headers with [`context_map_of`].
pub fn producer_span(topic: &str) -> tracing::Span {
    tracing::info_span!(
        "kafka.produce",
        otel.name = space_joined("send", topic).as_str(),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = topic,
        peer.service = "kafka",
    )
}

/// A CONSUMER span for handling a message from `topic`, child of the
/// context the producer put in the message headers.
pub fn consumer_span(topic: &str, parent: &HashMap<String, String>) -> tracing::Span {
    let span = tracing::info_span!(
        "kafka.consume",
        otel.name = space_joined("receive", topic).as_str(),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = topic,
    );
    set_parent(&span, context_from_map(parent));
    span
}

/// `span`'s context as a string map (for Kafka headers and outbox rows).
pub fn context_map_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    PROPAGATOR.inject_context(&span.context(), &mut map);
    map
}

/// Marks `span` as failed (Zipkin shows it red).
pub fn mark_error(span: &tracing::Span) {
    span.record("otel.status_code", "ERROR");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace id of the context extracted from `h`.
    fn trace_of(h: &http::HeaderMap) -> String {
        extract_headers(h)
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    /// B3 single, B3 multi and W3C headers are all understood, and W3C wins when both are sent.
    #[test]
    fn extracts_every_header_form() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut h = http::HeaderMap::new();
        h.insert("b3", format!("{trace}-00f067aa0ba902b7-1").parse().unwrap());
        assert_eq!(trace_of(&h), trace);

        let mut h = http::HeaderMap::new();
        h.insert("x-b3-traceid", trace.parse().unwrap());
        h.insert("x-b3-spanid", "00f067aa0ba902b7".parse().unwrap());
        h.insert("x-b3-sampled", "1".parse().unwrap());
        assert_eq!(trace_of(&h), trace);

        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
        );
        h.insert(
            "b3",
            "11111111111111111111111111111111-2222222222222222-1"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_of(&h), trace);

        assert!(
            !extract_headers(&http::HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", "garbage".parse().unwrap());
        assert!(!extract_headers(&h).span().span_context().is_valid());
    }

    /// Injection replaces a caller's trace headers of every form, and leaves the others alone.
    #[test]
    fn injection_replaces_caller_headers() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=x"),
            ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-parentspanid", "1111111111111111"),
            ("x-b3-sampled", "1"),
            ("x-b3-flags", "1"),
            ("x-request-id", "r1"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        // No subscriber here: the span has no context; B3 then writes only
        // "do not sample" (`b3: 0`, `x-b3-sampled: 0`), and nothing of the caller's is left.
        inject_headers_from(&tracing::Span::none(), &mut h);
        let mut left: Vec<String> = h
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        left.sort();
        assert_eq!(left, ["b3: 0", "x-b3-sampled: 0", "x-request-id: r1"]);
    }

    /// The fast header injection writes exactly what the propagators write
    /// (names, values, order) for sampled, unsampled, debug, deferred, with
    /// and without trace state, and invalid contexts.
    #[test]
    fn fast_injection_matches_the_propagators() {
        use opentelemetry::trace::{SpanId, TraceId, TraceState};
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let state = TraceState::from_key_value([("vendor", "x"), ("other", "y")]).unwrap();
        let none = TraceState::default;
        let contexts = [
            SpanContext::new(trace, span, TraceFlags::SAMPLED, false, none()),
            SpanContext::new(trace, span, TraceFlags::default(), true, none()),
            SpanContext::new(trace, span, TraceFlags::new(0x05), true, state.clone()),
            SpanContext::new(trace, span, TraceFlags::new(0x02), true, state.clone()),
            SpanContext::new(trace, span, TraceFlags::new(0x03), true, none()),
            SpanContext::new(trace, span, TraceFlags::new(0x06), false, state),
            SpanContext::empty_context(),
            SpanContext::new(
                TraceId::INVALID,
                SpanId::INVALID,
                TraceFlags::SAMPLED,
                false,
                none(),
            ),
        ];
        let list = |h: &http::HeaderMap| -> Vec<String> {
            h.iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect()
        };
        for sc in contexts {
            let mut fast = http::HeaderMap::new();
            inject_span_context(&sc, &mut fast);
            let mut generic = http::HeaderMap::new();
            let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
            PROPAGATOR.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(&mut generic));
            assert_eq!(list(&fast), list(&generic), "{sc:?}");
        }
    }

    /// Requests without a trace id skip extraction; any header that can
    /// carry one is looked at.
    #[test]
    fn trace_header_precheck() {
        assert!(!may_carry_trace(&http::HeaderMap::new()));
        for name in ["traceparent", "b3", "x-b3-traceid"] {
            let mut h = http::HeaderMap::new();
            h.insert(name, "x".parse().unwrap());
            assert!(may_carry_trace(&h), "{name}");
        }
        // The valid parents `extract_headers` can find all need one of them.
        let mut h = http::HeaderMap::new();
        h.insert("x-b3-spanid", "00f067aa0ba902b7".parse().unwrap());
        h.insert("x-b3-sampled", "1".parse().unwrap());
        h.insert("tracestate", "vendor=x".parse().unwrap());
        assert!(!may_carry_trace(&h));
        assert!(!extract_headers(&h).span().span_context().is_valid());
    }

    /// Ratios outside 0..=1 are rejected at start.
    #[test]
    fn ratio_is_validated() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("half").is_err());
    }
}
