//! InProcess and registry(): a kit service in the test's process, registered with the real
//! discovery-server, leaves it when stopped.

use std::time::Duration;

use kit::config::{CommonArgs, ServiceSpec};
use testkit::InProcess;

const SPEC: ServiceSpec = ServiceSpec {
    name: "testkit-probe",
    default_port: 0,
    version: "0.0.0-test",
    registers: true,
};

/// The status of `GET /eureka/apps/TESTKIT-PROBE` on the registry.
async fn listed(registry: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{registry}/eureka/apps/TESTKIT-PROBE"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A service started with the registry's URL is ready once registered, is listed there, and
/// stopping it returns its run's result and deregisters it; the registry stops cleanly too.
#[tokio::test]
async fn service_registers_with_the_in_process_registry_and_leaves_on_stop() {
    let registry = testkit::registry().await.unwrap();
    registry.wait_ready(Duration::from_secs(20)).await.unwrap();
    let service = InProcess::start(
        &SPEC,
        CommonArgs::for_tests(Some(registry.base())),
        |service| service.serve(axum::Router::new(), axum::Router::new()),
    )
    .await
    .unwrap();
    assert_ne!(service.port(), registry.port());
    service.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(listed(registry.base()).await, 200);

    service.stop().await.unwrap();
    assert_eq!(listed(registry.base()).await, 404);
    registry.stop().await.unwrap();
}
