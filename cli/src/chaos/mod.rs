//! Breaking the running system on purpose, and proving it recovers: the only module that changes
//! the stack's services deliberately (ARCHITECTURE.md).
//!
//! - [`faults`]: faults at the container, network and application layers, their records and
//!   their automatic revert.

pub mod faults;
