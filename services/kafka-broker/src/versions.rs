//! The APIs and versions this broker implements, as ApiVersions advertises them.
//!
//! Chosen so that librdkafka 2.12 (rdkafka 0.39, confluent-kafka), kafka-python 2.x and the
//! workspace's kafka-lag negotiate versions whose fields this broker fills: topic names rather
//! than topic ids (Fetch stops at 12, Produce at 9, DeleteTopics at 5), single-group
//! OffsetFetch (up to 7) and single-key FindCoordinator (up to 3).

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
];

/// The supported version range of `key`, if it is implemented.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every advertised range lies inside what the codec crate can decode and encode.
    #[test]
    fn advertised_versions_are_within_the_codecs() {
        for (key, lo, hi) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *lo && *hi <= valid.max && lo <= hi,
                "{key:?}: {lo}..={hi} outside {valid}"
            );
        }
    }
}
