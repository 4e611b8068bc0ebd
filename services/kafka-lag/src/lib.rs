//! Consumer lag, topics and consumer groups read from a Kafka-API broker, in pure Rust.
//!
//! The one implementation of "lag" on the platform: notification-service's `/admin/consumer`,
//! `platform status`, the scenarios' assertions and the dashboard's Kafka panel all read it
//! here, from the broker itself: the group's committed offset (OffsetFetch) against each
//! partition's high watermark (ListOffsets), for every partition of the topics the group
//! consumes (Metadata), with the members and their assignments (DescribeGroups). So lag is
//! true when the consumer is down, has no assignment, or is behind, which a consumer's own view
//! of its assigned partitions cannot be.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafka_lag::LagError> {
//! let broker = kafka_lag::BrokerClient::new("127.0.0.1:9092", Default::default())?;
//! let lag = broker.group_lag("notification-service", &["order-placed"]).await?;
//! println!("{} behind, {} partitions unassigned", lag.total_lag, lag.unassigned);
//! let everything = broker.snapshot().await?; // topics, groups, members, lag per partition
//! # let _ = everything; Ok(()) }
//! ```
//!
//! Built on the `kafka-protocol` crate's codecs, without librdkafka, so the CLI and the
//! dashboard stay free of C dependencies. It talks to the bootstrap address only (see
//! [`client`]). Every call is bounded by [`Options::request_timeout`] and fails with a typed
//! [`LagError`].
#![forbid(unsafe_code)]

pub mod client;
mod conn;
mod error;
mod model;

pub use client::{BrokerClient, Options, decode_assignment};
pub use conn::Api;
pub use error::LagError;
pub use model::{
    Group, GroupLag, GroupListing, Member, PartitionLag, PartitionOffsets, Snapshot, Topic,
    TopicPartitions, group_topics,
};
