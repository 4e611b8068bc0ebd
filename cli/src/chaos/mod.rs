//! Changing the running system on purpose: faults (owned by the fault commands), load and
//! scenarios. Only this module changes services on purpose (ARCHITECTURE.md); it reads them
//! through [`crate::observe`] and moves containers through [`crate::runtime`].
//!
//! - [`load`]: the open-loop load engine behind `platform load`, the scenarios' `load` steps and
//!   the dashboard: start with a [`load::LoadConfig`], read live counters, stop early, get a
//!   serde [`load::LoadReport`].
//! - [`scenario`]: scenario files (`stacks/scenarios/*.toml`), their validation with file, line
//!   and key, the runner (steady state, steps, assertions, heal) and its reports.

pub mod load;
pub mod scenario;
