//! discovery-server binary: [`kit::service::main`] (configuration, probe,
//! logging, runtime, listener), then [`discovery_server::run`].
#![forbid(unsafe_code)]

use discovery_server::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
