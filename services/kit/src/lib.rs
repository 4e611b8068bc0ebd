//! The service kit: everything every `platform` service needs, written once.
//!
//! A service is a thin `main.rs` plus its domain code; configuration,
//! logging, the HTTP scaffold (health, metrics, info, admin), errors as
//! problem+json, graceful shutdown and the registry client live here.
#![forbid(unsafe_code)]

pub mod registry;
