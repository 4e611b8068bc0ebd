//! Integration tests of the testkit against the real programs: Debian's `mariadbd`, the broker (nisshi 0.6.0 or tansu 0.6.0),
//! `/bin/sh`. They prove what every other crate's tests rely on: isolated parallel servers, restarts
//! that keep data, the Kafka features the services use, and no servers left behind by dead tests.
//! With the `registry` feature (on in workspace runs), also the in-process kit service helpers.

mod broker;
mod mariadb;
mod orphans;
mod process;
#[cfg(feature = "registry")]
mod service;
mod skip;
