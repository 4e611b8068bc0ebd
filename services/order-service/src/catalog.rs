//! The catalogue's prices: an order's lines must carry the price
//! product-service lists for their SKU, so a client cannot set its own
//! (price 0 for a 19.99 product). A line whose price differs is refused
//! (422 `price-mismatch`, naming the catalogue's price) rather than
//! silently repriced: the client learns that the price it showed its user
//! is not the one that would be charged.
//!
//! product-service is found through the registry and balanced like
//! inventory; each distinct SKU is one `GET /api/product?skuCode=` (an
//! exact match), asked concurrently, bounded by one timeout. Catalogue reads
//! need no role, so no token is sent. When the catalogue cannot answer, the
//! order gets the same 503 fallback as when inventory cannot.

use std::collections::BTreeMap;
use std::time::Duration;

use kit::lb::{Balancer, Failure};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// How each line's price is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriceCheck {
    /// Each line's price must equal the catalogue's (product-service).
    Catalog,
    /// Prices are taken as sent. Only for tests of other concerns that run
    /// without product-service; never in a deployed stack.
    Off,
}

/// A line whose price is not the catalogue's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub sku_code: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub catalog_price: Decimal,
}

/// Why the prices could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no product-service instance is registered")]
    NoInstance,
    #[error("product-service at {url} failed: {reason}")]
    Failed { url: String, reason: String },
}

/// What the catalogue says of an order's SKUs.
#[derive(Debug, Default, PartialEq)]
pub struct Prices {
    /// Listed SKUs and their prices.
    pub listed: BTreeMap<String, Decimal>,
}

#[derive(Deserialize)]
struct ProductPage {
    items: Vec<Product>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    sku_code: String,
    #[serde(with = "rust_decimal::serde::str")]
    price: Decimal,
}

/// The catalogue client; cheap to clone.
#[derive(Clone, Debug)]
pub struct CatalogClient {
    balancer: Balancer,
    http: reqwest::Client,
    timeout: Duration,
}

impl CatalogClient {
    pub fn new(balancer: Balancer, http: reqwest::Client, timeout: Duration) -> CatalogClient {
        CatalogClient {
            balancer,
            http,
            timeout,
        }
    }

    /// The catalogue's prices of `skus` (unlisted SKUs are absent).
    pub async fn prices(&self, skus: &[&str]) -> Result<Prices, CatalogError> {
        let mut distinct: Vec<&str> = skus.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let lookups = distinct.iter().map(|sku| self.price_of(sku));
        let answers = tokio::time::timeout(self.timeout, futures::future::join_all(lookups))
            .await
            .map_err(|_| CatalogError::Failed {
                url: "product-service".into(),
                reason: format!("no answer within {} ms", self.timeout.as_millis()),
            })?;
        let mut prices = Prices::default();
        for (sku, answer) in distinct.iter().zip(answers) {
            if let Some(price) = answer? {
                prices.listed.insert((*sku).to_string(), price);
            }
        }
        Ok(prices)
    }

    async fn price_of(&self, sku: &str) -> Result<Option<Decimal>, CatalogError> {
        let pick = self
            .balancer
            .pick_ready(&[])
            .await
            .ok_or(CatalogError::NoInstance)?;
        let url = format!("{}/api/product", pick.base_url());
        let failed = |reason: String| CatalogError::Failed {
            url: url.clone(),
            reason,
        };
        // A CLIENT span whose context travels in the headers: the lookup
        // joins the order's trace.
        let span = kit::telemetry::client_span("product-service", "GET", &url);
        let mut headers = reqwest::header::HeaderMap::new();
        kit::telemetry::inject_headers_from(&span, &mut headers);
        let sent = self
            .http
            .get(&url)
            .query(&[("skuCode", sku), ("size", "1")])
            .headers(headers)
            .send()
            .instrument(span.clone())
            .await;
        let res = match sent {
            Ok(r) => r,
            Err(e) => {
                kit::telemetry::mark_error(&span);
                pick.failure(Failure::Connect);
                return Err(failed(e.to_string()));
            }
        };
        let status = res.status();
        kit::telemetry::record_status(&span, status.as_u16());
        if !status.is_success() {
            kit::telemetry::mark_error(&span);
        }
        if status.is_server_error() {
            pick.failure(Failure::ServerError);
            return Err(failed(format!("answered {status}")));
        }
        pick.success();
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let page: ProductPage = res
            .json()
            .await
            .map_err(|e| failed(format!("unreadable product page: {e}")))?;
        Ok(page
            .items
            .into_iter()
            .find(|p| p.sku_code == sku)
            .map(|p| p.price))
    }
}

impl Prices {
    /// The SKUs of `lines` the catalogue does not list, and the lines whose
    /// price is not the catalogue's (compared as amounts: 19.9 = 19.90).
    pub fn check<'a>(
        &self,
        lines: impl IntoIterator<Item = (&'a str, Decimal)>,
    ) -> (Vec<String>, Vec<Mismatch>) {
        let mut unknown = Vec::new();
        let mut mismatches = Vec::new();
        for (sku, price) in lines {
            match self.listed.get(sku) {
                None => {
                    if !unknown.iter().any(|u| u == sku) {
                        unknown.push(sku.to_string());
                    }
                }
                Some(listed) if *listed != price => mismatches.push(Mismatch {
                    sku_code: sku.to_string(),
                    price: price.normalize(),
                    catalog_price: listed.normalize(),
                }),
                Some(_) => {}
            }
        }
        (unknown, mismatches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Equal amounts pass whatever their scale; other prices and unlisted SKUs are reported once.
    #[test]
    fn check_lines() {
        let prices = Prices {
            listed: [
                ("phone".to_string(), d("19.99")),
                ("case".to_string(), d("5.0")),
            ]
            .into_iter()
            .collect(),
        };
        let (unknown, mismatches) = prices.check([
            ("phone", d("19.99")),
            ("case", d("5.00")),
            ("phone", d("0")),
            ("ghost", d("1")),
            ("ghost", d("2")),
        ]);
        assert_eq!(unknown, ["ghost"]);
        assert_eq!(
            mismatches,
            [Mismatch {
                sku_code: "phone".into(),
                price: d("0"),
                catalog_price: d("19.99")
            }]
        );
        assert_eq!(
            serde_json::to_value(&mismatches[0]).unwrap(),
            serde_json::json!({"skuCode": "phone", "price": "0", "catalogPrice": "19.99"})
        );
    }
}
