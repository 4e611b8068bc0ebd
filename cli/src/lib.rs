//! The `platform` CLI as a library: the binary in `main.rs` only parses arguments and reports
//! errors; everything else lives here so it can be tested without spawning processes.
//!
//! - [`commands`]: one module per command group, and the clap definitions.
//! - [`stack`]: stack files (TOML): model, validation with file/line/key diagnostics, dependency order.
//! - [`runtime`]: the only module that talks to Docker (bollard), including local image builds.
//! - [`registry`]: reading a running discovery-server (Eureka REST API).

#![forbid(unsafe_code)]

pub mod commands;
pub mod error;
pub mod output;
pub mod paths;
pub mod runtime;
pub mod stack;
pub mod telemetry;

pub use error::{Error, Result};
