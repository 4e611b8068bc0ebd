//! trace-collector binary: [`kit::service::main`] (configuration, probe,
//! logging, runtime, listener), then [`trace_collector::run`].
#![forbid(unsafe_code)]

use trace_collector::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
