//! Service registry: the Eureka wire model and the client every service uses
//! to register, renew, deregister and discover its peers.

pub mod model;
