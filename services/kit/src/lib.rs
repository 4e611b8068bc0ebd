//! The service kit: everything every `platform` service needs, written once.
//!
//! A service is a thin `main.rs` plus its domain code; configuration
//! ([`config`]), logging ([`telemetry`]), the HTTP scaffold with health,
//! metrics, info and admin endpoints ([`http`], [`health`], [`metrics`],
//! [`auth`], application faults in [`faults`]), errors as problem+json ([`error`]), graceful shutdown
//! ([`shutdown`], [`service`]), the registry client ([`registry`]) and, with
//! the `mysql` feature, the MySQL plumbing of database-backed services
//! (`db`) live here. See [`service`] for how a `main.rs` puts them together.
#![forbid(unsafe_code)]

pub mod auth;
pub mod breaker;
pub mod clock;
pub mod config;
#[cfg(feature = "mysql")]
pub mod db;
pub mod error;
pub mod faults;
pub mod health;
pub mod http;
pub mod lb;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod registry;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use config::{CommonArgs, HasCommon, ServiceSpec};
pub use error::Problem;
pub use service::Service;
