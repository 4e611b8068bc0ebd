//! identity-provider binary: [`kit::service::main_unbound`] (configuration,
//! probe, telemetry, runtime), then [`identity_provider::run`], which binds
//! with the common options that apply to it.
#![forbid(unsafe_code)]

use identity_provider::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main_unbound(&SPEC, run)?)
}
