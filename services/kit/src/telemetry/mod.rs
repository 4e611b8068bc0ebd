//! Logging (and, later, trace export) setup.
//!
//! [`init`] installs the process-wide `tracing` subscriber: level from
//! `RUST_LOG` (default `info`), pretty or JSON lines from `LOG_FORMAT`.
//! Every request runs inside an `http.request` span (see `http.rs`) whose
//! fields (`request_id`, and the trace ids once OpenTelemetry is wired in)
//! are written on every log line inside it: the JSON format includes the
//! current span's fields, the pretty format its span context.
//!
//! Call [`init`] before starting the tokio runtime: trace exporters that use
//! blocking HTTP clients must be built outside of it.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, ServiceSpec};

/// Failure to install the subscriber.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops telemetry"]
#[derive(Debug)]
pub struct TelemetryGuard {
    _private: (),
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

/// The formatting layer for `format`, writing to stdout.
pub fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// Installs the global subscriber for a service binary.
pub fn init(spec: &ServiceSpec, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    let filter = filter()?;
    tracing_subscriber::registry()
        .with(fmt_layer::<Registry>(format).with_filter(filter))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    tracing::debug!(
        service = spec.name,
        version = spec.version,
        "telemetry initialised"
    );
    Ok(TelemetryGuard { _private: () })
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
