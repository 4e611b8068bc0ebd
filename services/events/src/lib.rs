//! The events that cross Kafka, and the rules for changing them.
//!
//! order-service publishes [`OrderPlacedEvent`] on [`ORDER_PLACED_TOPIC`]
//! (key = order number) once an order is validated and stored;
//! notification-service consumes it. Both sides use this crate, so the
//! schema is written once.
//!
//! # Wire format
//! JSON (camelCase), UTF-8, one event per message. Headers:
//! - `event-type`: `OrderPlacedEvent`
//! - `schema-version`: the event's [`SCHEMA_VERSION`] as decimal text
//! - `content-type`: `application/json`
//! - trace context (`traceparent`, `b3`), added by the publisher
//!
//! # Evolution rule
//! Within a schema version, changes are additive only: a new field is
//! optional (`#[serde(default)]`) and consumers ignore fields they do not
//! know, so old consumers read new events and new consumers read old ones.
//! Renaming, removing, retyping a field or changing its meaning is a
//! breaking change: it bumps [`SCHEMA_VERSION`], the publisher keeps
//! writing the old version until every consumer reads the new one, and a
//! consumer that receives a version newer than it understands does not
//! guess: [`decode`] fails with [`EventError::UnsupportedVersion`] and the
//! consumer routes the message to the dead-letter topic, where it waits
//! for a consumer upgrade instead of being lost.

#![forbid(unsafe_code)]

#[cfg(feature = "kafka")]
pub mod kafka;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topic of [`OrderPlacedEvent`]s.
pub const ORDER_PLACED_TOPIC: &str = "order-placed";
/// Dead-letter topic for order-placed messages that cannot be handled.
pub const ORDER_PLACED_DLT: &str = "order-placed.DLT";
/// The schema version this crate writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Value of the `event-type` header.
pub const EVENT_TYPE: &str = "OrderPlacedEvent";

/// Header names used on event messages.
pub mod headers {
    pub const EVENT_TYPE: &str = "event-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    pub const CONTENT_TYPE: &str = "content-type";
    /// On dead-lettered messages: why the message could not be handled.
    pub const DLT_ERROR: &str = "dlt-error";
    /// On dead-lettered messages: how many times handling was attempted.
    pub const DLT_ATTEMPTS: &str = "dlt-attempts";
    /// On dead-lettered messages: where the message came from.
    pub const DLT_ORIGINAL_TOPIC: &str = "dlt-original-topic";
    pub const DLT_ORIGINAL_PARTITION: &str = "dlt-original-partition";
    pub const DLT_ORIGINAL_OFFSET: &str = "dlt-original-offset";
}

/// An order was validated against stock and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedEvent {
    /// Unique per event; consumers deduplicate on it.
    pub event_id: Uuid,
    /// The schema version this event was written with.
    pub schema_version: u32,
    pub order_number: String,
    pub lines: Vec<OrderLine>,
    /// Sum of `price × quantity` over the lines.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub customer: Customer,
    /// When the order was placed.
    pub occurred_at: DateTime<Utc>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub sku_code: String,
    /// Unit price.
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub quantity: u32,
}

/// Who placed the order (from the caller's token, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// The identity provider's subject, or `anonymous`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why bytes are not a usable event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a JSON OrderPlacedEvent: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("schema version {found} is newer than the newest this consumer reads ({supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl OrderPlacedEvent {
    /// A new event for an order, with a fresh id and the current schema version.
    pub fn new(
        order_number: String,
        lines: Vec<OrderLine>,
        customer: Customer,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        let total = total_of(&lines);
        OrderPlacedEvent {
            event_id: Uuid::new_v4(),
            schema_version: SCHEMA_VERSION,
            order_number,
            lines,
            total,
            customer,
            occurred_at,
        }
    }

    /// Checks what JSON types cannot: a number, lines, positive quantities,
    /// non-negative prices and a total that matches the lines.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.order_number.trim().is_empty() {
            return Err(EventError::Invalid("orderNumber is empty".into()));
        }
        if self.lines.is_empty() {
            return Err(EventError::Invalid("an order has at least one line".into()));
        }
        for (i, l) in self.lines.iter().enumerate() {
            if l.sku_code.trim().is_empty() {
                return Err(EventError::Invalid(format!("lines[{i}].skuCode is empty")));
            }
            if l.quantity == 0 {
                return Err(EventError::Invalid(format!(
                    "lines[{i}].quantity must be positive"
                )));
            }
            if l.price.is_sign_negative() {
                return Err(EventError::Invalid(format!(
                    "lines[{i}].price must not be negative"
                )));
            }
        }
        if total_of(&self.lines) != self.total {
            return Err(EventError::Invalid(format!(
                "total {} does not match the lines ({})",
                self.total,
                total_of(&self.lines)
            )));
        }
        Ok(())
    }

    /// The JSON bytes published on Kafka.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data (strings, numbers, a UUID, a timestamp) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A sample order, for the tests and benchmarks of every crate that handles
/// the event (feature `fixtures`): two `iphone_15` at 999.99 and one `case`
/// at 10.00 (total 2009.98), placed now by customer `user-1`, Alice
/// <alice@example.com>.
#[cfg(any(test, feature = "fixtures"))]
pub fn sample(order_number: &str) -> OrderPlacedEvent {
    OrderPlacedEvent::new(
        order_number.into(),
        vec![
            OrderLine {
                sku_code: "iphone_15".into(),
                price: Decimal::new(99_999, 2),
                quantity: 2,
            },
            OrderLine {
                sku_code: "case".into(),
                price: Decimal::new(1_000, 2),
                quantity: 1,
            },
        ],
        Customer {
            id: "user-1".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
        },
        Utc::now(),
    )
}

/// Sum of `price × quantity`.
pub fn total_of(lines: &[OrderLine]) -> Decimal {
    lines
        .iter()
        .map(|l| l.price * Decimal::from(l.quantity))
        .sum()
}

/// Reads and checks an event from a message payload.
pub fn decode(payload: &[u8]) -> Result<OrderPlacedEvent, EventError> {
    // Look at the version first, so a future event with a changed shape is
    // reported as "unsupported version" rather than as malformed.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct VersionOnly {
        schema_version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(payload)?;
    if v.schema_version > SCHEMA_VERSION {
        return Err(EventError::UnsupportedVersion {
            found: v.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    if v.schema_version == 0 {
        return Err(EventError::Invalid("schemaVersion 0 does not exist".into()));
    }
    let event: OrderPlacedEvent = serde_json::from_slice(payload)?;
    event.validate()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn sample() -> OrderPlacedEvent {
        super::sample("ord-1")
    }

    /// An event survives encode/decode, with prices as exact decimal strings.
    #[test]
    fn round_trips_with_exact_decimals() {
        let e = sample();
        assert_eq!(e.total, Decimal::from_str("2009.98").unwrap());
        let bytes = e.encode();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["total"], "2009.98");
        assert_eq!(v["lines"][0]["price"], "999.99");
        assert_eq!(decode(&bytes).unwrap(), e);
    }

    /// Unknown fields are ignored (additive evolution); a newer schema version is refused, not guessed.
    #[test]
    fn evolution_rules() {
        let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        v["giftWrap"] = serde_json::json!(true);
        assert!(decode(&serde_json::to_vec(&v).unwrap()).is_ok());
        v["schemaVersion"] = serde_json::json!(2);
        assert!(matches!(
            decode(&serde_json::to_vec(&v).unwrap()),
            Err(EventError::UnsupportedVersion { found: 2, .. })
        ));
    }

    /// Garbage, wrong types, empty orders and inconsistent totals are errors, never panics.
    #[test]
    fn rejects_bad_payloads() {
        assert!(matches!(decode(b"not json"), Err(EventError::Malformed(_))));
        assert!(decode(b"{}").is_err());
        let mut e = sample();
        e.lines.clear();
        assert!(matches!(decode(&e.encode()), Err(EventError::Invalid(_))));
        let mut e = sample();
        e.total = Decimal::ONE;
        assert!(matches!(decode(&e.encode()), Err(EventError::Invalid(_))));
        let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        v["lines"][0]["quantity"] = serde_json::json!(-1);
        assert!(matches!(
            decode(&serde_json::to_vec(&v).unwrap()),
            Err(EventError::Malformed(_))
        ));
    }
}
