//! Creating the topics these events travel on (feature `kafka`, for the services that link
//! rdkafka anyway): order-service creates [`crate::ORDER_PLACED_TOPIC`] before its relay
//! publishes, notification-service its dead-letter topic before the first dead letter.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

/// Creates `topic` with `partitions` partitions (at least one; replication factor 1, the
/// platform runs one broker) unless it exists, which counts as success. Returns whether this
/// call created it. `timeout` is the broker's operation timeout.
pub async fn ensure_topic<C: ClientContext>(
    admin: &AdminClient<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> KafkaResult<bool> {
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let mut created = false;
    for result in admin.create_topics([&new], &options).await? {
        match result {
            Ok(_) => created = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(created)
}
