//! A tiny kit-based service: registers with the registry, renews its
//! lease, answers `GET /echo` with its instance id. Used by the
//! discovery-server's end-to-end test (two of them as separate processes,
//! one killed with `kill -9`) and handy for trying the registry by hand:
//!
//! ```text
//! cargo run -p discovery-server --example echo-service -- --port 0 --registry-url http://127.0.0.1:8761
//! ```
#![forbid(unsafe_code)]

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use kit::config::{CommonArgs, HasCommon, ServiceSpec};

const SPEC: ServiceSpec = ServiceSpec {
    name: "echo-service",
    default_port: 8099,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// Echo service (an example kit-based service that registers with the registry)
#[derive(Debug, Clone, Parser)]
struct Config {
    #[command(flatten)]
    common: CommonArgs,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

async fn echo(State(id): State<String>) -> String {
    id
}

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, config.common());
    let _telemetry =
        kit::telemetry::init(&SPEC, config.common().log_format).context("setting up logging")?;
    kit::service::runtime()?.block_on(async {
        let service = kit::Service::bind(&SPEC, config.common.clone()).await?;
        let api = Router::new()
            .route("/echo", get(echo))
            .with_state(service.instance_id().to_string());
        service.serve(api, Router::new()).await?;
        Ok(())
    })
}
