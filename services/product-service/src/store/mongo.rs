//! The MongoDB adapter, used by the full stack (`PRODUCT_DB_URL=mongodb://...`).
//!
//! One collection, `products`, in the connection string's database (default
//! `product-service`). Documents keep the service's id as `_id` and the price as a BSON
//! `Decimal128`, so MongoDB tools see an exact decimal, never a double. A unique index on
//! `skuCode` makes a duplicate sku fail in the server (error 11000), which is the only way
//! to be race-free across instances. The index is created before the first write and after
//! every failed attempt, so a service that starts while MongoDB is down still gets it.
//!
//! Server selection is bounded to a few seconds: a request never hangs for the driver's
//! 30-second default while MongoDB is down; it answers 503 instead.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use kit::page::{Page, PageRequest};
use mongodb::bson::{Bson, Decimal128, Document, doc};
use mongodb::error::{ErrorKind, WriteError, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{ProductFilter, ProductStore, StoreError};
use crate::model::Product;

/// Database used when the connection string names none.
pub const DEFAULT_DATABASE: &str = "product-service";
/// The collection of products.
pub const COLLECTION: &str = "products";
/// Name of the unique index on `skuCode`.
pub const SKU_INDEX: &str = "skuCode_unique";
/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// A product store in a MongoDB collection.
#[derive(Debug)]
pub struct MongoStore {
    client: Client,
    collection: Collection<ProductDoc>,
    /// Set once the unique sku index exists; writes wait for it so that no duplicate can
    /// slip in before it.
    index: OnceCell<()>,
}

/// A product as stored in MongoDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProductDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "skuCode")]
    sku_code: String,
    name: String,
    #[serde(default)]
    description: String,
    price: Decimal128,
}

impl ProductDoc {
    fn from_product(p: &Product) -> Result<ProductDoc, StoreError> {
        let price =
            Decimal128::from_str(&p.price.to_string()).map_err(|e| StoreError::Corrupt {
                id: p.id.clone(),
                reason: format!("price {} is not a Decimal128: {e}", p.price),
            })?;
        Ok(ProductDoc {
            id: p.id.clone(),
            sku_code: p.sku_code.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price,
        })
    }

    fn into_product(self) -> Result<Product, StoreError> {
        let text = self.price.to_string();
        let price = Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|e| StoreError::Corrupt {
                id: self.id.clone(),
                reason: format!("price {text}: {e}"),
            })?;
        Ok(Product {
            id: self.id,
            sku_code: self.sku_code,
            name: self.name,
            description: self.description,
            price,
        })
    }
}

impl MongoStore {
    /// A client for `uri`; it connects lazily, so this succeeds while MongoDB is down.
    pub async fn connect(uri: &str) -> Result<MongoStore, StoreError> {
        let mut options = ClientOptions::parse(uri).await?;
        options
            .app_name
            .get_or_insert_with(|| "product-service".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(3));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(3));
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(options)?;
        let collection = client.database(&database).collection(COLLECTION);
        Ok(MongoStore {
            client,
            collection,
            index: OnceCell::new(),
        })
    }

    /// A store on `database` of an existing client (the contract tests use a fresh
    /// database per test).
    pub fn with_client(client: Client, database: &str) -> MongoStore {
        MongoStore {
            collection: client.database(database).collection(COLLECTION),
            client,
            index: OnceCell::new(),
        }
    }

    /// The database holding the collection.
    pub fn database(&self) -> mongodb::Database {
        self.client
            .database(self.collection.namespace().db.as_str())
    }

    /// Creates the unique sku index once (idempotent on the server too).
    async fn ensure_index(&self) -> Result<(), StoreError> {
        self.index
            .get_or_try_init(|| async {
                let model = IndexModel::builder()
                    .keys(doc! { "skuCode": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name(SKU_INDEX.to_string())
                            .build(),
                    )
                    .build();
                self.collection.create_index(model).await?;
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(())
    }
}

/// The query for `filter`.
fn filter_doc(filter: &ProductFilter) -> Document {
    let mut d = Document::new();
    if let Some(sku) = &filter.sku_code {
        d.insert("skuCode", sku.as_str());
    }
    if let Some(name) = &filter.name {
        d.insert(
            "name",
            doc! { "$regex": regex_escape(name), "$options": "i" },
        );
    }
    d
}

/// Escapes every regex metacharacter so a name filter is a literal substring.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_alphanumeric() || c == ' ' {
            out.push(c);
        } else if c.is_ascii() {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a write failed on the unique sku index.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(WriteError { code, .. })) => {
            *code == DUPLICATE_KEY
        }
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Whether MongoDB could not be reached (503 rather than 500).
pub(crate) fn is_unavailable(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    )
}

#[async_trait]
impl ProductStore for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn insert(&self, product: &Product) -> Result<(), StoreError> {
        self.ensure_index().await?;
        match self
            .collection
            .insert_one(ProductDoc::from_product(product)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::DuplicateSku {
                sku_code: product.sku_code.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        self.collection
            .find_one(doc! { "_id": id })
            .await?
            .map(ProductDoc::into_product)
            .transpose()
    }

    async fn replace(&self, product: &Product) -> Result<(), StoreError> {
        self.ensure_index().await?;
        let result = self
            .collection
            .replace_one(
                doc! { "_id": product.id.as_str() },
                ProductDoc::from_product(product)?,
            )
            .await;
        match result {
            Ok(r) if r.matched_count == 0 => Err(StoreError::NotFound {
                id: product.id.clone(),
            }),
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::DuplicateSku {
                sku_code: product.sku_code.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let r = self.collection.delete_one(doc! { "_id": id }).await?;
        Ok(r.deleted_count > 0)
    }

    async fn list(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>, StoreError> {
        let query = filter_doc(filter);
        let total = self.collection.count_documents(query.clone()).await?;
        let docs: Vec<ProductDoc> = self
            .collection
            .find(query)
            .sort(doc! { "_id": 1 })
            .skip(page.offset())
            .limit(i64::try_from(page.size).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        let items = docs
            .into_iter()
            .map(ProductDoc::into_product)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(items, page, total))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.database()
            .run_command(doc! { "ping": Bson::Int32(1) })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name filters are literal substrings: regex metacharacters are escaped.
    #[test]
    fn name_filter_is_literal() {
        assert_eq!(regex_escape("a.b*c (x)"), r"a\.b\*c \(x\)");
        assert_eq!(regex_escape("Café"), "Café");
        let d = filter_doc(&ProductFilter {
            name: Some("phone".into()),
            sku_code: Some("p1".into()),
        });
        assert_eq!(d.get_str("skuCode").unwrap(), "p1");
        assert_eq!(
            d.get_document("name").unwrap().get_str("$options").unwrap(),
            "i"
        );
    }

    /// Prices cross into Decimal128 and back exactly.
    #[test]
    fn price_round_trips_through_decimal128() {
        let p = Product {
            id: "x".into(),
            sku_code: "s".into(),
            name: "n".into(),
            description: String::new(),
            price: Decimal::new(99_999_999_999, 2),
        };
        let d = ProductDoc::from_product(&p).unwrap();
        assert_eq!(d.clone().into_product().unwrap(), p);
        let zero = Product {
            price: Decimal::new(0, 2),
            ..p
        };
        let back = ProductDoc::from_product(&zero)
            .unwrap()
            .into_product()
            .unwrap();
        assert_eq!(back.price.to_string(), "0.00");
    }
}
