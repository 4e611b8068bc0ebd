//! `kill -9` of a real order-service process during a stream of orders.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{Stack, events_for};

/// After a SIGKILL mid-stream and a restart, every order the database holds (so every accepted one) has its event on Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_event() {
    let mut stack = Stack::dependencies().await;
    stack.start_inventory().await;
    stack.set_stock("phone", 1_000_000).await;
    let port = testkit::free_port().unwrap();
    let port_s = port.to_string();
    let registry = stack.registry_url();
    let kafka = stack.kafka.bootstrap_servers();
    let env = [
        ("PORT", port_s.as_str()),
        ("BIND_ADDR", "127.0.0.1"),
        ("ADVERTISE_HOST", "127.0.0.1"),
        ("REGISTRY_URL", registry.as_str()),
        ("DATABASE_URL", stack.orders_url.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", kafka.as_str()),
        ("ADMIN_TOKEN", "test-admin-token"),
        // No product-service here, as in the in-process tests' configuration: this test is
        // about events surviving a crash; prices are tests/api/prices.rs's.
        ("PRICE_CHECK", "off"),
        ("OUTBOX_POLL_INTERVAL", "200ms"),
        ("LOG_FORMAT", "json"),
    ];
    let mut child =
        testkit::spawn_process(env!("CARGO_BIN_EXE_order-service"), Vec::<&str>::new(), env)
            .await
            .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{base}/health/ready"), Duration::from_secs(30))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stream = testkit::order_stream(base.clone(), 8, Duration::from_millis(1), stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let testkit::Streamed {
        accepted,
        other: failed,
    } = stream.await.unwrap();
    assert!(
        accepted.len() >= 20,
        "{} accepted before the kill",
        accepted.len()
    );
    assert!(
        !failed.is_empty(),
        "requests failed once the process was killed"
    );

    child.restart().await.unwrap();
    testkit::wait_for_http(&format!("{base}/health/ready"), Duration::from_secs(30))
        .await
        .unwrap();

    // Every stored order, acknowledged to its client or not, must reach Kafka.
    let stored: Vec<String> = sqlx::query_scalar("SELECT order_number FROM orders")
        .fetch_all(&stack.orders_db)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    for n in &accepted {
        assert!(stored.contains(n), "accepted order {n} is stored");
    }
    let got = events_for(&kafka, &stored, Duration::from_secs(60)).await;
    let seen: HashSet<&str> = got.iter().map(|m| m.key.as_str()).collect();
    let missing: Vec<_> = stored
        .iter()
        .filter(|n| !seen.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing",
        missing.len(),
        stored.len()
    );
    eprintln!(
        "kill -9 after {} accepted orders ({} stored): every event delivered; {} messages read (duplicates allowed: at-least-once)",
        accepted.len(),
        stored.len(),
        got.len()
    );
    child.stop(Duration::from_secs(10)).await.unwrap();
}
