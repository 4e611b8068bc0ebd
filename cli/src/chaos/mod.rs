//! Breaking the running system on purpose, and proving it recovers: the only module that changes
//! the stack's services deliberately (ARCHITECTURE.md). It reads them through
//! [`crate::observe`] and moves containers through [`crate::runtime`].
//!
//! - [`faults`]: faults at the container, network and application layers, their records and
//!   their automatic revert.
//! - [`load`]: the open-loop load engine behind `platform load`, the scenarios' `load` steps and
//!   the dashboard: start with a [`load::LoadConfig`], read live counters, stop early, get a
//!   serde [`load::LoadReport`].
//! - [`scenario`]: scenario files (`stacks/scenarios/*.toml`), their validation with file, line
//!   and key, the runner (steady state, steps, assertions, heal) and its reports.

pub mod faults;
pub mod load;
pub mod scenario;
