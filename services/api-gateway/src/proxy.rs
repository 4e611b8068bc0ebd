//! The forwarding path: route → edge auth → instance from the registry →
//! upstream call (retried elsewhere when allowed) → answer streamed back.
//!
//! Bodies are never collected whole: the request body (axum's `Body`) is
//! handed to hyper's client as it arrives, and the upstream's `Incoming`
//! body is handed back to axum the same way, so memory stays flat whatever
//! the size. The only exception is deliberate and bounded: a request that
//! may be retried (idempotent method, retries configured) and carries a
//! small body (`--retry-body-limit`, Content-Length known) is buffered so it
//! can be sent again; larger ones stream and are not retried. A POST is
//! never retried (routes refuse non-idempotent retry methods), so its body
//! is never buffered.
//!
//! Each route bounds the request body (`max_body`): a Content-Length above
//! it is answered 413 before the body is read or an instance is picked, and
//! a streamed body is counted by [`LimitedBody`] and cut off as soon as it
//! passes the limit. That wrapper also tells the forwarding loop when an
//! upstream call failed because of the client's side (too large, broken
//! off, still arriving when the answer was due): such a call is not the
//! instance's fault and is never reported to the balancer as a failure, so
//! an ordinary client cannot get healthy instances ejected.
//!
//! Upstream connections come from hyper-util's pooled client (HTTP/1.1,
//! keep-alive). Instances come from the kit's [`Balancer`] (one per
//! upstream service, fed by the watch-driven discovery cache); each attempt
//! reports its verdict to it, which is what ejects a dead instance at the
//! first connect error. A retry always goes to an instance not yet tried
//! ([`Balancer::pick_excluding_with`]).
//!
//! Tracing: the kit's server span of the request already continues a
//! caller's trace (W3C or B3). Each attempt is a CLIENT span under it
//! (`peer.service` = the upstream service, so Zipkin draws the edge to it)
//! whose context replaces the caller's trace headers on the proxied
//! request; its status is recorded, and a failed attempt (connect error,
//! timeout, 5xx) is marked as an error, so retries show as separate calls.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use kit::Problem;
use kit::lb::{Balancer, Failure, Pick};
use kit::registry::ServiceInstance;
use tracing::Instrument;

use crate::edge_auth::EdgeAuth;
use crate::metrics::UpstreamMetrics;
use crate::pattern::Captures;
use crate::route::{RequestView, Route, RouteTable};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The pooled upstream client.
pub type UpstreamClient = Client<crate::upstream_io::Connector, Body>;

/// One upstream service: its balancer and metric handles.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub balancer: Balancer,
    pub metrics: UpstreamMetrics,
}

/// Everything the forwarding path needs; shared by all requests.
#[derive(Debug)]
pub struct Proxy {
    /// One per connection-serving thread (see [`Proxy::client`]).
    pub clients: Vec<UpstreamClient>,
    pub routes: RouteTable,
    /// Service name → upstream, one per service named by any route.
    pub upstreams: BTreeMap<String, Upstream>,
    pub auth: EdgeAuth,
    /// Largest body buffered so a retryable request can be sent again.
    pub retry_body_limit: usize,
    /// The port clients reached the gateway on, for `X-Forwarded-Port`.
    pub listen_port: u16,
}

/// Why a request could not be forwarded; each becomes a problem+json answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for {method} {path}")]
    NoRoute { method: Method, path: String },
    #[error("no instance of {service} is up")]
    NoInstance { service: String },
    #[error("cannot reach {service}")]
    Unreachable { service: String },
    #[error("{service} closed the connection before answering")]
    Broken { service: String },
    #[error("{service} did not answer within {after:?}")]
    Timeout { service: String, after: Duration },
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("the request body is larger than this route's limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            ProxyError::NoRoute { path, .. } => Problem::not_found(detail).instance(path),
            ProxyError::NoInstance { service } => Problem::unavailable(detail)
                .kind("no-instance")
                .with("service", service),
            ProxyError::Unreachable { service } | ProxyError::Broken { service } => {
                Problem::with_detail(StatusCode::BAD_GATEWAY, detail)
                    .kind("bad-gateway")
                    .with("service", service)
            }
            ProxyError::Timeout { service, .. } => {
                Problem::with_detail(StatusCode::GATEWAY_TIMEOUT, detail)
                    .kind("gateway-timeout")
                    .with("service", service)
            }
            ProxyError::Body(_) => Problem::bad_request(detail),
            ProxyError::TooLarge { limit } => {
                Problem::with_detail(StatusCode::PAYLOAD_TOO_LARGE, detail)
                    .kind("body-too-large")
                    .with("limit", limit)
            }
        }
        .into_response()
    }
}

/// The handler behind every path the gateway does not serve itself.
pub async fn handle(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let start = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let view = RequestView {
        method: &parts.method,
        path: parts.uri.path(),
        host,
        headers: &parts.headers,
    };
    let Some((route, caps)) = proxy.routes.find(&view) else {
        // Answered without reading it: drain it so the client reads the 404.
        discard(body);
        return ProxyError::NoRoute {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
        }
        .into_response();
    };
    let route = route.clone();
    let res = match proxy.auth.check(&route.access, &parts.headers).await {
        Ok(()) => match proxy.forward(&route, caps, parts, body, peer).await {
            Ok(res) => res,
            Err(e) => {
                tracing::warn!(route = %route.id, error = %e, "request not forwarded");
                e.into_response()
            }
        },
        Err(rejected) => {
            discard(body);
            rejected
        }
    };
    route
        .metrics
        .observe(res.status().as_u16(), start.elapsed());
    res
}

/// A request body that may be sent more than once.
enum Replay {
    Empty,
    Buffered(Bytes),
    /// Streamed: usable once.
    Stream(Option<Body>),
}

impl Replay {
    fn take(&mut self) -> Option<Body> {
        match self {
            Replay::Empty => Some(Body::empty()),
            Replay::Buffered(b) => Some(Body::from(b.clone())),
            Replay::Stream(b) => b.take(),
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, Replay::Stream(_))
    }
}

impl Proxy {
    async fn forward(
        &self,
        route: &Route,
        caps: Captures,
        parts: http::request::Parts,
        body: Body,
        peer: Option<IpAddr>,
    ) -> Result<Response, ProxyError> {
        let upstream =
            self.upstreams
                .get(&route.upstream)
                .ok_or_else(|| ProxyError::NoInstance {
                    service: route.upstream.clone(),
                })?;
        // The declared length decides before anything is read or picked.
        if let Some(len) = content_length(&parts.headers)
            && len > route.max_body
        {
            discard(body);
            return Err(ProxyError::TooLarge {
                limit: route.max_body,
            });
        }
        let watch = Arc::new(BodyWatch::default());
        if body.is_end_stream() {
            watch.set(BodyState::Done);
        }
        let body = Body::new(LimitedBody {
            inner: body,
            limit: route.max_body,
            seen: 0,
            watch: watch.clone(),
        });
        let method = parts.method;
        let mut headers = parts.headers;
        let original_host = headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        remove_hop_by_hop(&mut headers);
        // Room for the forwarding and trace headers added below, at once
        // rather than by repeated growth of a map sized for the request.
        headers.reserve(12);
        // hyper's client writes the instance's own Host (Spring Cloud
        // Gateway's default); the original goes in X-Forwarded-Host.
        headers.remove(header::HOST);
        // 100-continue is answered by our own server when the body is read.
        headers.remove(header::EXPECT);
        add_forwarded(&mut headers, peer, original_host.as_ref(), self.listen_port);
        route.filter_request_headers(&mut headers, &caps);

        let path = route.rewrite_path(parts.uri.path());
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };

        let retryable = route.retry.allows(&method);
        let mut replay = if retryable {
            self.replayable_body(body).await.map_err(|e| {
                if watch.get() == BodyState::TooLarge {
                    ProxyError::TooLarge {
                        limit: route.max_body,
                    }
                } else {
                    e
                }
            })?
        } else {
            Replay::Stream(Some(body))
        };

        let mut tried: Vec<String> = Vec::new();
        let mut attempt: u32 = 0;
        loop {
            let pick = if attempt == 0 {
                upstream
                    .balancer
                    .pick_ready_with(route.strategy, &tried)
                    .await
            } else {
                upstream
                    .balancer
                    .pick_excluding_with(route.strategy, &tried)
            };
            let Some(pick) = pick else {
                return Err(ProxyError::NoInstance {
                    service: route.upstream.clone(),
                });
            };
            let can_retry = retryable && attempt < route.retry.retries && replay.replayable();
            let Some(body) = replay.take() else {
                // Only a streamed body is single-use, and it is never retried.
                return Err(ProxyError::Broken {
                    service: route.upstream.clone(),
                });
            };
            let (uri, url) = upstream_url(pick.instance(), &path_and_query).ok_or_else(|| {
                ProxyError::Unreachable {
                    service: route.upstream.clone(),
                }
            })?;
            // One CLIENT span per attempt, so a retry shows as a second
            // call to another instance; its context replaces the caller's
            // trace headers (our server span already continued them).
            let span = kit::telemetry::client_span(&route.upstream, method.as_str(), url.as_str());
            let mut req = http::Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = Version::HTTP_11;
            *req.headers_mut() = if can_retry {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            kit::telemetry::inject_headers_from(&span, req.headers_mut());
            if let Some(host) = host_header(req.uri()) {
                req.headers_mut().insert(header::HOST, host);
            }

            let sent = Instant::now();
            let outcome = tokio::time::timeout(route.timeout, self.client().request(req))
                .instrument(span.clone())
                .await;
            upstream
                .metrics
                .duration
                .observe(sent.elapsed().as_secs_f64());
            match outcome {
                Ok(Ok(res)) => {
                    let status = res.status();
                    kit::telemetry::record_status(&span, status.as_u16());
                    if status.is_server_error() {
                        kit::telemetry::mark_error(&span);
                        pick.record_failure(Failure::ServerError);
                    } else {
                        pick.record_success();
                    }
                    if can_retry && route.retry.statuses.contains(&status.as_u16()) {
                        let instance_id = pick.instance().instance_id.clone();
                        tracing::info!(route = %route.id, instance = %instance_id, %status, attempt, "retrying on another instance");
                        drop(res);
                        drop(pick);
                        attempt += 1;
                        tried.push(instance_id);
                        self.before_retry(route, upstream, attempt).await;
                        continue;
                    }
                    return Ok(self.answer(route, &caps, res, pick));
                }
                Ok(Err(e)) => {
                    kit::telemetry::mark_error(&span);
                    // The client's side broke the call: no verdict on the instance.
                    match watch.get() {
                        BodyState::TooLarge => {
                            return Err(ProxyError::TooLarge {
                                limit: route.max_body,
                            });
                        }
                        BodyState::ClientError => {
                            tracing::info!(route = %route.id, error = %e, "the client's request body broke off");
                            return Err(ProxyError::Body("the client stopped sending it".into()));
                        }
                        BodyState::Sending | BodyState::Done => {}
                    }
                    pick.record_failure(Failure::Connect);
                    let instance_id = pick.instance().instance_id.clone();
                    drop(pick);
                    let connect = e.is_connect();
                    if can_retry {
                        tracing::info!(route = %route.id, instance = %instance_id, error = %e, attempt, "retrying on another instance");
                        attempt += 1;
                        tried.push(instance_id);
                        self.before_retry(route, upstream, attempt).await;
                        continue;
                    }
                    tracing::warn!(route = %route.id, instance = %instance_id, error = ?e, "upstream call failed");
                    let service = route.upstream.clone();
                    return Err(if connect {
                        ProxyError::Unreachable { service }
                    } else {
                        ProxyError::Broken { service }
                    });
                }
                Err(_) => {
                    kit::telemetry::mark_error(&span);
                    // An answer cannot be due before the request has arrived:
                    // a client still sending its body is not the instance's fault.
                    if watch.get() == BodyState::Done {
                        pick.record_failure(Failure::Timeout);
                    }
                    tracing::warn!(route = %route.id, instance = %pick.instance().instance_id, timeout = ?route.timeout, "upstream timed out");
                    return Err(ProxyError::Timeout {
                        service: route.upstream.clone(),
                        after: route.timeout,
                    });
                }
            }
        }
    }

    /// The pooled client of the thread serving this request (the first
    /// one off the connection-serving threads: tests, a single runtime).
    fn client(&self) -> &UpstreamClient {
        let k = kit::service::io_thread().unwrap_or(0);
        &self.clients[k % self.clients.len()]
    }

    async fn before_retry(&self, route: &Route, upstream: &Upstream, attempt: u32) {
        route.metrics.retried();
        upstream.metrics.retries.inc();
        let wait = route.retry.backoff(attempt);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Buffers a small body (known length) so the request can be sent
    /// again; anything else streams.
    async fn replayable_body(&self, body: Body) -> Result<Replay, ProxyError> {
        let hint = body.size_hint();
        if body.is_end_stream() || hint.exact() == Some(0) {
            return Ok(Replay::Empty);
        }
        match hint.exact() {
            Some(n) if n <= self.retry_body_limit as u64 => {
                let bytes = http_body_util::Limited::new(body, self.retry_body_limit)
                    .collect()
                    .await
                    .map_err(|e| ProxyError::Body(e.to_string()))?
                    .to_bytes();
                Ok(Replay::Buffered(bytes))
            }
            _ => Ok(Replay::Stream(Some(body))),
        }
    }

    /// The upstream's answer, cleaned and filtered, its body streamed.
    fn answer(
        &self,
        route: &Route,
        caps: &Captures,
        res: http::Response<Incoming>,
        pick: Pick,
    ) -> Response {
        let (mut parts, body) = res.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        route.filter_response_headers(&mut parts.headers, caps);
        Response::from_parts(parts, Body::new(PickBody { inner: body, pick }))
    }
}

/// `http://host:port/path?query` of an instance (IPv6 hosts get brackets), as a `Uri` and as
/// text. Written into one string that becomes the URI's buffer, shared with the text (no
/// `format!`, no copy on parsing): this runs for every attempt, and the text is the client
/// span's `url.full` (formatting the `Uri` would cost a `format!`).
fn upstream_url(instance: &ServiceInstance, path_and_query: &str) -> Option<(Uri, UrlText)> {
    let host = instance.host.as_str();
    let bracket = host.contains(':') && !host.starts_with('[');
    let mut text = String::with_capacity(16 + host.len() + path_and_query.len());
    text.push_str("http://");
    if bracket {
        text.extend(["[", host, "]"]);
    } else {
        text.push_str(host);
    }
    text.push(':');
    push_decimal(&mut text, instance.port);
    text.push_str(path_and_query);
    let bytes = Bytes::from(text);
    let uri = Uri::from_maybe_shared(bytes.clone()).ok()?;
    Some((uri, UrlText(bytes)))
}

/// The text of an [`upstream_url`]: bytes that came from a `String`.
struct UrlText(Bytes);

impl UrlText {
    fn as_str(&self) -> &str {
        // Built from a `String`; the check costs a pass over a short URL, never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The `Host` header hyper's client would write for `uri` (`host:port`, the
/// port left out when it is 80), from the URI's authority as it stands:
/// hyper-util formats it anew with `format!` on every request otherwise.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None; // never built so; leave it to hyper
    }
    let text = match authority.port_u16() {
        Some(80) => authority.host(),
        _ => authority.as_str(),
    };
    HeaderValue::from_str(text).ok()
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|d| char::from(*d)));
}

/// The fixed hop-by-hop headers (besides `Connection` and what it names).
static HOP_BY_HOP: [&HeaderName; 8] = [
    &KEEP_ALIVE,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): those `Connection` names
/// and the fixed list. Runs twice per request (request and answer), which
/// rarely carry any: one pass over the names present decides, instead of
/// nine hashed lookups.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let hop = |name: &HeaderName| name == header::CONNECTION || HOP_BY_HOP.contains(&name);
    if !headers.keys().any(hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `X-Forwarded-For` (appended), `-Proto`, `-Host`, `-Port` (kept when an
/// outer proxy set them) and RFC 7239 `Forwarded` (appended).
///
/// Runs for every request: the peer address is formatted once for both
/// headers and the values are written straight into their strings.
fn add_forwarded(
    headers: &mut HeaderMap,
    peer: Option<IpAddr>,
    host: Option<&HeaderValue>,
    port: u16,
) {
    let peer_text = peer.map(ip_text);
    if let Some(ip) = &peer_text {
        let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => {
                HeaderValue::from_maybe_shared(Bytes::from([prev, ", ", ip].concat()))
            }
            _ => HeaderValue::from_str(ip),
        };
        if let Ok(v) = chain {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if let Some(h) = host
        && !headers.contains_key(&X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
    }
    if !headers.contains_key(&X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(port));
    }
    let prev = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.trim().is_empty());
    let mut value = String::with_capacity(96 + prev.map_or(0, str::len));
    if let Some(p) = prev {
        value.push_str(p);
        value.push_str(", ");
    }
    if let (Some(ip), Some(text)) = (peer, &peer_text) {
        match ip {
            IpAddr::V4(_) => value.extend(["for=", text.as_str()]),
            IpAddr::V6(_) => value.extend(["for=\"[", text.as_str(), "]\""]),
        }
        value.push(';');
    }
    value.push_str("proto=http");
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        value.push_str(";host=\"");
        value.extend(h.chars().filter(|c| *c != '"' && *c != '\\'));
        value.push('"');
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(header::FORWARDED, v);
    }
}

/// `ip` as text, exactly as its `Display` writes it; IPv4 (the usual case)
/// without the formatting machinery, which costs more than the rest of the
/// forwarding headers.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (k, octet) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The `Content-Length` of a request, when it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Most of a refused request body read and thrown away after the answer.
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;
/// Longest time spent throwing a refused request body away.
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Reads what is left of a refused request body and throws it away, in the
/// background and bounded in bytes and time (nginx's lingering close).
/// Without it the connection would be closed with the client's data still
/// unread, the kernel would answer with a reset, and a client still sending
/// would often see "connection reset" instead of our 413. Memory stays
/// flat: each chunk is dropped as it arrives.
fn discard(body: Body) {
    if body.is_end_stream() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut body = body;
        let mut seen = 0u64;
        let drained = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DISCARD_BYTES {
                    break;
                }
            }
        })
        .await;
        tracing::debug!(
            bytes = seen,
            finished = drained.is_ok(),
            "refused request body discarded"
        );
    });
}

/// Where a request body stands, as [`LimitedBody`] last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum BodyState {
    /// Not finished yet (or not started).
    Sending = 0,
    /// Read to its end.
    Done = 1,
    /// Passed the route's `max_body`; cut off.
    TooLarge = 2,
    /// The client's side failed (disconnect, malformed chunking).
    ClientError = 3,
}

/// A request body's state, shared between [`LimitedBody`] (polled by
/// hyper's client, on the connection's task) and the forwarding loop that
/// judges a failed call. Atomic: the two run on different tasks.
#[derive(Debug, Default)]
struct BodyWatch(AtomicU8);

impl BodyWatch {
    fn get(&self) -> BodyState {
        match self.0.load(Ordering::Acquire) {
            1 => BodyState::Done,
            2 => BodyState::TooLarge,
            3 => BodyState::ClientError,
            _ => BodyState::Sending,
        }
    }

    /// Records how the body ended; the first verdict stands (a body cut off
    /// for its size is not "done" when hyper then finds it empty).
    fn set(&self, state: BodyState) {
        let _ = self.0.compare_exchange(
            BodyState::Sending as u8,
            state as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Why [`LimitedBody`] stopped a body.
#[derive(Debug, thiserror::Error)]
#[error("the request body passed the route's limit of {limit} bytes")]
struct BodyTooLarge {
    limit: u64,
}

/// The client's request body on its way upstream: counted as it streams,
/// stopped once it passes the route's limit, its end or failure recorded in
/// the shared [`BodyWatch`].
struct LimitedBody {
    inner: Body,
    limit: u64,
    seen: u64,
    watch: Arc<BodyWatch>,
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        this.watch.set(BodyState::TooLarge);
                        discard(std::mem::replace(&mut this.inner, Body::empty()));
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.watch.set(BodyState::ClientError),
            Poll::Ready(None) => this.watch.set(BodyState::Done),
            Poll::Pending => {}
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            // hyper may not poll a body that says it is over.
            self.watch.set(BodyState::Done);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body dropped before its end (the upstream answered without reading it
/// all, or the call failed) is drained in the background, so the client
/// still sending it reads the answer rather than a connection reset.
impl Drop for LimitedBody {
    fn drop(&mut self) {
        if self.watch.get() == BodyState::Sending {
            discard(std::mem::replace(&mut self.inner, Body::empty()));
        }
    }
}

/// The upstream's body on its way to the client. Holds the [`Pick`] so the
/// instance counts the request as in flight until the body is done, and
/// reports a body that breaks off as a connection failure.
struct PickBody {
    inner: Incoming,
    pick: Pick,
}

impl http_body::Body for PickBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            tracing::warn!(instance = %this.pick.instance().instance_id, error = %e, "upstream body broke off");
            this.pick.record_failure(Failure::Connect);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body is counted as it streams: within the limit it ends Done, past it the frame that
    /// crosses the limit is an error and the verdict stays TooLarge; a client-side error is
    /// ClientError.
    #[tokio::test]
    async fn limited_body_verdicts() {
        let chunks = |n: usize| {
            let frames =
                (0..n).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(&[1; 100]))));
            Body::new(http_body_util::StreamBody::new(futures::stream::iter(
                frames,
            )))
        };
        let limited = |inner: Body, limit: u64| {
            let watch = Arc::new(BodyWatch::default());
            let body = LimitedBody {
                inner,
                limit,
                seen: 0,
                watch: watch.clone(),
            };
            (body, watch)
        };

        let (body, watch) = limited(chunks(3), 300);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 300);
        assert_eq!(watch.get(), BodyState::Done);

        let (body, watch) = limited(chunks(4), 300);
        assert!(
            body.collect().await.is_err(),
            "the 4th 100 bytes pass the limit"
        );
        assert_eq!(watch.get(), BodyState::TooLarge);
        watch.set(BodyState::Done);
        assert_eq!(watch.get(), BodyState::TooLarge, "the first verdict stands");

        let broken = futures::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err(std::io::Error::other("client gone")),
        ]);
        let (body, watch) = limited(Body::new(http_body_util::StreamBody::new(broken)), 300);
        assert!(body.collect().await.is_err());
        assert_eq!(watch.get(), BodyState::ClientError);

        let (body, watch) = limited(Body::empty(), 300);
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(watch.get(), BodyState::Done);
    }

    /// Connection-listed and fixed hop-by-hop headers go; end-to-end headers stay.
    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("authorization", "Bearer t"),
            ("x-request-id", "r1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-request-id"]);
        // Each alone is found too; end-to-end headers alone are left as they are.
        for k in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "proxy-connection",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(k), HeaderValue::from_static("x"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{k}");
        }
    }

    /// Forwarding headers append to an outer proxy's chain and keep its proto and host.
    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        let host = HeaderValue::from_static("shop.example:8080");
        add_forwarded(&mut h, Some([10, 0, 0, 7].into()), Some(&host), 8080);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example:8080");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.7;proto=http;host=\"shop.example:8080\""
        );

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("forwarded", HeaderValue::from_static("for=203.0.113.9"));
        add_forwarded(&mut h, Some("::1".parse().unwrap()), None, 8080);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9, for=\"[::1]\";proto=http");
    }

    /// The Host header is the one hyper-util writes itself (host, `:port`
    /// unless 80, IPv6 in brackets).
    #[test]
    fn host_header_is_hyper_utils() {
        for uri in [
            "http://10.0.0.1:8081/a?b=1",
            "http://10.0.0.1:80/a",
            "http://[fd00::1]:8081/",
            "http://[fd00::1]:80/",
            "http://localhost:65535/x",
        ] {
            let uri: Uri = uri.parse().unwrap();
            let host = uri.host().unwrap();
            let expected = match uri.port_u16() {
                Some(80) => host.to_string(),
                _ => format!("{host}:{}", uri.port().unwrap()),
            };
            assert_eq!(host_header(&uri).unwrap(), expected.as_str(), "{uri}");
        }
    }

    /// Peer addresses are written as `Display` writes them.
    #[test]
    fn ip_text_is_display() {
        for ip in [
            "0.0.0.0",
            "10.0.0.7",
            "127.0.0.1",
            "192.168.100.255",
            "255.255.255.255",
            "1.20.100.9",
            "::1",
            "fd00::1:2",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// The upstream URI, checked to read as its text does.
    fn url_of(i: &ServiceInstance, path_and_query: &str) -> String {
        let (uri, text) = upstream_url(i, path_and_query).unwrap();
        assert_eq!(uri.to_string(), text.as_str());
        uri.to_string()
    }

    /// IPv6 instance hosts are bracketed in the upstream URI.
    #[test]
    fn upstream_uris() {
        let mut i = ServiceInstance {
            instance_id: "a".into(),
            service: "s".into(),
            host: "10.0.0.1".into(),
            port: 8081,
            status: kit::registry::model::InstanceStatus::Up,
            metadata: Default::default(),
        };
        assert_eq!(url_of(&i, "/a?b=1"), "http://10.0.0.1:8081/a?b=1");
        i.host = "fd00::1".into();
        assert_eq!(url_of(&i, "/"), "http://[fd00::1]:8081/");
        for port in [0, 7, 80, 65535] {
            i.port = port;
            assert_eq!(url_of(&i, "/x"), format!("http://[fd00::1]:{port}/x"));
        }
    }
}
