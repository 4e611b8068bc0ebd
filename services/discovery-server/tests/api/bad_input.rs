//! Bad input is answered with a 4xx problem+json and leaves the registry unchanged.

use serde_json::{Value, json};

use crate::helpers::{TestApp, instance};

/// Asserts a problem+json answer with `status`, returning its body.
async fn expect_problem(res: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(res.status(), status, "{what}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status, "{what}");
    assert!(body["detail"].is_string(), "{what}: {body}");
    body
}

fn valid() -> Value {
    serde_json::to_value(kit::registry::model::InstanceEnvelope {
        instance: instance("shop", "s1", 8081),
    })
    .unwrap()
}

fn with(mut body: Value, path: &[&str], v: Value) -> Value {
    let mut cur = &mut body;
    for p in &path[..path.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[path[path.len() - 1]] = v;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body["instance"].as_object_mut().unwrap().remove(field);
    body
}

/// Every malformed registration is refused with a 4xx problem and nothing is registered.
#[tokio::test]
async fn bad_registrations() {
    let app = TestApp::manual().await;
    let v0 = app.state.registry.version();
    let url = app.eureka("apps/SHOP");

    let raw_cases: Vec<(&str, &str, &str, u16)> = vec![
        (
            "malformed JSON",
            "application/json",
            "{\"instance\": {",
            400,
        ),
        ("not JSON at all", "application/json", "hello", 400),
        ("wrong content type", "text/plain", "{}", 415),
        ("empty XML instance", "application/xml", "<instance/>", 400),
        (
            "malformed XML",
            "application/xml",
            "<instance><app>SHOP</instance>",
            400,
        ),
        (
            "XML of another root",
            "application/xml",
            "<application><name>SHOP</name></application>",
            400,
        ),
        (
            "XML with a DOCTYPE",
            "application/xml",
            "<!DOCTYPE instance [<!ENTITY x \"y\">]><instance><hostName>&x;</hostName></instance>",
            400,
        ),
        (
            "XML with an undefined entity",
            "text/xml",
            "<instance><hostName>&x;</hostName></instance>",
            400,
        ),
    ];
    for (what, ct, body, status) in raw_cases {
        let res = app
            .http
            .post(&url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(res, status, what).await;
    }

    let long = "x".repeat(300);
    let json_cases: Vec<(&str, Value)> = vec![
        (
            "no instance envelope",
            json!({"hostName": "h", "app": "SHOP"}),
        ),
        ("missing hostName", without(valid(), "hostName")),
        (
            "empty hostName",
            with(valid(), &["instance", "hostName"], json!(" ")),
        ),
        (
            "zero port",
            with(
                valid(),
                &["instance", "port"],
                json!({"$": 0, "@enabled": "true"}),
            ),
        ),
        (
            "port out of range",
            with(
                valid(),
                &["instance", "port"],
                json!({"$": 70000, "@enabled": "true"}),
            ),
        ),
        (
            "negative port",
            with(
                valid(),
                &["instance", "port"],
                json!({"$": -1, "@enabled": "true"}),
            ),
        ),
        (
            "port not a number",
            with(valid(), &["instance", "port"], json!({"$": "abc"})),
        ),
        (
            "app mismatch",
            with(valid(), &["instance", "app"], json!("OTHER")),
        ),
        (
            "status not a string",
            with(valid(), &["instance", "status"], json!(1)),
        ),
        (
            "lease shorter than renewal",
            with(
                valid(),
                &["instance", "leaseInfo"],
                json!({"renewalIntervalInSecs": 10, "durationInSecs": 5}),
            ),
        ),
        (
            "zero renewal interval",
            with(
                valid(),
                &["instance", "leaseInfo"],
                json!({"renewalIntervalInSecs": 0, "durationInSecs": 5}),
            ),
        ),
        (
            "overlong instance id",
            with(valid(), &["instance", "instanceId"], json!(long)),
        ),
        (
            "metadata not an object",
            with(valid(), &["instance", "metadata"], json!([1, 2])),
        ),
    ];
    for (what, body) in json_cases {
        let res = app.http.post(&url).json(&body).send().await.unwrap();
        let problem = expect_problem(res, 400, what).await;
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("https://platform.local/problems/"),
            "{what}: {problem}"
        );
    }

    // Bigger than the 1 MiB body limit.
    let huge = with(
        valid(),
        &["instance", "homePageUrl"],
        json!("x".repeat(2 * 1024 * 1024)),
    );
    let res = app.http.post(&url).json(&huge).send().await.unwrap();
    expect_problem(res, 413, "huge body").await;

    assert_eq!(app.state.registry.version(), v0, "nothing changed");
    assert_eq!(app.instance_count(), 0);
    assert_eq!(app.state.registry.stats().registrations, 0);

    // And the valid body still registers.
    let res = app.http.post(&url).json(&valid()).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

/// Bad query values on renew, status, metadata and watch are 400 problems; unknown instances are 404 problems.
#[tokio::test]
async fn bad_queries_and_unknown_instances() {
    let app = TestApp::manual().await;
    app.register(&instance("shop", "s1", 8081)).await;
    let v0 = app.state.registry.version();
    let put = |path: String| app.http.put(app.eureka(&path)).send();
    let del = |path: String| app.http.delete(app.eureka(&path)).send();

    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        (
            "renew bad timestamp",
            put("apps/SHOP/s1?lastDirtyTimestamp=yesterday".into())
                .await
                .unwrap(),
            400,
        ),
        (
            "renew negative timestamp",
            put("apps/SHOP/s1?lastDirtyTimestamp=-5".into())
                .await
                .unwrap(),
            400,
        ),
        (
            "status without value",
            put("apps/SHOP/s1/status".into()).await.unwrap(),
            400,
        ),
        (
            "unknown status value",
            put("apps/SHOP/s1/status?value=PAUSED".into())
                .await
                .unwrap(),
            400,
        ),
        (
            "status bad timestamp",
            put("apps/SHOP/s1/status?value=UP&lastDirtyTimestamp=x".into())
                .await
                .unwrap(),
            400,
        ),
        (
            "override removal bad value",
            del("apps/SHOP/s1/status?value=NOPE".into()).await.unwrap(),
            400,
        ),
        (
            "metadata value too long",
            put(format!("apps/SHOP/s1/metadata?k={}", "v".repeat(5000)))
                .await
                .unwrap(),
            400,
        ),
        (
            "renew unknown",
            put("apps/SHOP/nope".into()).await.unwrap(),
            404,
        ),
        (
            "status unknown",
            put("apps/SHOP/nope/status?value=UP".into()).await.unwrap(),
            404,
        ),
        (
            "override removal unknown",
            del("apps/SHOP/nope/status".into()).await.unwrap(),
            404,
        ),
        (
            "cancel unknown",
            del("apps/NOPE/s1".into()).await.unwrap(),
            404,
        ),
        (
            "metadata unknown",
            put("apps/SHOP/nope/metadata?a=b".into()).await.unwrap(),
            404,
        ),
        (
            "watch bad since",
            app.http
                .get(app.eureka("watch?since=abc"))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "watch bad timeout",
            app.http
                .get(app.eureka("watch?since=1&timeoutSecs=-1"))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "wrong method",
            app.http
                .patch(app.eureka("apps/SHOP"))
                .send()
                .await
                .unwrap(),
            405,
        ),
    ];
    for (what, res, status) in cases {
        expect_problem(res, status, what).await;
    }
    assert_eq!(app.state.registry.version(), v0, "nothing changed");
    let (_, v) = app.get_json(&app.eureka("apps/SHOP/s1")).await;
    assert_eq!(v["instance"]["status"], "UP");
}

/// A full registry refuses new instances with 503 but still takes re-registrations of known ones.
#[tokio::test]
async fn registry_full() {
    let app = TestApp::start_with(kit::clock::Clock::manual(crate::helpers::T0), |c| {
        c.registry.max_instances = 2
    })
    .await;
    app.register(&instance("a", "1", 1)).await;
    app.register(&instance("a", "2", 2)).await;
    let res = app
        .http
        .post(app.eureka("apps/A"))
        .json(&kit::registry::model::InstanceEnvelope {
            instance: instance("a", "3", 3),
        })
        .send()
        .await
        .unwrap();
    expect_problem(res, 503, "full").await;
    app.register(&instance("a", "2", 2)).await;
    assert_eq!(app.instance_count(), 2);
}
