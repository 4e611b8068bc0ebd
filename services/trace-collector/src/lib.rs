//! trace-collector: the offline stand-in for Zipkin (port 9411).
//!
//! It speaks the Zipkin v2 HTTP API that exporters and tools use
//! (`POST /api/v2/spans` in JSON or protobuf, gzip or not, and the query
//! endpoints), keeps spans in a bounded in-memory store that evicts the
//! oldest traces first, and renders traces as server-side HTML at the Zipkin
//! UI's own paths (`/zipkin/`, `/zipkin/traces/{traceId}`), so a trace link
//! works against this collector and against a real Zipkin alike.
//!
//! Module map: [`decode`] reads uploads, [`store`] keeps spans, [`query`],
//! [`merge`], [`tree`] and [`dependencies`] are ports of Zipkin's own
//! algorithms, [`model`] writes Zipkin's JSON, [`api`] and [`ui`] are the
//! HTTP surfaces. Like every platform service it runs on the kit: health,
//! metrics, registry, problem+json, graceful shutdown.
#![forbid(unsafe_code)]

pub mod api;
pub mod decode;
pub mod dependencies;
pub mod error;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod query;
pub mod store;
pub mod tree;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use clap::Parser;
use kit::clock::Clock;
use kit::{CommonArgs, HasCommon, Service, ServiceSpec};
use parking_lot::RwLock;

use crate::decode::Limits;
use crate::metrics::CollectorMetrics;
use crate::store::{Store, StoreConfig};

/// What this service is.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "trace-collector",
    default_port: 9411,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// Command line and environment of the collector (`--help` shows the
/// package description first).
#[derive(Debug, Clone, Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Most spans kept in memory; beyond it the oldest traces are evicted
    /// whole. Zipkin's in-memory default (MEM_MAX_SPANS), so both stacks
    /// keep the same window
    #[arg(long, env = "MAX_SPANS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_spans: u64,

    /// Default `lookback` of trace and dependency queries, in milliseconds
    /// (Zipkin's QUERY_LOOKBACK: one day)
    #[arg(long, env = "QUERY_LOOKBACK", default_value_t = 86_400_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub query_lookback: i64,

    /// Match all 128 bits of trace ids on lookup. Off by default, so a
    /// 64-bit id finds a 128-bit trace (Zipkin's STRICT_TRACE_ID=false);
    /// set it for Zipkin's default behaviour
    #[arg(long, env = "STRICT_TRACE_ID", default_value_t = false)]
    pub strict_trace_id: bool,

    /// Tag keys offered by /api/v2/autocompleteKeys, comma-separated
    /// (Zipkin's AUTOCOMPLETE_KEYS)
    #[arg(long, env = "AUTOCOMPLETE_KEYS", value_delimiter = ',')]
    pub autocomplete_keys: Vec<String>,

    /// Cache-Control max-age (seconds) of the name lists once more than three
    /// services are known (Zipkin's QUERY_NAMES_MAX_AGE)
    #[arg(long, env = "QUERY_NAMES_MAX_AGE", default_value_t = 300)]
    pub names_max_age: u32,

    /// Largest span upload accepted, in bytes, before and after gunzip
    /// (exporters send batches of up to a few MiB; MAX_BODY_BYTES covers
    /// the other endpoints)
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 16 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_bytes: u64,

    /// Most spans in one upload; a longer list is refused with 413 as soon
    /// as the decoder reaches the next span, before building it
    /// (exporters send batches of hundreds)
    #[arg(long, env = "MAX_UPLOAD_SPANS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_spans: u64,

    /// Most tags of one span (OpenTelemetry's default attribute limit);
    /// more is refused with 413
    #[arg(long, env = "MAX_SPAN_TAGS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_span_tags: u64,

    /// Most annotations of one span (OpenTelemetry's default event limit);
    /// more is refused with 413
    #[arg(long, env = "MAX_SPAN_ANNOTATIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_span_annotations: u64,

    /// Most tags plus annotations of all spans in one upload; more is
    /// refused with 413. With MAX_UPLOAD_SPANS it bounds the memory one
    /// upload costs while it is decoded
    #[arg(long, env = "MAX_UPLOAD_ENTRIES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_entries: u64,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    /// Logs only, no trace export: the collector's own spans (one per
    /// upload) would be exported to a collector, itself in a small stack,
    /// and each export would be traced again.
    fn telemetry(&self) -> kit::telemetry::Settings {
        self.common.log_format.into()
    }
}

/// The collector's own settings, apart from the kit's.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_spans: usize,
    pub query_lookback_ms: i64,
    pub strict_trace_id: bool,
    pub autocomplete_keys: Vec<String>,
    pub names_max_age_secs: u32,
    pub max_upload_bytes: usize,
    /// Per-upload bounds checked while decoding.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_spans: 500_000,
            query_lookback_ms: 86_400_000,
            strict_trace_id: false,
            autocomplete_keys: Vec::new(),
            names_max_age_secs: 300,
            max_upload_bytes: 16 * 1024 * 1024,
            limits: Limits::default(),
        }
    }
}

impl From<&Config> for Options {
    fn from(c: &Config) -> Options {
        Options {
            max_spans: usize::try_from(c.max_spans).unwrap_or(usize::MAX),
            query_lookback_ms: c.query_lookback,
            strict_trace_id: c.strict_trace_id,
            autocomplete_keys: c
                .autocomplete_keys
                .iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
            names_max_age_secs: c.names_max_age,
            max_upload_bytes: usize::try_from(c.max_upload_bytes).unwrap_or(usize::MAX),
            limits: Limits {
                max_spans: to_usize(c.max_upload_spans),
                max_span_tags: to_usize(c.max_span_tags),
                max_span_annotations: to_usize(c.max_span_annotations),
                max_entries: to_usize(c.max_upload_entries),
            },
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Shared state of the handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The spans. A read-write lock: queries read concurrently, an upload
    /// holds the write lock only while it interns and indexes its
    /// already-validated spans.
    store: RwLock<Store>,
    metrics: CollectorMetrics,
    /// Wall clock for query defaults ("now"); manual in tests.
    clock: Clock,
    options: Options,
}

impl AppState {
    pub fn new(options: Options, metrics: CollectorMetrics, clock: Clock) -> AppState {
        let store = Store::new(StoreConfig {
            max_spans: options.max_spans,
            strict_trace_id: options.strict_trace_id,
            autocomplete_keys: options.autocomplete_keys.clone(),
        });
        AppState {
            inner: Arc::new(Inner {
                store: RwLock::new(store),
                metrics,
                clock,
                options,
            }),
        }
    }

    pub fn store(&self) -> &RwLock<Store> {
        &self.inner.store
    }

    pub fn metrics(&self) -> &CollectorMetrics {
        &self.inner.metrics
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Epoch milliseconds now.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.inner.clock.now_millis()).unwrap_or(i64::MAX)
    }
}

/// The collector's routes: the Zipkin API (also under `/zipkin/api/v2`, as
/// Zipkin serves it for its UI) and the HTML pages.
pub fn router(state: AppState) -> Router {
    let api = api::router(state.clone());
    Router::new()
        .merge(api.clone())
        .nest("/zipkin", api)
        .merge(ui::router(state))
}

/// Runs the collector on a bound service until it shuts down.
pub async fn run(config: Config, service: Service) -> anyhow::Result<()> {
    run_with_clock(Options::from(&config), service, Clock::System).await
}

/// [`run`] with explicit options and clock (tests).
pub async fn run_with_clock(
    options: Options,
    service: Service,
    clock: Clock,
) -> anyhow::Result<()> {
    let metrics = CollectorMetrics::register(service.metrics());
    tracing::info!(
        max_spans = options.max_spans,
        strict_trace_id = options.strict_trace_id,
        "collector store ready"
    );
    let state = AppState::new(options, metrics, clock);
    service
        .serve(router(state), Router::new())
        .await
        .map_err(anyhow::Error::from)
}
