//! Idempotency-Key: one order per key, the first answer replayed, also under concurrent replays.

use serde_json::json;

use crate::{Stack, line};

/// A replay returns the first answer (status and body) and creates no second order.
#[tokio::test]
async fn replay_returns_the_first_answer() {
    let stack = Stack::start().await;
    stack.set_stock("phone", 5).await;
    let lines = json!([line("phone", "100", 1)]);
    let (s1, h1, b1) = stack.order(lines.clone(), Some("key-1")).await;
    assert_eq!(s1, 201, "{b1}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, b2) = stack.order(lines.clone(), Some("key-1")).await;
    assert_eq!(s2, 201);
    assert_eq!(b2, b1, "same body");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(h2["location"], h1["location"]);
    assert_eq!(stack.count("orders").await, 1);
    assert_eq!(stack.stock("phone").await, 4);

    // The same key with another request is refused.
    let res = stack
        .http
        .post(stack.order_url("/api/order"))
        .header("idempotency-key", "key-1")
        .json(&json!({"lines": [line("phone", "100", 2)]}))
        .send()
        .await
        .unwrap();
    let p = crate::problem(res, 422).await;
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-reused")
    );
    // A new key is a new order.
    let (s3, _, b3) = stack.order(lines, Some("key-2")).await;
    assert_eq!(s3, 201);
    assert_ne!(b3["orderNumber"], b1["orderNumber"]);
    assert_eq!(stack.count("orders").await, 2);
}

/// Concurrent requests with one key create one order; all get the same 201 body.
#[tokio::test]
async fn concurrent_replays_create_one_order() {
    let stack = Stack::start().await;
    stack.set_stock("phone", 100).await;
    let lines = json!([line("phone", "5.50", 2)]);
    let answers =
        futures::future::join_all((0..24).map(|_| stack.order(lines.clone(), Some("same-key"))))
            .await;
    let first = &answers[0].2;
    for (status, _, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body, first);
    }
    let replayed = answers
        .iter()
        .filter(|(_, h, _)| h.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 23, "exactly one request did the work");
    assert_eq!(stack.count("orders").await, 1);
    assert_eq!(stack.count("outbox").await, 1);
    assert_eq!(stack.stock("phone").await, 98);
}

/// An out-of-stock answer is final and replayed; an unavailable inventory is not, so a retry can succeed.
#[tokio::test]
async fn final_and_retryable_answers() {
    let mut stack = Stack::start().await;
    stack.set_stock("phone", 1).await;
    let (s, _, b) = stack
        .order(json!([line("phone", "1", 2)]), Some("oos"))
        .await;
    assert_eq!(s, 409, "{b}");
    stack.set_stock("phone", 10).await;
    let (s, h, b2) = stack
        .order(json!([line("phone", "1", 2)]), Some("oos"))
        .await;
    assert_eq!(s, 409, "the first answer stands");
    assert_eq!(b2, b);
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(h["content-type"], "application/problem+json");

    stack.stop_inventory().await;
    stack.wait_for_inventory_instances(0).await;
    let (s, _, b) = stack
        .order(json!([line("phone", "1", 1)]), Some("retry-me"))
        .await;
    assert_eq!(s, 503, "{b}");
    stack.start_inventory().await;
    stack.wait_for_inventory_instances(1).await;
    let (s, _, b) = stack
        .order(json!([line("phone", "1", 1)]), Some("retry-me"))
        .await;
    assert_eq!(s, 201, "the key was not consumed by the 503: {b}");
    assert_eq!(stack.count("orders").await, 1);
}

/// Malformed keys are refused.
#[tokio::test]
async fn bad_keys_are_refused() {
    let stack = Stack::start().await;
    stack.set_stock("phone", 1).await;
    for key in ["", &"k".repeat(256)] {
        let res = stack
            .http
            .post(stack.order_url("/api/order"))
            .header("idempotency-key", key)
            .json(&json!({"lines": [line("phone", "1", 1)]}))
            .send()
            .await
            .unwrap();
        crate::problem(res, 422).await;
    }
    assert_eq!(stack.count("orders").await, 0);
    assert_eq!(stack.stock("phone").await, 1);
}
