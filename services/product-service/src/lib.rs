//! product-service: the product catalogue (port 8081).
//!
//! Products (id, unique `skuCode`, name, description, decimal price) behind one
//! [`store::ProductStore`] trait with two adapters, chosen by `PRODUCT_DB_URL`: MongoDB for
//! the full stack, an embedded redb document store for offline use (the default). The HTTP
//! API is in [`api`]; the rules a product obeys in [`model`].
//!
//! `main.rs` only parses the [`Config`] and calls [`run`]; tests start the same service
//! in-process on port 0 with [`serve`] and a store of their choice.
#![forbid(unsafe_code)]

pub mod api;
pub mod model;
pub mod store;

use std::sync::Arc;

use axum::Router;
use clap::Parser;
use kit::config::{SecretParser, ServiceSpec};
use kit::{CommonArgs, HasCommon, Service};

use crate::store::{ProductStore, StoreError, StoreUrl};

/// What product-service is to the platform.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "product-service",
    default_port: 8081,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// product-service's configuration (flags or environment).
#[derive(Debug, Clone, Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Where products are stored: mongodb://[user:password@]host:port/database (MongoDB; the database defaults to product-service) or embedded:<dir> (an embedded redb file, <dir>/products.redb, shareable by instances on one host)
    #[arg(
        long = "db-url",
        env = "PRODUCT_DB_URL",
        default_value = "embedded:./data/products",
        value_parser = SecretParser::new("--db-url (PRODUCT_DB_URL)", StoreUrl::parse),
        hide_env_values = true
    )]
    pub db_url: StoreUrl,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the product store {url}: {source}")]
    Store {
        url: StoreUrl,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Service(#[from] kit::service::ServiceError),
}

/// Opens the configured store and serves until shutdown.
pub async fn run(config: Config, service: Service) -> Result<(), RunError> {
    let store = store::open(&config.db_url)
        .await
        .map_err(|source| RunError::Store {
            url: config.db_url.clone(),
            source,
        })?;
    tracing::info!(store = store.kind(), url = %config.db_url, "product store opened");
    serve(store, service).await
}

/// Serves the API on `service` with `store` until the service's shutdown token fires.
pub async fn serve(store: Arc<dyn ProductStore>, service: Service) -> Result<(), RunError> {
    let check = store.clone();
    service.health().add_check("store", move || {
        let store = check.clone();
        async move {
            store
                .ping()
                .await
                .map_err(|e| format!("{} store: {e}", store.kind()))
        }
    });
    let writes = kit::auth::RoleGuard::new(service.admin_auth().clone(), [kit::auth::ADMIN_ROLE]);
    let api = api::router(api::AppState { store }, writes);
    service.serve(api, Router::new()).await?;
    Ok(())
}
