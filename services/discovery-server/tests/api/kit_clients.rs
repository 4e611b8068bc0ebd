//! The kit's own registry client against the real registry: agents
//! register and renew, Discovery follows changes through the watch, and a
//! restarted registry gets every instance back within one renew interval.

use std::time::Duration;

use kit::config::ServiceSpec;

use crate::helpers::{KitInstance, TestApp, eventually, instance, spec};

static WATCHER: ServiceSpec = spec("kit-watcher");
static ECHO: ServiceSpec = spec("kit-echo");

/// A kit service's Discovery sees registrations, overrides and cancellations through the watch.
#[tokio::test]
async fn discovery_follows_the_watch() {
    let app = TestApp::system().await;
    let kit = KitInstance::start(&WATCHER, &app.url, Duration::from_secs(1)).await;
    // Starts the watch and loads a first view.
    assert!(kit.discovery.instances("shop").await.unwrap().is_empty());

    app.register(&instance("shop", "s1", 8081)).await;
    eventually("discovery to see s1", Duration::from_secs(2), || async {
        kit.discovery.cached("shop").len() == 1
    })
    .await;
    let s1 = &kit.discovery.cached("shop")[0];
    assert_eq!(s1.base_url(), "http://127.0.0.1:8081");

    app.http
        .put(app.eureka("apps/SHOP/s1/status?value=OUT_OF_SERVICE"))
        .send()
        .await
        .unwrap();
    eventually("s1 out of service", Duration::from_secs(2), || async {
        kit.discovery.cached("shop").is_empty()
    })
    .await;
    assert_eq!(
        kit.discovery
            .snapshot()
            .iter()
            .filter(|i| i.app == "SHOP")
            .count(),
        1
    );

    app.http
        .delete(app.eureka("apps/SHOP/s1"))
        .send()
        .await
        .unwrap();
    eventually("s1 gone", Duration::from_secs(2), || async {
        !kit.discovery.snapshot().iter().any(|i| i.app == "SHOP")
    })
    .await;
    kit.stop().await;
}

/// A kit service registers, renews at its interval and deregisters when it stops.
#[tokio::test]
async fn agent_registers_renews_deregisters() {
    let app = TestApp::system().await;
    let kit = KitInstance::start(&ECHO, &app.url, Duration::from_secs(1)).await;
    eventually("registration", Duration::from_secs(5), || async {
        app.instance_count() == 1
    })
    .await;
    let (_, v) = app
        .get_json(&app.eureka(&format!("apps/KIT-ECHO/{}", kit.instance_id)))
        .await;
    assert_eq!(v["instance"]["status"], "UP");
    assert_eq!(v["instance"]["port"]["$"], kit.port);
    assert_eq!(v["instance"]["leaseInfo"]["renewalIntervalInSecs"], 1);
    assert_eq!(v["instance"]["leaseInfo"]["durationInSecs"], 3);
    eventually("two renewals", Duration::from_secs(5), || async {
        app.state.registry.stats().renewals >= 2
    })
    .await;
    kit.stop().await;
    assert_eq!(app.instance_count(), 0, "deregistered at shutdown");
    assert_eq!(app.state.registry.stats().cancellations, 1);
}

/// After a registry restart on the same port, kit-based instances are registered again within one renew interval.
#[tokio::test]
async fn registry_restart_reregisters_within_one_interval() {
    let interval = Duration::from_secs(1);
    let first = TestApp::system().await;
    let port = first.port;
    let url = first.url.clone();
    let a = KitInstance::start(&ECHO, &url, interval).await;
    let b = KitInstance::start(&WATCHER, &url, interval).await;
    eventually("both registered", Duration::from_secs(5), || async {
        first.instance_count() == 2
    })
    .await;
    assert_eq!(b.discovery.instances("kit-echo").await.unwrap().len(), 1);
    first.stop().await;

    let second =
        TestApp::start_with(kit::clock::Clock::System, |c| c.common.port = Some(port)).await;
    // Re-registers on its own (the heartbeat's 404 starts a registration); how soon is the
    // backoff's business, measured in benchmarks, not asserted here.
    eventually("both registered again", Duration::from_secs(5), || async {
        second.instance_count() == 2
    })
    .await;
    // The watcher's Discovery resets onto the new registry and sees its peer.
    eventually(
        "discovery on the new registry",
        Duration::from_secs(5),
        || async { b.discovery.cached("kit-echo").len() == 1 },
    )
    .await;
    a.stop().await;
    b.stop().await;
}
