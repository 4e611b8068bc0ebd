//! The api-gateway binary: configuration, routes, telemetry, then the
//! gateway until SIGTERM (see the crate docs).
#![forbid(unsafe_code)]

use api_gateway::{Config, SPEC};

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, &config.common);
    // Before anything starts: a bad routes file ends the start with the
    // file, line and key, and a non-zero exit status.
    let routes = api_gateway::load_routes(&config)?;
    let _telemetry = kit::telemetry::init(&SPEC, &config.common)?;
    kit::service::runtime()?.block_on(api_gateway::run(config, routes))
}
