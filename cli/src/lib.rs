//! The `platform` CLI as a library: the binary in `main.rs` only parses arguments and reports
//! errors; everything else lives here so it can be tested without spawning processes.
//!
//! - [`commands`]: one module per command group, and the clap definitions.
//! - [`stack`]: stack files (TOML): model, validation with file/line/key diagnostics, dependency order.
//! - [`runtime`]: the only module that talks to Docker (bollard), including local image builds.
//! - [`observe`]: the only reader of the running services (registry, status and drift, logs,
//!   tokens, admin endpoints, traces); commands and the dashboard show what it reads.
//! - [`render`]: the stack as manifests for another engine (Kubernetes), from the same model.
//! - [`chaos`]: the only module that changes the running services on purpose (faults, load,
//!   scenarios).

#![forbid(unsafe_code)]

pub mod chaos;
pub mod commands;
pub mod error;
pub mod observe;
pub mod output;
pub mod paths;
pub mod render;
pub mod runtime;
pub mod stack;
pub mod telemetry;

pub use error::{Error, Result};
