//! The happy path: events become stored, listed notifications; lag and HTTP problems.

use crate::helpers::{ADMIN_TOKEN, Infra, Publisher, TestApp, assert_problem, event, metric};

/// A published event becomes one notification with the order's lines, total and customer,
/// listed newest first, filterable by order number; the consumer reports it handled with no lag.
#[tokio::test]
async fn event_becomes_a_listed_notification() {
    let infra = Infra::start(1).await;
    let app = TestApp::spawn(infra.config(&[])).await;
    let publisher = Publisher::new(&infra);
    let first = event("ord-1");
    let second = event("ord-2");
    publisher.send(&first).await;
    publisher.send(&second).await;

    let page = app.wait_notifications("", 2).await;
    assert_eq!(page["items"][0]["orderNumber"], "ord-2", "newest first");
    let page = app.notifications("?orderNumber=ord-1").await;
    assert_eq!(page["total"], 1);
    let n = &page["items"][0];
    assert_eq!(n["eventId"], first.event_id.to_string());
    assert_eq!(n["recipient"], "alice@example.com");
    assert_eq!(n["customerId"], "user-1");
    assert_eq!(n["subject"], "Your order ord-1 has been placed");
    assert_eq!(n["total"], "2009.98");
    let body = n["body"].as_str().unwrap();
    assert!(body.contains("2 x iphone_15 at 999.99 = 1999.98"), "{body}");
    assert!(body.contains("Total: 2009.98"), "{body}");
    assert_eq!(n["sourceTopic"], "order-placed");
    assert_eq!(n["sourceOffset"], 0);
    let paged = app.notifications("?size=1&page=1").await;
    assert_eq!(paged["items"][0]["orderNumber"], "ord-1");
    assert_eq!(paged["totalPages"], 2);

    let report = app
        .wait_consumer("two messages committed", |r| {
            r["partitions"][0]["committed"] == 2
        })
        .await;
    assert_eq!(report["group"], "notification-service");
    assert_eq!(report["joined"], true);
    assert_eq!(report["messagesHandled"], 2);
    assert_eq!(report["notificationsSent"], 2);
    assert_eq!(report["duplicatesSkipped"], 0);
    assert_eq!(report["deadLettered"], 0);
    assert_eq!(report["partitions"][0]["highWatermark"], 2);
    assert_eq!(report["partitions"][0]["lag"], 0);
    assert_eq!(report["totalLag"], 0);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"notification_consumer_lag{topic="order-placed",partition="0"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "notifications_sent_total"), Some(2.0));
    app.stop().await;
}

/// With three partitions, every event is handled once and lag is reported per partition.
#[tokio::test]
async fn lag_is_reported_per_partition() {
    let infra = Infra::start(3).await;
    let publisher = Publisher::new(&infra);
    // Published before the service starts: a backlog it must work through.
    let mut per_partition = [0i64; 3];
    for n in 0..30 {
        let (partition, _) = publisher.send(&event(&format!("ord-{n}"))).await;
        per_partition[partition as usize] += 1;
    }
    let app = TestApp::spawn(infra.config(&[])).await;
    app.wait_notifications("", 30).await;
    let report = app
        .wait_consumer("all partitions committed", |r| {
            r["partitions"].as_array().is_some_and(|ps| {
                ps.len() == 3 && ps.iter().all(|p| p["lag"] == 0 && p["committed"].is_i64())
            })
        })
        .await;
    for p in report["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_i64().unwrap() as usize;
        assert_eq!(p["highWatermark"], per_partition[partition], "{report:#}");
        assert_eq!(p["committed"], per_partition[partition], "{report:#}");
    }
    assert_eq!(report["messagesHandled"], 30);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(&metrics, "notification_consumer_assigned_partitions"),
        Some(3.0),
        "{metrics}"
    );
    app.stop().await;
}

/// Bad paging and filters are 400 problem+json; the admin endpoint needs the token.
#[tokio::test]
async fn bad_http_input_is_problem_json() {
    let infra = Infra::start(1).await;
    let app = TestApp::spawn(infra.config(&[])).await;
    let long = "x".repeat(65);
    for q in [
        "size=0".to_string(),
        "size=201".into(),
        "page=-1".into(),
        "page=abc".into(),
        format!("orderNumber={long}"),
    ] {
        let res = app.get(&format!("/api/notifications?{q}")).await;
        assert_problem(res, 400).await;
    }
    assert_problem(app.get("/admin/consumer").await, 401).await;
    let res = app
        .client
        .get(app.url("/admin/consumer"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/admin/consumer"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(
        app.client
            .post(app.url("/api/notifications"))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    app.stop().await;
}
