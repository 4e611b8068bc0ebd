//! Leases over HTTP, driven by a manual clock: renewals keep instances,
//! silence expires them, the evictor removes them, and self-preservation
//! stops that when most renewals are lost.

use std::time::Duration;

use crate::helpers::{ADMIN_TOKEN, T0, TestApp, instance};

/// An instance renewed in time stays; one that stops renewing is evicted exactly when its lease (from leaseInfo) ends.
#[tokio::test]
async fn register_renew_expire_evict() {
    let app = TestApp::manual().await;
    let mut short = instance("a", "short", 1);
    short.lease_info.renewal_interval_in_secs = 1;
    short.lease_info.duration_in_secs = 3;
    app.register(&short).await;
    app.register(&instance("a", "default", 2)).await;
    let reg = &app.state.registry;

    for _ in 0..14 {
        app.advance(Duration::from_secs(1));
        assert_eq!(app.renew("A", "short").await, 200);
        assert!(reg.tick().evicted.is_empty());
    }
    // "default" (15 s lease) was last renewed at registration, 15 s ago.
    app.advance(Duration::from_secs(1));
    assert_eq!(app.renew("A", "short").await, 200);
    let t = reg.tick();
    assert_eq!(t.evicted, [("A".to_string(), "default".to_string())]);
    assert_eq!(t.next_expiry_ms, Some(T0 + 18_000));
    assert_eq!(app.renew("A", "default").await, 404);
    // "short" stops renewing: gone when its 3 s lease ends.
    app.advance(Duration::from_secs(2));
    assert!(reg.tick().evicted.is_empty());
    app.advance(Duration::from_secs(1));
    let t = reg.tick();
    assert_eq!(t.evicted, [("A".to_string(), "short".to_string())]);
    assert_eq!(app.instance_count(), 0);
    assert_eq!(reg.stats().evictions, 2);
    let w = reg.changes_since(reg.version() - 2);
    assert_eq!(
        w.changes[0].instance.lease_info.eviction_timestamp,
        T0 + 15_000
    );
    assert_eq!(
        w.changes[1].instance.lease_info.eviction_timestamp,
        T0 + 18_000
    );
}

/// The background evictor (not only explicit passes) removes an expired instance.
#[tokio::test]
async fn background_evictor_runs() {
    let app = TestApp::start_with(kit::clock::Clock::manual(T0), |c| {
        c.registry.eviction_interval = Duration::from_millis(20)
    })
    .await;
    app.register(&instance("a", "1", 1)).await;
    app.advance(Duration::from_secs(16));
    crate::helpers::eventually("eviction", Duration::from_secs(2), || async {
        app.instance_count() == 0
    })
    .await;
}

/// Renews the given instances of app A at their 5 s interval while moving the clock `secs` seconds, one evictor pass per second.
async fn run(app: &TestApp, secs: u64, alive: &[String]) -> Vec<discovery_server::registry::Tick> {
    let mut ticks = Vec::new();
    for _ in 0..secs {
        app.advance(Duration::from_secs(1));
        let now_s = (app.clock.now_millis() - T0) / 1000;
        if now_s.is_multiple_of(5) {
            for id in alive {
                assert_eq!(app.renew("A", id).await, 200);
            }
        }
        ticks.push(app.state.registry.tick());
    }
    ticks
}

/// Self-preservation engages when renewals collapse (before leases expire), shows in admin, metrics and the page, and ends when renewals recover.
#[tokio::test]
async fn self_preservation_enters_and_leaves() {
    let app = TestApp::manual().await;
    let ids: Vec<String> = (0..10).map(|n| format!("i{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        app.register(&instance("a", id, 1000 + n as u16)).await;
    }
    let ticks = run(&app, 120, &ids).await;
    assert!(
        ticks.iter().all(|t| !t.evaluation.preserving),
        "fresh, healthy registry"
    );

    // The registry's network breaks: nobody's renewals arrive.
    let ticks = run(&app, 20, &[]).await;
    let entered = ticks
        .iter()
        .position(|t| t.evaluation.preserving)
        .expect("entered");
    assert!(
        entered < 15,
        "entered after {entered} s, before the 15 s leases ran out"
    );
    assert!(
        ticks.iter().all(|t| t.evicted.is_empty()),
        "nothing evicted"
    );
    assert_eq!(app.instance_count(), 10);

    let admin = app.admin().await;
    assert_eq!(admin["selfPreservation"]["active"], true, "{admin}");
    assert_eq!(admin["selfPreservation"]["timesEntered"], 1);
    assert!(admin["renewals"]["measured"].as_u64().unwrap() < 102);
    assert_eq!(
        admin["config"]["registry"]["preservation"]["threshold"],
        0.85
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("discovery_self_preservation 1"),
        "{metrics}"
    );
    let page = app.text(&app.url, None).await;
    assert!(page.contains("SELF-PRESERVATION MODE"), "{page}");

    // Nine come back; i0 stays dead.
    let ticks = run(&app, 70, &ids[1..]).await;
    let left = ticks
        .iter()
        .position(|t| !t.evaluation.preserving)
        .expect("left");
    assert_eq!(ticks[left].evicted, [("A".to_string(), "i0".to_string())]);
    assert_eq!(app.instance_count(), 9);
    let admin = app.admin().await;
    assert_eq!(admin["selfPreservation"]["active"], false);
    assert!(
        app.metrics()
            .await
            .contains("discovery_self_preservation 0")
    );
    let page = app.text(&app.url, None).await;
    assert!(!page.contains("SELF-PRESERVATION MODE"));
    // The admin endpoint is not open to the world.
    let admin_url = format!("{}/admin/registry", app.url);
    assert_eq!(app.status(app.http.get(&admin_url)).await, 401);
    let wrong = app
        .http
        .get(&admin_url)
        .bearer_auth(format!("{ADMIN_TOKEN}x"));
    assert_eq!(app.status(wrong).await, 401);
}

/// With two instances one dead instance is half the renewals, yet below the minimum size it is evicted within its lease.
#[tokio::test]
async fn two_instances_one_dies() {
    let app = TestApp::manual().await;
    let ids = vec!["i0".to_string(), "i1".to_string()];
    for (n, id) in ids.iter().enumerate() {
        app.register(&instance("a", id, 1000 + n as u16)).await;
    }
    run(&app, 60, &ids).await;
    let ticks = run(&app, 20, &ids[..1]).await;
    let evicted_after = ticks.iter().position(|t| !t.evicted.is_empty()).unwrap() + 1;
    assert_eq!(evicted_after, 15, "evicted when its 15 s lease ended");
    assert!(ticks.iter().all(|t| !t.evaluation.preserving));
}

/// Switching self-preservation off makes the registry evict even when every renewal is lost.
#[tokio::test]
async fn self_preservation_disabled() {
    let app = TestApp::start_with(kit::clock::Clock::manual(T0), |c| {
        c.registry.self_preservation = false
    })
    .await;
    let ids: Vec<String> = (0..10).map(|n| format!("i{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        app.register(&instance("a", id, 1000 + n as u16)).await;
    }
    run(&app, 60, &ids).await;
    run(&app, 16, &[]).await;
    assert_eq!(app.instance_count(), 0);
    let page = app.text(&app.url, None).await;
    assert!(page.contains("Self-preservation is switched off"));
}
