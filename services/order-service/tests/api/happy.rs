//! The happy path: stock, order, event on Kafka, all found through the registry.

use std::collections::HashSet;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::{Stack, events_for, line};

/// An order reserves stock through the registry, is stored, and its event reaches Kafka with the agreed schema and headers.
#[tokio::test]
async fn order_to_kafka_through_the_registry() {
    let stack = Stack::start().await;
    stack.set_stock("iphone_15", 10).await;
    stack.set_stock("case", 5).await;

    let (status, headers, body) = stack
        .order(
            serde_json::json!([line("iphone_15", "999.99", 2), line("case", "10", 1)]),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let number = body["orderNumber"].as_str().unwrap().to_string();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/api/order/{number}")
    );
    assert_eq!(body["status"], "PLACED");
    assert_eq!(body["total"], "2009.98");
    assert_eq!(body["lines"][1]["price"], "10.00");
    assert_eq!(body["customer"]["id"], "anonymous");
    assert_eq!(stack.stock("iphone_15").await, 8);
    assert_eq!(stack.stock("case").await, 4);

    // Read back, one and paged.
    let one = stack.get_json(&format!("/api/order/{number}")).await;
    assert_eq!(one, body);
    let page = stack.get_json("/api/order?page=0&size=10").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["orderNumber"], number.as_str());

    // The event.
    let expected = HashSet::from([number.clone()]);
    let got = events_for(
        &stack.kafka.bootstrap_servers(),
        &expected,
        Duration::from_secs(30),
    )
    .await;
    let msg = got
        .iter()
        .find(|m| m.key == number)
        .expect("the order's event is on Kafka");
    assert_eq!(msg.headers["event-type"], "OrderPlacedEvent");
    assert_eq!(msg.headers["schema-version"], "1");
    assert_eq!(msg.headers["content-type"], "application/json");
    let event = events::decode(&msg.payload).expect("a valid event");
    assert_eq!(event.order_number, number);
    assert_eq!(event.total, Decimal::new(200998, 2));
    assert_eq!(event.lines.len(), 2);
    assert_eq!(event.customer.id, "anonymous");
    let raw: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(raw["total"], "2009.98", "prices travel as exact strings");

    // The outbox is drained and the relay's figures are exported.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = testkit::body_text(stack.http.get(stack.order_url("/metrics"))).await;
        if metrics.contains("outbox_pending 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("outbox_pending 0"), "{metrics}");
    assert!(metrics.contains("outbox_published_total 1"), "{metrics}");
    assert!(
        metrics.contains("outbox_relay_lag_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"resilience4j_circuitbreaker_state{name="inventory-service",state="closed"} 1"#
        ),
        "{metrics}"
    );
    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
        .fetch_one(&stack.orders_db)
        .await
        .unwrap();
    assert_eq!(sent, 1);
}

/// Out of stock is a 409 problem naming the SKU; no order, no event row.
#[tokio::test]
async fn out_of_stock_is_409_and_stores_nothing() {
    let stack = Stack::start().await;
    stack.set_stock("iphone_15", 1).await;
    let res = stack
        .http
        .post(stack.order_url("/api/order"))
        .json(&serde_json::json!({"lines": [line("iphone_15", "999.99", 2)]}))
        .send()
        .await
        .unwrap();
    let p = crate::problem(res, 409).await;
    assert_eq!(p["insufficient"][0]["skuCode"], "iphone_15");
    assert_eq!(stack.count("orders").await, 0);
    assert_eq!(stack.count("outbox").await, 0);
    assert_eq!(stack.stock("iphone_15").await, 1);
}
