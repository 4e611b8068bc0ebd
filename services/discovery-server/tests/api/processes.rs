//! The "Done when" check end to end: the registry binary and two kit-based
//! instances (the `echo-service` example) as separate processes; one is
//! killed with `kill -9` and must be evicted within its lease.

use std::time::{Duration, Instant};

use kit::registry::model::ApplicationsEnvelope;

/// Renew interval of the instances; their lease is three times that. The
/// test uses 1 s / 3 s; `DISCOVERY_E2E_RENEW_SECS=5` runs it with the
/// platform defaults (5 s / 15 s).
fn renew_secs() -> u64 {
    std::env::var("DISCOVERY_E2E_RENEW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1)
}

async fn echo_instances(http: &reqwest::Client, registry: &str) -> Vec<(String, u16, u64)> {
    let res = http
        .get(format!("{registry}/eureka/apps"))
        .header("accept", "application/json")
        .send()
        .await;
    let Ok(res) = res else { return Vec::new() };
    let Ok(apps) = res.json::<ApplicationsEnvelope>().await else {
        return Vec::new();
    };
    apps.applications
        .instances()
        .filter(|i| i.app == "ECHO-SERVICE" && i.status == kit::registry::model::InstanceStatus::Up)
        .map(|i| {
            (
                i.instance_id.clone(),
                i.port.port,
                i.lease_info.last_renewal_timestamp,
            )
        })
        .collect()
}

/// Two echo-service processes register; the one killed with kill -9 is evicted within its lease while the other stays.
#[tokio::test]
async fn killed_instance_is_evicted_within_its_lease() {
    let renew = renew_secs();
    let lease = Duration::from_secs(renew * 3);
    let registry = testkit::Starter::new(env!("CARGO_BIN_EXE_discovery-server"))
        .envs([("ADMIN_TOKEN", "e2e"), ("RUST_LOG", "info")])
        .start()
        .await
        .unwrap();
    let registry_url = registry.base.clone();

    let echo = testkit::target_dir().join("debug/examples/echo-service");
    assert!(
        echo.is_file(),
        "{} is missing: `cargo test` builds examples; or run `cargo build -p discovery-server --examples`",
        echo.display()
    );
    let renew_arg = format!("{renew}s");
    let lease_arg = format!("{}s", renew * 3);
    let mut instances = Vec::new();
    for id in ["echo-a", "echo-b"] {
        let child = testkit::spawn_process(
            &echo,
            [
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--registry-url",
                &registry_url,
                "--advertise-host",
                "127.0.0.1",
                "--instance-id",
                id,
                "--lease-renewal-interval",
                &renew_arg,
                "--lease-duration",
                &lease_arg,
            ],
            [("ADMIN_TOKEN", "e2e"), ("RUST_LOG", "info")],
        )
        .await
        .unwrap();
        instances.push(child);
    }

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let registered = loop {
        let found = echo_instances(&http, &registry_url).await;
        if found.len() == 2 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "both instances register; saw {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Each answers on the port it registered.
    for (id, port, _) in &registered {
        let body = testkit::body_text(http.get(format!("http://127.0.0.1:{port}/echo"))).await;
        assert_eq!(&body, id);
    }
    // Let a few renewals happen, then kill -9 echo-a.
    tokio::time::sleep(Duration::from_secs(renew) + Duration::from_millis(300)).await;
    let last_renewal_before = echo_instances(&http, &registry_url)
        .await
        .into_iter()
        .find(|(id, _, _)| id == "echo-a")
        .map(|(_, _, t)| t)
        .unwrap();
    instances[0].kill().await.unwrap();
    let killed = Instant::now();
    let killed_ms = kit::clock::Clock::System.now_millis();

    let evicted_after = loop {
        let found = echo_instances(&http, &registry_url).await;
        if !found.iter().any(|(id, _, _)| id == "echo-a") {
            assert!(
                found.iter().any(|(id, _, _)| id == "echo-b"),
                "echo-b stays"
            );
            break killed.elapsed();
        }
        assert!(killed.elapsed() < lease * 3, "echo-a was not evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let silent_before_kill = Duration::from_millis(killed_ms.saturating_sub(last_renewal_before));
    println!(
        "kill -9 → evicted after {evicted_after:?} (lease {lease:?}, renew every {renew} s; last renewal {silent_before_kill:?} before the kill)"
    );
    // Evicted when the lease ran out (plus this test's 20 ms polling and room for a loaded machine).
    assert!(
        evicted_after <= lease + Duration::from_millis(500),
        "evicted after {evicted_after:?}, lease {lease:?}"
    );
    assert!(evicted_after + silent_before_kill + Duration::from_millis(150) >= lease);
    // The survivor keeps renewing.
    tokio::time::sleep(lease).await;
    let left = echo_instances(&http, &registry_url).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(instances[1].is_running());
}
