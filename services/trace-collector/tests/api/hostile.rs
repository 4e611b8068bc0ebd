//! Hostile uploads: bodies under the byte limit that would cost gigabytes
//! if decoded naively are refused with 400/413 problem+json, and the
//! collector's peak memory stays far below its 128 MiB container limit.
//!
//! The collector runs in this test's process (nextest runs each test in its
//! own process), so `/proc/self/status` `VmHWM` is the collector's peak plus
//! the test's own copy of the body.

use testkit::benchmarks::status_bytes;
use testkit::hostile::empty_objects;
use trace_collector::Options;
use trace_collector::decode::{ProtoListOfSpans, ProtoSpan};

use crate::helpers::*;

const MIB: u64 = 1024 * 1024;

async fn post(app: &TestApp, content_type: &str, body: Vec<u8>) -> (u16, String, String) {
    let res = app
        .client
        .post(app.url("/api/v2/spans"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST reaches the collector");
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, res.text().await.unwrap_or_default())
}

fn peak_mib() -> f64 {
    let pid = std::process::id();
    status_bytes(pid, "VmHWM").expect("VmHWM of this process") as f64 / MIB as f64
}

/// The 9 MB list of three million `{}` that OOM-killed the collector is a
/// 400 problem+json naming the first bad span, and the process's peak
/// memory stays far below the container's 128 MiB.
#[tokio::test]
async fn three_million_empty_objects() {
    let app = spawn_app(Options::default()).await;
    let before = peak_mib();
    let body = empty_objects(3_000_000);
    assert!(body.len() > 8_900_000 && body.len() < 16 * MIB as usize);
    let (status, ct, text) = post(&app, "application/json", body).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(ct, "application/problem+json");
    assert!(text.contains("span 0: Missing : traceId"), "{text}");
    let after = peak_mib();
    println!(
        "trace-collector peak RSS (VmHWM) before the upload {before:.1} MiB, after {after:.1} MiB"
    );
    assert!(after < 96.0, "peak {after:.1} MiB");
    // Still serving.
    app.accept(zipkin_trace_upload()).await;
}

/// Valid spans one past MAX_UPLOAD_SPANS are a 413 problem+json; at the
/// limit they are stored. Nothing of the refused message is stored.
#[tokio::test]
async fn too_many_spans_is_413() {
    let mut options = Options::default();
    options.limits.max_spans = 1000;
    let app = spawn_app(options).await;
    let spans = |n: u64| {
        list(
            &(1..=n)
                .map(|i| simple_span("abcd", i, 0, "svc", "op", 0))
                .collect::<Vec<_>>(),
        )
    };
    let (status, ct, text) = post(&app, "application/json", spans(1001).into_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(ct, "application/problem+json");
    assert!(text.contains("more than 1000 spans"), "{text}");
    assert_eq!(app.get("/api/v2/trace/abcd").await.status(), 404);
    app.accept(spans(1000)).await;
    let trace = app.get_json("/api/v2/trace/abcd").await;
    assert_eq!(trace.as_array().map(Vec::len), Some(1000));
}

/// A span with too many tags is a 413 problem+json.
#[tokio::test]
async fn too_many_tags_is_413() {
    let app = spawn_app(Options::default()).await;
    let tags: Vec<String> = (0..129).map(|t| format!(r#""k{t}":"v""#)).collect();
    let body = format!(
        r#"[{{"traceId":"1","id":"1","tags":{{{}}}}}]"#,
        tags.join(",")
    );
    let (status, ct, text) = post(&app, "application/json", body.into_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(ct, "application/problem+json");
    assert!(text.contains("MAX_SPAN_TAGS"), "{text}");
}

/// Three million empty protobuf spans (6 MB) are counted, not decoded: 413.
#[tokio::test]
async fn three_million_empty_proto_spans() {
    let app = spawn_app(Options::default()).await;
    let body = [0x0a_u8, 0x00].repeat(3_000_000);
    let (status, ct, text) = post(&app, "application/x-protobuf", body).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(ct, "application/problem+json");
    let after = peak_mib();
    println!("trace-collector peak RSS (VmHWM) after 3M empty protobuf spans {after:.1} MiB");
    assert!(after < 96.0, "peak {after:.1} MiB");
    // A normal protobuf upload still works.
    let ok = prost::Message::encode_to_vec(&ProtoListOfSpans {
        spans: vec![ProtoSpan {
            trace_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
            id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            ..ProtoSpan::default()
        }],
    });
    let (status, _, text) = post(&app, "application/x-protobuf", ok).await;
    assert_eq!(status, 202, "{text}");
}
