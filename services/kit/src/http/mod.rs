//! The HTTP scaffold every service shares.
//!
//! [`finish`] turns a service's API router and admin router into the full
//! application: the standard endpoints (`/health/live`, `/health/ready`,
//! `/metrics`, `/info`; the last two behind the admin guard too when
//! [`Scaffold::private_observability`] is set), `/admin/*` behind
//! [`crate::auth::require_admin`],
//! problem+json for unknown routes, wrong methods and panics, a body size
//! limit, and the observation middleware.
//!
//! Layers, outermost first, and why in this order:
//! 1. `observe`: request id, the `http.request` server span (child of the
//!    caller's trace context, W3C or B3) that every log line of the request
//!    is written in, `X-Trace-Id`, metrics and the access log. Outermost so
//!    that it also sees requests that inner layers reject. It also applies
//!    the hard stop, inside the span: requests still running when the
//!    shutdown drain times out are answered 503 rather than cut without an
//!    answer, and the application faults (`/admin/faults`) inside the span,
//!    so injected latency and errors show in metrics, logs and traces like
//!    real ones (one middleware rather than three: each `from_fn` layer
//!    clones and boxes the inner service on every request).
//! 2. catch-panic: a panicking handler becomes a logged 500 problem (inside
//!    `observe`, so the panic is logged within the request's span and counted).
//! 3. body limit: bounds what extractors buffer (413 problem via [`Json`]).

pub mod extract;
pub mod head_errors;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

pub use extract::{Json, Path, Query};

use crate::auth::{AdminAuth, require_admin};
use crate::error::Problem;
use crate::health::Health;
use crate::metrics::{Metrics, OPENMETRICS_TEXT};

/// Header carrying the request id, set or propagated on every request.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Response header carrying the trace id of the request, for users to find
/// the trace in Zipkin.
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// What `/info` reports.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    pub service: String,
    pub version: String,
    pub instance_id: String,
    pub started_at: String,
}

/// Everything the scaffold's own endpoints and middleware need.
#[derive(Clone)]
pub struct Scaffold {
    pub metrics: Metrics,
    pub health: Health,
    pub info: Arc<Info>,
    pub admin: AdminAuth,
    pub max_body_bytes: usize,
    /// `/metrics` and `/info` need the admin credential (a service whose
    /// port is published: the gateway); health probes stay open.
    pub private_observability: bool,
    /// Cancelled when the drain timeout at shutdown has passed: requests
    /// still running are then answered 503 instead of being left hanging.
    pub hard_stop: tokio_util::sync::CancellationToken,
    /// The service's application faults (`/admin/faults` and the assault middleware).
    pub faults: crate::faults::Faults,
}

/// Builds the complete application around a service's routers.
pub fn finish(api: Router, admin: Router, scaffold: Scaffold) -> Router {
    // Every service serves its application faults under /admin, behind the same guard.
    let admin = admin.merge(crate::faults::admin_router(scaffold.faults.clone()));
    // route_layer on a router without routes panics in axum 0.8: guard it.
    let admin = if admin.has_routes() {
        admin.route_layer(middleware::from_fn_with_state(
            scaffold.admin.clone(),
            require_admin,
        ))
    } else {
        admin
    };
    let observability = Router::new()
        .route("/metrics", get(metrics))
        .route("/info", get(info));
    let observability = if scaffold.private_observability {
        observability.route_layer(middleware::from_fn_with_state(
            scaffold.admin.clone(),
            require_admin,
        ))
    } else {
        observability
    };
    let standard = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .merge(observability)
        .with_state(scaffold.clone());
    Router::new()
        .merge(standard)
        .merge(api)
        .nest("/admin", admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(scaffold.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            // Behind one Arc: the state is cloned for every request.
            Arc::new(Observe {
                metrics: scaffold.metrics,
                hard_stop: scaffold.hard_stop,
                faults: scaffold.faults,
            }),
            observe,
        ))
}

/// What [`observe`] needs.
struct Observe {
    metrics: Metrics,
    hard_stop: tokio_util::sync::CancellationToken,
    faults: crate::faults::Faults,
}

async fn live() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "UP"}))
}

async fn ready(State(s): State<Scaffold>) -> Response {
    let report = s.health.readiness().await;
    let status = if report.is_up() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics(State(s): State<Scaffold>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_TEXT)],
        s.metrics.render(),
    )
        .into_response()
}

async fn info(State(s): State<Scaffold>) -> axum::Json<Info> {
    axum::Json((*s.info).clone())
}

async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .instance(req.uri().path())
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::with_detail(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .kind("method-not-allowed")
    .instance(req.uri().path())
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = msg, "handler panicked");
    Problem::internal().into_response()
}

/// Runs the request (through the application faults), or ends it if it is
/// still running when the drain timeout passes.
async fn run_until_hard_stop(
    hard_stop: &tokio_util::sync::CancellationToken,
    faults: &crate::faults::Faults,
    req: Request,
    next: Next,
) -> Response {
    tokio::select! {
        res = crate::faults::assault_then(faults, req, next) => res,
        _ = hard_stop.cancelled() => {
            Problem::unavailable("the service is shutting down and this request did not finish in time")
                .into_response()
        }
    }
}

/// Request id, span, metrics and access log for every request.
///
/// Every request of every service passes here, so it avoids per-request
/// allocations where it can: the request id and trace id headers are built
/// once and cloned, the route and path are borrowed from the request's own
/// (shared) values, and the metric handles are cached per route (see
/// [`Metrics::observe_http`]).
async fn observe(State(state): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(|s| !s.is_empty() && s.len() <= 128))
        .cloned()
        .unwrap_or_else(new_request_id);
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    // Checked visible ASCII above, or a UUID.
    let request_id_text = request_id.to_str().unwrap_or_default();
    // Shared handles (an `Arc<str>` and the URI's bytes), not copies.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    // Probes and scrapes arrive every few hundred milliseconds from Docker
    // and Prometheus: they get a DEBUG span, which the OpenTelemetry layer
    // (INFO and above) does not export, so they never flood the collector.
    let probe = route.starts_with("/health") || route == "/metrics";
    // The server span of this request: a child of the caller's trace when
    // it sent one (traceparent or B3), else the root of a new trace.
    let span_name = crate::telemetry::space_joined(method.as_str(), route);
    macro_rules! server_span {
        ($make:ident) => {
            tracing::$make!(
                "http.request",
                otel.name = span_name.as_str(),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                // Text fields as `&str`, not `%`: the OpenTelemetry layer copies
                // a `&str` into its attribute, where a `Display` value goes
                // through `format!` (about 500 instructions each).
                http.request.method = method.as_str(),
                http.route = route,
                url.path = path,
                http.response.status_code = tracing::field::Empty,
                request_id = request_id_text,
            )
        };
    }
    let span = if probe {
        server_span!(debug_span)
    } else {
        server_span!(info_span)
    };
    crate::telemetry::set_parent_from_headers(&span, req.headers());
    let trace_id = crate::telemetry::trace_id_header(&span);
    let mut res = run_until_hard_stop(&state.hard_stop, &state.faults, req, next)
        .instrument(span.clone())
        .await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    crate::telemetry::record_status(&span, status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    // Access log: failures at WARN, client errors at INFO, successes at
    // DEBUG (like Spring Boot, which logs no successful request by default):
    // a registry with 10,000 instances answers 2,000 renewals a second, and
    // logging each costs CPU and buries what matters. RUST_LOG=debug shows all.
    // Probes and scrapes are expected to fail while a service starts: they
    // never log above DEBUG.
    let level = if probe {
        tracing::Level::DEBUG
    } else if status >= 500 {
        tracing::Level::WARN
    } else if status >= 400 {
        tracing::Level::INFO
    } else {
        tracing::Level::DEBUG
    };
    // Entering the span costs every layer's enter and exit: skip it when no
    // layer takes events of this level at all (successes at the default
    // `info`).
    if level <= tracing::level_filters::LevelFilter::current() {
        span.in_scope(|| {
            let ms = elapsed.as_secs_f64() * 1000.0;
            if probe {
                tracing::debug!(status, elapsed_ms = ms, path = %path, "probe");
            } else if status >= 500 {
                tracing::warn!(status, elapsed_ms = ms, path = %path, "request failed");
            } else if status >= 400 {
                tracing::info!(status, elapsed_ms = ms, path = %path, "request rejected");
            } else {
                tracing::debug!(status, elapsed_ms = ms, path = %path, "request");
            }
        });
    }
    state
        .metrics
        .observe_http(method.as_str(), route, status, elapsed);
    res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    if let Some(v) = trace_id {
        res.headers_mut().insert(X_TRACE_ID.clone(), v);
    }
    res
}

/// A new request id: a random (v4) UUID, hyphenated, lower case. The
/// random bits come from the thread's RNG (ChaCha, seeded from the OS):
/// `Uuid::new_v4` asks the OS for each one, a `getrandom` system call per
/// request that no caller of a request id needs.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New request ids are distinct version-4 UUIDs in the usual text form.
    #[test]
    fn request_ids_are_v4_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for v in [a, b] {
            let text = v.to_str().unwrap();
            let id = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.hyphenated().to_string(), text);
        }
    }
}
