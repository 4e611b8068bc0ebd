//! Bad input: 4xx problem+json, nothing stored anywhere, no stock taken.

use serde_json::json;

use crate::{Stack, count, line, problem};

/// Bad bodies, wrong types, negative or zero quantities, bad prices and unknown SKUs store nothing.
#[tokio::test]
async fn bad_orders_store_nothing() {
    let stack = Stack::start().await;
    stack.set_stock("phone", 5).await;
    let url = stack.order_url("/api/order");
    let many: Vec<_> = (0..101).map(|_| line("phone", "1", 1)).collect();
    let cases = [
        json!({"lines": [{"skuCode": "phone", "price": "1", "quantity": -1}]}),
        json!({"lines": [{"skuCode": "phone", "price": "1", "quantity": 0}]}),
        json!({"lines": [{"skuCode": "phone", "price": "1", "quantity": "one"}]}),
        json!({"lines": [{"skuCode": "phone", "price": "-1", "quantity": 1}]}),
        json!({"lines": [{"skuCode": "phone", "price": "1.001", "quantity": 1}]}),
        json!({"lines": [{"skuCode": "phone", "price": "abc", "quantity": 1}]}),
        json!({"lines": [{"skuCode": "phone", "price": true, "quantity": 1}]}),
        json!({"lines": [{"skuCode": 42, "price": "1", "quantity": 1}]}),
        json!({"lines": [{"skuCode": "", "price": "1", "quantity": 1}]}),
        json!({"lines": [{"price": "1", "quantity": 1}]}),
        json!({"lines": []}),
        json!({"lines": many}),
        json!({"lines": "phone"}),
        json!({}),
        json!([]),
    ];
    for body in cases {
        let res = stack.http.post(&url).json(&body).send().await.unwrap();
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
        problem(res, status).await;
    }
    let res = stack
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"lines\": [")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    let res = stack.http.post(&url).body("lines").send().await.unwrap();
    problem(res, 415).await;

    // Unknown SKU: inventory's 422 is passed on, naming it.
    let res = stack
        .http
        .post(&url)
        .json(&json!({"lines": [line("phone", "1", 1), line("ghost", "1", 1)]}))
        .send()
        .await
        .unwrap();
    let p = problem(res, 422).await;
    assert_eq!(p["unknownSkus"], json!(["ghost"]));

    assert_eq!(stack.count("orders").await, 0);
    assert_eq!(stack.count("order_lines").await, 0);
    assert_eq!(stack.count("outbox").await, 0);
    assert_eq!(stack.count("idempotency_keys").await, 0);
    assert_eq!(count(&stack.inventory_db, "reservations").await, 0);
    assert_eq!(stack.stock("phone").await, 5);

    // Reading: unknown order, bad paging.
    let res = stack
        .http
        .get(stack.order_url("/api/order/nope"))
        .send()
        .await
        .unwrap();
    problem(res, 404).await;
    for q in ["size=0", "size=101", "page=-1", "size=x"] {
        let res = stack
            .http
            .get(stack.order_url(&format!("/api/order?{q}")))
            .send()
            .await
            .unwrap();
        problem(res, 400).await;
    }
}
