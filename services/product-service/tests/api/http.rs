//! The real service over HTTP, in-process on port 0 with an embedded store in a temp dir.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

/// Create answers 201 with Location and the stored product; get, replace, delete and 404 follow.
#[tokio::test]
async fn crud_round_trip() {
    let app = TestApp::spawn().await;
    let res = app
        .post(json!({"skuCode":"iphone_15","name":"iPhone 15","description":"A phone","price":"999.99"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/product/{id}"));
    assert_eq!(created["price"], "999.99");
    assert_eq!(created["skuCode"], "iphone_15");

    let got: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(got, created);

    let res = app
        .client
        .put(app.url(&location))
        .json(&json!({"skuCode":"iphone_15","name":"iPhone 15 Pro","price":1099}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let replaced: Value = res.json().await.unwrap();
    assert_eq!(replaced["id"], created["id"]);
    assert_eq!(replaced["price"], "1099.00");
    assert_eq!(replaced["description"], "");

    let res = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&location).await, 404, "not-found").await;
    let res = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_problem(res, 404, "not-found").await;
    app.stop().await;
}

/// A duplicate skuCode is 409 problem+json and stores nothing.
#[tokio::test]
async fn duplicate_sku_conflicts() {
    let app = TestApp::spawn().await;
    let body = json!({"skuCode":"dup","name":"One","price":"1.00"});
    assert_eq!(app.post(body.clone()).await.status(), StatusCode::CREATED);
    let p = assert_problem(app.post(body).await, 409, "conflict").await;
    assert_eq!(p["skuCode"], "dup");
    assert_eq!(app.list("").await["total"], 1);
    app.stop().await;
}

/// Bad bodies and wrong types are 4xx problem+json naming the fault, and nothing is stored.
#[tokio::test]
async fn bad_input_is_refused_and_nothing_stored() {
    let app = TestApp::spawn().await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            app.raw_post("{not json", "application/json"),
            400,
            "malformed-body",
        ),
        (
            app.raw_post(r#"{"skuCode":"a"}"#, "text/plain"),
            415,
            "unsupported-media-type",
        ),
        (
            app.raw_post(r#"{"skuCode":"a","name":"n"}"#, "application/json"),
            422,
            "validation",
        ),
        (
            app.raw_post(
                r#"{"skuCode":"a","name":"n","price":"ten"}"#,
                "application/json",
            ),
            422,
            "validation",
        ),
        (
            app.raw_post(
                r#"{"skuCode":1,"name":"n","price":"1"}"#,
                "application/json",
            ),
            422,
            "validation",
        ),
        (
            app.raw_post(r#"[1,2]"#, "application/json"),
            422,
            "validation",
        ),
    ];
    for (req, status, kind) in cases {
        assert_problem(req.send().await.unwrap(), status, kind).await;
    }
    // Rule violations list every field.
    let res = app
        .post(json!({"skuCode":"has space","name":"  ","price":"-1.005"}))
        .await;
    let p = assert_problem(res, 422, "validation").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["skuCode", "name", "price"]);
    for price in [json!("-0.01"), json!(1.005), json!("1e12"), json!(null)] {
        let res = app
            .post(json!({"skuCode":"x","name":"n","price":price}))
            .await;
        assert_eq!(res.status(), 422, "price {price}");
    }
    assert_eq!(app.list("").await["total"], 0, "nothing was stored");

    // PUT validates the same way and leaves the product unchanged.
    let created: Value = app
        .post(json!({"skuCode":"keep","name":"Keep","price":"3.00"}))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/product/{}", created["id"].as_str().unwrap());
    let res = app
        .client
        .put(app.url(&path))
        .json(&json!({"skuCode":"keep","name":"","price":"3.00"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "validation").await;
    let still: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(still, created);
    app.stop().await;
}

/// Bad paging and filters are 400 problems; unknown ids and methods are 404 and 405 problems.
#[tokio::test]
async fn bad_queries_and_routes_are_problems() {
    let app = TestApp::spawn().await;
    for q in [
        "size=0",
        "size=101",
        "page=-1",
        "page=x",
        "skuCode=no%20spaces",
    ] {
        let res = app.get(&format!("/api/product?{q}")).await;
        assert_eq!(res.status(), 400, "{q}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{q}"
        );
    }
    assert_problem(app.get("/api/product/unknown").await, 404, "not-found").await;
    let long = "x".repeat(300);
    assert_problem(
        app.get(&format!("/api/product/{long}")).await,
        404,
        "not-found",
    )
    .await;
    let res = app
        .client
        .patch(app.url("/api/product"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    app.stop().await;
}

/// Listing pages with totals and filters by name substring and exact sku.
#[tokio::test]
async fn listing_pages_and_filters() {
    let app = TestApp::spawn().await;
    for (sku, name) in [("p1", "Phone One"), ("p2", "Phone Two"), ("c1", "Case")] {
        let res = app
            .post(json!({"skuCode":sku,"name":name,"price":"1.00"}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let page = app.list("?size=2").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["totalPages"], 2);
    assert_eq!(page["items"][0]["skuCode"], "p1");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let page = app.list("?size=2&page=1").await;
    assert_eq!(page["items"][0]["skuCode"], "c1");
    let page = app.list("?name=phone").await;
    assert_eq!(page["total"], 2);
    let page = app.list("?skuCode=c1").await;
    assert_eq!(page["items"][0]["name"], "Case");
    assert_eq!(page["total"], 1);
    app.stop().await;
}

/// Readiness includes the store check and /metrics counts the API's requests.
#[tokio::test]
async fn health_and_metrics() {
    let app = TestApp::spawn().await;
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["status"], "UP");
    assert_eq!(ready["components"]["store"]["status"], "UP");
    app.list("").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/api/product",status="200"}"#),
        "{metrics}"
    );
    app.stop().await;
}

/// Catalogue writes need the admin credentials (here the shared admin token: no issuer is
/// configured); without them POST, PUT and DELETE are 401 problem+json and change nothing,
/// while reads stay open.
#[tokio::test]
async fn writes_need_the_admin_role() {
    let app = TestApp::spawn().await;
    let created = app
        .post(json!({"skuCode":"guarded","name":"Guarded","price":"2.00"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let anonymous = reqwest::Client::new();
    let body = json!({"skuCode":"guarded","name":"Changed","price":"0.01"});
    for (what, kind, req) in [
        (
            "POST",
            "unauthorized",
            anonymous.post(app.url("/api/product")).json(&body),
        ),
        (
            "PUT",
            "unauthorized",
            anonymous.put(app.url(&location)).json(&body),
        ),
        (
            "DELETE",
            "unauthorized",
            anonymous.delete(app.url(&location)),
        ),
        (
            "POST with a wrong token",
            "invalid-token",
            anonymous
                .post(app.url("/api/product"))
                .bearer_auth("not-the-admin-token")
                .json(&body),
        ),
    ] {
        let res = req.send().await.unwrap();
        assert!(res.headers().contains_key("www-authenticate"), "{what}");
        let p = assert_problem(res, 401, kind).await;
        assert!(p["detail"].is_string(), "{what}: {p}");
    }
    let read = anonymous.get(app.url(&location)).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let product: Value = read.json().await.unwrap();
    assert_eq!(product["name"], "Guarded");
    assert_eq!(app.list("?skuCode=guarded").await["total"], 1);
    app.stop().await;
}
