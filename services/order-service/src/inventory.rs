//! The client of inventory-service: found through the registry, balanced
//! over its instances, bounded by a timeout, guarded by a circuit breaker.
//!
//! Order of the layers, and why: the breaker is asked first, so an open
//! breaker answers in microseconds without touching the registry cache or
//! the network; then the balancer picks an instance from the registry
//! cache (never a configured address); the per-call timeout bounds the
//! whole exchange (connect, request, answer). What the breaker records:
//! - success: any answer below 500, including 409 (out of stock) and 422
//!   (unknown SKU), which are inventory doing its job;
//! - failure: connection errors, timeouts, 5xx, and "no instance
//!   registered" (the dependency is as unavailable as it gets);
//! - slow: whatever took longer than `slowCallDurationThreshold`, measured
//!   by the breaker's clock.
//!
//! Every call carries the service account's token (client credentials
//! grant, [`kit::auth::ServiceToken`]): reservations are service-to-service
//! and inventory requires the `service` realm role. A token that cannot be
//! had fails the call before anything is sent, without touching the
//! breaker (inventory is not at fault); a 401 drops the cached token so the
//! next call fetches a fresh one.
//!
//! A connection refused by one instance is retried once on another
//! instance within the same timeout (reservations are idempotent by order
//! number, so a retry cannot reserve twice). Releases (compensation) do not
//! go through the breaker: they must be attempted even while it is open.

use std::time::{Duration, Instant};
use tracing::Instrument;

use events::OrderLine;
use kit::Problem;
use kit::auth::ServiceToken;
use kit::breaker::{CircuitBreaker, NotPermitted, Permit};
use kit::lb::{Balancer, Failure};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// What inventory answered to a reservation.
#[derive(Debug)]
pub enum Reservation {
    /// The stock is taken for this order (or was already, by an earlier attempt).
    Reserved,
    /// Not enough stock (inventory's 409 problem).
    OutOfStock(Problem),
    /// Unknown SKUs (inventory's 422 problem).
    UnknownSku(Problem),
}

/// Why inventory gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    NotPermitted(#[from] NotPermitted),
    /// The request may have reached inventory (timeout, 5xx, broken
    /// connection): the reservation's fate is unknown and must be released.
    #[error("inventory call failed after it was sent: {0}")]
    Uncertain(String),
    /// Nothing reached inventory (no instance, connection refused).
    #[error("inventory not reached: {0}")]
    NotSent(String),
}

impl InventoryError {
    /// Whether a reservation may exist and must be released.
    pub fn needs_release(&self) -> bool {
        matches!(self, InventoryError::Uncertain(_))
    }
}

/// The inventory client; cheap to clone.
#[derive(Clone, Debug)]
pub struct InventoryClient {
    balancer: Balancer,
    breaker: CircuitBreaker,
    http: reqwest::Client,
    timeout: Duration,
    /// The service account's credentials presented to inventory.
    token: ServiceToken,
}

/// How one attempt on one instance ended.
enum Attempt {
    /// Any answer, with its whole body.
    Answer(reqwest::StatusCode, Vec<u8>),
    /// The connection was refused: nothing was sent.
    Refused(String),
    /// Timed out or broke after sending: the request may have been handled.
    Failed(Failure, String),
}

impl InventoryClient {
    pub fn new(
        balancer: Balancer,
        breaker: CircuitBreaker,
        http: reqwest::Client,
        timeout: Duration,
        token: ServiceToken,
    ) -> InventoryClient {
        InventoryClient {
            balancer,
            breaker,
            http,
            timeout,
            token,
        }
    }

    /// The bearer token for the next call; failing to get one means
    /// nothing is sent.
    async fn bearer(&self) -> Result<Option<SecretString>, InventoryError> {
        self.token.bearer().await.map_err(|e| {
            tracing::error!(error = %e, "no service token for inventory-service");
            InventoryError::NotSent(format!("no service token: {e}"))
        })
    }

    /// `req` with the bearer token, if any.
    fn authorized(
        req: reqwest::RequestBuilder,
        bearer: &Option<SecretString>,
    ) -> reqwest::RequestBuilder {
        match bearer {
            Some(t) => req.bearer_auth(t.expose_secret()),
            None => req,
        }
    }

    /// After a 401 the cached token is dropped (revoked, or signed by a
    /// retired key): the next call fetches a fresh one.
    async fn refused_token(&self, status: reqwest::StatusCode) {
        if status == reqwest::StatusCode::UNAUTHORIZED {
            tracing::warn!(
                "inventory-service refused the service token; fetching a new one next time"
            );
            self.token.invalidate().await;
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Reserves the order's lines at inventory.
    pub async fn reserve(
        &self,
        order_number: &str,
        lines: &[OrderLine],
    ) -> Result<Reservation, InventoryError> {
        let bearer = self.bearer().await?;
        let permit = self.breaker.try_acquire()?;
        let body = json!({
            "orderNumber": order_number,
            "lines": lines.iter().map(|l| json!({"skuCode": l.sku_code, "quantity": l.quantity})).collect::<Vec<_>>(),
        });
        let deadline = Instant::now() + self.timeout;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let Some(pick) = self.balancer.pick_ready(&tried).await else {
                permit.failure();
                return Err(InventoryError::NotSent(
                    "no inventory-service instance is registered".into(),
                ));
            };
            if tried.contains(&pick.instance().instance_id) {
                // Only instances already tried are left.
                drop(pick);
                permit.failure();
                return Err(InventoryError::NotSent(
                    "every inventory-service instance refused the connection".into(),
                ));
            }
            tried.push(pick.instance().instance_id.clone());
            let url = format!("{}/api/inventory/reservations", pick.base_url());
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self
                .send(
                    "POST",
                    &url,
                    Self::authorized(self.http.post(&url).json(&body), &bearer),
                    remaining,
                )
                .await
            {
                Attempt::Answer(status, bytes) => {
                    self.refused_token(status).await;
                    if status.is_server_error() {
                        pick.failure(Failure::ServerError);
                        permit.failure();
                        return Err(InventoryError::Uncertain(format!(
                            "{url} answered {status}"
                        )));
                    }
                    pick.success();
                    return classify(status, &bytes, permit, &url);
                }
                Attempt::Refused(reason) => {
                    pick.failure(Failure::Connect);
                    if Instant::now() < deadline {
                        tracing::debug!(%url, %reason, "inventory instance refused; trying another");
                        continue;
                    }
                    permit.failure();
                    return Err(InventoryError::NotSent(reason));
                }
                Attempt::Failed(kind, reason) => {
                    pick.failure(kind);
                    permit.failure();
                    return Err(InventoryError::Uncertain(reason));
                }
            }
        }
    }

    /// Gives an order's reservation back. Not guarded by the breaker.
    pub async fn release(&self, order_number: &str) -> Result<(), InventoryError> {
        let bearer = self.bearer().await?;
        let Some(pick) = self.balancer.pick_ready(&[]).await else {
            return Err(InventoryError::NotSent(
                "no inventory-service instance is registered".into(),
            ));
        };
        let url = format!(
            "{}/api/inventory/reservations/{order_number}",
            pick.base_url()
        );
        match self
            .send(
                "DELETE",
                &url,
                Self::authorized(self.http.delete(&url), &bearer),
                self.timeout,
            )
            .await
        {
            Attempt::Answer(status, _) if status.is_success() => {
                pick.success();
                Ok(())
            }
            Attempt::Answer(status, body) => {
                self.refused_token(status).await;
                if status.is_server_error() {
                    pick.failure(Failure::ServerError);
                } else {
                    pick.success();
                }
                Err(InventoryError::Uncertain(format!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )))
            }
            Attempt::Refused(reason) => {
                pick.failure(Failure::Connect);
                Err(InventoryError::NotSent(reason))
            }
            Attempt::Failed(kind, reason) => {
                pick.failure(kind);
                Err(InventoryError::Uncertain(reason))
            }
        }
    }

    /// Sends a request and reads the whole answer within `timeout`, in a
    /// CLIENT span whose context travels in the request's headers, so the
    /// inventory side of the call joins the order's trace.
    async fn send(
        &self,
        method: &str,
        url: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Attempt {
        let span = kit::telemetry::client_span("inventory-service", method, url);
        let mut headers = reqwest::header::HeaderMap::new();
        kit::telemetry::inject_headers_from(&span, &mut headers);
        let exchange = async {
            let res = req.headers(headers).send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body.to_vec()))
        };
        let attempt = match tokio::time::timeout(timeout, exchange.instrument(span.clone())).await {
            Err(_) => Attempt::Failed(
                Failure::Timeout,
                format!("no answer within {}", humantime_ms(timeout)),
            ),
            Ok(Ok((status, body))) => {
                kit::telemetry::record_status(&span, status.as_u16());
                Attempt::Answer(status, body)
            }
            Ok(Err(e)) if e.is_connect() => Attempt::Refused(e.to_string()),
            Ok(Err(e)) => Attempt::Failed(Failure::Connect, e.to_string()),
        };
        if !matches!(&attempt, Attempt::Answer(s, _) if !s.is_server_error()) {
            kit::telemetry::mark_error(&span);
        }
        attempt
    }
}

fn humantime_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Turns a non-5xx answer into a [`Reservation`] and settles the permit.
fn classify(
    status: reqwest::StatusCode,
    body: &[u8],
    permit: Permit,
    url: &str,
) -> Result<Reservation, InventoryError> {
    let problem = || {
        serde_json::from_slice::<Problem>(body)
            .unwrap_or_else(|_| Problem::new(axum::http::StatusCode::CONFLICT))
    };
    match status.as_u16() {
        200 | 201 => {
            permit.success();
            Ok(Reservation::Reserved)
        }
        409 => {
            permit.success();
            Ok(Reservation::OutOfStock(problem()))
        }
        422 => {
            permit.success();
            Ok(Reservation::UnknownSku(problem()))
        }
        _ => {
            // Inventory answered but not as agreed (400, 404, 415...): a
            // contract mismatch, not an outage; it says nothing about the
            // dependency's health, so the breaker ignores it.
            permit.ignore();
            Err(InventoryError::Uncertain(format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(body)
            )))
        }
    }
}
