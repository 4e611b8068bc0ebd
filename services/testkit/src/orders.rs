//! A stream of orders against an order-service, for tests that break something while orders keep
//! coming (a broker outage, a crashed process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

/// The body every streamed order posts: one phone at 1.50.
const ORDER: &str = r#"{"lines": [{"skuCode": "phone", "price": "1.50", "quantity": 1}]}"#;

/// After a request that got no answer (the process is down): slow down at least this much.
const AFTER_FAILURE: Duration = Duration::from_millis(20);

/// What an [`order_stream`] saw.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Numbers of the orders answered 201, in no particular order.
    pub accepted: Vec<String>,
    /// Every other outcome: an HTTP status, or the client's error.
    pub other: Vec<String>,
}

/// Posts orders (`POST {base}/api/order`, one phone) from `workers` loops, pausing `pace` after
/// each (at least 20 ms after an unanswered one), until `stop` is set; returns what they saw.
pub fn order_stream(
    base: String,
    workers: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Streamed> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with a timeout");
        let mut loops = JoinSet::new();
        for _ in 0..workers {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            loops.spawn(async move {
                let mut seen = Streamed::default();
                while !stop.load(Ordering::Relaxed) {
                    let res = http
                        .post(format!("{base}/api/order"))
                        .header("content-type", "application/json")
                        .body(ORDER)
                        .send()
                        .await;
                    let pause = match res {
                        Ok(r) if r.status() == 201 => {
                            let number = r
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|v| v["orderNumber"].as_str().map(str::to_owned));
                            match number {
                                Some(n) => seen.accepted.push(n),
                                None => seen.other.push("201 without an orderNumber".into()),
                            }
                            pace
                        }
                        Ok(r) => {
                            seen.other.push(r.status().to_string());
                            pace
                        }
                        Err(e) => {
                            seen.other.push(e.to_string());
                            pace.max(AFTER_FAILURE)
                        }
                    };
                    tokio::time::sleep(pause).await;
                }
                seen
            });
        }
        let mut all = Streamed::default();
        while let Some(done) = loops.join_next().await {
            let seen = done.expect("an order loop panicked");
            all.accepted.extend(seen.accepted);
            all.other.extend(seen.other);
        }
        all
    })
}
