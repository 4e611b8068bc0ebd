//! Integration tests of the api-gateway: the real gateway on port 0, real
//! upstream HTTP servers on loopback, registered through a real registry
//! (the discovery-server binary, started per test).
//!
//! Build the registry first: `cargo build -p discovery-server`; `order` and
//! `traces` run the other services as binaries too (a workspace build has
//! them all).

mod auth;
mod config;
mod failover;
mod filters;
mod helpers;
mod identity;
mod limits;
mod order;
mod routing;
mod streaming;
mod traces;
