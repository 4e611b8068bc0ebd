//! The broker down for 30 s while orders keep coming.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::{Stack, events_for, line};

/// Places orders from `workers` loops, one every `pace` each, until `stop`; returns (accepted numbers, other statuses).
pub fn order_stream(
    base: String,
    workers: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, Vec<String>)> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let other = Arc::new(Mutex::new(Vec::new()));
        let loops = (0..workers).map(|_| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            let (accepted, other) = (accepted.clone(), other.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let res = http
                        .post(format!("{base}/api/order"))
                        .json(&json!({"lines": [line("phone", "1.50", 1)]}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if let Some(n) = v["orderNumber"].as_str() {
                                accepted.lock().push(n.to_string());
                            }
                        }
                        Ok(r) => other.lock().push(r.status().to_string()),
                        Err(e) => other.lock().push(e.to_string()),
                    }
                    tokio::time::sleep(pace).await;
                }
            }
        });
        futures::future::join_all(loops).await;
        let a = accepted.lock().clone();
        let o = other.lock().clone();
        (a, o)
    })
}

/// tansu stopped for 30 s during a stream of orders: every order is accepted, every event is delivered after it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_down_for_30_seconds() {
    let mut stack = Stack::start().await;
    stack.set_stock("phone", 1_000_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = order_stream(
        stack.order_url(""),
        2,
        Duration::from_millis(100),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    stack.kafka.kill().await.unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let depth = stack
        .http
        .get(stack.order_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let (accepted, other) = stream.await.unwrap();
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
