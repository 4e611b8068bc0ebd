//! Orders as the API reads and writes them, and the rules a new order must meet.
//!
//! Prices are `rust_decimal::Decimal` end to end (JSON in: a number or a
//! string; JSON out: a string, so no client parses them into a float;
//! database: `DECIMAL(19,2)`). A price with more than two decimal places is
//! refused rather than rounded: rounding someone's price is not our call.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use events::{Customer, OrderLine};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// Longest SKU code.
pub const MAX_SKU_LEN: usize = 64;

/// Largest amount a `DECIMAL(19,2)` column holds.
pub fn max_amount() -> Decimal {
    // 17 integer digits and 2 decimals; the literal always parses.
    Decimal::from_str("99999999999999999.99").unwrap_or(Decimal::MAX)
}

/// The status every stored order has: it exists only once stock was reserved.
pub const STATUS_PLACED: &str = "PLACED";

/// One line of `POST /api/order`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineRequest {
    pub sku_code: String,
    /// Unit price; a JSON number or a decimal string.
    pub price: Decimal,
    pub quantity: u32,
}

/// The body of `POST /api/order`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub lines: Vec<LineRequest>,
}

impl PlaceOrder {
    /// Checks what the types cannot; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.lines.is_empty() {
            return Err("lines must not be empty".into());
        }
        if self.lines.len() > MAX_LINES {
            return Err(format!(
                "at most {MAX_LINES} lines per order, got {}",
                self.lines.len()
            ));
        }
        let max = max_amount();
        for (i, l) in self.lines.iter().enumerate() {
            let sku = &l.sku_code;
            if sku.is_empty() || sku.len() > MAX_SKU_LEN {
                return Err(format!(
                    "lines[{i}].skuCode must be 1 to {MAX_SKU_LEN} characters"
                ));
            }
            if !sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "lines[{i}].skuCode may contain only letters, digits, '-', '_' and '.'"
                ));
            }
            if l.quantity == 0 || l.quantity > MAX_QUANTITY {
                return Err(format!(
                    "lines[{i}].quantity must be between 1 and {MAX_QUANTITY}"
                ));
            }
            if l.price.is_sign_negative() && !l.price.is_zero() {
                return Err(format!("lines[{i}].price must not be negative"));
            }
            if l.price.normalize().scale() > 2 {
                return Err(format!(
                    "lines[{i}].price must have at most 2 decimal places"
                ));
            }
            if l.price > max {
                return Err(format!("lines[{i}].price is too large"));
            }
        }
        match self.total() {
            Some(t) if t <= max => Ok(()),
            _ => Err("the order total is too large".into()),
        }
    }

    /// The lines as the event and the database carry them (prices at scale 2).
    pub fn lines(&self) -> Vec<OrderLine> {
        self.lines
            .iter()
            .map(|l| OrderLine {
                sku_code: l.sku_code.clone(),
                price: money(l.price),
                quantity: l.quantity,
            })
            .collect()
    }

    /// Sum of price × quantity, `None` on overflow.
    pub fn total(&self) -> Option<Decimal> {
        self.lines.iter().try_fold(Decimal::ZERO, |acc, l| {
            l.price
                .checked_mul(Decimal::from(l.quantity))
                .and_then(|x| acc.checked_add(x))
        })
    }

    /// A fingerprint of the request and its caller, to recognise an
    /// Idempotency-Key reused with a different order (hex SHA-256).
    pub fn fingerprint(&self, customer: &Customer) -> String {
        let canonical = serde_json::json!({
            "customer": customer.id,
            "lines": self.lines().iter().map(|l| serde_json::json!({
                "skuCode": l.sku_code,
                "price": l.price.to_string(),
                "quantity": l.quantity,
            })).collect::<Vec<_>>(),
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An amount at scale 2, as `DECIMAL(19,2)` stores it.
pub fn money(d: Decimal) -> Decimal {
    let mut d = d;
    d.rescale(2);
    d
}

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub sku_code: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub quantity: u32,
}

/// A stored order, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_number: String,
    pub status: String,
    pub customer: Customer,
    pub lines: Vec<LineView>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
}

impl OrderView {
    /// The view of a just-placed order.
    pub fn placed(
        order_number: &str,
        customer: Customer,
        lines: &[OrderLine],
        created_at: DateTime<Utc>,
    ) -> OrderView {
        OrderView {
            order_number: order_number.to_string(),
            status: STATUS_PLACED.to_string(),
            customer,
            lines: lines
                .iter()
                .map(|l| LineView {
                    sku_code: l.sku_code.clone(),
                    price: l.price,
                    quantity: l.quantity,
                })
                .collect(),
            total: money(events::total_of(lines)),
            created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lines: serde_json::Value) -> Result<PlaceOrder, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "lines": lines }))
    }

    /// Prices are read from numbers or strings without float error; totals are exact.
    #[test]
    fn exact_decimal_prices() {
        let o = order(serde_json::json!([
            {"skuCode": "a", "price": 0.1, "quantity": 3},
            {"skuCode": "b", "price": "0.20", "quantity": 1}
        ]))
        .unwrap();
        o.validate().unwrap();
        assert_eq!(o.total().unwrap(), Decimal::from_str("0.5").unwrap());
        let v = OrderView::placed("n", Customer::default(), &o.lines(), Utc::now());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["total"], "0.50");
        assert_eq!(json["lines"][0]["price"], "0.10");
    }

    /// Empty, oversized, zero or negative, over-precise and overflowing orders are refused.
    #[test]
    fn validation_rules() {
        let bad = [
            serde_json::json!([]),
            serde_json::json!([{"skuCode": "a", "price": 1, "quantity": 0}]),
            serde_json::json!([{"skuCode": "a", "price": -1, "quantity": 1}]),
            serde_json::json!([{"skuCode": "a", "price": "1.001", "quantity": 1}]),
            serde_json::json!([{"skuCode": "", "price": 1, "quantity": 1}]),
            serde_json::json!([{"skuCode": "a b", "price": 1, "quantity": 1}]),
            serde_json::json!([{"skuCode": "a", "price": "99999999999999999.99", "quantity": 2}]),
        ];
        for lines in bad {
            let o = order(lines.clone()).unwrap();
            assert!(o.validate().is_err(), "{lines}");
        }
        let many: Vec<_> = (0..=MAX_LINES)
            .map(|_| serde_json::json!({"skuCode": "a", "price": 1, "quantity": 1}))
            .collect();
        assert!(order(serde_json::json!(many)).unwrap().validate().is_err());
        assert!(order(serde_json::json!([{"skuCode": "a", "price": 1, "quantity": -1}])).is_err());
        assert!(order(serde_json::json!([{"skuCode": "a", "price": 1, "quantity": "1"}])).is_err());
        assert!(
            order(serde_json::json!([{"skuCode": "a", "price": "1.10", "quantity": 1}]))
                .unwrap()
                .validate()
                .is_ok(),
            "trailing zeros are fine"
        );
    }

    /// The fingerprint changes with the lines and the customer, not with price notation.
    #[test]
    fn fingerprint() {
        let a = order(serde_json::json!([{"skuCode": "a", "price": 1, "quantity": 1}])).unwrap();
        let b =
            order(serde_json::json!([{"skuCode": "a", "price": "1.00", "quantity": 1}])).unwrap();
        let c = order(serde_json::json!([{"skuCode": "a", "price": 1, "quantity": 2}])).unwrap();
        let anon = Customer {
            id: "anonymous".into(),
            ..Default::default()
        };
        let alice = Customer {
            id: "alice".into(),
            ..Default::default()
        };
        assert_eq!(a.fingerprint(&anon), b.fingerprint(&anon));
        assert_ne!(a.fingerprint(&anon), c.fingerprint(&anon));
        assert_ne!(a.fingerprint(&anon), a.fingerprint(&alice));
    }
}
