//! order-service binary: configuration, telemetry, then [`order_service::run`].
#![forbid(unsafe_code)]

use anyhow::Context;
use kit::HasCommon;
use order_service::{Config, SPEC};

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry = kit::telemetry::init(&SPEC, config.common())?;
    kit::service::runtime()?.block_on(async move {
        let service = kit::Service::bind(&SPEC, config.common.clone())
            .await
            .context("starting the HTTP listener")?;
        order_service::run(config, service).await
    })
}
