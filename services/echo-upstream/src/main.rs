//! `echo-upstream`: the gateway's test and benchmark upstream as a real
//! process (see the library, `echo_upstream`), registered under `--service-name` so
//! the gateway finds it through the registry like any service.
#![forbid(unsafe_code)]

use axum::Router;
use clap::Parser;
use kit::config::{CommonArgs, HasCommon, ServiceSpec};

/// Options: the kit's common ones and the registry name to use.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Name to register under (the upstream service a gateway route names)
    #[arg(long, env = "SERVICE_NAME", default_value = "echo-upstream")]
    service_name: String,
}

impl HasCommon for Args {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

const BOOT: ServiceSpec = ServiceSpec {
    name: "echo-upstream",
    default_port: 0,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

fn main() -> anyhow::Result<()> {
    let args: Args = kit::config::parse(&BOOT);
    kit::probe::exit_if_probe(&BOOT, &args.common);
    // The spec's name is `&'static`; this one comes from the command line
    // and lives as long as the process, so it is leaked once.
    let name: &'static str = Box::leak(args.service_name.to_ascii_lowercase().into_boxed_str());
    let spec = ServiceSpec { name, ..BOOT };
    let _telemetry = kit::telemetry::init(&spec, &args.common)?;
    kit::service::runtime()?.block_on(async move {
        let service = kit::Service::bind(&spec, args.common.clone()).await?;
        let label = service.instance_id().to_string();
        service
            .serve(echo_upstream::router(&label), Router::new())
            .await?;
        Ok(())
    })
}
