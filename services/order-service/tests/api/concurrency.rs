//! 1,000 concurrent orders for the last 100 units.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::{Stack, line};

/// 1,000 orders (64 in flight) for a SKU with 100 units: exactly 100 accepted, stock 0, never negative, no 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_orders_for_hundred_units() {
    // A generous time limit and slow-call threshold: this test is about
    // correctness under contention, not about the breaker shedding load
    // (64 reservations queueing on one row of a loaded 2-core machine can
    // take over a second each, which the default 1s threshold counts as
    // slow, and five slow calls in a row open the breaker).
    let stack = Stack::start_with(|c| {
        c.inventory_timeout = Duration::from_secs(20);
        c.breaker.breaker_slow_call_duration_threshold = Duration::from_secs(20);
    })
    .await;
    stack.set_stock("hot", 100).await;
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..1000)
        .map(|_| {
            let stack = &stack;
            async move { stack.order(json!([line("hot", "9.99", 1)]), None).await.0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    let other: Vec<_> = statuses
        .iter()
        .filter(|s| **s != 201 && **s != 409)
        .collect();
    eprintln!(
        "1000 orders in {elapsed:?} ({:.0}/s): {accepted} accepted, {refused} refused, other {other:?}",
        1000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(accepted, 100);
    assert_eq!(refused, 900);
    assert!(other.is_empty());
    assert_eq!(stack.stock("hot").await, 0);
    assert_eq!(stack.count("orders").await, 100);
    assert_eq!(stack.count("outbox").await, 100);
    let reserved: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM reservation_lines WHERE sku_code = 'hot'",
    )
    .fetch_one(&stack.inventory_db)
    .await
    .unwrap();
    assert_eq!(reserved, 100, "reservations match accepted orders");
    assert_eq!(stack.breaker().await["state"], "CLOSED");
}
