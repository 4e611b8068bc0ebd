//! The broker down for 30 s while orders keep coming.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Stack, events_for};

/// tansu stopped for 30 s during a stream of orders: every order is accepted, every event is delivered after it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_down_for_30_seconds() {
    let mut stack = Stack::start().await;
    stack.set_stock("phone", 1_000_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = testkit::order_stream(
        stack.order_url(""),
        2,
        Duration::from_millis(100),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    stack.kafka.kill().await.unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let depth = stack.metrics().await;
    let pending: i64 = depth
        .lines()
        .find_map(|l| l.strip_prefix("outbox_pending "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        pending > 0,
        "events wait in the outbox while the broker is down"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await;
    stack.kafka.start_again().await.unwrap();
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let testkit::Streamed { accepted, other } = stream.await.unwrap();
    assert!(other.is_empty(), "every order accepted: {other:?}");
    assert!(accepted.len() > 300, "{} orders", accepted.len());

    let expected: HashSet<String> = accepted.iter().cloned().collect();
    let got = events_for(
        &stack.kafka.bootstrap_servers(),
        &expected,
        Duration::from_secs(90),
    )
    .await;
    let seen: HashSet<&str> = got.iter().map(|m| m.key.as_str()).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|n| !seen.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "{} events missing", missing.len());
    eprintln!(
        "{} orders during a 30 s broker outage; all {} events delivered {:?} after the broker returned ({} messages read, duplicates allowed)",
        accepted.len(),
        expected.len(),
        up_at.elapsed(),
        got.len()
    );
}
