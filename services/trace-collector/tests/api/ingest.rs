//! `POST /api/v2/spans`: encodings (JSON, gzip, protobuf), malformed and
//! oversized bodies, and all-or-nothing storage.

use std::io::Write;

use serde_json::{Value, json};
use trace_collector::Options;
use trace_collector::decode::{ProtoEndpoint, ProtoListOfSpans, ProtoSpan};

use crate::helpers::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn post_raw(
    app: &TestApp,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v2/spans"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.unwrap()
}

/// A gzip-encoded JSON upload is accepted and reads back exactly.
#[tokio::test]
async fn gzip_json() {
    let app = spawn_app(Options::default()).await;
    let res = post_raw(
        &app,
        "application/json",
        Some("gzip"),
        gzip(zipkin_trace_upload().as_bytes()),
    )
    .await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        app.get_text(&format!("/api/v2/trace/{TRACE_ID}")).await.1,
        list(&zipkin_trace_spans())
    );
    // Counted after gunzip, as Zipkin counts.
    assert_eq!(
        app.metric("zipkin_collector_bytes_total").await,
        zipkin_trace_upload().len() as f64
    );
    assert_eq!(app.metric("zipkin_collector_spans_total").await, 4.0);
    assert_eq!(app.metric("zipkin_collector_messages_total").await, 1.0);
    assert_eq!(app.metric("trace_collector_traces_stored").await, 1.0);
    assert_eq!(app.metric("trace_collector_services_stored").await, 2.0);
    assert!(app.metric("trace_collector_span_bytes_estimated").await > 0.0);

    let res = post_raw(
        &app,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], "Cannot gunzip spans");
}

fn proto_trace() -> ProtoListOfSpans {
    let trace_id = (0..16).map(|i| 0x10 + i as u8).collect::<Vec<u8>>();
    ProtoListOfSpans {
        spans: vec![
            ProtoSpan {
                trace_id: trace_id.clone(),
                id: vec![0, 0, 0, 0, 0, 0, 0, 1],
                kind: 2,
                name: "GET /orders".into(),
                timestamp: us(0) as u64,
                duration: 2000,
                local_endpoint: Some(ProtoEndpoint {
                    service_name: "order-service".into(),
                    ipv4: vec![10, 0, 0, 7],
                    ipv6: vec![],
                    port: 8082,
                }),
                tags: [("http.method".to_string(), "GET".to_string())]
                    .into_iter()
                    .collect(),
                ..ProtoSpan::default()
            },
            ProtoSpan {
                trace_id,
                parent_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
                id: vec![0, 0, 0, 0, 0, 0, 0, 2],
                kind: 1,
                name: "select".into(),
                timestamp: us(1) as u64,
                duration: 500,
                local_endpoint: Some(ProtoEndpoint {
                    service_name: "order-service".into(),
                    ..ProtoEndpoint::default()
                }),
                remote_endpoint: Some(ProtoEndpoint {
                    service_name: "mysql".into(),
                    ..ProtoEndpoint::default()
                }),
                ..ProtoSpan::default()
            },
        ],
    }
}

/// A proto3 ListOfSpans (zipkin.proto) is accepted, plain and gzip-encoded, and reads back as JSON.
#[tokio::test]
async fn protobuf() {
    let app = spawn_app(Options::default()).await;
    let bytes = prost::Message::encode_to_vec(&proto_trace());
    let res = post_raw(&app, "application/x-protobuf", None, bytes.clone()).await;
    assert_eq!(res.status(), 202);
    let id = "101112131415161718191a1b1c1d1e1f";
    let v = app.get_json(&format!("/api/v2/trace/{id}")).await;
    assert_eq!(
        v,
        json!([
            {"traceId": id, "id": "0000000000000001", "kind": "SERVER", "name": "get /orders", "timestamp": us(0),
             "duration": 2000, "localEndpoint": {"serviceName": "order-service", "ipv4": "10.0.0.7", "port": 8082},
             "tags": {"http.method": "GET"}},
            {"traceId": id, "parentId": "0000000000000001", "id": "0000000000000002", "kind": "CLIENT", "name": "select",
             "timestamp": us(1), "duration": 500, "localEndpoint": {"serviceName": "order-service"},
             "remoteEndpoint": {"serviceName": "mysql"}}
        ])
    );
    let res = post_raw(&app, "application/x-protobuf", Some("gzip"), gzip(&bytes)).await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        app.metric("trace_collector_spans_duplicate_total").await,
        2.0
    );

    let res = post_raw(&app, "application/x-protobuf", None, b"hello".to_vec()).await;
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("reading List<Span> from proto3")
    );
}

/// Malformed bodies are 400 problem+json with a message saying what is wrong; nothing of them is stored.
#[tokio::test]
async fn malformed_bodies() {
    let app = spawn_app(Options::default()).await;
    let good = simple_span("aaaa", 1, 0, "good", "get", 0);
    let cases: Vec<(String, &str)> = vec![
        ("hello".into(), "Expected a JSON_V2 encoded list"),
        ("{}".into(), "Expected a JSON_V2 encoded list"),
        ("[{".into(), "Malformed reading List<Span> from json"),
        ("[null]".into(), "Malformed"),
        (
            r#"[{"traceId":"1","id":"2","binaryAnnotations":[]}]"#.into(),
            "Expected a JSON_V2 encoded list, but received: JSON_V1",
        ),
        (
            format!(r#"[{good},{{"traceId":"48485A3953BB6124","id":"1"}}]"#),
            "span 1: 48485A3953BB6124 should be lower-hex encoded with no prefix",
        ),
        (
            format!(r#"[{good},{{"traceId":"1"}}]"#),
            "span 1: Missing : id",
        ),
        (
            format!(r#"[{good},{{"traceId":"1","id":"1","kind":"server"}}]"#),
            "span 1: kind \"server\"",
        ),
        (
            format!(r#"[{good},{{"traceId":"1","id":"1","timestamp":1704067200000000000}}]"#),
            "epoch microseconds",
        ),
        (
            format!(r#"[{good},{{"traceId":"1","id":"1","timestamp":"soon"}}]"#),
            "expected an integer",
        ),
    ];
    for (body, msg) in &cases {
        let res = app.post_json(body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: Value = res.json().await.unwrap();
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(msg), "{body}: {detail}");
    }
    // Nothing half-stored: the good span of each refused message is not there.
    assert_eq!(app.get_json("/api/v2/services").await, json!([]));
    assert_eq!(app.get_text("/api/v2/trace/aaaa").await.0, 404);
    assert_eq!(
        app.metric("zipkin_collector_messages_dropped_total").await,
        cases.len() as f64
    );
    // Spans are counted as dropped when the list parsed but held an invalid span (4 messages of 2).
    assert_eq!(
        app.metric("zipkin_collector_spans_dropped_total").await,
        8.0
    );
    assert_eq!(app.metric("trace_collector_spans_stored").await, 0.0);

    // Empty bodies are fine, as in Zipkin.
    for body in ["", "[]", " [ ] "] {
        assert_eq!(app.post_json(body).await.status(), 202, "{body:?}");
    }
}

/// Uploads above MAX_UPLOAD_BYTES, and gzip bodies that inflate above it, are 413.
#[tokio::test]
async fn oversized_uploads() {
    let app = spawn_app(Options {
        max_upload_bytes: 4096,
        ..Options::default()
    })
    .await;
    let big: String = list(
        &(1..=60)
            .map(|i| simple_span("bbbb", i, 0, "svc", "op", 0))
            .collect::<Vec<_>>(),
    );
    assert!(big.len() > 4096);
    let res = app.post_json(big.clone()).await;
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let zipped = gzip(big.as_bytes());
    assert!(zipped.len() < 4096);
    let res = post_raw(&app, "application/json", Some("gzip"), zipped).await;
    assert_eq!(res.status(), 413);
    // The bigger default limit applies to uploads only; a 2 MiB upload fits by default.
    let app = spawn_app(Options::default()).await;
    let many: String = list(
        &(1..=8000)
            .map(|i| simple_span("cccc", i, 0, "svc", "op", 0))
            .collect::<Vec<_>>(),
    );
    assert!(
        many.len() > 1024 * 1024,
        "larger than the kit's default MAX_BODY_BYTES"
    );
    assert_eq!(app.post_json(many).await.status(), 202);
    assert_eq!(app.metric("trace_collector_spans_stored").await, 8000.0);
}

/// opentelemetry-zipkin writes an all-zero parentId on roots: read as no parent. Null fields are absent.
#[tokio::test]
async fn zero_parent_and_nulls() {
    let app = spawn_app(Options::default()).await;
    app.accept(format!(
        r#"[{{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","parentId":"0000000000000000","id":"00f067aa0ba902b7","kind":"SERVER","name":"GET /api/order","timestamp":{},"duration":12,"localEndpoint":{{}},"remoteEndpoint":null,"annotations":null,"tags":{{"otel.status_code":"OK"}},"debug":false,"shared":false}}]"#,
        us(0)
    ))
    .await;
    let v = app
        .get_json("/api/v2/trace/4bf92f3577b34da6a3ce929d0e0e4736")
        .await;
    assert_eq!(
        v,
        json!([{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "id": "00f067aa0ba902b7", "kind": "SERVER",
                "name": "get /api/order", "timestamp": us(0), "duration": 12, "tags": {"otel.status_code": "OK"}}])
    );
}
