//! The Zipkin v2 HTTP API (openzipkin/zipkin-api `zipkin2-api.yaml`, plus
//! `/remoteServices` which Zipkin's server also serves).
//!
//! Answers follow Zipkin's server (`ZipkinQueryApiV2`, `ZipkinHttpCollector`):
//! the same paths, parameters, defaults, validation messages and status
//! codes; JSON written byte-compatibly; name lists sorted and given a
//! `Cache-Control` once more than three services are known; any origin
//! allowed by CORS. No authentication, as in Zipkin: exporters send none.

use std::collections::HashSet;
use std::io::Read;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kit::http::{Path, Query};
use serde::Deserialize;

use crate::AppState;
use crate::decode::{self, DecodeError, ValidSpan, parse_trace_id};
use crate::dependencies::DependencyLinker;
use crate::error::ApiError;
use crate::merge::merge_trace;
use crate::model::{self, TraceId};
use crate::query::{QueryRequest, TracesParams};

/// Armeria's `MediaType.JSON`, what Zipkin answers with.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The `/api/v2` routes.
pub fn router(state: AppState) -> Router {
    let upload_limit = state.options().max_upload_bytes;
    Router::new()
        .route(
            "/api/v2/spans",
            get(span_names)
                .post(post_spans)
                .options(preflight)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v2/services", get(services).options(preflight))
        .route(
            "/api/v2/remoteServices",
            get(remote_services).options(preflight),
        )
        .route("/api/v2/traces", get(traces).options(preflight))
        .route("/api/v2/trace/{trace_id}", get(trace).options(preflight))
        .route("/api/v2/traceMany", get(trace_many).options(preflight))
        .route("/api/v2/dependencies", get(dependencies).options(preflight))
        .route(
            "/api/v2/autocompleteKeys",
            get(autocomplete_keys).options(preflight),
        )
        .route(
            "/api/v2/autocompleteValues",
            get(autocomplete_values).options(preflight),
        )
        .layer(middleware::map_response(allow_any_origin))
        .with_state(state)
}

/// Zipkin allows any origin to read its API.
async fn allow_any_origin(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// Answers CORS preflight requests (browsers ask before POSTing JSON).
async fn preflight(headers: HeaderMap) -> Response {
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("content-type, content-encoding"));
    let mut res = StatusCode::OK.into_response();
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    res
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, JSON_UTF8)], body).into_response()
}

/// A sorted name list; cached by clients once the system is in real use.
fn names(state: &AppState, cache: bool, names: &[impl AsRef<str>]) -> Response {
    let mut body = Vec::with_capacity(2 + names.len() * 16);
    model::write_names_json(&mut body, names);
    let mut res = json(body);
    if cache {
        let v = format!(
            "max-age={}, must-revalidate",
            state.options().names_max_age_secs
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            res.headers_mut().insert(header::CACHE_CONTROL, v);
        }
    }
    res
}

// ---------------------------------------------------------------------------
// upload

/// How the upload is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Proto,
}

impl Format {
    /// Zipkin routes `application/x-protobuf` to its proto3 decoder and
    /// everything else to JSON v2.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        match ct {
            Some(ct)
                if ct
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-protobuf") =>
            {
                Format::Proto
            }
            _ => Format::Json,
        }
    }
}

/// Inflates a gzip body, refusing to produce more than `limit` bytes.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut reader = flate2::read::GzDecoder::new(body).take((limit as u64).saturating_add(1));
    reader
        .read_to_end(&mut out)
        .map_err(|_| ApiError::BadRequest("Cannot gunzip spans".into()))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the spans inflate to more than {limit} bytes (MAX_UPLOAD_BYTES)"
        )));
    }
    Ok(out)
}

/// Decodes an upload in the given format, within the limits.
pub fn decode(
    format: Format,
    body: &[u8],
    limits: decode::Limits,
) -> Result<Vec<ValidSpan<'_>>, DecodeError> {
    match format {
        Format::Json => decode::decode_json(body, limits),
        Format::Proto => decode::decode_proto(body, limits),
    }
}

/// `POST /api/v2/spans`: validates the whole message, then stores it; 202.
async fn post_spans(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let m = state.metrics();
    m.messages.inc();
    let result = store_upload(&state, &headers, body);
    if result.is_err() {
        m.messages_dropped.inc();
    }
    result
}

fn store_upload(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let limit = state.options().max_upload_bytes;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the upload is larger than {limit} bytes (MAX_UPLOAD_BYTES)"
            ))
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })?;
    let header = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let gzip = header(header::CONTENT_ENCODING).is_some_and(|e| e.contains("gzip"));
    let format = Format::from_content_type(header(header::CONTENT_TYPE));

    let inflated;
    let bytes: &[u8] = if gzip && !body.is_empty() {
        inflated = gunzip(&body, limit)?;
        &inflated
    } else {
        &body
    };
    let m = state.metrics();
    m.bytes.inc_by(bytes.len() as u64);
    let limits = state.options().limits;
    let spans = decode(format, bytes, limits).map_err(|e| {
        tracing::debug!(error = %e, "upload refused");
        match e {
            DecodeError::Span { .. } => {
                // The list is well formed, so we know how many spans this
                // message loses (counted up to the per-message limit).
                m.spans_dropped.inc_by(count_hint(format, bytes, limits));
                ApiError::BadRequest(e.to_string())
            }
            DecodeError::TooLarge(m) => ApiError::TooLarge(m),
            DecodeError::Format(m) => ApiError::BadRequest(m),
        }
    })?;
    if spans.is_empty() {
        return Ok(StatusCode::ACCEPTED);
    }
    m.spans.inc_by(spans.len() as u64);
    let mut store = state.store().write();
    let outcome = store.insert(spans);
    let stats = store.stats();
    drop(store);
    m.stored(&outcome, &stats);
    Ok(StatusCode::ACCEPTED)
}

/// The number of spans (at most `cap`) in a list that held an invalid span;
/// counted without building them.
fn count_hint(format: Format, bytes: &[u8], limits: decode::Limits) -> u64 {
    let n = match format {
        Format::Json => decode::count_json(bytes, limits.max_spans),
        // A span error comes after the scan passed with these limits.
        Format::Proto => decode::scan_proto(bytes, limits)
            .map(|c| c.spans)
            .unwrap_or(0),
    };
    n.min(limits.max_spans) as u64
}

// ---------------------------------------------------------------------------
// names

async fn services(State(state): State<AppState>) -> Response {
    let list = state.store().read().service_names();
    names(&state, list.len() > 3, &list)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceParam {
    service_name: String,
}

async fn span_names(State(state): State<AppState>, Query(p): Query<ServiceParam>) -> Response {
    let store = state.store().read();
    let list = store.span_names(&p.service_name);
    let cache = store.stats().services > 3;
    drop(store);
    names(&state, cache, &list)
}

async fn remote_services(State(state): State<AppState>, Query(p): Query<ServiceParam>) -> Response {
    let store = state.store().read();
    let list = store.remote_service_names(&p.service_name);
    let cache = store.stats().services > 3;
    drop(store);
    names(&state, cache, &list)
}

async fn autocomplete_keys(State(state): State<AppState>) -> Response {
    let mut keys = state.options().autocomplete_keys.clone();
    keys.sort();
    keys.dedup();
    names(&state, true, &keys)
}

#[derive(Debug, Deserialize)]
struct KeyParam {
    key: String,
}

async fn autocomplete_values(
    State(state): State<AppState>,
    Query(p): Query<KeyParam>,
) -> Result<Response, ApiError> {
    if p.key.is_empty() {
        return Err(ApiError::BadRequest("key was empty".into()));
    }
    let list = state.store().read().autocomplete_values(&p.key);
    Ok(names(&state, list.len() > 3, &list))
}

// ---------------------------------------------------------------------------
// traces

async fn traces(
    State(state): State<AppState>,
    Query(p): Query<TracesParams>,
) -> Result<Response, ApiError> {
    let q = QueryRequest::from_params(&p, state.now_ms(), state.options().query_lookback_ms)
        .map_err(ApiError::BadRequest)?;
    let found = state.store().read().query(&q);
    let merged: Vec<_> = found.iter().map(|t| merge_trace(t)).collect();
    let mut body = Vec::with_capacity(1024);
    model::write_traces_json(&mut body, &merged);
    Ok(json(body))
}

/// Zipkin trims the path parameter and normalises it before lookup.
fn parse_path_trace_id(raw: &str) -> Result<TraceId, ApiError> {
    parse_trace_id(raw.trim()).map_err(ApiError::BadRequest)
}

async fn trace(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_path_trace_id(&raw)?;
    let spans = state.store().read().trace(id);
    if spans.is_empty() {
        return Err(ApiError::NotFound(format!("{id} not found")));
    }
    let merged = merge_trace(&spans);
    let mut body = Vec::with_capacity(merged.len() * 512);
    model::write_spans_json(&mut body, &merged);
    Ok(json(body))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceManyParams {
    trace_ids: String,
}

async fn trace_many(
    State(state): State<AppState>,
    Query(p): Query<TraceManyParams>,
) -> Result<Response, ApiError> {
    if p.trace_ids.is_empty() {
        return Err(ApiError::BadRequest("traceIds parameter is empty".into()));
    }
    let mut ids: Vec<TraceId> = Vec::new();
    let mut seen = HashSet::new();
    for raw in p.trace_ids.splitn(1000, ',') {
        let id = parse_trace_id(raw).map_err(ApiError::BadRequest)?;
        if !seen.insert(id) {
            return Err(ApiError::BadRequest(format!("redundant traceId: {raw}")));
        }
        ids.push(id);
    }
    if ids.len() == 1 {
        return Err(ApiError::BadRequest(
            "Use /api/v2/trace/{traceId} endpoint to retrieve a single trace".into(),
        ));
    }
    let found = state.store().read().traces(&ids);
    let merged: Vec<_> = found.iter().map(|t| merge_trace(t)).collect();
    let mut body = Vec::with_capacity(1024);
    model::write_traces_json(&mut body, &merged);
    Ok(json(body))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DependencyParams {
    end_ts: i64,
    lookback: Option<i64>,
}

async fn dependencies(
    State(state): State<AppState>,
    Query(p): Query<DependencyParams>,
) -> Result<Response, ApiError> {
    let lookback = p.lookback.unwrap_or(state.options().query_lookback_ms);
    if p.end_ts <= 0 {
        return Err(ApiError::BadRequest("endTs <= 0".into()));
    }
    if lookback <= 0 {
        return Err(ApiError::BadRequest("lookback <= 0".into()));
    }
    // Copy the span lists (reference counts) under the lock, link outside it:
    // linking a day of traces can take a while and must not stall uploads.
    let traces = state.store().read().traces_in_range(p.end_ts, lookback);
    let links = tokio::task::spawn_blocking(move || {
        let mut linker = DependencyLinker::new();
        for t in &traces {
            linker.put_trace(t);
        }
        linker.link()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("dependency linking failed: {e}")))?;
    let mut body = Vec::with_capacity(links.len() * 64 + 2);
    model::write_links_json(&mut body, &links);
    Ok(json(body))
}
