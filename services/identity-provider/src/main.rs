//! The identity-provider binary: parse, set up telemetry, run (see `lib.rs`).
#![forbid(unsafe_code)]

use anyhow::Context as _;
use identity_provider::{Config, SPEC};
use kit::config::HasCommon as _;

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry = kit::telemetry::init(&SPEC, config.common()).context("setting up logging")?;
    kit::service::runtime()?.block_on(identity_provider::run(config))
}
