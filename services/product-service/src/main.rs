//! product-service binary: parse the configuration, start telemetry, run the service.
//!
//! Every option is a flag and an environment variable; `product-service --help` lists them
//! with their defaults. The ones specific to this service: `PRODUCT_DB_URL`
//! (`embedded:./data/products` by default, or `mongodb://host:27017/product-service`).
#![forbid(unsafe_code)]

use anyhow::Context;
use kit::HasCommon;
use product_service::{Config, SPEC};

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry = kit::telemetry::init(&SPEC, config.common()).context("starting telemetry")?;
    kit::service::runtime()?.block_on(async {
        let service = kit::Service::bind(&SPEC, config.common.clone())
            .await
            .context("binding the listener")?;
        product_service::run(config, service)
            .await
            .context("running product-service")
    })
}
