//! Distributed tracing through the kit: propagation in, ids out, export to a Zipkin endpoint.
//!
//! One test function on purpose: it installs the process-wide subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::config::ServiceSpec;
use kit::{CommonArgs, Service};
use serde_json::Value;

const SPEC: ServiceSpec = ServiceSpec {
    name: "traced-service",
    default_port: 0,
    version: "1.0.0",
    registers: false,
};

/// A caller's traceparent is continued, X-Trace-Id names the trace, spans reach the collector named and
/// parented, outgoing calls carry the context, and a dead collector does not hurt requests.
#[test]
fn traces_are_propagated_and_exported() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let collector_rt = tokio::runtime::Runtime::new().unwrap();
    let collector_port = collector_rt.block_on(async {
        let received = received.clone();
        let app = Router::new().route(
            "/api/v2/spans",
            post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let spans: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    received.lock().unwrap().extend(spans);
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        port
    });

    let mut common = CommonArgs::for_tests(None);
    common.tracing.zipkin_endpoint = Some(
        format!("http://127.0.0.1:{collector_port}/api/v2/spans")
            .parse()
            .unwrap(),
    );
    common.tracing.trace_export_delay = Duration::from_millis(50);
    let guard = kit::telemetry::init(&SPEC, &common).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let service = Service::bind(&SPEC, common).await.unwrap();
        let base = format!("http://127.0.0.1:{}", service.port());
        let stop = service.shutdown_token();
        // /outgoing calls /echo-headers on itself, as a service calls a peer.
        let self_url = format!("{base}/echo-headers");
        let api = Router::new()
            .route(
                "/echo-headers",
                get(|headers: axum::http::HeaderMap| async move {
                    headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default()
                }),
            )
            .route(
                "/db",
                get(|| async {
                    let ok: Result<(), ()> = kit::telemetry::traced(
                        kit::telemetry::db_transaction_span(
                            "mysql",
                            "TRANSACTION place",
                            &["INSERT INTO t (a) VALUES (?)", "UPDATE u SET b = ? WHERE c = ?"],
                        ),
                        async { Ok(()) },
                    )
                    .await;
                    let failed: Result<(), ()> = kit::telemetry::traced(
                        kit::telemetry::db_span("mysql", "SELECT t", "SELECT a FROM t WHERE b = ?"),
                        async { Err(()) },
                    )
                    .await;
                    format!("{ok:?} {failed:?}")
                }),
            )
            .route(
                "/outgoing",
                get(move || {
                    let url = self_url.clone();
                    async move {
                        let mut headers = axum::http::HeaderMap::new();
                        kit::telemetry::inject_headers(&mut headers);
                        reqwest::Client::new()
                            .get(url)
                            .headers(headers)
                            .send()
                            .await
                            .unwrap()
                            .text()
                            .await
                            .unwrap()
                    }
                }),
            );
        let task = tokio::spawn(service.serve(api, Router::new()));
        let c = reqwest::Client::new();
        let get_with = async |path: &str, header: &str, value: String| {
            let url = format!("{base}{path}");
            c.get(url).header(header, value).send().await.unwrap()
        };

        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
        let res = get_with("/outgoing", "traceparent", traceparent.clone()).await;
        assert_eq!(res.headers()["x-trace-id"], trace);
        let forwarded = res.text().await.unwrap();
        assert!(
            forwarded.starts_with(&format!("00-{trace}-")),
            "outgoing traceparent: {forwarded}"
        );

        let b3 = format!("{trace}-00f067aa0ba902b7-1");
        let res = get_with("/echo-headers", "b3", b3).await;
        assert_eq!(
            res.headers()["x-trace-id"],
            trace,
            "B3 single header is honoured"
        );

        let res = get_with("/db", "traceparent", traceparent).await;
        assert_eq!(res.text().await.unwrap(), "Ok(()) Err(())");

        let res = c.get(format!("{base}/echo-headers")).send().await.unwrap();
        let fresh = res.headers()["x-trace-id"].to_str().unwrap().to_string();
        assert_eq!(
            fresh.len(),
            32,
            "a request without context starts a new trace"
        );
        assert_ne!(fresh, trace);
        let probe = c.get(format!("{base}/health/live")).send().await.unwrap();
        assert!(
            probe.headers().get("x-trace-id").is_none(),
            "probes are not traced"
        );

        guard.flush();
        let spans = received.lock().unwrap().clone();
        let ours: Vec<&Value> = spans.iter().filter(|s| s["traceId"] == trace).collect();
        assert!(
            ours.len() >= 6,
            "server spans of /outgoing, /echo-headers (x2) and /db, and /db's two database spans: {spans:#?}"
        );
        for s in &ours {
            assert_eq!(s["localEndpoint"]["serviceName"], "traced-service");
            let server = s["name"].as_str().unwrap().starts_with("GET ");
            assert_eq!(s["kind"], if server { "SERVER" } else { "CLIENT" }, "{s}");
        }
        // Database spans: CLIENT spans towards "mysql", children of the request's
        // server span, statements without values, a failed call marked as an error.
        let db_server = ours
            .iter()
            .find(|s| s["name"].as_str().unwrap().contains("/db"))
            .unwrap();
        let tx = ours
            .iter()
            .find(|s| s["name"] == "TRANSACTION place")
            .unwrap_or_else(|| panic!("transaction span: {ours:#?}"));
        assert_eq!(tx["kind"], "CLIENT");
        assert_eq!(tx["parentId"], db_server["id"]);
        assert_eq!(tx["remoteEndpoint"]["serviceName"], "mysql");
        assert_eq!(tx["tags"]["db.system"], "mysql");
        assert_eq!(
            tx["tags"]["db.statement"],
            "INSERT INTO t (a) VALUES (?);\nUPDATE u SET b = ? WHERE c = ?"
        );
        assert!(tx["tags"].get("error").is_none(), "{tx}");
        let failed = ours.iter().find(|s| s["name"] == "SELECT t").unwrap();
        assert_eq!(failed["parentId"], db_server["id"]);
        assert_eq!(failed["tags"]["otel.status_code"], "ERROR", "{failed}");
        assert!(failed["tags"].get("error").is_some(), "{failed}");
        assert!(
            spans
                .iter()
                .all(|s| !s["name"].as_str().unwrap_or("").contains("/health")),
            "health probes never reach the collector: {spans:#?}"
        );
        assert!(
            spans.iter().any(|s| s["traceId"] == fresh.as_str()),
            "the fresh trace is exported"
        );
        let outgoing = ours
            .iter()
            .find(|s| s["name"].as_str().unwrap().contains("/outgoing"))
            .unwrap();
        assert_eq!(outgoing["parentId"], "00f067aa0ba902b7");
        let text = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("tracing_spans_exported_total"), "{text}");

        // A dead collector: requests still succeed, failures are counted.
        collector_rt.shutdown_background();
        for _ in 0..5 {
            assert_eq!(
                c.get(format!("{base}/echo-headers"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
        }
        guard.flush();
        let text = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failures = text
            .lines()
            .find(|l| l.starts_with("tracing_span_export_failures_total"))
            .unwrap();
        assert_ne!(
            failures.split_whitespace().last().unwrap(),
            "0",
            "{failures}"
        );

        stop.cancel();
        task.await.unwrap().unwrap();
    });
}
