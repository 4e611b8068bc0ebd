//! Starting the real collector in-process on port 0, and Zipkin's own test
//! fixtures (`zipkin2.TestObjects`) written as Zipkin's JSON encoder writes them.

use std::time::Duration;

use kit::clock::Clock;
use tokio_util::sync::CancellationToken;
use trace_collector::{Options, SPEC};

/// Zipkin's `TestObjects.TODAY`: midnight UTC, here fixed at 2024-01-01.
pub const TODAY_MS: i64 = 1_704_067_200_000;
/// "Now" for tests with a manual clock: one hour after TODAY.
pub const NOW_MS: i64 = TODAY_MS + 3_600_000;

/// The trace id of Zipkin's `TestObjects.TRACE`.
pub const TRACE_ID: &str = "7180c278b62e8f6a216a2aea45d08fc9";

/// A running collector; dropping it stops the service.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Clock,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET reaches the collector")
    }

    /// GET and return (status, body text).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// GET a JSON answer, asserting 200.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get_text(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// POSTs a JSON v2 body and returns the status.
    pub async fn post_json(&self, body: impl Into<String>) -> reqwest::Response {
        self.client
            .post(self.url("/api/v2/spans"))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .expect("POST reaches the collector")
    }

    /// POSTs and asserts 202.
    pub async fn accept(&self, body: impl Into<String>) {
        let res = self.post_json(body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 202, "upload refused: {text}");
    }

    /// The value of one Prometheus sample line from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get_text("/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }
}

/// Starts the collector with a manual clock at [`NOW_MS`].
pub async fn spawn_app(options: Options) -> TestApp {
    spawn_with_clock(options, Clock::manual(NOW_MS as u64)).await
}

/// Starts the collector with the given clock.
pub async fn spawn_with_clock(options: Options, clock: Clock) -> TestApp {
    kit::telemetry::init_for_tests();
    let service = kit::Service::bind(&SPEC, kit::CommonArgs::for_tests(None))
        .await
        .expect("bind port 0");
    let base = format!("http://127.0.0.1:{}", service.port());
    let shutdown = service.shutdown_token();
    tokio::spawn(trace_collector::run_with_clock(
        options,
        service,
        clock.clone(),
    ));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let app = TestApp {
        base,
        client,
        clock,
        shutdown,
    };
    for _ in 0..100 {
        if let Ok(r) = app.client.get(app.url("/health/ready")).send().await
            && r.status().is_success()
        {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("collector did not become ready");
}

/// Epoch microseconds of TODAY + `ms`.
pub fn us(ms: i64) -> i64 {
    (TODAY_MS + ms) * 1000
}

/// The spans of Zipkin's `TestObjects.newTrace(TRACE_ID, "")`, each as
/// Zipkin's JSON v2 encoder writes it, in the order Zipkin's `Trace.merge`
/// returns them (span id, client before shared server).
pub fn zipkin_trace_spans() -> Vec<String> {
    zipkin_trace_spans_with(TRACE_ID, "")
}

/// [`zipkin_trace_spans`] with another trace id and a service-name suffix
/// (Zipkin's `newTrace(traceId, suffix)`).
pub fn zipkin_trace_spans_with(trace_id: &str, suffix: &str) -> Vec<String> {
    let sfx = |s: &str| {
        if suffix.is_empty() {
            s.to_string()
        } else {
            format!("{s}_{suffix}")
        }
    };
    let frontend = format!(
        r#"{{"serviceName":"{}","ipv4":"127.0.0.1"}}"#,
        sfx("frontend")
    );
    let backend = format!(
        r#"{{"serviceName":"{}","ipv4":"192.168.99.101","port":9000}}"#,
        sfx("backend")
    );
    let db = format!(
        r#"{{"serviceName":"{}","ipv6":"2001:db8::c001","port":3036}}"#,
        sfx("db")
    );
    vec![
        format!(
            r#"{{"traceId":"{trace_id}","id":"0000000000000001","kind":"SERVER","name":"get","timestamp":{},"duration":350000,"localEndpoint":{frontend}}}"#,
            us(0)
        ),
        format!(
            r#"{{"traceId":"{trace_id}","parentId":"0000000000000001","id":"0000000000000002","kind":"CLIENT","name":"get","timestamp":{},"duration":200000,"localEndpoint":{frontend},"remoteEndpoint":{backend},"annotations":[{{"timestamp":{},"value":"foo"}}],"tags":{{"clnt/finagle.version":"6.45.0","http.path":"/api"}}}}"#,
            us(50),
            us(100)
        ),
        format!(
            r#"{{"traceId":"{trace_id}","parentId":"0000000000000001","id":"0000000000000002","kind":"SERVER","name":"get","timestamp":{},"duration":150000,"localEndpoint":{backend},"shared":true}}"#,
            us(100)
        ),
        format!(
            r#"{{"traceId":"{trace_id}","parentId":"0000000000000002","id":"0000000000000003","kind":"CLIENT","name":"query","timestamp":{},"duration":50000,"localEndpoint":{backend},"remoteEndpoint":{db},"annotations":[{{"timestamp":{},"value":"⻩"}}],"tags":{{"error":"💩"}}}}"#,
            us(150),
            us(190)
        ),
    ]
}

/// A JSON list of the given span JSON objects.
pub fn list(spans: &[String]) -> String {
    format!("[{}]", spans.join(","))
}

/// Zipkin's TRACE, uploaded in a scrambled order.
pub fn zipkin_trace_upload() -> String {
    let s = zipkin_trace_spans();
    list(&[s[3].clone(), s[0].clone(), s[2].clone(), s[1].clone()])
}

/// A small span with a service, name and timestamp (ms after TODAY).
pub fn simple_span(
    trace_id: &str,
    id: u64,
    parent: u64,
    service: &str,
    name: &str,
    at_ms: i64,
) -> String {
    let parent = if parent == 0 {
        String::new()
    } else {
        format!(r#""parentId":"{parent:016x}","#)
    };
    format!(
        r#"{{"traceId":"{trace_id}",{parent}"id":"{id:016x}","name":"{name}","timestamp":{},"duration":1000,"localEndpoint":{{"serviceName":"{service}"}}}}"#,
        us(at_ms)
    )
}
