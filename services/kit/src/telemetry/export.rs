//! Span export: a bounded, never-blocking batch processor in front of the
//! Zipkin exporter, and the HTTP transport that names our spans.
//!
//! Why our own processor: the SDK's `BatchSpanProcessor` counts the spans
//! it drops when its queue is full but does not expose the count, and the
//! issue wants it in `/metrics`. This one is small: `on_end` does a
//! `try_send` into a bounded channel (a full queue drops the span and counts
//! it, the request never waits), and one plain thread batches and exports.
//! A plain thread, not a tokio task, because the Zipkin exporter's blocking
//! HTTP client must not run inside the runtime (see NOTES.md).
//!
//! Why our own transport: opentelemetry-zipkin 0.33 (deprecated upstream in
//! favour of OTLP) no longer writes `localEndpoint.serviceName`, so Zipkin
//! would list every span under an unknown service. [`NamingClient`] sets it
//! on the JSON the exporter produces, and maps the `peer.service` attribute
//! of client/producer spans to `remoteEndpoint.serviceName`, which Zipkin
//! uses for its dependency graph, before handing the body to reqwest.

#![allow(deprecated)] // see telemetry/mod.rs

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Process-wide span export counters, read by the kit's `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub queued: AtomicU64,
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub export_failures: AtomicU64,
}

/// The counters of this process's exporter (zero when none runs).
pub static EXPORT_STATS: ExportStats = ExportStats {
    queued: AtomicU64::new(0),
    exported: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    export_failures: AtomicU64::new(0),
};

enum Message {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
    Shutdown(SyncSender<()>),
}

/// The bounded batch span processor.
#[derive(Debug)]
pub struct BoundedBatchProcessor {
    tx: SyncSender<Message>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

/// Tuning of the processor.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Spans waiting for export beyond this are dropped (and counted).
    pub max_queue: usize,
    /// Largest batch sent in one export call.
    pub max_batch: usize,
    /// Longest a span waits before its batch is sent.
    pub delay: Duration,
}

impl BoundedBatchProcessor {
    /// Starts the export thread.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        options: BatchOptions,
    ) -> BoundedBatchProcessor {
        let (tx, rx) = std::sync::mpsc::sync_channel(options.max_queue.max(1));
        let worker = std::thread::Builder::new()
            .name("span-export".into())
            .spawn(move || export_loop(exporter, rx, options))
            .ok();
        BoundedBatchProcessor {
            tx,
            worker: Mutex::new(worker),
        }
    }
}

fn export_loop<E: SpanExporter>(exporter: E, rx: Receiver<Message>, options: BatchOptions) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(options.max_batch);
    let mut deadline = Instant::now();
    let send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match futures::executor::block_on(exporter.export(std::mem::take(batch))) {
            Ok(()) => EXPORT_STATS.exported.fetch_add(n, Ordering::Relaxed),
            // The collector being away must not hurt the service: count and move on.
            Err(_) => EXPORT_STATS.export_failures.fetch_add(n, Ordering::Relaxed),
        };
    };
    loop {
        // A batch goes out `delay` after its first span at the latest. With none waiting, the
        // thread sleeps until a span arrives: an idle service's export thread never wakes
        // (it woke every `delay` to send nothing, twice a second in each service).
        let received = if batch.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        };
        match received {
            Ok(Message::Span(span)) => {
                EXPORT_STATS.queued.fetch_sub(1, Ordering::Relaxed);
                if batch.is_empty() {
                    deadline = Instant::now() + options.delay;
                }
                batch.push(*span);
                if batch.len() >= options.max_batch {
                    send(&mut batch);
                }
            }
            Ok(Message::Flush(done)) => {
                drain(&rx, &mut batch);
                send(&mut batch);
                let _ = done.send(());
            }
            Ok(Message::Shutdown(done)) => {
                drain(&rx, &mut batch);
                send(&mut batch);
                let _ = exporter.shutdown();
                let _ = done.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => send(&mut batch),
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                return;
            }
        }
    }
}

fn drain(rx: &Receiver<Message>, batch: &mut Vec<SpanData>) {
    while let Ok(Message::Span(span)) = rx.try_recv() {
        EXPORT_STATS.queued.fetch_sub(1, Ordering::Relaxed);
        batch.push(*span);
    }
}

impl BoundedBatchProcessor {
    fn control(&self, make: fn(SyncSender<()>) -> Message, timeout: Duration) -> OTelSdkResult {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(make(done_tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done_rx
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.tx.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {
                EXPORT_STATS.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                EXPORT_STATS.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let r = self.control(Message::Shutdown, timeout);
        if let Ok(mut w) = self.worker.lock()
            && let Some(handle) = w.take()
            && r.is_ok()
        {
            let _ = handle.join();
        }
        r
    }
}

/// The HTTP transport of the Zipkin exporter: names the spans, then posts
/// them with reqwest's blocking client (we are on the export thread).
#[derive(Debug)]
pub struct NamingClient {
    pub inner: reqwest::blocking::Client,
    pub service: String,
}

#[async_trait::async_trait]
impl HttpClient for NamingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let body = name_spans(&body, &self.service)
            .map(Bytes::from)
            .unwrap_or(body);
        self.inner
            .send_bytes(Request::from_parts(parts, body))
            .await
    }
}

/// Sets `localEndpoint.serviceName` on every span of a Zipkin v2 JSON list
/// and `remoteEndpoint.serviceName` from a `peer.service` tag.
pub fn name_spans(body: &[u8], service: &str) -> Option<Vec<u8>> {
    let mut spans: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    for span in &mut spans {
        let obj = span.as_object_mut()?;
        let local = obj
            .entry("localEndpoint")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(local) = local.as_object_mut() {
            local.insert("serviceName".into(), service.into());
        }
        let peer = obj
            .get("tags")
            .and_then(|t| t.get("peer.service"))
            .and_then(|p| p.as_str())
            .map(str::to_string);
        if let Some(peer) = peer {
            let remote = obj
                .entry("remoteEndpoint")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(remote) = remote.as_object_mut() {
                remote.insert("serviceName".into(), peer.into());
            }
        }
    }
    serde_json::to_vec(&spans).ok()
}

/// Shared so the guard can flush at exit.
pub type ProviderHandle = Arc<opentelemetry_sdk::trace::SdkTracerProvider>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans get our service name, and client spans the peer's as remote endpoint.
    #[test]
    fn names_spans() {
        let body = br#"[{"traceId":"a","id":"b","localEndpoint":{}},{"traceId":"a","id":"c","kind":"CLIENT","tags":{"peer.service":"inventory-service"}}]"#;
        let out: serde_json::Value =
            serde_json::from_slice(&name_spans(body, "order-service").unwrap()).unwrap();
        assert_eq!(out[0]["localEndpoint"]["serviceName"], "order-service");
        assert_eq!(out[1]["localEndpoint"]["serviceName"], "order-service");
        assert_eq!(out[1]["remoteEndpoint"]["serviceName"], "inventory-service");
        assert!(name_spans(b"not json", "x").is_none());
    }
}
