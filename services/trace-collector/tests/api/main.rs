//! Integration tests of trace-collector: the real service on port 0.
//!
//! One binary, one module per feature. Set TEST_LOG=1 to see the service's logs.

mod contract;
mod eviction;
mod exporters;
mod helpers;
mod hostile;
mod ingest;
mod ui;
