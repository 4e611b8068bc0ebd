//! An instance killed with `kill -9` under load: no failed GET, ejected at
//! once, back in rotation once it returns.
//!
//! The three instances are real processes (the `echo-upstream` binary) that
//! register themselves with the real registry; the dead one stays
//! registered (its lease has not expired), so only the gateway's passive
//! ejection keeps traffic away from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::helpers::*;

async fn spawn_echo(registry: &Registry, id: &str, port: u16) -> testkit::ChildGuard {
    testkit::Starter::new(workspace_bin("echo-upstream"))
        .port(port)
        .args(["--service-name", "product-service", "--instance-id", id])
        .args(registered(registry))
        .args(["--lease-renewal-interval", "1s", "--lease-duration", "30s"])
        .args(["--admin-token", "x"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .process
}

/// What the load generator saw.
#[derive(Default)]
struct Seen {
    /// Answers by instance, with the time each one's request was sent: an answer
    /// that arrives after the kill may have left the instance before it, but no
    /// request sent after the kill can be answered by it.
    by_instance: HashMap<String, Vec<Instant>>,
    failures: Vec<String>,
}

/// The killed instance's GETs are retried elsewhere (none fails), it is
/// ejected, and it serves again after it is restarted.
#[tokio::test]
async fn killed_instance_is_ejected_and_returns() {
    let registry = Registry::start().await;
    let mut instances = Vec::new();
    for k in 0..3 {
        let port = testkit::free_port().unwrap();
        instances.push(spawn_echo(&registry, &format!("product-{k}"), port).await);
    }
    let routes = r#"
[[routes]]
id = "product"
uri = "lb://product-service"
predicates = ["Path=/api/product/**"]
filters = ["StripPrefix=2"]
public = true
"#;
    let gw = Gateway::start_with(GatewaySetup {
        routes,
        registry: &registry,
        validator: None,
        adjust: Some(Box::new(|c| {
            c.ejection_base = Duration::from_millis(300);
            c.ejection_max = Duration::from_secs(1);
        })),
    })
    .await;
    gw.wait_for_instances("product-service", 3).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (c, url, seen, stop) = (
            client(),
            gw.url("/api/product/hello"),
            seen.clone(),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match c.get(&url).send().await {
                    Ok(res) if res.status() == 200 => {
                        let who = res.headers()["x-instance"].to_str().unwrap().to_string();
                        let _ = res.bytes().await;
                        seen.lock().by_instance.entry(who).or_default().push(sent);
                    }
                    Ok(res) => seen
                        .lock()
                        .failures
                        .push(format!("status {}", res.status())),
                    Err(e) => seen.lock().failures.push(e.to_string()),
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    instances[1].kill().await.unwrap();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let status = gw.gateway.balancer("product-service").unwrap().status();
    let victim = status
        .iter()
        .find(|s| s.instance_id == "product-1")
        .unwrap();
    assert!(
        victim.ejections >= 1,
        "the dead instance was ejected: {victim:?}"
    );
    let served_late = seen
        .lock()
        .by_instance
        .get("product-1")
        .map_or(0, |v| v.iter().filter(|t| **t > killed_at).count());
    assert_eq!(
        served_late, 0,
        "no request sent after the kill is answered by the dead process"
    );

    instances[1].restart().await.unwrap();
    let restarted_at = Instant::now();
    testkit::wait_for_http(
        &format!(
            "http://127.0.0.1:{}/health/live",
            instance_port(&status, "product-1")
        ),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    testkit::eventually(
        "the restarted instance to serve again",
        Duration::from_secs(10),
        || {
            std::future::ready(
                seen.lock()
                    .by_instance
                    .get("product-1")
                    .is_some_and(|v| v.iter().filter(|t| **t > restarted_at).count() >= 20),
            )
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let seen = seen.lock();
    let total: usize = seen.by_instance.values().map(Vec::len).sum();
    println!(
        "answers: {total}, by instance: {:?}, failures: {}",
        seen.by_instance
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect::<Vec<_>>(),
        seen.failures.len()
    );
    assert!(seen.failures.is_empty(), "failed GETs: {:?}", seen.failures);
    assert!(total > 500, "the load ran: {total}");
}

fn instance_port(status: &[kit::lb::EndpointStatus], id: &str) -> u16 {
    let url = &status.iter().find(|s| s.instance_id == id).unwrap().url;
    url.rsplit(':').next().unwrap().parse().unwrap()
}
