//! The real binary: two instances on one embedded store file behave as one catalogue.

use std::time::Duration;

use serde_json::{Value, json};

/// Starts the product-service binary on a free port with `PRODUCT_DB_URL=embedded:<dir>`.
async fn start(dir: &std::path::Path) -> (testkit::ChildGuard, String) {
    let started = testkit::Starter::new(env!("CARGO_BIN_EXE_product-service"))
        .envs([
            ("PRODUCT_DB_URL", format!("embedded:{}", dir.display())),
            ("REGISTRY_DISABLED", "true".into()),
            ("ADMIN_TOKEN", "test-admin-token".into()),
            ("RUST_LOG", "info".into()),
        ])
        .within(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    (started.process, started.base)
}

/// Two processes share one redb file: each sees the other's products, and concurrent creates
/// of one sku through both store exactly one product.
#[tokio::test]
async fn two_instances_share_one_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, base_a) = start(dir.path()).await;
    let (_b, base_b) = start(dir.path()).await;
    let client = crate::helpers::admin_client();

    let res = client
        .post(format!("{base_a}/api/product"))
        .json(&json!({"skuCode":"shared","name":"Shared","price":"5.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let seen: Value = testkit::body_json(client.get(format!("{base_b}{location}"))).await;
    assert_eq!(seen["skuCode"], "shared");

    let attempts = (0..20).map(|n| {
        let base = if n % 2 == 0 { &base_a } else { &base_b };
        client
            .post(format!("{base}/api/product"))
            .json(&json!({"skuCode":"race","name":format!("Try {n}"),"price":"1.00"}))
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    for base in [&base_a, &base_b] {
        let page: Value =
            testkit::body_json(client.get(format!("{base}/api/product?skuCode=race"))).await;
        assert_eq!(page["total"], 1);
    }
}

/// A bad PRODUCT_DB_URL is a usage error (exit 2) naming the accepted forms, not a panic.
#[tokio::test]
async fn bad_store_url_is_a_usage_error() {
    let mut child = testkit::spawn_process(
        env!("CARGO_BIN_EXE_product-service"),
        ["--port", "0"],
        [("PRODUCT_DB_URL", "postgres://u:secret@h/db")],
    )
    .await
    .unwrap();
    let status = child.wait(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(2));
    let log = child.log_tail(20);
    assert!(log.contains("embedded:<dir>"), "{log}");
    assert!(!log.contains("secret"), "{log}");
}
