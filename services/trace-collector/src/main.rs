//! trace-collector binary: parse config, set up logging, serve.
#![forbid(unsafe_code)]

use anyhow::Context;
use kit::HasCommon;
use trace_collector::{Config, SPEC};

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry =
        kit::telemetry::init(&SPEC, config.common().log_format).context("cannot set up logging")?;
    kit::service::runtime()
        .context("cannot start the async runtime")?
        .block_on(async {
            let service = kit::Service::bind(&SPEC, config.common.clone())
                .await
                .context("cannot start the HTTP listener")?;
            trace_collector::run(config, service).await
        })
}
