//! inventory-service binary: [`kit::service::main`] (configuration, probe,
//! telemetry, runtime, listener), then [`inventory_service::run`].
#![forbid(unsafe_code)]

use inventory_service::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
