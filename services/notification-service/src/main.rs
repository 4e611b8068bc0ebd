//! notification-service binary: parse the configuration, start telemetry, run the service.
//!
//! Every option is a flag and an environment variable; `notification-service --help` lists
//! them with their defaults. The ones a deployment sets: `KAFKA_BOOTSTRAP_SERVERS`
//! (default `localhost:9092`) and `DATABASE_URL`
//! (`mysql://notifications:<password>@host:3306/notifications`).
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::CommandFactory;
use kit::HasCommon;
use notification_service::{Config, SPEC};

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    if let Err(msg) = config.validate() {
        Config::command()
            .name(SPEC.name)
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit();
    }
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry = kit::telemetry::init(&SPEC, config.common()).context("starting telemetry")?;
    kit::service::runtime()?.block_on(async {
        let service = kit::Service::bind(&SPEC, config.common.clone())
            .await
            .context("binding the listener")?;
        notification_service::run(config, service)
            .await
            .context("running notification-service")
    })
}
