//! Products as the API and the stores see them, and the rules a product obeys.
//!
//! A client sends a [`ProductInput`] (create and full replace); [`ProductInput::validate`]
//! turns it into a [`ProductFields`] or lists every broken rule at once, so one 422 answer
//! tells the client everything to fix. Stores keep whole [`Product`]s.
//!
//! # Prices
//! A price is a `rust_decimal::Decimal`, never a float. On input it may be a JSON string
//! (`"999.99"`, exact, recommended) or a JSON number (`999.99`); a number goes through
//! `serde_json`'s `f64` and is read back from its shortest decimal form, which is exact for
//! the at most 11 significant digits a valid price has. A price is at least 0, at most
//! 999,999,999.99 and has at most two decimal places (`1.005` is refused, never rounded).
//! On output it is always a string with exactly two decimals (`"10.50"`), so clients never
//! meet a binary float.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Longest accepted `skuCode`.
pub const MAX_SKU_LEN: usize = 64;
/// Longest accepted `name`, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted `description`, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 2000;
/// Decimal places of every stored price.
pub const PRICE_SCALE: u32 = 2;

/// The largest accepted price, 999,999,999.99.
pub fn max_price() -> Decimal {
    Decimal::new(99_999_999_999, PRICE_SCALE)
}

/// A stored product, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Assigned by the service (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// Stock keeping unit; unique across products.
    pub sku_code: String,
    pub name: String,
    pub description: String,
    /// Exactly [`PRICE_SCALE`] decimals; serialised as a string.
    pub price: Decimal,
}

impl Product {
    /// A new product with a fresh id.
    pub fn new(fields: ProductFields) -> Product {
        Product::with_id(uuid::Uuid::now_v7().to_string(), fields)
    }

    /// The product `id` with `fields` (a full replacement keeps the id).
    pub fn with_id(id: String, fields: ProductFields) -> Product {
        Product {
            id,
            sku_code: fields.sku_code,
            name: fields.name,
            description: fields.description,
            price: fields.price,
        }
    }
}

/// The body of `POST /api/product` and `PUT /api/product/{id}`.
///
/// Unknown members (for example an `id` a client echoes back) are ignored; a body's `id`
/// never overrides the one in the path or the one the service assigns.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInput {
    pub sku_code: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub price: Decimal,
}

/// Validated product fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFields {
    pub sku_code: String,
    pub name: String,
    pub description: String,
    pub price: Decimal,
}

/// One broken rule of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON member (`skuCode`, `name`, `description`, `price`).
    pub field: &'static str,
    pub message: String,
}

impl ProductInput {
    /// Checks every rule; trims `name` and `description`; brings the price to two decimals.
    pub fn validate(self) -> Result<ProductFields, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field, message: String| errors.push(FieldError { field, message });

        if let Err(message) = check_sku(&self.sku_code) {
            fail("skuCode", message);
        }
        let name = self.name.trim().to_string();
        if name.is_empty() {
            fail("name", "must not be empty".into());
        } else if name.chars().count() > MAX_NAME_LEN {
            fail("name", format!("must be at most {MAX_NAME_LEN} characters"));
        } else if name.chars().any(char::is_control) {
            fail("name", "must not contain control characters".into());
        }
        let description = self.description.unwrap_or_default().trim().to_string();
        if description.chars().count() > MAX_DESCRIPTION_LEN {
            fail(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            );
        }
        let price = match check_price(self.price) {
            Ok(p) => p,
            Err(message) => {
                fail("price", message);
                Decimal::ZERO
            }
        };
        if errors.is_empty() {
            Ok(ProductFields {
                sku_code: self.sku_code,
                name,
                description,
                price,
            })
        } else {
            Err(errors)
        }
    }
}

/// A sku is 1 to 64 of `A-Z a-z 0-9 _ . -`: safe in URLs, query strings and logs as it is.
pub fn check_sku(sku: &str) -> Result<(), String> {
    if sku.is_empty() {
        return Err("must not be empty".into());
    }
    if sku.len() > MAX_SKU_LEN {
        return Err(format!("must be at most {MAX_SKU_LEN} characters"));
    }
    if !sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("may contain only letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

/// Non-negative, at most two decimal places, at most [`max_price`]; returned with scale 2.
pub fn check_price(price: Decimal) -> Result<Decimal, String> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err("must not be negative".into());
    }
    let normalized = price.normalize();
    if normalized.scale() > PRICE_SCALE {
        return Err(format!(
            "must have at most {PRICE_SCALE} decimal places, got {price}"
        ));
    }
    if normalized > max_price() {
        return Err(format!("must be at most {}", max_price()));
    }
    let mut p = normalized.abs();
    p.rescale(PRICE_SCALE);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn input(sku: &str, name: &str, price: &str) -> ProductInput {
        ProductInput {
            sku_code: sku.into(),
            name: name.into(),
            description: None,
            price: Decimal::from_str(price).unwrap(),
        }
    }

    /// A valid input is trimmed and its price brought to exactly two decimals.
    #[test]
    fn valid_input_is_normalised() {
        let f = input("iphone_15", "  iPhone 15 ", "999.9")
            .validate()
            .unwrap();
        assert_eq!(f.name, "iPhone 15");
        assert_eq!(f.price.to_string(), "999.90");
        assert_eq!(f.description, "");
        let f = input("a", "b", "10.500").validate().unwrap();
        assert_eq!(f.price.to_string(), "10.50");
        let f = input("a", "b", "-0").validate().unwrap();
        assert_eq!(f.price.to_string(), "0.00");
    }

    /// Every broken rule is reported, each with its field.
    #[test]
    fn all_errors_are_listed() {
        let errors = input("bad sku!", " ", "-1").validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["skuCode", "name", "price"]);
        for (price, why) in [
            ("1.005", "decimal places"),
            ("1000000000", "at most"),
            ("-0.01", "negative"),
        ] {
            let e = input("a", "b", price).validate().unwrap_err();
            assert!(e[0].message.contains(why), "{price}: {e:?}");
        }
        assert!(input(&"x".repeat(65), "b", "1").validate().is_err());
        assert!(input("a", &"n".repeat(201), "1").validate().is_err());
        assert!(input("a", "tab\there", "1").validate().is_err());
    }

    /// Prices arrive as strings or numbers and leave as two-decimal strings; no float reaches the store.
    #[test]
    fn price_json_in_and_out() {
        for body in [
            r#"{"skuCode":"s","name":"n","price":"999.99"}"#,
            r#"{"skuCode":"s","name":"n","price":999.99}"#,
        ] {
            let i: ProductInput = serde_json::from_str(body).unwrap();
            let p = Product::new(i.validate().unwrap());
            let v = serde_json::to_value(&p).unwrap();
            assert_eq!(v["price"], "999.99", "{body}");
            assert_eq!(v["skuCode"], "s");
        }
        let i: ProductInput =
            serde_json::from_str(r#"{"skuCode":"s","name":"n","price":12}"#).unwrap();
        assert_eq!(i.validate().unwrap().price.to_string(), "12.00");
        assert!(
            serde_json::from_str::<ProductInput>(r#"{"skuCode":"s","name":"n","price":"ten"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<ProductInput>(r#"{"skuCode":"s","name":"n","price":true}"#)
                .is_err()
        );
    }

    /// Ids are UUIDv7 strings that sort in creation order.
    #[test]
    fn ids_sort_by_creation() {
        let f = input("a", "b", "1").validate().unwrap();
        let a = Product::new(f.clone());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Product::new(f);
        assert!(a.id < b.id);
    }
}
