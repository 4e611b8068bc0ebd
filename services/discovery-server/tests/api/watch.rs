//! The long-poll watch: wakes on a change (not at its timeout), times out
//! with nothing, resets when the client's version is unusable. How fast it
//! wakes is a benchmark's question, not these tests'.

use std::time::Duration;

use kit::registry::model::{ActionType, WatchResponse};

use crate::helpers::{TestApp, eventually, instance};

async fn watch(app: &TestApp, since: u64, timeout_secs: u64) -> (WatchResponse, u64) {
    let res = app
        .http
        .get(app.eureka(&format!("watch?since={since}&timeoutSecs={timeout_secs}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let header: u64 = res.headers()["x-registry-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (res.json().await.unwrap(), header)
}

/// A waiting watcher is woken by a registration, long before its own timeout, with exactly that change.
#[tokio::test]
async fn wakes_on_change() {
    let app = TestApp::system().await;
    for n in 0..20u16 {
        let since = app.state.registry.version();
        let waiter = {
            let http = app.http.clone();
            // 60 s, the registry's longest watch, is twice the wait below: an answer in time can
            // only be the wake-up.
            let url = app.eureka(&format!("watch?since={since}&timeoutSecs=60"));
            tokio::spawn(async move {
                let res = http.get(url).send().await.unwrap();
                res.json::<WatchResponse>().await.unwrap()
            })
        };
        eventually("the watcher to wait", Duration::from_secs(5), || async {
            app.state.registry.stats().watchers == 1
        })
        .await;
        app.register(&instance("a", &format!("i{n}"), 1000 + n))
            .await;
        let answer = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the registration wakes the watcher before its 60 s timeout")
            .unwrap();
        assert!(!answer.reset);
        assert_eq!(answer.version, since + 1);
        assert_eq!(answer.changes.len(), 1);
        assert_eq!(answer.changes[0].action, ActionType::Added);
        assert_eq!(answer.changes[0].instance.instance_id, format!("i{n}"));
    }
    assert_eq!(app.state.registry.stats().watchers, 0);
}

/// With nothing changing, the watch waits (the registry holds it as a watcher) and then answers
/// by itself with no changes and the same version.
#[tokio::test]
async fn times_out_with_no_changes() {
    let app = TestApp::system().await;
    app.register(&instance("a", "1", 1000)).await;
    let since = app.state.registry.version();
    let waiter = tokio::spawn({
        let http = app.http.clone();
        let url = app.eureka(&format!("watch?since={since}&timeoutSecs=2"));
        async move {
            let res = http.get(url).send().await.unwrap();
            let header: u64 = res.headers()["x-registry-version"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (res.json::<WatchResponse>().await.unwrap(), header)
        }
    });
    eventually("the watcher to wait", Duration::from_secs(5), || async {
        app.state.registry.stats().watchers == 1
    })
    .await;
    let (answer, header) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the watch answers after its 2 s timeout")
        .unwrap();
    assert_eq!(app.state.registry.stats().watchers, 0);
    assert_eq!(answer.version, since);
    assert_eq!(header, since);
    assert!(!answer.reset);
    assert!(answer.changes.is_empty());
}

/// Version 0, a version from the future (a restarted registry) and a version older than the change log all get the whole registry as a reset.
#[tokio::test]
async fn resets() {
    let app = TestApp::start_with(kit::clock::Clock::manual(crate::helpers::T0), |c| {
        c.registry.change_log_capacity = 2
    })
    .await;
    let v0 = app.state.registry.version();
    for n in 0..5u16 {
        app.register(&instance("a", &format!("i{n}"), 1000 + n))
            .await;
    }
    for since in [0, v0 + 1, v0 + 999] {
        let (answer, header) = watch(&app, since, 0).await;
        assert!(answer.reset, "{since}");
        assert_eq!(answer.version, v0 + 5);
        assert_eq!(header, v0 + 5);
        assert_eq!(answer.changes.len(), 5);
        assert!(answer.changes.iter().all(|c| c.action == ActionType::Added));
    }
    // Still in the log: an incremental answer.
    let (answer, _) = watch(&app, v0 + 3, 0).await;
    assert!(!answer.reset);
    assert_eq!(answer.changes.len(), 2);
}

/// Shutting the registry down answers waiting watchers at once instead of holding the drain.
#[tokio::test]
async fn shutdown_releases_watchers() {
    let app = TestApp::system().await;
    let since = app.state.registry.version();
    let url = app.eureka(&format!("watch?since={since}&timeoutSecs=60"));
    let http = app.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await.unwrap().status() });
    eventually("the watcher to wait", Duration::from_secs(5), || async {
        app.state.registry.stats().watchers == 1
    })
    .await;
    app.stop().await;
    // The watch would hold for 60 s: an answer well before that is the release.
    let status = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("shutdown answers the watcher before its 60 s timeout")
        .unwrap();
    assert_eq!(status, 200);
}
