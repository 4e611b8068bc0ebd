//! inventory-service: stock per SKU and atomic, idempotent reservations of
//! stock for orders, on MySQL.
//!
//! The HTTP API ([`api`]) is a thin layer over [`store::Store`], where all
//! the guarantees live (see its docs). `main.rs` only parses the
//! configuration and calls [`run`]; integration tests call [`run`] with a
//! service bound to port 0.
#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use kit::config::{HasCommon, ServiceSpec, parse_duration};
use kit::{CommonArgs, Service};
use secrecy::{ExposeSecret, SecretString};

/// What this service is.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "inventory-service",
    default_port: 8083,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// The service's configuration, from flags and environment (`--help` shows
/// the package description first).
#[derive(Debug, Clone, clap::Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// MySQL URL of the inventory database, with the service's own user: mysql://user:password@host:port/inventory
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,

    /// Largest number of database connections
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// How long to keep retrying the first database connection at start
    #[arg(long, env = "DB_CONNECT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub db_connect_timeout: Duration,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

impl Config {
    /// A configuration for tests: port 0, the given database, no registry
    /// unless `registry_url` is given.
    pub fn for_tests(database_url: &str, registry_url: Option<&str>) -> Config {
        Config {
            common: CommonArgs::for_tests(registry_url),
            database_url: SecretString::from(database_url.to_string()),
            db_max_connections: 16,
            db_connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Connects to the database, migrates it and serves until the service's
/// shutdown token is cancelled (or SIGTERM/SIGINT).
pub async fn run(config: Config, service: Service) -> anyhow::Result<()> {
    let store = store::Store::connect(
        config.database_url.expose_secret(),
        config.db_max_connections,
        config.db_connect_timeout,
    )
    .await?;
    kit::db::add_health_check(service.health(), store.pool());
    let state = api::AppState::new(store, service.metrics());
    let reservations =
        kit::auth::RoleGuard::new(service.admin_auth().clone(), [kit::auth::SERVICE_ROLE]);
    service
        .serve(
            api::router(state.clone(), reservations),
            api::admin_router(state),
        )
        .await
        .context("serving HTTP")
}
