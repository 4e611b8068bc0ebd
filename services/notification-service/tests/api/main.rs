//! notification-service integration tests, against a throwaway MariaDB and tansu broker.
//!
//! - `consume`: events become notifications, listed and counted; lag; the HTTP problems.
//! - `redelivery`: the same event twice, a restart before the commit, `kill -9` mid-stream.
//! - `poison`: undecodable messages and repeated failures go to the DLT; the partition flows.
//! - `outage`: the database goes away and comes back.

mod consume;
mod helpers;
mod outage;
mod poison;
mod redelivery;
