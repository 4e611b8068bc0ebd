//! The database goes away: the consumer waits (nothing dead-lettered, lag grows and is
//! reported), readiness and the API say so, and everything is handled when it returns.

use crate::helpers::{Infra, Publisher, TestApp, event, metric};

/// During a MariaDB outage, new events wait uncommitted: `/admin/consumer` and `/metrics`
/// show the lag (3), readiness is DOWN, the API answers 503; after the restart every event
/// is notified once, lag is 0 and nothing went to the dead-letter topic.
#[tokio::test]
async fn database_outage_pauses_consumption_and_reports_lag() {
    let mut infra = Infra::start(1).await;
    let app = TestApp::spawn(infra.config(&["--max-attempts", "2"])).await;
    let publisher = Publisher::new(&infra);
    for n in 0..2 {
        publisher.send(&event(&format!("before-{n}"))).await;
    }
    app.wait_consumer("first two committed", |r| {
        r["partitions"][0]["committed"] == 2
    })
    .await;

    infra.db.stop().await.unwrap();
    for n in 0..3 {
        publisher.send(&event(&format!("during-{n}"))).await;
    }
    let report = app
        .wait_consumer("waiting for the database with lag 3", |r| {
            r["waitingForDatabase"].is_string()
                && r["partitions"][0]["highWatermark"] == 5
                && r["partitions"][0]["lag"] == 3
        })
        .await;
    assert_eq!(report["partitions"][0]["committed"], 2);
    assert_eq!(
        report["deadLettered"], 0,
        "an outage is not the message's fault"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"notification_consumer_lag{topic="order-placed",partition="0"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["components"]["db"]["status"], "DOWN");
    let res = app.get("/api/notifications").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    infra.db.start_again().await.unwrap();
    app.wait_notifications("", 5).await;
    let report = app
        .wait_consumer("all five committed", |r| {
            r["partitions"][0]["committed"] == 5 && r["partitions"][0]["lag"] == 0
        })
        .await;
    assert_eq!(report["deadLettered"], 0);
    assert_eq!(report["notificationsSent"], 5);
    assert!(report["retries"].as_u64().unwrap() >= 1);
    assert!(report["waitingForDatabase"].is_null());
    app.wait_ready().await;
    app.stop().await;
}
