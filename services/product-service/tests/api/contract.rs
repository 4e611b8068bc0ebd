//! The store contract: one suite of checks that every [`ProductStore`] adapter passes.
//!
//! Each check is a plain async function over `&dyn ProductStore`; the `contract!` macro
//! turns every check into one test per adapter, so a failure names both. The embedded
//! store always runs (a fresh temp dir per test). MongoDB runs when `MONGODB_URL` is set
//! (each test in its own database, dropped afterwards); without it each MongoDB test prints
//! that it skipped and why, and passes: no MongoDB server can be installed on the
//! development machines.

use std::str::FromStr;
use std::sync::Arc;

use kit::page::PageRequest;
use product_service::model::{Product, ProductFields};
use product_service::store::embedded::EmbeddedStore;
use product_service::store::mongo::MongoStore;
use product_service::store::{ProductFilter, ProductStore, StoreError};
use rust_decimal::Decimal;

/// A store under test and what must outlive it (temp dir, MongoDB database to drop).
pub struct Subject {
    pub store: Arc<dyn ProductStore>,
    _dir: Option<tempfile::TempDir>,
    mongo_db: Option<mongodb::Database>,
}

impl Subject {
    /// Drops the MongoDB test database (the temp dir removes itself).
    pub async fn cleanup(self) {
        if let Some(db) = self.mongo_db {
            let _ = db.drop().await;
        }
    }
}

pub async fn embedded() -> Option<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("products"))
        .await
        .unwrap();
    Some(Subject {
        store: Arc::new(store),
        _dir: Some(dir),
        mongo_db: None,
    })
}

pub async fn mongodb() -> Option<Subject> {
    let Ok(url) = std::env::var("MONGODB_URL") else {
        testkit::skip(
            "MongoDB contract test: MONGODB_URL is not set (no MongoDB server can be installed \
             on these machines; set MONGODB_URL=mongodb://host:27017 to run it)",
        );
        return None;
    };
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let store = MongoStore::with_client(client, &name);
    let db = store.database();
    Some(Subject {
        store: Arc::new(store),
        _dir: None,
        mongo_db: Some(db),
    })
}

fn product(sku: &str, name: &str, price: &str) -> Product {
    Product::new(ProductFields {
        sku_code: sku.into(),
        name: name.into(),
        description: format!("about {name}"),
        price: Decimal::from_str(price).unwrap(),
    })
}

fn page(page: u64, size: u64) -> PageRequest {
    PageRequest::new(Some(page), Some(size), 100).unwrap()
}

/// Generates one test per (check, adapter).
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod embedded_store {
            $(
                /// The embedded store passes this contract check.
                #[tokio::test]
                async fn $check() {
                    let subject = super::embedded().await.expect("embedded store always runs");
                    super::$check(subject.store.as_ref()).await;
                    subject.cleanup().await;
                }
            )*
        }
        mod mongodb_store {
            $(
                /// The MongoDB store passes this contract check (skipped without MONGODB_URL).
                #[tokio::test]
                async fn $check() {
                    let Some(subject) = super::mongodb().await else { return };
                    super::$check(subject.store.as_ref()).await;
                    subject.cleanup().await;
                }
            )*
        }
    };
}

contract!(
    insert_then_get,
    duplicate_sku_is_refused_and_nothing_written,
    replace_keeps_id_and_moves_the_sku,
    replace_onto_another_sku_is_refused,
    replace_missing_is_not_found,
    delete_frees_the_sku,
    list_pages_in_creation_order_with_total,
    list_filters_by_name_and_sku,
    concurrent_inserts_of_one_sku_store_one,
    ping_answers,
);

/// What is inserted comes back identical, price included; unknown ids are absent.
async fn insert_then_get(store: &dyn ProductStore) {
    let p = product("iphone_15", "iPhone 15", "999.99");
    store.insert(&p).await.unwrap();
    assert_eq!(store.get(&p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(
        store.get(&p.id).await.unwrap().unwrap().price.to_string(),
        "999.99"
    );
    assert_eq!(store.get("no-such-id").await.unwrap(), None);
}

/// A second product with a taken sku is refused with DuplicateSku and leaves no trace.
async fn duplicate_sku_is_refused_and_nothing_written(store: &dyn ProductStore) {
    let first = product("sku-1", "First", "1.00");
    store.insert(&first).await.unwrap();
    let second = product("sku-1", "Second", "2.00");
    let err = store.insert(&second).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateSku { sku_code } if sku_code == "sku-1"),
        "{err}"
    );
    assert_eq!(store.get(&second.id).await.unwrap(), None);
    let all = store
        .list(&ProductFilter::default(), page(0, 10))
        .await
        .unwrap();
    assert_eq!(all.total, 1);
    assert_eq!(all.items, vec![first]);
}

/// A replacement keeps the id; a changed sku frees the old one and takes the new one.
async fn replace_keeps_id_and_moves_the_sku(store: &dyn ProductStore) {
    let p = product("old-sku", "Thing", "5.00");
    store.insert(&p).await.unwrap();
    let mut changed = p.clone();
    changed.sku_code = "new-sku".into();
    changed.name = "Better thing".into();
    changed.price = Decimal::from_str("6.50").unwrap();
    store.replace(&changed).await.unwrap();
    assert_eq!(store.get(&p.id).await.unwrap(), Some(changed.clone()));
    // The old sku is free again, the new one is taken.
    store
        .insert(&product("old-sku", "Reuse", "1.00"))
        .await
        .unwrap();
    assert!(matches!(
        store.insert(&product("new-sku", "Clash", "1.00")).await,
        Err(StoreError::DuplicateSku { .. })
    ));
    // Replacing with the same sku is no conflict with itself.
    store.replace(&changed).await.unwrap();
}

/// Moving a product onto another product's sku is refused and changes nothing.
async fn replace_onto_another_sku_is_refused(store: &dyn ProductStore) {
    let a = product("a", "A", "1.00");
    let b = product("b", "B", "2.00");
    store.insert(&a).await.unwrap();
    store.insert(&b).await.unwrap();
    let mut clash = b.clone();
    clash.sku_code = "a".into();
    assert!(matches!(
        store.replace(&clash).await,
        Err(StoreError::DuplicateSku { .. })
    ));
    assert_eq!(store.get(&b.id).await.unwrap(), Some(b));
    assert_eq!(store.get(&a.id).await.unwrap(), Some(a));
}

/// Replacing an id that does not exist is NotFound and creates nothing.
async fn replace_missing_is_not_found(store: &dyn ProductStore) {
    let ghost = product("ghost", "Ghost", "1.00");
    assert!(matches!(
        store.replace(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.get(&ghost.id).await.unwrap(), None);
}

/// Delete answers whether something was deleted and frees the sku.
async fn delete_frees_the_sku(store: &dyn ProductStore) {
    let p = product("gone", "Gone", "1.00");
    store.insert(&p).await.unwrap();
    assert!(store.delete(&p.id).await.unwrap());
    assert!(!store.delete(&p.id).await.unwrap());
    assert_eq!(store.get(&p.id).await.unwrap(), None);
    store
        .insert(&product("gone", "Back", "1.00"))
        .await
        .unwrap();
}

/// Pages follow creation order, count the total, and run empty past the end.
async fn list_pages_in_creation_order_with_total(store: &dyn ProductStore) {
    let mut made = Vec::new();
    for n in 0..7 {
        let p = product(&format!("sku-{n}"), &format!("Product {n}"), "1.00");
        store.insert(&p).await.unwrap();
        made.push(p);
        // UUIDv7 orders by millisecond; keep creations in distinct milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let all = ProductFilter::default();
    let first = store.list(&all, page(0, 3)).await.unwrap();
    assert_eq!((first.total, first.total_pages), (7, 3));
    assert_eq!(first.items, made[0..3]);
    let last = store.list(&all, page(2, 3)).await.unwrap();
    assert_eq!(last.items, made[6..7]);
    let past = store.list(&all, page(5, 3)).await.unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, 7);
}

/// Name filters are case-insensitive literal substrings; sku filters are exact; both combine.
async fn list_filters_by_name_and_sku(store: &dyn ProductStore) {
    let phone = product("iphone_15", "iPhone 15", "999.99");
    let pixel = product("pixel_8", "Google Pixel 8 (phone)", "699.00");
    let case = product("case", "Leather case", "19.90");
    for p in [&phone, &pixel, &case] {
        store.insert(p).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let by = |name: Option<&str>, sku: Option<&str>| ProductFilter {
        name: name.map(str::to_string),
        sku_code: sku.map(str::to_string),
    };
    let r = store
        .list(&by(Some("PHONE"), None), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.items, vec![phone.clone(), pixel.clone()]);
    assert_eq!(r.total, 2);
    let r = store
        .list(&by(Some("(phone)"), None), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.items, vec![pixel.clone()], "regex characters are literal");
    let r = store
        .list(&by(None, Some("case")), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.items, vec![case.clone()]);
    let r = store
        .list(&by(None, Some("cas")), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.total, 0, "sku filters are exact");
    let r = store
        .list(&by(Some("pixel"), Some("iphone_15")), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.total, 0, "both conditions apply");
    let r = store
        .list(&by(Some("15"), Some("iphone_15")), page(0, 10))
        .await
        .unwrap();
    assert_eq!(r.items, vec![phone]);
}

/// Twenty concurrent inserts of one sku: exactly one is stored, the rest are DuplicateSku.
async fn concurrent_inserts_of_one_sku_store_one(store: &dyn ProductStore) {
    let attempts: Vec<Product> = (0..20)
        .map(|n| product("contested", &format!("Try {n}"), "1.00"))
        .collect();
    let results = futures::future::join_all(attempts.iter().map(|p| store.insert(p))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let dup = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::DuplicateSku { .. })))
        .count();
    assert_eq!((ok, dup), (1, 19), "{results:?}");
    let listed = store
        .list(
            &ProductFilter {
                name: None,
                sku_code: Some("contested".into()),
            },
            page(0, 10),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
}

/// A reachable store answers its health ping.
async fn ping_answers(store: &dyn ProductStore) {
    store.ping().await.unwrap();
}
