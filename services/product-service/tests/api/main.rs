//! product-service integration tests: one binary, one module per feature.
//!
//! - `contract`: the store contract, run against every adapter (MongoDB only with `MONGODB_URL`).
//! - `http`: the API over HTTP on the real service, in-process on port 0.
//! - `processes`: the real binary, two instances sharing one embedded store.

mod contract;
mod helpers;
mod http;
mod processes;
