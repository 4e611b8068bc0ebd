//! The embedded document store: products as JSON documents in a `redb` file.
//!
//! Why redb: it is pure Rust (no C++ toolchain, no `-sys` crate, seconds to build), ACID
//! with crash-safe commits, well kept, and since 4.3 lets several processes open one file
//! for writing (`ConcurrencyMode::MultiWriter`, byte-range file locks), so two
//! product-service instances on one host or one Docker volume share one catalogue.
//! polodb was the other document-store candidate: it builds RocksDB from C++ source
//! through an alpha `-sys` crate and needs libclang, a long and fragile build for what two
//! B-trees do here. SQLite (through sqlx) would work too but is a relational engine holding
//! JSON, not lighter than this.
//!
//! Layout, in `<dir>/products.redb`:
//! - `products`: id → the product as JSON (a document; ids are UUIDv7, so key order is
//!   creation order);
//! - `products_by_sku`: skuCode → id, the unique index.
//!
//! Every write checks and updates both tables in one write transaction, so the index can
//! never disagree with the documents, even across a crash or between processes. redb is
//! synchronous: each operation runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kit::page::{Page, PageRequest};
use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::{ProductFilter, ProductStore, StoreError};
use crate::model::Product;

const PRODUCTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("products");
const BY_SKU: TableDefinition<'static, &str, &str> = TableDefinition::new("products_by_sku");

/// File name inside the configured directory.
pub const FILE_NAME: &str = "products.redb";

/// Page cache of the file; the catalogue is small, redb's 1 GiB default is not needed.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A product store in one redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// Shared by the blocking-pool closures of concurrent requests; redb serialises
    /// writers itself and lets readers run beside them.
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating when missing) `<dir>/products.redb` and its tables.
    pub async fn open(dir: PathBuf) -> Result<EmbeddedStore, StoreError> {
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
            let path = dir.join(FILE_NAME);
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .create(&path)
                .map_err(redb::Error::from)?;
            // Read transactions cannot open a table that was never created.
            let txn = db.begin_write().map_err(redb::Error::from)?;
            txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
            txn.open_table(BY_SKU).map_err(redb::Error::from)?;
            txn.commit().map_err(redb::Error::from)?;
            Ok(EmbeddedStore {
                db: Arc::new(db),
                path,
            })
        })
        .await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn insert_sync(&self, product: &Product) -> Result<(), StoreError> {
        let doc = encode(product)?;
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut by_sku = txn.open_table(BY_SKU).map_err(redb::Error::from)?;
            if by_sku
                .get(product.sku_code.as_str())
                .map_err(redb::Error::from)?
                .is_some()
            {
                // Dropping the transaction aborts it: nothing is written.
                return Err(StoreError::DuplicateSku {
                    sku_code: product.sku_code.clone(),
                });
            }
            by_sku
                .insert(product.sku_code.as_str(), product.id.as_str())
                .map_err(redb::Error::from)?;
            let mut products = txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
            products
                .insert(product.id.as_str(), doc.as_slice())
                .map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn get_sync(&self, id: &str) -> Result<Option<Product>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let products = txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
        let doc = products.get(id).map_err(redb::Error::from)?;
        doc.map(|d| decode(id, d.value())).transpose()
    }

    fn replace_sync(&self, product: &Product) -> Result<(), StoreError> {
        let doc = encode(product)?;
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut products = txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
            let old = match products
                .get(product.id.as_str())
                .map_err(redb::Error::from)?
            {
                Some(d) => decode(&product.id, d.value())?,
                None => {
                    return Err(StoreError::NotFound {
                        id: product.id.clone(),
                    });
                }
            };
            let mut by_sku = txn.open_table(BY_SKU).map_err(redb::Error::from)?;
            if old.sku_code != product.sku_code {
                if by_sku
                    .get(product.sku_code.as_str())
                    .map_err(redb::Error::from)?
                    .is_some()
                {
                    return Err(StoreError::DuplicateSku {
                        sku_code: product.sku_code.clone(),
                    });
                }
                by_sku
                    .remove(old.sku_code.as_str())
                    .map_err(redb::Error::from)?;
                by_sku
                    .insert(product.sku_code.as_str(), product.id.as_str())
                    .map_err(redb::Error::from)?;
            }
            products
                .insert(product.id.as_str(), doc.as_slice())
                .map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn delete_sync(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        let existed = {
            let mut products = txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
            let old = products
                .remove(id)
                .map_err(redb::Error::from)?
                .map(|d| decode(id, d.value()))
                .transpose()?;
            match old {
                Some(old) => {
                    let mut by_sku = txn.open_table(BY_SKU).map_err(redb::Error::from)?;
                    by_sku
                        .remove(old.sku_code.as_str())
                        .map_err(redb::Error::from)?;
                    true
                }
                None => false,
            }
        };
        if existed {
            txn.commit().map_err(redb::Error::from)?;
        }
        Ok(existed)
    }

    fn list_sync(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let products = txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
        // An exact sku uses the index: at most one candidate.
        if let Some(sku) = &filter.sku_code {
            let by_sku = txn.open_table(BY_SKU).map_err(redb::Error::from)?;
            let id = by_sku
                .get(sku.as_str())
                .map_err(redb::Error::from)?
                .map(|g| g.value().to_string());
            let found = match id {
                Some(id) => match products.get(id.as_str()).map_err(redb::Error::from)? {
                    Some(d) => Some(decode(&id, d.value())?),
                    None => None,
                },
                None => None,
            };
            let matching: Vec<Product> = found.into_iter().filter(|p| filter.matches(p)).collect();
            let total = matching.len() as u64;
            let items = matching
                .into_iter()
                .skip(page.offset() as usize)
                .take(page.size as usize)
                .collect();
            return Ok(Page::new(items, page, total));
        }
        // Otherwise a scan in id order: a catalogue is thousands of products, not millions.
        let mut total = 0u64;
        let mut items = Vec::new();
        if filter.name.is_none() {
            // Unfiltered: the count is the table's length and only the page is decoded.
            total = products.len().map_err(redb::Error::from)?;
            let entries = products
                .range::<&str>(..)
                .map_err(redb::Error::from)?
                .skip(page.offset() as usize)
                .take(page.size as usize);
            for entry in entries {
                let (key, doc) = entry.map_err(redb::Error::from)?;
                items.push(decode(key.value(), doc.value())?);
            }
        } else {
            for entry in products.range::<&str>(..).map_err(redb::Error::from)? {
                let (key, doc) = entry.map_err(redb::Error::from)?;
                let p = decode(key.value(), doc.value())?;
                if filter.matches(&p) {
                    if total >= page.offset() && (items.len() as u64) < page.size {
                        items.push(p);
                    }
                    total += 1;
                }
            }
        }
        Ok(Page::new(items, page, total))
    }
}

#[async_trait]
impl ProductStore for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn insert(&self, product: &Product) -> Result<(), StoreError> {
        let (me, product) = (self.clone(), product.clone());
        blocking(move || me.insert_sync(&product)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        let (me, id) = (self.clone(), id.to_string());
        blocking(move || me.get_sync(&id)).await
    }

    async fn replace(&self, product: &Product) -> Result<(), StoreError> {
        let (me, product) = (self.clone(), product.clone());
        blocking(move || me.replace_sync(&product)).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (me, id) = (self.clone(), id.to_string());
        blocking(move || me.delete_sync(&id)).await
    }

    async fn list(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>, StoreError> {
        let (me, filter) = (self.clone(), filter.clone());
        blocking(move || me.list_sync(&filter, page)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let me = self.clone();
        blocking(move || {
            let txn = me.db.begin_read().map_err(redb::Error::from)?;
            txn.open_table(PRODUCTS).map_err(redb::Error::from)?;
            Ok(())
        })
        .await
    }
}

fn encode(product: &Product) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(product).map_err(|e| StoreError::Corrupt {
        id: product.id.clone(),
        reason: e.to_string(),
    })
}

fn decode(id: &str, doc: &[u8]) -> Result<Product, StoreError> {
    serde_json::from_slice(doc).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// Runs a redb operation on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            context: "embedded store task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
