//! The notification an order gets: a plain-text e-mail rendered from its event.
//!
//! "Sending" it means writing it to the log (there is no mail server in the platform) after
//! it has been stored; the store is the record of what was sent, one row per event id.

use std::fmt::Write as _;

use events::OrderPlacedEvent;
use rust_decimal::Decimal;

/// Where a consumed event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A rendered notification, ready to store and send.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub event_id: uuid::Uuid,
    pub order_number: String,
    pub customer_id: String,
    /// The address, when the event carried one.
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    pub total: Decimal,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub origin: Origin,
}

/// Renders the e-mail for `event`.
pub fn render(event: &OrderPlacedEvent, origin: Origin) -> Email {
    let c = &event.customer;
    let greeting = c
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(c.id.as_str());
    let subject = format!("Your order {} has been placed", event.order_number);
    let mut body = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(body, "Hello {greeting},");
    let _ = writeln!(body);
    let _ = writeln!(
        body,
        "thank you for your order {}, placed {}.",
        event.order_number,
        event.occurred_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(body);
    for line in &event.lines {
        let _ = writeln!(
            body,
            "  {} x {} at {} = {}",
            line.quantity,
            line.sku_code,
            line.price,
            line.price * Decimal::from(line.quantity)
        );
    }
    let _ = writeln!(body);
    let _ = writeln!(body, "Total: {}", event.total);
    let _ = writeln!(body);
    let _ = write!(body, "Your platform shop");
    Email {
        event_id: event.event_id,
        order_number: event.order_number.clone(),
        customer_id: c.id.clone(),
        recipient: c.email.clone().filter(|e| !e.trim().is_empty()),
        subject,
        body,
        total: event.total,
        occurred_at: event.occurred_at,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Customer;

    /// The e-mail names the order, every line with its amount, the total and the customer.
    #[test]
    fn renders_order_lines_total_and_customer() {
        let mut event = events::sample("ord-42");
        event.occurred_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let origin = Origin {
            topic: "order-placed".into(),
            partition: 0,
            offset: 7,
        };
        let e = render(&event, origin.clone());
        assert_eq!(e.subject, "Your order ord-42 has been placed");
        assert_eq!(e.recipient.as_deref(), Some("alice@example.com"));
        assert!(e.body.starts_with("Hello Alice,"), "{}", e.body);
        assert!(e.body.contains("2023-11-14 22:13:20 UTC"), "{}", e.body);
        assert!(
            e.body.contains("  2 x iphone_15 at 999.99 = 1999.98"),
            "{}",
            e.body
        );
        assert!(e.body.contains("  1 x case at 10.00 = 10.00"), "{}", e.body);
        assert!(e.body.contains("Total: 2009.98"), "{}", e.body);
        assert_eq!(e.total.to_string(), "2009.98");
        assert_eq!(e.origin, origin);
    }

    /// Without a name the greeting uses the customer id; an empty e-mail is no recipient.
    #[test]
    fn anonymous_customer() {
        let mut event = events::sample("ord-1");
        event.customer = Customer {
            id: "anonymous".into(),
            email: Some(" ".into()),
            name: Some(String::new()),
        };
        let e = render(
            &event,
            Origin {
                topic: "t".into(),
                partition: 1,
                offset: 2,
            },
        );
        assert!(e.body.starts_with("Hello anonymous,"));
        assert_eq!(e.recipient, None);
    }
}
