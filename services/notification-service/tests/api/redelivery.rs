//! At-least-once delivery never notifies twice: duplicates, restarts before the commit,
//! and `kill -9` of the real binary in the middle of a stream.

use std::time::Duration;

use notification_service::email::{self, Origin};
use notification_service::store::{NotificationStore, Stored};

use crate::helpers::{Infra, Publisher, TestApp, WAIT, event, poll_until};

/// The same event (same id) delivered twice gives one notification and one skipped
/// duplicate, both inside one batch (a backlog) and across batches (one at a time).
#[tokio::test]
async fn same_event_twice_notifies_once() {
    let infra = Infra::start(1).await;
    let publisher = Publisher::new(&infra);
    let in_batch = event("ord-dup-backlog");
    publisher.send(&event("ord-first")).await;
    publisher.send(&in_batch).await;
    publisher.send(&in_batch).await;
    let app = TestApp::spawn(infra.config(&[])).await;
    app.wait_consumer("the backlog handled", |r| r["messagesHandled"] == 3)
        .await;
    let live = event("ord-dup-live");
    publisher.send(&live).await;
    app.wait_consumer("the first copy handled", |r| r["messagesHandled"] == 4)
        .await;
    publisher.send(&live).await;
    publisher.send(&event("ord-after")).await;
    let report = app
        .wait_consumer("six messages handled", |r| r["messagesHandled"] == 6)
        .await;
    assert_eq!(report["duplicatesSkipped"], 2);
    assert_eq!(report["notificationsSent"], 4);
    for order in ["ord-dup-backlog", "ord-dup-live"] {
        let page = app.notifications(&format!("?orderNumber={order}")).await;
        assert_eq!(page["total"], 1, "{order}");
    }
    assert_eq!(app.notifications("").await["total"], 4);
    app.stop().await;
}

/// A crash after storing but before committing leaves a stored notification and an
/// uncommitted offset; the restarted consumer gets the event again and skips it. A further
/// restart after the commit gets nothing again.
#[tokio::test]
async fn restart_before_commit_does_not_notify_twice() {
    let infra = Infra::start(1).await;
    let publisher = Publisher::new(&infra);
    let e = event("ord-crash");
    let (partition, offset) = publisher.send(&e).await;
    // The state a crash between the insert and the commit leaves behind.
    let store =
        NotificationStore::connect_lazy(&infra.access.url, 1, Duration::from_secs(5)).unwrap();
    store.migrate().await.unwrap();
    let email = email::render(
        &e,
        Origin {
            topic: events::ORDER_PLACED_TOPIC.into(),
            partition,
            offset,
        },
    );
    assert_eq!(store.insert(&email).await.unwrap(), Stored::New);

    let app = TestApp::spawn(infra.config(&[])).await;
    let report = app
        .wait_consumer("the event redelivered and committed", |r| {
            r["messagesHandled"] == 1 && r["partitions"][0]["committed"] == 1
        })
        .await;
    assert_eq!(report["duplicatesSkipped"], 1);
    assert_eq!(report["notificationsSent"], 0);
    app.stop().await;

    let again = TestApp::spawn(infra.config(&[])).await;
    publisher.send(&event("ord-next")).await;
    let report = again
        .wait_consumer("only the new event handled", |r| {
            r["partitions"][0]["committed"] == 2
        })
        .await;
    assert_eq!(
        report["messagesHandled"], 1,
        "the committed event was not redelivered"
    );
    assert_eq!(report["duplicatesSkipped"], 0);
    assert_eq!(store.count_for_event(e.event_id).await.unwrap(), 1);
    again.stop().await;
}

/// `kill -9` of the notification-service binary during a stream of 300 events, then a
/// restart: every event has exactly one notification (default fetch wait).
#[tokio::test]
async fn kill_9_mid_stream_leaves_exactly_one_notification_per_event() {
    kill_9_mid_stream("500ms").await;
}

/// The same with the fetch wait at 10 ms, the case where tansu 0.6 left the restarted
/// instance without partitions: it gets them and resumes; exactly one notification per event.
#[tokio::test]
async fn kill_9_mid_stream_with_fetch_wait_10ms() {
    kill_9_mid_stream("10ms").await;
}

async fn kill_9_mid_stream(fetch_wait: &str) {
    const EVENTS: usize = 300;
    let infra = Infra::start(3).await;
    let bootstrap = infra.kafka.bootstrap_servers();
    let started = testkit::Starter::new(env!("CARGO_BIN_EXE_notification-service"))
        .envs([
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("DATABASE_URL", infra.access.url.as_str()),
            ("REGISTRY_DISABLED", "true"),
            ("ADMIN_TOKEN", "test-admin-token"),
            ("KAFKA_SESSION_TIMEOUT", "6s"),
            ("KAFKA_FETCH_WAIT_MAX", fetch_wait),
            ("LAG_INTERVAL", "500ms"),
            ("RUST_LOG", "info"),
        ])
        .within(WAIT)
        .start()
        .await
        .unwrap();
    let (mut service, base) = (started.process, started.base);

    let publisher = Publisher::new(&infra);
    let events: Vec<_> = (0..EVENTS).map(|n| event(&format!("ord-{n:04}"))).collect();
    let pool = infra.sql().await;
    let sql = &pool;
    let count = move || async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM notifications")
            .fetch_one(sql)
            .await
            .unwrap_or(0)
    };
    let producing = async {
        for e in &events {
            publisher.send(e).await;
        }
    };
    let killing = async {
        // Kill once a third of the stream is stored, while events keep arriving.
        poll_until(WAIT, count, |n| *n >= (EVENTS / 3) as i64)
            .await
            .expect("the service handled events before the kill");
        service.kill().await.unwrap();
    };
    tokio::join!(producing, killing);
    let at_kill = count().await;
    assert!(
        at_kill < EVENTS as i64,
        "the kill came too late to test anything"
    );

    service.restart().await.unwrap();
    let restarted = tokio::time::Instant::now();
    let admin = format!("{base}/admin/consumer");
    let http = reqwest::Client::new();
    let assigned = poll_until(
        Duration::from_secs(90),
        || async {
            match http
                .get(&admin)
                .bearer_auth("test-admin-token")
                .send()
                .await
            {
                Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            }
        },
        |r| {
            r["assignedPartitions"]
                .as_array()
                .is_some_and(|a| a.len() == 3)
        },
    )
    .await;
    assert!(
        assigned.is_some(),
        "the restarted instance never got the partitions: {}",
        service.log_tail(40)
    );
    let assigned_after = restarted.elapsed();
    let stored = poll_until(Duration::from_secs(90), count, |n| *n >= EVENTS as i64).await;
    assert_eq!(stored, Some(EVENTS as i64), "{}", service.log_tail(40));
    // Let any redelivered duplicate arrive, then check the exact figures.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM notifications")
            .fetch_one(sql)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (EVENTS as i64, EVENTS as i64));
    for e in events.iter().step_by(37) {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE event_id = ?")
            .bind(e.event_id.to_string())
            .fetch_one(sql)
            .await
            .unwrap();
        assert_eq!(n, 1, "event {}", e.event_id);
    }
    let report: serde_json::Value = testkit::body_json(
        reqwest::Client::new()
            .get(format!("{base}/admin/consumer"))
            .bearer_auth("test-admin-token"),
    )
    .await;
    println!(
        "fetch wait {fetch_wait}: killed with {at_kill} of {EVENTS} stored; the restarted instance \
         had the 3 partitions after {:.1} s; after restart {rows} rows, {distinct} distinct; \
         it handled {} messages, skipped {} duplicates, rebuilds {}",
        assigned_after.as_secs_f64(),
        report["messagesHandled"],
        report["duplicatesSkipped"],
        report["rebuilds"]
    );
}
