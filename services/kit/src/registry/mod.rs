//! Service registry: the Eureka wire model and the client every service uses
//! to register, renew, deregister ([`agent`]) and discover its peers
//! ([`discovery`]).

pub mod agent;
pub mod discovery;
pub mod http;
pub mod model;

pub use discovery::{Discovery, ServiceInstance};
pub use http::{RegistryError, RegistryHttp};
