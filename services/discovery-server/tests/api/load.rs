//! Thousands of instances registering at once.

use std::time::{Duration, Instant};

use kit::registry::model::InstanceEnvelope;

use crate::helpers::{TestApp, instance};

/// 2,500 instances register concurrently; every one is there once, versions count every registration, and renewals all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_register_concurrently() {
    const N: u16 = 2500;
    let app = TestApp::system().await;
    let v0 = app.state.registry.version();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(N as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|n| {
            let http = http.clone();
            let app_name = format!("svc-{}", n % 25);
            let url = app.eureka(&format!("apps/{app_name}"));
            tokio::spawn(async move {
                let body = InstanceEnvelope {
                    instance: instance(&app_name, &format!("i{n}"), 10_000 + n),
                };
                http.post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let took = start.elapsed();
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(204)))).count();
    assert_eq!(
        ok,
        N as usize,
        "{:?}",
        results.iter().find(|r| !matches!(r, Ok(Ok(204))))
    );
    println!("{N} concurrent registrations in {took:?}");

    assert_eq!(app.instance_count(), N as usize);
    assert_eq!(app.state.registry.version(), v0 + u64::from(N));
    let apps = app.apps().await.applications;
    assert_eq!(apps.application.len(), 25);
    assert_eq!(apps.instances().count(), N as usize);
    assert_eq!(apps.apps_hashcode, format!("UP_{N}_"));

    let renewals: Vec<_> = (0..N)
        .map(|n| {
            let http = http.clone();
            let url = app.eureka(&format!("apps/SVC-{}/i{n}", n % 25));
            tokio::spawn(async move { http.put(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let renewed = futures::future::join_all(renewals)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(200))))
        .count();
    assert_eq!(renewed, N as usize);
    assert_eq!(
        app.state.registry.version(),
        v0 + u64::from(N),
        "renewals are not changes"
    );
}
