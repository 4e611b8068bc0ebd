//! order-service binary: [`kit::service::main`] (configuration, probe,
//! telemetry, runtime, listener), then [`order_service::run`].
#![forbid(unsafe_code)]

use order_service::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
