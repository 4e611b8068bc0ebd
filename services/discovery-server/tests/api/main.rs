//! Integration tests of the discovery-server: the real service started
//! in-process on port 0 (with a manual clock where time matters), real HTTP
//! clients (ours, the kit's, py-eureka-client), and real processes for the
//! end-to-end eviction check.

mod helpers;

mod bad_input;
mod clients;
mod eureka;
mod kit_clients;
mod leases;
mod load;
mod observe;
mod processes;
mod python;
mod watch;
mod write_auth;
