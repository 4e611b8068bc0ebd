//! Service registry: the Eureka wire model and the client every service uses
//! to discover its peers ([`discovery`]) come from the `registry-client`
//! crate (re-exported here at their old paths, so the CLI and the dashboard
//! use the same code without the kit); registering, renewing and
//! deregistering the service's own instance ([`agent`]) is the kit's.

pub mod agent;

pub use registry_client::{Discovery, RegistryError, RegistryHttp, ServiceInstance};
pub use registry_client::{discovery, http, model};
