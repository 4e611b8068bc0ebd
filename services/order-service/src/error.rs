//! The service's one error type and how each case is answered.
//!
//! Whenever inventory cannot give an answer (unreachable, too slow, 5xx,
//! no instance registered, or the breaker refusing the call) the client
//! gets the seed's fallback: 503 problem+json whose `detail` is exactly
//! [`FALLBACK_DETAIL`]. Never a 500: a dependency being down is not a bug
//! of ours.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use serde_json::Value;

/// The seed's fallback message, word for word.
pub const FALLBACK_DETAIL: &str = "Service is temporarily unavailable";

/// Everything placing or reading orders can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Input that breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// A body the extractor refused (malformed JSON, wrong media type, too large).
    #[error("{0}")]
    Request(Problem),
    /// Inventory refused the order: not enough stock (its problem, passed on).
    #[error("out of stock")]
    OutOfStock(Problem),
    /// Inventory does not know some SKUs (its problem, passed on).
    #[error("unknown sku")]
    UnknownSku(Problem),
    /// Lines whose price is not the catalogue's.
    #[error("prices differ from the catalogue")]
    PriceMismatch(Vec<crate::catalog::Mismatch>),
    /// SKUs the catalogue does not list.
    #[error("not in the catalogue: {0:?}")]
    NotInCatalog(Vec<String>),
    /// The catalogue could not answer; `reason` is logged, never sent.
    #[error("catalogue unavailable: {0}")]
    CatalogUnavailable(String),
    /// Inventory could not answer; `reason` is logged, never sent.
    #[error("inventory unavailable: {0}")]
    InventoryUnavailable(String),
    /// Authentication failed (bad bearer token).
    #[error("{0}")]
    Auth(kit::auth::Rejected),
    /// The same Idempotency-Key came with a different request.
    #[error("Idempotency-Key reused with a different request")]
    KeyReused,
    /// The same Idempotency-Key is still being processed.
    #[error("a request with this Idempotency-Key is still in progress")]
    KeyInProgress,
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl OrderError {
    /// The problem this error is answered with (logs internal causes).
    pub fn problem(&self) -> Problem {
        match self {
            OrderError::Invalid(msg) => Problem::unprocessable(msg.clone()),
            OrderError::Request(p) => p.clone(),
            OrderError::OutOfStock(p) => passed_on(p, StatusCode::CONFLICT, "insufficient-stock"),
            OrderError::UnknownSku(p) => {
                passed_on(p, StatusCode::UNPROCESSABLE_ENTITY, "unknown-sku")
            }
            OrderError::PriceMismatch(lines) => Problem::unprocessable(format!(
                "the price of {} is not the catalogue's; order at the listed price",
                lines
                    .iter()
                    .map(|m| format!("{} ({}, listed {})", m.sku_code, m.price, m.catalog_price))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .kind("price-mismatch")
            .with("mismatches", lines),
            OrderError::NotInCatalog(skus) => Problem::unprocessable(format!(
                "not in the catalogue: {}",
                skus.join(", ")
            ))
            .kind("unknown-sku")
            .with("unknownSkus", skus),
            OrderError::CatalogUnavailable(reason) => {
                tracing::warn!(%reason, "catalogue unavailable; answering the fallback");
                fallback()
            }
            OrderError::InventoryUnavailable(reason) => {
                tracing::warn!(%reason, "inventory unavailable; answering the fallback");
                fallback()
            }
            OrderError::Auth(r) => r.problem(),
            OrderError::KeyReused => Problem::unprocessable(
                "this Idempotency-Key was used with a different request; use a new key for a new order",
            )
            .kind("idempotency-key-reused"),
            OrderError::KeyInProgress => Problem::conflict(
                "a request with this Idempotency-Key is still in progress; retry later",
            )
            .kind("idempotency-key-in-progress"),
            OrderError::NotFound(msg) => Problem::not_found(msg.clone()),
            OrderError::Db(e) => kit::db::problem("orders", e),
        }
    }
}

/// The 503 answer when inventory cannot be asked.
pub fn fallback() -> Problem {
    Problem::unavailable(FALLBACK_DETAIL)
}

/// Inventory's problem, keeping its details and extension members but our status and type.
fn passed_on(p: &Problem, status: StatusCode, slug: &str) -> Problem {
    let mut out = Problem::new(status).kind(slug).title(p.title.clone());
    out.detail = p.detail.clone();
    for (k, v) in &p.extensions {
        if !matches!(v, Value::Null) {
            out.extensions.insert(k.clone(), v.clone());
        }
    }
    out
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        match self {
            OrderError::Auth(r) => r.into_response(),
            other => other.problem().into_response(),
        }
    }
}
