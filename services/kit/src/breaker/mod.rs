//! Circuit breakers as a service uses them.
//!
//! The state machine, its options and the admin JSON types are the
//! `circuit-breaker` crate (re-exported here, so `kit::breaker::CircuitBreaker`
//! and `kit::breaker::Snapshot` keep working); the CLI and the dashboard use
//! that crate directly. What only a service needs sits here, on top of it:
//! the options as flags ([`BreakerArgs`]), the service's set of breakers with
//! its `/admin/breakers` router ([`BreakerRegistry`], [`admin_router`]) and
//! their Resilience4j-named metrics (`metrics`).

mod admin;
mod args;
mod metrics;

pub use circuit_breaker::*;

pub use admin::{BreakerRegistry, admin_router};
pub use args::BreakerArgs;
