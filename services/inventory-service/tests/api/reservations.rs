//! Reservations: all or nothing, idempotent, released for compensation, never oversold.

use serde_json::{Value, json};

use crate::{App, problem};

/// A reservation takes every line or none; short SKUs are named in a 409 problem and remembered.
#[tokio::test]
async fn all_or_nothing_and_idempotent() {
    let app = App::start().await;
    app.set_stock("phone", 5).await;
    app.set_stock("case", 1).await;

    let (status, body) = app
        .reserve(
            "o-1",
            json!([{"skuCode": "phone", "quantity": 2}, {"skuCode": "case", "quantity": 2}]),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["insufficient"][0]["skuCode"], "case");
    assert_eq!(body["insufficient"][0]["available"], 1);
    assert_eq!(app.stock("phone").await, 5, "nothing taken");
    // The refusal is the order's outcome: a repeat gets it again.
    let (status, _) = app
        .reserve("o-1", json!([{"skuCode": "phone", "quantity": 1}]))
        .await;
    assert_eq!(status, 409);

    let lines = json!([{"skuCode": "phone", "quantity": 2}, {"skuCode": "case", "quantity": 1}]);
    let (status, first) = app.reserve("o-2", lines.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "RESERVED");
    assert_eq!((app.stock("phone").await, app.stock("case").await), (3, 0));

    let (status, again) = app.reserve("o-2", lines).await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "a repeat returns the first outcome");
    assert_eq!(app.stock("phone").await, 3, "a repeat takes nothing");

    let (status, released) = app.release("o-2").await;
    assert_eq!(status, 200);
    assert_eq!(released["status"], "RELEASED");
    assert_eq!((app.stock("phone").await, app.stock("case").await), (5, 1));
    let (status, _) = app.release("o-2").await;
    assert_eq!(status, 200);
    assert_eq!(
        app.stock("phone").await,
        5,
        "releasing twice gives back once"
    );

    let (status, body) = app
        .reserve("o-2", json!([{"skuCode": "phone", "quantity": 1}]))
        .await;
    assert_eq!(status, 409, "a released order cannot reserve again: {body}");
    assert_eq!(app.stock("phone").await, 5);
    app.stop().await;
}

/// A release that overtakes its reservation wins: the late reservation takes no stock.
#[tokio::test]
async fn release_before_reserve_blocks_the_late_reservation() {
    let app = App::start().await;
    app.set_stock("phone", 3).await;
    let (status, body) = app.release("late-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "RELEASED");
    let (status, _) = app
        .reserve("late-1", json!([{"skuCode": "phone", "quantity": 1}]))
        .await;
    assert_eq!(status, 409);
    assert_eq!(app.stock("phone").await, 3);
    app.stop().await;
}

/// Unknown SKUs are a 422 naming them, and nothing is stored.
#[tokio::test]
async fn unknown_skus_store_nothing() {
    let app = App::start().await;
    app.set_stock("phone", 3).await;
    let (status, body) = app
        .reserve(
            "o-9",
            json!([{"skuCode": "phone", "quantity": 1}, {"skuCode": "ghost", "quantity": 1}]),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["unknownSkus"], json!(["ghost"]));
    assert_eq!(app.stock("phone").await, 3);
    assert_eq!(app.count("reservations").await, 0);
    let res = app
        .http
        .get(app.url("/api/inventory/reservations/o-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}

/// The seed's check answers a bare boolean; an unknown SKU is not in stock.
#[tokio::test]
async fn seed_stock_check_is_a_boolean() {
    let app = App::start().await;
    app.set_stock("phone", 2).await;
    for (sku, q, expected) in [("phone", 2, true), ("phone", 3, false), ("ghost", 1, false)] {
        let v: Value = testkit::body_json(
            app.http
                .get(app.url("/api/inventory"))
                .query(&[("skuCode", sku), ("quantity", &q.to_string())]),
        )
        .await;
        assert_eq!(v, Value::Bool(expected), "{sku} {q}");
    }
    app.stop().await;
}

/// Hundreds of concurrent reservations of the last units: exactly the stock is sold, never more.
#[tokio::test]
async fn concurrent_reservations_never_oversell() {
    let app = App::start().await;
    app.set_stock("hot", 50).await;
    app.set_stock("cold", 1000).await;
    let started = std::time::Instant::now();
    let results = futures::future::join_all((0..300).map(|i| {
        let app = &app;
        async move {
            // Mixed line orders, so lock ordering matters.
            let lines = if i % 2 == 0 {
                json!([{"skuCode": "hot", "quantity": 1}, {"skuCode": "cold", "quantity": 1}])
            } else {
                json!([{"skuCode": "cold", "quantity": 1}, {"skuCode": "hot", "quantity": 1}])
            };
            app.reserve(&format!("c-{i}"), lines).await.0
        }
    }))
    .await;
    let created = results.iter().filter(|s| **s == 201).count();
    let refused = results.iter().filter(|s| **s == 409).count();
    assert_eq!(created, 50, "{results:?}");
    assert_eq!(refused, 250, "{results:?}");
    assert_eq!(app.stock("hot").await, 0);
    assert_eq!(app.stock("cold").await, 950, "cold taken only with hot");
    eprintln!("300 concurrent reservations in {:?}", started.elapsed());
    app.stop().await;
}

/// The database refuses a negative stock even if the code tried to store one.
#[tokio::test]
async fn check_constraint_forbids_negative_stock() {
    let app = App::start().await;
    app.set_stock("phone", 1).await;
    let r = sqlx::query("UPDATE inventory SET quantity = quantity - 2 WHERE sku_code = 'phone'")
        .execute(&app.pool)
        .await;
    assert!(r.is_err(), "CHECK constraint must refuse");
    assert_eq!(app.stock("phone").await, 1);
    app.stop().await;
}

/// Concurrent repeats of one order's reservation take the stock once: one 201, the rest 200 with the same body.
#[tokio::test]
async fn concurrent_repeats_reserve_once() {
    let app = App::start().await;
    app.set_stock("phone", 10).await;
    let lines = json!([{"skuCode": "phone", "quantity": 3}]);
    let answers =
        futures::future::join_all((0..20).map(|_| app.reserve("same-order", lines.clone()))).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let repeats = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, repeats), (1, 19), "{answers:?}");
    assert!(answers.iter().all(|(_, b)| *b == answers[0].1));
    assert_eq!(app.stock("phone").await, 7);
    app.stop().await;
}

/// Reservations are service-to-service: without credentials (or with a wrong token) posting,
/// reading and releasing one is 401 problem+json and changes nothing; stock checks stay open.
#[tokio::test]
async fn reservations_need_service_credentials() {
    let app = App::start().await;
    app.set_stock("phone", 3).await;
    let (status, _) = app
        .reserve("o-1", json!([{"skuCode": "phone", "quantity": 2}]))
        .await;
    assert_eq!(status, 201);
    let anonymous = reqwest::Client::new();
    let reservation = app.url("/api/inventory/reservations/o-1");
    for (what, req) in [
        (
            "post",
            anonymous.post(app.url("/api/inventory/reservations")).json(
                &json!({"orderNumber": "o-2", "lines": [{"skuCode": "phone", "quantity": 1}]}),
            ),
        ),
        ("get", anonymous.get(&reservation)),
        ("delete", anonymous.delete(&reservation)),
        (
            "delete with a user's token",
            anonymous
                .delete(&reservation)
                .bearer_auth("some-user-token"),
        ),
    ] {
        let res = req.send().await.unwrap();
        let body = problem(res, 401).await;
        assert!(body["detail"].is_string(), "{what}: {body}");
    }
    // Nothing was released or reserved: the stock stays taken by o-1 only.
    assert_eq!(app.stock("phone").await, 1);
    assert_eq!(app.count("reservations").await, 1);
    let res = anonymous
        .get(app.url("/api/inventory?skuCode=phone&quantity=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.json::<bool>().await.unwrap());
    app.stop().await;
}
