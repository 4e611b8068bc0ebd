//! The service registry from a client's side: what the `platform` CLI, the
//! dashboard and every service need to read and use it, without the service
//! scaffold (no HTTP server, no OpenTelemetry, no JWT code).
//!
//! - [`model`]: the Eureka REST API's JSON shapes (read leniently, written as
//!   Eureka writes them) and our long-poll watch answer;
//! - [`http`]: a thin typed client for the registry's REST API, with the
//!   [`credentials`] of a registry that protects its writes;
//! - [`discovery`]: a local, watch-fed cache of every application's instances;
//! - [`lb`]: client-side load balancing with passive ejection over that cache,
//!   and the per-endpoint status the admin endpoints show.
//!
//! Registering and renewing an instance's own lease is a service's job and
//! lives in `kit::registry::agent`, on top of this crate.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod discovery;
pub mod http;
pub mod lb;
pub mod model;

pub use credentials::Credentials;
pub use discovery::{Discovery, ServiceInstance};
pub use http::{RegistryError, RegistryHttp};
