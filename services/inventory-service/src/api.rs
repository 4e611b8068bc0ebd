//! The HTTP API.
//!
//! Stock checks (any caller the gateway let in: reading stock levels is
//! what a shop front does before it offers an item, and tells nothing
//! about anyone's orders):
//! - `GET /api/inventory?skuCode=..&quantity=..` → `true`/`false`: the
//!   seed's stock check, a bare JSON boolean as the seed answers (an
//!   unknown SKU is not in stock).
//! - `GET /api/inventory/{skuCode}` → `{"skuCode","quantity"}` or 404.
//!
//! Reservations (service-to-service: a token with the `service` realm role,
//! which only service accounts such as order-service's carry; without an
//! issuer, the shared admin token; 401/403 otherwise; the gateway does not
//! route them at all):
//! - `POST /api/inventory/reservations` `{"orderNumber","lines":[{"skuCode","quantity"}]}`
//!   → 201 with the reservation when stock was taken, 200 with the same
//!   body for a repeat, 409 problem (`insufficient`: the short SKUs) when
//!   stock is short (remembered: a repeat gets 409 again), 422 problem
//!   (`unknownSkus`) for unknown SKUs (nothing stored).
//! - `GET /api/inventory/reservations/{orderNumber}` → the reservation or 404.
//! - `DELETE /api/inventory/reservations/{orderNumber}` → 200 with the
//!   reservation, now RELEASED (or REJECTED, untouched); idempotent.
//!
//! Admin (under `/admin`, behind the admin credentials, because changing
//! stock is an operator's act, not a shopper's):
//! - `PUT /admin/inventory/{skuCode}` `{"quantity": n}` → the new stock.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kit::auth::{RoleGuard, require_role};
use kit::http::{Json, Path, Query};
use kit::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;

use crate::error::ApiError;
use crate::store::{Line, Reservation, Status, Stock, Store};

/// Longest SKU code and order number (the column width).
pub const MAX_ID_LEN: usize = 64;
/// Most lines in one reservation.
pub const MAX_LINES: usize = 100;
/// Largest quantity in one line.
pub const MAX_LINE_QUANTITY: u64 = 1_000_000;
/// Largest stock of one SKU (fits the INT column).
pub const MAX_STOCK: u64 = 1_000_000_000;

/// Labels of the reservation counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    /// Reservation requests by outcome (reserved, repeat, rejected,
    /// unknown_sku, released, error), for the dashboard.
    reservations: Family<OutcomeLabels, Counter>,
}

impl AppState {
    pub fn new(store: Store, metrics: &Metrics) -> AppState {
        let reservations = Family::<OutcomeLabels, Counter>::default();
        metrics.register(
            "inventory_reservations",
            "Reservation requests by outcome",
            reservations.clone(),
        );
        AppState {
            store,
            reservations,
        }
    }

    fn count(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// The public API: stock checks open, reservations behind `reservations`
/// (the `service` role).
pub fn router(state: AppState, reservations: RoleGuard) -> Router {
    let services_only = Router::new()
        .route("/api/inventory/reservations", post(reserve))
        .route(
            "/api/inventory/reservations/{order_number}",
            get(reservation).delete(release),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            reservations,
            require_role,
        ));
    Router::new()
        .route("/api/inventory", get(in_stock))
        .route("/api/inventory/{sku_code}", get(stock))
        .merge(services_only)
        .with_state(state)
}

/// The admin API (mounted under `/admin` by the kit).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/inventory/{sku_code}", put(set_stock))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StockQuery {
    sku_code: String,
    quantity: u64,
}

#[tracing::instrument(skip(s))]
async fn in_stock(
    State(s): State<AppState>,
    Query(q): Query<StockQuery>,
) -> Result<Json<bool>, ApiError> {
    check_id("skuCode", &q.sku_code)?;
    Ok(Json(s.store.is_in_stock(&q.sku_code, q.quantity).await?))
}

async fn stock(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Stock>, ApiError> {
    check_id("skuCode", &sku)?;
    s.store
        .stock(&sku)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("unknown skuCode {sku}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetStock {
    quantity: u64,
}

async fn set_stock(
    State(s): State<AppState>,
    Path(sku): Path<String>,
    Json(body): Json<SetStock>,
) -> Result<Json<Stock>, ApiError> {
    check_id("skuCode", &sku)?;
    if body.quantity > MAX_STOCK {
        return Err(ApiError::Invalid(format!(
            "quantity must be at most {MAX_STOCK}"
        )));
    }
    let stock = s.store.set_stock(&sku, body.quantity).await?;
    tracing::info!(sku_code = %sku, quantity = body.quantity, "stock set");
    Ok(Json(stock))
}

/// The body of `POST /api/inventory/reservations`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    pub order_number: String,
    pub lines: Vec<Line>,
}

impl ReserveRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_id("orderNumber", &self.order_number)?;
        if self.lines.is_empty() {
            return Err(ApiError::Invalid("lines must not be empty".into()));
        }
        if self.lines.len() > MAX_LINES {
            return Err(ApiError::Invalid(format!(
                "at most {MAX_LINES} lines per reservation, got {}",
                self.lines.len()
            )));
        }
        for (i, l) in self.lines.iter().enumerate() {
            check_id(&format!("lines[{i}].skuCode"), &l.sku_code)?;
            if l.quantity == 0 || l.quantity > MAX_LINE_QUANTITY {
                return Err(ApiError::Invalid(format!(
                    "lines[{i}].quantity must be between 1 and {MAX_LINE_QUANTITY}"
                )));
            }
        }
        Ok(())
    }
}

// Fields as `&str` and `i64`: the OpenTelemetry layer formats `%` and unsigned values
// (kit::telemetry::space_joined).
#[tracing::instrument(skip(s, req), fields(order_number = req.order_number.as_str(), lines = req.lines.len() as i64))]
async fn reserve(State(s): State<AppState>, Json(req): Json<ReserveRequest>) -> Response {
    if let Err(e) = req.validate() {
        return e.into_response();
    }
    match s.store.reserve(&req.order_number, &req.lines).await {
        Ok(r) => {
            let outcome = match (r.reservation.status, r.created) {
                (Status::Reserved, true) => "reserved",
                (Status::Reserved, false) => "repeat",
                (Status::Rejected, _) => "rejected",
                (Status::Released, _) => "released",
            };
            s.count(outcome);
            reservation_response(r.reservation, r.created)
        }
        Err(e) => {
            s.count(match e {
                ApiError::UnknownSkus(_) => "unknown_sku",
                _ => "error",
            });
            e.into_response()
        }
    }
}

/// How a reservation's state is answered to a reservation request.
fn reservation_response(r: Reservation, created: bool) -> Response {
    match r.status {
        Status::Reserved if created => (StatusCode::CREATED, Json(r)).into_response(),
        Status::Reserved => (StatusCode::OK, Json(r)).into_response(),
        Status::Rejected => ApiError::InsufficientStock(r.insufficient).into_response(),
        Status::Released => ApiError::Released(r.order_number).into_response(),
    }
}

async fn reservation(
    State(s): State<AppState>,
    Path(order): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    check_id("orderNumber", &order)?;
    s.store
        .reservation(&order)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no reservation for order {order}")))
}

#[tracing::instrument(skip(s))]
async fn release(
    State(s): State<AppState>,
    Path(order): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    check_id("orderNumber", &order)?;
    let (r, gave_back) = s.store.release(&order).await?;
    if gave_back {
        tracing::info!(order_number = %order, "reservation released; stock given back");
    }
    Ok(Json(r))
}

/// SKU codes and order numbers: 1 to 64 characters of `[A-Za-z0-9._-]`.
fn check_id(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(ApiError::Invalid(format!(
            "{field} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::Invalid(format!(
            "{field} may contain only letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identifiers outside the allowed alphabet or length are refused.
    #[test]
    fn ids_are_checked() {
        assert!(check_id("skuCode", "iphone_15-pro.max").is_ok());
        for bad in ["", "a b", "x;DROP", &"a".repeat(65), "é"] {
            assert!(check_id("skuCode", bad).is_err(), "{bad:?}");
        }
    }

    /// Empty, oversized and zero-quantity reservations are refused before the database.
    #[test]
    fn reservation_requests_are_validated() {
        let line = |q| Line {
            sku_code: "a".into(),
            quantity: q,
        };
        let req = |lines| ReserveRequest {
            order_number: "o-1".into(),
            lines,
        };
        assert!(req(vec![line(1)]).validate().is_ok());
        assert!(req(vec![]).validate().is_err());
        assert!(req(vec![line(0)]).validate().is_err());
        assert!(req(vec![line(MAX_LINE_QUANTITY + 1)]).validate().is_err());
        assert!(req(vec![line(1); MAX_LINES + 1]).validate().is_err());
    }
}
