//! Database spans around any [`ProductStore`]: one decorator for both adapters.
//!
//! Each call is a CLIENT span towards the store (`db.system` = `mongodb` or `redb`,
//! `peer.service` the same), named after the operation (`find products`), with what it asks
//! the store in `db.statement`, values replaced by `?`: the MongoDB command for MongoDB, the
//! tables read and written in the transaction for redb. A decorator rather than spans inside
//! each adapter, so both are traced alike and the contract tests exercise the same code.
//! `ping` (readiness) is not traced: probes are not.

use async_trait::async_trait;
use kit::page::{Page, PageRequest};
use kit::telemetry::{db_span, traced};

use super::{ProductFilter, ProductStore, StoreError};
use crate::model::Product;

/// A store whose calls are traced.
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    /// `db.system` of the spans: `mongodb` or `redb`.
    system: &'static str,
}

impl<S: ProductStore> Traced<S> {
    pub fn new(inner: S) -> Traced<S> {
        let system = match inner.kind() {
            "mongodb" => "mongodb",
            _ => "redb",
        };
        Traced { inner, system }
    }

    fn mongo(&self) -> bool {
        self.system == "mongodb"
    }

    fn span(&self, operation: &str, statement: &str) -> tracing::Span {
        db_span(self.system, operation, statement)
    }
}

/// The filter of a listing as MongoDB receives it, values as `?`.
fn mongo_filter(filter: &ProductFilter) -> String {
    let mut parts = Vec::new();
    if filter.sku_code.is_some() {
        parts.push("skuCode: ?");
    }
    if filter.name.is_some() {
        parts.push("name: {$regex: ?, $options: \"i\"}");
    }
    format!("{{{}}}", parts.join(", "))
}

/// What a listing statement shows.
fn list_statement(mongo: bool, filter: &ProductFilter) -> String {
    if mongo {
        let f = mongo_filter(filter);
        format!(
            "products.countDocuments({f});\nproducts.find({f}).sort({{_id: 1}}).skip(?).limit(?)"
        )
    } else if filter.sku_code.is_some() {
        "read: products_by_sku.get(?), products.get(?)".to_string()
    } else {
        "read: products.range(..)".to_string()
    }
}

#[async_trait]
impl<S: ProductStore> ProductStore for Traced<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn insert(&self, product: &Product) -> Result<(), StoreError> {
        let statement = if self.mongo() {
            "products.insertOne({_id: ?, skuCode: ?, name: ?, description: ?, price: ?})"
        } else {
            "write: products_by_sku.get(?), products_by_sku.insert(?, ?), products.insert(?, ?)"
        };
        traced(
            self.span("insert products", statement),
            self.inner.insert(product),
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        let statement = if self.mongo() {
            "products.findOne({_id: ?})"
        } else {
            "read: products.get(?)"
        };
        traced(self.span("get products", statement), self.inner.get(id)).await
    }

    async fn replace(&self, product: &Product) -> Result<(), StoreError> {
        let statement = if self.mongo() {
            "products.replaceOne({_id: ?}, {_id: ?, skuCode: ?, name: ?, description: ?, price: ?})"
        } else {
            "write: products.get(?), products_by_sku.get(?), products_by_sku.remove(?), \
             products_by_sku.insert(?, ?), products.insert(?, ?)"
        };
        traced(
            self.span("replace products", statement),
            self.inner.replace(product),
        )
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let statement = if self.mongo() {
            "products.deleteOne({_id: ?})"
        } else {
            "write: products.remove(?), products_by_sku.remove(?)"
        };
        traced(
            self.span("delete products", statement),
            self.inner.delete(id),
        )
        .await
    }

    async fn list(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>, StoreError> {
        let statement = list_statement(self.mongo(), filter);
        traced(
            self.span("find products", &statement),
            self.inner.list(filter, page),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listing statements name the filter's fields, never their values.
    #[test]
    fn list_statements_carry_no_values() {
        let filter = ProductFilter {
            name: Some("secret phone".into()),
            sku_code: Some("sku-42".into()),
        };
        let mongo = list_statement(true, &filter);
        assert_eq!(
            mongo,
            "products.countDocuments({skuCode: ?, name: {$regex: ?, $options: \"i\"}});\n\
             products.find({skuCode: ?, name: {$regex: ?, $options: \"i\"}}).sort({_id: 1}).skip(?).limit(?)"
        );
        assert_eq!(
            list_statement(true, &ProductFilter::default()),
            "products.countDocuments({});\nproducts.find({}).sort({_id: 1}).skip(?).limit(?)"
        );
        let redb = list_statement(false, &filter);
        assert!(
            !redb.contains("sku-42") && !mongo.contains("secret"),
            "{redb}"
        );
        assert_eq!(
            list_statement(false, &ProductFilter::default()),
            "read: products.range(..)"
        );
    }
}
