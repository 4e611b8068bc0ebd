//! notification-service binary: [`kit::service::main`] (configuration, probe,
//! telemetry, runtime, listener), then [`notification_service::run`].
//!
//! Every option is a flag and an environment variable; `notification-service --help` lists
//! them with their defaults. The ones a deployment sets: `KAFKA_BOOTSTRAP_SERVERS`
//! (default `localhost:9092`) and `DATABASE_URL`
//! (`mysql://notifications:<password>@host:3306/notifications`).
#![forbid(unsafe_code)]

use notification_service::{SPEC, run};

fn main() -> anyhow::Result<()> {
    Ok(kit::service::main(&SPEC, run)?)
}
