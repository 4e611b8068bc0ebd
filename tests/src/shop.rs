//! HTTP to a running stack from the host, the way a client and an operator use it: orders through
//! the gateway's published port with a token from `platform token`, stock through an
//! inventory-service instance's admin API, and the two views of where orders went: the gateway's
//! `/admin/upstreams` (requests it sent to each instance) and each order-service instance's own
//! `/metrics` (orders it placed).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{Platform, TestStack};

/// Unit price of the test's orders.
pub const PRICE: &str = "4.50";

/// A shop of `stack` that can sell `quantity` of `sku`: a token from `platform token`, the
/// product listed in the catalogue at the test's price (order-service takes prices from it), and
/// the stock set on an inventory-service instance that `platform status` says the host reaches.
/// `limit` bounds each `platform` command.
pub async fn stocked(
    platform: &Platform,
    stack: &TestStack,
    sku: &str,
    quantity: u64,
    limit: Duration,
) -> anyhow::Result<Shop> {
    stocked_all(platform, stack, &[sku.to_string()], quantity, limit).await
}

/// [`stocked`] for each of `skus`.
pub async fn stocked_all(
    platform: &Platform,
    stack: &TestStack,
    skus: &[String],
    quantity: u64,
    limit: Duration,
) -> anyhow::Result<Shop> {
    let s = stack.arg();
    let token = token(platform, stack, &[], limit).await?;
    let shop = Shop::new(&stack.gateway_url(), &token)?;
    let status = platform
        .run(&["status", "--json", "--stack", s], limit)
        .await?
        .success()?
        .json()?;
    let inventory = instance_urls(
        &status,
        "inventory-service",
        stack.port_of("inventory-service")?,
    );
    let base = inventory
        .values()
        .next()
        .context("the host cannot reach inventory-service's address to set stock")?;
    for sku in skus {
        shop.offer(base, sku, quantity).await?;
    }
    Ok(shop)
}

/// An access token from `platform token` on `stack` with `args` (none: the dev realm's admin;
/// `["--user", "alice"]`, `["--user", "bob", "--password", "..."]`, ...).
pub async fn token(
    platform: &Platform,
    stack: &TestStack,
    args: &[&str],
    limit: Duration,
) -> anyhow::Result<String> {
    let mut all = vec!["token", "--stack", stack.arg()];
    all.extend_from_slice(args);
    let run = platform.run(&all, limit).await?.success()?;
    Ok(run.stdout.trim().to_string())
}

/// The order-service counter of placed orders (`orders_requests{outcome}` in the service).
const PLACED_METRIC: &str = "orders_requests_total{outcome=\"placed\"}";

/// A client of one stack.
#[derive(Debug, Clone)]
pub struct Shop {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the gateway.
    gateway: String,
    /// An access token of the dev realm's admin user (it has the `admin` role).
    token: String,
}

impl Shop {
    /// A client of the gateway at `gateway` using `token`; every request is bounded.
    pub fn new(gateway: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .context("make an HTTP client")?;
        Ok(Self {
            http,
            gateway: gateway.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    /// The pooled client, for reads that need no token.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The access token in use.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Lists `sku` in the catalogue at the test's price (through the gateway, as the admin) and
    /// sets its stock on an inventory-service instance (`base` = `http://addr:port`): what an
    /// order of it needs, since order-service takes each line's price from the catalogue.
    pub async fn offer(&self, base: &str, sku: &str, quantity: u64) -> anyhow::Result<()> {
        let url = format!("{}/api/product", self.gateway);
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&json!({
                "skuCode": sku,
                "name": format!("e2e product {sku}"),
                "description": "created by the end-to-end tests",
                "price": PRICE,
            }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        expect_success(res, &url).await?;
        self.set_stock(base, sku, quantity).await
    }

    /// Sets the stock of `sku` on an inventory-service instance (`base` = `http://addr:port`).
    pub async fn set_stock(&self, base: &str, sku: &str, quantity: u64) -> anyhow::Result<()> {
        let url = format!("{base}/admin/inventory/{sku}");
        let res = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        expect_success(res, &url).await.map(drop)
    }

    /// Places one order of one unit of `sku` through the gateway; returns its order number.
    pub async fn place_order(&self, sku: &str) -> anyhow::Result<String> {
        let url = format!("{}/api/order", self.gateway);
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&json!({ "lines": [{ "skuCode": sku, "price": PRICE, "quantity": 1 }] }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let order: Value = expect_success(res, &url).await?.json().await?;
        order["orderNumber"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the order has no orderNumber: {order}"))
    }

    /// The id of the notification sent for `order` (its order number), as this client's token
    /// sees notifications; `None` until the event has reached notification-service, or when the
    /// request fails.
    pub async fn notification_id(&self, order: &str) -> Option<u64> {
        let url = format!("{}/api/notifications?orderNumber={order}", self.gateway);
        let page: Value = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        page["items"][0]["id"].as_u64()
    }

    /// The gateway's view of `service` (`/admin/upstreams`): one object per instance, with
    /// `instanceId`, `requests`, `failures`, `ejected`, `ejections`, ...
    pub async fn upstreams(&self, service: &str) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/admin/upstreams", self.gateway);
        let res = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let all: Value = expect_success(res, &url).await?.json().await?;
        all[service]["instances"]
            .as_array()
            .cloned()
            .with_context(|| format!("the gateway has no upstream `{service}`: {all}"))
    }

    /// The gateway's view of `service`: requests it sent to each instance, by instance id.
    pub async fn upstream_requests(&self, service: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        self.upstreams(service)
            .await?
            .iter()
            .map(|i| {
                let id = i["instanceId"].as_str();
                let requests = i["requests"].as_u64();
                match (id, requests) {
                    (Some(id), Some(n)) => Ok((id.to_string(), n)),
                    _ => bail!("an upstream instance without instanceId or requests: {i}"),
                }
            })
            .collect()
    }

    /// Orders an order-service instance says it placed (its `/metrics` at `base`).
    pub async fn placed_orders(&self, base: &str) -> anyhow::Result<u64> {
        let url = format!("{base}/metrics");
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let text = expect_success(res, &url).await?.text().await?;
        Ok(counter(&text, PLACED_METRIC))
    }
}

/// Base URLs (`http://address:port`) of a service's containers, by container name, from
/// `platform status --json`; empty when the host cannot reach container addresses (route
/// `published`, e.g. Docker Desktop).
pub fn instance_urls(status: &Value, service: &str, port: u16) -> BTreeMap<String, String> {
    if status["route"] != "address" {
        return BTreeMap::new();
    }
    status["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["service"] == service && c["state"] == "running")
        .filter_map(|c| {
            Some((
                c["container"].as_str()?.to_string(),
                format!("http://{}:{port}", c["address"].as_str()?),
            ))
        })
        .collect()
}

/// Whether each container is ready as `platform` sees it, by container name, from
/// `platform status --json`: running, and healthy when it has a check. `platform` folds its own
/// probe into Docker's health status (an engine without a health-check start interval says
/// `starting` for a whole interval after a start or a heal, while the service already answers),
/// so this is what `up`, `heal` and scenarios wait for; Docker's raw status
/// ([`crate::docker::state`]) may lag it by an interval.
pub fn ready_containers(status: &Value) -> BTreeMap<String, bool> {
    status["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let ready =
                c["state"] == "running" && (c["health"].is_null() || c["health"] == "healthy");
            Some((c["container"].as_str()?.to_string(), ready))
        })
        .collect()
}

/// The value of a counter line (`name{labels} value`) in Prometheus text; 0 when absent (a
/// counter with labels appears only once incremented).
pub fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .next()
        .unwrap_or(0)
}

async fn expect_success(res: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    bail!(
        "{url} answered {status}: {}",
        body.chars().take(400).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counter lines are found by their series; absent series are 0.
    #[test]
    fn reads_counters() {
        let text = "# TYPE orders_requests counter\n\
            orders_requests_total{outcome=\"placed\"} 12\n\
            orders_requests_total{outcome=\"invalid\"} 1\n";
        assert_eq!(counter(text, PLACED_METRIC), 12);
        assert_eq!(
            counter(text, "orders_requests_total{outcome=\"replayed\"}"),
            0
        );
    }
}
