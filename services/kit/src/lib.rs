//! The service kit: everything every `platform` service needs, written once.
//!
//! A service is a thin `main.rs` plus its domain code; configuration
//! ([`config`]), logging ([`telemetry`]), the HTTP scaffold with health,
//! metrics, info and admin endpoints ([`http`], [`health`], [`metrics`],
//! [`auth`], application faults in [`faults`]), errors as problem+json ([`error`]), graceful shutdown
//! ([`shutdown`], [`service`]), the registry client ([`registry`]) and, with
//! the `mysql` feature, the MySQL plumbing of database-backed services
//! (`db`) live here. See [`service`] for how a `main.rs` puts them together.
//!
//! What a client of the services needs too (problem+json, the registry
//! model, client and balancer, the breaker's state machine and admin JSON,
//! the test clock) lives in small crates under `crates/` that the CLI and
//! the dashboard use without the kit; the kit re-exports them at their old
//! paths (`kit::error`, `kit::registry`, `kit::lb`, `kit::breaker`,
//! `kit::clock`).
#![forbid(unsafe_code)]

pub mod auth;
pub mod breaker;
pub mod config;
#[cfg(feature = "mysql")]
pub mod db;
pub mod faults;
pub mod health;
pub mod http;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod registry;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod wait;

// The small client crates, at the paths services have always used.
pub use ::backoff;
pub use ::clock;
pub use problem as error;
pub use registry_client::lb;

pub use config::{CommonArgs, HasCommon, ServiceSpec};
pub use error::Problem;
pub use service::Service;
