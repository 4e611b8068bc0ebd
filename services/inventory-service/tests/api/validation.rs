//! Bad input is answered 4xx problem+json and stores nothing; admin needs credentials.

use serde_json::json;

use crate::{ADMIN, App, problem};

/// Wrong types, negative or zero quantities, empty and huge lists, bad ids: 4xx problem+json, nothing stored.
#[tokio::test]
async fn bad_reservations_store_nothing() {
    let app = App::start().await;
    app.set_stock("phone", 5).await;
    let url = app.url("/api/inventory/reservations");
    let many: Vec<_> = (0..101)
        .map(|_| json!({"skuCode": "phone", "quantity": 1}))
        .collect();
    let cases = [
        (
            json!({"orderNumber": "o", "lines": [{"skuCode": "phone", "quantity": -1}]}),
            422,
        ),
        (
            json!({"orderNumber": "o", "lines": [{"skuCode": "phone", "quantity": 0}]}),
            422,
        ),
        (
            json!({"orderNumber": "o", "lines": [{"skuCode": "phone", "quantity": "2"}]}),
            422,
        ),
        (
            json!({"orderNumber": "o", "lines": [{"skuCode": 7, "quantity": 1}]}),
            422,
        ),
        (json!({"orderNumber": "o", "lines": []}), 422),
        (json!({"orderNumber": "o", "lines": many}), 422),
        (
            json!({"orderNumber": "", "lines": [{"skuCode": "phone", "quantity": 1}]}),
            422,
        ),
        (
            json!({"orderNumber": "a b", "lines": [{"skuCode": "phone", "quantity": 1}]}),
            422,
        ),
        (json!({"lines": [{"skuCode": "phone", "quantity": 1}]}), 422),
        (
            json!({"orderNumber": "o", "lines": [{"skuCode": "phone", "quantity": 1.5}]}),
            422,
        ),
        (json!([1, 2]), 422),
    ];
    for (body, status) in cases {
        let res = app.http.post(&url).json(&body).send().await.unwrap();
        problem(res, status).await;
    }
    let res = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    let res = app.http.post(&url).body("x").send().await.unwrap();
    problem(res, 415).await;
    assert_eq!(app.count("reservations").await, 0);
    assert_eq!(app.count("reservation_lines").await, 0);
    assert_eq!(app.stock("phone").await, 5);

    let res = app
        .http
        .get(app.url("/api/inventory?skuCode=phone&quantity=-1"))
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    let res = app
        .http
        .get(app.url("/api/inventory"))
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    app.stop().await;
}

/// Setting stock is an admin act: refused without the admin token, validated with it.
#[tokio::test]
async fn stock_admin_is_protected_and_validated() {
    let app = App::start().await;
    let url = app.url("/admin/inventory/phone");
    // A client without the admin token (App's own sends it).
    let res = reqwest::Client::new()
        .put(&url)
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    problem(res, 401).await;
    // The public path has no write method.
    let res = app
        .http
        .put(app.url("/api/inventory/phone"))
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    problem(res, 405).await;
    for (body, status) in [
        (json!({"quantity": -3}), 422),
        (json!({"quantity": 2_000_000_000u64}), 422),
        (json!({"qty": 3}), 422),
    ] {
        let res = app
            .http
            .put(&url)
            .header("authorization", ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(res, status).await;
    }
    assert_eq!(app.count("inventory").await, 0);
    app.set_stock("phone", 3).await;
    assert_eq!(app.stock("phone").await, 3);
    app.set_stock("phone", 0).await;
    assert_eq!(app.stock("phone").await, 0);
    app.stop().await;
}

/// Readiness reports the database and turns DOWN when it is gone.
#[tokio::test]
async fn readiness_follows_the_database() {
    let mut app = App::start().await;
    let ready: serde_json::Value = testkit::body_json(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(ready["components"]["db"]["status"], "UP");
    app.db.kill().await.unwrap();
    let res = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    // Requests needing the database answer 503 problem+json, not a hang or 500.
    let res = app
        .http
        .get(app.url("/api/inventory/phone"))
        .send()
        .await
        .unwrap();
    problem(res, 503).await;
    app.db.start_again().await.unwrap();
    app.stop().await;
}
