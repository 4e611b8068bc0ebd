//! notification-service integration tests, against a throwaway MariaDB and Kafka-API broker
//! (testkit: nisshi; `TESTKIT_BROKER=tansu` for the old one).
//!
//! - `consume`: events become notifications, listed and counted; lag; the HTTP problems.
//! - `nisshi_fetch`: nisshi 0.6.0's fetch under load and the consumer's fetch budget (issue 10).
//! - `redelivery`: the same event twice, a restart before the commit, `kill -9` mid-stream.
//! - `poison`: undecodable messages and repeated failures go to the DLT; the partition flows.
//! - `outage`: the database goes away and comes back.
//! - `order_flow`: the real order flow with order-service (binary), inventory and the registry.
//! - `reliability`: 200 orders/s for 120 s, broker restart and pause mid-stream, a consumer left
//!   without partitions (issue 10).

mod consume;
mod helpers;
mod nisshi_fetch;
mod order_flow;
mod outage;
mod poison;
mod redelivery;
mod reliability;
