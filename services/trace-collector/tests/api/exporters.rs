//! Third-party Zipkin exporters talking to the real collector: OpenTelemetry's
//! Python SDK with its Zipkin JSON exporter (from PyPI, in `.tools/venv`
//! created by install.sh), and the `opentelemetry-zipkin` crate.

use std::path::PathBuf;
use std::process::Command;

use kit::clock::Clock;
use serde_json::Value;
use trace_collector::Options;

use crate::helpers::*;

fn find<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:?}"))
}

/// A trace exported by OpenTelemetry's Python Zipkin exporter reads back through the API, parents and tags intact.
#[tokio::test]
async fn python_opentelemetry_zipkin_json_exporter() {
    let Some(python) =
        testkit::python_venv(&["opentelemetry.sdk", "opentelemetry.exporter.zipkin.json"])
    else {
        return;
    };
    let app = spawn_with_clock(Options::default(), Clock::System).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zipkin_export.py");
    let endpoint = app.url("/api/v2/spans");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(endpoint)
            .arg("Python-Order-Service")
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "exporter script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    let trace = app.get_json(&format!("/api/v2/trace/{trace_id}")).await;
    let spans = trace.as_array().unwrap();
    assert_eq!(spans.len(), 3, "{trace}");
    let root = find(spans, "get /api/order");
    let db = find(spans, "select orders");
    let send = find(spans, "order-placed send");
    assert_eq!(root["kind"], "SERVER");
    assert!(root.get("parentId").is_none());
    assert_eq!(root["localEndpoint"]["serviceName"], "python-order-service");
    assert_eq!(root["tags"]["http.method"], "GET");
    assert_eq!(root["tags"]["http.status_code"], "201");
    // The Python exporter writes an event as a JSON annotation value.
    assert_eq!(
        root["annotations"][0]["value"],
        r#"{"order.validated": {"items": 2}}"#
    );
    assert_eq!(db["kind"], "CLIENT");
    assert_eq!(db["parentId"], root["id"]);
    assert_eq!(db["tags"]["error"], "deadlock");
    assert_eq!(send["kind"], "PRODUCER");
    assert_eq!(send["parentId"], root["id"]);
    for s in spans {
        assert_eq!(s["traceId"], trace_id.as_str());
        assert!(
            s["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000,
            "microseconds"
        );
    }
    assert_eq!(
        app.get_json("/api/v2/services").await,
        serde_json::json!(["python-order-service"])
    );
    let found = app
        .get_json("/api/v2/traces?serviceName=python-order-service&annotationQuery=error")
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    // and the waterfall page opens
    assert_eq!(
        app.get_text(&format!("/zipkin/traces/{trace_id}")).await.0,
        200
    );
}

/// Spans exported by the `opentelemetry-zipkin` crate are stored; the all-zero parentId of its roots means "root".
#[tokio::test]
// opentelemetry-zipkin 0.33 marks its exporter deprecated in favour of OTLP; the platform's
// services still export Zipkin JSON with it, so this is the client to prove.
#[allow(deprecated)]
async fn rust_opentelemetry_zipkin_exporter() {
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};

    let app = spawn_with_clock(Options::default(), Clock::System).await;
    let endpoint = app.url("/api/v2/spans");
    // The exporter builds reqwest's blocking client, which must not be created
    // (or dropped) inside a tokio runtime: run it on a plain thread.
    let trace_id = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
                .with_collector_endpoint(endpoint)
                .build()
                .expect("zipkin exporter");
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_simple_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("rust-exporter-test")
                        .build(),
                )
                .build();
            let tracer = provider.tracer("trace-collector-test");
            let trace_id = tracer.in_span("GET /api/product", |cx| {
                let span = cx.span();
                span.set_attribute(opentelemetry::KeyValue::new("http.method", "GET"));
                tracer.in_span("find products", |cx| {
                    cx.span().add_event(
                        "cache miss",
                        vec![opentelemetry::KeyValue::new("key", "all")],
                    );
                });
                span.span_context().trace_id().to_string()
            });
            provider.shutdown().expect("flush spans");
            trace_id
        })
        .join()
        .expect("exporter thread")
    })
    .await
    .unwrap();

    let trace = app.get_json(&format!("/api/v2/trace/{trace_id}")).await;
    let spans = trace.as_array().unwrap();
    assert_eq!(spans.len(), 2, "{trace}");
    let root = find(spans, "get /api/product");
    let child = find(spans, "find products");
    assert!(
        root.get("parentId").is_none(),
        "the all-zero parentId is read as no parent"
    );
    assert_eq!(child["parentId"], root["id"]);
    assert_eq!(root["tags"]["http.method"], "GET");
    assert_eq!(child["annotations"][0]["value"], "cache miss");
    // opentelemetry-zipkin 0.33 sends no serviceName in localEndpoint (its Endpoint has no such
    // field), whatever the resource says; the collector stores the spans all the same.
    assert!(root["localEndpoint"].get("serviceName").is_none(), "{root}");
    let page = app.get_text(&format!("/zipkin/traces/{trace_id}")).await;
    assert_eq!(page.0, 200);
    assert!(page.1.contains("find products"));
}
