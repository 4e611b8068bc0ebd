//! The discovery-server binary: parse, set up telemetry, run (see `lib.rs`).
#![forbid(unsafe_code)]

use anyhow::Context as _;
use discovery_server::{Config, SPEC};
use kit::config::HasCommon as _;

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry =
        kit::telemetry::init(&SPEC, config.common().log_format).context("setting up logging")?;
    kit::service::runtime()?.block_on(discovery_server::run(config))
}
