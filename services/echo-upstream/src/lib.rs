//! The upstream the gateway's tests and benchmark run against: a small
//! HTTP service that shows what reached it, and makes and swallows large
//! bodies without holding them.
//!
//! It is not part of the platform; it exists so that gateway behaviour
//! (routing, filters, forwarding headers, streaming, failover) can be
//! checked against a real upstream over real sockets, in-process
//! ([`router`]) or as the `echo-upstream` binary that a test kills with
//! `kill -9`.
//!
//! - `GET /hello`: a fixed 13-byte body (the benchmark's request);
//! - `GET /bytes/{n}`: `n` bytes of a fixed pattern (byte `i` is
//!   `i % 251`), generated while being sent;
//! - `POST|PUT /upload`: reads the body as it comes, answers its length and
//!   whether it followed the pattern;
//! - `GET /status/{code}`: answers that status;
//! - `GET /slow/{ms}`: answers after `ms` milliseconds;
//! - `GET /hop`: answers with hop-by-hop headers the gateway must remove;
//! - anything else: JSON with the instance name, method, path, query and
//!   headers received.
//!
//! Every answer carries `X-Instance: <name>`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

/// The byte at position `i` of generated bodies.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// What the catch-all answer says about the request it received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Echo {
    pub instance: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header name → every value received, in order.
    pub headers: BTreeMap<String, Vec<String>>,
}

/// What `/upload` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Uploaded {
    pub bytes: u64,
    pub pattern_ok: bool,
}

static X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");

/// The echo application of instance `name`.
pub fn router(name: &str) -> Router {
    let name: Arc<str> = Arc::from(name);
    Router::new()
        .route("/hello", get(|| async { "Hello, world!" }))
        .route("/bytes/{n}", get(bytes))
        .route("/upload", post(upload).put(upload))
        .route("/status/{code}", get(status))
        .route("/slow/{ms}", get(slow))
        .route("/hop", get(hop))
        // Catch-all routes rather than a fallback: the kit's scaffold sets
        // its own fallback when this router is served by a kit service.
        .route("/", any(echo))
        .route("/{*path}", any(echo))
        .layer(axum::middleware::from_fn_with_state(
            name.clone(),
            tag_instance,
        ))
        .with_state(name)
}

async fn tag_instance(
    State(name): State<Arc<str>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&name) {
        res.headers_mut().insert(X_INSTANCE.clone(), v);
    }
    res
}

async fn echo(State(name): State<Arc<str>>, req: Request) -> axum::Json<Echo> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    axum::Json(Echo {
        instance: name.to_string(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        headers,
    })
}

async fn bytes(Path(n): Path<u64>) -> Response {
    Body::new(Generated::new(n)).into_response()
}

async fn upload(req: Request) -> Response {
    let mut body = req.into_body();
    let mut seen: u64 = 0;
    let mut ok = true;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("body broke off: {e}")).into_response();
            }
        };
        if let Some(data) = frame.data_ref() {
            for (k, b) in data.iter().enumerate() {
                ok &= *b == pattern_byte(seen + k as u64);
            }
            seen += data.len() as u64;
        }
    }
    axum::Json(Uploaded {
        bytes: seen,
        pattern_ok: ok,
    })
    .into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, format!("status {code}")).into_response()
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    "slow done"
}

async fn hop() -> Response {
    let mut res = "hop".into_response();
    let h = res.headers_mut();
    h.insert("connection", HeaderValue::from_static("x-hop-secret"));
    h.insert("x-hop-secret", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
    h.insert("x-end-to-end", HeaderValue::from_static("kept"));
    res
}

/// A body of the fixed pattern, made in 64 KiB chunks as it is sent.
#[derive(Debug)]
pub struct Generated {
    /// Position of the next byte.
    sent: u64,
    len: u64,
    /// One period-aligned block of the pattern, sliced per chunk.
    block: Bytes,
}

const CHUNK: u64 = 64 * 1024;

impl Generated {
    pub fn new(len: u64) -> Generated {
        // A chunk starts anywhere in the 251-byte period and is up to CHUNK
        // long: 251 * 263 = 66013 ≥ 250 + CHUNK, so every chunk is a slice
        // of this one block.
        let block: Vec<u8> = (0..251 * 263).map(pattern_byte).collect();
        Generated {
            sent: 0,
            len,
            block: Bytes::from(block),
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.sent >= this.len {
            return Poll::Ready(None);
        }
        let n = (this.len - this.sent).min(CHUNK) as usize;
        let start = (this.sent % 251) as usize;
        let chunk = this.block.slice(start..start + n);
        this.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated bodies have the exact length and follow the pattern across chunk borders.
    #[tokio::test]
    async fn generated_body_follows_the_pattern() {
        // Chunk k starts at offset 25k mod 251 of the period: chunk 10 at
        // 250, the worst case for the block length.
        let len = 11 * CHUNK + 5;
        let body = Generated::new(len).collect().await.unwrap().to_bytes();
        assert_eq!(body.len() as u64, len);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(i as u64))
        );
    }
}
