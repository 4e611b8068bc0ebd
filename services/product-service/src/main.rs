//! product-service binary: [`kit::service::main`] (configuration, probe,
//! telemetry, runtime, listener), then [`product_service::run`].
//!
//! Every option is a flag and an environment variable; `product-service --help` lists them
//! with their defaults. The ones specific to this service: `PRODUCT_DB_URL`
//! (`embedded:./data/products` by default, or `mongodb://host:27017/product-service`).
#![forbid(unsafe_code)]

use product_service::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
