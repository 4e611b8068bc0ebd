//! Where products live: one [`ProductStore`] trait, two adapters.
//!
//! - [`mongo::MongoStore`] (`PRODUCT_DB_URL=mongodb://host:27017/product-service`): MongoDB
//!   through the official `mongodb` driver, with a unique index on `skuCode`. The full stack
//!   uses it.
//! - [`embedded::EmbeddedStore`] (`PRODUCT_DB_URL=embedded:<dir>`, the default): products as
//!   JSON documents in a `redb` file, with a unique sku index table kept in the same ACID
//!   write transaction. The offline default, because no MongoDB server can be installed on
//!   the development machines.
//!
//! Both keep the same semantics, checked by one contract test suite (`tests/api/contract.rs`):
//! a duplicate `skuCode` is [`StoreError::DuplicateSku`] and nothing is written; listings are
//! ordered by id (creation order), filter by case-insensitive `name` substring and exact
//! `skuCode`, and count the total matches.

pub mod embedded;
pub mod mongo;
pub mod traced;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kit::page::{Page, PageRequest};

use crate::model::Product;

/// A product catalogue with a unique `skuCode`.
#[async_trait]
pub trait ProductStore: Send + Sync + fmt::Debug + 'static {
    /// `mongodb` or `embedded`, for logs and the health report.
    fn kind(&self) -> &'static str;

    /// Stores a new product; [`StoreError::DuplicateSku`] when its sku is taken.
    async fn insert(&self, product: &Product) -> Result<(), StoreError>;

    /// The product with `id`, if any.
    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError>;

    /// Replaces the product with the same id; [`StoreError::NotFound`] when there is none,
    /// [`StoreError::DuplicateSku`] when the new sku belongs to another product.
    async fn replace(&self, product: &Product) -> Result<(), StoreError>;

    /// Deletes the product with `id`; `false` when there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// One page of the products matching `filter`, in id order, with the total count.
    async fn list(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What a listing selects; `None` means no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Exact sku.
    pub sku_code: Option<String>,
}

impl ProductFilter {
    /// Whether `p` matches (the embedded store filters in memory; MongoDB in its query).
    pub fn matches(&self, p: &Product) -> bool {
        let sku_ok = self.sku_code.as_ref().is_none_or(|s| *s == p.sku_code);
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|n| p.name.to_lowercase().contains(&n.to_lowercase()));
        sku_ok && name_ok
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a product with skuCode {sku_code} already exists")]
    DuplicateSku { sku_code: String },
    #[error("no product with id {id}")]
    NotFound { id: String },
    #[error("embedded store: {0}")]
    Embedded(#[from] redb::Error),
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("stored product {id} cannot be read: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store could not be reached (answered 503 rather than 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Mongo(e) => mongo::is_unavailable(e),
            StoreError::Embedded(redb::Error::DatabaseAlreadyOpen) => true,
            _ => false,
        }
    }
}

/// Which adapter `PRODUCT_DB_URL` selects.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `mongodb://...`: the connection string as given.
    Mongo(String),
    /// `embedded:<dir>`: the directory holding `products.redb`.
    Embedded(PathBuf),
}

impl StoreUrl {
    /// Parses `mongodb://...`, `mongodb+srv://...` or `embedded:<dir>`.
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        let s = s.trim();
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.is_empty() {
                return Err("embedded: needs a directory, e.g. embedded:./data/products".into());
            }
            return Ok(StoreUrl::Embedded(PathBuf::from(dir)));
        }
        if s.starts_with("mongodb://") || s.starts_with("mongodb+srv://") {
            return Ok(StoreUrl::Mongo(s.to_string()));
        }
        Err(format!(
            "`{}` is neither mongodb://host:port/database nor embedded:<dir>",
            redact(s)
        ))
    }
}

/// Hides the password of a connection string.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Mongo(url) => f.write_str(&redact(url)),
            StoreUrl::Embedded(dir) => write!(f, "embedded:{}", dir.display()),
        }
    }
}

/// Debug shows the redacted form too: configs are logged.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// Opens the store `url` names, its calls traced ([`traced`]). MongoDB connects lazily (a
/// server that is down makes the service start not ready, not fail); the embedded store
/// opens its file now.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn ProductStore>, StoreError> {
    Ok(match url {
        StoreUrl::Mongo(uri) => {
            Arc::new(traced::Traced::new(mongo::MongoStore::connect(uri).await?))
        }
        StoreUrl::Embedded(dir) => Arc::new(traced::Traced::new(
            embedded::EmbeddedStore::open(dir.clone()).await?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both URL forms parse; anything else is refused without echoing a password.
    #[test]
    fn parses_store_urls() {
        assert_eq!(
            StoreUrl::parse("embedded:./data/products").unwrap(),
            StoreUrl::Embedded(PathBuf::from("./data/products"))
        );
        assert!(matches!(
            StoreUrl::parse("mongodb://u:secret@h:27017/p").unwrap(),
            StoreUrl::Mongo(_)
        ));
        assert!(StoreUrl::parse("embedded:").is_err());
        let err = StoreUrl::parse("postgres://u:secret@h/db").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let shown = format!(
            "{:?}",
            StoreUrl::parse("mongodb://u:secret@h:27017/p").unwrap()
        );
        assert!(
            !shown.contains("secret") && shown.contains("u:***@h"),
            "{shown}"
        );
    }

    /// The filter is a case-insensitive name substring and an exact sku.
    #[test]
    fn filter_matches() {
        let p = Product {
            id: "1".into(),
            sku_code: "iphone_15".into(),
            name: "iPhone 15 Pro".into(),
            description: String::new(),
            price: rust_decimal::Decimal::ONE,
        };
        assert!(ProductFilter::default().matches(&p));
        let by_name = ProductFilter {
            name: Some("PHONE 15".into()),
            sku_code: None,
        };
        assert!(by_name.matches(&p));
        let by_sku = ProductFilter {
            name: None,
            sku_code: Some("iphone".into()),
        };
        assert!(!by_sku.matches(&p));
    }
}
