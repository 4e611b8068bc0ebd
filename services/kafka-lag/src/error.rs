//! What reading from the broker can fail with. Every variant names the broker address and what
//! was being read, so a message printed by the CLI or the dashboard says where to look.

use std::time::Duration;

/// A failed read from the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LagError {
    /// The bootstrap address is not `host:port`.
    #[error("invalid broker address {address:?}: {reason}")]
    Address {
        address: String,
        reason: &'static str,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to the broker at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker did not answer in time (it may be paused, overloaded or gone).
    #[error("{what}: no answer from the broker at {addr} within {after:?}")]
    Timeout {
        what: String,
        addr: String,
        after: Duration,
    },
    /// The connection broke while a request was under way.
    #[error("{what}: the connection to the broker at {addr} failed: {source}")]
    Io {
        what: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker's answer could not be read (or ours could not be written).
    #[error("{what}: unreadable exchange with the broker at {addr}: {message}")]
    Protocol {
        what: String,
        addr: String,
        message: String,
    },
    /// The broker speaks no version of an API that this client speaks.
    #[error(
        "the broker at {addr} does not support {api} in a version this client speaks (broker: {broker}, client: {client})"
    )]
    Unsupported {
        addr: String,
        api: String,
        broker: String,
        client: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{what}: the broker at {addr} answered {name} (error code {code})")]
    Broker {
        what: String,
        addr: String,
        code: i16,
        name: String,
    },
    /// The topic asked for does not exist.
    #[error("topic {topic} does not exist on the broker at {addr}")]
    UnknownTopic { topic: String, addr: String },
}

impl LagError {
    /// True for failures that say nothing about the broker's data, only that it could not be
    /// reached or did not answer in time: the caller may retry later.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            LagError::Connect { .. } | LagError::Timeout { .. } | LagError::Io { .. }
        )
    }
}

/// The name of a Kafka error code (`UNKNOWN_MEMBER_ID`-style, as kafka-protocol spells it).
pub(crate) fn code_name(code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    match code.err() {
        Some(e) => format!("{e:?}"),
        None => "NONE".to_string(),
    }
}
