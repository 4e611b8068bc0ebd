//! Prices come from the catalogue: a line whose price is not product-service's is refused
//! (422 `price-mismatch`), nothing is reserved or stored; the listed price is accepted.

use std::sync::Arc;
use std::time::Duration;

use order_service::catalog::PriceCheck;
use product_service::store::embedded::EmbeddedStore;
use serde_json::json;

use crate::{ADMIN, Stack, line};

/// product-service in-process with an embedded store, registered in the stack's registry.
async fn start_products(
    stack: &Stack,
    dir: &std::path::Path,
) -> testkit::InProcess<product_service::RunError> {
    let store = EmbeddedStore::open(dir.join("products")).await.unwrap();
    let products = testkit::InProcess::start(
        &product_service::SPEC,
        kit::CommonArgs::for_tests(Some(&stack.registry_url())),
        |service| product_service::serve(Arc::new(store), service),
    )
    .await
    .unwrap();
    products.wait_ready(Duration::from_secs(30)).await.unwrap();
    let res = stack
        .http
        .post(products.url("/api/product"))
        .header("authorization", ADMIN)
        .json(&json!({"skuCode": "phone", "name": "Phone", "price": "19.99"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    products
}

/// Price 0 for a 19.99 product is 422 price-mismatch naming the listed price, with nothing
/// reserved or stored; an unlisted SKU is 422 unknown-sku; 19.99 (or 19.990) is placed; with
/// the catalogue gone the order gets the 503 fallback.
#[tokio::test]
async fn prices_come_from_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::dependencies().await;
    stack.start_inventory().await;
    stack.set_stock("phone", 10).await;
    stack.set_stock("ghost", 10).await;
    let products = start_products(&stack, dir.path()).await;
    let mut config = stack.order_config();
    config.price_check = PriceCheck::Catalog;
    stack.start_order(config).await;

    // order-service finds the catalogue through the registry: the first orders may meet an
    // empty cache (503); an order at the listed price is placed once it is found.
    let placed = testkit::eventually(
        "order-service finding product-service",
        Duration::from_secs(20),
        || async {
            let (s, _, body) = stack.order(json!([line("phone", "19.99", 1)]), None).await;
            assert!(s == 201 || s == 503, "{s} {body}");
            (s == 201).then_some(body)
        },
    )
    .await;
    assert_eq!(placed["total"], "19.99");
    assert_eq!(stack.stock("phone").await, 9);

    let (s, _, body) = stack
        .order(
            json!([line("phone", "0", 2), line("phone", "19.990", 1)]),
            None,
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        body["type"],
        "https://platform.local/problems/price-mismatch"
    );
    assert_eq!(
        body["mismatches"],
        json!([{"skuCode": "phone", "price": "0", "catalogPrice": "19.99"}])
    );
    let (s, _, body) = stack.order(json!([line("ghost", "1.00", 1)]), None).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["unknownSkus"], json!(["ghost"]));
    // Refused orders reserved and stored nothing.
    assert_eq!(stack.stock("phone").await, 9);
    assert_eq!(stack.stock("ghost").await, 10);
    assert_eq!(stack.count("orders").await, 1);

    let (s, _, _) = stack.order(json!([line("phone", "19.990", 1)]), None).await;
    assert_eq!(s, 201);

    products.stop().await.unwrap();
    let fallback = testkit::eventually(
        "the fallback without a catalogue",
        Duration::from_secs(20),
        || async {
            let (s, _, body) = stack.order(json!([line("phone", "19.99", 1)]), None).await;
            (s == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(fallback["detail"], order_service::error::FALLBACK_DETAIL);
}
