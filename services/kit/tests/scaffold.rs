//! The HTTP scaffold of a kit-based service, started for real on port 0.

#[path = "scaffold/faults.rs"]
mod faults;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::config::ServiceSpec;
use kit::http::Json;
use kit::{CommonArgs, Problem, Service};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SPEC: ServiceSpec = ServiceSpec {
    name: "scaffold-test",
    default_port: 0,
    version: "9.9.9",
    registers: false,
};

pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) stop: CancellationToken,
    pub(crate) task: JoinHandle<Result<(), kit::service::ServiceError>>,
    /// Notified each time a request enters `/slow` or `/stuck`: a test starts shutting down once
    /// its request is in flight, not after a guessed sleep.
    pub(crate) entered: Arc<Notify>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    sku: String,
    quantity: u32,
}

impl Running {
    /// Stops the service and checks that it stopped cleanly.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn start(common: CommonArgs) -> Running {
    start_with(common, |_| {}).await
}

/// [`start`] with a chance to adjust the service before it serves.
pub(crate) async fn start_with(common: CommonArgs, adjust: impl FnOnce(&mut Service)) -> Running {
    kit::telemetry::init_for_tests();
    let mut service = Service::bind(&SPEC, common).await.unwrap();
    adjust(&mut service);
    let base = format!("http://127.0.0.1:{}", service.port());
    let stop = service.shutdown_token();
    let entered = Arc::new(Notify::new());
    let api = Router::new()
        .route(
            "/slow",
            get({
                let entered = entered.clone();
                || async move {
                    entered.notify_one();
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "done"
                }
            }),
        )
        .route(
            // Never answers by itself: only the drain timeout ends it.
            "/stuck",
            get({
                let entered = entered.clone();
                || async move {
                    entered.notify_one();
                    std::future::pending::<()>().await;
                    "unreachable"
                }
            }),
        )
        .route(
            "/panic",
            get(|| async {
                #[allow(clippy::panic)]
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .route(
            "/orders",
            post(|Json(o): Json<Order>| async move { Json(o) }),
        )
        .route("/fail", get(|| async { Problem::internal() }))
        .route("/hello", get(|| async { "hi" }));
    let admin = Router::new().route("/secret", get(|| async { "admin ok" }));
    let task = tokio::spawn(service.serve(api, admin));
    Running {
        base,
        stop,
        task,
        entered,
    }
}

pub(crate) async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

/// Standard endpoints answer; errors of every kind are problem+json; admin needs the token.
#[tokio::test]
async fn standard_endpoints_and_problems() {
    let r = start(CommonArgs::for_tests(None)).await;
    let c = reqwest::Client::new();
    let live: Value = c
        .get(format!("{}/health/live", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["status"], "UP");
    let ready = c
        .get(format!("{}/health/ready", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let info: Value = c
        .get(format!("{}/info", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["service"], "scaffold-test");
    assert_eq!(info["version"], "9.9.9");
    assert!(
        info["instanceId"]
            .as_str()
            .unwrap()
            .contains("scaffold-test")
    );

    let p = problem(c.get(format!("{}/nope", r.base)).send().await.unwrap(), 404).await;
    assert_eq!(p["instance"], "/nope");
    problem(
        c.delete(format!("{}/slow", r.base)).send().await.unwrap(),
        405,
    )
    .await;
    let p = problem(
        c.get(format!("{}/panic", r.base)).send().await.unwrap(),
        500,
    )
    .await;
    assert!(
        !p["detail"].as_str().unwrap().contains("boom"),
        "panic message must not leak"
    );
    problem(c.get(format!("{}/fail", r.base)).send().await.unwrap(), 500).await;

    // bad bodies
    let url = format!("{}/orders", r.base);
    problem(
        c.post(&url)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let p = problem(
        c.post(&url)
            .json(&serde_json::json!({"sku": "a", "quantity": -1}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("quantity"), "{p}");
    problem(c.post(&url).body("sku=a").send().await.unwrap(), 415).await;
    let huge = format!(
        "{{\"sku\":\"{}\",\"quantity\":1}}",
        "x".repeat(2 * 1024 * 1024)
    );
    problem(
        c.post(&url)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    let ok: Value = c
        .post(&url)
        .json(&serde_json::json!({"sku": "a", "quantity": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["quantity"], 2);

    // admin
    problem(
        c.get(format!("{}/admin/secret", r.base))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    problem(
        c.get(format!("{}/admin/secret", r.base))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let ok = c
        .get(format!("{}/admin/secret", r.base))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // metrics by route template, with the request id echoed
    let res = c
        .get(format!("{}/health/live", r.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = c.get(format!("{}/metrics", r.base)).send().await.unwrap();
    // Served as what it is: OpenMetrics text, which a strict OpenMetrics parser (what Prometheus
    // uses for this content type) accepts whole.
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        res.headers()["content-type"],
        kit::metrics::OPENMETRICS_TEXT
    );
    let text = res.text().await.unwrap();
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not OpenMetrics text: {e:?}\n{text}"));
    for family in ["http_requests", "process_resident_memory_bytes"] {
        assert!(
            exposition.families.contains_key(family),
            "{family}: {:?}",
            exposition.families.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="/orders",status="422"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(text.contains("process_resident_memory_bytes"));

    r.stop().await;
}

/// At shutdown readiness turns DOWN, an in-flight request still completes, and new connections are refused.
#[tokio::test]
async fn graceful_shutdown_drains_in_flight() {
    let r = start(CommonArgs::for_tests(None)).await;
    let c = reqwest::Client::new();
    let slow = tokio::spawn({
        let url = format!("{}/slow", r.base);
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    });
    r.entered.notified().await;
    r.stop.cancel();
    assert_eq!(slow.await.unwrap(), "done");
    r.task.await.unwrap().unwrap();
    assert!(
        reqwest::Client::new()
            .get(format!("{}/health/live", r.base))
            .send()
            .await
            .is_err()
    );
}

/// A request that does not drain within the shutdown timeout is answered 503, and the service
/// stops although the handler never finishes.
#[tokio::test]
async fn drain_is_bounded() {
    let mut common = CommonArgs::for_tests(None);
    common.shutdown_timeout = Duration::from_millis(200);
    let r = start(common).await;
    let stuck = tokio::spawn(reqwest::get(format!("{}/stuck", r.base)));
    r.entered.notified().await;
    r.stop.cancel();
    // The handler never returns: the service stopping at all proves the drain is bounded. The
    // outer timeout only turns a hang into a failure.
    tokio::time::timeout(Duration::from_secs(30), r.task)
        .await
        .expect("the service stops although a request never finishes")
        .unwrap()
        .unwrap();
    let res = stuck.await.unwrap().unwrap();
    assert_eq!(res.status(), 503);
}
