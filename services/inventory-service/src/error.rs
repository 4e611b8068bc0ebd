//! The service's one error type and how each case is answered.
//!
//! Client errors say precisely what was wrong (problem+json with the
//! offending SKUs as extension members, so order-service can pass them on);
//! database errors are logged and answered generically by `kit::db::problem`:
//! 503 when the database cannot be reached (callers may retry, and
//! order-service's breaker counts it), 500 otherwise.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use serde::Serialize;

/// One SKU that does not have enough stock for a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub sku_code: String,
    pub requested: u64,
    pub available: u64,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Well-formed input that breaks a rule (zero quantity, bad SKU, ...).
    #[error("{0}")]
    Invalid(String),
    /// SKUs the inventory does not know: nothing was reserved or stored.
    #[error("unknown SKUs: {0:?}")]
    UnknownSkus(Vec<String>),
    /// Not enough stock for some lines: nothing was reserved.
    #[error("insufficient stock")]
    InsufficientStock(Vec<Shortage>),
    /// The order's reservation was released (or released before it was made).
    #[error("the reservation of order {0} was released")]
    Released(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Invalid(msg) => Problem::unprocessable(msg.clone()),
            ApiError::UnknownSkus(skus) => {
                Problem::unprocessable(format!("unknown skuCode(s): {}", skus.join(", ")))
                    .kind("unknown-sku")
                    .title("Unknown SKU")
                    .with("unknownSkus", skus)
            }
            ApiError::InsufficientStock(short) => Problem::conflict(format!(
                "insufficient stock for {}",
                short
                    .iter()
                    .map(|s| format!(
                        "{} (requested {}, available {})",
                        s.sku_code, s.requested, s.available
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .kind("insufficient-stock")
            .title("Insufficient stock")
            .with("insufficient", short),
            ApiError::Released(order) => Problem::conflict(format!(
                "the reservation of order {order} was released and cannot be reserved again"
            ))
            .kind("reservation-released"),
            ApiError::NotFound(msg) => Problem::not_found(msg.clone()),
            ApiError::Db(e) => kit::db::problem("inventory", e),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.problem().status_code()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}
