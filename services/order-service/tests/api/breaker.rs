//! The circuit breaker around inventory, observed through the API, `/admin/breakers` and `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use kit::CommonArgs;
use kit::config::ServiceSpec;
use serde_json::{Value, json};

use crate::{Running, Stack, line};

const FALLBACK: &str = "Service is temporarily unavailable";

/// A stand-in registered as inventory-service that answers reservations after `delay`.
async fn slow_inventory(registry: &str, delay: Duration) -> Running {
    const FAKE: ServiceSpec = ServiceSpec {
        name: "inventory-service",
        default_port: 0,
        version: "0.0.0-slow-stand-in",
        registers: true,
    };
    let api = Router::new()
        .route(
            "/api/inventory/reservations",
            post(move |axum::Json(v): axum::Json<Value>| async move {
                tokio::time::sleep(delay).await;
                (
                    StatusCode::CREATED,
                    axum::Json(
                        json!({"orderNumber": v["orderNumber"], "status": "RESERVED", "lines": []}),
                    ),
                )
            }),
        )
        .route(
            "/api/inventory/reservations/{n}",
            delete(|| async { StatusCode::OK }),
        );
    Running::start(
        &FAKE,
        CommonArgs::for_tests(Some(registry)),
        |s| async move { s.serve(api, Router::new()).await.map_err(Into::into) },
    )
    .await
    .unwrap()
}

async fn wait_for_state(stack: &Stack, state: &str, within: Duration) -> Value {
    testkit::eventually(&format!("breaker {state}"), within, || async {
        let b = stack.breaker().await;
        if b["state"] == state {
            Ok(Some(b))
        } else {
            Err(format!("state {}", b["state"]))
        }
    })
    .await
}

async fn fallback(stack: &Stack) {
    let res = stack
        .http
        .post(stack.order_url("/api/order"))
        .json(&json!({"lines": [line("phone", "1", 1)]}))
        .send()
        .await
        .unwrap();
    let p = crate::problem(res, 503).await;
    assert_eq!(p["detail"], FALLBACK);
}

/// Inventory down: 503 fallback; OPEN after the threshold; HALF_OPEN after the wait; CLOSED after successful trials.
#[tokio::test]
async fn open_half_open_closed() {
    let mut stack = Stack::start_with(|c| {
        c.breaker.breaker_sliding_window_size = 4;
        c.breaker.breaker_minimum_number_of_calls = 4;
        c.breaker.breaker_wait_duration_in_open_state = Duration::from_millis(800);
        c.breaker
            .breaker_permitted_number_of_calls_in_half_open_state = 2;
        c.inventory_timeout = Duration::from_secs(1);
    })
    .await;
    stack.set_stock("phone", 10).await;
    let (s, _, _) = stack.order(json!([line("phone", "1", 1)]), None).await;
    assert_eq!(s, 201);

    stack.stop_inventory().await;
    stack.wait_for_inventory_instances(0).await;
    for _ in 0..4 {
        fallback(&stack).await;
    }
    let b = stack.breaker().await;
    assert_eq!(b["state"], "OPEN", "{b}");
    // Window [success, failure, failure, failure]: 75% >= 50% opened it at the
    // third failure, so the fourth call was already refused.
    assert_eq!(b["metrics"]["failureRate"], 75.0, "{b}");
    assert_eq!(b["totals"]["notPermitted"], 1, "{b}");

    // Open: refused without calling anything: one more refusal, no further call recorded.
    fallback(&stack).await;
    let after = stack.breaker().await;
    assert_eq!(after["state"], "OPEN", "{after}");
    assert_eq!(after["totals"]["notPermitted"], 2, "{after}");
    for outcome in ["successful", "failed", "slowSuccessful", "slowFailed"] {
        assert_eq!(
            after["totals"][outcome], b["totals"][outcome],
            "{outcome}: {b}\n{after}"
        );
    }

    stack.start_inventory().await;
    stack.wait_for_inventory_instances(1).await;
    wait_for_state(&stack, "HALF_OPEN", Duration::from_secs(5)).await;
    for _ in 0..2 {
        let (s, _, b) = stack.order(json!([line("phone", "1", 1)]), None).await;
        assert_eq!(s, 201, "{b}");
    }
    let b = stack.breaker().await;
    assert_eq!(b["state"], "CLOSED", "{b}");
    let path: Vec<(String, String)> = b["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["at"].as_str().unwrap().ends_with('Z'));
            (
                t["from"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        path,
        [
            ("CLOSED", "OPEN"),
            ("OPEN", "HALF_OPEN"),
            ("HALF_OPEN", "CLOSED")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(b["config"]["slidingWindowSize"], 4);
    assert_eq!(b["config"]["waitDurationInOpenStateMs"], 800);

    let metrics = stack.metrics().await;
    for needle in [
        r#"resilience4j_circuitbreaker_transitions_total{name="inventory-service",from="CLOSED",to="OPEN"} 1"#,
        r#"resilience4j_circuitbreaker_state{name="inventory-service",state="closed"} 1"#,
        r#"resilience4j_circuitbreaker_calls_total{name="inventory-service",kind="not_permitted"}"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle}");
    }
    // Stock: 1 + 2 orders placed; the refused ones took nothing.
    assert_eq!(stack.stock("phone").await, 7);
}

/// Slow answers are counted as slow calls and open the breaker at the slow-call rate threshold.
#[tokio::test]
async fn slow_calls_open_the_breaker() {
    let mut stack = Stack::dependencies().await;
    let fake = slow_inventory(&stack.registry_url(), Duration::from_millis(200)).await;
    let mut config = stack.order_config();
    config.breaker.breaker_sliding_window_size = 4;
    config.breaker.breaker_minimum_number_of_calls = 4;
    config.breaker.breaker_slow_call_duration_threshold = Duration::from_millis(100);
    config.breaker.breaker_slow_call_rate_threshold = 50.0;
    config.breaker.breaker_wait_duration_in_open_state = Duration::from_secs(60);
    stack.start_order(config).await;
    stack.wait_for_inventory_instances(1).await;
    for _ in 0..4 {
        let (s, _, b) = stack.order(json!([line("phone", "1", 1)]), None).await;
        assert_eq!(s, 201, "slow but successful: {b}");
    }
    let b = stack.breaker().await;
    assert_eq!(b["state"], "OPEN", "{b}");
    assert_eq!(b["totals"]["slowSuccessful"], 4);
    assert!(
        b["transitions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("slow-call rate"),
        "{b}"
    );
    fallback(&stack).await;
    fake.stop().await.unwrap();
}

/// An inventory that does not answer: the timeout ends the call with the 503 fallback (the
/// inventory never answers, so the fallback arriving at all is the timeout's doing), recorded as
/// a failure.
#[tokio::test]
async fn timeout_is_a_failure_and_a_fallback() {
    let mut stack = Stack::dependencies().await;
    let fake = slow_inventory(&stack.registry_url(), Duration::from_secs(3600)).await;
    let mut config = stack.order_config();
    config.inventory_timeout = Duration::from_millis(300);
    stack.start_order(config).await;
    stack.wait_for_inventory_instances(1).await;
    fallback(&stack).await;
    let b = stack.breaker().await;
    assert_eq!(b["metrics"]["numberOfFailedCalls"], 1, "{b}");
    assert_eq!(stack.count("orders").await, 0);
    fake.stop().await.unwrap();
}
