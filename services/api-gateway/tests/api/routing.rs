//! Routing through the registry, balance, errors, admin endpoints, metrics.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn instance_of(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 200);
    res.headers()["x-instance"].to_str().unwrap().to_string()
}

/// Requests reach the instances the registry lists, spread evenly: round
/// robin exactly, power-of-two-choices within a tolerance; the gateway
/// registers itself like every service.
#[tokio::test]
async fn balances_across_three_registered_instances() {
    let registry = Registry::start().await;
    let mut ups = Vec::new();
    for k in 0..3 {
        let u = registry
            .echo("product-service", &format!("product-{k}"))
            .await;
        ups.push(u);
    }
    let routes = r#"
[[routes]]
id = "rr"
uri = "lb://product-service"
predicates = ["Path=/rr/**"]
filters = ["StripPrefix=1"]
strategy = "round_robin"
public = true

[[routes]]
id = "p2c"
uri = "lb://product-service"
predicates = ["Path=/p2c/**"]
filters = ["StripPrefix=1"]
strategy = "power_of_two_choices"
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    gw.wait_for_instances("product-service", 3).await;
    let c = client();

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let who = instance_of(c.get(gw.url("/rr/hello")).send().await.unwrap()).await;
        *counts.entry(who).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 100),
        "round robin: {counts:?}"
    );

    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        let url = gw.url("/p2c/slow/2");
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(instance_of(c.get(&url).send().await.unwrap()).await);
            }
            seen
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for who in t.await.unwrap() {
            *counts.entry(who).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.values().all(|n| (60..=140).contains(n)),
        "power of two choices, 300 requests: {counts:?}"
    );

    // The gateway itself is in the registry, under its own name.
    let mut registered = false;
    for _ in 0..100 {
        if let Ok(app) = registry.http.application("API-GATEWAY").await {
            registered = !app.instance.is_empty();
        }
        if registered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the gateway registered itself");
}

/// A service with no UP instance is a 503 problem; an unknown path a 404 problem.
#[tokio::test]
async fn no_instance_and_no_route() {
    let registry = Registry::start().await;
    let routes = r#"
[[routes]]
id = "ghost"
uri = "lb://ghost-service"
predicates = ["Path=/ghost/**"]
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    let c = client();
    let res = c.get(gw.url("/ghost/x")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://platform.local/problems/no-instance");
    assert_eq!(p["service"], "ghost-service");

    let res = c.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // The kit's own endpoints are not routed.
    let res = c.get(gw.url("/health/live")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A dead instance costs a retry, not an error, for idempotent requests; a
/// POST to it is a 502 problem; a slow instance is a 504 problem.
#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let registry = Registry::start().await;
    let live = Upstream::echo("live").await;
    // A port where nothing listens: take one and let it go.
    let dead_port = testkit::free_port().unwrap();
    registry.register("svc", "live", live.port).await;
    let gw = Gateway::start(&svc_route(r#"timeout = "300ms""#), &registry).await;
    gw.wait_for_instances("svc", 1).await;
    let c = client();

    let res = c.get(gw.url("/svc/slow/2000")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://platform.local/problems/gateway-timeout");

    registry.register("svc", "dead", dead_port).await;
    gw.wait_for_instances("svc", 2).await;
    for _ in 0..10 {
        let res = c.get(gw.url("/svc/hello")).send().await.unwrap();
        assert_eq!(res.status(), 200, "GETs are retried on the live instance");
    }
    let dead = gw
        .gateway
        .balancer("svc")
        .unwrap()
        .status()
        .into_iter()
        .find(|s| s.instance_id == "dead")
        .unwrap();
    assert!(dead.ejected && dead.ejections >= 1, "{dead:?}");

    // Only the dead instance is left: POST is not retried, and the answer is 502.
    registry.deregister("svc", "live").await;
    gw.wait_for_instances("svc", 1).await;
    let res = c
        .post(gw.url("/svc/upload"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://platform.local/problems/bad-gateway");
    assert_eq!(p["service"], "svc");
}

/// A configured retry status sends an idempotent request to another
/// instance; a POST gets the failing answer as it is.
#[tokio::test]
async fn retryable_status_goes_to_another_instance() {
    let registry = Registry::start().await;
    let good = Upstream::echo("good").await;
    let failing = Upstream::serve(
        axum::Router::new().fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
    )
    .await;
    registry.register("svc", "a-failing", failing.port).await;
    registry.register("svc", "b-good", good.port).await;
    let routes = svc_route(
        r#"retry = { retries = 1, statuses = [503], methods = ["GET", "PUT"], backoff = { first = "1ms", max = "1ms" } }"#,
    );
    let gw = Gateway::start_with(GatewaySetup {
        routes: &routes,
        registry: &registry,
        validator: None,
        // Keep the failing instance in rotation: this test is about retries.
        adjust: Some(Box::new(|c| c.eject_after_5xx = 1000)),
    })
    .await;
    gw.wait_for_instances("svc", 2).await;
    let c = client();
    for _ in 0..6 {
        let res = c.get(gw.url("/svc/hello")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-instance"], "good");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            c.post(gw.url("/svc/upload"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503, 503], "POSTs are never retried");
    let metrics = gw.metrics.render();
    assert!(
        metrics.contains(r#"gateway_route_retries_total{route="svc"} 3"#),
        "three of six GETs met the failing instance first:\n{metrics}"
    );
    // A PUT's small body is kept so the retry can send it again, whole.
    for _ in 0..2 {
        let res = c
            .put(gw.url("/svc/upload"))
            .body(
                (0..1000u64)
                    .map(echo_upstream::pattern_byte)
                    .collect::<Vec<u8>>(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let u: echo_upstream::Uploaded = res.json().await.unwrap();
        assert_eq!((u.bytes, u.pattern_ok), (1000, true));
    }
}

/// `/admin/routes` and `/admin/upstreams` need the admin credential and show
/// routes (Spring Cloud Gateway's shape) and per-instance counters; metrics
/// are per route and per instance, and need the admin credential too, as
/// does `/info`.
#[tokio::test]
async fn admin_views_and_metrics() {
    let registry = Registry::start().await;
    let _up = registry.echo("inventory-service", "inv-0").await;
    let routes = r#"
[[routes]]
id = "inventory"
uri = "lb://inventory-service"
order = 5
predicates = ["Path=/api/inventory/**", "Method=GET"]
filters = ["AddResponseHeader=X-Route, inventory"]
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    gw.wait_for_instances("inventory-service", 1).await;
    let c = client();
    for _ in 0..3 {
        let res = c.get(gw.url("/api/inventory/sku-1")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-route"], "inventory");
    }

    let res = c.get(gw.url("/admin/routes")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let routes: Value = get_json(&c, &gw.url("/admin/routes"), Some(ADMIN_TOKEN)).await;
    let r = &routes[0];
    assert_eq!(r["route_id"], "inventory");
    assert_eq!(r["uri"], "lb://inventory-service");
    assert_eq!(r["order"], 5);
    assert_eq!(
        r["predicates"],
        serde_json::json!(["Path=/api/inventory/**", "Method=GET"])
    );
    assert_eq!(
        r["filters"],
        serde_json::json!(["AddResponseHeader=x-route, inventory"])
    );
    assert_eq!(r["public"], true);
    assert_eq!(r["retry"]["retries"], 2);

    let ups: Value = get_json(&c, &gw.url("/admin/upstreams"), Some(ADMIN_TOKEN)).await;
    let inv = &ups["inventory-service"];
    assert_eq!(inv["routes"], serde_json::json!(["inventory"]));
    let i = &inv["instances"][0];
    assert_eq!(i["instanceId"], "inv-0");
    assert_eq!(i["requests"], 3);
    assert_eq!(i["inFlight"], 0);
    assert_eq!(i["ejected"], false);

    // The gateway's port is the published one: /metrics and /info need the admin credential.
    for path in ["/metrics", "/info"] {
        let res = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(
            status(&c, &gw.url(path), Some(ADMIN_TOKEN)).await,
            200,
            "{path}"
        );
    }
    assert_eq!(
        c.get(gw.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "probes stay open"
    );
    let text = testkit::body_text(c.get(gw.url("/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    for needle in [
        r#"gateway_route_requests_total{route="inventory",status="2xx"} 3"#,
        r#"gateway_route_duration_seconds_count{route="inventory"} 3"#,
        r#"gateway_upstream_duration_seconds_count{service="inventory-service"} 3"#,
        r#"gateway_upstream_instance_requests_total{service="inventory-service",instance="inv-0"} 3"#,
        r#"gateway_upstream_instance_ejections_total{service="inventory-service",instance="inv-0"} 0"#,
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
}
